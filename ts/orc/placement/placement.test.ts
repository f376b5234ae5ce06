// Example tests for every filter and weigher, run against both implementations, plus the
// shared arithmetic (hashes, headroom) against BigInt references.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { NativeClusterView } from './native.js';
import { availOf, compareCodePoints, fnv1a64, mix64, resolveOptions, TwinClusterView } from './twin.js';
import type { ComputeRecord, PlacementRequest, Resources, ScorerOptions } from './types.js';

type View = TwinClusterView | NativeClusterView;

// Both always: without the addon the native cases fail, with the message that says how to build it.
const impls: [string, (o?: ScorerOptions) => View][] = [
  ['twin', (o) => new TwinClusterView(o)],
  ['native', (o) => new NativeClusterView(o)],
];

const BIG: Resources = { vcpus: 64, ram_mb: 262_144, disk_gb: 2000, bandwidth_mbps: 10_000 };
const res = (vcpus: number, ram_mb: number, disk_gb: number, bandwidth_mbps: number): Resources => ({
  vcpus,
  ram_mb,
  disk_gb,
  bandwidth_mbps,
});
const compute = (id: string, capacity: Resources, free: Resources, extra: Partial<ComputeRecord> = {}): ComputeRecord => ({
  id,
  capacity,
  free,
  zone: 'z1',
  labels: [],
  alive: true,
  groups: [],
  ...extra,
});
const req = (id: string, need: Resources, extra: Partial<PlacementRequest> = {}): PlacementRequest => ({
  id,
  need,
  ...extra,
});
const ONE = res(1, 1, 1, 1);

function pick(v: View, r: PlacementRequest): string[] {
  const p = v.place(r);
  return p.ok ? [p.computeId, ...p.alternates] : [];
}

describe('hashes and arithmetic', () => {
  const hex = (h: { hi: number; lo: number }): bigint => (BigInt(h.hi) << 32n) | BigInt(h.lo);
  const M = (1n << 64n) - 1n;
  const fnvRef = (s: string): bigint => {
    let h = 0xcbf29ce484222325n;
    for (const b of new TextEncoder().encode(s)) h = ((h ^ BigInt(b)) * 0x100000001b3n) & M;
    return h;
  };
  const mixRef = (x: bigint): bigint => {
    let z = x;
    z = ((z ^ (z >> 30n)) * 0xbf58476d1ce4e5b9n) & M;
    z = ((z ^ (z >> 27n)) * 0x94d049bb133111ebn) & M;
    return z ^ (z >> 31n);
  };

  it('match the vectors of the Rust tests', () => {
    expect(hex(fnv1a64(''))).toBe(0xcbf29ce484222325n);
    expect(hex(fnv1a64('a'))).toBe(0xaf63dc4c8601ec8cn);
    expect(hex(fnv1a64('foobar'))).toBe(0x85944171f73967e8n);
    expect(hex(fnv1a64('zoné-€-😀'))).toBe(0x3eaa91eabcfe83c1n);
    expect(hex(mix64(0, 1))).toBe(0x5692161d100b05e5n);
  });

  it('fnv1a64 is FNV-1a over UTF-8 for any string', () => {
    fc.assert(fc.property(fc.string({ unit: 'binary' }), (s) => hex(fnv1a64(s)) === fnvRef(s)));
  });

  it('mix64 on 32-bit halves equals the 64-bit finaliser', () => {
    fc.assert(
      fc.property(fc.bigInt({ min: 0n, max: M }), (x) => hex(mix64(Number(x >> 32n), Number(x & 0xffffffffn))) === mixRef(x)),
    );
  });

  it('availOf is the exact floor', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: -(2 ** 40), max: 2 ** 40 }),
        fc.integer({ min: 0, max: 2 ** 31 - 1 }),
        fc.integer({ min: 1, max: 1_000_000 }),
        (free, cap, pm) => {
          const n = BigInt(free) * 1000n + BigInt(cap) * BigInt(pm - 1000);
          let q = n / 1000n;
          if (q * 1000n > n) q -= 1n;
          const clamped = q < -(2n ** 30n) ? -(2n ** 30n) : q > 2n ** 31n - 1n ? 2n ** 31n - 1n : q;
          return BigInt(availOf(free, cap, pm)) === clamped;
        },
      ),
    );
  });

  it('compares ids in code point order, as Rust compares UTF-8 bytes', () => {
    fc.assert(
      fc.property(fc.string({ unit: 'grapheme' }), fc.string({ unit: 'grapheme' }), (a, b) => {
        const ea = Buffer.from(a, 'utf8');
        const eb = Buffer.from(b, 'utf8');
        return Math.sign(compareCodePoints(a, b)) === Math.sign(Buffer.compare(ea, eb));
      }),
    );
  });

  it('rejects bad options', () => {
    expect(() => resolveOptions({ overcommit: { vcpus: 0 } })).toThrow(RangeError);
    expect(() => resolveOptions({ weights: { resource: Number.NaN } })).toThrow(RangeError);
    expect(() => resolveOptions({ alternates: 99 })).toThrow(RangeError);
    expect(() => resolveOptions({ weights: { labels: -1 } })).toThrow(/weights.labels must be finite and >= 0/);
    expect(() => resolveOptions({ weights: { strategy: 'tight' as never } })).toThrow(/weights.strategy must be one of spread, pack/);
    expect(resolveOptions({ overcommit: { vcpus: 1.5 } }).overcommitPm).toEqual([1500, 1000, 1000, 1000]);
  });
});

describe.each(impls)('%s cluster view', (_name, make) => {
  it('fits every resource and counts the rejections', () => {
    const v = make();
    v.upsert(compute('a', BIG, res(4, 8192, 100, 1000)));
    v.upsert(compute('b', BIG, res(1, 8192, 100, 1000)));
    v.upsert(compute('c', BIG, res(4, 8192, 100, 10)));
    const e = v.placeExplained(req('wu', res(2, 4096, 50, 100)));
    expect(e.placement).toEqual({ ok: true, computeId: 'a', alternates: [] });
    expect(e.rejected.fits).toBe(2);
    expect(e.considered).toBe(3);
  });

  it('is exact at the boundary and with overcommit', () => {
    const v = make({ overcommit: { vcpus: 1.5 } });
    v.upsert(compute('a', res(10, 1000, 100, 100), res(0, 1000, 100, 100)));
    expect(v.place(req('wu', res(5, 0, 0, 0))).ok).toBe(true);
    expect(v.place(req('wu', res(6, 0, 0, 0))).ok).toBe(false);
  });

  it('says why there is no valid host', () => {
    const v = make();
    v.upsert(compute('dead', BIG, BIG, { alive: false }));
    v.upsert(compute('far', BIG, BIG, { zone: 'z2' }));
    v.upsert(compute('small', BIG, res(0, 0, 0, 0)));
    const p = v.place(req('wu', ONE, { zone: 'z1' }));
    expect(p).toEqual({
      ok: false,
      considered: 3,
      rejected: { alive: 1, excluded: 0, zone: 1, labels: 0, affinity: 0, anti_affinity: 0, fits: 1 },
    });
  });

  it('skips excluded computes, and only for that request', () => {
    const v = make();
    v.upsert(compute('a', BIG, BIG));
    v.upsert(compute('b', BIG, ONE));
    const e = v.placeExplained(req('wu', ONE, { exclude: ['a', 'a', 'nope'] }));
    expect(e.placement).toMatchObject({ ok: true, computeId: 'b' });
    expect(e.rejected.excluded).toBe(1);
    expect(pick(v, req('wu', ONE))[0]).toBe('a');
  });

  it('filters on zone; an unknown zone matches nothing', () => {
    const v = make();
    v.upsert(compute('a', BIG, BIG));
    v.upsert(compute('b', BIG, BIG, { zone: 'z2' }));
    expect(pick(v, req('wu', ONE, { zone: 'z2' }))).toEqual(['b']);
    expect(v.placeExplained(req('wu', ONE, { zone: 'mars' })).rejected.zone).toBe(2);
  });

  it('needs every label, past the first 64 too', () => {
    const v = make();
    v.upsert(compute('a', BIG, BIG, { labels: Array.from({ length: 70 }, (_, i) => `l${i}`) }));
    v.upsert(compute('b', BIG, BIG, { labels: ['l1', 'l2'] }));
    expect(pick(v, req('wu', ONE, { labels: ['l1', 'l2'] })).sort()).toEqual(['a', 'b']);
    const e = v.placeExplained(req('wu', ONE, { labels: ['l1', 'l69'] }));
    expect(e.placement).toMatchObject({ computeId: 'a' });
    expect(e.rejected.labels).toBe(1);
    expect(v.placeExplained(req('wu', ONE, { labels: ['never-seen'] })).rejected.labels).toBe(2);
  });

  it('affinity keeps to the group while a member is alive', () => {
    const v = make();
    v.upsert(compute('a', BIG, BIG));
    v.upsert(compute('b', BIG, res(2, 2, 2, 2), { groups: ['g'] }));
    const r = req('wu', ONE, { affinity: 'g' });
    expect(pick(v, r)).toEqual(['b']);
    expect(v.placeExplained(r).rejected.affinity).toBe(1);
    v.setAlive('b', false);
    expect(pick(v, r)).toEqual(['a']);
    expect(pick(v, req('wu', ONE, { affinity: 'unknown' }))).toEqual(['a']);
  });

  it('anti-affinity keeps away from the group', () => {
    const v = make();
    v.upsert(compute('a', BIG, BIG, { groups: ['g', 'h'] }));
    v.upsert(compute('b', BIG, res(2, 2, 2, 2)));
    const r = req('wu', ONE, { antiAffinity: 'g' });
    expect(pick(v, r)).toEqual(['b']);
    expect(v.placeExplained(r).rejected.anti_affinity).toBe(1);
    v.setGroups('a', ['h']);
    expect(pick(v, r)[0]).toBe('a');
  });

  it('spreads by default and packs on request', () => {
    const half = res(32, 131_072, 1000, 10_000);
    const s = make();
    s.upsert(compute('empty', BIG, BIG));
    s.upsert(compute('half', BIG, half));
    expect(pick(s, req('wu', ONE))).toEqual(['empty', 'half']);
    const p = make({ weights: { strategy: 'pack' } });
    p.upsert(compute('empty', BIG, BIG));
    p.upsert(compute('half', BIG, half));
    expect(pick(p, req('wu', ONE))).toEqual(['half', 'empty']);
  });

  it('ranks a fuller compute higher in pack and lower in spread', () => {
    const upTo = (n: number) => fc.integer({ min: 1, max: n });
    fc.assert(
      fc.property(
        fc.record({ vcpus: upTo(256), ram_mb: upTo(100_000), disk_gb: upTo(10_000), bandwidth_mbps: upTo(100_000) }),
        fc.tuple(fc.double({ min: 0.05, max: 1, noNaN: true }), fc.double({ min: 0.05, max: 1, noNaN: true })),
        fc.string({ maxLength: 6 }),
        (cap, [a, b], id) => {
          // "full" has strictly less of every resource free than "empty"; both hold the need.
          const lo = Math.min(a, b);
          const hi = Math.max(a, b);
          const free = (x: number, extra: number): Resources =>
            res(Math.floor(cap.vcpus * x) + extra, Math.floor(cap.ram_mb * x) + extra, Math.floor(cap.disk_gb * x) + extra, Math.floor(cap.bandwidth_mbps * x) + extra);
          const need = res(1, 1, 1, 1);
          const computes = [compute('full', cap, free(lo, 1)), compute('empty', cap, free(hi, 2))];
          const spread = make();
          const pack = make({ weights: { strategy: 'pack' } });
          for (const c of computes) {
            spread.upsert(c);
            pack.upsert(c);
          }
          expect(pick(pack, req(id, need))[0]).toBe('full');
          expect(pick(spread, req(id, need))[0]).toBe('empty');
        },
      ),
      { numRuns: 200 },
    );
  });

  it('packs by the least used resource the request asks for', () => {
    const v = make({ weights: { strategy: 'pack' } });
    // Same vcpus free; "stranded" has most of its ram left, "even" does not.
    v.upsert(compute('stranded', BIG, res(8, 200_000, 250, 1250)));
    v.upsert(compute('even', BIG, res(8, 32_768, 250, 1250)));
    expect(pick(v, req('wu', ONE))[0]).toBe('even');
    // A request that asks for no ram does not weigh it: the two tie and the tie key decides.
    const firsts = new Set(Array.from({ length: 32 }, (_, i) => pick(v, req(`wu-${i}`, res(1, 0, 1, 1)))[0]));
    expect(firsts).toEqual(new Set(['stranded', 'even']));
  });

  it('packs elsewhere than on computes with labels the request does not ask for', () => {
    const ssd = compute('ssd', BIG, res(8, 32_768, 200, 1000), { labels: ['ssd', 'ssd'] });
    const plain = compute('plain', BIG, res(32, 131_072, 1000, 5000));
    const v = make({ weights: { strategy: 'pack' } });
    v.upsert(ssd);
    v.upsert(plain);
    expect(pick(v, req('wu', ONE))[0]).toBe('plain');
    expect(pick(v, req('wu', ONE, { labels: ['ssd'] }))).toEqual(['ssd']);
    const w = make({ weights: { strategy: 'pack', labels: 0 } });
    w.upsert(ssd);
    w.upsert(plain);
    expect(pick(w, req('wu', ONE))[0]).toBe('ssd');
  });

  it('follows a policy change at once, and a zone override for requests naming the zone', () => {
    const v = make();
    v.upsert(compute('empty', BIG, BIG));
    v.upsert(compute('half', BIG, res(32, 131_072, 1000, 10_000)));
    v.upsert(compute('z2-empty', BIG, BIG, { zone: 'z2' }));
    v.upsert(compute('z2-half', BIG, res(32, 131_072, 1000, 10_000), { zone: 'z2' }));
    const r = req('wu', ONE, { zone: 'z1' });
    const r2 = req('wu', ONE, { zone: 'z2' });
    expect(pick(v, r)[0]).toBe('empty');
    v.setPolicy({ policy: 'pack', byZone: {} });
    expect(v.policy).toEqual({ policy: 'pack', byZone: {} });
    expect(pick(v, r)[0]).toBe('half');
    v.setPolicy({ policy: 'pack', byZone: { z2: 'spread' } });
    expect(pick(v, r)[0]).toBe('half');
    expect(pick(v, r2)[0]).toBe('z2-empty');
    expect(pick(v, req('wu', ONE))[0]).toMatch(/half$/);
    expect(() => v.setPolicy({ policy: 'binpack' as never, byZone: {} })).toThrow(/placement_policy must be one of spread, pack, got "binpack"/);
    expect(() => v.setPolicy({ policy: 'spread', byZone: { z2: 'tight' as never } })).toThrow(/placement_policy_by_zone.z2 must be one of spread, pack/);
    expect(v.policy).toEqual({ policy: 'pack', byZone: { z2: 'spread' } });
  });

  it('weighs bandwidth headroom, and weights trade resources against it', () => {
    const v = make();
    v.upsert(compute('thin', BIG, res(64, 262_144, 2000, 100)));
    v.upsert(compute('wide', BIG, res(64, 262_144, 2000, 9000)));
    expect(pick(v, req('wu', ONE))[0]).toBe('wide');
    const first = (resource: number, bandwidth: number): string => {
      const w = make({ weights: { resource, bandwidth } });
      w.upsert(compute('cpu', BIG, res(64, 262_144, 2000, 1000)));
      w.upsert(compute('net', BIG, res(8, 262_144, 2000, 10_000)));
      return pick(w, req('wu', ONE))[0]!;
    };
    expect(first(1, 0)).toBe('cpu');
    expect(first(0, 1)).toBe('net');
  });

  it('breaks ties by the request id, replayably', () => {
    const v = make({ weights: { bandwidth: 0 } });
    for (let i = 0; i < 50; i++) v.upsert(compute(`c${i}`, BIG, BIG));
    expect(pick(v, req('wu-7', ONE))).toEqual(pick(v, req('wu-7', ONE)));
    expect(pick(v, req('wu-7', ONE))).toHaveLength(4);
    const firsts = new Set(Array.from({ length: 40 }, (_, i) => pick(v, req(`wu-${i}`, ONE))[0]));
    expect(firsts.size).toBeGreaterThan(10);
  });

  it('removes by swapping and keeps groups right', () => {
    const v = make();
    ['g', 'h', 'g'].forEach((g, i) => v.upsert(compute(`c${i}`, BIG, BIG, { groups: [g] })));
    v.remove('c0');
    v.remove('nope');
    expect(v.size).toBe(2);
    expect(pick(v, req('wu', ONE, { antiAffinity: 'g' }))).toEqual(['c1']);
    v.remove('c1');
    expect(pick(v, req('wu', ONE))).toEqual(['c2']);
  });

  it('batch consumes capacity for the next request', () => {
    const v = make();
    v.upsert(compute('a', res(4, 4096, 100, 100), res(4, 4096, 100, 100)));
    const r = req('wu', res(2, 1024, 10, 10));
    const out = v.placeBatch([r, r, r]);
    expect(out.map((p) => p.ok)).toEqual([true, true, false]);
    expect(out[2]).toMatchObject({ ok: false, rejected: { fits: 1 } });
  });

  it('applies and releases claims; ignores unknown computes; rejects bad numbers', () => {
    const v = make();
    v.upsert(compute('a', BIG, res(4, 4096, 100, 100)));
    v.applyClaim('a', res(4, 0, 0, 0));
    expect(v.place(req('wu', res(1, 0, 0, 0))).ok).toBe(false);
    v.releaseClaim('a', res(1, 0, 0, 0));
    expect(v.place(req('wu', res(1, 0, 0, 0))).ok).toBe(true);
    v.applyClaim('nope', ONE);
    v.setFree('nope', ONE);
    expect(() => v.applyClaim('a', res(-1, 0, 0, 0))).toThrow(RangeError);
    expect(() => v.upsert(compute('x', res(1.5, 0, 0, 0), ONE))).toThrow(RangeError);
    expect(() => v.place(req('wu', res(2 ** 31, 0, 0, 0)))).toThrow(RangeError);
    expect(v.size).toBe(1);
  });

  it('keeps up with updates without rebuilding', () => {
    const v = make();
    v.upsert(compute('a', BIG, BIG));
    v.upsert(compute('b', BIG, ONE));
    expect(pick(v, req('wu', ONE))[0]).toBe('a');
    v.setFree('a', res(0, 0, 0, 0));
    expect(pick(v, req('wu', ONE))).toEqual(['b']);
    v.upsert(compute('a', BIG, BIG, { zone: 'z9' }));
    expect(pick(v, req('wu', ONE, { zone: 'z9' }))).toEqual(['a']);
  });
});
