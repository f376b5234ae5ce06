// Level-triggered supervision (issue 10): what follows from a compute being down is derived from
// the cluster's state whenever an orc gains a shard and on every sweep, not only when an orc
// happens to see the compute's liveness node go. Every process is real and killed for real.
import { describe, expect, it } from 'vitest';
import { http, startCluster, waitForUnit, type TestCluster } from './cluster.js';
import { useProcessGroup, waitFor } from './support/index.js';
import { shardOf, ZERO, type TaskRecord } from '../ts/common/model.js';
import { newWorkUnitId, type ComputeId, type ServerId } from '../ts/common/ids.js';
import { acceptedUnit } from '../ts/lifecycle/index.js';
import { createEntries, nextTaskEntries } from '../ts/zk/layout.js';

const group = useProcessGroup();
const SESSION_MS = 2000;
const SHARDS = 64;
/** How long past the session timeout a down compute's VMs may take to become LOST. */
const LOST_BOUND_MS = 3000;
const big = ['--vcpus', '64', '--ram-mb', '262144', '--disk-gb', '10000'];
const small = { vcpus: 1, ram_mb: 256, disk_gb: 1 };

async function boot(c: TestCluster, n: number, prefix: string) {
  const res = await Promise.all(
    Array.from({ length: n }, (_, i) => http(`${c.api}/v1/servers`, { method: 'POST', body: { name: `${prefix}-${i}`, flavor: small } })),
  );
  for (const r of res) expect(r.status).toBe(202);
  return res.map((r) => r.body as { work_unit_id: string; server_id: string });
}

/**
 * Boots bursts until `compute` holds at least `n` of them (at most 5 bursts of 8): placement
 * spreads a burst, but how it splits one (in-flight claims, which compute registered first) is not
 * these tests' concern. The ids of the servers on `compute` (and in `elsewhere`, the others').
 */
async function bootUntilOn(c: TestCluster, compute: string, n: number): Promise<string[] & { elsewhere: string[] }> {
  const on = Object.assign([] as string[], { elsewhere: [] as string[] });
  for (let round = 0; round < 5 && on.length < n; round++) {
    const settled = await Promise.all((await boot(c, 8, `vm${round}`)).map((u) => waitForUnit(c.api, u.work_unit_id)));
    for (const u of settled) expect(u.state).toBe('SUCCEEDED');
    on.push(...settled.filter((u) => u.compute_id === compute).map((u) => u.server_id));
    on.elsewhere.push(...settled.filter((u) => u.compute_id !== compute).map((u) => u.server_id));
  }
  return on;
}

async function statusOf(c: TestCluster, id: string): Promise<string> {
  return (await http<{ status: string }>(`${c.api}/v1/servers/${id}`)).body.status;
}

async function computes(c: TestCluster) {
  return (await http<Array<{ id: string; alive: boolean; active_tasks: number }>>(`${c.api}/v1/computes`)).body;
}

describe('a down compute is supervised from the state, not from a notification', () => {
  // Invariant: once a compute's session has expired, each of its idle VMs is LOST within the
  // session timeout + LOST_BOUND_MS, whoever owned its shard when it went; every unit ends.
  // The orc dies second, within the compute's session timeout: the compute's liveness node goes
  // while the dead orc still holds the shard, so the orc that takes the shard over never sees it go.
  it('kill -9 a compute, then the orc owning its shard: its VMs become LOST in time and its builds in flight complete elsewhere', async () => {
    const c = await startCluster(group, { computes: 2, orcs: 2, sessionTimeoutMs: SESSION_MS, computeArgs: [...big, '--step-delay-ms', '150'] });
    try {
      const settled = await Promise.all((await boot(c, 6, 'settled')).map((u) => waitForUnit(c.api, u.work_unit_id)));
      for (const u of settled) expect(u.state, JSON.stringify(u.error)).toBe('SUCCEEDED');
      const victim = 'compute-2';
      const onVictim = settled.filter((u) => u.compute_id === victim).map((u) => u.server_id);
      expect(onVictim.length).toBeGreaterThan(0); // spread placement uses both computes
      const owners = (await http<Record<string, string | null>>(`${c.api}/v1/shards`)).body;
      const orc = owners[String(shardOf(victim, SHARDS))]!;
      expect(c.orcs.has(orc)).toBe(true);

      const burst = await boot(c, 10, 'inflight');
      // Taken in (active_tasks) or still queued for it (next_tasks): either is work the kill interrupts.
      const queued = async (dir: string) => ((await c.zk.children(dir)) ?? []).length;
      await waitFor(async () => (await queued(c.paths.activeTasks(victim as ComputeId))) + (await queued(c.paths.nextTasks(victim as ComputeId))) > 0, {
        what: `work in flight on ${victim}`,
        timeoutMs: 10_000,
        intervalMs: 20,
      });
      await group.kill9(c.computes.get(victim)!.pid);
      await new Promise((r) => setTimeout(r, SESSION_MS / 2));
      await group.kill9(c.orcs.get(orc)!.pid);
      const killedAt = Date.now();

      await waitFor(async () => (await Promise.all(onVictim.map((id) => statusOf(c, id)))).every((s) => s === 'LOST'), {
        what: `every VM of ${victim} LOST`,
        timeoutMs: SESSION_MS + LOST_BOUND_MS,
        intervalMs: 50,
      });
      const lostMs = Date.now() - killedAt;
      console.log(JSON.stringify({ case: 'compute-then-its-orc-killed', session_timeout_ms: SESSION_MS, vms: onVictim.length, lost_after_orc_kill_ms: lostMs }));

      const done = await Promise.all(burst.map((u) => waitForUnit(c.api, u.work_unit_id, 30_000)));
      for (const u of done) {
        expect(u.state, JSON.stringify(u.error)).toBe('SUCCEEDED');
        expect(u.compute_id).not.toBe(victim);
      }
    } finally {
      await c.close();
    }
  });

  // Invariant: a compute that died while no orc ran has its VMs LOST once an orc owns its shard;
  // an action asked of it meanwhile ends (FAILED, COMPUTE_LOST) rather than waiting forever; a
  // task left in its directory for a unit that has ended is removed.
  it('a compute that died while no orc ran: its VMs become LOST as soon as an orc starts, work for it ends, orphan tasks go', async () => {
    const c = await startCluster(group, { computes: 2, orcs: 1, sessionTimeoutMs: SESSION_MS, computeArgs: big });
    try {
      const onVictim = await bootUntilOn(c, 'compute-1', 1);
      expect(onVictim.length).toBeGreaterThan(0);
      await group.stop([c.orcs.get('orc-1')!]);
      await group.kill9(c.computes.get('compute-1')!.pid);
      await waitFor(async () => !(await computes(c)).find((x) => x.id === 'compute-1')!.alive, {
        what: 'compute-1 down',
        timeoutMs: SESSION_MS + 5000,
      });
      for (const id of onVictim) expect(await statusOf(c, id)).toBe('ACTIVE'); // nobody marked them
      const stop = await http(`${c.api}/v1/servers/${onVictim[0]}/actions`, { method: 'POST', body: { action: 'stop' } });
      expect(stop.status).toBe(202);
      // A task an earlier orc left for a unit that has since ended (as a crash between the two writes would).
      const orphan = newWorkUnitId();
      const ended = { ...acceptedUnit({ id: orphan, kind: 'reboot', server_id: onVictim[0] as ServerId, shard: 0, at: Date.now() }), state: 'FAILED' as const, finished_at: Date.now() };
      await c.zk.create(c.paths.workUnit(orphan), ended);
      const task: TaskRecord = { work_unit_id: orphan, kind: 'reboot', server_id: onVictim[0] as ServerId, shard: 0, consumes: ZERO, name: 'x', attempt: 1, birthed_on: Date.now() };
      await createEntries(c.zk.txn(), c.paths.nextTask('compute-1' as ComputeId, orphan), nextTaskEntries(task)).commit();

      const startedAt = Date.now();
      c.startOrc('orc-2');
      await waitFor(async () => (await Promise.all(onVictim.map((id) => statusOf(c, id)))).every((s) => s === 'LOST'), {
        what: 'every VM of compute-1 LOST',
        timeoutMs: 15_000,
        intervalMs: 50,
      });
      console.log(JSON.stringify({ case: 'compute-died-with-no-orc', vms: onVictim.length, lost_after_orc_start_ms: Date.now() - startedAt }));
      const stopped = await waitForUnit(c.api, stop.body.work_unit_id, 10_000);
      expect(stopped.state).toBe('FAILED');
      expect(stopped.error?.code).toBe('COMPUTE_LOST');
      await waitFor(async () => (await c.zk.exists(c.paths.nextTask('compute-1' as ComputeId, orphan))) === null, {
        what: 'the orphan task removed',
        timeoutMs: 10_000,
      });
      // The survivor's VMs are untouched.
      for (const id of onVictim.elsewhere) expect(await statusOf(c, id)).toBe('ACTIVE');
    } finally {
      await c.close();
    }
  });
});

describe('work for a down compute', () => {
  // Invariant: a delete always ends, and a server whose compute is down can be deleted: its
  // records go without the compute, which forgets the VM if it ever returns.
  it('deleting servers of a compute that died while no orc ran: both deletes SUCCEED (one asked before the VM was LOST, one after), and the returning compute forgets them', async () => {
    const c = await startCluster(group, { computes: 2, orcs: 1, sessionTimeoutMs: SESSION_MS, computeArgs: big });
    try {
      const onVictim = await bootUntilOn(c, 'compute-1', 2);
      expect(onVictim.length).toBeGreaterThanOrEqual(2);
      const [early, late] = [onVictim[0]!, onVictim[1]!];
      await group.stop([c.orcs.get('orc-1')!]);
      await group.kill9(c.computes.get('compute-1')!.pid);
      await waitFor(async () => !(await computes(c)).find((x) => x.id === 'compute-1')!.alive, { what: 'compute-1 down', timeoutMs: SESSION_MS + 5000 });

      // Asked while the VM still shows ACTIVE (no orc has seen the compute go): DELETING at once.
      const first = await http(`${c.api}/v1/servers/${early}`, { method: 'DELETE' });
      expect(first.status).toBe(202);
      c.startOrc('orc-2');
      const firstDone = await waitForUnit(c.api, first.body.work_unit_id, 15_000);
      expect(firstDone.state, JSON.stringify(firstDone.error)).toBe('SUCCEEDED');
      expect((await http(`${c.api}/v1/servers/${early}`)).status).toBe(404);

      // Asked of a LOST VM: the API shows it DELETING, and it is still not routed to the dead compute.
      await waitFor(async () => (await statusOf(c, late)) === 'LOST', { what: `${late} LOST`, timeoutMs: 10_000 });
      const second = await http(`${c.api}/v1/servers/${late}`, { method: 'DELETE' });
      expect(second.status).toBe(202);
      const secondDone = await waitForUnit(c.api, second.body.work_unit_id, 15_000);
      expect(secondDone.state, JSON.stringify(secondDone.error)).toBe('SUCCEEDED');
      expect((await http(`${c.api}/v1/servers/${late}`)).status).toBe(404);
      expect((await c.zk.children(c.paths.nextTasks('compute-1' as ComputeId))) ?? []).toEqual([]);

      // The compute comes back: what it managed for the deleted servers goes, the rest is found again.
      c.startCompute('compute-1');
      const back = await waitFor(async () => (await computes(c)).find((x) => x.id === 'compute-1' && x.alive), { what: 'compute-1 back', timeoutMs: 30_000 });
      // `alive` is claimed before the compute reconciles (an id is held before anything is
      // touched), so managing/ is read once the reconcile has had its say, not at once.
      const kept = onVictim.filter((id) => id !== early && id !== late).sort();
      const managed = await waitFor(
        async () => {
          const m = ((await c.zk.children(c.paths.managing('compute-1' as ComputeId))) ?? []).sort();
          return m.length === kept.length ? m : undefined;
        },
        { what: 'compute-1 reconciled', timeoutMs: 10_000 },
      );
      expect(managed).toEqual(kept);
      expect(back.alive).toBe(true);
      for (const id of managed) await waitFor(async () => (await statusOf(c, id)) === 'ACTIVE', { what: `${id} found again`, timeoutMs: 10_000 });
    } finally {
      await c.close();
    }
  });
});
