// The image endpoints, the boot fields that go with them, and the console route's refusals,
// through app.inject() against a real ZooKeeper (no orcs, no computes: units stay PENDING).
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
import { uniqueRoot, zkConnect } from '../../test/support/index.js';

let zk: Zk;
let app: FastifyInstance;
let dir: string;
const paths = new Paths(uniqueRoot('api-images'));
// A qcow2 header is all the API checks of a qcow2 body: its first four bytes.
const qcow2 = Buffer.concat([Buffer.from([0x51, 0x46, 0x49, 0xfb]), Buffer.alloc(4096, 7)]);
const flavor = { vcpus: 1, ram_mb: 128, disk_gb: 1 };

beforeAll(async () => {
  zk = await Zk.connect(zkConnect());
  dir = await mkdtemp(join(tmpdir(), 'quark-api-images-'));
  const config = await readConfig(zk, paths, { shards: 4 });
  app = await buildApp({ zk, paths, config, images: { dir, publicUrl: 'http://127.0.0.1:9' } });
});
afterAll(async () => {
  await app.close();
  await zk.removeTree(paths.root);
  await zk.close();
  await rm(dir, { recursive: true, force: true });
});

const upload = (name: string, format: string, body: Buffer, contentType = 'application/octet-stream') =>
  app.inject({ method: 'POST', url: `/v1/images?name=${name}&format=${format}`, payload: body, headers: { 'content-type': contentType } });
const boot = (extra: Record<string, unknown>) => app.inject({ method: 'POST', url: '/v1/servers', payload: { name: 'vm', flavor, ...extra } });

describe('images', () => {
  let id = '';

  it('takes an upload: 201 with its size and sha256; the file is on disk, the record in ZooKeeper', async () => {
    const res = await upload('tiny', 'qcow2', qcow2);
    expect(res.statusCode, res.body).toBe(201);
    const img = res.json();
    expect(img).toMatchObject({ name: 'tiny', format: 'qcow2', size_bytes: qcow2.length, sha256: createHash('sha256').update(qcow2).digest('hex') });
    expect(img.created_at).toMatch(/^\d{4}-/);
    id = img.id;
    expect(await readdir(dir)).toEqual([`${id}.qcow2`]);
    const rec = await zk.get<{ url: string; size_bytes: number }>(`${paths.root}/images/${id}`);
    expect(rec?.value).toMatchObject({ url: `http://127.0.0.1:9/v1/images/${id}/file`, size_bytes: qcow2.length });
    expect((await app.inject(`/v1/images/${id}`)).json()).toEqual(img);
    expect((await app.inject('/v1/images')).json()).toEqual([img]);
  });

  it('serves the file for computes, with its sha256', async () => {
    const res = await app.inject(`/v1/images/${id}/file`);
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
    expect((await app.inject('/v1/images/9b1e0000-0000-4000-8000-000000000000')).statusCode).toBe(404);
  });

  it('puts the image, user data and ports into the build; the server shows them', async () => {
    const user_data = Buffer.from('#!/bin/sh\necho hi\n').toString('base64');
    const ports = [{ host_port: 18080, guest_port: 80 }];
    const res = await boot({ image: 'tiny', user_data, ports });
    expect(res.statusCode, res.body).toBe(202);
    const { work_unit_id, server_id } = res.json();
    const wu = await zk.get<WorkUnitRecord>(paths.workUnit(work_unit_id));
    expect(wu?.value?.request).toMatchObject({ image: { id, name: 'tiny', format: 'qcow2', size_bytes: qcow2.length }, user_data, ports });
    expect((await app.inject(`/v1/servers/${server_id}`)).json()).toMatchObject({ image: id, ports });
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
    const inUse = await app.inject({ method: 'DELETE', url: `/v1/images/${id}` });
    expect(inUse.statusCode).toBe(409);
    expect(inUse.json().error.code).toBe('IMAGE_IN_USE');
    // The servers are deleted (their records gone, as a compute's delete leaves them).
    for (const s of (await zk.children(paths.servers)) ?? []) await zk.remove(paths.server(s as never));
    const res = await app.inject({ method: 'DELETE', url: `/v1/images/${id}` });
    expect(res.statusCode).toBe(204);
    expect(existsSync(join(dir, `${id}.qcow2`))).toBe(false);
    expect((await app.inject(`/v1/images/${id}`)).statusCode).toBe(404);
    expect((await boot({ image: 'tiny' })).statusCode).toBe(400);
    // The name is free again.
    expect((await upload('tiny', 'raw', Buffer.from('raw disk bytes'))).statusCode).toBe(201);
  });
});

describe('GET /v1/servers/:id/console', () => {
  it('says why there is no console: no compute yet, a test-driver compute, an unknown server', async () => {
    const { server_id } = (await boot({})).json();
    expect((await app.inject(`/v1/servers/${server_id}`)).json().console).toBe(false);
    const res = await app.inject(`/v1/servers/${server_id}/console?lines=5`);
    expect(res.statusCode).toBe(409);
    expect(res.json().error.code).toBe('NO_CONSOLE');
    const rec = await zk.get<Record<string, unknown>>(paths.server(server_id));
    await zk.set(paths.server(server_id), { ...rec!.value, compute_id: 'c-test' }, rec!.stat.version);
    const onTest = await app.inject(`/v1/servers/${server_id}/console`);
    expect(onTest.statusCode).toBe(409);
    expect(onTest.json().error.message).toMatch(/test driver/);
    expect((await app.inject('/v1/servers/9b1e0000-0000-4000-8000-000000000000/console')).statusCode).toBe(404);
    expect((await app.inject(`/v1/servers/${server_id}/console?lines=0`)).statusCode).toBe(400);
  });
});
