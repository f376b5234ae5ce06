// The orc's view of self/free through a persistent watch: its own claim costs no read, anyone
// else's write marks the compute stale and is read once, when it matters (a claim on it, a
// placement that found no host, the sweep), and a write made while the connection was down is
// read on reconnect.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Zk, type ConnectionState } from '../zk/client.js';
import { Paths } from '../zk/paths.js';
import { createLogger } from '../common/log.js';
import type { ComputeCapacity, Consumes } from '../common/model.js';
import type { ComputeId } from '../common/ids.js';
import { ClusterWatch } from './cluster.js';
import { claimCapacity } from './claim.js';
import { TwinClusterView } from './placement/twin.js';
import { uniqueRoot, waitFor, zkConnect } from '../../test/support/index.js';
import { FaultyLink } from '../../test/support/proxy.js';

const log = createLogger({ test: 'cluster-free' }, 'error');
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const id = 'c0' as ComputeId;
const FULL: Consumes = { vcpus: 8, ram_mb: 8192, disk_gb: 100, bandwidth_mbps: 0 };
let admin: Zk;

beforeAll(async () => {
  admin = await Zk.connect(zkConnect());
});
afterAll(async () => {
  await admin.close();
});

async function world(): Promise<Paths> {
  const paths = new Paths(uniqueRoot('cluster-free'));
  const cap: ComputeCapacity = { ...FULL, zone: 'z', labels: [], libvirt_uri: 'test:///default' };
  await admin.mkdirp(paths.self(id));
  await admin.mkdirp(paths.nextTasks(id));
  await admin.create(paths.selfCapacity(id), cap);
  await admin.create(paths.selfFree(id), FULL);
  await admin.create(paths.alive(id), { pid: 0, host: 'test', started_at: 0 }, 'ephemeral');
  return paths;
}

describe('ClusterWatch follows self/free', () => {
  it("reads nothing after its own claim; another session's write is read once, by the next claim on it", async () => {
    const paths = await world();
    const zk = await Zk.connect(zkConnect());
    const w = new ClusterWatch(zk, paths, new TwinClusterView(), log);
    try {
      w.start();
      await waitFor(() => w.computes.get(id)?.freeVersion === 0, { what: 'the view to fill' });
      const reads = zk.counters.reads;
      const need: Consumes = { vcpus: 2, ram_mb: 1024, disk_gb: 0, bandwidth_mbps: 0 };
      for (let i = 0; i < 3; i++) {
        expect(await claimCapacity(zk, paths, w, id, need, (txn) => txn.create(paths.nextTask(id, `t${i}` as never), need))).toBe('claimed');
      }
      await sleep(200);
      expect(zk.counters.reads).toBe(reads); // its own three writes: no read
      expect(w.computes.get(id)).toMatchObject({ free: { vcpus: 2, ram_mb: 8192 - 3072 }, freeVersion: 3 });

      await admin.set(paths.selfFree(id), FULL, 3); // e.g. the compute releasing everything
      await waitFor(() => (w.computes.get(id)?.staleSince ?? 0) > 0, { what: 'the view to mark the write' });
      await sleep(200);
      expect(zk.counters.reads).toBe(reads); // marked, not read
      expect(w.computes.get(id)).toMatchObject({ freeVersion: 3 });

      // The next claim reads it first and then commits against version 4, not the stale 3.
      expect(await claimCapacity(zk, paths, w, id, need, (txn) => txn.create(paths.nextTask(id, 't3' as never), need))).toBe('claimed');
      expect(zk.counters.reads).toBe(reads + 1);
      expect(w.computes.get(id)).toMatchObject({ free: { vcpus: 6, ram_mb: 8192 - 1024 }, freeVersion: 5, staleSince: 0 });

      // A write that leaves too little for the claim: read, and the claim is refused without a
      // transaction (the orc re-places).
      await admin.set(paths.selfFree(id), { ...FULL, vcpus: 1 }, 5);
      await waitFor(() => (w.computes.get(id)?.staleSince ?? 0) > 0, { what: 'the second write to be marked' });
      const txns = zk.counters.txns;
      expect(await claimCapacity(zk, paths, w, id, need, (txn) => txn.create(paths.nextTask(id, 't4' as never), need))).toBe('conflict');
      expect(zk.counters.txns).toBe(txns);
      expect(w.computes.get(id)).toMatchObject({ free: { vcpus: 1 }, freeVersion: 6 });

      // refreshStale reads only what is stale, and only once.
      await admin.set(paths.selfFree(id), FULL, 6);
      await waitFor(() => (w.computes.get(id)?.staleSince ?? 0) > 0, { what: 'the third write to be marked' });
      expect(await w.refreshStale()).toBe(1);
      expect(await w.refreshStale()).toBe(0);
      expect(w.computes.get(id)).toMatchObject({ free: FULL, freeVersion: 7 });
    } finally {
      w.stop();
      await zk.close();
      await admin.removeTree(paths.root);
    }
  });

  it('a claim placed before an earlier claim on the same compute committed is refused if it no longer fits', async () => {
    // The orc scores, then waits its turn on the compute (claims on one compute are serialised):
    // by then its own earlier claim may have taken the room, and the version it claims with is
    // already the new one, so only the view can tell.
    const paths = await world();
    const zk = await Zk.connect(zkConnect());
    const w = new ClusterWatch(zk, paths, new TwinClusterView(), log);
    try {
      w.start();
      await waitFor(() => w.computes.get(id)?.freeVersion === 0, { what: 'the view to fill' });
      const need: Consumes = { vcpus: 6, ram_mb: 4096, disk_gb: 0, bandwidth_mbps: 0 };
      expect(await claimCapacity(zk, paths, w, id, need, (txn) => txn.create(paths.nextTask(id, 'a' as never), need))).toBe('claimed');
      const txns = zk.counters.txns;
      expect(await claimCapacity(zk, paths, w, id, need, (txn) => txn.create(paths.nextTask(id, 'b' as never), need))).toBe('conflict');
      expect(zk.counters.txns).toBe(txns);
      expect((await admin.get<Consumes>(paths.selfFree(id)))!.value).toMatchObject({ vcpus: 2 });
    } finally {
      w.stop();
      await zk.close();
      await admin.removeTree(paths.root);
    }
  });

  it('the claim-time read judges fit as the scorer does, with overcommit', async () => {
    const paths = await world();
    const zk = await Zk.connect(zkConnect());
    const overcommit = { vcpus: 4, ram_mb: 1, disk_gb: 1, bandwidth_mbps: 1 };
    const w = new ClusterWatch(zk, paths, new TwinClusterView({ overcommit }), log);
    try {
      w.start();
      await waitFor(() => w.computes.get(id)?.freeVersion === 0, { what: 'the view to fill' });
      // Another writer leaves no vCPU free: with 4× overcommit of 8 vCPUs, 24 more may still go.
      await admin.set(paths.selfFree(id), { ...FULL, vcpus: 0 }, 0);
      await waitFor(() => (w.computes.get(id)?.staleSince ?? 0) > 0, { what: 'the write to be marked' });
      const need: Consumes = { vcpus: 2, ram_mb: 1024, disk_gb: 0, bandwidth_mbps: 0 };
      expect(await claimCapacity(zk, paths, w, id, need, (txn) => txn.create(paths.nextTask(id, 'oc' as never), need))).toBe('claimed');
      expect(w.computes.get(id)).toMatchObject({ free: { vcpus: -2 }, freeVersion: 2 });
      // Past the overcommitted capacity it is refused, without a transaction.
      await admin.set(paths.selfFree(id), { ...FULL, vcpus: -23 }, 2);
      await waitFor(() => (w.computes.get(id)?.staleSince ?? 0) > 0, { what: 'the second write to be marked' });
      const txns = zk.counters.txns;
      expect(await claimCapacity(zk, paths, w, id, need, (txn) => txn.create(paths.nextTask(id, 'oc2' as never), need))).toBe('conflict');
      expect(zk.counters.txns).toBe(txns);
    } finally {
      w.stop();
      await zk.close();
      await admin.removeTree(paths.root);
    }
  });

  it('reads self/free again after a reconnect, catching a write made while the link was down', async () => {
    const paths = await world();
    const link = await FaultyLink.start(zkConnect());
    const zk = await Zk.connect(link.address, { sessionTimeoutMs: 6000 });
    const w = new ClusterWatch(zk, paths, new TwinClusterView(), log);
    try {
      const states: ConnectionState[] = [];
      zk.on('state', (s: ConnectionState) => states.push(s));
      w.start();
      await waitFor(() => w.computes.get(id)?.freeVersion === 0, { what: 'the view to fill' });
      link.sever();
      await waitFor(() => states.includes('SUSPENDED'), { what: 'the drop', timeoutMs: 5000 });
      await admin.set(paths.selfFree(id), { ...FULL, vcpus: 5 }, 0);
      link.restore();
      await waitFor(() => w.computes.get(id)?.freeVersion === 1, { what: 'the write made while down', timeoutMs: 5000 });
      expect(w.computes.get(id)?.free.vcpus).toBe(5);
      // After the reconnect the watch is back: the next write is noticed (and read when due).
      await admin.set(paths.selfFree(id), { ...FULL, vcpus: 4 }, 1);
      await waitFor(() => (w.computes.get(id)?.staleSince ?? 0) > 0, { what: 'a write after the reconnect' });
      expect(await w.refreshStale()).toBe(1);
      expect(w.computes.get(id)).toMatchObject({ free: { vcpus: 4 }, freeVersion: 2 });
    } finally {
      w.stop();
      await zk.close();
      await link.close();
      await admin.removeTree(paths.root);
    }
  });
});
