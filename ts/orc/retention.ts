// The orc's retention pass: for each shard it owns, what ended longer ago than the retention (or
// past a server's newest N units) is removed, at most `batch` records a pass. What to remove is
// decided from the names in the shard's ended/ directory (ts/lifecycle/retention.ts); each
// record is read before it goes and removed at the version read, only if it has ended: a unit
// still in flight is never removed, whatever a name says. Idempotency keys are pruned here too,
// each by the owner of the shard its name hashes to. Units that ended before ended/ existed (an
// older version's) are filed there once, by the owner of each unit's shard, a batch per pass;
// shards/<n>/ended-filed then says shard n is done.
import type { Zk } from '../zk/client.js';
import { isZkError } from '../zk/errors.js';
import type { Paths } from '../zk/paths.js';
import type { Logger } from '../common/log.js';
import { shardOf, TERMINAL, type WorkUnitState } from '../common/model.js';
import { DEFAULT_RETENTION, endedUnitName, selectPrunable, unitFiledUnder, type Ended, type RetentionPolicy } from '../lifecycle/retention.js';
import { checkWorkUnit, readRecord } from '../lifecycle/records.js';
import type { WorkUnitId } from '../common/ids.js';
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
  /** Units of an older version's, found ended and filed under ended/ this pass. */
  filed: number;
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
  readonly totals = { units: 0, servers: 0, keys: 0, filed: 0, passes: 0 };
  /** Owned shards whose older units are all filed (their ended-filed marker exists). */
  private readonly filedShards = new Set<number>();
  /** Per shard being filed: the unit ids still to look at. */
  private readonly filing = new Map<number, string[]>();
  /** Every unit id, listed once for the filing and dropped when it is done. */
  private allUnits: string[] | undefined;

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
    const r: PassResult = { units: 0, servers: 0, keys: 0, filed: 0, kept: 0, full: false };
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
    // Filing an older version's units: a budget of its own, and only until each shard is done.
    if (!this.stopped) {
      const f = await this.fileOlder(this.batch);
      r.filed = f.filed;
      if (f.looked >= this.batch) r.full = true;
    }
    this.totals.filed += r.filed;
    this.totals.units += r.units;
    this.totals.servers += r.servers;
    this.totals.keys += r.keys;
    this.totals.passes++;
    if (r.units + r.servers + r.keys + r.filed > 0) this.log?.info('retention pass', { ...r });
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
   * Units that ended before this version filed them (no name under ended/): the owner of each
   * unit's shard reads it and, if it has ended, files it, at most `budget` reads a pass. A unit
   * still in flight is passed over: its end files it. Creating a name that exists is harmless.
   */
  private async fileOlder(budget: number): Promise<{ filed: number; looked: number }> {
    let filed = 0;
    let looked = 0;
    const owned = this.owned();
    for (const n of owned) {
      if (looked >= budget || this.stopped) break;
      if (this.filedShards.has(n)) continue;
      const marker = this.paths.endedFiled(n);
      if (await this.zk.exists(marker)) {
        this.filedShards.add(n);
        continue;
      }
      let todo = this.filing.get(n);
      if (!todo) {
        this.allUnits ??= (await this.zk.children(this.paths.workUnits)) ?? [];
        todo = this.allUnits.filter((id) => shardOf(id, this.shards) === n);
        this.filing.set(n, todo);
      }
      const take = todo.splice(0, budget - looked);
      looked += take.length;
      for (let i = 0; i < take.length; i += PARALLEL) {
        const done = await Promise.all(take.slice(i, i + PARALLEL).map((id) => this.fileOne(id)));
        filed += done.filter(Boolean).length;
      }
      if (todo.length === 0 && this.owned().includes(n)) {
        await this.zk.create(marker).catch((e: unknown) => {
          if (!isZkError(e, 'NODE_EXISTS')) throw e;
        });
        this.filedShards.add(n);
        this.filing.delete(n);
      }
    }
    if (owned.every((n) => this.filedShards.has(n))) this.allUnits = undefined;
    return { filed, looked };
  }

  private async fileOne(id: string): Promise<boolean> {
    const cur = await readRecord(this.zk, this.paths.workUnit(id as WorkUnitId), checkWorkUnit);
    if (cur.state !== 'ok' || !TERMINAL.has(cur.value.state)) return false;
    const u = cur.value;
    const name = endedUnitName(u.finished_at ?? u.updated_at, u.server_id || null, u.id);
    try {
      await this.zk.create(this.paths.endedEntry(unitFiledUnder(u, this.shards), name));
      return true;
    } catch (e) {
      if (isZkError(e, 'NODE_EXISTS')) return false;
      throw e;
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
