// A compute's image cache, as Nova's: an image is fetched over HTTP from the API on first use,
// checked against its sha256, and kept in the storage pool as a base file named by its hash;
// every VM's disk is a qcow2 overlay on it. Bases no overlay uses are removed after a while.
import { createHash } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import { open, readdir, rename, rm, stat, utimes } from 'node:fs/promises';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { ReadableStream as WebReadableStream } from 'node:stream/web';
import { IMAGE_KEY_HEADER, qcow2BackingFile, qcow2VirtualSize, type ImageFormat, type ImageRef } from '../images/model.js';

export interface CachedBase {
  path: string;
  format: ImageFormat;
  /** The disk size the image declares: a VM's overlay is at least this large. */
  virtualBytes: number;
}

export class ImageFetchError extends Error {
  readonly code = 'IMAGE_FETCH_FAILED';
}

export const baseFileName = (sha256: string, format: ImageFormat): string => `base-${sha256}.${format}`;

async function readHead(path: string, bytes: number): Promise<Buffer> {
  const fh = await open(path, 'r');
  try {
    const buf = Buffer.alloc(bytes);
    const { bytesRead } = await fh.read(buf, 0, bytes, 0);
    return buf.subarray(0, bytesRead);
  } finally {
    await fh.close();
  }
}

async function describe(path: string, format: ImageFormat): Promise<CachedBase> {
  const virtualBytes = format === 'qcow2' ? qcow2VirtualSize(await readHead(path, 64)) : (await stat(path)).size;
  if (virtualBytes === null) throw new ImageFetchError(`${path} is not a qcow2 file`);
  return { path, format, virtualBytes };
}

export class ImageCache {
  private readonly fetching = new Map<string, Promise<CachedBase>>();

  constructor(
    /** The storage pool's directory: bases live beside the overlays that use them. */
    readonly dir: string,
    private readonly fetchTimeoutMs = 10 * 60_000,
  ) {}

  /** The base file for `image`, fetched once however many builds ask at the same time. */
  ensure(image: ImageRef): Promise<CachedBase> {
    const key = `${image.sha256}.${image.format}`;
    let p = this.fetching.get(key);
    if (!p) {
      p = this.ensureOnce(image).finally(() => this.fetching.delete(key));
      this.fetching.set(key, p);
    }
    return p;
  }

  private async ensureOnce(image: ImageRef): Promise<CachedBase> {
    const path = join(this.dir, baseFileName(image.sha256, image.format));
    try {
      const st = await stat(path);
      if (st.size === image.size_bytes) {
        // In use now: the sweep measures idleness from the last use.
        const now = new Date();
        await utimes(path, now, now);
        return describe(path, image.format);
      }
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
    }
    const part = `${path}.part-${process.pid}-${Math.random().toString(36).slice(2, 8)}`;
    try {
      const res = await fetch(image.url, { headers: { [IMAGE_KEY_HEADER]: image.fetch_key }, signal: AbortSignal.timeout(this.fetchTimeoutMs) });
      if (!res.ok || !res.body) throw new ImageFetchError(`fetching image ${image.id} from ${image.url}: HTTP ${res.status}`);
      const hash = createHash('sha256');
      let size = 0;
      const body = Readable.fromWeb(res.body as unknown as WebReadableStream<Uint8Array>);
      body.on('data', (chunk: Buffer) => {
        hash.update(chunk);
        size += chunk.length;
      });
      await pipeline(body, createWriteStream(part, { mode: 0o644 }));
      const sha256 = hash.digest('hex');
      if (sha256 !== image.sha256 || size !== image.size_bytes) {
        throw new ImageFetchError(
          `image ${image.id} from ${image.url} is ${size} bytes with sha256 ${sha256}; expected ${image.size_bytes} bytes, ${image.sha256}`,
        );
      }
      await rename(part, path);
      return await describe(path, image.format);
    } catch (e) {
      await rm(part, { force: true });
      if (e instanceof ImageFetchError) throw e;
      throw new ImageFetchError(`fetching image ${image.id} from ${image.url}: ${(e as Error).message}`, { cause: e });
    }
  }

  /**
   * Removes bases that no file in the pool is an overlay of and that were last used more than
   * `idleMs` ago (a build between fetching its base and creating its overlay is younger).
   * Returns the removed file names.
   */
  async sweep(idleMs: number, now = Date.now()): Promise<string[]> {
    const names = await readdir(this.dir);
    const used = new Set<string>();
    for (const n of names) {
      if (n.startsWith('base-') || !n.endsWith('.qcow2')) continue;
      try {
        const backing = qcow2BackingFile(await readHead(join(this.dir, n), 64 * 1024));
        if (backing) used.add(backing.split('/').pop()!);
      } catch {
        // Removed meanwhile, or not readable: it holds nothing.
      }
    }
    const removed: string[] = [];
    for (const n of names) {
      if (!/^base-[0-9a-f]{64}\.(qcow2|raw)$/.test(n) || used.has(n) || this.fetching.has(n.slice(5))) continue;
      const st = await stat(join(this.dir, n)).catch(() => null);
      if (!st || now - st.mtimeMs < idleMs) continue;
      await rm(join(this.dir, n), { force: true });
      removed.push(n);
    }
    return removed;
  }
}
