// The orc's view of every compute, kept current from ZooKeeper watches: capacity once, self/free
// and liveness on every change. The placement view is updated incrementally, never rebuilt.
import { EventEmitter } from 'node:events';
import { watchChildren, watchData, type Zk } from '../zk/client.js';
import type { Paths } from '../zk/paths.js';
import type { ComputeId } from '../common/ids.js';
import { addConsumes, ZERO, type AliveRecord, type ComputeCapacity, type Consumes } from '../common/model.js';
import type { ClusterView, Resources } from './placement/types.js';
import type { Logger } from '../common/log.js';

export interface ComputeState {
  id: ComputeId;
  capacity: ComputeCapacity;
  /** self/free as last read, and its znode version: the claim transaction checks it. */
  free: Consumes;
  freeVersion: number;
  alive: boolean;
  /** Claims this orc has sent but not yet seen committed; the view shows free minus these. */
  reserved: Consumes;
}

const asResources = (c: Consumes): Resources => ({
  vcpus: c.vcpus,
  ram_mb: c.ram_mb,
  disk_gb: c.disk_gb,
  bandwidth_mbps: c.bandwidth_mbps,
});

/** Emits 'alive' (id) and 'lost' (id) when a compute's liveness node appears or goes. */
export class ClusterWatch extends EventEmitter {
  readonly computes = new Map<ComputeId, ComputeState>();
  private readonly stops: Array<{ stop(): void }> = [];
  private readonly perCompute = new Map<ComputeId, Array<{ stop(): void }>>();
  private readyResolve!: () => void;
  readonly ready = new Promise<void>((r) => (this.readyResolve = r));

  constructor(
    private readonly zk: Zk,
    private readonly paths: Paths,
    readonly view: ClusterView,
    private readonly log: Logger,
  ) {
    super();
  }

  start(): void {
    this.stops.push(
      watchChildren(
        this.zk,
        this.paths.computes,
        (kids) => void this.onComputes((kids ?? []) as ComputeId[]).then(() => this.readyResolve()),
        (err) => this.log.error('computes watch failed', { err }),
      ),
    );
  }

  stop(): void {
    for (const s of this.stops) s.stop();
    for (const list of this.perCompute.values()) for (const s of list) s.stop();
    this.perCompute.clear();
  }

  private async onComputes(ids: ComputeId[]): Promise<void> {
    const seen = new Set(ids);
    for (const [id, watches] of this.perCompute) {
      if (seen.has(id)) continue;
      for (const w of watches) w.stop();
      this.perCompute.delete(id);
      this.computes.delete(id);
      this.aliveNow.delete(id);
      this.view.remove(id);
    }
    await Promise.all(ids.filter((id) => !this.perCompute.has(id)).map((id) => this.track(id)));
  }

  private async track(id: ComputeId): Promise<void> {
    const watches: Array<{ stop(): void }> = [];
    this.perCompute.set(id, watches);
    watches.push(
      watchData<AliveRecord>(this.zk, this.paths.alive(id), (v) => {
        const alive = v !== null;
        this.aliveNow.set(id, alive);
        const st = this.computes.get(id);
        if (st && st.alive !== alive) {
          st.alive = alive;
          this.view.setAlive(id, alive);
          this.emit(alive ? 'alive' : 'lost', id);
        }
      }),
      watchData<Consumes>(this.zk, this.paths.selfFree(id), (v) => void this.onFree(id, v?.value, v?.stat.version ?? -1)),
    );
  }

  /** Liveness as last seen, also for computes whose directory is not complete yet. */
  private readonly aliveNow = new Map<ComputeId, boolean>();

  private async onFree(id: ComputeId, free: Consumes | undefined, version: number): Promise<void> {
    if (!free) return;
    let st = this.computes.get(id);
    if (!st) {
      const cap = await this.zk.get<ComputeCapacity>(this.paths.selfCapacity(id));
      if (!cap?.value) return;
      if (this.computes.has(id)) return this.onFree(id, free, version);
      const alive = this.aliveNow.get(id) ?? false;
      st = { id, capacity: cap.value, free, freeVersion: version, alive, reserved: ZERO };
      this.computes.set(id, st);
      this.view.upsert({
        id,
        capacity: asResources(cap.value),
        free: asResources(free),
        zone: cap.value.zone,
        labels: cap.value.labels,
        alive,
        groups: [],
      });
      if (alive) this.emit('alive', id);
      return;
    }
    if (version < st.freeVersion) return; // an older notification than what we committed ourselves
    st.free = free;
    st.freeVersion = version;
    this.view.setFree(id, asResources(addConsumes(free, st.reserved, -1)));
  }

  /** Reserve in the view before the claim transaction, so concurrent placements see it. */
  reserve(id: ComputeId, need: Consumes): void {
    const st = this.computes.get(id);
    if (!st) return;
    st.reserved = addConsumes(st.reserved, need);
    this.view.applyClaim(id, asResources(need));
  }

  /** The claim committed (free and version as written) or failed (undo the reservation). */
  settle(id: ComputeId, need: Consumes, committed?: { free: Consumes; version: number }): void {
    const st = this.computes.get(id);
    if (!st) return;
    st.reserved = addConsumes(st.reserved, need, -1);
    if (committed && committed.version > st.freeVersion) {
      st.free = committed.free;
      st.freeVersion = committed.version;
    }
    this.view.setFree(id, asResources(addConsumes(st.free, st.reserved, -1)));
  }

  /** Re-reads a compute's free after a lost race. */
  async refresh(id: ComputeId): Promise<void> {
    const v = await this.zk.get<Consumes>(this.paths.selfFree(id));
    if (v?.value) await this.onFree(id, v.value, v.stat.version);
  }
}
