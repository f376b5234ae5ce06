// Shard ownership through ZooKeeper locks (Curator's recipe): each shard has a lock directory of
// ephemeral-sequential candidates; the lowest owns it, each waiter watches only its predecessor,
// and ownership is confirmed against our own session. Orcs aim at an even split: the live orcs,
// sorted, each want the shards n with n mod count == rank. An owner hands a shard over only once
// the orc that wants it is queued behind it (ready), so a shard is never left without an owner.
import { EventEmitter } from 'node:events';
import os from 'node:os';
import type { Zk } from '../zk/client.js';
import { isZkError } from '../zk/errors.js';
import { watchChildren } from '../zk/recipes/watch.js';
import type { Paths } from '../zk/paths.js';
import type { Logger } from '../common/log.js';

export interface OrcMember {
  id: string;
  pid: number;
  host: string;
  since: number;
  shards: number[];
}

const CANDIDATE = /^c-(.+)-(\d{10})$/;

/** Parses `c-<orc>-<seq>` lock candidates, in lock order. */
export function lockQueue(children: string[]): Array<{ node: string; orc: string; seq: number }> {
  return children
    .map((node) => {
      const m = CANDIDATE.exec(node);
      return m ? { node, orc: m[1]!, seq: Number(m[2]) } : null;
    })
    .filter((x): x is { node: string; orc: string; seq: number } => x !== null)
    .sort((a, b) => a.seq - b.seq);
}

/** The shards an orc of the given rank wants among `members` orcs. */
export function desiredShards(shards: number, rank: number, members: number): number[] {
  const out: number[] = [];
  if (rank < 0 || members < 1) return out;
  for (let n = rank; n < shards; n += members) out.push(n);
  return out;
}

/** Emits 'acquired' (n) and 'released' (n). */
export class ShardOwnership extends EventEmitter {
  /** Our candidate node per shard (queued or owning). */
  private readonly candidates = new Map<number, string>();
  readonly owned = new Set<number>();
  private desired = new Set<number>();
  private membersWatch: { stop(): void } | undefined;
  private resyncTimer: NodeJS.Timeout | undefined;
  private stopped = false;
  private paused = false;
  readonly since = Date.now();

  constructor(
    private readonly zk: Zk,
    private readonly paths: Paths,
    readonly orcId: string,
    private readonly shards: number,
    private readonly log: Logger,
    /** How often the membership is re-read and every shard of ours re-evaluated, whatever the watches said. */
    private readonly resyncMs = 5000,
  ) {
    super();
  }

  async start(): Promise<void> {
    for (let n = 0; n < this.shards; n++) await this.zk.mkdirp(this.paths.shardLock(n));
    await this.zk.create(this.paths.orc(this.orcId), this.member(), 'ephemeral');
    this.membersWatch = watchChildren(
      this.zk,
      this.paths.orcs,
      (kids) => this.requestRebalance(kids ?? []),
      (err) => this.log.error('orcs watch failed', { err }),
    );
    this.resyncTimer = setInterval(() => void this.resync(), this.resyncMs);
    this.resyncTimer.unref();
  }

  private member(): OrcMember {
    return { id: this.orcId, pid: process.pid, host: os.hostname(), since: this.since, shards: [...this.owned].sort((a, b) => a - b) };
  }

  /** SUSPENDED: stop acting on owned shards until the connection is back. */
  pause(): void {
    this.paused = true;
    for (const n of [...this.owned]) this.lose(n);
  }

  /** RECONNECTED (same session): re-check every lock we hold or wait on. */
  async resume(): Promise<void> {
    this.paused = false;
    await Promise.all(this.relevant().map((n) => this.check(n).catch((err) => this.log.error('lock check failed', { shard: n, err }))));
  }

  async stop(): Promise<void> {
    this.stopped = true;
    clearInterval(this.resyncTimer);
    this.membersWatch?.stop();
    for (const n of [...this.owned]) this.lose(n);
    // Leave the membership first, so the other orcs start queueing for our shards, then free the
    // locks: each shard passes to its next owner without waiting for our session to expire.
    await this.zk.remove(this.paths.orc(this.orcId)).catch(() => {});
    const held = [...this.candidates];
    this.candidates.clear();
    await Promise.all(held.map(([n, node]) => this.zk.remove(`${this.paths.shardLock(n)}/${node}`).catch(() => {})));
  }

  /** Membership changes are applied one at a time, the latest winning: never two rebalances at once. */
  private nextMembers: string[] | undefined;
  private rebalancing = false;
  private requestRebalance(members: string[]): void {
    this.nextMembers = members;
    if (this.rebalancing) return;
    this.rebalancing = true;
    void (async () => {
      while (this.nextMembers && !this.stopped) {
        const m = this.nextMembers;
        this.nextMembers = undefined;
        await this.rebalance(m).catch((err) => this.log.error('rebalance failed', { err }));
      }
      this.rebalancing = false;
    })();
  }

  private async rebalance(members: string[]): Promise<void> {
    if (this.stopped) return;
    const sorted = [...members].sort();
    const rank = sorted.indexOf(this.orcId);
    this.desired = new Set(desiredShards(this.shards, rank, sorted.length));
    // Every shard's queue is independent: evaluate them all at once, so a dead orc's shards are
    // taken after one round trip rather than one per shard. Each evaluation queues for a wanted
    // shard, leaves the queue of an unwanted one, or hands an owned one over once its new owner
    // is queued.
    await Promise.all(this.relevant().map((n) => this.check(n)));
  }

  /** The shards we want or hold a candidate for. */
  private relevant(): number[] {
    return [...new Set([...this.desired, ...this.candidates.keys()])];
  }

  /** A safety net under the watches: re-read the membership and re-evaluate every shard of ours. */
  private async resync(): Promise<void> {
    if (this.stopped || this.paused || !this.zk.connected) return;
    try {
      this.requestRebalance((await this.zk.children(this.paths.orcs)) ?? []);
    } catch (err) {
      this.log.warn('shard resync failed', { err });
    }
  }

  private recheck(n: number): () => void {
    return () => void this.check(n).catch((err) => this.log.error('lock check failed', { shard: n, err }));
  }

  /** Watch paths with a one-shot watch of ours pending: a re-evaluation does not stack another. */
  private readonly armed = new Set<string>();
  private watchOnce(n: number, key: string): ((ev: unknown) => void) | undefined {
    if (this.armed.has(key)) return undefined;
    this.armed.add(key);
    const recheck = this.recheck(n);
    return () => {
      this.armed.delete(key);
      recheck();
    };
  }

  private async withdraw(n: number): Promise<void> {
    const node = this.candidates.get(n);
    this.candidates.delete(n);
    this.lose(n);
    if (node) {
      await this.zk.remove(`${this.paths.shardLock(n)}/${node}`).catch((e) => {
        if (!isZkError(e, 'NO_NODE')) throw e;
      });
    }
  }

  private lose(n: number): void {
    if (!this.owned.delete(n)) return;
    this.emit('released', n);
    void this.publish();
  }

  /**
   * Re-evaluates one shard's lock queue: queue, acquire, keep, hand over or leave. One evaluation
   * per shard at a time: a request while one runs makes it run once more afterwards (a watch that
   * fires mid-evaluation is not lost). Two at once could act on each other's stale reads: one
   * withdrew the candidate while the other, having confirmed it a round trip earlier, went on to
   * claim the shard without any lock.
   */
  private readonly checks = new Map<number, { again: boolean; done: Promise<void> }>();
  private check(n: number): Promise<void> {
    const running = this.checks.get(n);
    if (running) {
      running.again = true;
      return running.done;
    }
    const run = { again: false, done: Promise.resolve() };
    this.checks.set(n, run);
    run.done = (async () => {
      try {
        do {
          run.again = false;
          if (await this.evaluate(n)) run.again = true;
        } while (run.again && !this.stopped);
      } finally {
        this.checks.delete(n);
      }
    })();
    return run.done;
  }

  /** One look at shard n's lock; true if it must be looked at again. Only ever run by check(). */
  private async evaluate(n: number): Promise<boolean> {
    if (this.stopped) return false;
    const lock = this.paths.shardLock(n);
    let mine = this.candidates.get(n);
    if (!mine) {
      this.lose(n);
      if (!this.desired.has(n) || this.paused) return false;
      const created = await this.zk.create(`${lock}/c-${this.orcId}-`, undefined, 'ephemeral_sequential');
      mine = created.slice(created.lastIndexOf('/') + 1);
      if (this.stopped) {
        await this.zk.remove(created).catch(() => {});
        return false;
      }
      this.candidates.set(n, mine);
    }
    const stale = (): boolean => this.stopped || this.candidates.get(n) !== mine;
    const queue = lockQueue((await this.zk.children(lock)) ?? []);
    if (stale()) return !this.stopped;
    // Our own session's other candidates here (a create the client retried after a connection
    // loss had been applied): nobody would ever remove them, and one ahead of us blocks the shard.
    let strays = 0;
    for (const c of queue) {
      if (c.orc !== this.orcId || c.node === mine) continue;
      const st = await this.zk.exists(`${lock}/${c.node}`);
      if (st && st.ephemeralOwner === this.zk.sessionId) {
        this.log.warn('removing a stray lock candidate', { shard: n, node: c.node });
        await this.zk.remove(`${lock}/${c.node}`).catch((e) => {
          if (!isZkError(e, 'NO_NODE')) throw e;
        });
        strays++;
      }
    }
    if (strays > 0) return true;
    const idx = queue.findIndex((c) => c.node === mine);
    if (idx < 0) {
      // Our candidate vanished (session trouble): we own nothing here until we queue again.
      this.candidates.delete(n);
      this.lose(n);
      return this.desired.has(n) && !this.paused;
    }
    if (idx > 0) {
      this.lose(n);
      // Waiting for a shard we no longer want: leave its queue.
      if (!this.desired.has(n)) {
        await this.withdraw(n);
        return false;
      }
      // Wait for our predecessor only (no herd): its removal re-checks this shard.
      const pred = `${lock}/${queue[idx - 1]!.node}`;
      const watch = this.watchOnce(n, `exists:${pred}`);
      const st = await this.zk.exists(pred, watch).catch((e) => {
        this.armed.delete(`exists:${pred}`);
        throw e;
      });
      if (!st) this.armed.delete(`exists:${pred}`); // a candidate is never created again
      return !st;
    }
    // First in line: confirm the node is ours in this very session before acting as owner.
    const st = await this.zk.exists(`${lock}/${mine}`);
    if (stale()) return !this.stopped;
    if (!st) return true; // gone meanwhile: the next look finds out why
    if (st.ephemeralOwner !== this.zk.sessionId) {
      this.lose(n);
      return false;
    }
    if (!this.desired.has(n)) {
      if (queue.length > 1) {
        this.log.info('handing shard over', { shard: n, to: queue[1]!.orc });
        await this.withdraw(n);
        return false;
      }
      // Owned but wanted elsewhere: watch for the orc that wants it to queue up, then hand over.
      const watch = this.watchOnce(n, `children:${lock}`);
      const kids = await this.zk.children(lock, watch).catch((e) => {
        this.armed.delete(`children:${lock}`);
        throw e;
      });
      if (stale()) return !this.stopped;
      if ((kids?.length ?? 0) > 1) return true;
    }
    if (!this.owned.has(n) && !this.paused) {
      this.owned.add(n);
      this.emit('acquired', n);
      void this.publish();
    }
    return false;
  }

  private publishing = Promise.resolve();
  /** Keeps /quark/orcs/<id> showing the shards we own. */
  private publish(): Promise<void> {
    this.publishing = this.publishing
      .then(() => (this.stopped ? undefined : this.zk.set(this.paths.orc(this.orcId), this.member(), -1).then(() => {})))
      .catch(() => {});
    return this.publishing;
  }
}
