// Properties on random clusters, random update histories (policy changes included) and random
// requests, under both policies: the native scorer and the twin pick the same compute (and
// alternates) and count the same rejections; no pick is ever infeasible; a batch never
// over-commits a compute. The native cases need the addon: without it they fail (CI builds it).
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { NativeClusterView } from './native.js';
import { TwinClusterView } from './twin.js';
import type { ComputeRecord, Placement, PlacementRequest, PolicySetting, Resources, ScorerOptions } from './types.js';

const KEYS = ['vcpus', 'ram_mb', 'disk_gb', 'bandwidth_mbps'] as const;
const ZONES = ['z1', 'z2', 'z3'];
const LABELS = ['ssd', 'gpu', 'sriov', 'arm', 'nvme'];
const GROUPS = ['g1', 'g2', 'g3', 'g4'];
const N_IDS = 40;

const resources = (max: Resources): fc.Arbitrary<Resources> =>
  fc.record({
    vcpus: fc.integer({ min: 0, max: max.vcpus }),
    ram_mb: fc.integer({ min: 0, max: max.ram_mb }),
    disk_gb: fc.integer({ min: 0, max: max.disk_gb }),
    bandwidth_mbps: fc.integer({ min: 0, max: max.bandwidth_mbps }),
  });

/** Needs where a resource is often not asked for at all (pack counts only those asked). */
const needs = (max: Resources): fc.Arbitrary<Resources> =>
  fc.record({
    vcpus: fc.oneof(fc.constant(0), fc.integer({ min: 0, max: max.vcpus })),
    ram_mb: fc.oneof(fc.constant(0), fc.integer({ min: 0, max: max.ram_mb })),
    disk_gb: fc.oneof(fc.constant(0), fc.integer({ min: 0, max: max.disk_gb })),
    bandwidth_mbps: fc.oneof(fc.constant(0), fc.integer({ min: 0, max: max.bandwidth_mbps })),
  });

const idOf = (i: number): string => `compute-${i}`;

const computeArb: fc.Arbitrary<ComputeRecord> = fc
  .record({
    id: fc.integer({ min: 0, max: N_IDS - 1 }).map(idOf),
    capacity: resources({ vcpus: 16, ram_mb: 4096, disk_gb: 200, bandwidth_mbps: 1000 }),
    // Free as per-mille of capacity, past it sometimes, and a little below zero now and then.
    frac: fc.tuple(...KEYS.map(() => fc.integer({ min: 0, max: 1199 }))),
    zone: fc.constantFrom(...ZONES),
    labels: fc.uniqueArray(fc.constantFrom(...LABELS), { maxLength: 3 }),
    alive: fc.integer({ min: 0, max: 9 }).map((x) => x < 9),
    groups: fc.uniqueArray(fc.constantFrom(...GROUPS), { maxLength: 2 }),
  })
  .map(({ frac, capacity, ...c }) => {
    const free = {} as Resources;
    KEYS.forEach((k, r) => {
      free[k] = Math.floor((capacity[k] * frac[r]!) / 1000) - (frac[r]! % 7 === 0 ? 3 : 0);
    });
    return { ...c, capacity, free };
  });

const requestArb: fc.Arbitrary<PlacementRequest> = fc
  .record(
    {
      id: fc.string({ minLength: 1, maxLength: 12 }),
      need: needs({ vcpus: 6, ram_mb: 1500, disk_gb: 80, bandwidth_mbps: 400 }),
      zone: fc.constantFrom(...ZONES, 'unknown'),
      labels: fc.array(fc.constantFrom(...LABELS, 'unknown'), { maxLength: 2 }),
      affinity: fc.constantFrom(...GROUPS, 'unknown'),
      antiAffinity: fc.constantFrom(...GROUPS, 'unknown'),
      exclude: fc.array(fc.integer({ min: 0, max: N_IDS - 1 }).map(idOf), { maxLength: 3 }),
    },
    { requiredKeys: ['id', 'need'] },
  )
  .map((r) => r as PlacementRequest);

type Op =
  | { op: 'upsert'; c: ComputeRecord }
  | { op: 'remove'; id: string }
  | { op: 'claim'; id: string; need: Resources; apply: boolean }
  | { op: 'free'; id: string; free: Resources }
  | { op: 'alive'; id: string; alive: boolean }
  | { op: 'groups'; id: string; groups: string[] }
  | { op: 'policy'; setting: PolicySetting };

const policyArb = fc.constantFrom('spread' as const, 'pack' as const);
const settingArb: fc.Arbitrary<PolicySetting> = fc.record({
  policy: policyArb,
  byZone: fc.dictionary(fc.constantFrom(...ZONES, 'unknown'), policyArb, { maxKeys: 3 }),
});

const idArb = fc.integer({ min: 0, max: N_IDS - 1 }).map(idOf);
const opArb: fc.Arbitrary<Op> = fc.oneof(
  { weight: 8, arbitrary: computeArb.map((c) => ({ op: 'upsert' as const, c })) },
  { weight: 1, arbitrary: idArb.map((id) => ({ op: 'remove' as const, id })) },
  {
    weight: 2,
    arbitrary: fc
      .record({ id: idArb, need: resources({ vcpus: 4, ram_mb: 1024, disk_gb: 50, bandwidth_mbps: 200 }), apply: fc.boolean() })
      .map((x) => ({ op: 'claim' as const, ...x })),
  },
  {
    weight: 1,
    arbitrary: fc
      .record({ id: idArb, free: resources({ vcpus: 16, ram_mb: 4096, disk_gb: 200, bandwidth_mbps: 1000 }) })
      .map((x) => ({ op: 'free' as const, ...x })),
  },
  { weight: 1, arbitrary: fc.record({ id: idArb, alive: fc.boolean() }).map((x) => ({ op: 'alive' as const, ...x })) },
  {
    weight: 1,
    arbitrary: fc
      .record({ id: idArb, groups: fc.uniqueArray(fc.constantFrom(...GROUPS), { maxLength: 2 }) })
      .map((x) => ({ op: 'groups' as const, ...x })),
  },
  { weight: 1, arbitrary: settingArb.map((setting) => ({ op: 'policy' as const, setting })) },
);

const optionsArb: fc.Arbitrary<ScorerOptions> = fc.record({
  policy: fc.option(settingArb, { nil: undefined }),
  overcommit: fc.record({
    vcpus: fc.oneof(fc.constant(1), fc.double({ min: 0.5, max: 4, noNaN: true })),
    ram_mb: fc.oneof(fc.constant(1), fc.double({ min: 0.5, max: 2, noNaN: true })),
    disk_gb: fc.constant(1),
    bandwidth_mbps: fc.oneof(fc.constant(1), fc.constant(1.5)),
  }),
  weights: fc.record({
    strategy: policyArb,
    resource: fc.oneof(fc.constant(1), fc.double({ min: 0, max: 3, noNaN: true })),
    bandwidth: fc.oneof(fc.constant(0.5), fc.double({ min: 0, max: 3, noNaN: true })),
    labels: fc.oneof(fc.constant(1), fc.constant(0), fc.double({ min: 0, max: 3, noNaN: true })),
  }),
  alternates: fc.integer({ min: 0, max: 4 }),
});

type AnyView = TwinClusterView | NativeClusterView;

function apply(v: AnyView, ops: Op[]): void {
  for (const o of ops) {
    switch (o.op) {
      case 'upsert':
        v.upsert(o.c);
        break;
      case 'remove':
        v.remove(o.id);
        break;
      case 'claim':
        if (o.apply) v.applyClaim(o.id, o.need);
        else v.releaseClaim(o.id, o.need);
        break;
      case 'free':
        v.setFree(o.id, o.free);
        break;
      case 'alive':
        v.setAlive(o.id, o.alive);
        break;
      case 'groups':
        v.setGroups(o.id, o.groups);
        break;
      case 'policy':
        v.setPolicy(o.setting);
        break;
    }
  }
}

/** A tiny model of what the view holds, for feasibility checks independent of both scorers. */
function model(opts: ScorerOptions, ops: Op[]): Map<string, ComputeRecord> {
  const m = new Map<string, ComputeRecord>();
  for (const o of ops) {
    if (o.op === 'policy') continue;
    const c = 'id' in o ? m.get(o.id) : undefined;
    if (o.op === 'upsert') m.set(o.c.id, structuredClone(o.c));
    else if (o.op === 'remove') m.delete(o.id);
    else if (!c) continue;
    else if (o.op === 'claim') for (const k of KEYS) c.free[k] += (o.apply ? -1 : 1) * o.need[k];
    else if (o.op === 'free') c.free = { ...o.free };
    else if (o.op === 'alive') c.alive = o.alive;
    else if (o.op === 'groups') c.groups = [...o.groups];
  }
  void opts;
  return m;
}

/** Exact integer form of the fits rule: need*1000 <= free*1000 + capacity*(pm-1000). */
function fits(c: ComputeRecord, need: Resources, opts: ScorerOptions): boolean {
  return KEYS.every((k) => {
    const pm = Math.round((opts.overcommit?.[k] ?? 1) * 1000);
    return need[k] * 1000 <= c.free[k] * 1000 + c.capacity[k] * (pm - 1000);
  });
}

const RUNS = Number(process.env.QUARK_PROPERTY_RUNS ?? 200);

describe('placement properties', () => {
  it('native and twin pick the same computes and count the same rejections', () => {
    fc.assert(
      fc.property(optionsArb, fc.array(opArb, { maxLength: 200 }), fc.array(requestArb, { minLength: 1, maxLength: 8 }), fc.boolean(), (opts, ops, reqs, simd) => {
        const twin = new TwinClusterView(opts);
        const native = new NativeClusterView(opts);
        native.setSimd(simd);
        apply(twin, ops);
        apply(native, ops);
        expect(native.size).toBe(twin.size);
        for (const r of reqs) expect(native.placeExplained(r)).toEqual(twin.placeExplained(r));
      }),
      { numRuns: RUNS },
    );
  });

  // Mathematically equal scores whose f32 values depend on the order of operations: any
  // divergence in the arithmetic between the two shows up as a different pick.
  it('native and twin agree where only rounding separates computes', () => {
    const perms = [[0, 1, 2], [0, 2, 1], [1, 0, 2], [1, 2, 0], [2, 0, 1], [2, 1, 0]] as const;
    fc.assert(
      fc.property(
        optionsArb,
        fc.integer({ min: 1, max: 2_000_000 }),
        fc.tuple(fc.nat(), fc.nat(), fc.nat()),
        fc.integer({ min: 1, max: 100_000 }),
        fc.array(fc.tuple(fc.string({ maxLength: 6 }), fc.integer({ min: 0, max: 50 })), { minLength: 1, maxLength: 6 }),
        (opts, cap, triple, bw, reqs) => {
          const twin = new TwinClusterView(opts);
          const native = new NativeClusterView(opts);
          const f = triple.map((x) => x % (cap + 1));
          perms.forEach((p, i) => {
            const c: ComputeRecord = {
              id: `p${i}`,
              capacity: { vcpus: cap, ram_mb: cap, disk_gb: cap, bandwidth_mbps: bw },
              free: { vcpus: f[p[0]]!, ram_mb: f[p[1]]!, disk_gb: f[p[2]]!, bandwidth_mbps: bw - (i % 2) },
              zone: 'z',
              labels: [],
              alive: true,
              groups: [],
            };
            twin.upsert(c);
            native.upsert(c);
          });
          for (const [id, n] of reqs) {
            const r: PlacementRequest = { id, need: { vcpus: n, ram_mb: n, disk_gb: n, bandwidth_mbps: 0 } };
            expect(native.placeExplained(r)).toEqual(twin.placeExplained(r));
          }
        },
      ),
      { numRuns: RUNS * 5 },
    );
  });

  // A request follows its zone's override, else the cluster's policy: both views agree with a
  // view that has that one policy for everything, on computes that all fit.
  it.each([['twin'], ['native']])('%s places a request by its zone override, else by the cluster policy', (impl) => {
    const make = (o: ScorerOptions): AnyView => (impl === 'twin' ? new TwinClusterView(o) : new NativeClusterView(o));
    const roomy = computeArb.map((c) => ({ ...c, alive: true, capacity: { ...c.capacity, vcpus: c.capacity.vcpus + 8 } }));
    fc.assert(
      fc.property(
        settingArb,
        fc.array(roomy, { minLength: 2, maxLength: 30 }),
        fc.array(fc.record({ id: fc.string({ maxLength: 8 }), zone: fc.option(fc.constantFrom(...ZONES, 'unknown'), { nil: undefined }), need: needs({ vcpus: 2, ram_mb: 100, disk_gb: 10, bandwidth_mbps: 50 }) }), {
          minLength: 1,
          maxLength: 8,
        }),
        (setting, computes, reqs) => {
          const v = make({});
          v.setPolicy(setting);
          const single = { spread: make({ weights: { strategy: 'spread' } }), pack: make({ weights: { strategy: 'pack' } }) };
          for (const c of computes) for (const x of [v, single.spread, single.pack]) x.upsert(c);
          for (const r of reqs) {
            const req: PlacementRequest = r.zone === undefined ? { id: r.id, need: r.need } : r;
            const want = r.zone !== undefined && r.zone in setting.byZone ? setting.byZone[r.zone]! : setting.policy;
            expect(v.place(req)).toEqual(single[want].place(req));
          }
        },
      ),
      { numRuns: RUNS },
    );
  });

  it.each([['twin'], ['native']])('%s never picks an infeasible compute', (impl) => {
    fc.assert(
      fc.property(optionsArb, fc.array(opArb, { maxLength: 200 }), fc.array(requestArb, { minLength: 1, maxLength: 8 }), (opts, ops, reqs) => {
        const v = impl === 'twin' ? new TwinClusterView(opts) : new NativeClusterView(opts);
        apply(v, ops);
        const m = model(opts, ops);
        for (const r of reqs) {
          const e = v.placeExplained(r);
          const sum = Object.values(e.rejected).reduce((a, b) => a + b, 0);
          expect(e.considered).toBe(m.size);
          expect(sum === e.considered).toBe(!e.placement.ok);
          if (!e.placement.ok) continue;
          for (const id of [e.placement.computeId, ...e.placement.alternates]) {
            const c = m.get(id)!;
            expect(c.alive).toBe(true);
            expect(fits(c, r.need, opts)).toBe(true);
            expect(r.exclude ?? []).not.toContain(id);
            if (r.zone) expect(c.zone).toBe(r.zone);
            for (const l of r.labels ?? []) expect(c.labels).toContain(l);
            if (r.antiAffinity) expect(c.groups).not.toContain(r.antiAffinity);
          }
        }
      }),
      { numRuns: RUNS },
    );
  });

  it.each([['twin'], ['native']])('%s batch never over-commits a compute', (impl) => {
    fc.assert(
      fc.property(optionsArb, fc.array(opArb, { maxLength: 150 }), fc.array(requestArb, { minLength: 1, maxLength: 60 }), (opts, ops, reqs) => {
        const v = impl === 'twin' ? new TwinClusterView(opts) : new NativeClusterView(opts);
        apply(v, ops);
        const m = model(opts, ops);
        const out: Placement[] = v.placeBatch(reqs);
        const taken = new Map<string, Resources>();
        out.forEach((p, i) => {
          if (!p.ok) return;
          const t = taken.get(p.computeId) ?? { vcpus: 0, ram_mb: 0, disk_gb: 0, bandwidth_mbps: 0 };
          for (const k of KEYS) t[k] += reqs[i]!.need[k];
          taken.set(p.computeId, t);
        });
        for (const [id, t] of taken) expect(fits(m.get(id)!, t, opts)).toBe(true);
        // The batch equals placing one by one and claiming each success.
        const one = impl === 'twin' ? new TwinClusterView(opts) : new NativeClusterView(opts);
        apply(one, ops);
        const seq = reqs.map((r) => {
          const p = one.place(r);
          if (p.ok) one.applyClaim(p.computeId, r.need);
          return p;
        });
        expect(out).toEqual(seq);
      }),
      { numRuns: RUNS },
    );
  });
});
