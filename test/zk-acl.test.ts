// ZooKeeper ACLs per role (issue 12), against the real server and a running cluster whose api,
// orc and computes each hold only their own credentials. Invariant: every node Quark creates
// carries an ACL without world access; a session without credentials reads and writes nothing
// under the root; a compute's credentials write only its own directory and the records it was
// granted, never another compute's directory, shard locks, orc nodes, tokens or config.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { http, startCluster, waitForUnit, type TestCluster } from './cluster.js';
import { useProcessGroup, zkConnect, zkCredentials, uniqueRoot, waitFor } from './support/index.js';
import { Zk } from '../ts/zk/client.js';
import { Paths } from '../ts/zk/paths.js';
import { AuthPaths } from '../ts/auth/layout.js';
import { credentialFiles, makeCredentials, OPEN_ACL, readCredentials, type Credentials } from '../ts/zk/acl.js';
import { OP } from '../ts/zk/wire/multi.js';
import { AclSetupError, readConfig } from '../ts/zk/config.js';
import { secureRoot } from '../ts/zk/acl-secure.js';
import { grantRecords, restoreGrant } from '../ts/orc/grant.js';
import type { ComputeId, WorkUnitId } from '../ts/common/ids.js';
import type { WorkUnitRecord } from '../ts/common/model.js';

const group = useProcessGroup();
let c: TestCluster;
const sessions: Zk[] = [];
const connect = async (credentials: Credentials | null): Promise<Zk> => {
  const zk = await Zk.connect(zkConnect(), { credentials });
  sessions.push(zk);
  return zk;
};
const files = () => credentialFiles(zkCredentials());

/** A create with an ACL of the forger's choosing (open), not the one Quark's rules would give. */
function forge(zk: Zk, path: string, value: unknown): Promise<unknown> {
  const t = zk.txn();
  t.ops.push({ type: OP.CREATE, path, data: Buffer.from(JSON.stringify(value)), acls: OPEN_ACL, mode: 0 });
  return t.commit();
}

/** The request is refused by ZooKeeper's ACL check (NO_AUTH), not for any other reason. */
async function refused(p: Promise<unknown>): Promise<void> {
  await expect(p).rejects.toMatchObject({ code: 'NO_AUTH' });
}

const C1 = 'compute-1' as ComputeId;
const C2 = 'compute-2' as ComputeId;

beforeAll(async () => {
  c = await startCluster(group, { computes: 2, orcs: 1 });
});
afterAll(async () => {
  for (const s of sessions.splice(0)) await s.close();
  await c?.close();
});

/** Boots one VM and returns its unit, SUCCEEDED, and the compute it landed on. */
async function boot(name: string): Promise<{ wu: WorkUnitId; compute: ComputeId }> {
  const r = await http<{ work_unit_id: WorkUnitId }>(`${c.api}/v1/servers`, { method: 'POST', body: { name, flavor: { vcpus: 1, ram_mb: 256, disk_gb: 1 } } });
  expect(r.status).toBe(202);
  const u = await waitForUnit(c.api, r.body.work_unit_id);
  expect(u.state).toBe('SUCCEEDED');
  return { wu: r.body.work_unit_id, compute: u.compute_id as ComputeId };
}

describe('a cluster running with ZooKeeper ACLs', () => {
  it('boots, acts and deletes as before, and every node under the root carries an ACL with no world access', async () => {
    const { wu } = await boot('acl-1');
    const unit = (await c.zk.get<WorkUnitRecord>(c.paths.workUnit(wu)))!.value!;
    const stop = await http<{ work_unit_id: WorkUnitId }>(`${c.api}/v1/servers/${unit.server_id}/actions`, { method: 'POST', body: { action: 'stop' } });
    expect(stop.status).toBe(202);
    expect((await waitForUnit(c.api, stop.body.work_unit_id)).state).toBe('SUCCEEDED');
    const del = await http<{ work_unit_id: WorkUnitId }>(`${c.api}/v1/servers/${unit.server_id}`, { method: 'DELETE' });
    expect((await waitForUnit(c.api, del.body.work_unit_id)).state).toBe('SUCCEEDED');
    await boot('acl-2');

    const all = await c.zk.walk(c.paths.root);
    expect(all.length).toBeGreaterThan(40);
    for (const path of all) {
      const acl = (await c.zk.getAcl(path).catch(() => null)) ?? []; // an ephemeral may go meanwhile
      expect(acl.filter((e) => e.scheme !== 'digest'), path).toEqual([]);
    }
    // The unit's record names its compute's own identity (the claim's grant), and no other compute's.
    const wuAcl = await c.zk.getAcl(c.paths.workUnit(wu));
    expect(wuAcl!.map((e) => e.id.split(':')[0]).filter((u) => u!.startsWith('compute.'))).toEqual([`compute.${unit.compute_id}`]);
  });

  it('a session without credentials reads and writes nothing under the root', async () => {
    const none = await connect(null);
    const p = c.paths;
    await refused(none.children(p.root));
    await refused(none.get(p.config));
    await refused(none.children(p.workUnits));
    await refused(none.children(p.computes));
    await refused(none.get(p.selfFree(C1)));
    await refused(none.children(new AuthPaths(p).tokens));
    await refused(none.create(`${p.root}/forged`, 1));
    await refused(none.create(`${p.computes}/forged`, 1));
    await refused(forge(none, p.nextTask(C1, 'f0000000-0000-4000-8000-000000000000' as WorkUnitId), 1));
    await refused(none.set(p.config, { shards: 1 }, -1));
    await refused(none.remove(p.alive(C1)));
  });

  it("a compute's credentials cannot write another compute's directory, shard locks, orc nodes, tokens or config", async () => {
    const one = await connect(readCredentials(files().compute(C1)));
    const p = c.paths;
    const ap = new AuthPaths(p);
    const forged = 'f0000000-0000-4000-8000-000000000001' as WorkUnitId;
    // compute-2's directory: no task forged into it, no capacity rewritten, nothing removed, not even read.
    await refused(forge(one, p.nextTask(C2, forged), { kind: 'delete' }));
    await refused(forge(one, p.activeTask(C2, forged), { kind: 'delete' }));
    await refused(one.set(p.selfFree(C2), { vcpus: 1000, ram_mb: 1, disk_gb: 1, bandwidth_mbps: 0 }, -1));
    await refused(one.remove(p.alive(C2)));
    await refused(one.create(`${p.compute(C2)}/cordoned`, {}));
    await refused(one.children(p.nextTasks(C2)));
    // Shard locks: no candidate of its own, no owner's candidate removed.
    await refused(one.create(`${p.shardLock(0)}/x-`, 'compute-1', 'ephemeral_sequential'));
    const holders = (await c.zk.children(p.shardLock(0))) ?? [];
    expect(holders.length).toBeGreaterThan(0);
    await refused(one.remove(`${p.shardLock(0)}/${holders[0]}`));
    // Orc nodes.
    await refused(one.create(p.orc('orc-forged'), {}));
    const orcs = (await c.zk.children(p.orcs)) ?? [];
    expect(orcs.length).toBeGreaterThan(0);
    await refused(one.remove(p.orc(orcs[0]!)));
    // Tokens: neither minted nor read.
    await refused(forge(one, ap.token('forged'), { role: 'admin' }));
    await refused(one.children(ap.tokens));
    // Config and the ACL marker.
    await refused(one.set(p.config, { shards: 1 }, -1));
    await refused(one.set(`${p.root}/acl`, {}, -1));
    // A unit placed on compute-2 is granted to compute-2 alone.
    const onTwo = await bootOn(C2);
    const rec = (await c.zk.get<WorkUnitRecord>(p.workUnit(onTwo)))!;
    await refused(one.set(p.workUnit(onTwo), rec.value, rec.stat.version));
    await refused(one.set(p.server(rec.value!.server_id), {}, -1));
  });

  it("a compute's credentials still do what a compute does: its own directory, the records it was granted, reads", async () => {
    const one = await connect(readCredentials(files().compute(C1)));
    const p = c.paths;
    expect((await one.get(p.config))?.value).toBeTruthy();
    expect(await one.children(p.workUnits)).not.toBeNull();
    const probe = `${p.self(C1)}/acl-probe`;
    await one.create(probe, 1);
    await one.remove(probe);
    const free = (await one.get(p.selfFree(C1)))!;
    await one.set(p.selfFree(C1), free.value, free.stat.version);
    // A finished unit of its own: its record was granted to it by the claim.
    const mine = await bootOn(C1);
    const rec = (await one.get<WorkUnitRecord>(p.workUnit(mine)))!;
    await one.set(p.workUnit(mine), rec.value, rec.stat.version);
  });

  it('the api and orc identities cannot cross either: the api takes no shard lock, the orc mints no token', async () => {
    const api = await connect(readCredentials(files().api));
    const orc = await connect(readCredentials(files().orc));
    await refused(api.create(`${c.paths.shardLock(0)}/x-`, 'api', 'ephemeral_sequential'));
    await refused(api.create(c.paths.orc('orc-forged'), {}));
    await refused(orc.create(new AuthPaths(c.paths).token('forged'), {}));
    await refused(orc.children(new AuthPaths(c.paths).tokens));
    await refused(orc.set(c.paths.config, {}, -1));
  });

  it('a compute process started without credentials stops at once with a clear error', async () => {
    const p = group.spawnQuark(['compute', '--id', 'no-credentials', '--zk', zkConnect(), '--root', c.root], { env: { QUARK_ZK_CREDENTIALS: '' } });
    const exit = await p.exited;
    expect(exit.code).not.toBe(0);
    expect(p.output()).toContain('ZK_CREDENTIALS_REQUIRED');
  });
});

/** Boots VMs until one lands on `target` (placement spreads); returns that unit. */
async function bootOn(target: ComputeId): Promise<WorkUnitId> {
  return waitFor(
    async () => {
      const b = await boot(`acl-on-${target}-${Date.now()}`);
      return b.compute === target ? b.wu : null;
    },
    { what: `a VM placed on ${target}`, timeoutMs: 30_000, intervalMs: 1 },
  );
}

describe("the claim's grant, when claims race", () => {
  // Invariant: a lost claim's grant that lands after the winner's does not leave the winner's
  // compute without its records: the loser gives them to the unit's compute, unless someone
  // granted them again since (then that grant stands).
  it("a lost claim's late grant is given back to the unit's compute; a record granted again since is left alone", async () => {
    const orc = await connect(readCredentials(files().orc));
    const one = await connect(readCredentials(files().compute(C1)));
    const p = c.paths;
    const wu = await bootOn(C1);
    const rec = (await c.zk.get<WorkUnitRecord>(p.workUnit(wu)))!;
    const records = [p.workUnit(wu), p.server(rec.value!.server_id)];
    const computesOn = async (path: string) => ((await c.zk.getAcl(path)) ?? []).map((e) => e.id.split(':')[0]).filter((u) => u!.startsWith('compute.'));

    // The loser's grant (for compute-2) lands last: compute-1, which holds the unit, may no longer write it.
    const late = (await grantRecords(orc, p, C2, records))!;
    expect(late.records.map((r) => r.path)).toEqual(records);
    for (const r of records) expect(await computesOn(r)).toEqual(['compute.compute-2']);
    await refused(one.set(p.workUnit(wu), rec.value, rec.stat.version));

    // Granted again since (a newer claim): the older grant's repair changes nothing.
    const newer = (await grantRecords(orc, p, C2, records))!;
    expect(await restoreGrant(orc, p, late, C1)).toBe(0);
    for (const r of records) expect(await computesOn(r)).toEqual(['compute.compute-2']);

    // The last grant's repair gives both records back to compute-1, which writes its unit again.
    expect(await restoreGrant(orc, p, newer, C1)).toBe(2);
    for (const r of records) expect(await computesOn(r)).toEqual(['compute.compute-1']);
    await one.set(p.workUnit(wu), rec.value, rec.stat.version);
    // Repairing for the compute the grant named is nothing to do.
    expect(await restoreGrant(orc, p, newer, C2)).toBe(0);
  });
});

describe('a compute whose grant is missing while it runs a unit', () => {
  let slow: TestCluster;
  beforeAll(async () => {
    slow = await startCluster(group, { computes: 1, orcs: 1, computeArgs: ['--step-delay-ms', '250'] });
  });
  afterAll(async () => {
    await slow?.close();
  });

  // Invariant: a unit whose records this compute may not write for a while (a lost claim's late
  // grant, until its orc gives them back) is not failed: its commit waits for the grant, and the
  // unit SUCCEEDS once it is back. The unit's record is written at every step, the server's at the end.
  it.each(['unit', 'server'] as const)("waits for the grant on the %s's record and completes the unit once it is back", async (which) => {
    const r = await http<{ work_unit_id: WorkUnitId; server_id: string }>(`${slow.api}/v1/servers`, { method: 'POST', body: { name: `grant-gap-${which}`, flavor: { vcpus: 1, ram_mb: 256, disk_gb: 1 } } });
    expect(r.status).toBe(202);
    const wuPath = slow.paths.workUnit(r.body.work_unit_id);
    const record = which === 'unit' ? wuPath : slow.paths.server(r.body.server_id as never);
    const compute = slow.computes.get('compute-1')!;
    const waitedBefore = compute.output().split('waiting for the grant').length;
    // Taken away once the compute has committed its first step, so a later commit meets it.
    await waitFor(async () => ((await slow.zk.get<WorkUnitRecord>(wuPath))?.value?.steps_completed.length ?? 0) >= 1, { what: 'the first step committed', timeoutMs: 20_000, intervalMs: 10 });
    await slow.zk.setAcl(record, slow.zk.aclFor(record));
    await waitFor(() => compute.output().split('waiting for the grant').length > waitedBefore, { what: 'the compute waiting for its grant', timeoutMs: 10_000 });
    await new Promise((res) => setTimeout(res, 600));
    await slow.zk.setAcl(record, slow.zk.acl!.recordGrant(record, 'compute-1'));
    const u = await waitForUnit(slow.api, r.body.work_unit_id);
    expect(u.state, JSON.stringify(u.error)).toBe('SUCCEEDED');
  });
});

describe('roots and credentials that do not match', () => {
  it('a root made without credentials is refused with the migration command; quark zk secure puts it under ACLs, quark zk rotate moves it to new credentials', async () => {
    const root = uniqueRoot('acl-legacy');
    const paths = new Paths(root);
    const open = await connect(null);
    await readConfig(open, paths);
    await open.create(paths.workUnit('e0000000-0000-4000-8000-000000000000' as WorkUnitId), { compute_id: 'compute-9' });
    const admin = await connect(readCredentials(files().admin));
    const api = await connect(readCredentials(files().api));
    for (const s of [admin, api]) {
      const err = await readConfig(s, paths).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(AclSetupError);
      expect((err as AclSetupError).code).toBe('ZK_ROOT_WITHOUT_ACLS');
      expect((err as Error).message).toContain('quark zk secure');
    }
    const r = await secureRoot(admin, paths);
    expect(r.nodes).toBeGreaterThan(5);
    expect(r.granted).toBe(1);
    await readConfig(api, paths);
    await refused(open.get(paths.config));
    const granted = await admin.getAcl(paths.workUnit('e0000000-0000-4000-8000-000000000000' as WorkUnitId));
    expect(granted!.some((e) => e.id.startsWith('compute.compute-9:'))).toBe(true);
    // Now a session without credentials is told what it lacks.
    const err = await readConfig(open, paths).catch((e: unknown) => e);
    expect((err as AclSetupError).code).toBe('ZK_CREDENTIALS_REQUIRED');

    // Rotation (quark zk rotate): the old admin moves every node to a new set; the old files stop working.
    const next = makeCredentials();
    const moved = await secureRoot(admin, paths, next.admin);
    expect(moved.nodes).toBe(r.nodes);
    expect(((await readConfig(api, paths).catch((e: unknown) => e)) as AclSetupError).code).toBe('ZK_CREDENTIALS_MISMATCH');
    await refused(admin.get(paths.config));
    await readConfig(await connect(next.api), paths);
    const nextAdmin = await connect(next.admin);
    const regranted = await nextAdmin.getAcl(paths.workUnit('e0000000-0000-4000-8000-000000000000' as WorkUnitId));
    expect(regranted!.some((e) => e.id.startsWith('compute.compute-9:'))).toBe(true);
    await nextAdmin.removeTree(root);
  });

  it("another cluster's credentials are refused, and a role other than admin cannot set a fresh root up", async () => {
    const root = uniqueRoot('acl-mismatch');
    const paths = new Paths(root);
    const api = await connect(readCredentials(files().api));
    expect(((await readConfig(api, paths).catch((e: unknown) => e)) as AclSetupError).code).toBe('ZK_ROOT_NOT_INITIALISED');
    const admin = await connect(readCredentials(files().admin));
    await readConfig(admin, paths);
    const stranger = await connect(makeCredentials().api);
    expect(((await readConfig(stranger, paths).catch((e: unknown) => e)) as AclSetupError).code).toBe('ZK_CREDENTIALS_MISMATCH');
    await admin.removeTree(root);
  });
});
