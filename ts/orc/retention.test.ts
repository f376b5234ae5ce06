// The orc's retention pass against the real ZooKeeper: it removes exactly the records its
// policy names in the shards it owns, a batch at a time, and never a unit still in flight,
// whatever its shard's ended/ directory says.
import { beforeAll, describe, expect, it } from 'vitest';
import { randomUUID } from 'node:crypto';
import { Paths } from '../zk/paths.js';
import type { Zk } from '../zk/client.js';
import { readConfig } from '../zk/config.js';
import { uniqueRoot, useZkRoot } from '../../test/support/index.js';
import { shardOf, type WorkUnitRecord } from '../common/model.js';
import type { ServerId, WorkUnitId } from '../common/ids.js';
import { acceptedServer, acceptedUnit } from '../lifecycle/index.js';
import { deletedServerName, endedUnitName, serverDeletedOps, unitEndedOps } from '../lifecycle/retention.js';
import { applyOps } from '../lifecycle/ops.js';
import { Retention } from './retention.js';
import { keyPath } from '../api/idempotency.js';
import type { ProjectId } from '../auth/policy.js';

const root = uniqueRoot('retention');
const paths = new Paths(root);
let zk: Zk;
useZkRoot(root, (z) => (zk = z));

const SHARDS = 4;
const HOUR = 3_600_000;
const NOW = Date.now();
const flavor = { vcpus: 1, ram_mb: 512, disk_gb: 1 };

beforeAll(async () => {
  await readConfig(zk, paths, { shards: SHARDS });
});

/** A server id whose shard is `n`. */
function serverIn(n: number): ServerId {
  for (;;) {
    const id = randomUUID();
    if (shardOf(id, SHARDS) === n) return id as ServerId;
  }
}

/** A unit of `server`, written with its state; an ended one is filed the way a finishing transaction files it. */
async function unit(server: ServerId, state: WorkUnitRecord['state'], finishedAgoMs: number, file = state === 'SUCCEEDED' || state === 'FAILED'): Promise<WorkUnitRecord> {
  const id = randomUUID() as WorkUnitId;
  const at = NOW - finishedAgoMs;
  const base = acceptedUnit({ id, kind: 'reboot', server_id: server, shard: shardOf(id, SHARDS), at: at - 1000 });
  const done = state === 'SUCCEEDED' || state === 'FAILED';
  const u: WorkUnitRecord = { ...base, state, updated_at: at, finished_at: done ? at : null };
  const txn = zk.txn().create(paths.workUnit(id), u);
  if (file) applyOps(txn, unitEndedOps(paths, SHARDS, u));
  await txn.commit();
  return u;
}

async function deleted(server: ServerId, agoMs: number): Promise<void> {
  const s = acceptedServer({ id: server, name: 'gone', flavor, labels: [], zone: null, at: NOW - agoMs - 5000, unit: null as never });
  await applyOps(zk.txn(), serverDeletedOps(paths, SHARDS, s, NOW - agoMs)).commit();
}

const exists = async (p: string) => (await zk.exists(p)) !== null;

describe('a retention pass', () => {
  it('removes what its policy names in its own shards, a batch at a time, and leaves everything else', async () => {
    const s0 = serverIn(0);
    const s1 = serverIn(1);
    const other = serverIn(2); // shard 2: not ours
    const old = await unit(s0, 'SUCCEEDED', 30 * HOUR);
    const oldFailed = await unit(s0, 'FAILED', 26 * HOUR);
    const young = await unit(s0, 'FAILED', 1 * HOUR);
    const running = await unit(s0, 'RUNNING', 0);
    const pending = await unit(s1, 'PENDING', 0);
    // A unit in flight whose name a bad writer (or a bug) put in ended/: never removed.
    const forged = await unit(s1, 'RUNNING', 40 * HOUR);
    await zk.create(paths.endedEntry(shardOf(s1, SHARDS), endedUnitName(NOW - 40 * HOUR, s1, forged.id)));
    // Five young units of s1: the cap (3) keeps the newest three.
    const many: WorkUnitRecord[] = [];
    for (let i = 5; i >= 1; i--) many.push(await unit(s1, 'SUCCEEDED', i * HOUR));
    // A name whose record is already gone: the name goes.
    const orphan = endedUnitName(NOW - 50 * HOUR, s0, randomUUID());
    await zk.create(paths.endedEntry(shardOf(s0, SHARDS), orphan));
    // Not our shard: kept however old.
    const elsewhere = await unit(other, 'SUCCEEDED', 100 * HOUR);
    await deleted(serverIn(0), 3 * HOUR); // past 2 h
    const keptDeleted = serverIn(1);
    await deleted(keptDeleted, 1 * HOUR);
    // Idempotency keys: one expired, one fresh, in shards we own (by the hash of their name).
    const keys: { expired: string[]; fresh: string[] } = { expired: [], fresh: [] };
    for (let i = 0; keys.expired.length < 2 || keys.fresh.length < 1; i++) {
      const p = keyPath(paths, 'p1' as ProjectId, 'POST /v1/servers', `k${i}`);
      const name = p.slice(p.lastIndexOf('/') + 1);
      if (![0, 1].includes(shardOf(name, SHARDS))) continue;
      const isExpired = keys.expired.length < 2;
      await zk.create(p, { fingerprint: 'f', answer: {}, project: 'p1', created_at: NOW - (isExpired ? 25 : 1) * HOUR });
      (isExpired ? keys.expired : keys.fresh).push(p);
    }

    const r = new Retention(zk, paths, SHARDS, () => [0, 1], undefined, {
      unitRetentionMs: 24 * HOUR,
      unitsPerServer: 3,
      deletedRetentionMs: 2 * HOUR,
      idempotencyTtlMs: 24 * HOUR,
      batch: 3,
    });
    // First pass: the batch's three oldest choices (orphan 50 h, old 30 h, oldFailed 26 h).
    const first = await r.pass(NOW);
    expect(first).toMatchObject({ units: 3, servers: 0, full: true });
    expect(await exists(paths.endedEntry(shardOf(s0, SHARDS), orphan))).toBe(false);
    expect(await exists(paths.workUnit(old.id))).toBe(false);
    expect(await exists(paths.workUnit(oldFailed.id))).toBe(false);
    expect(await exists(paths.workUnit(many[0]!.id))).toBe(true); // not yet: batch
    // Passes until nothing is left to do.
    let passes = 0;
    for (let p = await r.pass(NOW); p.full || p.units + p.servers > 0; p = await r.pass(NOW)) if (++passes > 10) throw new Error('retention never settled');

    const units = async (us: WorkUnitRecord[]) => Promise.all(us.map((u) => exists(paths.workUnit(u.id))));
    // The two oldest of s1's five went (the cap); the newest three stay.
    expect(await units(many)).toEqual([false, false, true, true, true]);
    expect(await units([young, running, pending, forged, elsewhere])).toEqual([true, true, true, true, true]);
    // The forged name stays too (it is judged again, and logged, on each pass).
    expect(await exists(paths.endedEntry(shardOf(s1, SHARDS), endedUnitName(NOW - 40 * HOUR, s1, forged.id)))).toBe(true);
    expect((await zk.get<WorkUnitRecord>(paths.workUnit(forged.id)))!.value!.state).toBe('RUNNING');
    // Deleted servers: the one past 2 h went with its name; the other is kept.
    const kept = (await zk.children(paths.deletedServers))!;
    expect(kept).toEqual([keptDeleted]);
    expect((await zk.children(paths.ended(shardOf(keptDeleted, SHARDS))))!).toContain(deletedServerName(NOW - HOUR, keptDeleted));
    // Keys: the expired ones went, the fresh one stays.
    for (const p of keys.expired) expect(await exists(p)).toBe(false);
    for (const p of keys.fresh) expect(await exists(p)).toBe(true);
    // Units: the orphan name, old, oldFailed and two of s1's five.
    expect(r.totals).toMatchObject({ units: 5, servers: 1, keys: 2, filed: 0 });
    // What ended/ still names in our shards is exactly what is kept.
    const left = [...(await zk.children(paths.ended(0)))!, ...(await zk.children(paths.ended(1)))!].sort();
    const expected = [young, ...many.slice(2)].map((u) => endedUnitName(u.finished_at!, u.server_id, u.id));
    expected.push(endedUnitName(NOW - 40 * HOUR, s1, forged.id), deletedServerName(NOW - HOUR, keptDeleted));
    expect(left).toEqual(expected.sort());
  });

  it("files an older version's ended units (no name under ended/) once, then prunes them like the rest", async () => {
    const root2 = uniqueRoot('retention-older');
    const p2 = new Paths(root2);
    await readConfig(zk, p2, { shards: SHARDS });
    try {
      const s = serverIn(1);
      // Written as an older version did: records only, nothing under ended/.
      const write = async (state: WorkUnitRecord['state'], agoMs: number) => {
        const id = randomUUID() as WorkUnitId;
        const at = NOW - agoMs;
        const u: WorkUnitRecord = { ...acceptedUnit({ id, kind: 'stop', server_id: s, shard: shardOf(id, SHARDS), at: at - 1000 }), state, updated_at: at, finished_at: state === 'RUNNING' ? null : at };
        await zk.create(p2.workUnit(id), u);
        return u;
      };
      const old = await Promise.all([write('SUCCEEDED', 30 * HOUR), write('FAILED', 40 * HOUR)]);
      const young = await write('SUCCEEDED', HOUR);
      const running = await write('RUNNING', 50 * HOUR);
      const r = new Retention(zk, p2, SHARDS, () => [0, 1, 2, 3], undefined, { unitRetentionMs: 24 * HOUR, unitsPerServer: 0, batch: 2 });
      for (let i = 0; i < 10 && !(await exists(p2.endedFiled(3))); i++) await r.pass(NOW);
      for (let n = 0; n < SHARDS; n++) expect(await exists(p2.endedFiled(n))).toBe(true);
      expect(r.totals.filed).toBe(3);
      // Filed under the server's shard, as an ending transaction would have.
      for (let i = 0; i < 3 && (await r.pass(NOW)).units > 0; i++);
      for (const u of old) expect(await exists(p2.workUnit(u.id))).toBe(false);
      expect(await exists(p2.workUnit(young.id))).toBe(true);
      expect(await exists(p2.workUnit(running.id))).toBe(true);
      expect(await zk.children(p2.ended(shardOf(s, SHARDS)))).toEqual([endedUnitName(young.finished_at!, s, young.id)]);
      // Done once: a new pass lists no unit again.
      const again = new Retention(zk, p2, SHARDS, () => [0, 1, 2, 3], undefined, { batch: 2 });
      expect((await again.pass(NOW)).filed).toBe(0);
    } finally {
      await zk.removeTree(root2);
    }
  });

  it('a shard handed over during a pass is left alone', async () => {
    const s = serverIn(3);
    const u = await unit(s, 'SUCCEEDED', 30 * HOUR);
    let owned = [3];
    const r = new Retention(zk, paths, SHARDS, () => owned, undefined, { unitRetentionMs: HOUR, batch: 10 });
    owned = [];
    expect((await r.pass(NOW)).units).toBe(0);
    expect(await exists(paths.workUnit(u.id))).toBe(true);
    owned = [3];
    expect((await r.pass(NOW)).units).toBe(1);
    expect(await exists(paths.workUnit(u.id))).toBe(false);
  });
});
