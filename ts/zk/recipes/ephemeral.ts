// Claiming an ephemeral node that stands for a process identity (an orc's membership, a compute's
// `alive`) after an unclean stop. A killed process's session outlives it until the server expires
// it, a ZooKeeper restart included (sessions are restored and their clock starts again), so the
// node of the previous incarnation may still be there. It is never deleted: whether its session
// is dead or alive cannot be told from outside, and deleting a live one lets two processes run
// under one identity. Instead the claim waits, watching it, as long as a session can outlive its
// client; if it is still there then, its holder is alive and the claim is refused.
import { Zk } from '../client.js';
import { isZkError } from '../errors.js';
import type { Txn } from '../txn.js';
import type { Logger } from '../../common/log.js';

/** Expiry is checked once per server tick; room for that and for the delete to reach us. */
export const EXPIRY_MARGIN_MS = 3000;
/** What the probe asks for: far above any server's maximum, which it is then granted instead. */
const PROBE_ASK_MS = 24 * 3600 * 1000;

export class IdentityInUse extends Error {
  override readonly name = 'IdentityInUse';
  constructor(
    readonly what: string,
    readonly path: string,
    /** The holder's session id, hex. */
    readonly owner: string,
    waitedMs: number,
  ) {
    super(
      `${what} is in use by a live session 0x${owner}: ${path} outlived a ${waitedMs} ms wait, longer than a dead ` +
        `session can last; stop the process that holds it, or pick another id`,
    );
  }
}

const probed = new Map<string, Promise<number>>();

/**
 * The server's maximum session timeout: the longest any session, a dead client's included, can
 * last without a ping. Learned once per connection string from a short-lived session that asks
 * for far more than any server grants (the server clamps a request into its min..max).
 */
export function maxSessionTimeoutMs(connectionString: string): Promise<number> {
  let p = probed.get(connectionString);
  if (!p) {
    p = (async () => {
      const probe = await Zk.connect(connectionString, { sessionTimeoutMs: PROBE_ASK_MS, connectTimeoutMs: 15_000 });
      try {
        return probe.sessionTimeoutMs;
      } finally {
        await probe.close();
      }
    })();
    probed.set(connectionString, p);
    p.catch(() => probed.delete(connectionString));
  }
  return p;
}

export interface ClaimOptions {
  /** How a refusal names the identity, e.g. 'compute id compute-1'. */
  what: string;
  /** How long a previous holder's node may take to go; default the server's maximum session timeout plus EXPIRY_MARGIN_MS. */
  waitMs?: number;
  /** More ops for the creating transaction (say, bump an incarnation version): they land with the node or not at all. */
  alongWith?: (txn: Txn) => void;
  log?: Logger;
}

/**
 * Creates the ephemeral node `path` with `value` (and its missing parents, persistent). If it
 * exists: ours (this session's, a retried create that landed) is taken as is; another session's
 * is waited out, watched, for up to `waitMs` from when that session was first seen holding it,
 * then created; still held after that, the claim throws IdentityInUse. Never deletes a node.
 */
export async function claimEphemeral(zk: Zk, path: string, value: unknown, o: ClaimOptions): Promise<void> {
  let holder: { owner: string; until: number; waitMs: number } | undefined;
  for (;;) {
    try {
      const txn = zk.txn().create(path, value, 'ephemeral');
      o.alongWith?.(txn);
      await txn.commit();
      if (holder) o.log?.info('claimed after the previous holder went', { path, previous: `0x${holder.owner}` });
      return;
    } catch (e) {
      if (isZkError(e, 'NO_NODE') && e.opIndex === 0) {
        await zk.mkdirp(path.slice(0, path.lastIndexOf('/')));
        continue;
      }
      if (!isZkError(e, 'NODE_EXISTS') || e.opIndex !== 0) throw e;
    }
    let fired!: () => void;
    const changed = new Promise<void>((r) => (fired = r));
    const st = await zk.exists(path, () => fired());
    if (!st) continue; // gone meanwhile
    if (st.ephemeralOwner === zk.sessionId) return;
    if (/^0+$/.test(st.ephemeralOwner)) throw new Error(`${path} exists and is not ephemeral: ${o.what} cannot be claimed`);
    if (holder?.owner !== st.ephemeralOwner) {
      const waitMs = o.waitMs ?? (await maxSessionTimeoutMs(zk.connectionString)) + EXPIRY_MARGIN_MS;
      holder = { owner: st.ephemeralOwner, until: Date.now() + waitMs, waitMs };
      o.log?.warn('held by another session: waiting for it to end', { path, holder: `0x${holder.owner}`, up_to_ms: waitMs });
    }
    const left = holder.until - Date.now();
    if (left <= 0) throw new IdentityInUse(o.what, path, holder.owner, holder.waitMs);
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([changed, new Promise<void>((r) => (timer = setTimeout(r, left)))]);
    clearTimeout(timer);
  }
}
