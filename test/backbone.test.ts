// The backbone end to end: api → ZooKeeper → orc → compute → libvirt (test driver), each a real
// process. Boots, actions, deletes, a flavor nobody fits, bad input, and a compute killed and
// restarted.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Writable } from 'node:stream';
import { http, startCluster, waitForUnit, type TestCluster } from './cluster.js';
import { useProcessGroup, waitFor } from './support/index.js';
import { printTree } from '../ts/cli/zk-tools.js';
import { newServerId, newWorkUnitId, type ComputeId } from '../ts/common/ids.js';
import { addConsumes, type Consumes, type TaskRecord, type WorkUnitRecord } from '../ts/common/model.js';
import { createEntries, nextTaskEntries } from '../ts/zk/layout.js';

const group = useProcessGroup();
let c: TestCluster;
let initialFree: Record<string, unknown>;
const servers: string[] = [];

const flavor = { vcpus: 2, ram_mb: 2048, disk_gb: 20 };

async function computes() {
  return (await http<Array<{ id: string; alive: boolean; free: unknown; managing: number }>>(`${c.api}/v1/computes`)).body;
}

async function tree(path: string): Promise<string> {
  let out = '';
  const sink = new Writable({
    write(chunk, _enc, cb) {
      out += String(chunk);
      cb();
    },
  });
  await printTree(c.zk, path, sink);
  return out;
}

beforeAll(async () => {
  c = await startCluster(group, {
    computes: 3,
    orcs: 2,
    computeArgs: ['--vcpus', '16', '--ram-mb', '65536', '--disk-gb', '1000'],
    // Sweeps often and reads self/free once 1 s stale: a test can wait for fresh views, and a
    // change is still unread for a while after it.
    orcArgs: ['--sweep-ms', '250', '--stale-free-ms', '1000'],
  });
  initialFree = Object.fromEntries((await computes()).map((x) => [x.id, x.free]));
}, 120_000);

afterAll(async () => {
  await c?.close();
});

describe('boots', () => {
  it('20 boots all SUCCEED with every step timed, each VM ACTIVE on a compute', async () => {
    const accepted = await Promise.all(
      Array.from({ length: 20 }, (_, i) => http(`${c.api}/v1/servers`, { method: 'POST', body: { name: `vm-${i}`, flavor } })),
    );
    for (const a of accepted) expect(a.status).toBe(202);
    // While the burst is in flight the seed's directories are there to see.
    const during = await tree(c.paths.compute('compute-1' as ComputeId));
    for (const dir of ['self/', 'next_tasks', 'active_tasks', 'managing', 'alive (ephemeral)', 'max_bandwidth']) expect(during).toContain(dir);

    const units = await Promise.all(accepted.map((a) => waitForUnit(c.api, a.body.work_unit_id)));
    for (const u of units) {
      expect(u.state, JSON.stringify(u.error)).toBe('SUCCEEDED');
      expect(u.steps_completed.map((s) => s.name)).toEqual(['allocate_vcpu', 'allocate_storage', 'define', 'start']);
      expect(u.steps_left).toEqual([]);
      // Each step's time is a measured duration in whole ms, at least 1 (what the compute records):
      // it fits between the step's completion and the one before it (the unit's acceptance for the
      // first), give or take 2 ms of rounding. A timestamp or a wrong unit would not.
      const timed = u as unknown as { created_at: string; steps_completed: Array<{ time_to_completion_ms: number; completed_at: string }> };
      let before = Date.parse(timed.created_at);
      for (const s of timed.steps_completed) {
        expect(Number.isInteger(s.time_to_completion_ms) && s.time_to_completion_ms >= 1, String(s.time_to_completion_ms)).toBe(true);
        const at = Date.parse(s.completed_at);
        expect(s.time_to_completion_ms).toBeLessThanOrEqual(at - before + 2);
        before = at;
      }
      servers.push(u.server_id);
    }
    const list = (await http<Array<{ id: string; status: string; compute_id: string }>>(`${c.api}/v1/servers`)).body;
    const mine = list.filter((s) => servers.includes(s.id));
    expect(mine).toHaveLength(20);
    for (const s of mine) {
      expect(s.status).toBe('ACTIVE');
      expect(['compute-1', 'compute-2', 'compute-3']).toContain(s.compute_id);
    }
    // Spread placement uses every compute, and managing/ holds exactly the 20 VMs.
    const cs = await computes();
    expect(cs.reduce((n, x) => n + x.managing, 0)).toBe(20);
    for (const x of cs) expect(x.managing).toBeGreaterThan(0);
    const managed = await tree(`${c.paths.compute(mine[0]!.compute_id as ComputeId)}/managing`);
    for (const leaf of ['kind = "vm"', 'birthed_on', 'consumes/', 'cpu = 2', 'status = "ACTIVE"']) expect(managed).toContain(leaf);
    // libvirt agrees: each compute runs as many domains as it manages.
    await waitFor(
      async () => {
        for (const x of cs) {
          const hv = await c.zk.get<{ domains: number; by_state: Record<string, number> }>(`${c.paths.self(x.id as ComputeId)}/hypervisor`);
          if (hv?.value?.by_state.running !== x.managing) return false;
        }
        return true;
      },
      { what: 'libvirt domains to match managing/', timeoutMs: 5000 },
    );
  });

  it('stop, start and reboot work and the server shows each outcome', async () => {
    const id = servers[0]!;
    const act = async (action: string, status: string) => {
      const r = await http(`${c.api}/v1/servers/${id}/actions`, { method: 'POST', body: { action } });
      expect(r.status).toBe(202);
      const u = await waitForUnit(c.api, r.body.work_unit_id);
      expect(u.state, JSON.stringify(u.error)).toBe('SUCCEEDED');
      expect(u.kind).toBe(action);
      expect((await http(`${c.api}/v1/servers/${id}`)).body.status).toBe(status);
    };
    await act('stop', 'STOPPED');
    const reboot = await http(`${c.api}/v1/servers/${id}/actions`, { method: 'POST', body: { action: 'reboot' } });
    expect(reboot.status).toBe(409); // a stopped VM cannot reboot
    expect(reboot.body.error.code).toBe('ACTION_NOT_ALLOWED');
    await act('start', 'ACTIVE');
    await act('reboot', 'ACTIVE');
  });
});

describe('failures stay clean', () => {
  it('a flavor no compute can hold FAILS with NO_VALID_HOST and the filter counts', async () => {
    const r = await http(`${c.api}/v1/servers`, { method: 'POST', body: { name: 'huge', flavor: { vcpus: 1000, ram_mb: 1024, disk_gb: 1 } } });
    expect(r.status).toBe(202);
    const u = await waitForUnit(c.api, r.body.work_unit_id);
    expect(u.state).toBe('FAILED');
    expect(u.error?.code).toBe('NO_VALID_HOST');
    expect(u.error?.message).toMatch(/fits removed 3/);
    expect(u.error?.rejected?.fits).toBe(3);
    const s = (await http(`${c.api}/v1/servers/${r.body.server_id}`)).body;
    expect(s.status).toBe('ERROR');
    // The failed server can be deleted, and nothing was held for it.
    const d = await http(`${c.api}/v1/servers/${r.body.server_id}`, { method: 'DELETE' });
    expect((await waitForUnit(c.api, d.body.work_unit_id)).state).toBe('SUCCEEDED');
    expect((await http(`${c.api}/v1/servers/${r.body.server_id}`)).status).toBe(404);
  });

  it("a task whose claim-time copy of its unit went stale is given up: the unit is untouched and the capacity comes back", async () => {
    // What an orc's claim writes, plus a second write of the unit in the same transaction (as if
    // another writer moved it before the compute's intake): the task's copy says version 1, the
    // unit is at version 2. No inbox entry, so no orc drives it; only compute-2 acts.
    const target = 'compute-2' as ComputeId;
    const wuId = newWorkUnitId();
    const need = { vcpus: 1, ram_mb: 512, disk_gb: 5, bandwidth_mbps: 0 };
    const now = Date.now();
    const unit: WorkUnitRecord = {
      id: wuId, kind: 'build', state: 'PENDING', server_id: newServerId(), shard: 0, compute_id: null, attempts: 0, tried: [],
      steps_completed: [], steps_left: [], request: { name: 'stale', flavor: { vcpus: 1, ram_mb: 512, disk_gb: 5 }, bandwidth_mbps: 0 },
      created_at: now, updated_at: now, finished_at: null,
    };
    await c.zk.create(c.paths.workUnit(wuId), unit);
    const scheduled: WorkUnitRecord = { ...unit, state: 'SCHEDULED', compute_id: target, attempts: 1, tried: [target], steps_left: ['allocate_vcpu', 'allocate_storage', 'define', 'start'] };
    const moved: WorkUnitRecord = { ...scheduled, state: 'PENDING', compute_id: null };
    const task: TaskRecord = {
      work_unit_id: wuId, kind: 'build', server_id: unit.server_id, shard: 0, consumes: need, name: 'stale', attempt: 1, birthed_on: now,
      unit: { record: scheduled, version: 1 },
    };
    const free = (await c.zk.get<Consumes>(c.paths.selfFree(target)))!;
    const txn = c.zk.txn().set(c.paths.selfFree(target), addConsumes(free.value!, need, -1), free.stat.version);
    createEntries(txn, c.paths.nextTask(target, wuId), nextTaskEntries(task));
    await txn.set(c.paths.workUnit(wuId), scheduled, 0).set(c.paths.workUnit(wuId), moved, 1).commit();

    await waitFor(async () => (await c.zk.exists(c.paths.nextTask(target, wuId))) === null && (await c.zk.exists(c.paths.activeTask(target, wuId))) === null, {
      what: 'the stale task to be removed',
      timeoutMs: 10_000,
    });
    const after = (await c.zk.get<WorkUnitRecord>(c.paths.workUnit(wuId)))!;
    expect(after.stat.version).toBe(2);
    expect(after.value).toEqual(moved);
    expect((await c.zk.get<Consumes>(c.paths.selfFree(target)))!.value).toEqual(free.value);
    await c.zk.remove(c.paths.workUnit(wuId));
  });

  it('malformed bodies get 400, unknown ids 404, and every process stays up', async () => {
    const bad = await http(`${c.api}/v1/servers`, { method: 'POST', body: { name: 'x', flavor: { vcpus: 'lots' } } });
    expect(bad.status).toBe(400);
    const unknown = await http(`${c.api}/v1/work-units/11111111-1111-4111-8111-111111111111`);
    expect(unknown.status).toBe(404);
    for (const p of [c.apiProc, ...c.orcs.values(), ...c.computes.values()]) expect(p.running).toBe(true);
    expect((await http(`${c.api}/healthz`)).status).toBe(200);
  });
});

describe('a compute killed and started again', () => {
  let onOne: Array<{ id: string; compute_id: string; status: string }> = [];
  let before: { managing: number; free: unknown };
  // Restarted in beforeAll so the new process outlives this block (test-scoped ones are stopped).
  beforeAll(async () => {
    const list = (await http<Array<{ id: string; compute_id: string; status: string }>>(`${c.api}/v1/servers`)).body;
    onOne = list.filter((s) => s.compute_id === 'compute-1' && servers.includes(s.id));
    before = (await computes()).find((x) => x.id === 'compute-1')!;
    await group.kill9(c.computes.get('compute-1')!.pid);
    const restarted = c.startCompute('compute-1');
    await restarted.waitForOutput('compute ready', { timeoutMs: 30_000 });
  }, 60_000);

  it('reconciles: libvirt redefines what managing/ records and ZooKeeper keeps it', async () => {
    expect(onOne.length).toBeGreaterThan(0);
    const after = await waitFor(async () => (await computes()).find((x) => x.id === 'compute-1' && x.alive), {
      what: 'compute-1 alive again',
      timeoutMs: 30_000,
    });
    expect(after.managing).toBe(before.managing);
    expect(after.free).toEqual(before.free);
    const hv = await waitFor(
      async () => {
        const v = await c.zk.get<{ domains: number; at: number; by_state: Record<string, number> }>(`${c.paths.self('compute-1' as ComputeId)}/hypervisor`);
        return v?.value && v.value.at > Date.now() - 30_000 && v.value.domains === after.managing ? v.value : undefined;
      },
      { what: 'compute-1 to report its domains', timeoutMs: 10_000 },
    );
    const active = onOne.filter((s) => s.status === 'ACTIVE').length;
    expect(hv.by_state.running ?? 0).toBe(active);
    // Its VMs are as they were (not LOST), and it still works: stop one of them.
    for (const s of onOne) expect((await http(`${c.api}/v1/servers/${s.id}`)).body.status).toBe(s.status);
    const r = await http(`${c.api}/v1/servers/${onOne[0]!.id}/actions`, { method: 'POST', body: { action: 'stop' } });
    expect((await waitForUnit(c.api, r.body.work_unit_id)).state).toBe('SUCCEEDED');
  });
});

describe('deletes', () => {
  it('deleting every VM returns each compute free to exactly its first value', async () => {
    const all = (await http<Array<{ id: string }>>(`${c.api}/v1/servers`)).body;
    const dels = await Promise.all(all.map((s) => http(`${c.api}/v1/servers/${s.id}`, { method: 'DELETE' })));
    for (const d of dels) expect(d.status).toBe(202);
    const units = await Promise.all(dels.map((d) => waitForUnit(c.api, d.body.work_unit_id)));
    for (const u of units) expect(u.state, JSON.stringify(u.error)).toBe('SUCCEEDED');
    expect((await http(`${c.api}/v1/servers`)).body).toEqual([]);
    const cs = await computes();
    for (const x of cs) {
      expect(x.free).toEqual(initialFree[x.id]);
      expect(x.managing).toBe(0);
    }
  });

  it('capacity a delete gives back is placed on at once, though the orcs read it lazily', async () => {
    // Fill every compute, delete one VM, boot again at once. The delete's self/free write is
    // another writer's change to both orcs: marked stale, not read, until a placement finds no
    // host and reads what is stale before failing.
    const big = { vcpus: 1, ram_mb: 65536, disk_gb: 10 }; // all of a compute's RAM (vCPUs are overcommitted)
    const boot = async (name: string) => {
      const r = await http(`${c.api}/v1/servers`, { method: 'POST', body: { name, flavor: big } });
      expect(r.status).toBe(202);
      return waitForUnit(c.api, r.body.work_unit_id);
    };
    const full = await Promise.all([0, 1, 2].map((i) => boot(`full-${i}`)));
    for (const u of full) expect(u.state, JSON.stringify(u.error)).toBe('SUCCEEDED');
    // Each orc's view of the other's claims is stale (too much free) until its sweep reads it
    // (every 250 ms, once 1 s stale): wait, so both see every compute full before the delete.
    await new Promise((r) => setTimeout(r, 1600));
    const d = await http(`${c.api}/v1/servers/${full[1]!.server_id}`, { method: 'DELETE' });
    expect((await waitForUnit(c.api, d.body.work_unit_id)).state).toBe('SUCCEEDED');
    const again = await boot('again');
    expect(again.state, JSON.stringify(again.error)).toBe('SUCCEEDED');
    const left = [full[0]!.server_id, full[2]!.server_id, again.server_id];
    const dels = await Promise.all(left.map((id) => http(`${c.api}/v1/servers/${id}`, { method: 'DELETE' })));
    for (const x of dels) expect((await waitForUnit(c.api, x.body.work_unit_id)).state).toBe('SUCCEEDED');
  });
});
