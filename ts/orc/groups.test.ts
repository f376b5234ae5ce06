// Server group placement. Pure: the membership arithmetic, the tries of each policy, and the view's
// group marks (both scorers). Against real ZooKeeper: several "orcs" (each its own session, cluster
// view and group placement) placing members of one group at once, every claim carrying the group's
// ops. Invariant: the policy holds in what ZooKeeper committed, whatever the interleaving.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { Zk } from '../zk/client.js';
import { Paths } from '../zk/paths.js';
import { createLogger } from '../common/log.js';
import type { ComputeCapacity, ServerGroupRecord } from '../common/model.js';
import type { ComputeId, GroupId, ServerId } from '../common/ids.js';
import { GROUP_POLICIES, type GroupPolicy } from '../common/vocabulary.js';
import { claimOps, membersByCompute, placedAfterClaim, type GroupRead } from '../lifecycle/groups.js';
import { applyOps } from '../lifecycle/ops.js';
import { ClusterWatch } from './cluster.js';
import { claimCapacity } from './claim.js';
import { GroupPlacement, placementTries } from './groups.js';
import { NativeClusterView, TwinClusterView, type ClusterView, type ComputeRecord } from './placement/index.js';
import { uniqueRoot, waitFor, zkConnect } from '../../test/support/index.js';

const log = createLogger({ test: 'groups' }, 'error');
const G = 'g-1' as GroupId;
const s = (n: number) => `s${n}` as ServerId;
const c = (n: number) => `c${n}` as ComputeId;
const need = { vcpus: 1, ram_mb: 128, disk_gb: 1, bandwidth_mbps: 0 };

function read(policy: GroupPolicy, placed: Record<string, string>, members: string[]): GroupRead {
  const record: ServerGroupRecord = { id: G, project: 'p', name: 'g', policy, created_at: 0, placed: placed as Record<ServerId, ComputeId> };
  return { record, version: 7, members: members as ServerId[] };
}

describe('membership arithmetic', () => {
  it('counts only members still in the group, placed, and not the one being placed', () => {
    const g = read('anti-affinity', { s1: 'c1', s2: 'c1', s3: 'c2', gone: 'c3', s4: 'c2' }, ['s1', 's2', 's3', 's4', 's5']);
    expect(membersByCompute(g, s(4))).toEqual(new Map([[c(1), 2], [c(2), 1]]));
  });

  it("a claim's record drops members that left, moves the claimed one, and its ops check membership and the version read", () => {
    const g = read('affinity', { s1: 'c1', gone: 'c3', s2: 'c9' }, ['s1', 's2']);
    expect(placedAfterClaim(g, s(2), c(1)).placed).toEqual({ s1: 'c1', s2: 'c1' });
    const paths = new Paths('/q');
    expect(claimOps(paths, g, s(2), c(1))).toEqual([
      { type: 'check', path: '/q/server-groups/g-1/members/s2', version: -1 },
      { type: 'set', path: '/q/server-groups/g-1', value: { ...g.record, placed: { s1: 'c1', s2: 'c1' } }, version: 7 },
    ]);
  });
});

describe('tries per policy', () => {
  const base = { id: 'wu', need, exclude: ['c0'] };
  it('affinity and anti-affinity are one try through the filter of that name', () => {
    expect(placementTries('affinity', G, new Map([[c(1), 1]]), base)).toEqual([{ ...base, affinity: G }]);
    expect(placementTries('anti-affinity', G, new Map([[c(1), 1]]), base)).toEqual([{ ...base, antiAffinity: G }]);
  });
  it('soft-anti-affinity: none of the group, then fewer than 2, 3, …, then anywhere', () => {
    const counts = new Map([[c(1), 3], [c(2), 1], [c(3), 2]]);
    expect(placementTries('soft-anti-affinity', G, counts, base)).toEqual([
      { ...base, antiAffinity: G },
      { ...base, exclude: ['c0', 'c1', 'c3'] },
      { ...base, exclude: ['c0', 'c1'] },
      base,
    ]);
    expect(placementTries('soft-anti-affinity', G, new Map(), base)).toEqual([{ ...base, antiAffinity: G }]);
  });
});

const views: Array<[string, () => ClusterView]> = [['twin', () => new TwinClusterView()]];
try {
  new NativeClusterView();
  views.push(['native', () => new NativeClusterView()]);
} catch {
  // The addon is built by `npm run build`; the twin alone is checked without it.
}

const compute = (n: number, vcpus = 8, alive = true): ComputeRecord => ({
  id: c(n),
  capacity: { vcpus, ram_mb: 8192, disk_gb: 100, bandwidth_mbps: 0 },
  free: { vcpus, ram_mb: 8192, disk_gb: 100, bandwidth_mbps: 0 },
  zone: 'z',
  labels: [],
  alive,
  groups: [],
});

describe.each(views)('GroupPlacement on the %s view', (_name, makeView) => {
  const placer = (view: ClusterView) => new GroupPlacement(null as never, new Paths('/q'), view);

  it('anti-affinity skips computes with a member and names its filter when every compute has one', () => {
    const view = makeView();
    for (const n of [1, 2, 3]) view.upsert(compute(n));
    const p = placer(view);
    const placed = p.place({ id: 'a', need }, read('anti-affinity', { s1: 'c1', s2: 'c2' }, ['s1', 's2', 's3']), s(3));
    expect(placed).toMatchObject({ ok: true, computeId: 'c3' });
    const refused = p.place({ id: 'b', need }, read('anti-affinity', { s1: 'c1', s2: 'c2', s3: 'c3' }, ['s1', 's2', 's3', 's4']), s(4));
    expect(refused).toMatchObject({ ok: false, rejected: { anti_affinity: 3, fits: 0 } });
  });

  it('the marks follow the group as read: a member that left frees its compute, one that moved takes its new one', () => {
    const view = makeView();
    for (const n of [1, 2]) view.upsert(compute(n));
    const p = placer(view);
    expect(p.place({ id: 'a', need }, read('anti-affinity', { s1: 'c1', s2: 'c2' }, ['s1', 's2', 's3']), s(3)).ok).toBe(false);
    expect(p.place({ id: 'a', need }, read('anti-affinity', { s1: 'c1', s2: 'c2' }, ['s1', 's3']), s(3))).toMatchObject({ ok: true, computeId: 'c2' });
    // A compute the view re-adds (it went and came back) carries no marks; the next read puts them back.
    view.remove(c(1));
    view.upsert(compute(1));
    expect(p.place({ id: 'a', need }, read('anti-affinity', { s1: 'c1', s2: 'c2' }, ['s1', 's2', 's3']), s(3)).ok).toBe(false);
  });

  it('affinity follows the first member; the others are removed under the affinity filter when its compute is full', () => {
    const view = makeView();
    for (const n of [1, 2, 3]) view.upsert(compute(n, 2));
    const p = placer(view);
    expect(p.place({ id: 'a', need }, read('affinity', { s1: 'c2' }, ['s1', 's2']), s(2))).toMatchObject({ ok: true, computeId: 'c2' });
    view.applyClaim(c(2), { ...need, vcpus: 64 }); // c2 full, whatever the overcommit
    expect(p.place({ id: 'b', need }, read('affinity', { s1: 'c2' }, ['s1', 's2']), s(2))).toMatchObject({ ok: false, rejected: { affinity: 2, fits: 1 } });
  });

  it('soft-anti-affinity lands where the fewest members are, and still places when every compute has some', () => {
    const view = makeView();
    for (const n of [1, 2, 3]) view.upsert(compute(n));
    const p = placer(view);
    const g = read('soft-anti-affinity', { s1: 'c1', s2: 'c1', s3: 'c2', s4: 'c3', s5: 'c3' }, ['s1', 's2', 's3', 's4', 's5', 's6']);
    expect(p.place({ id: 'a', need }, g, s(6))).toMatchObject({ ok: true, computeId: 'c2' });
    const all = read('soft-anti-affinity', { s1: 'c1', s2: 'c2', s3: 'c3' }, ['s1', 's2', 's3', 's4']);
    expect(p.place({ id: 'a', need }, all, s(4)).ok).toBe(true);
  });
});

// ---- concurrent placements across sessions, against real ZooKeeper ---------------------------------

let sessions: Zk[] = [];
beforeAll(async () => {
  sessions = await Promise.all(Array.from({ length: 3 }, () => Zk.connect(zkConnect())));
});
afterAll(async () => {
  await Promise.all(sessions.map((z) => z.close()));
});

async function publishCompute(zk: Zk, paths: Paths, id: ComputeId): Promise<void> {
  const cap: ComputeCapacity = { vcpus: 64, ram_mb: 65536, disk_gb: 1000, bandwidth_mbps: 0, zone: 'z', labels: [], libvirt_uri: 'test:///default' };
  await zk.mkdirp(paths.self(id));
  await zk.mkdirp(paths.nextTasks(id));
  await zk.create(paths.selfCapacity(id), cap);
  await zk.create(paths.selfFree(id), { vcpus: 64, ram_mb: 65536, disk_gb: 1000, bandwidth_mbps: 0 });
  await zk.create(paths.alive(id), { pid: 0, host: 'test', started_at: 0 }, 'ephemeral');
}

/** What an orc does for one member: read the group, place, claim with the group's ops; again on a lost race. */
async function placeMember(zk: Zk, paths: Paths, w: ClusterWatch, groups: GroupPlacement, self: ServerId): Promise<ComputeId | 'NO_VALID_HOST'> {
  return groups.turn(G, async () => {
    for (let attempt = 0; attempt < 100; attempt++) {
      const g = (await groups.read(G))!;
      const p = groups.place({ id: self, need }, g, self);
      if (!p.ok) return 'NO_VALID_HOST';
      const target = p.computeId as ComputeId;
      const out = await claimCapacity(zk, paths, w, target, need, (txn) => applyOps(txn, claimOps(paths, g, self, target)), [paths.serverGroup(G)]);
      if (out === 'claimed') return target;
      expect(out).toBe('conflict');
    }
    throw new Error(`member ${self} exhausted its attempts`);
  });
}

describe('members placed at once by several orcs', () => {
  it('property: the committed placements keep the policy (anti-affinity: distinct computes, the rest refused; affinity: one compute; soft: counts within one)', async () => {
    await fc.assert(
      fc.asyncProperty(fc.constantFrom(...GROUP_POLICIES), fc.integer({ min: 1, max: 4 }), fc.integer({ min: 2, max: 3 }), fc.integer({ min: 1, max: 7 }), async (policy, computes, orcs, members) => {
        const paths = new Paths(uniqueRoot('groups'));
        const admin = sessions[0]!;
        await admin.mkdirp(paths.computes);
        const ids = Array.from({ length: computes }, (_, i) => c(i + 1));
        await Promise.all(ids.map((id) => publishCompute(admin, paths, id)));
        const record: ServerGroupRecord = { id: G, project: 'p', name: 'g', policy, created_at: 0, placed: {} };
        await admin.mkdirp(paths.serverGroups);
        await admin.txn().create(paths.serverGroup(G), record).create(paths.groupMembers(G)).commit();
        const servers = Array.from({ length: members }, (_, i) => s(i + 1));
        for (const m of servers) await admin.create(paths.groupMember(G, m));
        const watches = Array.from({ length: orcs }, (_, o) => {
          const w = new ClusterWatch(sessions[o]!, paths, new TwinClusterView(), log);
          w.start();
          return w;
        });
        await Promise.all(watches.map((w) => waitFor(() => w.computes.size === ids.length, { what: 'views to fill' })));
        const placers = watches.map((w) => new GroupPlacement(sessions[watches.indexOf(w)]!, paths, w.view));
        // Members dealt round-robin to the orcs, all started at once.
        const outcomes = await Promise.all(servers.map((m, i) => placeMember(sessions[i % orcs]!, paths, watches[i % orcs]!, placers[i % orcs]!, m)));
        for (const w of watches) w.stop();

        const committed = (await admin.get<ServerGroupRecord>(paths.serverGroup(G)))!.value!.placed;
        const on = servers.map((m) => committed[m]).filter((x): x is ComputeId => !!x);
        expect(on, 'each placed member is in the record where its claim put it').toEqual(outcomes.filter((o) => o !== 'NO_VALID_HOST'));
        const counts = ids.map((id) => on.filter((x) => x === id).length);
        if (policy === 'anti-affinity') {
          expect(new Set(on).size).toBe(on.length);
          expect(on.length).toBe(Math.min(members, computes));
        } else if (policy === 'affinity') {
          expect(new Set(on).size).toBe(1);
          expect(on.length).toBe(members);
        } else {
          expect(on.length).toBe(members);
          expect(Math.max(...counts) - Math.min(...counts)).toBeLessThanOrEqual(1);
        }
        await admin.removeTree(paths.root);
      }),
      { numRuns: 30 },
    );
  }, 180_000);
});
