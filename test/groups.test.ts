// Server groups end to end: 3 orcs and 4 computes as real processes, members booted at once so
// that several orcs place members of one group concurrently (each unit's shard decides its orc).
// Invariant, checked on every server record the computes committed: the group's policy is never
// broken (anti-affinity: no two members on one compute; affinity: all on one; soft-anti-affinity:
// per-compute counts within one of each other). Also: the member past what anti-affinity allows
// fails NO_VALID_HOST naming the group's filter, and a member leaves when deleted or failed.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { http, startCluster, waitForUnit, type TestCluster, type WorkUnitView } from './cluster.js';
import { useProcessGroup } from './support/index.js';
import type { ComputeId, WorkUnitId } from '../ts/common/ids.js';
import type { WorkUnitRecord } from '../ts/common/model.js';

const group = useProcessGroup();
let c: TestCluster;
let cwd: string;
const flavor = { vcpus: 1, ram_mb: 256, disk_gb: 1 };
const COMPUTES = 4;
/** The orcs that placed members, over the whole file (a unit is placed by its shard's owner). */
const placedBy = new Set<string>();

beforeAll(async () => {
  c = await startCluster(group, { computes: COMPUTES, orcs: 3, orcArgs: ['--sweep-ms', '250'] });
  cwd = mkdtempSync(join(tmpdir(), 'quark-groups-'));
}, 180_000);
afterAll(async () => {
  await c?.close();
  if (cwd) rmSync(cwd, { recursive: true, force: true });
});

interface GroupView {
  id: string;
  name: string;
  policy: string;
  members: Array<{ server_id: string; compute_id: string | null }>;
}

async function newGroup(name: string, policy: string): Promise<string> {
  const r = await http<GroupView>(`${c.api}/v1/server-groups`, { method: 'POST', body: { name, policy } });
  expect(r.status).toBe(201);
  return r.body.id;
}

const showGroup = async (id: string) => (await http<GroupView>(`${c.api}/v1/server-groups/${id}`)).body;

/** Boots `n` members at once and waits for each unit to end; the units in boot order. */
async function bootMembers(groupId: string, prefix: string, n: number): Promise<Array<WorkUnitView & { server_id: string }>> {
  const accepted = await Promise.all(
    Array.from({ length: n }, (_, i) => http(`${c.api}/v1/servers`, { method: 'POST', body: { name: `${prefix}-${i}`, flavor, group: groupId } })),
  );
  for (const a of accepted) expect(a.status, JSON.stringify(a.body)).toBe(202);
  const owners = (await http<Record<string, string | null>>(`${c.api}/v1/shards`)).body;
  for (const a of accepted) {
    const shard = (await c.zk.get<WorkUnitRecord>(c.paths.workUnit(a.body.work_unit_id as WorkUnitId)))!.value!.shard;
    if (owners[String(shard)]) placedBy.add(owners[String(shard)]!);
  }
  return Promise.all(accepted.map((a) => waitForUnit(c.api, a.body.work_unit_id)));
}

/** Where each ACTIVE member is, from the server records (what the computes committed), checked against the group's view. */
async function membersOn(groupId: string): Promise<Map<string, string>> {
  const g = await showGroup(groupId);
  const out = new Map<string, string>();
  for (const m of g.members) {
    const s = (await http<{ status: string; compute_id: string | null; group: string | null }>(`${c.api}/v1/servers/${m.server_id}`)).body;
    expect(s.group).toBe(groupId);
    expect(s.status).toBe('ACTIVE');
    expect(m.compute_id, 'the group records the compute the server runs on').toBe(s.compute_id);
    out.set(m.server_id, s.compute_id!);
  }
  return out;
}

const perCompute = (on: Map<string, string>): number[] => {
  const counts = new Map<string, number>();
  for (const id of on.values()) counts.set(id, (counts.get(id) ?? 0) + 1);
  return [...counts.values()];
};

async function deleteServer(id: string): Promise<void> {
  const r = await http(`${c.api}/v1/servers/${id}`, { method: 'DELETE' });
  expect(r.status).toBe(202);
  expect((await waitForUnit(c.api, r.body.work_unit_id)).state).toBe('SUCCEEDED');
}

describe('anti-affinity', () => {
  it('4 members booted at once land on 4 distinct computes; a 5th fails NO_VALID_HOST naming the group; a deleted member makes room', async () => {
    const g = await newGroup('web', 'anti-affinity');
    const units = await bootMembers(g, 'web', COMPUTES);
    expect(units.map((u) => u.state)).toEqual(Array(COMPUTES).fill('SUCCEEDED'));
    const on = await membersOn(g);
    expect(on.size).toBe(COMPUTES);
    expect(new Set(on.values()).size, `members on ${[...on.values()].join(', ')}`).toBe(COMPUTES);

    const [fifth] = await bootMembers(g, 'web-extra', 1);
    expect(fifth!.state).toBe('FAILED');
    expect(fifth!.error?.code).toBe('NO_VALID_HOST');
    expect(fifth!.error?.rejected?.anti_affinity).toBe(COMPUTES);
    expect(fifth!.error?.message).toContain(`anti_affinity removed ${COMPUTES}`);
    expect(fifth!.error?.message).toContain(`server group web ${g}, policy anti-affinity`);
    // The failed build left the group: its server stays (ERROR) but is no member.
    expect((await showGroup(g)).members.map((m) => m.server_id)).not.toContain(fifth!.server_id);
    expect((await http(`${c.api}/v1/servers/${fifth!.server_id}`)).body.status).toBe('ERROR');

    // A member deleted leaves the group, and its compute takes the next member.
    const [gone, freed] = [...on][0]!;
    await deleteServer(gone);
    expect((await showGroup(g)).members.map((m) => m.server_id)).not.toContain(gone);
    const [again] = await bootMembers(g, 'web-again', 1);
    expect(again!.state).toBe('SUCCEEDED');
    expect(again!.compute_id).toBe(freed);
    expect(new Set((await membersOn(g)).values()).size).toBe(COMPUTES);

    // The group goes only once it has no members: 409 until then.
    const refused = await http(`${c.api}/v1/server-groups/${g}`, { method: 'DELETE' });
    expect([refused.status, refused.body.error.code]).toEqual([409, 'GROUP_IN_USE']);
    for (const m of (await showGroup(g)).members) await deleteServer(m.server_id);
    await deleteServer(fifth!.server_id); // no member any more: deleting it leaves nothing
    expect((await http(`${c.api}/v1/server-groups/${g}`, { method: 'DELETE' })).status).toBe(204);
  });

  it('8 members booted at once on 4 computes: exactly 4 placed, on distinct computes; the other 4 fail naming the group', async () => {
    const g = await newGroup('burst', 'anti-affinity');
    const units = await bootMembers(g, 'burst', 2 * COMPUTES);
    const ok = units.filter((u) => u.state === 'SUCCEEDED');
    const failed = units.filter((u) => u.state === 'FAILED');
    expect(ok.length).toBe(COMPUTES);
    expect(new Set(ok.map((u) => u.compute_id)).size).toBe(COMPUTES);
    for (const f of failed) expect([f.error?.code, f.error?.rejected?.anti_affinity]).toEqual(['NO_VALID_HOST', COMPUTES]);
    expect(new Set((await membersOn(g)).values()).size).toBe(COMPUTES);
    for (const u of units) await deleteServer(u.server_id);
  });
});

describe('affinity', () => {
  it('members booted at once all land on one compute', async () => {
    const g = await newGroup('db', 'affinity');
    const units = await bootMembers(g, 'db', 6);
    expect(units.map((u) => u.state)).toEqual(Array(6).fill('SUCCEEDED'));
    const on = await membersOn(g);
    expect(new Set(on.values()).size, `members on ${[...on.values()].join(', ')}`).toBe(1);
    for (const u of units) await deleteServer(u.server_id);
    expect((await showGroup(g)).members).toEqual([]);
  });
});

describe('soft-anti-affinity', () => {
  it('spreads while it can (4 on 4 computes), still places when it cannot (4 more: two on each)', async () => {
    const g = await newGroup('cache', 'soft-anti-affinity');
    const first = await bootMembers(g, 'cache', COMPUTES);
    expect(first.map((u) => u.state)).toEqual(Array(COMPUTES).fill('SUCCEEDED'));
    expect(new Set((await membersOn(g)).values()).size).toBe(COMPUTES);
    const second = await bootMembers(g, 'cache-more', COMPUTES);
    expect(second.map((u) => u.state)).toEqual(Array(COMPUTES).fill('SUCCEEDED'));
    expect(perCompute(await membersOn(g)).sort()).toEqual(Array(COMPUTES).fill(2));
    for (const u of [...first, ...second]) await deleteServer(u.server_id);
  });
});

describe('leaving on a failed build', () => {
  it('a member the compute refuses (its own admission, past a forged self/free) leaves the group in the failure\'s transaction', async () => {
    const g = await newGroup('refused', 'affinity');
    const big = { ...flavor, vcpus: 64 }; // all of a compute: 16 vCPUs x overcommit 4
    const first = await http(`${c.api}/v1/servers`, { method: 'POST', body: { name: 'first', flavor: big, group: g } });
    const placed = await waitForUnit(c.api, first.body.work_unit_id);
    expect(placed.state).toBe('SUCCEEDED');
    // A forged self/free (the kind of write ZooKeeper ACLs will forbid) says the full compute is
    // empty; affinity sends the next member there, and the orc reads the forged value before it
    // would give up for want of a host.
    const id = placed.compute_id as ComputeId;
    const free = (await c.zk.get<Record<string, number>>(c.paths.selfFree(id)))!;
    await c.zk.set(c.paths.selfFree(id), { ...free.value, vcpus: 1000 }, free.stat.version);
    try {
      const r = await http(`${c.api}/v1/servers`, { method: 'POST', body: { name: 'too-big', flavor: big, group: g } });
      expect(r.status).toBe(202);
      const u = await waitForUnit(c.api, r.body.work_unit_id);
      expect([u.state, u.error?.code, u.compute_id]).toEqual(['FAILED', 'NO_CAPACITY', id]);
      expect((await showGroup(g)).members).toEqual([{ server_id: first.body.server_id, compute_id: id }]);
      await deleteServer(r.body.server_id);
    } finally {
      // The failure gave back what the claim took: the forged value is there again, and goes.
      const now = (await c.zk.get<Record<string, number>>(c.paths.selfFree(id)))!;
      await c.zk.set(c.paths.selfFree(id), free.value, now.stat.version);
    }
    await deleteServer(first.body.server_id);
    expect((await http(`${c.api}/v1/server-groups/${g}`, { method: 'DELETE' })).status).toBe(204);
  });
});

describe('concurrency', () => {
  it('the members above were placed by more than one orc', () => {
    expect(placedBy.size, `placed by ${[...placedBy].join(', ')}`).toBeGreaterThan(1);
  });
});

describe('quark group', () => {
  const quark = async (args: string[]) => {
    const child = group.spawnQuark([...args, '--api', c.api], { cwd, env: { QUARK_TOKEN: c.token, QUARK_API: undefined } });
    const exit = await child.exited;
    return { code: exit.code, out: child.stdout(), err: child.stderr() };
  };

  it('create, list, show with members, delete refused while it has members, then deleted', async () => {
    const made = await quark(['group', 'create', '--name', 'cli-group', '--policy', 'soft-anti-affinity']);
    expect(made.code, made.err).toBe(0);
    const id = /^id +(\S+)$/m.exec(made.out)?.[1] ?? '';
    expect(made.out).toMatch(/^policy +soft-anti-affinity$/m);
    const list = await quark(['group', 'list']);
    expect(list.code, list.err).toBe(0);
    expect(list.out).toMatch(new RegExp(`^${id} +admin +cli-group +soft-anti-affinity +0 `, 'm'));

    const [unit] = await bootMembers(id, 'cli', 1);
    expect(unit!.state).toBe('SUCCEEDED');
    const shown = await quark(['group', 'show', id]);
    expect(shown.out).toMatch(/^members +1$/m);
    expect(shown.out).toMatch(new RegExp(`^${unit!.server_id} +${unit!.compute_id}$`, 'm'));
    const refused = await quark(['group', 'delete', id]);
    expect(refused.code).toBe(1);
    expect(refused.err).toMatch(/409 GROUP_IN_USE/);

    await deleteServer(unit!.server_id);
    const deleted = await quark(['group', 'delete', id]);
    expect(deleted.code, deleted.err).toBe(0);
    const missing = await quark(['group', 'show', id]);
    expect(missing.code).toBe(1);
    expect(missing.err).toMatch(/404 NOT_FOUND/);
    const bad = await quark(['group', 'create', '--name', 'x', '--policy', 'sometimes']);
    expect(bad.code).toBe(1);
    expect(bad.err).toMatch(/--policy must be one of affinity, anti-affinity, soft-anti-affinity/);
  });
});
