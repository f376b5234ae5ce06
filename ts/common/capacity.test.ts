// The capacity rule the orc's scorer, its claim re-check and the compute's admission share:
// exact integer headroom under per-mille overcommit, against BigInt arithmetic.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { availOf, AVAIL_MIN, fits, I32_MAX, limitOf, overcommitPm, overUse, RES_KEYS, type Resources } from './capacity.js';

const exactAvail = (free: number, cap: number, pm: number): bigint => {
  const n = BigInt(free) * 1000n + BigInt(cap) * BigInt(pm - 1000);
  const q = n >= 0n ? n / 1000n : -((-n + 999n) / 1000n);
  return q < BigInt(AVAIL_MIN) ? BigInt(AVAIL_MIN) : q > BigInt(I32_MAX) ? BigInt(I32_MAX) : q;
};

const resources = (min: number, max: number): fc.Arbitrary<Resources> =>
  fc.record({
    vcpus: fc.integer({ min, max }),
    ram_mb: fc.integer({ min, max }),
    disk_gb: fc.integer({ min, max }),
    bandwidth_mbps: fc.integer({ min, max }),
  });
const pmArb = fc.tuple(...RES_KEYS.map(() => fc.integer({ min: 1, max: 1_000_000 }))) as unknown as fc.Arbitrary<[number, number, number, number]>;

describe('capacity rule', () => {
  it('headroom is the exact floor, clamped', () => {
    fc.assert(
      fc.property(fc.integer({ min: -(2 ** 31), max: I32_MAX }), fc.integer({ min: 0, max: I32_MAX }), fc.integer({ min: 1, max: 1_000_000 }), (free, cap, pm) => {
        expect(BigInt(availOf(free, cap, pm))).toBe(exactAvail(free, cap, pm));
      }),
    );
  });

  it('a need fits exactly when need*1000 <= free*1000 + capacity*(pm-1000) on every resource', () => {
    fc.assert(
      fc.property(resources(0, 2 ** 30), resources(-(2 ** 31), I32_MAX), resources(0, I32_MAX), pmArb, (need, free, cap, pm) => {
        const exact = RES_KEYS.every((k, r) => BigInt(need[k]) * 1000n <= BigInt(free[k]) * 1000n + BigInt(cap[k]) * BigInt(pm[r]! - 1000));
        expect(fits(need, free, cap, pm)).toBe(exact);
      }),
    );
  });

  it('admission: use beyond capacity times ratio is refused, naming the resource and its limit', () => {
    const cap: Resources = { vcpus: 10, ram_mb: 1000, disk_gb: 100, bandwidth_mbps: 0 };
    const pm = overcommitPm({ vcpus: 1.5 });
    expect(limitOf(10, pm[0])).toBe(15);
    expect(overUse({ vcpus: 15, ram_mb: 1000, disk_gb: 100, bandwidth_mbps: 0 }, cap, pm)).toEqual([]);
    expect(overUse({ vcpus: 16, ram_mb: 1001, disk_gb: 100, bandwidth_mbps: 1 }, cap, pm, ['vcpus', 'ram_mb'])).toEqual([
      { resource: 'vcpus', used: 16, limit: 15 },
      { resource: 'ram_mb', used: 1001, limit: 1000 },
    ]);
  });

  it('admission agrees with the placement fits rule: a need fits iff using it stays within the limits', () => {
    fc.assert(
      fc.property(resources(0, 100_000), resources(0, 100_000), resources(0, 100_000), pmArb, (cap, usedBefore, need, pm) => {
        const free = Object.fromEntries(RES_KEYS.map((k) => [k, cap[k] - usedBefore[k]])) as unknown as Resources;
        const used = Object.fromEntries(RES_KEYS.map((k) => [k, usedBefore[k] + need[k]])) as unknown as Resources;
        expect(overUse(used, cap, pm).length === 0).toBe(fits(need, free, cap, pm));
      }),
    );
  });

  it('ratios become per-mille; bad ones are refused by name', () => {
    expect(overcommitPm({ vcpus: 4, ram_mb: 1.25 })).toEqual([4000, 1250, 1000, 1000]);
    expect(() => overcommitPm({ disk_gb: 0 })).toThrow(/overcommit.disk_gb must be a ratio from 0.001 to 1000, got 0/);
    expect(() => overcommitPm({ vcpus: Number.NaN })).toThrow(RangeError);
  });
});
