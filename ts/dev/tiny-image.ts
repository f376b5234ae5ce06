// The tiny bootable guest image (scripts/build-tiny-image.sh), built once per set of inputs and
// cached under .quark/images/.
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

const run = promisify(execFile);

export interface TinyImage {
  dir: string;
  /** The bootable disk (syslinux, the cloud kernel, a busybox initramfs). */
  qcow2: string;
  vmlinuz: string;
  initrd: string;
}

/** The repository root: this file runs as ts/dev/ (tsx, vitest) and as dist/ts/dev/ (compiled). */
export function repoRoot(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (;;) {
    if (existsSync(join(dir, 'package.json')) && existsSync(join(dir, 'scripts'))) return dir;
    const parent = dirname(dir);
    if (parent === dir) throw new Error('could not find the repository root (package.json beside scripts/)');
    dir = parent;
  }
}

/** Builds (or finds in the cache) the tiny image; `out` defaults to <repo>/.quark/images. */
export async function buildTinyImage(o: { out?: string; log?: (line: string) => void } = {}): Promise<TinyImage> {
  const script = join(repoRoot(), 'scripts', 'build-tiny-image.sh');
  const args = o.out ? ['--out', o.out] : [];
  const { stdout, stderr } = await run(script, args, { maxBuffer: 16 * 1024 * 1024 });
  for (const line of stderr.split('\n')) if (line.trim()) o.log?.(line);
  const dir = stdout.trim().split('\n').pop()!;
  const image = { dir, qcow2: join(dir, 'tiny.qcow2'), vmlinuz: join(dir, 'vmlinuz'), initrd: join(dir, 'initrd.gz') };
  if (!existsSync(image.qcow2)) throw new Error(`the image builder printed ${dir}, which holds no tiny.qcow2`);
  return image;
}
