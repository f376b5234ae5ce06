// Quotas against a running cluster (api, orc and compute processes on libvirt's test driver): the
// usage a boot takes is given back where the work ends, by the finish's own transaction, at each
// of the four places that commit one: a delete's success on the compute, a delete of a server with
// no compute (orc), a build failed by the orc (NO_VALID_HOST) and a build failed on the compute.
// Invariant after every step: a project's usage equals the sum of the charges its servers hold.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { http, startCluster, waitForUnit, type TestCluster } from './cluster.js';
import { useProcessGroup } from './support/index.js';
import { mintToken } from '../ts/auth/tokens.js';
import { AuthPaths } from '../ts/auth/layout.js';
import { asProjectId } from '../ts/auth/policy.js';
import { addUsage, effectiveUsage, NO_USAGE, usageOf, type Usage } from '../ts/auth/quota.js';
import type { ComputeId } from '../ts/common/ids.js';

const group = useProcessGroup();
let c: TestCluster;
let ap: AuthPaths;
const small = { vcpus: 1, ram_mb: 256, disk_gb: 1 };

beforeAll(async () => {
  c = await startCluster(group, { computes: 1, orcs: 1, computeArgs: ['--vcpus', '4', '--ram-mb', '8192', '--disk-gb', '100'] });
  ap = new AuthPaths(c.paths);
}, 120_000);
afterAll(async () => {
  await c?.close();
});

async function member(project: string, instances: number): Promise<Record<string, string>> {
  const { secret } = await mintToken(c.zk, ap, { project: asProjectId(project), role: 'member' });
  const q = await http(`${c.api}/v1/projects/${project}/quota`, { method: 'PUT', body: { instances } });
  expect(q.status).toBe(200);
  return { authorization: `Bearer ${secret}` };
}

const boot = (headers: Record<string, string>, name: string, flavor = small) => http(`${c.api}/v1/servers`, { method: 'POST', body: { name, flavor }, headers });

/** The project's usage as the API reports it, checked against its charges in ZooKeeper. */
async function ledger(project: string): Promise<Usage> {
  const p = asProjectId(project);
  const [counter, released, charges] = await Promise.all([c.zk.get(ap.usage(p)), c.zk.children(ap.released(p)), c.zk.children(ap.charges)]);
  const usage = effectiveUsage(usageOf(counter?.value), released ?? []);
  let held = NO_USAGE;
  for (const id of charges ?? []) {
    const ch = (await c.zk.get<Usage & { project: string }>(ap.charge(id)))?.value;
    if (ch?.project === project) held = addUsage(held, usageOf(ch));
  }
  expect(usage, `${project}: usage vs the charges its servers hold`).toEqual(held);
  const api = await http(`${c.api}/v1/projects/${project}/usage`);
  expect(api.body.usage).toEqual(usage);
  return usage;
}

describe('quota usage is given back where the work ends', () => {
  it('a delete that succeeds on the compute gives its server back: a refused boot then fits', async () => {
    const h = await member('team', 2);
    const a = await boot(h, 'a');
    const b = await boot(h, 'b');
    expect([a.status, b.status]).toEqual([202, 202]);
    for (const r of [a, b]) expect((await waitForUnit(c.api, r.body.work_unit_id)).state).toBe('SUCCEEDED');
    const refused = await boot(h, 'c');
    expect(refused.status).toBe(403);
    expect(refused.body.error).toMatchObject({ code: 'QUOTA_EXCEEDED', exceeded: [{ resource: 'instances', limit: 2, in_use: 2, requested: 1 }] });
    expect((await ledger('team')).instances).toBe(2);

    const del = await http(`${c.api}/v1/servers/${a.body.server_id}`, { method: 'DELETE', headers: h });
    expect(del.status).toBe(202);
    expect((await waitForUnit(c.api, del.body.work_unit_id)).state).toBe('SUCCEEDED');
    expect((await ledger('team')).instances).toBe(1);
    const now = await boot(h, 'c');
    expect(now.status).toBe(202);
    expect((await waitForUnit(c.api, now.body.work_unit_id)).state).toBe('SUCCEEDED');
    expect(await ledger('team')).toEqual({ instances: 2, vcpus: 2, ram_mb: 512, disk_gb: 2 });
  });

  it('a build the orc fails (NO_VALID_HOST) gives its usage back, once: deleting the failed server gives nothing more', async () => {
    const h = await member('big', 1);
    const huge = await boot(h, 'huge', { vcpus: 1000, ram_mb: 1024, disk_gb: 1 });
    expect(huge.status).toBe(202);
    const u = await waitForUnit(c.api, huge.body.work_unit_id);
    expect([u.state, u.error?.code]).toEqual(['FAILED', 'NO_VALID_HOST']);
    expect(await ledger('big')).toEqual(NO_USAGE);
    const ok = await boot(h, 'fits');
    expect(ok.status).toBe(202);
    expect((await waitForUnit(c.api, ok.body.work_unit_id)).state).toBe('SUCCEEDED');
    // The failed server has no compute: the orc deletes its records, and it holds no charge any more.
    const del = await http(`${c.api}/v1/servers/${huge.body.server_id}`, { method: 'DELETE', headers: h });
    expect(del.status).toBe(202);
    expect((await waitForUnit(c.api, del.body.work_unit_id)).state).toBe('SUCCEEDED');
    expect(await ledger('big')).toEqual({ instances: 1, vcpus: 1, ram_mb: 256, disk_gb: 1 });
  });

  it('a build the compute refuses (its own admission, past a forged capacity) gives its usage back', async () => {
    const h = await member('forged', 1);
    // A forged self/free (the kind of write ZooKeeper ACLs will forbid) makes the orc place what the
    // compute cannot hold: 4 vCPUs x overcommit 4 = 16, 3 already held, 14 more.
    const id = 'compute-1' as ComputeId;
    const free = (await c.zk.get<Record<string, number>>(c.paths.selfFree(id)))!;
    await c.zk.set(c.paths.selfFree(id), { ...free.value, vcpus: 64 }, free.stat.version);
    const r = await boot(h, 'too-big', { vcpus: 14, ram_mb: 256, disk_gb: 1 });
    expect(r.status).toBe(202);
    const u = await waitForUnit(c.api, r.body.work_unit_id);
    expect([u.state, u.error?.code]).toEqual(['FAILED', 'NO_CAPACITY']);
    expect(await ledger('forged')).toEqual(NO_USAGE);
    expect((await boot(h, 'small-after')).status).toBe(202);
  });
});
