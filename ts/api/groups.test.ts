// Server groups through app.inject(), against a real ZooKeeper (no orcs: units stay PENDING, and a
// member's leaving is committed here the way a delete's finish commits it): validation, who may
// see and act on which group, membership by boot, and the 409 of a group that still has members.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { FastifyInstance, LightMyRequestResponse } from 'fastify';
import { buildApp } from './app.js';
import { Zk } from '../zk/client.js';
import { Paths } from '../zk/paths.js';
import { readConfig } from '../zk/config.js';
import { uniqueRoot, zkConnect } from '../../test/support/index.js';
import { mintToken } from '../auth/tokens.js';
import { AuthPaths } from '../auth/layout.js';
import { asProjectId, type Role } from '../auth/policy.js';
import { groupLeave } from '../lifecycle/groups.js';
import { applyOps } from '../lifecycle/ops.js';
import { newGroupId, newServerId, type ServerId } from '../common/ids.js';
import { Admission } from './admission.js';
import { ApiError } from './errors.js';
import { isZkError } from '../zk/errors.js';
import type { ServerGroupRecord, ServerRecord, WorkUnitRecord } from '../common/model.js';

let zk: Zk;
let app: FastifyInstance;
const paths = new Paths(uniqueRoot('groups'));
const tok: Record<string, string> = {};
const flavor = { vcpus: 1, ram_mb: 256, disk_gb: 1 };

beforeAll(async () => {
  zk = await Zk.connect(zkConnect());
  const config = await readConfig(zk, paths, { shards: 4 });
  app = await buildApp({ zk, paths, config, rateLimit: null });
  for (const [who, project, role] of [
    ['admin', 'ops', 'admin'],
    ['m1', 'p1', 'member'],
    ['r1', 'p1', 'reader'],
    ['m2', 'p2', 'member'],
    ['r2', 'p2', 'reader'],
  ] as const) {
    tok[who] = (await mintToken(zk, new AuthPaths(paths), { project: asProjectId(project), role: role as Role })).secret;
  }
});
afterAll(async () => {
  await app.close();
  await zk.removeTree(paths.root);
  await zk.close();
});

const headers = (who: string) => ({ authorization: `Bearer ${tok[who]}` });
const post = (who: string, url: string, payload: unknown) => app.inject({ method: 'POST', url, payload: payload as object, headers: headers(who) });
const get = (who: string, url: string) => app.inject({ url, headers: headers(who) });
const del = (who: string, url: string) => app.inject({ method: 'DELETE', url, headers: headers(who) });
const code = (r: LightMyRequestResponse) => (r.json() as { error?: { code: string } }).error?.code;

async function newGroup(who: string, name: string, policy = 'anti-affinity'): Promise<string> {
  const r = await post(who, '/v1/server-groups', { name, policy });
  expect(r.statusCode, r.body).toBe(201);
  return r.json().id;
}

/** What a server's delete finish commits for its group: the member node goes, in a transaction of its own here. */
async function leave(serverId: string): Promise<void> {
  const s = await zk.get<ServerRecord>(paths.server(serverId as ServerId));
  await applyOps(zk.txn(), await groupLeave(zk, paths, s?.value)).commit();
}

describe('validation', () => {
  it.each([
    ['no policy', { name: 'g' }, /policy/],
    ['no name', { policy: 'affinity' }, /name/],
    ['an unknown policy', { name: 'g', policy: 'soft-affinity' }, /policy|allowed/],
    ['an unknown field', { name: 'g', policy: 'affinity', members: [] }, /members|additional/],
    ['a bad name', { name: '../g', policy: 'affinity' }, /name/],
    ['a wrong type', { name: 'g', policy: 3 }, /policy|string/],
  ])('POST /v1/server-groups refuses %s with 400', async (_what, body, msg) => {
    const r = await post('m1', '/v1/server-groups', body);
    expect(r.statusCode).toBe(400);
    expect(code(r)).toBe('BAD_REQUEST');
    expect(r.json().error.message).toMatch(msg);
  });

  it('a boot naming a group that is not a uuid is 400; one that does not exist is 404, and nothing is created', async () => {
    const bad = await post('m1', '/v1/servers', { name: 'x', flavor, group: 'web' });
    expect([bad.statusCode, code(bad)]).toEqual([400, 'BAD_REQUEST']);
    const before = (await zk.children(paths.servers))?.length;
    const missing = await post('m1', '/v1/servers', { name: 'x', flavor, group: '00000000-0000-4000-8000-000000000000' });
    expect([missing.statusCode, code(missing)]).toEqual([404, 'NOT_FOUND']);
    expect((await zk.children(paths.servers))?.length).toBe(before);
  });

  it('ids in paths must be uuids', async () => {
    expect((await get('m1', '/v1/server-groups/not-a-uuid')).statusCode).toBe(400);
    expect((await del('m1', '/v1/server-groups/not-a-uuid')).statusCode).toBe(400);
  });
});

describe('who sees and acts on which group', () => {
  it('a member creates in its own project; a reader may not create or delete but reads', async () => {
    const r = await post('m1', '/v1/server-groups', { name: 'web', policy: 'affinity' });
    expect(r.statusCode).toBe(201);
    expect(r.json()).toMatchObject({ project: 'p1', name: 'web', policy: 'affinity', members: [] });
    const id = r.json().id as string;
    expect((await zk.get<ServerGroupRecord>(paths.serverGroup(r.json().id)))?.value).toMatchObject({ id, project: 'p1', placed: {} });
    const refused = await post('r1', '/v1/server-groups', { name: 'nope', policy: 'affinity' });
    expect([refused.statusCode, code(refused)]).toEqual([403, 'FORBIDDEN']);
    expect((await get('r1', `/v1/server-groups/${id}`)).json()).toMatchObject({ id, name: 'web' });
    expect((await del('r1', `/v1/server-groups/${id}`)).statusCode).toBe(403);
    expect((await get('r1', '/v1/server-groups')).json().map((g: { id: string }) => g.id)).toContain(id);
  });

  it("another project's group is 404 to its members and readers (show, delete, boot into it), absent from their list; an admin sees it", async () => {
    const id = await newGroup('m1', 'private');
    for (const who of ['m2', 'r2']) {
      const shown = await get(who, `/v1/server-groups/${id}`);
      expect([shown.statusCode, code(shown)], who).toEqual([404, 'NOT_FOUND']);
      expect((await get(who, '/v1/server-groups')).body, who).not.toContain(id);
    }
    const gone = await del('m2', `/v1/server-groups/${id}`);
    expect([gone.statusCode, code(gone)]).toEqual([404, 'NOT_FOUND']);
    const boot = await post('m2', '/v1/servers', { name: 'intruder', flavor, group: id });
    expect([boot.statusCode, code(boot)]).toEqual([404, 'NOT_FOUND']);
    // An admin sees every project's groups, but its own boots join only its own project's.
    expect((await get('admin', `/v1/server-groups/${id}`)).json()).toMatchObject({ id, project: 'p1' });
    expect((await get('admin', '/v1/server-groups')).json().map((g: { id: string }) => g.id)).toContain(id);
    expect((await post('admin', '/v1/servers', { name: 'admins', flavor, group: id })).statusCode).toBe(404);
    expect(await zk.children(paths.groupMembers(id as never))).toEqual([]);
    // Still there for its owner.
    expect((await get('m1', `/v1/server-groups/${id}`)).statusCode).toBe(200);
  });
});

describe('membership', () => {
  it('a boot joins: the unit carries the group, the server shows it, the group lists it (unplaced); delete is 409 until it leaves', async () => {
    const id = await newGroup('m1', 'db', 'soft-anti-affinity');
    const a = await post('m1', '/v1/servers', { name: 'db-1', flavor, group: id });
    const b = await post('m1', '/v1/servers', { name: 'db-2', flavor, group: id });
    expect([a.statusCode, b.statusCode]).toEqual([202, 202]);
    const unit = await zk.get<WorkUnitRecord>(paths.workUnit(a.json().work_unit_id));
    expect(unit?.value?.request?.group).toBe(id);
    expect((await get('m1', `/v1/servers/${a.json().server_id}`)).json().group).toBe(id);
    const shown = (await get('m1', `/v1/server-groups/${id}`)).json();
    expect(shown.members).toEqual(
      [a.json().server_id, b.json().server_id].sort().map((s: string) => ({ server_id: s, compute_id: null })),
    );

    const refused = await del('m1', `/v1/server-groups/${id}`);
    expect([refused.statusCode, code(refused)]).toEqual([409, 'GROUP_IN_USE']);
    expect(refused.json().error.members).toEqual([a.json().server_id, b.json().server_id].sort());
    // An admin is refused too: the rule is the group's, not the caller's.
    expect((await del('admin', `/v1/server-groups/${id}`)).statusCode).toBe(409);

    await leave(a.json().server_id);
    expect((await del('m1', `/v1/server-groups/${id}`)).statusCode).toBe(409);
    await leave(b.json().server_id);
    // Leaving twice costs nothing (a failed build's server, deleted later).
    expect(await groupLeave(zk, paths, (await zk.get<ServerRecord>(paths.server(b.json().server_id)))?.value)).toEqual([]);
    expect((await del('m1', `/v1/server-groups/${id}`)).statusCode).toBe(204);
    expect((await get('m1', `/v1/server-groups/${id}`)).statusCode).toBe(404);
    expect(await zk.exists(paths.serverGroup(id as never))).toBeNull();
  });

  it('a boot racing the group\'s delete either joins (and the delete is 409) or is 404 (and the delete 204): never a member of a deleted group', async () => {
    for (let i = 0; i < 12; i++) {
      const id = await newGroup('m1', `race-${i}`);
      // The delete sent a little later each round, so it lands before, during and after the boot's accept.
      const later = new Promise((r) => setTimeout(r, i % 4));
      const [boot, gone] = await Promise.all([post('m1', '/v1/servers', { name: `r-${i}`, flavor, group: id }), later.then(() => del('m1', `/v1/server-groups/${id}`))]);
      const outcome = `${boot.statusCode}/${gone.statusCode}`;
      expect(['202/409', '404/204'], outcome).toContain(outcome);
      const exists = (await zk.exists(paths.serverGroup(id as never))) !== null;
      expect(exists).toBe(boot.statusCode === 202);
      if (boot.statusCode === 202) expect(await zk.children(paths.groupMembers(id as never))).toEqual([boot.json().server_id]);
    }
  });

  it('a boot whose group went between its read and its commit is refused alone; the boots committed with it are not', async () => {
    const ap = new AuthPaths(paths);
    const admission = new Admission<string>(zk, ap);
    const project = asProjectId('p3');
    const gone = paths.groupMember(newGroupId(), newServerId());
    const boot = (name: string, member?: string) => {
      const unit = `${paths.workUnits}/adm-${name}-${newServerId()}`;
      return admission.admit({
        project,
        serverId: newServerId(),
        charge: { instances: 1, vcpus: 1, ram_mb: 1, disk_gb: 1 },
        unitPath: unit,
        write: (txn) => {
          txn.create(unit);
          if (member) txn.create(member);
        },
        answer: unit,
        refusal: (e) => (member && e.path === member && isZkError(e, 'NO_NODE') ? new ApiError('NOT_FOUND', `group of ${name} is gone`) : null),
      });
    };
    // b and c queue while a commits, and go in one transaction: the orphan's NO_NODE fails it whole.
    const [kept, refused, alsoKept] = await Promise.allSettled([boot('a'), boot('b', gone), boot('c')]);
    expect(refused).toMatchObject({ status: 'rejected', reason: { message: 'group of b is gone' } });
    for (const k of [kept, alsoKept]) {
      expect(k.status).toBe('fulfilled');
      expect(await zk.exists((k as PromiseFulfilledResult<string>).value)).not.toBeNull();
    }
    expect((await zk.get(ap.usage(project)))?.value).toMatchObject({ instances: 2 });
  });

  it('several boots of one project committed together join one group each', async () => {
    const id = await newGroup('m2', 'batch', 'affinity');
    const rs = await Promise.all(Array.from({ length: 6 }, (_, i) => post('m2', '/v1/servers', { name: `b-${i}`, flavor, group: id })));
    expect(rs.map((r) => r.statusCode)).toEqual(Array(6).fill(202));
    const members = (await get('m2', `/v1/server-groups/${id}`)).json().members.map((m: { server_id: string }) => m.server_id);
    expect(members).toEqual(rs.map((r) => r.json().server_id).sort());
  });
});
