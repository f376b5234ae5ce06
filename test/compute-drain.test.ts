// A planned compute stop (SIGTERM) finishes the units running on it before the process exits,
// and takes no new one meanwhile; a unit it did not start goes elsewhere.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { http, startCluster, waitForUnit, type TestCluster, type WorkUnitView } from './cluster.js';
import { useProcessGroup, waitFor } from './support/index.js';

const group = useProcessGroup({ graceMs: 20_000 });
let c: TestCluster;
const flavor = { vcpus: 1, ram_mb: 512, disk_gb: 5 };

beforeAll(async () => {
  // One compute only at first, with slow steps: a boot is visibly in flight when it is stopped.
  c = await startCluster(group, { computes: 1, orcs: 1, computeArgs: ['--step-delay-ms', '500'] });
}, 120_000);

afterAll(async () => {
  await c?.close();
});

describe('compute SIGTERM', () => {
  it('finishes the boot in flight, exits 0, and the next boot goes to another compute', async () => {
    const first = await http<{ work_unit_id: string }>(`${c.api}/v1/servers`, { method: 'POST', body: { name: 'in-flight', flavor } });
    await waitFor(
      async () => (await http<WorkUnitView>(`${c.api}/v1/work-units/${first.body.work_unit_id}`)).body.steps_completed.length >= 1,
      { what: 'the boot to be running', timeoutMs: 20_000 },
    );
    const victim = c.computes.get('compute-1')!;
    const signalled = Date.now();
    victim.signal('SIGTERM');
    // A second compute, then a second boot while compute-1 drains: it must not land on compute-1.
    c.startCompute('compute-2');
    await victim.waitForOutput('draining: finishing the units in flight');
    const exit = await victim.exited;
    expect(exit.code, victim.lastLines()).toBe(0);

    const u = await waitForUnit(c.api, first.body.work_unit_id);
    expect(u.state, JSON.stringify(u.error)).toBe('SUCCEEDED');
    expect(u.compute_id).toBe('compute-1');
    expect(u.steps_completed.map((s) => s.name)).toEqual(['allocate_vcpu', 'allocate_storage', 'define', 'start']);
    // Every step waited the 500 ms step delay before its effect: its recorded time includes it.
    for (const s of u.steps_completed) expect(s.time_to_completion_ms).toBeGreaterThanOrEqual(500);
    // It finished before the process exited: the last step completed after the signal.
    const finishedAt = Date.parse((u as unknown as { finished_at: string }).finished_at);
    expect(finishedAt).toBeGreaterThan(signalled);

    await waitFor(
      async () => (await http<Array<{ id: string; alive: boolean }>>(`${c.api}/v1/computes`)).body.find((x) => x.id === 'compute-2')?.alive,
      { what: 'compute-2 alive', timeoutMs: 20_000 },
    );
    const second = await http<{ work_unit_id: string }>(`${c.api}/v1/servers`, { method: 'POST', body: { name: 'after', flavor } });
    const v = await waitForUnit(c.api, second.body.work_unit_id);
    expect(v.state, JSON.stringify(v.error)).toBe('SUCCEEDED');
    expect(v.compute_id).toBe('compute-2');
  });
});
