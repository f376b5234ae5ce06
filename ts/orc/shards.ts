// Shard ownership through ZooKeeper locks (Curator's recipe): each shard has a lock directory of
// ephemeral-sequential candidates; the lowest owns it, each waiter watches only its predecessor,
// and ownership is confirmed against our own session. Orcs aim at an even split: the live orcs,
// sorted, each want the shards n with n mod count == rank. An owner hands a shard over only once
// the orc that wants it is queued behind it (ready), so a shard is never left without an owner.
import { EventEmitter } from 'node:events';
import os from 'node:os';
import { isZkError, watchChildren, type Zk } from '../zk/client.js';
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
  private stopped = false;
  private paused = false;
  readonly since = Date.now();

  constructor(
    private readonly zk: Zk,
    private readonly paths: Paths,
    readonly orcId: string,
    private readonly shards: number,
    private readonly log: Logger,
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
    for (const n of [...this.candidates.keys()]) await this.check(n);
  }

  async stop(): Promise<void> {
    this.stopped = true;
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
    // Every shard's queue is independent: queue for all wanted shards at once, so a dead orc's
    // shards are taken after one round trip rather than one per shard.
    const joining = [...this.desired].filter((n) => !this.candidates.has(n));
    await Promise.all(joining.map((n) => this.enqueue(n)));
    // Withdraw from queues we no longer want; owned-but-unwanted shards wait for their new owner.
    const unwanted = [...this.candidates.keys()].filter((n) => !this.desired.has(n));
    await Promise.all(unwanted.map((n) => (this.owned.has(n) ? this.check(n) : this.withdraw(n))));
  }

  private async enqueue(n: number): Promise<void> {
    const created = await this.zk.create(`${this.paths.shardLock(n)}/c-${this.orcId}-`, undefined, 'ephemeral_sequential');
    this.candidates.set(n, created.slice(created.lastIndexOf('/') + 1));
    await this.check(n);
  }

  private recheck(n: number): () => void {
    return () => void this.check(n).catch((err) => this.log.error('lock check failed', { shard: n, err }));
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

  /** Re-evaluates one shard's lock queue: acquire, keep, or hand over. */
  private async check(n: number): Promise<void> {
    if (this.stopped) return;
    const mine = this.candidates.get(n);
    if (!mine) return;
    const queue = lockQueue((await this.zk.children(this.paths.shardLock(n))) ?? []);
    const idx = queue.findIndex((c) => c.node === mine);
    if (idx < 0) {
      // Our candidate vanished (session trouble): we own nothing here until we queue again.
      this.candidates.delete(n);
      this.lose(n);
      if (this.desired.has(n) && !this.paused) await this.enqueue(n);
      return;
    }
    if (idx > 0) {
      // Wait for our predecessor only (no herd): its removal re-checks this shard.
      this.lose(n);
      const pred = await this.zk.exists(`${this.paths.shardLock(n)}/${queue[idx - 1]!.node}`, this.recheck(n));
      if (!pred) await this.check(n);
      return;
    }
    // First in line: confirm the node is ours in this very session before acting as owner.
    const st = await this.zk.exists(`${this.paths.shardLock(n)}/${mine}`);
    if (!st || st.ephemeralOwner !== this.zk.sessionId) {
      this.lose(n);
      return;
    }
    if (!this.desired.has(n) && queue.length > 1) {
      this.log.info('handing shard over', { shard: n, to: queue[1]!.orc });
      await this.withdraw(n);
      return;
    }
    if (!this.desired.has(n)) {
      // Owned but wanted elsewhere: watch for the orc that wants it to queue up, then hand over.
      const kids = await this.zk.children(this.paths.shardLock(n), this.recheck(n));
      if ((kids?.length ?? 0) > 1) return this.check(n);
    }
    if (!this.owned.has(n) && !this.paused) {
      this.owned.add(n);
      this.emit('acquired', n);
      void this.publish();
    }
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
