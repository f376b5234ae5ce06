// ZooKeeper's errors as Quark sees them: one class with the code's name, and what a caller may
// conclude from it (transient: the write may or may not have landed).
import type { Stat, Zk } from './client.js';
import type { Txn } from './txn.js';

export type ZkErrorCode =
  | 'NO_NODE'
  | 'NODE_EXISTS'
  | 'BAD_VERSION'
  | 'NOT_EMPTY'
  | 'CONNECTION_LOSS'
  | 'SESSION_EXPIRED'
  | 'OPERATION_TIMEOUT'
  | 'NO_CHILDREN_FOR_EPHEMERALS'
  | 'NO_AUTH'
  | 'INVALID_ACL'
  | 'AUTH_FAILED'
  | 'OTHER';

const CODE_NAMES: Record<number, ZkErrorCode> = {
  [-101]: 'NO_NODE',
  [-110]: 'NODE_EXISTS',
  [-103]: 'BAD_VERSION',
  [-111]: 'NOT_EMPTY',
  [-4]: 'CONNECTION_LOSS',
  [-112]: 'SESSION_EXPIRED',
  [-7]: 'OPERATION_TIMEOUT',
  [-108]: 'NO_CHILDREN_FOR_EPHEMERALS',
  [-102]: 'NO_AUTH',
  [-114]: 'INVALID_ACL',
  [-115]: 'AUTH_FAILED',
};

/** ZooKeeper's numeric error code by name. */
export const codeName = (code: number): ZkErrorCode => CODE_NAMES[code] ?? 'OTHER';

export class ZkError extends Error {
  override readonly name = 'ZkError';
  constructor(
    readonly code: ZkErrorCode,
    readonly path: string | undefined,
    message: string,
    /** For a failed transaction: the index of the op that failed. */
    readonly opIndex?: number,
  ) {
    super(message);
  }
}

/** The numeric code of one of node-zookeeper-client's exceptions, if it is one. */
export const libraryCode = (err: unknown): number | undefined =>
  typeof (err as { getCode?: unknown })?.getCode === 'function' ? (err as { getCode(): number }).getCode() : undefined;

/** Any error from node-zookeeper-client (or ours) as a ZkError. */
export function toZkError(err: unknown, path?: string): ZkError {
  if (err instanceof ZkError) return err;
  const n = libraryCode(err);
  const code = n === undefined ? 'OTHER' : codeName(n);
  const message = (err as { message?: string })?.message ?? String(err);
  return new ZkError(code, path, `${code} ${path ?? ''}: ${message}`.trim());
}

export const isZkError = (err: unknown, code: ZkErrorCode): err is ZkError =>
  err instanceof ZkError && err.code === code;

/** The connection dropped mid-request: the write may or may not have been applied. */
export const isTransientZkError = (err: unknown): boolean =>
  err instanceof ZkError && (err.code === 'CONNECTION_LOSS' || err.code === 'OPERATION_TIMEOUT');

/**
 * Commits a transaction, surviving a dropped connection: after CONNECTION_LOSS it waits for the
 * session to come back and asks `applied()` whether the transaction went through before the
 * drop (its effect is visible); if not, it commits again. Returns null when it learned of the
 * success that way (no results to read).
 */
export async function commitSurely(
  zk: Zk,
  txn: Txn,
  applied: () => Promise<boolean>,
): Promise<Array<{ stat?: Stat; path?: string }> | null> {
  for (;;) {
    try {
      return await txn.commit();
    } catch (e) {
      if (!isTransientZkError(e)) throw e;
      await zk.waitConnected();
      if (await applied()) return null;
    }
  }
}
