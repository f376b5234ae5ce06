// `quark compute --hollow N`: N computes in one process, each its own ZooKeeper session, liveness
// node, seed directory and private libvirt test-driver state. To the api and an orc they are N
// computes: VMs land across them, each is alive in GET /v1/computes, and the fleet stops by pid.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { http, startCluster, waitForUnit, type TestCluster } from './cluster.js';
import { useProcessGroup, waitFor, zkConnect, type Child } from './support/index.js';
import type { ComputeId } from '../ts/common/ids.js';

const group = useProcessGroup();
const N = 20;
let c: TestCluster;
let fleet: Child;

interface ComputeView {
  id: string;
  alive: boolean;
  managing: number;
  next_tasks: number;
  active_tasks: number;
}
const computes = async () => (await http<ComputeView[]>(`${c.api}/v1/computes`)).body;

beforeAll(async () => {
  c = await startCluster(group, { computes: 0, orcs: 1 });
  fleet = group.spawnQuark(
    ['compute', '--hollow', String(N), '--id-prefix', 'hc', '--zk', zkConnect(), '--root', c.root, '--session-timeout-ms', '2000'],
    { label: 'quark compute --hollow' },
  );
  await waitFor(async () => (await computes()).filter((x) => x.alive).length === N, {
    what: `${N} hollow computes alive`,
    timeoutMs: 60_000,
    intervalMs: 200,
  });
}, 120_000);

afterAll(async () => {
  await c?.close();
});

describe('quark compute --hollow', () => {
  it('shows N computes, each alive with its own directory', async () => {
    const cs = await computes();
    expect(cs.map((x) => x.id).sort()).toEqual(Array.from({ length: N }, (_, i) => `hc-${String(i + 1).padStart(2, '0')}`));
    for (const x of cs) expect(x.alive).toBe(true);
    // Each has its own session: N distinct ephemeral owners.
    const owners = new Set<string>();
    for (const x of cs) owners.add((await c.zk.exists(c.paths.alive(x.id as ComputeId)))!.ephemeralOwner);
    expect(owners.size).toBe(N);
  });

  it('boots land across the hollow computes and run through libvirt', async () => {
    const accepted = await Promise.all(
      Array.from({ length: 40 }, (_, i) =>
        http(`${c.api}/v1/servers`, { method: 'POST', body: { name: `h-${i}`, flavor: { vcpus: 1, ram_mb: 512, disk_gb: 1 } } }),
      ),
    );
    for (const a of accepted) expect(a.status).toBe(202);
    const units = await Promise.all(accepted.map((a) => waitForUnit(c.api, (a.body as { work_unit_id: string }).work_unit_id)));
    for (const u of units) {
      expect(u.state, JSON.stringify(u.error)).toBe('SUCCEEDED');
      expect(u.steps_completed.map((s) => s.name)).toEqual(['allocate_vcpu', 'allocate_storage', 'define', 'start']);
    }
    const used = new Set(units.map((u) => u.compute_id));
    expect(used.size).toBeGreaterThanOrEqual(N / 2);
    const cs = await computes();
    expect(cs.reduce((n, x) => n + x.managing, 0)).toBe(40);
    for (const x of cs) expect(x.next_tasks + x.active_tasks).toBe(0);
    // Each compute's private libvirt state holds exactly the domains it manages.
    await waitFor(
      async () => {
        for (const x of cs) {
          const hv = await c.zk.get<{ domains: number; by_state: Record<string, number> }>(`${c.paths.self(x.id as ComputeId)}/hypervisor`);
          if (hv?.value?.domains !== x.managing || (hv.value.by_state.running ?? 0) !== x.managing) return false;
        }
        return true;
      },
      { what: 'each hollow compute to report exactly its own domains', timeoutMs: 10_000 },
    );
  });

  it('stops cleanly by pid: every liveness node goes, exit code 0', async () => {
    fleet.signal('SIGTERM');
    const exit = await fleet.exited;
    expect(exit.code).toBe(0);
    expect(fleet.stderr()).toContain('"msg":"zk counters"');
    await waitFor(async () => (await computes()).every((x) => !x.alive), { what: 'no hollow compute alive', timeoutMs: 5_000 });
  });
});
