// Images: what the API stores (the file on its disk, a small record in ZooKeeper) and what a build
// carries so its compute can fetch the file and check it.

export type ImageFormat = 'qcow2' | 'raw';
export const IMAGE_FORMATS: readonly ImageFormat[] = ['qcow2', 'raw'];

/** /quark/images/<id>: the record; the file stays beside the API that took the upload. */
export interface ImageRecord {
  id: string;
  /** The project that uploaded it: only its tokens (and admins) see it or boot from it by name. */
  project: string;
  name: string;
  format: ImageFormat;
  size_bytes: number;
  sha256: string;
  created_at: number;
  /** Where computes fetch the file: the storing API's GET /v1/images/<id>/file. */
  url: string;
  /** Sent by computes as IMAGE_KEY_HEADER: the file route takes no token, only this. */
  fetch_key: string;
}

/** The header a compute sends the image's fetch_key in (a header, not the URL: URLs end up in logs). */
export const IMAGE_KEY_HEADER = 'x-quark-image-key';

/** What a build's request carries about its image. */
export type ImageRef = Pick<ImageRecord, 'id' | 'name' | 'format' | 'size_bytes' | 'sha256' | 'url' | 'fetch_key'>;

export const imageRef = (r: ImageRecord): ImageRef => ({
  id: r.id,
  name: r.name,
  format: r.format,
  size_bytes: r.size_bytes,
  sha256: r.sha256,
  url: r.url,
  fetch_key: r.fetch_key,
});

/** The first bytes of every qcow2 file ("QFI\xfb"). */
export const QCOW2_MAGIC = Buffer.from([0x51, 0x46, 0x49, 0xfb]);

/** The disk size a qcow2 header declares (big-endian u64 at byte 24); null if not qcow2. */
export function qcow2VirtualSize(header: Buffer): number | null {
  if (header.length < 32 || !header.subarray(0, 4).equals(QCOW2_MAGIC)) return null;
  return Number(header.readBigUInt64BE(24));
}

/** The backing file a qcow2 header names (offset u64 at byte 8, length u32 at 16); null if none. */
export function qcow2BackingFile(file: Buffer): string | null {
  if (file.length < 20 || !file.subarray(0, 4).equals(QCOW2_MAGIC)) return null;
  const offset = Number(file.readBigUInt64BE(8));
  const size = file.readUInt32BE(16);
  if (offset === 0 || size === 0 || offset + size > file.length) return null;
  return file.subarray(offset, offset + size).toString('utf8');
}
