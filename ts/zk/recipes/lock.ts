// Curator's lock recipe, for a set of locks held at once (an orc's shards): each lock is a
// directory of ephemeral-sequential candidates `c-<owner>-<seq>`; the lowest holds it, each waiter
// watches only its predecessor (no herd), and holding is confirmed against our own session. What
// to want is the caller's policy (`wants`): a lock no longer wanted is left if we only wait for
// it, and handed over once someone else is queued behind us if we hold it, so it is never left
// without a holder.
import { EventEmitter } from 'node:events';
import type { Zk } from '../client.js';
import { isZkError } from '../errors.js';
import type { Logger } from '../../common/log.js';
import { Coalescer } from './coalescer.js';

export interface LockCandidate {
  node: string;
  owner: string;
  seq: number;
}

const CANDIDATE = /^c-(.+)-(\d{10})$/;

/** Parses `c-<owner>-<seq>` lock candidates, in lock order (the first holds the lock). */
export function lockQueue(children: string[]): LockCandidate[] {
  return children
    .map((node) => {
      const m = CANDIDATE.exec(node);
      return m ? { node, owner: m[1]!, seq: Number(m[2]) } : null;
    })
    .filter((x): x is LockCandidate => x !== null)
    .sort((a, b) => a.seq - b.seq);
}

export interface LockSetOptions<K> {
  zk: Zk;
  /** The lock directory of a key (it must exist). */
  dir(key: K): string;
  /** Our name in candidate nodes. */
  owner: string;
  /** Whether we want a key's lock now; asked at every evaluation. */
  wants(key: K): boolean;
  log: Logger;
  /** What a key is called in log lines (default 'lock'). */
  label?: string;
}

/** Emits 'acquired' (key) and 'released' (key). */
export class LockSet<K> extends EventEmitter {
  /** Our candidate node per key (queued or holding). */
  private readonly candidates = new Map<K, string>();
  readonly owned = new Set<K>();
  private stopped = false;
  private pausedNow = false;
  private readonly label: string;
  /**
   * One evaluation per key at a time: a request while one runs makes it run once more afterwards
   * (a watch that fires mid-evaluation is not lost). Two at once could act on each other's stale
   * reads: one withdrew the candidate while the other, having confirmed it a round trip earlier,
   * went on to claim the lock without holding it.
   */
  private readonly checks = new Map<K, Coalescer>();
  /** Watch paths with a one-shot watch of ours pending: a re-evaluation does not stack another. */
  private readonly armed = new Set<string>();

  constructor(private readonly o: LockSetOptions<K>) {
    super();
    this.label = o.label ?? 'lock';
  }

  /** SUSPENDED: holding nothing until resume(), and queueing for nothing new. */
  get paused(): boolean {
    return this.pausedNow;
  }

  /** Keys we have a candidate for (queued or holding). */
  keys(): K[] {
    return [...this.candidates.keys()];
  }

  /** SUSPENDED: stop acting as holder of anything until the connection is back. */
  pause(): void {
    this.pausedNow = true;
    for (const k of [...this.owned]) this.lose(k);
  }

  /** RECONNECTED (same session): re-check every lock we hold or wait on, and those in `wanted`. */
  async resume(wanted: Iterable<K>): Promise<void> {
    this.pausedNow = false;
    await Promise.all([...new Set([...wanted, ...this.candidates.keys()])].map((k) => this.check(k)));
  }

  /**
   * Releases everything: holders first (events), then `leaving` (say, leave a membership so
   * others queue up), then our candidates are removed, so each lock passes to its next waiter
   * without waiting for our session to expire.
   */
  async stop(leaving?: () => Promise<unknown>): Promise<void> {
    this.stopped = true;
    for (const k of [...this.owned]) this.lose(k);
    await leaving?.();
    const held = [...this.candidates];
    this.candidates.clear();
    await Promise.all(held.map(([k, node]) => this.o.zk.remove(`${this.o.dir(k)}/${node}`).catch(() => {})));
  }

  /** Re-evaluates one key's lock queue: queue, acquire, keep, hand over or leave. */
  check(key: K): Promise<void> {
    let c = this.checks.get(key);
    if (!c) {
      c = new Coalescer(
        () => this.evaluate(key),
        () => this.stopped,
        (err) => this.o.log.error('lock check failed', { [this.label]: key, err }),
      );
      this.checks.set(key, c);
    }
    return c.run();
  }

  private recheck(key: K): () => void {
    return () => void this.check(key);
  }

  private watchOnce(key: K, what: string): ((ev: unknown) => void) | undefined {
    if (this.armed.has(what)) return undefined;
    this.armed.add(what);
    const recheck = this.recheck(key);
    return () => {
      this.armed.delete(what);
      recheck();
    };
  }

  private async withdraw(key: K): Promise<void> {
    const node = this.candidates.get(key);
    this.candidates.delete(key);
    this.lose(key);
    if (node) {
      await this.o.zk.remove(`${this.o.dir(key)}/${node}`).catch((e) => {
        if (!isZkError(e, 'NO_NODE')) throw e;
      });
    }
  }

  private lose(key: K): void {
    if (!this.owned.delete(key)) return;
    this.emit('released', key);
  }

  /** One look at a key's lock; true if it must be looked at again. Only ever run by check(). */
  private async evaluate(key: K): Promise<boolean> {
    if (this.stopped) return false;
    const { zk, owner, log } = this.o;
    const lock = this.o.dir(key);
    const wanted = (): boolean => this.o.wants(key);
    let mine = this.candidates.get(key);
    if (!mine) {
      this.lose(key);
      if (!wanted() || this.pausedNow) return false;
      const created = await zk.create(`${lock}/c-${owner}-`, undefined, 'ephemeral_sequential');
      mine = created.slice(created.lastIndexOf('/') + 1);
      if (this.stopped) {
        await zk.remove(created).catch(() => {});
        return false;
      }
      this.candidates.set(key, mine);
    }
    const stale = (): boolean => this.stopped || this.candidates.get(key) !== mine;
    const queue = lockQueue((await zk.children(lock)) ?? []);
    if (stale()) return !this.stopped;
    // Our own session's other candidates here (a create the client retried after a connection
    // loss had been applied): nobody would ever remove them, and one ahead of us blocks the lock.
    let strays = 0;
    for (const c of queue) {
      if (c.owner !== owner || c.node === mine) continue;
      const st = await zk.exists(`${lock}/${c.node}`);
      if (st && st.ephemeralOwner === zk.sessionId) {
        log.warn('removing a stray lock candidate', { [this.label]: key, node: c.node });
        await zk.remove(`${lock}/${c.node}`).catch((e) => {
          if (!isZkError(e, 'NO_NODE')) throw e;
        });
        strays++;
      }
    }
    if (strays > 0) return true;
    const idx = queue.findIndex((c) => c.node === mine);
    if (idx < 0) {
      // Our candidate vanished (session trouble): we hold nothing here until we queue again.
      this.candidates.delete(key);
      this.lose(key);
      return wanted() && !this.pausedNow;
    }
    if (idx > 0) {
      this.lose(key);
      // Waiting for a lock we no longer want: leave its queue.
      if (!wanted()) {
        await this.withdraw(key);
        return false;
      }
      // Wait for our predecessor only (no herd): its removal re-checks this lock.
      const pred = `${lock}/${queue[idx - 1]!.node}`;
      const watch = this.watchOnce(key, `exists:${pred}`);
      const st = await zk.exists(pred, watch).catch((e) => {
        this.armed.delete(`exists:${pred}`);
        throw e;
      });
      if (!st) this.armed.delete(`exists:${pred}`); // a candidate is never created again
      return !st;
    }
    // First in line: confirm the node is ours in this very session before acting as holder.
    const st = await zk.exists(`${lock}/${mine}`);
    if (stale()) return !this.stopped;
    if (!st) return true; // gone meanwhile: the next look finds out why
    if (st.ephemeralOwner !== zk.sessionId) {
      this.lose(key);
      return false;
    }
    if (!wanted()) {
      if (queue.length > 1) {
        log.info(`handing ${this.label} over`, { [this.label]: key, to: queue[1]!.owner });
        await this.withdraw(key);
        return false;
      }
      // Held but wanted elsewhere: watch for the one that wants it to queue up, then hand over.
      const watch = this.watchOnce(key, `children:${lock}`);
      const kids = await zk.children(lock, watch).catch((e) => {
        this.armed.delete(`children:${lock}`);
        throw e;
      });
      if (stale()) return !this.stopped;
      if ((kids?.length ?? 0) > 1) return true;
    }
    if (!this.owned.has(key) && !this.pausedNow) {
      this.owned.add(key);
      this.emit('acquired', key);
    }
    return false;
  }
}
