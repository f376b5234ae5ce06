// A transaction as data: the list of its operations, built by pure functions and only then handed
// to ZooKeeper (applyOps). Tests read the list directly: which paths, which values, which version
// checks, and how many ops a step costs.
import type { Txn } from '../zk/txn.js';
import type { Entry } from '../zk/layout.js';

export type Op =
  | { type: 'create'; path: string; value?: unknown }
  /** version -1: any version; anything else must match. */
  | { type: 'set'; path: string; value: unknown; version: number }
  | { type: 'remove'; path: string; version: number }
  | { type: 'check'; path: string; version: number };

export const create = (path: string, value?: unknown): Op => (value === undefined ? { type: 'create', path } : { type: 'create', path, value });
export const set = (path: string, value: unknown, version: number): Op => ({ type: 'set', path, value, version });
export const remove = (path: string, version = -1): Op => ({ type: 'remove', path, version });

/** A value as read, with the version a write over it must check. */
export interface Read<T> {
  value: T;
  version: number;
}

const join = (base: string, rel: string): string => (rel ? `${base}/${rel}` : base);

/** Creates a directory's nodes, parents first (the layouts of ts/zk/layout.ts). */
export const createEntries = (base: string, entries: readonly Entry[]): Op[] => entries.map(([rel, value]) => create(join(base, rel), value));

/** Removes exactly the listed nodes, children first. */
export const removeEntries = (base: string, entries: readonly Entry[]): Op[] => [...entries].reverse().map(([rel]) => remove(join(base, rel)));

/** Removes what a walk found (parents before children, as Zk.walk lists them), children first. */
export const removeWalked = (walked: readonly string[]): Op[] => [...walked].reverse().map((p) => remove(p));

export function applyOps(txn: Txn, ops: readonly Op[]): Txn {
  for (const op of ops) {
    if (op.type === 'create') txn.create(op.path, op.value);
    else if (op.type === 'set') txn.set(op.path, op.value, op.version);
    else if (op.type === 'remove') txn.remove(op.path, op.version);
    else txn.check(op.path, op.version);
  }
  return txn;
}
