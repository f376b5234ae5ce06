// Retention end to end: real api, orcs and computes over the real ZooKeeper. The orcs prune
// finished work units past their server's newest N, then (restarted with a short retention) by
// age, deleted servers' records and idempotency keys; a unit in flight longer than the retention
// is never touched, and every record that should stay does.
// Invariant checked: after the passes, ZooKeeper holds exactly the finished units and deleted
// servers the policy keeps, every unit in flight, and every live server.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { http, startCluster, waitForUnit, type TestCluster } from './cluster.js';
import { useProcessGroup, waitFor } from './support/index.js';

const group = useProcessGroup();
let c: TestCluster;
const flavor = { vcpus: 1, ram_mb: 256, disk_gb: 1 };

beforeAll(async () => {
  c = await startCluster(group, {
    computes: 2,
    orcs: 2,
    // Steps take a little while, so a unit is visibly in flight for longer than the short retention below.
    computeArgs: ['--step-delay-ms', '700'],
    orcArgs: ['--sweep-ms', '250', '--units-per-server', '2', '--unit-retention', '1h', '--deleted-retention', '1h', '--retention-pass-ms', '200', '--prune-batch', '3'],
  });
}, 120_000);

afterAll(async () => {
  await c?.close();
});

async function boot(name: string, headers: Record<string, string> = {}): Promise<{ work_unit_id: string; server_id: string }> {
  const r = await http<{ work_unit_id: string; server_id: string }>(`${c.api}/v1/servers`, { method: 'POST', body: { name, flavor }, headers });
  expect(r.status).toBe(202);
  return r.body;
}

async function act(server: string, action: string): Promise<string> {
  const r = await http<{ work_unit_id: string }>(`${c.api}/v1/servers/${server}/actions`, { method: 'POST', body: { action } });
  expect(r.status).toBe(202);
  return r.body.work_unit_id;
}

const unitStatus = async (id: string) => (await http(`${c.api}/v1/work-units/${id}`)).status;
const present = async (path: string) => (await c.zk.exists(path)) !== null;

describe('retention', () => {
  const kept: string[] = [];
  let a: { server_id: string; units: string[] };
  let b: { server_id: string; units: string[] };

  it('keeps at most the newest N finished units per server, and a deleted server\'s record', async () => {
    const bootA = await boot('keep-a');
    const bootB = await boot('keep-b');
    expect((await waitForUnit(c.api, bootA.work_unit_id)).state).toBe('SUCCEEDED');
    expect((await waitForUnit(c.api, bootB.work_unit_id)).state).toBe('SUCCEEDED');
    a = { server_id: bootA.server_id, units: [bootA.work_unit_id] };
    for (let i = 0; i < 3; i++) {
      const wu = await act(a.server_id, 'reboot');
      expect((await waitForUnit(c.api, wu)).state).toBe('SUCCEEDED');
      a.units.push(wu);
    }
    // A has four finished units; the cap is two: the build and the first reboot go.
    await waitFor(async () => (await unitStatus(a.units[0]!)) === 404 && (await unitStatus(a.units[1]!)) === 404, { what: "A's two oldest units to be pruned", timeoutMs: 20_000 });
    for (const wu of a.units.slice(2)) expect(await unitStatus(wu)).toBe(200);
    expect(await unitStatus(bootB.work_unit_id)).toBe(200);
    // Deleting B: its record goes, its last record is kept (listed as DELETED), its two units stay (the cap).
    const del = await http<{ work_unit_id: string }>(`${c.api}/v1/servers/${bootB.server_id}`, { method: 'DELETE' });
    expect((await waitForUnit(c.api, del.body.work_unit_id)).state).toBe('SUCCEEDED');
    b = { server_id: bootB.server_id, units: [bootB.work_unit_id, del.body.work_unit_id] };
    expect((await http(`${c.api}/v1/servers/${b.server_id}`)).status).toBe(404);
    const gone = (await http<Array<{ id: string; status: string }>>(`${c.api}/v1/servers?status=DELETED`)).body;
    expect(gone).toEqual([expect.objectContaining({ id: b.server_id, status: 'DELETED' })]);
    await new Promise((r) => setTimeout(r, 1000)); // five passes
    for (const wu of b.units) expect(await unitStatus(wu)).toBe(200);
    expect(await present(c.paths.deletedServer(b.server_id as never))).toBe(true);
    kept.push(...a.units.slice(2), ...b.units);
  }, 120_000);

  it('restarted with a short retention, the orcs prune by age, and never a unit in flight', async () => {
    // Orcs down: a boot accepted now stays PENDING, and grows older than the retention before it runs.
    await group.stop([...c.orcs.values()]);
    const late = await boot('in-flight');
    const keyed = await boot('keyed', { 'idempotency-key': 'retention-test-key' });
    await new Promise((r) => setTimeout(r, 2500));
    const short = ['--unit-retention', '2s', '--deleted-retention', '2s', '--units-per-server', '0', '--idempotency-retention', '2s'];
    for (const id of ['orc-1', 'orc-2']) c.orcs.set(id, c.startOrc(id, short));
    // The in-flight build (four steps of 700 ms) is older than the retention all along its run, and
    // is never pruned while it runs: polled until it ends, it never answers 404.
    const seen = new Set<string>();
    const done = await waitFor(
      async () => {
        const r = await http<{ state: string }>(`${c.api}/v1/work-units/${late.work_unit_id}`);
        if (r.status !== 200) throw new Error(`in-flight unit answered ${r.status}`);
        seen.add(r.body.state);
        return r.body.state === 'SUCCEEDED' || r.body.state === 'FAILED' ? r.body.state : undefined;
      },
      { what: 'the in-flight build to end', timeoutMs: 60_000, intervalMs: 50 },
    ).catch((e: Error) => {
      // A 404 is the failure this test exists for: say so rather than time out.
      throw new Error(`in-flight unit: ${e.message}`);
    });
    expect(done).toBe('SUCCEEDED');
    expect(seen).toContain('RUNNING');
    // Everything that had finished before the restart is older than 2 s: all of it goes, with
    // B's deleted record, and the expired idempotency key.
    await waitFor(async () => (await Promise.all(kept.map(unitStatus))).every((s) => s === 404), { what: 'the old finished units to be pruned', timeoutMs: 20_000 });
    await waitFor(async () => !(await present(c.paths.deletedServer(b.server_id as never))), { what: "B's deleted record to be pruned", timeoutMs: 20_000 });
    await waitFor(async () => ((await c.zk.children(c.paths.idempotency)) ?? []).length === 0, { what: 'the idempotency key to be pruned', timeoutMs: 20_000 });
    // Live servers are never pruned.
    for (const s of [a.server_id, late.server_id, keyed.server_id]) expect((await http(`${c.api}/v1/servers/${s}`)).status).toBe(200);
    expect((await http(`${c.api}/v1/servers?status=DELETED`)).body).toEqual([]);
    // The late build, once finished, goes too after 2 s; ended/ then names nothing that is not kept.
    await waitFor(async () => (await unitStatus(late.work_unit_id)) === 404 && (await unitStatus(keyed.work_unit_id)) === 404, { what: 'the late units to be pruned', timeoutMs: 20_000 });
    const cfg = (await c.zk.get<{ shards: number }>(c.paths.config))!.value!;
    let names = 0;
    for (let n = 0; n < cfg.shards; n++) names += ((await c.zk.children(c.paths.ended(n))) ?? []).length;
    expect(names).toBe(0);
    expect(await c.zk.children(c.paths.workUnits)).toEqual([]);
  }, 120_000);
});
