// The API's image store: uploads are streamed to a file beside the API (never through
// ZooKeeper) while their sha256 is computed; ZooKeeper holds a small record per image, a name
// index per project, and one `users/<server>` node per server booted from it, so an image in use
// cannot be removed (ZooKeeper refuses to delete a node with children). An image belongs to the
// project that uploaded it: another project's image is 404, as its servers are.
import { createHash, randomBytes, randomUUID, timingSafeEqual } from 'node:crypto';
import { createReadStream, createWriteStream } from 'node:fs';
import { mkdir, open, rename, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { Transform } from 'node:stream';
import type { Zk } from '../zk/client.js';
import { isZkError } from '../zk/errors.js';
import type { Paths } from '../zk/paths.js';
import type { ServerId } from '../common/ids.js';
import { ApiError, notFound } from '../api/errors.js';
import { canSee, type ProjectId, type Scope } from '../auth/policy.js';
import { IMAGE_FORMATS, QCOW2_MAGIC, type ImageFormat, type ImageRecord } from './model.js';

export interface ImageStoreOptions {
  /** Where the files go: a directory on the API's disk. */
  dir: string;
  /** The URL computes reach this API at; it goes into each record. */
  publicUrl: string;
  /** Largest upload accepted (default 16 GiB). */
  maxBytes?: number;
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

/** ZooKeeper paths of the image records, under the cluster's root. */
export class ImagePaths {
  constructor(private readonly paths: Paths) {}
  get images(): string { return `${this.paths.root}/images`; }
  image(id: string): string { return `${this.images}/${id}`; }
  users(id: string): string { return `${this.image(id)}/users`; }
  user(id: string, server: string): string { return `${this.users(id)}/${server}`; }
  get names(): string { return `${this.paths.root}/image-names`; }
  /** Names are unique within a project (two projects may each have a `tiny`). */
  projectNames(project: string): string { return `${this.names}/${project}`; }
  name(project: string, name: string): string { return `${this.projectNames(project)}/${name}`; }
}

const sha = (s: string): Buffer => createHash('sha256').update(s).digest();
/** Whether `given` is the image's fetch key, compared in constant time. */
const keyMatches = (r: ImageRecord, given: string | undefined): boolean =>
  typeof given === 'string' && typeof r.fetch_key === 'string' && timingSafeEqual(sha(given), sha(r.fetch_key));

export function presentImage(r: ImageRecord) {
  return {
    id: r.id,
    project: r.project ?? null,
    name: r.name,
    format: r.format,
    size_bytes: r.size_bytes,
    sha256: r.sha256,
    created_at: new Date(r.created_at).toISOString(),
  };
}

export class ImageStore {
  readonly zkPaths: ImagePaths;

  constructor(
    private readonly zk: Zk,
    private readonly paths: Paths,
    private readonly o: ImageStoreOptions | undefined,
  ) {
    this.zkPaths = new ImagePaths(paths);
  }

  async init(): Promise<void> {
    await this.zk.mkdirp(this.zkPaths.images);
    await this.zk.mkdirp(this.zkPaths.names);
    if (this.o) await mkdir(this.o.dir, { recursive: true });
  }

  private options(): ImageStoreOptions {
    if (!this.o) throw new ApiError('UNAVAILABLE', 'this API keeps no image files (start it with --images-dir)');
    return this.o;
  }

  private fileOf(r: Pick<ImageRecord, 'id' | 'format'>): string {
    return join(this.options().dir, `${r.id}.${r.format}`);
  }

  /** Streams `body` to disk, hashing it; the record (of `project`) appears only once the file is whole. */
  async upload(project: ProjectId, name: string, format: string, body: Readable): Promise<ImageRecord> {
    const o = this.options();
    if (!IMAGE_FORMATS.includes(format as ImageFormat)) {
      throw new ApiError('BAD_REQUEST', `format must be one of ${IMAGE_FORMATS.join(', ')}`);
    }
    if (await this.zk.exists(this.zkPaths.name(project, name))) throw new ApiError('CONFLICT', `an image named ${name} exists`);
    const id = randomUUID();
    const part = join(o.dir, `.upload-${id}`);
    const hash = createHash('sha256');
    const max = o.maxBytes ?? 16 * 2 ** 30;
    let size = 0;
    const meter = new Transform({
      transform(chunk: Buffer, _enc, done) {
        size += chunk.length;
        if (size > max) return done(new ApiError('PAYLOAD_TOO_LARGE', `an image may be at most ${max} bytes`));
        hash.update(chunk);
        done(null, chunk);
      },
    });
    try {
      await pipeline(body, meter, createWriteStream(part, { mode: 0o644 }));
      if (size === 0) throw new ApiError('BAD_REQUEST', 'the image is empty');
      if (format === 'qcow2' && !(await startsWith(part, QCOW2_MAGIC))) {
        throw new ApiError('BAD_REQUEST', 'the body is not a qcow2 file (format=raw takes any disk image)');
      }
      const record: ImageRecord = {
        id,
        project,
        name,
        format: format as ImageFormat,
        size_bytes: size,
        sha256: hash.digest('hex'),
        created_at: Date.now(),
        url: `${o.publicUrl}/v1/images/${id}/file`,
        fetch_key: randomBytes(24).toString('base64url'),
      };
      await rename(part, this.fileOf(record));
      try {
        await this.zk.mkdirp(this.zkPaths.projectNames(project));
        await this.zk
          .txn()
          .create(this.zkPaths.name(project, name), id)
          .create(this.zkPaths.image(id), record)
          .create(this.zkPaths.users(id))
          .commit();
      } catch (e) {
        await rm(this.fileOf(record), { force: true });
        if (isZkError(e, 'NODE_EXISTS')) throw new ApiError('CONFLICT', `an image named ${name} exists`);
        throw e;
      }
      return record;
    } finally {
      await rm(part, { force: true });
    }
  }

  /** The images `scope` may see. */
  async list(scope: Scope): Promise<ImageRecord[]> {
    const ids = (await this.zk.children(this.zkPaths.images)) ?? [];
    const recs = await Promise.all(ids.map((id) => this.zk.get<ImageRecord>(this.zkPaths.image(id)).catch(() => null)));
    return recs
      .map((r) => r?.value)
      .filter((r): r is ImageRecord => !!r && typeof r.id === 'string' && canSee(scope, r.project))
      .sort((a, b) => a.created_at - b.created_at || a.id.localeCompare(b.id));
  }

  /** One image; 404 if `scope` may not see it. */
  async get(id: string, scope: Scope): Promise<ImageRecord> {
    const r = UUID.test(id) ? await this.zk.get<ImageRecord>(this.zkPaths.image(id)) : null;
    if (!r?.value || !canSee(scope, r.value.project)) throw notFound('image', id);
    return r.value;
  }

  /** A boot's image: one of `project`'s by id, or else by name. */
  async resolve(ref: string, project: ProjectId): Promise<ImageRecord | null> {
    const mine = { all: false, project } as const;
    if (UUID.test(ref)) {
      const r = await this.zk.get<ImageRecord>(this.zkPaths.image(ref));
      if (r?.value && canSee(mine, r.value.project)) return r.value;
    }
    const byName = await this.zk.get<string>(this.zkPaths.name(project, ref)).catch(() => null);
    if (!byName?.value) return null;
    return (await this.zk.get<ImageRecord>(this.zkPaths.image(byName.value)))?.value ?? null;
  }

  /** The file, for computes to fetch: they show the image's fetch key, not a token. 404 without it. */
  async file(id: string, key: string | undefined): Promise<{ record: ImageRecord; path: string; size: number }> {
    const r = UUID.test(id) ? await this.zk.get<ImageRecord>(this.zkPaths.image(id)) : null;
    if (!r?.value || !keyMatches(r.value, key)) throw notFound('image', id);
    const record = r.value;
    const path = this.fileOf(record);
    const st = await stat(path).catch(() => null);
    if (!st) throw new ApiError('NOT_FOUND', `image ${id}'s file is not on this API; it was uploaded to ${record.url}`);
    return { record, path, size: st.size };
  }

  stream(path: string): Readable {
    return createReadStream(path);
  }

  /**
   * Removes the image unless a server still uses it (409). A user node whose server is gone
   * (deleted) is cleared first; one added meanwhile makes the removal fail and the answer 409.
   */
  async remove(id: string, scope: Scope): Promise<void> {
    const record = await this.get(id, scope);
    const users = (await this.zk.children(this.zkPaths.users(id))) ?? [];
    const live: string[] = [];
    for (const server of users) {
      if (await this.zk.exists(this.paths.server(server as ServerId))) live.push(server);
      else await this.zk.remove(this.zkPaths.user(id, server)).catch((e) => { if (!isZkError(e, 'NO_NODE')) throw e; });
    }
    if (live.length > 0) {
      throw new ApiError('IMAGE_IN_USE', `image ${id} is used by ${live.length} server(s): ${live.slice(0, 5).join(', ')}`);
    }
    try {
      await this.zk.txn().remove(this.zkPaths.users(id)).remove(this.zkPaths.image(id)).remove(this.zkPaths.name(record.project, record.name)).commit();
    } catch (e) {
      if (isZkError(e, 'NOT_EMPTY')) throw new ApiError('IMAGE_IN_USE', `image ${id} was just booted from`);
      if (isZkError(e, 'NO_NODE')) throw notFound('image', id);
      throw e;
    }
    if (this.o) await rm(this.fileOf(record), { force: true });
  }
}

async function startsWith(path: string, magic: Buffer): Promise<boolean> {
  const fh = await open(path, 'r');
  try {
    const buf = Buffer.alloc(magic.length);
    const { bytesRead } = await fh.read(buf, 0, magic.length, 0);
    return bytesRead === magic.length && buf.equals(magic);
  } finally {
    await fh.close();
  }
}
