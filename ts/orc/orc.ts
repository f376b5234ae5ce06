// quark-orc: owns shards, keeps the cluster view, places each work unit of its shards and drives
// it to a terminal state; supervises computes (a lost compute's work is retried elsewhere). Every
// record it writes is the lifecycle's answer (ts/lifecycle); server statuses come from the VM machine.
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
  type ServerRecord,
  type TaskRecord,
  type WorkUnitRecord,
} from '../common/model.js';
import { TERMINAL, type UnitErrorCode } from '../common/vocabulary.js';
import { serverOn, unitOn } from '../lifecycle/index.js';
import { applyOps, removeWalked, type Op } from '../lifecycle/ops.js';
import { ClusterWatch } from './cluster.js';
import { claimCapacity } from './claim.js';
import { grantRecords, restoreGrant, type Granted } from './grant.js';
import { ShardOwnership } from './shards.js';
import type { ClusterView, PlacementRequest } from './placement/types.js';
import { releaseServerUsage } from '../auth/quota.js';
import { claimOps, groupLeave, type GroupRead } from '../lifecycle/groups.js';
import { GroupPlacement, groupFilterOf } from './groups.js';
import { checkServer, checkWorkUnit, corruptUnitFailed, readRecord, type Stored } from '../lifecycle/records.js';
import { serverDeletedOps, unitEndedOps } from '../lifecycle/retention.js';
import { Retention, type RetentionOptions } from './retention.js';
import { m, since } from '../common/metrics.js';

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
  /** What ended is kept how long, and how the owned shards are pruned (ts/orc/retention.ts). */
  retention?: RetentionOptions;
  /**
   * For this long after the orc starts or gains a shard, a build of that shard that fits no live
   * compute waits (PENDING) instead of failing NO_VALID_HOST while a compute that could hold it is
   * down: after a power cut every session expires, and the orcs are back before the computes have
   * re-registered (default 15 000 ms).
   */
  hostGraceMs?: number;
}

/** The default of OrcOptions.hostGraceMs. */
export const HOST_GRACE_MS = 15_000;

interface Driving {
  shard: number;
  computeId: ComputeId | null;
}

export class Orc {
  readonly id: string;
  private config!: ClusterConfig;
  private cluster!: ClusterWatch;
  private ownership!: ShardOwnership;
  private groups!: GroupPlacement;
  private readonly inboxes = new Map<number, { stop(): void }>();
  /** Work units of owned shards this orc is driving or supervising. */
  private readonly driving = new Map<WorkUnitId, Driving>();
  private readonly busy = new Set<WorkUnitId>();
  /** Serialises claims per compute: two claims from one orc would only race each other. */
  private readonly computeLocks = new Map<ComputeId, Promise<unknown>>();
  private acting = true;
  private sweeper: NodeJS.Timeout | undefined;
  /** Prunes what ended in the owned shards. */
  retention!: Retention;
  /**
   * Down computes whose supervision found nothing left to do, with what their directories looked
   * like then (see `superviseDown`): the sweep passes over them until one of those changes.
   */
  private readonly settled = new Map<ComputeId, string>();
  private startedAt = 0;
  /** When each owned shard was gained: the start of its grace for computes coming back. */
  private readonly acquiredAt = new Map<number, number>();
  /** Builds waiting for a compute that may come back, with their shard: kicked when one does. */
  private readonly awaitingHost = new Map<WorkUnitId, number>();
  readonly stats = { placed: 0, claimConflicts: 0, noValidHost: 0, retried: 0 };

  constructor(private readonly o: OrcOptions) {
    this.id = o.id ?? `orc-${randomUUID().slice(0, 8)}`;
  }

  get shards(): number[] {
    return [...(this.ownership?.owned ?? [])].sort((a, b) => a - b);
  }

  async start(): Promise<void> {
    const { zk, paths, log } = this.o;
    this.startedAt = Date.now();
    this.config = await readConfig(zk, paths);
    this.cluster = new ClusterWatch(zk, paths, this.o.view, log);
    this.cluster.on('lost', (id: ComputeId) => void this.onComputeLost(id).catch((err) => log.error('supervision failed', { compute: id, err })));
    this.cluster.on('alive', (id: ComputeId) => {
      this.settled.delete(id);
      log.info('compute alive', { compute: id });
      // A build that waited for a compute to come back is placed again at once.
      for (const [wu, n] of this.awaitingHost) this.kick(wu, n);
    });
    this.cluster.start();
    await this.cluster.ready;
    this.groups = new GroupPlacement(zk, paths, this.o.view);
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
    this.retention = new Retention(zk, paths, this.config.shards, () => (this.acting ? this.shards : []), log, this.o.retention);
    this.retention.start();
    this.sweeper = setInterval(() => void this.sweep().catch((err) => log.warn('sweep failed', { err })), this.o.sweepIntervalMs ?? 2000);
    log.info('orc ready', { orc: this.id, computes: this.cluster.computes.size });
  }

  async stop(): Promise<void> {
    this.o.log.info('orc stats', { ...this.stats });
    this.acting = false;
    clearInterval(this.sweeper);
    this.retention?.stop();
    for (const w of this.inboxes.values()) w.stop();
    this.inboxes.clear();
    await this.ownership?.stop();
    this.cluster?.stop();
  }

  private onAcquired(n: number): void {
    this.o.log.info('shard acquired', { shard: n });
    m.shardsOwned.inc();
    this.acquiredAt.set(n, Date.now());
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
          for (const [wu, shard] of this.awaitingHost) if (shard === n && !present.has(wu)) this.awaitingHost.delete(wu);
          // Only units this orc has not seen yet: one already placed is supervised from `driving`
          // (compute loss), and one that could not move is re-kicked by the sweep. Re-reading every
          // unit in the inbox on each change cost ~7 reads per boot per orc.
          for (const wu of kids ?? []) if (!this.driving.has(wu as WorkUnitId)) this.kick(wu as WorkUnitId, n);
        },
        (err) => this.o.log.error('inbox watch failed', { shard: n, err }),
      ),
    );
    // Level-triggered: what follows from the cluster's state for this shard's computes is derived
    // now, not left to a notification that may have come while another orc held the shard.
    void this.superviseShard(n).catch((err) => this.o.log.warn('supervising an acquired shard failed', { shard: n, err }));
  }

  private onReleased(n: number): void {
    this.o.log.info('shard released', { shard: n });
    m.shardsOwned.dec();
    this.acquiredAt.delete(n);
    for (const [wu, shard] of this.awaitingHost) if (shard === n) this.awaitingHost.delete(wu);
    this.inboxes.get(n)?.stop();
    this.inboxes.delete(n);
    for (const [wu, d] of this.driving) if (d.shard === n) this.driving.delete(wu);
  }

  /**
   * Watches only fire on change; a unit that could not move (claim races exhausted, an error)
   * would wait for the next change in its shard. The sweep re-kicks those, and re-derives what
   * follows from each down compute of an owned shard (`superviseDown`): nothing a notification
   * alone should have caused is left undone for longer than a sweep.
   */
  private async sweep(): Promise<void> {
    // Computes whose self/free another writer changed a while ago: read them, so the view that
    // placements score on is never more than a few seconds behind.
    await this.cluster.refreshStale(this.o.staleFreeMs ?? 5000);
    for (const n of this.shards) {
      if (!this.owns(n)) continue;
      for (const wu of (await this.o.zk.children(this.o.paths.inbox(n))) ?? []) {
        const d = this.driving.get(wu as WorkUnitId);
        // A unit on a compute that is down is kicked too: its retry or failure is derived from
        // the compute's state, whether or not this orc saw it go.
        if (!d || d.computeId === null || this.cluster.liveness(d.computeId) === 'down') this.kick(wu as WorkUnitId, n);
      }
    }
    await this.superviseShards(this.shards);
  }

  private async superviseShard(n: number): Promise<void> {
    await this.superviseShards([n]);
  }

  /** Supervises every down compute that hashes into one of `shards` (those this orc owns). */
  private async superviseShards(shards: number[]): Promise<void> {
    const mine = new Set(shards);
    for (const id of this.cluster.down()) {
      const n = shardOf(id, this.config.shards);
      // One compute's trouble (a record that cannot be read) must not stop the others'.
      if (mine.has(n) && this.owns(n)) await this.superviseDown(id).catch((err) => this.o.log.warn('supervising a down compute failed', { compute: id, err }));
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
    const cur = await readRecord(zk, paths.workUnit(wuId), checkWorkUnit);
    if (cur.state === 'absent') {
      log.warn('inbox names a missing work unit; dropping it', { wu: wuId });
      await zk.remove(paths.inboxEntry(shard, wuId)).catch(() => {});
      return;
    }
    if (cur.state === 'corrupt') return this.failCorrupt(wuId, shard, cur);
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
        if (wu.compute_id && this.cluster.liveness(wu.compute_id) === 'down') {
          await this.retryAfterLoss(wuId, wu.compute_id, shard);
        }
        return;
      case 'PENDING':
        this.driving.set(wuId, { shard, computeId: null });
        if (wu.kind === 'build') await this.schedule(wuId, cur.version, wu);
        else await this.route(wuId, cur.version, wu);
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
      // A real guest boots from an image: a build without one may go only where the test driver runs.
      exclude: r.image || this.cluster.imageRequired.size === 0 ? wu.tried : [...wu.tried, ...this.cluster.imageRequired],
    };
  }

  private async schedule(wuId: WorkUnitId, version: number, wu: WorkUnitRecord, inTurn = false): Promise<void> {
    const { log } = this.o;
    if (!wu.request) return this.fail(wuId, version, wu, { code: 'MALFORMED_WORK_UNIT', message: 'build without a request' });
    const groupId = wu.request.group;
    if (groupId && !inTurn) return this.groups.turn(groupId, () => this.schedule(wuId, version, wu, true));
    const need = flavorConsumes(wu.request.flavor, wu.request.bandwidth_mbps);
    const started = performance.now();
    let refreshed = false;
    for (let attempt = 0; attempt <= (this.o.maxClaimRetries ?? 20); attempt++) {
      if (!this.owns(wu.shard)) return;
      // A member is placed on the group as read now, under its policy (ts/orc/groups.ts).
      const group = groupId ? await this.groups.read(groupId) : null;
      if (groupId && !group) return this.fail(wuId, version, wu, { code: 'MALFORMED_WORK_UNIT', message: `server group ${groupId} does not exist` });
      const placement = group ? this.groups.place(this.requestOf(wu), group, wu.server_id) : this.o.view.place(this.requestOf(wu));
      // Before giving up for want of a host, read what other writers changed (a compute may have
      // given capacity back) and place again: once per unit, and only computes big enough to
      // hold it when empty (a flavor no compute could ever hold costs no reads).
      if (!placement.ok && !refreshed) {
        refreshed = true;
        if ((await this.cluster.refreshStale(0, need)) > 0) continue;
      }
      if (!placement.ok) {
        const coming = this.mayComeBack(wu.shard, need, this.requestOf(wu).exclude);
        if (coming.length > 0) {
          // Left PENDING: the sweep, or the compute's return, kicks it again.
          if (!this.awaitingHost.has(wuId)) log.info('no live compute fits; waiting for computes that may come back', { wu: wuId, computes: coming });
          this.awaitingHost.set(wuId, wu.shard);
          return;
        }
        this.awaitingHost.delete(wuId);
        this.stats.noValidHost++;
        m.placement.observe({ outcome: 'no_valid_host' }, since(started));
        const filters = Object.entries(placement.rejected).filter(([, n]) => n > 0);
        for (const [filter] of filters.length > 0 ? filters : [['none']]) m.noValidHost.inc({ filter });
        const removed = Object.entries(placement.rejected)
          .filter(([, n]) => n > 0)
          .map(([f, n]) => `${f} removed ${n}`)
          .join(', ');
        const realGuests = wu.request.image ? 0 : this.cluster.imageRequired.size;
        const filter = group ? groupFilterOf(group.record.policy) : null;
        const byGroup = group && filter && placement.rejected[filter] > 0 ? ` (the ${filter} filter is server group ${group.record.name} ${group.record.id}, policy ${group.record.policy})` : '';
        return this.fail(wuId, version, wu, {
          code: 'NO_VALID_HOST',
          message:
            `no compute can hold ${need.vcpus} vcpus, ${need.ram_mb} MB RAM, ${need.disk_gb} GB disk: ${placement.considered} considered${removed ? `; ${removed}` : ''}${byGroup}` +
            (realGuests > 0 ? `; the build names no image, and ${realGuests} compute(s) run real guests, which boot only from an image (excluded)` : ''),
          rejected: placement.rejected,
        });
      }
      const target = placement.computeId as ComputeId;
      const outcome = await this.withComputeLock(target, () => this.claim(wuId, version, wu, target, need, group));
      if (outcome === 'claimed') {
        this.awaitingHost.delete(wuId);
        this.stats.placed++;
        m.placement.observe({ outcome: 'placed' }, since(started));
        log.info('work unit placed', { wu: wuId, kind: wu.kind, vm: wu.server_id, compute: target, request_id: wu.request_id });
        this.driving.set(wuId, { shard: wu.shard, computeId: target });
        return;
      }
      if (outcome === 'unit-moved') return; // someone else changed the unit: the next kick re-reads it
      this.stats.claimConflicts++;
      m.claimConflicts.inc();
      log.debug('claim lost a race; re-placing', { wu: wuId, compute: target });
    }
    log.warn('claim retries exhausted; will try again on the next kick', { wu: wuId });
  }

  /**
   * Down computes that could hold `need` and may yet come back: only within the grace after this
   * orc started or gained the shard (a compute gone for longer is not waited for), and not
   * cordoned or excluded by the request.
   */
  private mayComeBack(shard: number, need: Consumes, exclude: readonly string[] = []): ComputeId[] {
    const since = Math.max(this.startedAt, this.acquiredAt.get(shard) ?? 0);
    if (Date.now() - since >= (this.o.hostGraceMs ?? HOST_GRACE_MS)) return [];
    return this.cluster.down().filter((id) => {
      const st = this.cluster.computes.get(id);
      return st !== undefined && !exclude.includes(id) && !this.cluster.cordoned(id) && this.cluster.couldHold(st, need);
    });
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
    group: GroupRead | null = null,
  ): Promise<'claimed' | 'conflict' | 'unit-moved'> {
    const { zk, paths } = this.o;
    const st = this.cluster.computes.get(target);
    if (!st) return 'conflict';
    const claimed = unitOn(wu, { type: 'claimed', compute: target, at: Date.now() });
    if (!claimed.ok) return 'unit-moved';
    const scheduled = claimed.next;
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
    task.unit = { record: scheduled, version: version + 1 };
    // The compute may write the unit and its server once its task exists: granted first (ts/orc/grant.ts).
    const granted = await grantRecords(zk, paths, target, [paths.workUnit(wuId), paths.server(wu.server_id)]);
    if (!granted) return 'conflict';
    const outcome = await claimCapacity(zk, paths, this.cluster, target, need, (txn) => {
      createEntries(txn, paths.nextTask(target, wuId), nextTaskEntries(task));
      txn.set(paths.workUnit(wuId), scheduled, version);
      // The member's placement, at the group's version: another claim of the group since is a lost race.
      if (group) applyOps(txn, claimOps(paths, group, wu.server_id, target));
    }, group ? [paths.serverGroup(group.record.id)] : []);
    if (outcome !== 'other-version') return outcome;
    await this.afterLostClaim(wuId, granted);
    return 'unit-moved';
  }

  /** The unit moved under a claim: if another compute holds it now, this claim's grant must not have taken it away. */
  private async afterLostClaim(wuId: WorkUnitId, granted: Granted): Promise<void> {
    const { zk, paths, log } = this.o;
    if (granted.records.length === 0) return; // no ACLs, or nothing was granted: nothing to give back
    const now = await readRecord(zk, paths.workUnit(wuId), checkWorkUnit);
    const holder = now.state === 'ok' ? now.value.compute_id : null;
    if (!holder || holder === granted.compute) return;
    const restored = await restoreGrant(zk, paths, granted, holder);
    if (restored > 0) log.info('a lost claim\'s grant was the last: records given back to the unit\'s compute', { wu: wuId, compute: holder, records: restored });
  }

  // ---- delete / start / stop / reboot: route to the VM's compute --------------------------------

  private async route(wuId: WorkUnitId, version: number, wu: WorkUnitRecord): Promise<void> {
    const { zk, paths } = this.o;
    const server = await readRecord(zk, paths.server(wu.server_id), checkServer);
    if (server.state === 'absent') return this.fail(wuId, version, wu, { code: 'SERVER_NOT_FOUND', message: `server ${wu.server_id} no longer exists` });
    if (server.state === 'corrupt') {
      return this.fail(wuId, version, wu, { code: 'CORRUPT_RECORD', message: `the record of server ${wu.server_id} is malformed (${server.problem}); it cannot be acted on` });
    }
    const s = server.value;
    // Routed by the compute's liveness, not the server's status: a LOST server's delete shows
    // DELETING, and a VM whose compute went unseen still shows ACTIVE. A compute that is down
    // would never take the task.
    const down = s.compute_id !== null && this.cluster.liveness(s.compute_id) === 'down';
    if (!s.compute_id || down) {
      // The records go without the compute; if it returns, its reconcile finds the server gone
      // and destroys the domain before it takes any work.
      if (wu.kind === 'delete') return this.deleteWithoutCompute(wuId, version, wu, { value: s, version: server.version });
      if (down) return this.fail(wuId, version, wu, { code: 'COMPUTE_LOST', message: `compute ${s.compute_id} of server ${s.id} is down` });
      return this.fail(wuId, version, wu, { code: 'NO_COMPUTE', message: `server ${s.id} is ${s.status} and has no compute to act on` });
    }
    const routed = unitOn(wu, { type: 'claimed', compute: s.compute_id, at: Date.now() });
    if (!routed.ok) return;
    const scheduled = routed.next;
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
    task.unit = { record: scheduled, version: version + 1 };
    // The server's record was granted to its compute by the build's claim (or by quark zk secure).
    const granted = await grantRecords(zk, paths, s.compute_id, [paths.workUnit(wuId)]);
    if (!granted) {
      return this.fail(wuId, version, wu, { code: 'NO_COMPUTE', message: `compute ${s.compute_id} has no directory` });
    }
    const txn = zk.txn();
    createEntries(txn, paths.nextTask(s.compute_id, wuId), nextTaskEntries(task));
    txn.set(paths.workUnit(wuId), scheduled, version);
    try {
      await txn.commit();
      this.driving.set(wuId, { shard: wu.shard, computeId: s.compute_id });
      this.o.log.info('work unit routed', { wu: wuId, kind: wu.kind, vm: wu.server_id, compute: s.compute_id, request_id: wu.request_id });
    } catch (e) {
      if (isZkError(e, 'BAD_VERSION') || isZkError(e, 'NODE_EXISTS')) return this.afterLostClaim(wuId, granted);
      if (isZkError(e, 'NO_NODE')) {
        return this.fail(wuId, version, wu, { code: 'NO_COMPUTE', message: `compute ${s.compute_id} has no directory` });
      }
      throw e;
    }
  }

  /** A server with no compute (a failed build) or whose compute is down is deleted by removing its records. */
  private async deleteWithoutCompute(wuId: WorkUnitId, version: number, wu: WorkUnitRecord, server: { value: ServerRecord; version: number }): Promise<void> {
    const { zk, paths } = this.o;
    const done = unitOn(wu, { type: 'deleted_without_compute', at: Date.now() });
    // Nothing ran, nothing to undo: the delete succeeded, and its server record goes.
    const gone = serverOn(server.value, { type: 'unit_succeeded', unit: wuId, kind: 'delete', compute: server.value.compute_id, from: server.value.status });
    if (!done.ok || !gone.ok) return;
    // The project's quota usage is released first (ts/auth/quota.ts); a server whose build failed holds none. So is its group membership.
    const at = Date.now();
    // Filed for retention (ts/lifecycle/retention.ts): the unit, and the server's last record.
    const filed = [...unitEndedOps(paths, this.config.shards, done.next), ...serverDeletedOps(paths, this.config.shards, server.value, at)];
    await applyOps(await releaseServerUsage(zk, paths, zk.txn(), wu.server_id), [...(await groupLeave(zk, paths, server.value)), ...filed])
      .remove(paths.server(wu.server_id), server.version)
      .set(paths.workUnit(wuId), done.next, version)
      .remove(paths.inboxEntry(wu.shard, wuId))
      .commit()
      .then(() => m.unitsSucceeded.inc({ kind: wu.kind }))
      .catch((e) => {
        if (!isZkError(e, 'BAD_VERSION') && !isZkError(e, 'NO_NODE')) throw e;
      });
  }

  /** Terminal failure decided by the orc: the unit FAILS, the server shows why, the inbox forgets it. */
  private async fail(wuId: WorkUnitId, version: number, wu: WorkUnitRecord, error: ErrorInfo & { code: UnitErrorCode }): Promise<void> {
    const failed = unitOn(wu, { type: 'failed', error, at: Date.now() });
    if (failed.ok) await this.commitFailure(version, failed.next);
  }

  /**
   * A unit whose record is malformed cannot move: it ends FAILED with CORRUPT_RECORD (keeping what
   * of it reads right), so it is neither retried forever nor left blocking its server.
   */
  private async failCorrupt(wuId: WorkUnitId, shard: number, cur: Extract<Stored<WorkUnitRecord>, { state: 'corrupt' }>): Promise<void> {
    this.o.log.error('work unit record is malformed; failing it', { wu: wuId, problem: cur.problem });
    await this.commitFailure(cur.version, corruptUnitFailed({ id: wuId, shard, raw: cur.raw, problem: cur.problem, at: Date.now() }));
  }

  /**
   * The unit's task still waiting in its compute's next_tasks, removed in the transaction that
   * ends or moves the unit: a compute that comes back must not find it and run its first step
   * (a stop would stop a VM whose record says ACTIVE). A task already taken in (active_tasks)
   * needs no such care: the compute reads the unit before resuming it.
   */
  private async queuedTask(wuId: WorkUnitId, compute: ComputeId | null): Promise<Op[]> {
    return compute ? removeWalked(await this.o.zk.walk(this.o.paths.nextTask(compute, wuId))) : [];
  }

  /**
   * Writes a unit the lifecycle failed, with its server (while the unit is its task), its inbox
   * entry and its queued task; with `fence`, only while that node still has that version.
   */
  private async commitFailure(version: number, failed: WorkUnitRecord, fence?: { path: string; version: number }): Promise<void> {
    const { zk, paths, log } = this.o;
    const { id: wuId, kind, error } = failed;
    log.warn('work unit failed', { wu: wuId, kind, code: error?.code, message: error?.message, request_id: failed.request_id });
    for (const conflicts = new ConflictRetries(`fail work unit ${wuId}`); ; conflicts.again()) {
      const txn = applyOps(zk.txn(), await this.queuedTask(wuId, failed.compute_id));
      txn.set(paths.workUnit(wuId), failed, version);
      // A corrupt unit may not say which server it acted on: then there is none to show it.
      if (failed.server_id) {
        if (kind === 'build') await releaseServerUsage(zk, paths, txn, failed.server_id); // quota usage (ts/auth/quota.ts)
        const server = await this.readServer(failed.server_id);
        if (kind === 'build') applyOps(txn, await groupLeave(zk, paths, server?.value)); // a failed build leaves its server group
        const shown = server && error ? serverOn(server.value, { type: 'unit_failed', unit: wuId, kind, error }) : null;
        if (server && shown?.ok) txn.set(paths.server(failed.server_id), shown.next, server.version);
      }
      txn.remove(paths.inboxEntry(failed.shard, wuId));
      applyOps(txn, unitEndedOps(paths, this.config.shards, failed)); // filed for retention (ts/lifecycle/retention.ts)
      if (fence) txn.check(fence.path, fence.version);
      try {
        await txn.commit();
        this.driving.delete(wuId);
        m.unitsFailed.inc({ kind, code: error?.code ?? 'UNKNOWN' });
        return;
      } catch (e) {
        if (isZkError(e, 'BAD_VERSION') && e.path === paths.server(failed.server_id)) continue;
        // The queued task changed under us (removed as an orphan): walk it again.
        if (isZkError(e, 'NO_NODE') && failed.compute_id && e.path?.startsWith(paths.nextTask(failed.compute_id, wuId))) continue;
        if (isZkError(e, 'BAD_VERSION') || isZkError(e, 'NO_NODE')) return;
        throw e;
      }
    }
  }

  /** A server record that reads right, or null (absent, or malformed: logged, and left as it is). */
  private async readServer(id: ServerId): Promise<{ value: ServerRecord; version: number } | null> {
    const r = await readRecord(this.o.zk, this.o.paths.server(id), checkServer);
    if (r.state === 'corrupt') this.o.log.error('server record is malformed; left as it is', { server: id, problem: r.problem });
    return r.state === 'ok' ? r : null;
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
      if (d.computeId === id && this.owns(d.shard)) await this.retryAfterLoss(wu, id, d.shard);
    }
    if (this.owns(shardOf(id, this.config.shards))) await this.superviseDown(id);
  }

  private async retryAfterLoss(wuId: WorkUnitId, lost: ComputeId, shard: number): Promise<void> {
    const { zk, paths, log } = this.o;
    // Only while the compute is still gone. A restarted compute claims `alive` as soon as its old
    // session expires, which is when this orc hears of the loss; back, it resumes its active tasks
    // and takes its queued ones itself, so failing or moving its unit now would undo an action
    // whose effect it may already have had (a stop done, the server still ACTIVE in its record).
    // As in markVmsLost, the commit is checked against the incarnation read before `alive` was
    // found absent: a claim landing in between fences it.
    const incarnation = await zk.exists(paths.compute(lost));
    if (await zk.exists(paths.alive(lost))) return;
    const fence = incarnation ? { path: paths.compute(lost), version: incarnation.version } : undefined;
    const cur = await readRecord(zk, paths.workUnit(wuId), checkWorkUnit);
    if (cur.state === 'absent') return;
    if (cur.state === 'corrupt') return this.failCorrupt(wuId, shard, cur);
    const wu = cur.value;
    // Retried while a build has attempts left, failed with COMPUTE_LOST otherwise; refused if the unit is no longer there.
    const t = unitOn(wu, { type: 'compute_lost', compute: lost, maxAttempts: this.config.max_attempts, at: Date.now() });
    if (!t.ok) return;
    if (t.next.state === 'FAILED') return this.commitFailure(cur.version, t.next, fence);
    this.stats.retried++;
    log.info(`${wu.kind === 'build' ? 'retrying a build' : 'routing a delete again'} from a lost compute`, { wu: wuId, lost, attempt: wu.attempts + 1 });
    const back = t.next;
    const server = await this.readServer(wu.server_id);
    // The task it leaves on the lost compute goes with it (what its claim took there is
    // recounted by that compute if it returns).
    const queued = await this.queuedTask(wuId, lost);
    const txn = applyOps(zk.txn(), queued).set(paths.workUnit(wuId), back, cur.version);
    const retried = server ? serverOn(server.value, { type: 'build_retried', unit: wuId }) : null;
    if (server && retried?.ok) txn.set(paths.server(wu.server_id), retried.next, server.version);
    if (fence) txn.check(fence.path, fence.version);
    try {
      const res = await txn.commit();
      const version = res[queued.length]!.stat!.version;
      if (back.kind === 'build') await this.schedule(wuId, version, back);
      else await this.route(wuId, version, back);
    } catch (e) {
      if (!isZkError(e, 'BAD_VERSION') && !isZkError(e, 'NO_NODE')) throw e;
    }
  }

  /**
   * What follows from a compute being down, derived from ZooKeeper as it is now (so it is the same
   * whether this orc saw the compute go, acquired its shard later, or started after it died): its
   * idle VMs are LOST, and tasks left in its directories for units that ended or moved elsewhere
   * are removed. Done by the owner of the compute's shard. A compute found with nothing left to do
   * is passed over until its directories change.
   */
  private async superviseDown(id: ComputeId): Promise<void> {
    const { zk, paths } = this.o;
    const dirs = await Promise.all([paths.managing(id), paths.nextTasks(id), paths.activeTasks(id)].map((p) => zk.exists(p)));
    const shape = dirs.map((st) => (st ? `${st.cversion}` : '-')).join('/');
    if (this.settled.get(id) === shape) return;
    const unsettled = (await this.markVmsLost(id)) + (await this.removeOrphanTasks(id));
    if (unsettled === 0 && this.cluster.liveness(id) === 'down') this.settled.set(id, shape);
  }

  /**
   * VMs on a down compute: the owner of the compute's shard marks them LOST. Returns how many it
   * had to leave for now (a unit in flight on them decides their fate first).
   */
  private async markVmsLost(id: ComputeId): Promise<number> {
    const { zk, paths, log } = this.o;
    if (!this.owns(shardOf(id, this.config.shards))) return 0;
    // Only while it is still gone: a returning compute bumps its directory's version as it claims
    // `alive`, so a mark checked against the version read before `alive` was found absent cannot
    // land after the compute came back (its reconcile reads the servers after that, and restores).
    const incarnation = await zk.exists(paths.compute(id));
    if (!incarnation || (await zk.exists(paths.alive(id)))) return 0;
    let left = 0;
    for (const vm of (await zk.children(paths.managing(id))) ?? []) {
      // A malformed server record is logged and passed over: the compute's other VMs are still marked.
      const s = await this.readServer(vm as ServerId);
      if (!s) continue;
      // Refused for a VM elsewhere, already LOST, or with a unit in flight (its outcome decides).
      const lost = serverOn(s.value, { type: 'compute_lost', compute: id });
      if (!lost.ok) {
        if (lost.code === 'SERVER_BUSY') left++;
        continue;
      }
      if (this.cluster.liveness(id) !== 'down') return left;
      try {
        await zk.txn().set(paths.server(vm as ServerId), lost.next, s.version).check(paths.compute(id), incarnation.version).commit();
        log.warn('VM lost with its compute', { vm, compute: id });
      } catch (e) {
        if (!isZkError(e, 'BAD_VERSION') && !isZkError(e, 'NO_NODE')) throw e;
        left++; // changed meanwhile (or the compute came back): judged again on the next pass
      }
    }
    return left;
  }

  /**
   * Tasks a down compute will never run: in next_tasks or active_tasks, for a unit that is gone,
   * has ended, or was placed elsewhere since. Removed, so the compute, if it ever returns, finds
   * only work that is still its own (it would drop the rest, but an action's effect would come
   * first). Tasks of units still in flight there are left to those units' orcs, which retry or
   * fail them; returns how many.
   */
  private async removeOrphanTasks(id: ComputeId): Promise<number> {
    const { zk, paths, log } = this.o;
    let left = 0;
    for (const dir of [paths.nextTasks(id), paths.activeTasks(id)]) {
      for (const wu of (await zk.children(dir)) ?? []) {
        // A malformed unit cannot run here or anywhere (its orc fails it): its task goes too.
        const unit = await readRecord(zk, paths.workUnit(wu as WorkUnitId), checkWorkUnit);
        const u = unit.state === 'ok' ? unit.value : undefined;
        if (u && !TERMINAL.has(u.state) && u.compute_id === id) {
          left++;
          continue;
        }
        if (this.cluster.liveness(id) !== 'down') return left;
        const walked = await zk.walk(`${dir}/${wu}`);
        if (walked.length === 0) continue;
        await applyOps(zk.txn(), removeWalked(walked))
          .commit()
          .then(() => log.warn('removed a task a down compute will never run', { compute: id, wu, state: u?.state ?? unit.state }))
          .catch((e) => {
            // Changed under us (the compute back, or another remover): judged again next time.
            if (!isZkError(e, 'NO_NODE') && !isZkError(e, 'NOT_EMPTY')) throw e;
            left++;
          });
      }
    }
    return left;
  }
}
