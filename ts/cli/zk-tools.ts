// Operator views of the ZooKeeper tree, with msgpackr values decoded.
import type { Writable } from 'node:stream';
import { decodeForDisplay } from '../zk/codec.js';
import type { Zk } from '../zk/client.js';

function show(v: unknown): string {
  if (v === undefined) return '';
  const s = typeof v === 'string' ? JSON.stringify(v) : JSON.stringify(v, (_k, x) => (typeof x === 'bigint' ? x.toString() : x));
  return s.length > 160 ? `${s.slice(0, 157)}...` : s;
}

/** Prints the subtree at `path`, one node per line, indented, with its decoded value. */
export async function printTree(zk: Zk, path: string, out: Writable): Promise<number> {
  let count = 0;
  const walk = async (p: string, depth: number): Promise<void> => {
    const node = await zk.getRaw(p);
    if (!node) {
      if (depth === 0) throw new Error(`${p} does not exist`);
      return;
    }
    count++;
    const name = depth === 0 ? p : p.slice(p.lastIndexOf('/') + 1);
    const eph = node.stat.ephemeralOwner !== '0000000000000000' ? ' (ephemeral)' : '';
    const val = show(decodeForDisplay(node.data));
    out.write(`${'  '.repeat(depth)}${name}${node.stat.numChildren > 0 ? '/' : ''}${eph}${val ? ` = ${val}` : ''}\n`);
    const kids = (await zk.children(p)) ?? [];
    for (const k of kids.sort()) await walk(p === '/' ? `/${k}` : `${p}/${k}`, depth + 1);
  };
  await walk(path, 0);
  return count;
}

export async function printLs(zk: Zk, path: string, out: Writable): Promise<void> {
  const kids = await zk.children(path);
  if (kids === null) throw new Error(`${path} does not exist`);
  for (const k of kids.sort()) out.write(`${k}\n`);
}

export async function printGet(zk: Zk, path: string, out: Writable): Promise<void> {
  const node = await zk.getRaw(path);
  if (!node) throw new Error(`${path} does not exist`);
  out.write(`${JSON.stringify(decodeForDisplay(node.data) ?? null, null, 2)}\n`);
  out.write(`# version ${node.stat.version}, children ${node.stat.numChildren}${node.stat.ephemeralOwner !== '0000000000000000' ? `, ephemeral owner 0x${node.stat.ephemeralOwner}` : ''}\n`);
}
