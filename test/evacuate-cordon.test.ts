// The operator's calls after a host dies or before it is serviced (issue 10): cordon and uncordon
// a compute, evacuate a dead one. Real processes, a real kill -9, the CLI as an operator runs it.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { http, startCluster, waitForUnit, type TestCluster } from './cluster.js';
import { useProcessGroup, waitFor } from './support/index.js';
import type { ComputeId, ServerId } from '../ts/common/ids.js';
import { mintToken } from '../ts/auth/tokens.js';
import { AuthPaths } from '../ts/auth/layout.js';
import { asProjectId } from '../ts/auth/policy.js';

const group = useProcessGroup();
const SESSION_MS = 2000;
const flavor = { vcpus: 1, ram_mb: 256, disk_gb: 1 };
let c: TestCluster;

interface ServerView {
  id: string;
  status: string;
  compute_id: string | null;
  task: string | null;
}
interface ComputeView {
  id: string;
  alive: boolean;
  cordoned: boolean;
  managing: number;
}

async function boot(name: string): Promise<{ server_id: string; compute_id: string }> {
  const r = await http(`${c.api}/v1/servers`, { method: 'POST', body: { name, flavor } });
  expect(r.status).toBe(202);
  const u = await waitForUnit(c.api, r.body.work_unit_id, 30_000);
  expect(u.state).toBe('SUCCEEDED');
  return { server_id: u.server_id, compute_id: u.compute_id! };
}

const server = async (id: string): Promise<ServerView> => (await http<ServerView>(`${c.api}/v1/servers/${id}`)).body;
const computes = async (): Promise<ComputeView[]> => (await http<ComputeView[]>(`${c.api}/v1/computes`)).body;

/** `quark <args>` as an operator runs it, with the cluster's admin token; resolves with its exit and output. */
async function quark(args: string[], token = c.token): Promise<{ code: number | null; out: string; err: string }> {
  const p = group.spawnQuark([...args, '--api', c.api], { env: { QUARK_TOKEN: token } });
  const exit = await p.exited;
  return { code: exit.code, out: p.stdout(), err: p.stderr() };
}

beforeAll(async () => {
  c = await startCluster(group, { computes: 3, orcs: 1, sessionTimeoutMs: SESSION_MS, computeArgs: ['--vcpus', '64', '--ram-mb', '65536', '--disk-gb', '1000'] });
}, 120_000);

afterAll(async () => {
  await c?.close();
});

describe('cordon', () => {
  // Invariant: no placement lands on a cordoned compute; what runs there keeps running and still
  // takes actions; uncordoned, it is placed on again.
  it('a cordoned compute takes no new VM, keeps its own (a stop still reaches it), and takes VMs again once uncordoned', async () => {
    const first = await boot('before-cordon');
    const target = first.compute_id;
    const on = await quark(['compute', 'cordon', target]);
    expect(on.code, on.err).toBe(0);
    expect(on.out).toContain(`compute ${target} is cordoned`);
    expect((await computes()).find((x) => x.id === target)).toMatchObject({ alive: true, cordoned: true });
    await c.orcs.get('orc-1')!.waitForOutput('compute cordoned', { timeoutMs: 5000 });
    for (let i = 0; i < 5; i++) expect((await boot(`while-cordoned-${i}`)).compute_id).not.toBe(target);
    expect(await server(first.server_id)).toMatchObject({ status: 'ACTIVE', compute_id: target });
    const stop = await http(`${c.api}/v1/servers/${first.server_id}/actions`, { method: 'POST', body: { action: 'stop' } });
    expect((await waitForUnit(c.api, stop.body.work_unit_id)).state).toBe('SUCCEEDED');
    expect(await server(first.server_id)).toMatchObject({ status: 'STOPPED', compute_id: target });

    const off = await quark(['compute', 'uncordon', target]);
    expect(off.code, off.err).toBe(0);
    expect((await computes()).find((x) => x.id === target)!.cordoned).toBe(false);
    await c.orcs.get('orc-1')!.waitForOutput('compute uncordoned', { timeoutMs: 5000 });
    // Spread picks the emptiest compute: the one that was cordoned holds the fewest VMs now.
    expect((await boot('after-uncordon')).compute_id).toBe(target);
  });

  it('only an admin may cordon, and an unknown compute is 404', async () => {
    const { secret } = await mintToken(c.zk, new AuthPaths(c.paths), { project: asProjectId('web'), role: 'member', name: 'member' });
    const refused = await quark(['compute', 'cordon', 'compute-1'], secret);
    expect(refused.code).toBe(1);
    expect(refused.err).toContain('403 FORBIDDEN');
    expect((await computes()).every((x) => !x.cordoned)).toBe(true);
    expect((await http(`${c.api}/v1/computes/no-such-compute/cordon`, { method: 'POST' })).status).toBe(404);
    expect((await http(`${c.api}/v1/computes/no-such-compute/evacuate`, { method: 'POST' })).status).toBe(404);
  });
});

describe('evacuate', () => {
  // Invariants: refused while the compute is alive; once it is down, each of its LOST VMs is
  // rebuilt by one unit under the same server id on another compute; the dead compute, back,
  // destroys its copies (each server is one VM, on one compute).
  it('409 while alive; after kill -9, its LOST VMs are rebuilt elsewhere with the same ids; back, the old compute keeps none', async () => {
    const placed = await Promise.all(Array.from({ length: 6 }, (_, i) => boot(`evac-${i}`)));
    const counts = new Map<string, number>();
    for (const p of placed) counts.set(p.compute_id, (counts.get(p.compute_id) ?? 0) + 1);
    const victim = [...counts].sort((a, b) => b[1] - a[1])[0]![0] as ComputeId;
    const onVictim = (await http<ServerView[]>(`${c.api}/v1/servers`)).body.filter((s) => s.compute_id === victim).map((s) => s.id);
    expect(onVictim.length).toBeGreaterThan(0);

    const alive = await http(`${c.api}/v1/computes/${victim}/evacuate`, { method: 'POST' });
    expect(alive).toMatchObject({ status: 409, body: { error: { code: 'CONFLICT' } } });
    expect(alive.body.error.message).toMatch(/is alive/);

    await group.kill9(c.computes.get(victim)!.pid);
    for (const id of onVictim) await waitFor(async () => (await server(id)).status === 'LOST', { what: `${id} LOST`, timeoutMs: SESSION_MS + 10_000 });

    const run = await quark(['compute', 'evacuate', victim]);
    expect(run.code, run.err).toBe(0);
    expect(run.out).toContain(`compute ${victim}: ${onVictim.length} VM(s) being rebuilt elsewhere, 0 skipped`);
    const units = [...run.out.matchAll(/rebuilding (\S+)\s+work unit (\S+)/g)].map((m) => ({ server: m[1]!, unit: m[2]! }));
    expect(units.map((u) => u.server).sort()).toEqual([...onVictim].sort());
    expect(new Set(units.map((u) => u.unit)).size).toBe(onVictim.length);
    for (const u of units) {
      const done = await waitForUnit(c.api, u.unit, 30_000);
      expect(done).toMatchObject({ kind: 'build', state: 'SUCCEEDED', server_id: u.server });
      expect(done.compute_id).not.toBe(victim);
      expect(await server(u.server)).toMatchObject({ status: 'ACTIVE', compute_id: done.compute_id, task: null });
    }
    expect(await c.zk.children(c.paths.managing(victim))).toEqual([]);
    // Evacuated again: nothing left to rebuild.
    expect((await http(`${c.api}/v1/computes/${victim}/evacuate`, { method: 'POST' })).body).toEqual({ compute_id: victim, evacuated: [], skipped: [] });

    // The old host comes back: it holds none of them, and every server stays where it was rebuilt.
    const back = c.startCompute(victim);
    await back.waitForOutput('compute ready', { timeoutMs: 30_000 });
    await new Promise((r) => setTimeout(r, 1000)); // past the hypervisor report's interval
    const hv = (await c.zk.get<{ domains: number }>(`${c.paths.self(victim)}/hypervisor`))!.value!;
    expect(hv.domains).toBe(0);
    for (const u of units) {
      const s = await server(u.server);
      expect(s.status).toBe('ACTIVE');
      expect(s.compute_id).not.toBe(victim);
      const holders = [];
      for (const x of await computes()) if (((await c.zk.children(c.paths.managing(x.id as ComputeId))) ?? []).includes(u.server as ServerId)) holders.push(x.id);
      expect(holders).toEqual([s.compute_id]);
    }
  });
});
