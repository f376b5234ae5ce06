// The compute's image cache against a real HTTP server on 127.0.0.1 and real qcow2 files from
// qemu-img: fetched once however many builds ask, checked against its sha256, and swept only
// when no overlay uses it and it has been idle long enough.
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdtemp, readdir, readFile, rm, utimes } from 'node:fs/promises';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { IMAGE_KEY_HEADER, qcow2BackingFile, qcow2VirtualSize, type ImageRef } from '../images/model.js';
import { baseFileName, ImageCache } from './image-cache.js';

const run = promisify(execFile);
const noQemuImg = !existsSync('/usr/bin/qemu-img');
const FETCH_KEY = 'fetch-key-of-img-1';

describe.skipIf(noQemuImg)(`image cache${noQemuImg ? ' (skipped: no qemu-img; run scripts/ensure-qemu.sh)' : ''}`, () => {
  let dir: string;
  let pool: string;
  let image: Buffer;
  let server: http.Server;
  let url = '';
  let requests = 0;
  let serve: Buffer;

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'quark-cache-test-'));
    pool = join(dir, 'pool');
    await run('mkdir', ['-p', pool]);
    await run('qemu-img', ['create', '-q', '-f', 'qcow2', join(dir, 'src.qcow2'), '64M']);
    image = await readFile(join(dir, 'src.qcow2'));
    serve = image;
    server = http.createServer((req, res) => {
      requests++;
      // As the API's file route: no fetch key, no file.
      if (req.headers[IMAGE_KEY_HEADER] !== FETCH_KEY) return void res.writeHead(404).end();
      // Slow enough that concurrent asks overlap.
      setTimeout(() => res.writeHead(200, { 'content-type': 'application/octet-stream' }).end(serve), 100);
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/file`;
  });
  afterAll(async () => {
    await new Promise((r) => server.close(r));
    await rm(dir, { recursive: true, force: true });
  });

  const ref = (): ImageRef => ({
    id: 'img-1',
    name: 'tiny',
    format: 'qcow2',
    size_bytes: image.length,
    sha256: createHash('sha256').update(image).digest('hex'),
    url,
    fetch_key: FETCH_KEY,
  });

  it('reads a qcow2 header: its disk size and its backing file', async () => {
    expect(qcow2VirtualSize(image)).toBe(64 * 2 ** 20);
    expect(qcow2VirtualSize(Buffer.from('not a qcow2 file at all, not at all'))).toBeNull();
    await run('qemu-img', ['create', '-q', '-f', 'qcow2', '-F', 'qcow2', '-b', join(dir, 'src.qcow2'), join(dir, 'over.qcow2'), '1G']);
    const over = await readFile(join(dir, 'over.qcow2'));
    expect(qcow2BackingFile(over)).toBe(join(dir, 'src.qcow2'));
    expect(qcow2VirtualSize(over)).toBe(2 ** 30);
    expect(qcow2BackingFile(image)).toBeNull();
  });

  it('fetches an image once for many builds asking at once, and checks what it got', async () => {
    const cache = new ImageCache(pool);
    requests = 0;
    const got = await Promise.all(Array.from({ length: 5 }, () => cache.ensure(ref())));
    expect(requests).toBe(1);
    expect(new Set(got.map((b) => b.path)).size).toBe(1);
    expect(got[0]).toEqual({ path: join(pool, baseFileName(ref().sha256, 'qcow2')), format: 'qcow2', virtualBytes: 64 * 2 ** 20 });
    // Cached: no request at all.
    await cache.ensure(ref());
    expect(requests).toBe(1);
    expect(await readdir(pool)).toEqual([baseFileName(ref().sha256, 'qcow2')]);
  });

  it('refuses a file whose sha256 does not match, and keeps nothing of it', async () => {
    const cache = new ImageCache(join(dir, 'other-pool'));
    await run('mkdir', ['-p', join(dir, 'other-pool')]);
    serve = Buffer.concat([image.subarray(0, image.length - 1), Buffer.from([image[image.length - 1]! ^ 1])]);
    try {
      await expect(cache.ensure(ref())).rejects.toMatchObject({ code: 'IMAGE_FETCH_FAILED', message: expect.stringMatching(/expected .* bytes/) });
      expect(await readdir(join(dir, 'other-pool'))).toEqual([]);
    } finally {
      serve = image;
    }
  });

  it('sweeps a base only when no overlay uses it and it has been idle long enough', async () => {
    const cache = new ImageCache(pool);
    const base = join(pool, baseFileName(ref().sha256, 'qcow2'));
    await run('qemu-img', ['create', '-q', '-f', 'qcow2', '-F', 'qcow2', '-b', base, join(pool, 'quark-vm-1.qcow2'), '1G']);
    const old = new Date(Date.now() - 2 * 3_600_000);
    await utimes(base, old, old);
    expect(await cache.sweep(3_600_000)).toEqual([]); // used by quark-vm-1.qcow2
    await rm(join(pool, 'quark-vm-1.qcow2'));
    await utimes(base, new Date(), new Date());
    expect(await cache.sweep(3_600_000)).toEqual([]); // unused, but used a moment ago
    await utimes(base, old, old);
    expect(await cache.sweep(3_600_000)).toEqual([baseFileName(ref().sha256, 'qcow2')]);
    expect(existsSync(base)).toBe(false);
  });
});
