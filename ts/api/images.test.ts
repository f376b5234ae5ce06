// The image endpoints, the boot fields that go with them, and the console route's refusals,
// through app.inject() against a real ZooKeeper (no orcs, no computes: units stay PENDING).
// Images are per project like servers: a member of p1 uploads, its reader reads, p2 sees nothing.
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { FastifyInstance } from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildApp } from './app.js';
import { Zk } from '../zk/client.js';
import { Paths } from '../zk/paths.js';
import { readConfig } from '../zk/config.js';
import type { WorkUnitRecord } from '../common/model.js';
import type { ImageRecord } from '../images/model.js';
import { uniqueRoot, zkConnect } from '../../test/support/index.js';
import { mintToken } from '../auth/tokens.js';
import { AuthPaths } from '../auth/layout.js';
import { asProjectId, type Role } from '../auth/policy.js';

let zk: Zk;
let app: FastifyInstance;
let dir: string;
const paths = new Paths(uniqueRoot('api-images'));
// A qcow2 header is all the API checks of a qcow2 body: its first four bytes.
const qcow2 = Buffer.concat([Buffer.from([0x51, 0x46, 0x49, 0xfb]), Buffer.alloc(4096, 7)]);
const flavor = { vcpus: 1, ram_mb: 128, disk_gb: 1 };
/** m1 and r1: member and reader of p1, which owns the images below; m2: member of p2; admin: of ops. */
const tok: Record<string, string> = {};
const as = (who: string | null): Record<string, string> => (who ? { authorization: `Bearer ${tok[who]}` } : {});
const get = (url: string, who: string | null = 'm1') => app.inject({ url, headers: as(who) });

beforeAll(async () => {
  zk = await Zk.connect(zkConnect());
  dir = await mkdtemp(join(tmpdir(), 'quark-api-images-'));
  const config = await readConfig(zk, paths, { shards: 4 });
  app = await buildApp({ zk, paths, config, images: { dir, publicUrl: 'http://127.0.0.1:9' } });
  for (const [who, project, role] of [
    ['m1', 'p1', 'member'],
    ['r1', 'p1', 'reader'],
    ['m2', 'p2', 'member'],
    ['admin', 'ops', 'admin'],
  ] as const satisfies ReadonlyArray<readonly [string, string, Role]>) {
    tok[who] = (await mintToken(zk, new AuthPaths(paths), { project: asProjectId(project), role })).secret;
  }
});
afterAll(async () => {
  await app.close();
  await zk.removeTree(paths.root);
  await zk.close();
  await rm(dir, { recursive: true, force: true });
});

const upload = (name: string, format: string, body: Buffer, contentType = 'application/octet-stream', who = 'm1') =>
  app.inject({ method: 'POST', url: `/v1/images?name=${name}&format=${format}`, payload: body, headers: { 'content-type': contentType, ...as(who) } });
const boot = (extra: Record<string, unknown>, who = 'm1') => app.inject({ method: 'POST', url: '/v1/servers', payload: { name: 'vm', flavor, ...extra }, headers: as(who) });
const remove = (id: string, who = 'm1') => app.inject({ method: 'DELETE', url: `/v1/images/${id}`, headers: as(who) });
const recordOf = async (id: string) => (await zk.get<ImageRecord>(`${paths.root}/images/${id}`))!.value!;

describe('images', () => {
  let id = '';

  it('takes an upload: 201 with its size and sha256; the file is on disk, the record in ZooKeeper', async () => {
    const res = await upload('tiny', 'qcow2', qcow2);
    expect(res.statusCode, res.body).toBe(201);
    const img = res.json();
    expect(img).toMatchObject({ project: 'p1', name: 'tiny', format: 'qcow2', size_bytes: qcow2.length, sha256: createHash('sha256').update(qcow2).digest('hex') });
    // The fetch key stays in ZooKeeper: no answer shows it.
    expect(img).not.toHaveProperty('fetch_key');
    expect(img).not.toHaveProperty('url');
    expect(img.created_at).toMatch(/^\d{4}-/);
    id = img.id;
    expect(await readdir(dir)).toEqual([`${id}.qcow2`]);
    const rec = await zk.get<{ url: string; size_bytes: number }>(`${paths.root}/images/${id}`);
    expect(rec?.value).toMatchObject({ url: `http://127.0.0.1:9/v1/images/${id}/file`, size_bytes: qcow2.length, project: 'p1' });
    expect((await get(`/v1/images/${id}`)).json()).toEqual(img);
    expect((await get('/v1/images')).json()).toEqual([img]);
  });

  it('serves the file to whoever shows its fetch key (computes), with its sha256; without the key it is 404', async () => {
    const key = (await recordOf(id)).fetch_key;
    expect(key.length).toBeGreaterThanOrEqual(32);
    // A token is no substitute for the key, and a wrong key is as good as none.
    for (const headers of [{}, as('admin'), { 'x-quark-image-key': 'x'.repeat(key.length) }, { 'x-quark-image-key': `${key}x` }]) {
      const refused = await app.inject({ url: `/v1/images/${id}/file`, headers });
      expect(refused.statusCode).toBe(404);
      expect(refused.rawPayload.includes(qcow2.subarray(0, 64))).toBe(false);
    }
    const res = await app.inject({ url: `/v1/images/${id}/file`, headers: { 'x-quark-image-key': key } });
    expect(res.statusCode).toBe(200);
    expect(res.headers['x-image-sha256']).toBe(createHash('sha256').update(qcow2).digest('hex'));
    expect(Buffer.compare(res.rawPayload, qcow2)).toBe(0);
  });

  it('refuses a taken name, a body that is not what the format says, an unknown format, JSON, nothing', async () => {
    expect((await upload('tiny', 'raw', Buffer.from('x'))).statusCode).toBe(409);
    expect((await upload('fake', 'qcow2', Buffer.from('plain text, not qcow2'))).statusCode).toBe(400);
    expect((await upload('fake', 'vmdk', qcow2)).statusCode).toBe(400);
    expect((await upload('fake', 'raw', Buffer.from('{}'), 'application/json')).statusCode).toBe(415);
    expect((await upload('empty', 'raw', Buffer.alloc(0))).statusCode).toBe(400);
    // Nothing half-written stays behind.
    expect(await readdir(dir)).toEqual([`${id}.qcow2`]);
    expect((await get('/v1/images/9b1e0000-0000-4000-8000-000000000000')).statusCode).toBe(404);
  });

  it("is its project's: p1's reader reads but changes nothing; p2 gets 404 for it and cannot boot from it; an admin sees it", async () => {
    // p1's reader: reads, cannot upload, remove or boot.
    expect((await get(`/v1/images/${id}`, 'r1')).statusCode).toBe(200);
    expect((await get('/v1/images', 'r1')).json().map((i: { id: string }) => i.id)).toEqual([id]);
    expect((await upload('other', 'raw', Buffer.from('x'), 'application/octet-stream', 'r1')).statusCode).toBe(403);
    expect((await remove(id, 'r1')).statusCode).toBe(403);
    // p2: as if it did not exist, by id and by name.
    expect((await get(`/v1/images/${id}`, 'm2')).statusCode).toBe(404);
    expect((await get('/v1/images', 'm2')).json()).toEqual([]);
    expect((await remove(id, 'm2')).statusCode).toBe(404);
    for (const image of [id, 'tiny']) {
      const refused = await boot({ image }, 'm2');
      expect(refused.statusCode).toBe(400);
      expect(refused.json().error.message).toMatch(/no image named or with id/);
    }
    // Names are per project: p2 may have a tiny of its own, which p1 does not see.
    const theirs = await upload('tiny', 'raw', Buffer.from('p2 raw disk'), 'application/octet-stream', 'm2');
    expect(theirs.statusCode, theirs.body).toBe(201);
    expect((await get('/v1/images')).json().map((i: { id: string }) => i.id)).toEqual([id]);
    const adminSees = (await get('/v1/images', 'admin')).json().map((i: { id: string }) => i.id);
    expect(adminSees).toEqual(expect.arrayContaining([id, theirs.json().id]));
    // No token at all: 401 on every image route but the computes' file route.
    expect((await get('/v1/images', null)).statusCode).toBe(401);
    expect((await get(`/v1/images/${id}`, null)).statusCode).toBe(401);
    expect((await remove(theirs.json().id, 'm2')).statusCode).toBe(204);
  });

  it('puts the image, user data and ports into the build; the server shows them', async () => {
    const user_data = Buffer.from('#!/bin/sh\necho hi\n').toString('base64');
    const ports = [{ host_port: 18080, guest_port: 80 }];
    const res = await boot({ image: 'tiny', user_data, ports });
    expect(res.statusCode, res.body).toBe(202);
    const { work_unit_id, server_id } = res.json();
    const wu = await zk.get<WorkUnitRecord>(paths.workUnit(work_unit_id));
    expect(wu?.value?.request).toMatchObject({ image: { id, name: 'tiny', format: 'qcow2', size_bytes: qcow2.length }, user_data, ports });
    expect((await get(`/v1/servers/${server_id}`)).json()).toMatchObject({ image: id, ports, project: 'p1' });
    // By id too; and user data of 64 KiB encoded, though the API takes 16 KiB of anything else.
    expect((await boot({ image: id })).statusCode).toBe(202);
    const most = Buffer.alloc(48 * 1024, 1).toString('base64');
    expect(most.length).toBe(64 * 1024);
    expect((await boot({ image: id, user_data: most })).statusCode).toBe(202);
  });

  it('refuses an unknown image, bad base64, user data past 64 KiB, a host port used twice', async () => {
    expect((await boot({ image: 'nope' })).json().error.message).toMatch(/no image named or with id nope/);
    expect((await boot({ image: 'tiny', user_data: 'not base64!' })).statusCode).toBe(400);
    const big = Buffer.alloc(48 * 1024 + 3).toString('base64');
    expect(big.length).toBeGreaterThan(64 * 1024);
    expect((await boot({ image: 'tiny', user_data: big })).statusCode).toBe(400);
    const twice = [{ host_port: 1, guest_port: 80 }, { host_port: 1, guest_port: 81 }];
    expect((await boot({ image: 'tiny', ports: twice })).json().error.message).toMatch(/same host_port/);
  });

  it('will not delete an image servers use (409); once they are gone it goes, file and all', async () => {
    const inUse = await remove(id);
    expect(inUse.statusCode).toBe(409);
    expect(inUse.json().error.code).toBe('IMAGE_IN_USE');
    // The servers are deleted (their records gone, as a compute's delete leaves them).
    for (const s of (await zk.children(paths.servers)) ?? []) await zk.remove(paths.server(s as never));
    const res = await remove(id);
    expect(res.statusCode).toBe(204);
    expect(existsSync(join(dir, `${id}.qcow2`))).toBe(false);
    expect((await get(`/v1/images/${id}`)).statusCode).toBe(404);
    expect((await boot({ image: 'tiny' })).statusCode).toBe(400);
    // The name is free again.
    expect((await upload('tiny', 'raw', Buffer.from('raw disk bytes'))).statusCode).toBe(201);
  });
});

describe('GET /v1/servers/:id/console', () => {
  it("says why there is no console: no compute yet, a test-driver compute, an unknown server; another project's is 404", async () => {
    const { server_id } = (await boot({})).json();
    expect((await get(`/v1/servers/${server_id}`)).json().console).toBe(false);
    const res = await get(`/v1/servers/${server_id}/console?lines=5`);
    expect(res.statusCode).toBe(409);
    expect(res.json().error.code).toBe('NO_CONSOLE');
    const rec = await zk.get<Record<string, unknown>>(paths.server(server_id));
    await zk.set(paths.server(server_id), { ...rec!.value, compute_id: 'c-test' }, rec!.stat.version);
    const onTest = await get(`/v1/servers/${server_id}/console`);
    expect(onTest.statusCode).toBe(409);
    expect(onTest.json().error.message).toMatch(/test driver/);
    // Its project's reader reads it as the member does; another project's member learns nothing.
    expect((await get(`/v1/servers/${server_id}/console`, 'r1')).json().error.code).toBe('NO_CONSOLE');
    const across = await get(`/v1/servers/${server_id}/console`, 'm2');
    expect(across.statusCode).toBe(404);
    expect(across.body).not.toContain('c-test');
    expect((await get(`/v1/servers/${server_id}/console`, null)).statusCode).toBe(401);
    expect((await get('/v1/servers/9b1e0000-0000-4000-8000-000000000000/console')).statusCode).toBe(404);
    expect((await get(`/v1/servers/${server_id}/console?lines=0`)).statusCode).toBe(400);
  });
});
