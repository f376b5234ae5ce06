// The orc's view of every compute, kept current from ZooKeeper watches: capacity once, self/free
// and liveness on every change. The placement view is updated incrementally, never rebuilt; the
// placement policy follows /quark/config as it changes.
import { EventEmitter } from 'node:events';
import type { ConnectionState, Zk } from '../zk/client.js';
import { Coalescer } from '../zk/recipes/coalescer.js';
import { OwnWrites } from '../zk/recipes/own-writes.js';
import { watchChildren, watchData } from '../zk/recipes/watch.js';
import type { Paths } from '../zk/paths.js';
import type { ComputeId } from '../common/ids.js';
import {
  addConsumes,
  ZERO,
  type AliveRecord,
  type ClusterConfig,
  type ComputeCapacity,
  type Consumes,
} from '../common/model.js';
import { fits, overcommitPm } from '../common/capacity.js';
import { policySettingOf, type PolicySetting } from '../common/placement-policy.js';
import type { ClusterView, Resources } from './placement/types.js';
import type { Logger } from '../common/log.js';
import { checkCapacity, checkFree, readRecord, storedOf } from '../lifecycle/records.js';

export interface ComputeState {
  id: ComputeId;
  capacity: ComputeCapacity;
  /** self/free as last read, and its znode version: the claim transaction checks it. */
  free: Consumes;
  freeVersion: number;
  /** Alive and not cordoned: what the view's liveness column holds (placement takes only these). */
  placeable: boolean;
  /** Claims this orc has sent but not yet seen committed; the view shows free minus these. */
  reserved: Consumes;
  /**
   * When another writer's change to self/free was notified and not yet read (0: none). Such a
   * change is read when it matters (see `markStale`), not at once.
   */
  staleSince: number;
  /** How many such changes were notified (a read clears staleSince only if none came meanwhile). */
  staleChanges: number;
}

const asResources = (c: Consumes): Resources => ({
  vcpus: c.vcpus,
  ram_mb: c.ram_mb,
  disk_gb: c.disk_gb,
  bandwidth_mbps: c.bandwidth_mbps,
});

interface FreeWatch {
  handle?: { stop(): Promise<void> };
  /** This orc's claims on the compute in flight, and the notifications they explain. */
  claims: OwnWrites;
  read: Coalescer;
  stopped: boolean;
}

/**
 * Emits 'alive' (id) and 'lost' (id) when a compute's liveness node appears or goes, and
 * 'policy' (PolicySetting) when the placement policy in /quark/config changes.
 */
export class ClusterWatch extends EventEmitter {
  readonly computes = new Map<ComputeId, ComputeState>();
  /** Computes that run real guests (capacity.image_required): a build without an image skips them. */
  readonly imageRequired = new Set<ComputeId>();
  private readonly stops: Array<{ stop(): void }> = [];
  private readonly perCompute = new Map<ComputeId, Array<{ stop(): void }>>();
  private computesListed!: () => void;
  private configRead!: () => void;
  /** The computes listed once and the config read once. */
  readonly ready = Promise.all([
    new Promise<void>((r) => (this.computesListed = r)),
    new Promise<void>((r) => (this.configRead = r)),
  ]).then(() => undefined);

  constructor(
    private readonly zk: Zk,
    private readonly paths: Paths,
    readonly view: ClusterView,
    private readonly log: Logger,
  ) {
    super();
  }

  /**
   * Whether `need` fits the compute as this view holds it (free minus this orc's reservations),
   * by the rule and the overcommit the view places with.
   */
  fits(st: ComputeState, need: Consumes): boolean {
    return fits(asResources(need), asResources(addConsumes(st.free, st.reserved, -1)), asResources(st.capacity), this.view.overcommitPm);
  }

  /** Whether `need` would fit the compute if it were empty. */
  couldHold(st: ComputeState, need: Consumes): boolean {
    return fits(asResources(need), asResources(st.capacity), asResources(st.capacity), this.view.overcommitPm);
  }

  start(): void {
    this.zk.on('state', this.onState);
    this.stops.push(
      watchChildren(
        this.zk,
        this.paths.computes,
        (kids) => void this.onComputes((kids ?? []) as ComputeId[]).then(() => this.computesListed()),
        (err) => this.log.error('computes watch failed', { err }),
      ),
      watchData<ClusterConfig>(
        this.zk,
        this.paths.config,
        (v) => {
          if (v?.value) this.onConfig(v.value);
          this.configRead();
        },
        (err) => this.log.error('config watch failed', { err }),
      ),
    );
  }

  /** The placement policy follows the config; a setting that does not parse changes nothing. */
  private onConfig(cfg: ClusterConfig): void {
    let next: PolicySetting;
    try {
      next = policySettingOf(cfg);
    } catch (err) {
      this.log.error('config: placement policy ignored, keeping the current one', { err, policy: this.view.policy });
      return;
    }
    if (JSON.stringify(next) !== JSON.stringify(this.view.policy)) {
      this.view.setPolicy(next);
      this.log.info('placement policy', { policy: next.policy, by_zone: next.byZone });
      this.emit('policy', next);
    }
    // Overcommit is built into the view's columns: a change applies when the orc restarts.
    try {
      const pm = overcommitPm(cfg.overcommit);
      if (pm.some((x, r) => x !== this.view.overcommitPm[r])) {
        this.log.warn('config: overcommit differs from the one this orc places with; it applies when the orc restarts', { overcommit: cfg.overcommit });
      }
    } catch (err) {
      this.log.error('config: bad overcommit', { err });
    }
  }

  stop(): void {
    this.zk.off('state', this.onState);
    for (const s of this.stops) s.stop();
    for (const list of this.perCompute.values()) for (const s of list) s.stop();
    this.perCompute.clear();
  }

  /**
   * What this orc knows of a compute's session: 'alive' or 'down' as its liveness node last
   * read, 'unknown' for a compute not tracked (yet) or whose node was not read yet. Read from
   * the liveness watch alone, so a compute whose capacity records cannot be used still counts.
   */
  liveness(id: ComputeId): 'alive' | 'down' | 'unknown' {
    const alive = this.aliveNow.get(id);
    return alive === undefined ? 'unknown' : alive ? 'alive' : 'down';
  }

  /** The computes whose liveness node is absent now. */
  down(): ComputeId[] {
    return [...this.aliveNow].filter(([, alive]) => !alive).map(([id]) => id);
  }

  private async onComputes(ids: ComputeId[]): Promise<void> {
    const seen = new Set(ids);
    for (const [id, watches] of this.perCompute) {
      if (seen.has(id)) continue;
      for (const w of watches) w.stop();
      this.perCompute.delete(id);
      this.computes.delete(id);
      this.imageRequired.delete(id);
      this.aliveNow.delete(id);
      this.cordonedNow.delete(id);
      this.view.remove(id);
    }
    // Ready once each compute's liveness has been read: an orc that acquires a shard at start
    // then knows which of its computes are down (and marks their VMs LOST) without a sweep.
    await Promise.all(ids.filter((id) => !this.perCompute.has(id)).map((id) => this.track(id)));
  }

  /** Follows one compute; resolves once its liveness node has been read the first time. */
  private track(id: ComputeId): Promise<void> {
    const watches: Array<{ stop(): void }> = [];
    this.perCompute.set(id, watches);
    let firstRead!: () => void;
    const read = new Promise<void>((r) => (firstRead = r));
    watches.push(
      watchData<AliveRecord>(
        this.zk,
        this.paths.alive(id),
        (v) => {
          const alive = v !== null;
          const was = this.aliveNow.get(id);
          this.aliveNow.set(id, alive);
          firstRead();
          this.showPlaceable(id);
          // Told on every change of the node itself, also for a compute not in the view.
          if (was !== undefined && was !== alive) this.emit(alive ? 'alive' : 'lost', id);
        },
        (err) => {
          firstRead();
          this.log.warn('liveness watch failed', { compute: id, err });
        },
      ),
    );
    // An operator's cordon: placement passes the compute over; its VMs and its liveness are untouched.
    watches.push(
      watchData(
        this.zk,
        this.paths.cordoned(id),
        (v) => {
          const cordoned = v !== null;
          if ((this.cordonedNow.get(id) ?? false) !== cordoned) this.log.info(cordoned ? 'compute cordoned' : 'compute uncordoned', { compute: id });
          this.cordonedNow.set(id, cordoned);
          this.showPlaceable(id);
        },
        (err) => this.log.warn('cordon watch failed', { compute: id, err }),
      ),
    );
    const fw: FreeWatch = {
      claims: new OwnWrites(),
      stopped: false,
      read: new Coalescer(
        async () => {
          const v = await this.zk.getRaw(this.paths.selfFree(id));
          if (fw.stopped) return;
          void this.freeRead(id, v);
        },
        () => fw.stopped,
        (err) => this.log.warn('reading self/free failed', { compute: id, err }),
      ),
    };
    this.freeWatches.set(id, fw);
    watches.push({
      stop: () => {
        fw.stopped = true;
        if (this.freeWatches.get(id) === fw) this.freeWatches.delete(id);
        void fw.handle?.stop();
      },
    });
    void this.armFree(id, fw);
    return read;
  }

  /**
   * self/free is followed through a persistent watch: one notification per change, none
   * coalesced, and no read to re-arm it. A change this orc made itself needs no read either:
   * its claim's commit reply carries the new value and version, and ZooKeeper sends a session
   * the notification of its own write before the write's reply. So notifications that arrive
   * while this orc has a claim in flight on the compute are counted, and once the claims settle,
   * the compute is marked stale only if they outnumber the claims that committed (someone else
   * wrote it). Any other change marks it stale at once (see `markStale`).
   */
  private readonly freeWatches = new Map<ComputeId, FreeWatch>();

  private async armFree(id: ComputeId, fw: FreeWatch): Promise<void> {
    if (!fw.handle) {
      try {
        const h = await this.zk.persistentWatch(this.paths.selfFree(id), 'persistent', (ev) => this.onFreeEvent(id, fw, ev.type));
        if (fw.stopped || fw.handle) return void h.stop();
        fw.handle = h;
      } catch (err) {
        if (!fw.stopped) this.log.warn('self/free watch failed; retried on reconnect', { compute: id, err });
        return;
      }
    }
    await fw.read.run();
  }

  private onFreeEvent(id: ComputeId, fw: FreeWatch, type: string): void {
    if (fw.stopped || type === 'children') return;
    if (type === 'data' && fw.claims.absorb()) return;
    if (type === 'data') this.markStale(id, fw);
    else void fw.read.run();
  }

  /**
   * Another writer changed a compute's self/free: most often another orc's claim (free went
   * down), sometimes the compute giving capacity back (free went up). It is not read now: with O
   * orcs every claim would cost O − 1 reads. It is read before this orc claims on that compute
   * (`claimCapacity`), before this orc fails a unit for want of a host (`refreshStale`), and by
   * the orc's sweep once it has been stale for a while, so placements score on a view that is
   * at most a few seconds behind and never claim on one.
   */
  private markStale(id: ComputeId, fw: FreeWatch): void {
    const st = this.computes.get(id);
    if (!st) return void fw.read.run(); // not in the view yet: read it in
    if (st.staleSince === 0) st.staleSince = Date.now();
    st.staleChanges++;
  }

  /**
   * Reads every stale compute's self/free (those stale for at least olderThanMs, and, given
   * `need`, only those that could hold it when empty); how many.
   */
  async refreshStale(olderThanMs = 0, need?: Consumes): Promise<number> {
    const now = Date.now();
    const due = [...this.computes.values()].filter(
      (st) => st.staleSince > 0 && now - st.staleSince >= olderThanMs && (!need || this.couldHold(st, need)),
    );
    await Promise.all(due.map((st) => this.refresh(st.id)));
    return due.length;
  }

  /** Changes made while the connection was down are not notified: read every self/free again. */
  private readonly onState = (s: ConnectionState): void => {
    if (s !== 'RECONNECTED') return;
    for (const [id, fw] of this.freeWatches) void this.armFree(id, fw);
  };

  /** Liveness as last seen, also for computes whose directory is not complete yet. */
  private readonly aliveNow = new Map<ComputeId, boolean>();
  /** Cordons as last seen (absent: not cordoned). */
  private readonly cordonedNow = new Map<ComputeId, boolean>();

  /** Whether placement may pick the compute: its session is alive and no operator cordoned it. */
  private placeable(id: ComputeId): boolean {
    return (this.aliveNow.get(id) ?? false) && !(this.cordonedNow.get(id) ?? false);
  }

  /** Whether a compute is cordoned, as last seen. */
  cordoned(id: ComputeId): boolean {
    return this.cordonedNow.get(id) ?? false;
  }

  private showPlaceable(id: ComputeId): void {
    const st = this.computes.get(id);
    const placeable = this.placeable(id);
    if (st && st.placeable !== placeable) {
      st.placeable = placeable;
      this.view.setAlive(id, placeable);
    }
  }

  /**
   * A self/free read, raw: checked here, so that a compute whose records are malformed (a value
   * out of the scorer's range, bytes that do not decode) is left out of the view and logged,
   * and never throws out of a watch callback (an uncaught error would stop the orc, at every start).
   */
  private async freeRead(id: ComputeId, raw: { data: Buffer | undefined; stat: { version: number } } | null): Promise<void> {
    try {
      const v = storedOf(raw, checkFree);
      if (v.state === 'corrupt') return this.leaveOut(id, `self/free: ${v.problem}`);
      if (v.state === 'ok') await this.onFree(id, v.value, v.version);
    } catch (err) {
      this.leaveOut(id, `self/free: ${(err as Error).message}`);
    }
  }

  /** Problems already reported, by compute: a record that stays bad is logged once, not at every read. */
  private readonly reported = new Map<ComputeId, string>();

  /** A compute whose records cannot be used: out of the view (its liveness is still followed). */
  private leaveOut(id: ComputeId, problem: string): void {
    if (this.reported.get(id) !== problem) {
      this.reported.set(id, problem);
      this.log.error('compute left out of placement: its record is malformed', { compute: id, problem });
    }
    if (this.computes.delete(id)) this.view.remove(id);
  }

  private async onFree(id: ComputeId, free: Consumes, version: number): Promise<void> {
    let st = this.computes.get(id);
    if (!st) {
      const cap = await readRecord(this.zk, this.paths.selfCapacity(id), checkCapacity);
      if (cap.state === 'corrupt') return this.leaveOut(id, `self/capacity: ${cap.problem}`);
      if (cap.state === 'absent') return;
      if (this.computes.has(id)) return this.onFree(id, free, version);
      const alive = this.aliveNow.get(id) ?? false;
      const placeable = this.placeable(id);
      const capacity = cap.value;
      // The view checks what it is given (the scorer's columns are 32-bit): refused, it is left out.
      try {
        this.view.upsert({
          id,
          capacity: asResources(capacity),
          free: asResources(free),
          zone: capacity.zone,
          labels: capacity.labels,
          alive: placeable,
          groups: [],
        });
      } catch (err) {
        return this.leaveOut(id, (err as Error).message);
      }
      st = { id, capacity, free, freeVersion: version, placeable, reserved: ZERO, staleSince: 0, staleChanges: 0 };
      this.computes.set(id, st);
      if (capacity.image_required === true) this.imageRequired.add(id);
      this.reported.delete(id);
      if (alive) this.emit('alive', id);
      return;
    }
    if (version < st.freeVersion) return; // an older notification than what we committed ourselves
    try {
      this.view.setFree(id, asResources(addConsumes(free, st.reserved, -1)));
    } catch (err) {
      return this.leaveOut(id, `self/free: ${(err as Error).message}`);
    }
    st.free = free;
    st.freeVersion = version;
  }

  /** Reserve in the view before the claim transaction, so concurrent placements see it. */
  reserve(id: ComputeId, need: Consumes): void {
    const st = this.computes.get(id);
    if (!st) return;
    this.freeWatches.get(id)?.claims.begin();
    st.reserved = addConsumes(st.reserved, need);
    this.view.applyClaim(id, asResources(need));
  }

  /** The claim committed (free and version as written) or failed (undo the reservation). */
  settle(id: ComputeId, need: Consumes, committed?: { free: Consumes; version: number }): void {
    const fw = this.freeWatches.get(id);
    if (fw?.claims.end(!!committed)) this.markStale(id, fw);
    const st = this.computes.get(id);
    if (!st) return;
    st.reserved = addConsumes(st.reserved, need, -1);
    if (committed && committed.version > st.freeVersion) {
      st.free = committed.free;
      st.freeVersion = committed.version;
    }
    this.view.setFree(id, asResources(addConsumes(st.free, st.reserved, -1)));
  }

  /**
   * Re-reads a compute's free (after a lost race, or when it is stale). It stays stale until the
   * read is in: another caller meanwhile (a placement about to fail for want of a host) reads it
   * too rather than trusting the old value. A change notified while the read is out keeps it stale.
   */
  async refresh(id: ComputeId): Promise<void> {
    const changes = this.computes.get(id)?.staleChanges;
    await this.freeRead(id, await this.zk.getRaw(this.paths.selfFree(id)));
    const st = this.computes.get(id);
    if (st && st.staleChanges === changes) st.staleSince = 0;
  }
}
