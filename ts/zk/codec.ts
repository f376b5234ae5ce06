// Leaf values in ZooKeeper are msgpackr-encoded; an empty znode (a directory) decodes to undefined.
import { Packr } from 'msgpackr';

const packr = new Packr({ useRecords: false, moreTypes: false });

export function encode(value: unknown): Buffer | undefined {
  if (value === undefined) return undefined;
  return packr.pack(value);
}

export function decode<T = unknown>(data: Buffer | null | undefined): T | undefined {
  if (!data || data.length === 0) return undefined;
  return packr.unpack(data) as T;
}

/** Decodes for humans: falls back to text or hex when a znode holds something that is not msgpack. */
export function decodeForDisplay(data: Buffer | null | undefined): unknown {
  if (!data || data.length === 0) return undefined;
  try {
    return packr.unpack(data);
  } catch {
    const text = data.toString('utf8');
    return /^[\x20-\x7e\s]*$/.test(text) ? text : `0x${data.toString('hex')}`;
  }
}
