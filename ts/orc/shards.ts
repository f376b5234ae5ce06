// Shard ownership: the balancing policy over the shard locks (ts/zk/recipes/lock.ts). Orcs aim
// at an even split: the live orcs, sorted, each want the shards n with n mod count == rank. An
// owner hands a shard over only once the orc that wants it is queued behind it (ready), so a
// shard is never left without an owner.
import { EventEmitter } from 'node:events';
import os from 'node:os';
import type { Zk } from '../zk/client.js';
import type { Paths } from '../zk/paths.js';
import { Coalescer } from '../zk/recipes/coalescer.js';
import { claimEphemeral } from '../zk/recipes/ephemeral.js';
import { LockSet } from '../zk/recipes/lock.js';
import { watchChildren } from '../zk/recipes/watch.js';
import type { OrcMember } from '../common/model.js';
import type { Logger } from '../common/log.js';

/** The shards an orc of the given rank wants among `members` orcs. */
export function desiredShards(shards: number, rank: number, members: number): number[] {
  const out: number[] = [];
  if (rank < 0 || members < 1) return out;
  for (let n = rank; n < shards; n += members) out.push(n);
  return out;
}

/** Emits 'acquired' (n) and 'released' (n). */
export class ShardOwnership extends EventEmitter {
  private readonly locks: LockSet<number>;
  private desired = new Set<number>();
  private membersWatch: { stop(): void } | undefined;
  private resyncTimer: NodeJS.Timeout | undefined;
  private stopped = false;
  readonly since = Date.now();
  /** Membership changes are applied one at a time, the latest winning: never two rebalances at once. */
  private nextMembers: string[] | undefined;
  private readonly rebalancer: Coalescer;

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
    this.locks = new LockSet<number>({
      zk,
      dir: (n) => paths.shardLock(n),
      owner: orcId,
      wants: (n) => this.desired.has(n),
      log,
      label: 'shard',
    });
    this.locks.on('acquired', (n: number) => {
      this.emit('acquired', n);
      void this.publish();
    });
    this.locks.on('released', (n: number) => {
      this.emit('released', n);
      void this.publish();
    });
    this.rebalancer = new Coalescer(
      async () => {
        const members = this.nextMembers;
        this.nextMembers = undefined;
        if (members) await this.rebalance(members).catch((err) => this.log.error('rebalance failed', { err }));
      },
      () => this.stopped,
      (err) => this.log.error('rebalance failed', { err }),
    );
  }

  /** The shards this orc owns now. */
  get owned(): ReadonlySet<number> {
    return this.locks.owned;
  }

  async start(): Promise<void> {
    for (let n = 0; n < this.shards; n++) await this.zk.mkdirp(this.paths.shardLock(n));
    // A predecessor's membership (killed, or cut off by a power loss) is waited out, never taken.
    await claimEphemeral(this.zk, this.paths.orc(this.orcId), this.member(), { what: `orc id ${this.orcId}`, log: this.log });
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
    this.locks.pause();
  }

  /** RECONNECTED (same session): re-check every lock we hold or wait on. */
  async resume(): Promise<void> {
    await this.locks.resume(this.desired);
  }

  async stop(): Promise<void> {
    this.stopped = true;
    clearInterval(this.resyncTimer);
    this.membersWatch?.stop();
    // Leave the membership first, so the other orcs start queueing for our shards, then free the
    // locks: each shard passes to its next owner without waiting for our session to expire.
    await this.locks.stop(() => this.zk.remove(this.paths.orc(this.orcId)).catch(() => {}));
  }

  private requestRebalance(members: string[]): void {
    this.nextMembers = members;
    void this.rebalancer.run();
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
    await Promise.all([...new Set([...this.desired, ...this.locks.keys()])].map((n) => this.locks.check(n)));
  }

  /** A safety net under the watches: re-read the membership and re-evaluate every shard of ours. */
  private async resync(): Promise<void> {
    if (this.stopped || this.locks.paused || !this.zk.connected) return;
    try {
      this.requestRebalance((await this.zk.children(this.paths.orcs)) ?? []);
    } catch (err) {
      this.log.warn('shard resync failed', { err });
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
