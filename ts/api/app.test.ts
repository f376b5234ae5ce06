// The REST contract through app.inject(), against a real ZooKeeper (no orcs: units stay PENDING).
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { FastifyInstance } from 'fastify';
import { buildApp } from './app.js';
import { Zk } from '../zk/client.js';
import { Paths } from '../zk/paths.js';
import { readConfig } from '../zk/config.js';
import { uniqueRoot, zkConnect } from '../../test/support/index.js';
import { mintToken } from '../auth/tokens.js';
import { AuthPaths } from '../auth/layout.js';
import { asProjectId } from '../auth/policy.js';

let zk: Zk;
let app: FastifyInstance;
const paths = new Paths(uniqueRoot('api'));
const boot = { name: 'web-1', flavor: { vcpus: 2, ram_mb: 2048, disk_gb: 20 } };

beforeAll(async () => {
  zk = await Zk.connect(zkConnect());
  const config = await readConfig(zk, paths, { shards: 4 });
  app = await buildApp({ zk, paths, config });
  const { secret } = await mintToken(zk, new AuthPaths(paths), { project: asProjectId('p1'), role: 'admin' });
  auth.authorization = `Bearer ${secret}`;
});
afterAll(async () => {
  await app.close();
  await zk.removeTree(paths.root);
  await zk.close();
});

const auth: Record<string, string> = {};
const post = (url: string, payload: unknown, headers: Record<string, string> = {}) =>
  app.inject({ method: 'POST', url, payload: payload as object, headers: { ...auth, ...headers } });
const get = (url: string) => app.inject({ url, headers: auth });

describe('POST /v1/servers', () => {
  it('accepts a boot: 202 with ids, a PENDING unit and a BUILDING server', async () => {
    const res = await post('/v1/servers', boot);
    expect(res.statusCode).toBe(202);
    const { work_unit_id, server_id } = res.json();
    const wu = (await get(`/v1/work-units/${work_unit_id}`)).json();
    expect(wu).toMatchObject({ id: work_unit_id, kind: 'build', state: 'PENDING', server_id, compute_id: null, steps_completed: [] });
    expect(wu.steps_left).toEqual(['allocate_vcpu', 'allocate_storage', 'define', 'start']);
    const server = (await get(`/v1/servers/${server_id}`)).json();
    expect(server).toMatchObject({ id: server_id, name: 'web-1', status: 'BUILDING', compute_id: null, flavor: boot.flavor });
    // The unit sits in its shard's inbox for the owning orc.
    const inboxes = await Promise.all([0, 1, 2, 3].map((n) => zk.children(paths.inbox(n))));
    expect(inboxes.flat()).toContain(work_unit_id);
  });

  it.each([
    ['an unknown field', { ...boot, colour: 'red' }, /colour|additional/],
    ['a wrong type', { ...boot, flavor: { ...boot.flavor, vcpus: '2' } }, /vcpus|integer/],
    ['a missing name', { flavor: boot.flavor }, /name/],
    ['a bad name', { ...boot, name: '../etc' }, /name/],
    ['zero vcpus', { ...boot, flavor: { ...boot.flavor, vcpus: 0 } }, /vcpus/],
  ])('rejects %s with 400 and a message', async (_what, body, msg) => {
    const res = await post('/v1/servers', body);
    expect(res.statusCode).toBe(400);
    expect(res.json().error.code).toBe('BAD_REQUEST');
    expect(res.json().error.message).toMatch(msg);
  });

  it('rejects malformed JSON, a huge body and a non-JSON body', async () => {
    const bad = await app.inject({ method: 'POST', url: '/v1/servers', payload: '{"name":', headers: { ...auth, 'content-type': 'application/json' } });
    expect(bad.statusCode).toBe(400);
    expect(bad.json().error.code).toBe('BAD_REQUEST');
    const huge = await post('/v1/servers', { ...boot, labels: Array.from({ length: 3000 }, (_, i) => `l${i}`) });
    expect(huge.statusCode).toBe(413);
    expect(huge.json().error.code).toBe('PAYLOAD_TOO_LARGE');
    const text = await app.inject({ method: 'POST', url: '/v1/servers', payload: 'hello', headers: { ...auth, 'content-type': 'text/plain' } });
    expect(text.statusCode).toBe(415);
  });

  it('Idempotency-Key returns the first answer again, and refuses a different body', async () => {
    const key = { 'idempotency-key': 'boot-once-1' };
    const a = await post('/v1/servers', boot, key);
    const b = await post('/v1/servers', boot, key);
    expect(a.statusCode).toBe(202);
    expect(b.statusCode).toBe(202);
    expect(b.json()).toEqual(a.json());
    const c = await post('/v1/servers', { ...boot, name: 'other' }, key);
    expect(c.statusCode).toBe(422);
    expect(c.json().error.code).toBe('IDEMPOTENCY_KEY_REUSED');
  });
});

describe('reads and actions', () => {
  it('unknown ids get 404, malformed ids 400', async () => {
    const id = '00000000-0000-4000-8000-000000000000';
    for (const url of [`/v1/servers/${id}`, `/v1/work-units/${id}`]) {
      const res = await get(url);
      expect(res.statusCode).toBe(404);
      expect(res.json().error).toMatchObject({ code: 'NOT_FOUND' });
    }
    expect((await get('/v1/servers/not-a-uuid')).statusCode).toBe(400);
    expect((await post(`/v1/servers/${id}/actions`, { action: 'stop' })).statusCode).toBe(404);
    expect((await app.inject({ method: 'DELETE', url: `/v1/servers/${id}`, headers: auth })).statusCode).toBe(404);
    expect((await get('/v1/nope')).statusCode).toBe(404);
  });

  it('refuses an action the VM state does not allow, or a bad action', async () => {
    const { server_id } = (await post('/v1/servers', { ...boot, name: 'busy' })).json();
    const stop = await post(`/v1/servers/${server_id}/actions`, { action: 'stop' });
    expect(stop.statusCode).toBe(409);
    expect(stop.json().error.code).toBe('SERVER_BUSY'); // its build is still in flight
    const bad = await post(`/v1/servers/${server_id}/actions`, { action: 'explode' });
    expect(bad.statusCode).toBe(400);
  });

  it('lists servers and reports health', async () => {
    const list = (await get('/v1/servers')).json();
    expect(list.length).toBeGreaterThanOrEqual(2);
    expect((await get('/v1/servers?status=ACTIVE')).json()).toEqual([]);
    expect((await get('/v1/servers?status=WHATEVER')).statusCode).toBe(400);
    expect((await app.inject('/healthz')).statusCode).toBe(200);
  });
});
