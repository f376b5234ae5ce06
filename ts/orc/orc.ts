// quark-orc: owns shards, keeps the cluster view, places each work unit of its shards and drives
// it to a terminal state; supervises computes (a lost compute's work is retried elsewhere).
import { randomUUID } from 'node:crypto';
import type { Zk } from '../zk/client.js';
import { isZkError } from '../zk/errors.js';
import { ConflictRetries } from '../zk/recipes/retry.js';
import { watchChildrenPersistent } from '../zk/recipes/watch.js';
import type { Paths } from '../zk/paths.js';
import { createEntries, nextTaskEntries } from '../zk/layout.js';
import { readConfig } from '../zk/config.js';
import type { Logger } from '../common/log.js';
import type { ComputeId, ServerId, WorkUnitId } from '../common/ids.js';
import {
  flavorConsumes,
  shardOf,
  ZERO,
  type ClusterConfig,
  type Consumes,
  type ErrorInfo,
  type ManagedRecord,
  type ServerRecord,
  type TaskRecord,
  type WorkUnitRecord,
} from '../common/model.js';
import { stepsOf } from '../actors/kinds.js';
import { ClusterWatch } from './cluster.js';
import { claimCapacity } from './claim.js';
import { ShardOwnership } from './shards.js';
import type { ClusterView, PlacementRequest } from './placement/types.js';

export interface OrcOptions {
  zk: Zk;
  paths: Paths;
  log: Logger;
  view: ClusterView;
  id?: string;
  /** How many times a lost claim race is re-placed before giving up for now. */
  maxClaimRetries?: number;
  /** How often owned inboxes are re-read for units that could not move (default 2000 ms). */
  sweepIntervalMs?: number;
  /** How long another writer's change to a compute's self/free may go unread (default 5000 ms). */
  staleFreeMs?: number;
}

interface Driving {
  shard: number;
  computeId: ComputeId | null;
}

export class Orc {
  readonly id: string;
  private config!: ClusterConfig;
  private cluster!: ClusterWatch;
  private ownership!: ShardOwnership;
  private readonly inboxes = new Map<number, { stop(): void }>();
  /** Work units of owned shards this orc is driving or supervising. */
  private readonly driving = new Map<WorkUnitId, Driving>();
  private readonly busy = new Set<WorkUnitId>();
  /** Serialises claims per compute: two claims from one orc would only race each other. */
  private readonly computeLocks = new Map<ComputeId, Promise<unknown>>();
  private acting = true;
  private sweeper: NodeJS.Timeout | undefined;
  readonly stats = { placed: 0, claimConflicts: 0, noValidHost: 0, retried: 0 };

  constructor(private readonly o: OrcOptions) {
    this.id = o.id ?? `orc-${randomUUID().slice(0, 8)}`;
  }

  get shards(): number[] {
    return [...(this.ownership?.owned ?? [])].sort((a, b) => a - b);
  }

  async start(): Promise<void> {
    const { zk, paths, log } = this.o;
    this.config = await readConfig(zk, paths);
    this.cluster = new ClusterWatch(zk, paths, this.o.view, log, this.config.overcommit);
    this.cluster.on('lost', (id: ComputeId) => void this.onComputeLost(id).catch((err) => log.error('supervision failed', { compute: id, err })));
    this.cluster.on('alive', (id: ComputeId) => log.info('compute alive', { compute: id }));
    this.cluster.start();
    await this.cluster.ready;
    this.ownership = new ShardOwnership(zk, paths, this.id, this.config.shards, log);
    this.ownership.on('acquired', (n: number) => this.onAcquired(n));
    this.ownership.on('released', (n: number) => this.onReleased(n));
    zk.on('state', (s: string) => {
      if (s === 'SUSPENDED') {
        this.acting = false;
        this.ownership.pause();
      } else if (s === 'RECONNECTED') {
        this.acting = true;
        void this.ownership.resume();
      }
    });
    await this.ownership.start();
    this.sweeper = setInterval(() => void this.sweep().catch((err) => log.warn('sweep failed', { err })), this.o.sweepIntervalMs ?? 2000);
    log.info('orc ready', { orc: this.id, computes: this.cluster.computes.size });
  }

  async stop(): Promise<void> {
    this.o.log.info('orc stats', { ...this.stats });
    this.acting = false;
    clearInterval(this.sweeper);
    for (const w of this.inboxes.values()) w.stop();
    this.inboxes.clear();
    await this.ownership?.stop();
    this.cluster?.stop();
  }

  private onAcquired(n: number): void {
    this.o.log.info('shard acquired', { shard: n });
    // A persistent recursive watch on the inbox (its entries are leaves): an entry's arrival or
    // departure costs one notification and no read (a one-shot children watch cost a getChildren
    // per notification to re-arm it).
    this.inboxes.set(
      n,
      watchChildrenPersistent(
        this.o.zk,
        this.o.paths.inbox(n),
        (kids) => {
          const present = new Set(kids ?? []);
          for (const [wu, d] of this.driving) if (d.shard === n && !present.has(wu)) this.driving.delete(wu);
          // Only units this orc has not seen yet: one already placed is supervised from `driving`
          // (compute loss), and one that could not move is re-kicked by the sweep. Re-reading every
          // unit in the inbox on each change cost ~7 reads per boot per orc.
          for (const wu of kids ?? []) if (!this.driving.has(wu as WorkUnitId)) this.kick(wu as WorkUnitId, n);
        },
        (err) => this.o.log.error('inbox watch failed', { shard: n, err }),
      ),
    );
  }

  private onReleased(n: number): void {
    this.o.log.info('shard released', { shard: n });
    this.inboxes.get(n)?.stop();
    this.inboxes.delete(n);
    for (const [wu, d] of this.driving) if (d.shard === n) this.driving.delete(wu);
  }

  /**
   * Watches only fire on change; a unit that could not move (claim races exhausted, an error)
   * would wait for the next change in its shard. The sweep re-kicks those.
   */
  private async sweep(): Promise<void> {
    // Computes whose self/free another writer changed a while ago: read them, so the view that
    // placements score on is never more than a few seconds behind.
    await this.cluster.refreshStale(this.o.staleFreeMs ?? 5000);
    for (const n of this.shards) {
      if (!this.owns(n)) continue;
      for (const wu of (await this.o.zk.children(this.o.paths.inbox(n))) ?? []) {
        const d = this.driving.get(wu as WorkUnitId);
        if (!d || d.computeId === null) this.kick(wu as WorkUnitId, n);
      }
    }
  }

  private owns(shard: number): boolean {
    return this.acting && this.ownership.owned.has(shard);
  }

  /** Drives a work unit one move forward; idempotent, so duplicate kicks are harmless. */
  private kick(wu: WorkUnitId, shard: number): void {
    if (this.busy.has(wu) || !this.owns(shard)) return;
    this.busy.add(wu);
    this.drive(wu, shard)
      .catch((err) => this.o.log.error('driving a work unit failed', { wu, err }))
      .finally(() => this.busy.delete(wu));
  }

  private async drive(wuId: WorkUnitId, shard: number): Promise<void> {
    const { zk, paths, log } = this.o;
    const cur = await zk.get<WorkUnitRecord>(paths.workUnit(wuId));
    if (!cur?.value) {
      log.warn('inbox names a missing work unit; dropping it', { wu: wuId });
      await zk.remove(paths.inboxEntry(shard, wuId)).catch(() => {});
      return;
    }
    const wu = cur.value;
    switch (wu.state) {
      case 'SUCCEEDED':
      case 'FAILED':
        // Finished but the inbox entry survived (written by an older process): tidy up.
        await zk.remove(paths.inboxEntry(shard, wuId)).catch(() => {});
        return;
      case 'SCHEDULED':
      case 'RUNNING':
        this.driving.set(wuId, { shard, computeId: wu.compute_id });
        if (wu.compute_id && this.cluster.computes.get(wu.compute_id)?.alive === false) {
          await this.retryAfterLoss(wuId, wu.compute_id);
        }
        return;
      case 'PENDING':
        this.driving.set(wuId, { shard, computeId: null });
        if (wu.kind === 'build') await this.schedule(wuId, cur.stat.version, wu);
        else await this.route(wuId, cur.stat.version, wu);
        return;
    }
  }

  // ---- build: place and claim ------------------------------------------------------------------

  private requestOf(wu: WorkUnitRecord): PlacementRequest {
    const r = wu.request!;
    return {
      id: wu.id,
      need: flavorConsumes(r.flavor, r.bandwidth_mbps),
      zone: r.zone,
      labels: r.labels,
      exclude: wu.tried,
    };
  }

  private async schedule(wuId: WorkUnitId, version: number, wu: WorkUnitRecord): Promise<void> {
    const { log } = this.o;
    if (!wu.request) return this.fail(wuId, version, wu, { code: 'MALFORMED_WORK_UNIT', message: 'build without a request' });
    const need = flavorConsumes(wu.request.flavor, wu.request.bandwidth_mbps);
    let refreshed = false;
    for (let attempt = 0; attempt <= (this.o.maxClaimRetries ?? 20); attempt++) {
      if (!this.owns(wu.shard)) return;
      const placement = this.o.view.place(this.requestOf(wu));
      // Before giving up for want of a host, read what other writers changed (a compute may have
      // given capacity back) and place again: once per unit, and only computes big enough to
      // hold it when empty (a flavor no compute could ever hold costs no reads).
      if (!placement.ok && !refreshed) {
        refreshed = true;
        if ((await this.cluster.refreshStale(0, need)) > 0) continue;
      }
      if (!placement.ok) {
        this.stats.noValidHost++;
        const removed = Object.entries(placement.rejected)
          .filter(([, n]) => n > 0)
          .map(([f, n]) => `${f} removed ${n}`)
          .join(', ');
        return this.fail(wuId, version, wu, {
          code: 'NO_VALID_HOST',
          message: `no compute can hold ${need.vcpus} vcpus, ${need.ram_mb} MB RAM, ${need.disk_gb} GB disk: ${placement.considered} considered${removed ? `; ${removed}` : ''}`,
          rejected: placement.rejected,
        });
      }
      const target = placement.computeId as ComputeId;
      const outcome = await this.withComputeLock(target, () => this.claim(wuId, version, wu, target, need));
      if (outcome === 'claimed') {
        this.stats.placed++;
        this.driving.set(wuId, { shard: wu.shard, computeId: target });
        return;
      }
      if (outcome === 'unit-moved') return; // someone else changed the unit: the next kick re-reads it
      this.stats.claimConflicts++;
      log.debug('claim lost a race; re-placing', { wu: wuId, compute: target });
    }
    log.warn('claim retries exhausted; will try again on the next kick', { wu: wuId });
  }

  private async withComputeLock<T>(id: ComputeId, fn: () => Promise<T>): Promise<T> {
    const prev = this.computeLocks.get(id) ?? Promise.resolve();
    const run = prev.then(fn, fn);
    const tail = run.catch(() => {});
    this.computeLocks.set(id, tail);
    void tail.then(() => {
      if (this.computeLocks.get(id) === tail) this.computeLocks.delete(id);
    });
    return run;
  }

  /**
   * The optimistic claim: self/free is set only if its version is the one we scored on, the task
   * lands in next_tasks and the unit turns SCHEDULED, all in one transaction.
   */
  private async claim(
    wuId: WorkUnitId,
    version: number,
    wu: WorkUnitRecord,
    target: ComputeId,
    need: Consumes,
  ): Promise<'claimed' | 'conflict' | 'unit-moved'> {
    const { zk, paths } = this.o;
    const st = this.cluster.computes.get(target);
    if (!st) return 'conflict';
    const task: TaskRecord = {
      work_unit_id: wuId,
      kind: 'build',
      server_id: wu.server_id,
      shard: wu.shard,
      consumes: need,
      name: wu.request!.name,
      attempt: wu.attempts + 1,
      birthed_on: Date.now(),
    };
    const scheduled = this.scheduled(wu, target);
    task.unit = { record: scheduled, version: version + 1 };
    const outcome = await claimCapacity(zk, paths, this.cluster, target, need, (txn) => {
      createEntries(txn, paths.nextTask(target, wuId), nextTaskEntries(task));
      txn.set(paths.workUnit(wuId), scheduled, version);
    });
    return outcome === 'other-version' ? 'unit-moved' : outcome;
  }

  private scheduled(wu: WorkUnitRecord, target: ComputeId): WorkUnitRecord {
    return {
      ...wu,
      state: 'SCHEDULED',
      compute_id: target,
      attempts: wu.attempts + 1,
      tried: wu.tried.includes(target) ? wu.tried : [...wu.tried, target],
      steps_left: [...stepsOf(wu.kind)],
      steps_completed: [],
      updated_at: Date.now(),
    };
  }

  // ---- delete / start / stop / reboot: route to the VM's compute --------------------------------

  private async route(wuId: WorkUnitId, version: number, wu: WorkUnitRecord): Promise<void> {
    const { zk, paths } = this.o;
    const server = await zk.get<ServerRecord>(paths.server(wu.server_id));
    if (!server?.value) return this.fail(wuId, version, wu, { code: 'SERVER_NOT_FOUND', message: `server ${wu.server_id} no longer exists` });
    const s = server.value;
    if (!s.compute_id || s.status === 'LOST' || (s.status === 'ERROR' && !s.compute_id)) {
      if (wu.kind === 'delete') return this.deleteWithoutCompute(wuId, version, wu, server.stat.version);
      return this.fail(wuId, version, wu, { code: 'NO_COMPUTE', message: `server ${s.id} is ${s.status} and has no compute to act on` });
    }
    const task: TaskRecord = {
      work_unit_id: wuId,
      kind: wu.kind,
      server_id: wu.server_id,
      shard: wu.shard,
      consumes: ZERO,
      name: s.name,
      attempt: wu.attempts + 1,
      birthed_on: Date.now(),
    };
    const scheduled = this.scheduled(wu, s.compute_id);
    task.unit = { record: scheduled, version: version + 1 };
    const txn = zk.txn();
    createEntries(txn, paths.nextTask(s.compute_id, wuId), nextTaskEntries(task));
    txn.set(paths.workUnit(wuId), scheduled, version);
    try {
      await txn.commit();
      this.driving.set(wuId, { shard: wu.shard, computeId: s.compute_id });
    } catch (e) {
      if (isZkError(e, 'BAD_VERSION') || isZkError(e, 'NODE_EXISTS')) return;
      if (isZkError(e, 'NO_NODE')) {
        return this.fail(wuId, version, wu, { code: 'NO_COMPUTE', message: `compute ${s.compute_id} has no directory` });
      }
      throw e;
    }
  }

  /** A server with no compute (failed build, or LOST) is deleted by removing its records. */
  private async deleteWithoutCompute(wuId: WorkUnitId, version: number, wu: WorkUnitRecord, serverVersion: number): Promise<void> {
    const { zk, paths } = this.o;
    const now = Date.now();
    await zk
      .txn()
      .remove(paths.server(wu.server_id), serverVersion)
      .set(
        paths.workUnit(wuId),
        { ...wu, state: 'SUCCEEDED', steps_left: [], steps_completed: [], updated_at: now, finished_at: now },
        version,
      )
      .remove(paths.inboxEntry(wu.shard, wuId))
      .commit()
      .catch((e) => {
        if (!isZkError(e, 'BAD_VERSION') && !isZkError(e, 'NO_NODE')) throw e;
      });
  }

  /** Terminal failure decided by the orc: the unit FAILS, the server shows why, the inbox forgets it. */
  private async fail(wuId: WorkUnitId, version: number, wu: WorkUnitRecord, error: ErrorInfo): Promise<void> {
    const { zk, paths, log } = this.o;
    log.warn('work unit failed', { wu: wuId, code: error.code, message: error.message });
    const now = Date.now();
    for (const conflicts = new ConflictRetries(`fail work unit ${wuId}`); ; conflicts.again()) {
      const txn = zk.txn();
      txn.set(paths.workUnit(wuId), { ...wu, state: 'FAILED', error, updated_at: now, finished_at: now }, version);
      const server = await zk.get<ServerRecord>(paths.server(wu.server_id));
      if (server?.value && server.value.task === wuId) {
        const status = wu.kind === 'build' || wu.kind === 'delete' ? 'ERROR' : server.value.status;
        txn.set(paths.server(wu.server_id), { ...server.value, status, task: null, last_error: error }, server.stat.version);
      }
      txn.remove(paths.inboxEntry(wu.shard, wuId));
      try {
        await txn.commit();
        this.driving.delete(wuId);
        return;
      } catch (e) {
        if (isZkError(e, 'BAD_VERSION') && e.path === paths.server(wu.server_id)) continue;
        if (isZkError(e, 'BAD_VERSION') || isZkError(e, 'NO_NODE')) return;
        throw e;
      }
    }
  }

  // ---- supervision -----------------------------------------------------------------------------

  /**
   * A compute's session expired. Our shards' work on it is retried elsewhere (builds) or failed
   * (actions on a VM that went with the host); its VMs, if the compute is in one of our shards'
   * care, become LOST.
   */
  private async onComputeLost(id: ComputeId): Promise<void> {
    const { log } = this.o;
    log.warn('compute lost', { compute: id });
    for (const [wu, d] of [...this.driving]) {
      if (d.computeId === id && this.owns(d.shard)) await this.retryAfterLoss(wu, id);
    }
    await this.markVmsLost(id);
  }

  private async retryAfterLoss(wuId: WorkUnitId, lost: ComputeId): Promise<void> {
    const { zk, paths, log } = this.o;
    const cur = await zk.get<WorkUnitRecord>(paths.workUnit(wuId));
    if (!cur?.value || cur.value.compute_id !== lost || (cur.value.state !== 'SCHEDULED' && cur.value.state !== 'RUNNING')) return;
    const wu = cur.value;
    if (wu.kind !== 'build' || wu.attempts >= this.config.max_attempts) {
      return this.fail(wuId, cur.stat.version, wu, {
        code: 'COMPUTE_LOST',
        message: `compute ${lost} was lost while running this ${wu.kind} (attempt ${wu.attempts} of ${this.config.max_attempts})`,
      });
    }
    this.stats.retried++;
    log.info('retrying a build from a lost compute', { wu: wuId, lost, attempt: wu.attempts + 1 });
    const back: WorkUnitRecord = { ...wu, state: 'PENDING', compute_id: null, updated_at: Date.now() };
    const server = await zk.get<ServerRecord>(paths.server(wu.server_id));
    const txn = zk.txn().set(paths.workUnit(wuId), back, cur.stat.version);
    if (server?.value) txn.set(paths.server(wu.server_id), { ...server.value, status: 'BUILDING', compute_id: null }, server.stat.version);
    try {
      const res = await txn.commit();
      await this.schedule(wuId, res[0]!.stat!.version, back);
    } catch (e) {
      if (!isZkError(e, 'BAD_VERSION')) throw e;
    }
  }

  /** VMs on a lost compute: the owner of the compute's shard marks them LOST. */
  private async markVmsLost(id: ComputeId): Promise<void> {
    const { zk, paths, log } = this.o;
    if (!this.owns(shardOf(id, this.config.shards))) return;
    // Only while it is still gone: a returning compute bumps its directory's version as it claims
    // `alive`, so a mark checked against the version read before `alive` was found absent cannot
    // land after the compute came back (its reconcile reads the servers after that, and restores).
    const incarnation = await zk.exists(paths.compute(id));
    if (!incarnation || (await zk.exists(paths.alive(id)))) return;
    for (const vm of (await zk.children(paths.managing(id))) ?? []) {
      const m = await zk.get<ManagedRecord>(paths.managed(id, vm as ServerId));
      const s = await zk.get<ServerRecord>(paths.server(vm as ServerId));
      if (!m?.value || !s?.value || s.value.compute_id !== id || s.value.status === 'LOST') continue;
      if (s.value.task) continue; // the unit in flight decides its fate
      await zk.txn().set(paths.server(vm as ServerId), { ...s.value, status: 'LOST' }, s.stat.version).check(paths.compute(id), incarnation.version).commit().catch(() => {});
      log.warn('VM lost with its compute', { vm, compute: id });
    }
  }
}

