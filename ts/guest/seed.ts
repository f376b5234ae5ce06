// The cloud-init NoCloud seed a guest reads at boot: a small FAT disk labelled CIDATA with
// meta-data (instance-id, hostname) and user-data. Made in a file with mkfs.vfat and mtools, so
// no loop device or mount is needed.
import { execFile } from 'node:child_process';
import { mkdtemp, rename, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);

/** The largest user data Quark accepts, decoded (the API takes it base64, up to 64 KiB). */
export const MAX_USER_DATA_BYTES = 48 * 1024;

export interface SeedContent {
  instanceId: string;
  hostname: string;
  /** The user data as the guest will read it (decoded); absent: no user-data file's content. */
  userData?: Buffer;
}

/** A hostname the guest accepts: the server name, lowercased, reduced to letters, digits and '-'. */
export function guestHostname(name: string): string {
  const h = name
    .toLowerCase()
    .replace(/[^a-z0-9-]+/g, '-')
    .replace(/^-+|-+$/g, '')
    .slice(0, 63)
    .replace(/-+$/, '');
  return h || 'quark-vm';
}

/** NoCloud meta-data: YAML, two keys. Values are quoted-safe by construction (ids and hostnames). */
export function metaData(c: Pick<SeedContent, 'instanceId' | 'hostname'>): string {
  if (!/^[A-Za-z0-9._-]+$/.test(c.instanceId)) throw new Error(`instance id ${JSON.stringify(c.instanceId)} has characters YAML would need quoted`);
  return `instance-id: ${c.instanceId}\nlocal-hostname: ${guestHostname(c.hostname)}\n`;
}

// The smallest FAT image mkfs.vfat makes comfortably; grown for large user data.
function seedSizeKib(userData: Buffer | undefined): number {
  return Math.max(1024, Math.ceil(((userData?.length ?? 0) * 2) / 1024) + 512);
}

/**
 * Writes the seed to `path` (replacing what is there, atomically: a rerun of the step after a
 * crash never leaves half a seed).
 */
export async function writeSeed(path: string, c: SeedContent): Promise<void> {
  if (c.userData && c.userData.length > MAX_USER_DATA_BYTES) {
    throw new Error(`user data is ${c.userData.length} bytes; at most ${MAX_USER_DATA_BYTES}`);
  }
  const work = await mkdtemp(join(tmpdir(), 'quark-seed-'));
  const image = `${path}.part-${process.pid}-${Math.random().toString(36).slice(2, 8)}`;
  try {
    await writeFile(join(work, 'meta-data'), metaData(c));
    await writeFile(join(work, 'user-data'), c.userData ?? Buffer.alloc(0));
    await run('mkfs.vfat', ['-C', '-n', 'CIDATA', image, String(seedSizeKib(c.userData))]);
    await run('mcopy', ['-i', image, join(work, 'meta-data'), join(work, 'user-data'), '::/'], {
      env: { ...process.env, MTOOLS_SKIP_CHECK: '1' },
    });
    await rename(image, path);
  } catch (e) {
    await rm(image, { force: true });
    throw e;
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}
