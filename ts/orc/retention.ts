// The orc's retention pass: for each shard it owns, what ended longer ago than the retention (or
// past a server's newest N units) is removed, at most `batch` records a pass. What to remove is
// decided from the names in the shard's ended/ directory (ts/lifecycle/retention.ts); each
// record is read before it goes and removed at the version read, only if it has ended: a unit
// still in flight is never removed, whatever a name says. Idempotency keys are pruned here too,
// each by the owner of the shard its name hashes to.
import type { Zk } from '../zk/client.js';
import { isZkError } from '../zk/errors.js';
import type { Paths } from '../zk/paths.js';
import type { Logger } from '../common/log.js';
import { shardOf, TERMINAL, type WorkUnitState } from '../common/model.js';
import { DEFAULT_RETENTION, selectPrunable, type Ended, type RetentionPolicy } from '../lifecycle/retention.js';
import { expired } from '../api/idempotency.js';

export interface RetentionOptions extends Partial<RetentionPolicy> {
  /** Most ended records, and most idempotency keys, looked at in one pass (default 500 each). */
  batch?: number;
  /** How often a pass runs (default 60 s); after a full pass, the next follows within a second. */
  passMs?: number;
}

export interface PassResult {
  units: number;
  servers: number;
  keys: number;
  /** Names under ended/ the pass chose but left (a unit still in flight, a record changed meanwhile). */
  kept: number;
  /** Whether the pass stopped at its batch size (there may be more to remove). */
  full: boolean;
}

const PARALLEL = 32;

export class Retention {
  readonly policy: RetentionPolicy;
  private readonly batch: number;
  private readonly passMs: number;
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<PassResult> | null = null;
  private stopped = false;
  /** Where the idempotency-key walk resumes: the last name looked at. */
  private keyCursor = '';
  /** Which owned shard the next pass starts at, so a shard with a backlog cannot starve the others. */
  private shardCursor = 0;
  readonly totals = { units: 0, servers: 0, keys: 0, passes: 0 };

  constructor(
    private readonly zk: Zk,
    private readonly paths: Paths,
    private readonly shards: number,
    /** The shards this orc owns now (and may act on). */
    private readonly owned: () => number[],
    private readonly log: Logger | undefined,
    o: RetentionOptions = {},
  ) {
    this.policy = {
      unitRetentionMs: o.unitRetentionMs ?? DEFAULT_RETENTION.unitRetentionMs,
      unitsPerServer: o.unitsPerServer ?? DEFAULT_RETENTION.unitsPerServer,
      deletedRetentionMs: o.deletedRetentionMs ?? DEFAULT_RETENTION.deletedRetentionMs,
      idempotencyTtlMs: o.idempotencyTtlMs ?? DEFAULT_RETENTION.idempotencyTtlMs,
    };
    this.batch = o.batch ?? 500;
    this.passMs = o.passMs ?? 60_000;
    if (!(this.batch >= 1)) throw new Error('the prune batch must be at least 1');
  }

  start(): void {
    const next = (ms: number): void => {
      if (this.stopped) return;
      this.timer = setTimeout(() => {
        void this.pass()
          .then((r) => next(r.full ? Math.min(this.passMs, 1000) : this.passMs))
          .catch((err) => {
            this.log?.warn('retention pass failed; trying again later', { err });
            next(this.passMs);
          });
      }, ms);
      this.timer.unref();
    };
    next(this.passMs);
  }

  stop(): void {
    this.stopped = true;
    clearTimeout(this.timer);
  }

  /** One pass now (a pass already under way is joined, not doubled). */
  pass(now = Date.now()): Promise<PassResult> {
    if (!this.running) this.running = this.run(now).finally(() => (this.running = null));
    return this.running;
  }

  private async run(now: number): Promise<PassResult> {
    const r: PassResult = { units: 0, servers: 0, keys: 0, kept: 0, full: false };
    let budget = this.batch;
    const owned = this.owned();
    const start = owned.length ? this.shardCursor % owned.length : 0;
    for (let i = 0; i < owned.length && budget > 0 && !this.stopped; i++) {
      const n = owned[(start + i) % owned.length]!;
      if (!this.owned().includes(n)) continue; // handed over meanwhile
      const chosen = selectPrunable((await this.zk.children(this.paths.ended(n))) ?? [], this.policy, now, budget);
      budget -= chosen.length;
      for (let j = 0; j < chosen.length; j += PARALLEL) {
        if (!this.owned().includes(n)) break;
        const outcomes = await Promise.all(chosen.slice(j, j + PARALLEL).map((e) => this.prune(n, e)));
        for (const [k, o] of outcomes.entries()) {
          if (o === 'removed') r[chosen[j + k]!.kind === 'unit' ? 'units' : 'servers']++;
          else r.kept++;
        }
      }
    }
    this.shardCursor = start + 1;
    r.full = budget <= 0;
    // Keys have a budget of their own: a backlog of ended records must not keep them forever.
    if (!this.stopped) {
      const k = await this.pruneKeys(now, this.batch);
      r.keys = k.removed;
      if (k.looked >= this.batch) r.full = true;
    }
    this.totals.units += r.units;
    this.totals.servers += r.servers;
    this.totals.keys += r.keys;
    this.totals.passes++;
    if (r.units + r.servers + r.keys > 0) this.log?.info('retention pass', { ...r });
    return r;
  }

  /** Removes one ended record and its name, if it has ended indeed and nobody changed it meanwhile. */
  private async prune(shard: number, e: Ended): Promise<'removed' | 'kept'> {
    const entry = this.paths.endedEntry(shard, e.name);
    const record = e.kind === 'unit' ? this.paths.workUnit(e.wu) : this.paths.deletedServer(e.server);
    const cur = await this.zk.get<{ state?: WorkUnitState }>(record).catch((err: unknown) => {
      // A record that does not decode is not a finished unit we can vouch for: left alone.
      this.log?.warn('retention could not read a record; left as it is', { record, err });
      return undefined;
    });
    if (cur === undefined) return 'kept';
    if (cur && e.kind === 'unit' && !TERMINAL.has(cur.value?.state as WorkUnitState)) {
      this.log?.error('an ended/ name points at a work unit still in flight; left as it is', { wu: e.wu, state: cur.value?.state });
      return 'kept';
    }
    const txn = this.zk.txn();
    if (cur) txn.remove(record, cur.stat.version);
    txn.remove(entry);
    try {
      await txn.commit();
      return 'removed';
    } catch (err) {
      if (isZkError(err, 'BAD_VERSION') || isZkError(err, 'NO_NODE')) return 'kept'; // changed meanwhile: judged again next pass
      throw err;
    }
  }

  /**
   * Expired idempotency keys of the owned shards: a walk through the names that resumes where the
   * last pass stopped, reading at most `budget` of them.
   */
  private async pruneKeys(now: number, budget: number): Promise<{ removed: number; looked: number }> {
    const owned = new Set(this.owned());
    if (owned.size === 0) return { removed: 0, looked: 0 };
    const mine = ((await this.zk.children(this.paths.idempotency)) ?? []).filter((k) => owned.has(shardOf(k, this.shards))).sort();
    if (mine.length === 0) return { removed: 0, looked: 0 };
    let from = mine.findIndex((k) => k > this.keyCursor);
    if (from < 0) from = 0;
    const todo = [...mine.slice(from), ...mine.slice(0, from)].slice(0, budget);
    let removed = 0;
    for (let i = 0; i < todo.length; i += PARALLEL) {
      await Promise.all(
        todo.slice(i, i + PARALLEL).map(async (name) => {
          const p = this.paths.idempotencyKey(name);
          const rec = await this.zk.get<{ created_at?: number }>(p).catch(() => null);
          if (!rec || !expired(rec.value ?? {}, now, this.policy.idempotencyTtlMs)) return;
          try {
            await this.zk.remove(p, rec.stat.version);
            removed++;
          } catch (e) {
            if (!isZkError(e, 'NO_NODE') && !isZkError(e, 'BAD_VERSION')) throw e;
          }
        }),
      );
    }
    this.keyCursor = todo[todo.length - 1] ?? '';
    return { removed, looked: todo.length };
  }
}
