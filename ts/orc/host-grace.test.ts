// After a power cut every session expires at once, and the orcs are back before the computes have
// re-registered: a build placed then found no live compute and failed NO_VALID_HOST. Against the
// real ZooKeeper and an orc in this process; the computes are their ZooKeeper records, "down"
// while their `alive` node is absent. Invariant: within the grace after the orc starts (or gains
// the shard), a build that only a down compute could hold stays PENDING and is placed as soon as
// that compute is back; past the grace, or if that compute is cordoned, it fails NO_VALID_HOST.
import { randomUUID } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { Zk } from '../zk/client.js';
import { Paths } from '../zk/paths.js';
import { readConfig } from '../zk/config.js';
import { createLogger } from '../common/log.js';
import { shardOf, type BuildRequest, type ComputeCapacity, type Consumes, type WorkUnitRecord } from '../common/model.js';
import type { ComputeId, ServerId, WorkUnitId } from '../common/ids.js';
import { acceptedServer, acceptedUnit } from '../lifecycle/index.js';
import { Orc } from './orc.js';
import { NativeClusterView } from './placement/native.js';
import { uniqueRoot, useZkSession, waitFor, zkConnect } from '../../test/support/index.js';

const FULL: Consumes = { vcpus: 8, ram_mb: 8192, disk_gb: 100, bandwidth_mbps: 1000 };
const flavor = { vcpus: 1, ram_mb: 1024, disk_gb: 10 };
const SHARDS = 2;
const BACK = 'back' as ComputeId;

/** The file's admin session; what a test registers with `cleanup` goes after the file. */
const session = useZkSession();

/** One compute that has been in the cluster (its records) but is down; an orc with the given grace. */
async function world(o: { hostGraceMs: number; cordoned?: boolean }): Promise<{ paths: Paths; startedAt: number }> {
  const paths = new Paths(uniqueRoot('host-grace'));
  await readConfig(session.zk, paths, { shards: SHARDS, overcommit: { vcpus: 1, ram_mb: 1, disk_gb: 1, bandwidth_mbps: 1 } });
  const cap: ComputeCapacity = { ...FULL, zone: 'z1', labels: [], libvirt_uri: 'test:///default' };
  await session.zk.mkdirp(paths.self(BACK));
  await session.zk.mkdirp(paths.nextTasks(BACK));
  await session.zk.mkdirp(paths.managing(BACK));
  await session.zk.create(paths.selfCapacity(BACK), cap);
  await session.zk.create(paths.selfFree(BACK), FULL);
  if (o.cordoned) await session.zk.create(paths.cordoned(BACK), { at: Date.now() });
  session.cleanup(() => session.zk.removeTree(paths.root));
  const zk = await Zk.connect(zkConnect());
  const orc = new Orc({ zk, paths, log: createLogger({ test: 'host-grace' }, 'error'), view: new NativeClusterView(), id: 'orc-1', sweepIntervalMs: 200, hostGraceMs: o.hostGraceMs });
  session.cleanup(async () => {
    await orc.stop();
    await zk.close();
  });
  const startedAt = Date.now();
  await orc.start();
  await waitFor(() => orc.shards.length === SHARDS, { what: 'the orc to own every shard' });
  return { paths, startedAt };
}

/** A build as the API accepts it: unit, server and inbox entry. */
async function build(paths: Paths): Promise<WorkUnitId> {
  const wuId = randomUUID() as WorkUnitId;
  const vm = randomUUID() as ServerId;
  const at = Date.now();
  const request: BuildRequest = { name: 'vm', flavor, bandwidth_mbps: 0 };
  const unit = acceptedUnit({ id: wuId, kind: 'build', server_id: vm, shard: shardOf(wuId, SHARDS), at, request });
  const server = acceptedServer({ id: vm, name: 'vm', flavor, labels: [], zone: null, at, unit: wuId });
  await session.zk.txn().create(paths.workUnit(wuId), unit).create(paths.server(vm), server).create(paths.inboxEntry(unit.shard, wuId)).commit();
  return wuId;
}

const unit = async (paths: Paths, wu: WorkUnitId) => (await session.zk.get<WorkUnitRecord>(paths.workUnit(wu)))!.value!;
const decided = (paths: Paths, wu: WorkUnitId, timeoutMs = 10_000) =>
  waitFor(
    async () => {
      const r = await unit(paths, wu);
      return r.state !== 'PENDING' ? r : undefined;
    },
    { what: `unit ${wu} placed or failed`, timeoutMs },
  );

describe('builds while computes may still be coming back', () => {
  it('a build only a down compute could hold waits PENDING within the grace and is placed once that compute is back', async () => {
    const { paths } = await world({ hostGraceMs: 20_000 });
    const wu = await build(paths);
    // Several sweeps (200 ms each) pass over it: it is neither failed nor placed.
    await new Promise((r) => setTimeout(r, 1500));
    expect((await unit(paths, wu)).state).toBe('PENDING');
    // The compute re-registers: the build goes there.
    await session.zk.create(paths.alive(BACK), { pid: 0, host: 'test', started_at: Date.now() }, 'ephemeral');
    const placed = await decided(paths, wu, 5000);
    expect(placed.state).toBe('SCHEDULED');
    expect(placed.compute_id).toBe(BACK);
  });

  it('past the grace the build fails NO_VALID_HOST, not before', async () => {
    const grace = 1500;
    const { paths, startedAt } = await world({ hostGraceMs: grace });
    const wu = await build(paths);
    const failed = await decided(paths, wu);
    expect(failed.state).toBe('FAILED');
    expect(failed.error?.code).toBe('NO_VALID_HOST');
    expect(failed.updated_at - startedAt).toBeGreaterThanOrEqual(grace);
  });

  it('a cordoned down compute is not waited for', async () => {
    const { paths, startedAt } = await world({ hostGraceMs: 20_000, cordoned: true });
    const wu = await build(paths);
    const failed = await decided(paths, wu);
    expect(failed.error?.code).toBe('NO_VALID_HOST');
    expect(failed.updated_at - startedAt).toBeLessThan(20_000);
  });
});
