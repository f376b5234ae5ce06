// The native cluster view: a ClusterView over the addon's NativeClusterView, whose columns live
// in Rust memory. This side keeps only what turns names into numbers: the dense index of each
// compute id (mirroring the addon's swap-remove) and caches of interned zone, label and group
// ids (append-only in the addon, so a cached id never goes stale). A placement is one call with
// one Uint32Array that carries the request in and the answer out.
import { nativeExport, type NativeAddon } from '../../native/load.js';
import type { OvercommitPm } from '../../common/capacity.js';
import { FILTERS } from './types.js';
import type {
  ClusterView,
  ComputeRecord,
  Placement,
  PlacementRequest,
  PolicySetting,
  Resources,
  ScorerOptions,
} from './types.js';
import {
  checkNeed,
  checkPolicy,
  checkRecord,
  checkResources,
  fnv1a64,
  I32_MAX,
  I32_MIN,
  INLINE_LABELS,
  packs,
  rejectionsOf,
  resolveOptions,
  ZONE_NONE,
} from './twin.js';
import type { Explained, ResolvedOptions } from './twin.js';

/** The addon's class (its type is the generated declaration, see ts/native/addon.d.ts). */
type NativeBinding = InstanceType<NativeAddon['NativeClusterView']>;

/** Words before the variable part of an encoded request (see face/placement.rs). */
const HEADER = 14;
const NO_GROUP = 0;
const FLAG_LABEL_UNKNOWN = 1;
const FLAG_PACK = 2;

const res = (r: Resources): number[] => [r.vcpus, r.ram_mb, r.disk_gb, r.bandwidth_mbps];

export class NativeClusterView implements ClusterView {
  readonly options: ResolvedOptions;
  private readonly b: NativeBinding;
  private readonly k: number;
  private readonly ids: string[] = [];
  private readonly index = new Map<string, number>();
  private readonly zones = new Map<string, number>();
  private readonly labels = new Map<string, number>();
  private readonly groups = new Map<string, number>();
  /** Request in, answer out; private and never shared, as the addon requires. */
  private io: Uint32Array;
  /** Resolved here per request (the addon takes each request's policy in its flags). */
  private setting: PolicySetting;

  constructor(opts: ScorerOptions = {}) {
    this.options = resolveOptions(opts);
    this.setting = this.options.policy;
    const Ctor = nativeExport('NativeClusterView');
    const o = this.options;
    this.b = new Ctor([...o.overcommitPm], o.resourceWeight, o.bandwidthWeight, o.labelWeight, o.alternates);
    this.k = o.alternates + 1;
    this.io = new Uint32Array(Math.max(64, this.b.answerWords));
  }

  get size(): number {
    return this.ids.length;
  }

  get overcommitPm(): OvercommitPm {
    return this.options.overcommitPm;
  }

  get policy(): PolicySetting {
    return this.setting;
  }

  setPolicy(s: PolicySetting): void {
    this.setting = checkPolicy(s);
  }

  /** Bytes per compute of the columns every placement scans. */
  get hotBytesPerNode(): number {
    return this.b.hotBytesPerNode;
  }

  /** Whether the addon runs its AVX2 kernel. */
  get simd(): boolean {
    return this.b.simd;
  }

  /** Runs the portable kernel even on an AVX2 machine (tests). */
  setSimd(on: boolean): void {
    this.b.setSimd(on);
  }

  /** The benchmark's memory floor: one native pass reading every byte of the scanned columns. */
  scanColumns(): number {
    return this.b.scanColumns();
  }

  upsert(c: ComputeRecord): void {
    checkRecord(c);
    const idx = this.b.upsert(c.id, res(c.capacity), res(c.free), c.zone, c.labels, c.alive, c.groups);
    if (idx === this.ids.length) {
      this.ids.push(c.id);
      this.index.set(c.id, idx);
    }
  }

  remove(id: string): void {
    const idx = this.index.get(id);
    if (idx === undefined) return;
    const moved = this.b.removeAt(idx);
    this.index.delete(id);
    if (moved >= 0) {
      const movedId = this.ids[moved]!;
      this.ids[idx] = movedId;
      this.index.set(movedId, idx);
    }
    this.ids.pop();
  }

  setFree(id: string, free: Resources): void {
    checkResources('free', free, I32_MIN, I32_MAX);
    const idx = this.index.get(id);
    if (idx !== undefined) this.b.setFreeAt(idx, res(free));
  }

  setAlive(id: string, alive: boolean): void {
    const idx = this.index.get(id);
    if (idx !== undefined) this.b.setAliveAt(idx, alive);
  }

  setGroups(id: string, groups: string[]): void {
    const idx = this.index.get(id);
    if (idx !== undefined) this.b.setGroupsAt(idx, groups);
  }

  applyClaim(id: string, need: Resources): void {
    checkNeed(need);
    const idx = this.index.get(id);
    if (idx !== undefined) this.b.claimAt(idx, res(need), -1);
  }

  releaseClaim(id: string, need: Resources): void {
    checkNeed(need);
    const idx = this.index.get(id);
    if (idx !== undefined) this.b.claimAt(idx, res(need), 1);
  }

  place(req: PlacementRequest): Placement {
    this.encode(req);
    const picks = this.b.place(this.io);
    return this.decode(this.io, 0, picks);
  }

  placeExplained(req: PlacementRequest): Explained {
    const placement = this.place(req);
    return { placement, considered: this.io[1 + this.k]!, rejected: rejectionsOf(this.io, 2 + this.k) };
  }

  placeBatch(reqs: PlacementRequest[]): Placement[] {
    const parts: Uint32Array[] = [];
    let words = 0;
    for (const req of reqs) {
      const w = this.encode(req);
      parts.push(this.io.slice(0, w));
      words += w;
    }
    const all = new Uint32Array(words);
    let at = 0;
    for (const p of parts) {
      all.set(p, at);
      at += p.length;
    }
    const out = this.b.placeBatch(all, reqs.length);
    const stride = 2 + this.k + FILTERS.length;
    return reqs.map((_, i) => this.decode(out, i * stride, out[i * stride]!));
  }

  /** Resolves `req` to numbers in `this.io`; returns the words used. */
  private encode(req: PlacementRequest): number {
    checkNeed(req.need);
    const extra: number[] = [];
    let w0 = 0;
    let w1 = 0;
    let flags = packs(this.setting, req) ? FLAG_PACK : 0;
    for (const l of req.labels ?? []) {
      const id = this.cached(this.labels, l, (n) => this.b.labelId(n));
      if (id < 0) flags |= FLAG_LABEL_UNKNOWN;
      else if (id < 32) w0 |= 1 << id;
      else if (id < INLINE_LABELS) w1 |= 1 << (id - 32);
      else extra.push(id);
    }
    const excluded: number[] = [];
    for (const e of req.exclude ?? []) {
      const idx = this.index.get(e);
      if (idx !== undefined) excluded.push(idx);
    }
    const words = HEADER + extra.length + excluded.length;
    if (this.io.length < words) this.io = new Uint32Array(words * 2);
    const io = this.io;
    io[0] = req.need.vcpus;
    io[1] = req.need.ram_mb;
    io[2] = req.need.disk_gb;
    io[3] = req.need.bandwidth_mbps;
    if (req.zone === undefined) io[4] = 0;
    else {
      const z = this.cached(this.zones, req.zone, (n) => this.b.zoneId(n));
      io[4] = z < 0 ? ZONE_NONE : z;
    }
    io[5] = w0;
    io[6] = w1;
    io[7] = flags;
    io[8] = this.groupOf(req.affinity);
    io[9] = this.groupOf(req.antiAffinity);
    const seed = fnv1a64(req.id);
    io[10] = seed.hi;
    io[11] = seed.lo;
    io[12] = extra.length;
    io[13] = excluded.length;
    let at = HEADER;
    for (const x of extra) io[at++] = x;
    for (const x of excluded) io[at++] = x;
    return words;
  }

  private groupOf(name: string | undefined): number {
    if (name === undefined) return NO_GROUP;
    const g = this.cached(this.groups, name, (n) => this.b.groupId(n));
    return g < 0 ? NO_GROUP : g;
  }

  /** Interned ids never change once given, so known names are cached; unknown ones are asked anew. */
  private cached(cache: Map<string, number>, name: string, ask: (n: string) => number): number {
    let id = cache.get(name);
    if (id === undefined) {
      id = ask(name);
      if (id >= 0) cache.set(name, id);
    }
    return id;
  }

  private decode(buf: Uint32Array, at: number, picks: number): Placement {
    if (picks === 0) {
      return { ok: false, considered: buf[at + 1 + this.k]!, rejected: rejectionsOf(buf, at + 2 + this.k) };
    }
    const alternates: string[] = [];
    for (let p = 1; p < picks; p++) alternates.push(this.ids[buf[at + 1 + p]!]!);
    return { ok: true, computeId: this.ids[buf[at + 1]!]!, alternates };
  }
}
