// Quota arithmetic and the release ops, without ZooKeeper; the ZooKeeper side is in ts/api/quota.test.ts.
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { AuthPaths } from './layout.js';
import { asProjectId } from './policy.js';
import { addUsage, chargeOf, effectiveUsage, excess, markerName, NO_USAGE, parseMarker, releaseOps, releasedSum, type Usage } from './quota.js';

const ap = new AuthPaths({ root: '/q' });
const sid = '11111111-2222-4333-8444-555555555555';

describe('excess', () => {
  it('names each limit a request would pass, with the numbers', () => {
    const used: Usage = { instances: 2, vcpus: 6, ram_mb: 4096, disk_gb: 40 };
    expect(excess({ instances: 3, vcpus: 8 }, used, chargeOf({ vcpus: 2, ram_mb: 512, disk_gb: 5 }))).toEqual([]);
    expect(excess({ instances: 3, vcpus: 7, disk_gb: null }, used, chargeOf({ vcpus: 2, ram_mb: 512, disk_gb: 5 }))).toEqual([
      { resource: 'vcpus', limit: 7, in_use: 6, requested: 2 },
    ]);
    expect(excess({ instances: 2, ram_mb: 4096 }, used, chargeOf({ vcpus: 1, ram_mb: 1, disk_gb: 0 })).map((e) => e.resource)).toEqual(['instances', 'ram_mb']);
    expect(excess(null, used, chargeOf({ vcpus: 1000, ram_mb: 1, disk_gb: 0 }))).toEqual([]);
  });

  it('a quota of 0 refuses everything', () => {
    expect(excess({ instances: 0 }, NO_USAGE, chargeOf({ vcpus: 1, ram_mb: 16, disk_gb: 0 }))).toHaveLength(1);
  });
});

describe('release markers', () => {
  it('carry the charge in their name, and a list of names sums to what was released', () => {
    fc.assert(
      fc.property(
        fc.array(fc.record({ vcpus: fc.integer({ min: 1, max: 1024 }), ram_mb: fc.integer({ min: 16, max: 16 * 1024 * 1024 }), disk_gb: fc.integer({ min: 0, max: 1024 * 1024 }) }), { maxLength: 20 }),
        (flavors) => {
          const names = flavors.map((f, i) => markerName(`00000000-0000-4000-8000-${String(i).padStart(12, '0')}`, chargeOf(f)));
          for (let i = 0; i < names.length; i++) expect(parseMarker(names[i]!)).toEqual(chargeOf(flavors[i]!));
          expect(releasedSum(names)).toEqual(flavors.reduce<Usage>((u, f) => addUsage(u, chargeOf(f)), NO_USAGE));
        },
      ),
    );
    expect(parseMarker('junk')).toBeNull();
    expect(releasedSum(['junk', '../x'])).toEqual(NO_USAGE);
  });

  it('usage is the counter less what is released but not folded, never below zero', () => {
    const counter: Usage = { instances: 3, vcpus: 6, ram_mb: 3072, disk_gb: 30 };
    const m = markerName(sid, chargeOf({ vcpus: 2, ram_mb: 1024, disk_gb: 10 }));
    expect(effectiveUsage(counter, [m])).toEqual({ instances: 2, vcpus: 4, ram_mb: 2048, disk_gb: 20 });
    expect(effectiveUsage(NO_USAGE, [m])).toEqual(NO_USAGE);
  });
});

describe('releaseOps', () => {
  it('removes the charge at the version read and leaves the marker; no counter is written', () => {
    const charge = { value: { project: asProjectId('p1'), instances: 1, vcpus: 2, ram_mb: 512, disk_gb: 5 }, version: 0 };
    expect(releaseOps(ap, sid, charge)).toEqual([
      { type: 'remove', path: `/q/charges/${sid}`, version: 0 },
      { type: 'create', path: `/q/projects/p1/released/${sid}_2_512_5` },
    ]);
  });

  it('a server without a charge releases nothing, so a second release is a no-op', () => {
    expect(releaseOps(ap, sid, null)).toEqual([]);
  });

  it('a malformed charge is removed without a marker', () => {
    expect(releaseOps(ap, sid, { value: { project: '../../x' }, version: 3 })).toEqual([{ type: 'remove', path: `/q/charges/${sid}`, version: 3 }]);
  });
});
