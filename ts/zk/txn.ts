// A multi-op transaction, built as the project's own multi encoder takes it (ts/zk/wire/multi.ts).
import zookeeper from 'node-zookeeper-client';
import { encode } from './codec.js';
import { OP, type MultiOp } from './wire/multi.js';
import type { Stat, Zk } from './client.js';

export type Mode = 'persistent' | 'ephemeral' | 'sequential' | 'ephemeral_sequential';

const { CreateMode } = zookeeper;
export const MODES: Record<Mode, number> = {
  persistent: CreateMode.PERSISTENT,
  ephemeral: CreateMode.EPHEMERAL,
  sequential: CreateMode.PERSISTENT_SEQUENTIAL,
  ephemeral_sequential: CreateMode.EPHEMERAL_SEQUENTIAL,
};


/** One op's result: the stat of a set, the path of a create. */
export type TxnResult = Array<{ stat?: Stat; path?: string }>;

/**
 * A multi-op transaction. Versions are passed exactly as given: node-zookeeper-client 1.1.3
 * turns version 0 into -1 ("any") in its own Transaction.check/setData/remove, which would
 * silently defeat an optimistic claim on a znode that was never written since creation.
 */
export class Txn {
  /** Built here (not by the library's Transaction) to keep version 0 exact; encoded by encodeMulti. */
  readonly ops: MultiOp[] = [];
  constructor(private readonly zk: Zk) {}

  create(path: string, value?: unknown, mode: Mode = 'persistent'): this {
    // The session's ACL for the path (ts/zk/acl.ts); open without credentials.
    this.ops.push({ type: OP.CREATE, path, data: encode(value), acls: this.zk.aclFor(path), mode: MODES[mode] });
    return this;
  }
  /** version -1 means any version; anything else must match exactly. */
  set(path: string, value: unknown, version: number): this {
    this.ops.push({ type: OP.SET_DATA, path, data: encode(value), version: exactVersion(version) });
    return this;
  }
  remove(path: string, version = -1): this {
    this.ops.push({ type: OP.DELETE, path, version: exactVersion(version) });
    return this;
  }
  check(path: string, version: number): this {
    this.ops.push({ type: OP.CHECK, path, version: exactVersion(version) });
    return this;
  }
  get size(): number {
    return this.ops.length;
  }
  commit(): Promise<TxnResult> {
    return this.zk.commit(this);
  }
}

export function exactVersion(v: number): number {
  if (!Number.isInteger(v) || v < -1) throw new Error(`invalid znode version ${v}`);
  return v;
}
