// The NoCloud seed as a guest reads it: a FAT disk labelled CIDATA holding meta-data and
// user-data, read back here with mtools (what the image's init and cloud-init mount).
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { guestHostname, MAX_USER_DATA_BYTES, metaData, writeSeed } from './seed.js';

const run = promisify(execFile);
const tools = ['/usr/sbin/mkfs.vfat', '/usr/bin/mcopy', '/usr/bin/mtype'].filter((p) => !existsSync(p));
const env = { ...process.env, MTOOLS_SKIP_CHECK: '1' };

describe('meta-data', () => {
  it('names the instance and a hostname the guest accepts', () => {
    expect(metaData({ instanceId: 'b019c38b-7f9b-4b5a-9c0f-c929fd83f300', hostname: 'Web_1.prod' })).toBe(
      'instance-id: b019c38b-7f9b-4b5a-9c0f-c929fd83f300\nlocal-hostname: web-1-prod\n',
    );
    expect(guestHostname('---')).toBe('quark-vm');
    expect(guestHostname('a'.repeat(80))).toHaveLength(63);
    expect(() => metaData({ instanceId: 'x: y', hostname: 'h' })).toThrow(/quoted/);
  });
});

describe.skipIf(tools.length > 0)(`writeSeed${tools.length ? ` (skipped: missing ${tools.join(', ')}; run scripts/ensure-qemu.sh)` : ''}`, () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'quark-seed-test-'));
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('writes a CIDATA disk with meta-data and the user data byte for byte, leaving no temporary file', async () => {
    const path = join(dir, 'seed.img');
    const userData = Buffer.from('#!/bin/sh\necho héllo\n\u0000binary\u00ff');
    await writeSeed(path, { instanceId: 'i-1', hostname: 'vm-1', userData });
    const label = (await run('mlabel', ['-i', path, '-s', '::'], { env })).stdout;
    expect(label).toMatch(/CIDATA/);
    expect((await run('mtype', ['-i', path, '::/meta-data'], { env })).stdout).toBe('instance-id: i-1\nlocal-hostname: vm-1\n');
    const back = await run('mtype', ['-i', path, '::/user-data'], { env, encoding: 'buffer' });
    expect(Buffer.compare(back.stdout, userData)).toBe(0);
    expect(await readdir(dir)).toEqual(['seed.img']);
  });

  it('replaces an earlier seed (a step run again), and refuses user data past the limit', async () => {
    const path = join(dir, 'again.img');
    await writeSeed(path, { instanceId: 'i-2', hostname: 'a', userData: Buffer.from('one') });
    await writeSeed(path, { instanceId: 'i-2', hostname: 'a', userData: Buffer.from('two') });
    expect((await run('mtype', ['-i', path, '::/user-data'], { env })).stdout).toBe('two');
    await expect(writeSeed(path, { instanceId: 'i-2', hostname: 'a', userData: Buffer.alloc(MAX_USER_DATA_BYTES + 1) })).rejects.toThrow(/at most/);
  });
});
