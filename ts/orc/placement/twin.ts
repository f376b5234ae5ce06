// The TypeScript twin of the native placement scorer (crates/quark-native/src/placement): the
// reference for tests and the fallback where the addon cannot load. Same semantics, same
// arithmetic, so both pick the same compute and count the same rejections.
//
// Semantics (word for word the doc comment of crates/quark-native/src/placement/mod.rs):
// - Resources are integers in contract order vcpus, ram_mb, disk_gb, bandwidth_mbps (r = 0..3).
//   Capacities lie in [0, 2^31-1], free values in [-2^31, 2^31-1], needs in [0, 2^30].
//   Overcommit ratios become integer per-mille pm[r] = round(ratio * 1000) (1000 = none).
// - Per compute: avail[r] = floor((free[r]*1000 + capacity[r]*(pm[r]-1000)) / 1000), clamped
//   to [-2^30, 2^31-1]; inv[r] = f32(1000 / (capacity[r] * pm[r])) (0 if capacity is 0).
//   A claim adds -need to free (clamped to ±2^40) and recomputes avail.
// - Filters, in FILTERS order; a rejected compute counts under the first that rejects it:
//   alive; excluded (id in req.exclude); zone (req.zone unset or equal); labels (all present);
//   affinity (unset, or no alive compute hosts the group, or this one does); anti_affinity
//   (unset, or this compute does not host the group); fits (need[r] <= avail[r] for every r,
//   exactly need <= free + capacity*(ratio-1) in integers).
// - Score in f32, each operation rounded as written (Math.fround here, f32 ops in Rust):
//   f[r] = f32(avail[r] - need[r]) * inv[r], the fraction of the overcommitted capacity left
//   after the placement, in [0, 1] for a feasible pick: that division is the one normalisation.
//   The request's policy (its zone's override, else the view's setting) picks the score:
//   spread: score = wr * ((f[0] + f[1]) + f[2]) + wb * f[3], wr = f32(resourceWeight / 3),
//   wb = f32(bandwidthWeight); pack: score = -(m + wl * f32(labels)), m the largest
//   f[r] * a[r] (and 0) with a[r] = 1 if need[r] > 0 else 0, labels the compute's count of
//   distinct labels (at most 255), wl = f32(labelWeight).
//   Defaults: spread, weights 1, 0.5 and 1, 3 alternates.
// - Ranking: higher score, then higher tie key mix64(fnv1a64(request id) ^ fnv1a64(compute
//   id)), then (64-bit hash collision) the smaller id in code point order. Best plus the next
//   `alternates`. placeBatch places in order, applying each success's claim before the next.
// - Updates naming an unknown compute are ignored (a watch may report a compute already gone);
//   numbers out of range throw a RangeError.
//
// Speed: columns in typed arrays, one branchy pass per request, no per-compute objects on the
// scoring path; top k kept in small typed arrays.
import { availOf, I32_MAX, overcommitPm, RES_KEYS, type OvercommitPm } from '../../common/capacity.js';
import {
  DEFAULT_POLICY_SETTING,
  parsePlacementPolicy,
  policyFor,
  policySettingOf,
  type PlacementPolicy,
  type PolicySetting,
} from '../../common/placement-policy.js';
import { FILTERS } from './types.js';
import type {
  ClusterView,
  ComputeRecord,
  FilterName,
  Placement,
  PlacementRequest,
  Resources,
  ScorerOptions,
} from './types.js';

export { availOf, AVAIL_MIN, I32_MAX, OVERCOMMIT_PM_MAX, RES_KEYS } from '../../common/capacity.js';
export const N_RES = 4;
export const I32_MIN = -(2 ** 31);
export const NEED_MAX = 2 ** 30;
export const FREE_LIMIT = 2 ** 40;
export const ALTERNATES_MAX = 16;
/** A compute's label count is kept in 8 bits (as in the native meta word). */
export const LABEL_COUNT_MAX = 255;
/** Request zone id that no compute has (an unknown name). */
export const ZONE_NONE = 0x10000;
export const ZONES_MAX = 0xffff;
/** Label ids below this are the two inline 32-bit words. */
export const INLINE_LABELS = 64;

/** Scorer options in the integer / f32 form both implementations compute with. */
export interface ResolvedOptions {
  overcommitPm: OvercommitPm;
  /** The policy setting the view starts with (`setPolicy` replaces it). */
  policy: PolicySetting;
  resourceWeight: number;
  bandwidthWeight: number;
  labelWeight: number;
  alternates: number;
  /** f32(resourceWeight / 3) */
  wResource: number;
  /** f32(bandwidthWeight) */
  wBandwidth: number;
  /** f32(labelWeight) */
  wLabels: number;
}

export function resolveOptions(o: ScorerOptions = {}): ResolvedOptions {
  const strategy = parsePlacementPolicy(o.weights?.strategy ?? 'spread', 'weights.strategy');
  const weight = (name: string, w: number): number => {
    if (!Number.isFinite(w) || w < 0) throw new RangeError(`weights.${name} must be finite and >= 0, got ${w}`);
    return w;
  };
  const resourceWeight = weight('resource', o.weights?.resource ?? 1);
  const bandwidthWeight = weight('bandwidth', o.weights?.bandwidth ?? 0.5);
  const labelWeight = weight('labels', o.weights?.labels ?? 1);
  const alternates = o.alternates ?? 3;
  if (!Number.isInteger(alternates) || alternates < 0 || alternates > ALTERNATES_MAX) {
    throw new RangeError(`alternates must be an integer from 0 to ${ALTERNATES_MAX}, got ${alternates}`);
  }
  return {
    overcommitPm: overcommitPm(o.overcommit),
    policy: o.policy ? checkPolicy(o.policy) : { policy: strategy, byZone: {} },
    resourceWeight,
    bandwidthWeight,
    labelWeight,
    alternates,
    wResource: Math.fround(resourceWeight / 3),
    wBandwidth: Math.fround(bandwidthWeight),
    wLabels: Math.fround(labelWeight),
  };
}

/** A policy setting checked and copied (the caller may change its object afterwards). */
export function checkPolicy(s: PolicySetting): PolicySetting {
  return policySettingOf({ placement_policy: s?.policy, placement_policy_by_zone: s?.byZone });
}

/** Whether `req` packs under setting `s` (see ts/common/placement-policy.ts). */
export function packs(s: PolicySetting, req: PlacementRequest): boolean {
  return policyFor(s, req.zone) === 'pack';
}

export type { PlacementPolicy };
export { DEFAULT_POLICY_SETTING };

// ---- validation, shared with native.ts so that both throw the same errors ----

export function checkInt(field: string, v: unknown, min: number, max: number): number {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > max) {
    throw new RangeError(`${field} must be an integer in [${min}, ${max}], got ${String(v)}`);
  }
  return v;
}

export function checkResources(field: string, r: Resources, min: number, max: number): void {
  if (typeof r !== 'object' || r === null) throw new RangeError(`${field} must be an object of resources`);
  for (const k of RES_KEYS) {
    const v = r[k];
    // The field name is only built when it is needed for the message.
    if (!(typeof v === 'number' && Number.isInteger(v) && v >= min && v <= max)) checkInt(`${field}.${k}`, v, min, max);
  }
}

function checkStrings(field: string, xs: unknown): string[] {
  if (!Array.isArray(xs) || xs.some((x) => typeof x !== 'string')) {
    throw new RangeError(`${field} must be an array of strings`);
  }
  return xs as string[];
}

export function checkRecord(c: ComputeRecord): void {
  if (typeof c?.id !== 'string' || c.id === '') throw new RangeError('compute id must be a non-empty string');
  checkResources('capacity', c.capacity, 0, I32_MAX);
  checkResources('free', c.free, I32_MIN, I32_MAX);
  if (typeof c.zone !== 'string') throw new RangeError('zone must be a string');
  checkStrings('labels', c.labels);
  checkStrings('groups', c.groups);
  if (typeof c.alive !== 'boolean') throw new RangeError('alive must be a boolean');
}

export function checkNeed(need: Resources): void {
  checkResources('need', need, 0, NEED_MAX);
}

// ---- the scores' arithmetic (headroom and fits are ts/common/capacity.ts) ----

export function invOf(cap: number, pm: number): number {
  return cap === 0 ? 0 : Math.fround(1000 / (cap * pm));
}

// ---- hashes: FNV-1a 64 and the splitmix64 finaliser, on 32-bit halves ----

/** A 64-bit value as two unsigned 32-bit halves. */
export interface U64 {
  hi: number;
  lo: number;
}

/** FNV-1a 64 over the UTF-8 bytes of `s` (lone surrogates as U+FFFD, as Rust receives them). */
export function fnv1a64(s: string): U64 {
  let hi = 0xcbf29ce4;
  let lo = 0x84222325;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c < 0x80) {
      // h ^= byte; h *= 0x100000001b3, i.e. h * 0x1b3 + (h << 40), mod 2^64
      lo = (lo ^ c) >>> 0;
      const loMul = lo * 0x1b3;
      hi = (Math.imul(hi, 0x1b3) + Math.floor(loMul / 4294967296) + (lo << 8)) >>> 0;
      lo = loMul >>> 0;
      continue;
    }
    let cp = c;
    if (c >= 0xd800 && c <= 0xdbff && i + 1 < s.length) {
      const d = s.charCodeAt(i + 1);
      if (d >= 0xdc00 && d <= 0xdfff) {
        cp = 0x10000 + ((c - 0xd800) << 10) + (d - 0xdc00);
        i++;
      }
    }
    if (cp >= 0xd800 && cp <= 0xdfff) cp = 0xfffd;
    const n = utf8(cp);
    for (let b = 0; b < n; b++) {
      lo = (lo ^ utf8Bytes[b]!) >>> 0;
      const loMul = lo * 0x1b3;
      hi = (Math.imul(hi, 0x1b3) + Math.floor(loMul / 4294967296) + (lo << 8)) >>> 0;
      lo = loMul >>> 0;
    }
  }
  return { hi, lo };
}

const utf8Bytes = new Uint8Array(4);
/** Encodes one code point (>= 0x80) into utf8Bytes; returns its length. */
function utf8(cp: number): number {
  if (cp < 0x800) {
    utf8Bytes[0] = 0xc0 | (cp >>> 6);
    utf8Bytes[1] = 0x80 | (cp & 0x3f);
    return 2;
  }
  if (cp < 0x10000) {
    utf8Bytes[0] = 0xe0 | (cp >>> 12);
    utf8Bytes[1] = 0x80 | ((cp >>> 6) & 0x3f);
    utf8Bytes[2] = 0x80 | (cp & 0x3f);
    return 3;
  }
  utf8Bytes[0] = 0xf0 | (cp >>> 18);
  utf8Bytes[1] = 0x80 | ((cp >>> 12) & 0x3f);
  utf8Bytes[2] = 0x80 | ((cp >>> 6) & 0x3f);
  utf8Bytes[3] = 0x80 | (cp & 0x3f);
  return 4;
}

let mulHi = 0;
let mulLo = 0;
/** (ah:al) * (bh:bl) mod 2^64 into mulHi:mulLo, with 16-bit limbs so doubles stay exact. */
function mul64(ah: number, al: number, bh: number, bl: number): void {
  const a0 = al & 0xffff;
  const a1 = al >>> 16;
  const b0 = bl & 0xffff;
  const b1 = bl >>> 16;
  let t = a0 * b0;
  const w0 = t & 0xffff;
  t = a1 * b0 + (t >>> 16);
  const w2 = Math.floor(t / 65536);
  t = a0 * b1 + (t & 0xffff);
  mulLo = (((t & 0xffff) * 65536) + w0) >>> 0;
  mulHi = (a1 * b1 + w2 + Math.floor(t / 65536) + Math.imul(ah, bl) + Math.imul(al, bh)) >>> 0;
}

/** splitmix64's finaliser on (hi, lo). */
export function mix64(hi: number, lo: number): U64 {
  // z ^= z >> 30
  lo = (lo ^ ((lo >>> 30) | (hi << 2))) >>> 0;
  hi = (hi ^ (hi >>> 30)) >>> 0;
  mul64(hi, lo, 0xbf58476d, 0x1ce4e5b9);
  hi = mulHi;
  lo = mulLo;
  // z ^= z >> 27
  lo = (lo ^ ((lo >>> 27) | (hi << 5))) >>> 0;
  hi = (hi ^ (hi >>> 27)) >>> 0;
  mul64(hi, lo, 0x94d049bb, 0x133111eb);
  hi = mulHi;
  lo = mulLo;
  // z ^ (z >> 31)
  return { hi: (hi ^ (hi >>> 31)) >>> 0, lo: (lo ^ ((lo >>> 31) | (hi << 1))) >>> 0 };
}

/** Code point order (what Rust's byte-wise UTF-8 order is), for the 64-bit collision tie. */
export function compareCodePoints(a: string, b: string): number {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) {
    const x = a.codePointAt(i)!;
    const y = b.codePointAt(i)!;
    if (x !== y) return x < y ? -1 : 1;
    if (x > 0xffff) i++;
  }
  return a.length - b.length;
}

export type RejectionCounts = Record<FilterName, number>;

/** A placement with the rejection counts also on success (for tests and the benchmark). */
export interface Explained {
  placement: Placement;
  considered: number;
  rejected: RejectionCounts;
}

export function rejectionsOf(counts: ArrayLike<number>, at = 0): RejectionCounts {
  const r = {} as RejectionCounts;
  for (let f = 0; f < FILTERS.length; f++) r[FILTERS[f]!] = counts[at + f]!;
  return r;
}

const EXCLUDED = 1;
const AFFINE = 2;
const ANTI_AFFINE = 4;
const NO_GROUPS: readonly number[] = Object.freeze([]);

export class TwinClusterView implements ClusterView {
  readonly options: ResolvedOptions;
  private n = 0;
  private cap = 0;
  // Hot columns.
  private a0: Int32Array = new Int32Array(0);
  private a1: Int32Array = new Int32Array(0);
  private a2: Int32Array = new Int32Array(0);
  private a3: Int32Array = new Int32Array(0);
  private i0: Float32Array = new Float32Array(0);
  private i1: Float32Array = new Float32Array(0);
  private i2: Float32Array = new Float32Array(0);
  private i3: Float32Array = new Float32Array(0);
  private zone: Int32Array = new Int32Array(0);
  private alive: Uint8Array = new Uint8Array(0);
  /** Transient per-request marks: excluded, affine, anti-affine. */
  private mark: Uint8Array = new Uint8Array(0);
  /** One column per 32 label ids. */
  private labelWords: Int32Array[] = [];
  /** Distinct labels per compute (at most LABEL_COUNT_MAX): what the pack score reads. */
  private labelCount: Uint8Array = new Uint8Array(0);
  private idHi: Uint32Array = new Uint32Array(0);
  private idLo: Uint32Array = new Uint32Array(0);
  // Cold data.
  private capacity: Int32Array[] = [];
  private free: Float64Array[] = [];
  private ids: string[] = [];
  private index = new Map<string, number>();
  private nodeGroups: (readonly number[])[] = [];
  private members: number[][] = [[]];
  private zones = new Map<string, number>();
  private labels = new Map<string, number>();
  private groups = new Map<string, number>();
  // Top k.
  private readonly k: number;
  private readonly tScore: Float64Array;
  private readonly tHi: Uint32Array;
  private readonly tLo: Uint32Array;
  private readonly tIdx: Int32Array;
  private setting: PolicySetting;

  constructor(opts: ScorerOptions = {}) {
    this.options = resolveOptions(opts);
    this.setting = this.options.policy;
    this.k = this.options.alternates + 1;
    this.tScore = new Float64Array(this.k);
    this.tHi = new Uint32Array(this.k);
    this.tLo = new Uint32Array(this.k);
    this.tIdx = new Int32Array(this.k);
    this.grow(16);
  }

  get size(): number {
    return this.n;
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

  /** Bytes per compute of the columns a placement scans (same layout idea as the native one). */
  get hotBytesPerNode(): number {
    return 4 * 4 + 4 * 4 + 4 + 1 + 1 + 1 + 4 * Math.max(2, this.labelWords.length);
  }

  private grow(min: number): void {
    if (min <= this.cap) return;
    const cap = Math.max(min, this.cap * 2);
    const g32 = (a: Int32Array): Int32Array => {
      const b = new Int32Array(cap);
      b.set(a);
      return b;
    };
    const gf = (a: Float32Array): Float32Array => {
      const b = new Float32Array(cap);
      b.set(a);
      return b;
    };
    const gu = (a: Uint32Array): Uint32Array => {
      const b = new Uint32Array(cap);
      b.set(a);
      return b;
    };
    const g8 = (a: Uint8Array): Uint8Array => {
      const b = new Uint8Array(cap);
      b.set(a);
      return b;
    };
    const g64 = (a: Float64Array): Float64Array => {
      const b = new Float64Array(cap);
      b.set(a);
      return b;
    };
    this.a0 = g32(this.a0);
    this.a1 = g32(this.a1);
    this.a2 = g32(this.a2);
    this.a3 = g32(this.a3);
    this.i0 = gf(this.i0);
    this.i1 = gf(this.i1);
    this.i2 = gf(this.i2);
    this.i3 = gf(this.i3);
    this.zone = g32(this.zone);
    this.alive = g8(this.alive);
    this.mark = g8(this.mark);
    this.labelCount = g8(this.labelCount);
    this.labelWords = this.labelWords.map(g32);
    this.idHi = gu(this.idHi);
    this.idLo = gu(this.idLo);
    this.capacity = RES_KEYS.map((_, r) => g32(this.capacity[r] ?? new Int32Array(0)));
    this.free = RES_KEYS.map((_, r) => g64(this.free[r] ?? new Float64Array(0)));
    this.cap = cap;
  }

  private avail(r: number): Int32Array {
    return r === 0 ? this.a0 : r === 1 ? this.a1 : r === 2 ? this.a2 : this.a3;
  }

  private inv(r: number): Float32Array {
    return r === 0 ? this.i0 : r === 1 ? this.i1 : r === 2 ? this.i2 : this.i3;
  }

  private refresh(i: number): void {
    const pm = this.options.overcommitPm;
    for (let r = 0; r < N_RES; r++) {
      this.avail(r)[i] = availOf(this.free[r]![i]!, this.capacity[r]![i]!, pm[r]!);
      this.inv(r)[i] = invOf(this.capacity[r]![i]!, pm[r]!);
    }
  }

  private internGroups(names: string[]): readonly number[] {
    if (names.length === 0) return NO_GROUPS;
    const ids = new Set<number>();
    for (const g of names) {
      let id = this.groups.get(g);
      if (id === undefined) {
        id = this.groups.size + 1;
        this.groups.set(g, id);
        this.members.push([]);
      }
      ids.add(id);
    }
    return [...ids].sort((x, y) => x - y);
  }

  private replaceGroups(i: number, next: readonly number[]): void {
    for (const g of this.nodeGroups[i]!) {
      const m = this.members[g]!;
      const p = m.indexOf(i);
      if (p >= 0) {
        m[p] = m[m.length - 1]!;
        m.pop();
      }
    }
    for (const g of next) this.members[g]!.push(i);
    this.nodeGroups[i] = next;
  }

  upsert(c: ComputeRecord): void {
    checkRecord(c);
    let zone = this.zones.get(c.zone);
    if (zone === undefined) {
      if (this.zones.size + 1 > ZONES_MAX) throw new RangeError(`too many zones: at most ${ZONES_MAX}`);
      zone = this.zones.size + 1;
      this.zones.set(c.zone, zone);
    }
    const labelIds = new Set<number>();
    for (const l of c.labels) {
      let id = this.labels.get(l);
      if (id === undefined) {
        id = this.labels.size;
        this.labels.set(l, id);
      }
      labelIds.add(id);
    }
    const groups = this.internGroups(c.groups);
    let i = this.index.get(c.id);
    if (i === undefined) {
      i = this.n++;
      this.grow(this.n);
      this.ids.push(c.id);
      this.index.set(c.id, i);
      const h = fnv1a64(c.id);
      this.idHi[i] = h.hi;
      this.idLo[i] = h.lo;
      this.nodeGroups.push(NO_GROUPS);
    }
    for (let r = 0; r < N_RES; r++) {
      this.capacity[r]![i] = c.capacity[RES_KEYS[r]!];
      this.free[r]![i] = c.free[RES_KEYS[r]!];
    }
    this.refresh(i);
    for (const w of this.labelWords) w[i] = 0;
    for (const id of labelIds) {
      const w = id >>> 5;
      while (this.labelWords.length <= w) this.labelWords.push(new Int32Array(this.cap));
      this.labelWords[w]![i]! |= 1 << (id & 31);
    }
    this.labelCount[i] = Math.min(labelIds.size, LABEL_COUNT_MAX);
    this.zone[i] = zone;
    this.alive[i] = c.alive ? 1 : 0;
    this.replaceGroups(i, groups);
  }

  remove(id: string): void {
    const i = this.index.get(id);
    if (i === undefined) return;
    const last = this.n - 1;
    this.replaceGroups(i, NO_GROUPS);
    if (i !== last) {
      for (const g of this.nodeGroups[last]!) {
        const m = this.members[g]!;
        m[m.indexOf(last)] = i;
      }
      const cols: { [k: number]: number }[] = [
        this.a0, this.a1, this.a2, this.a3, this.i0, this.i1, this.i2, this.i3,
        this.zone, this.alive, this.mark, this.labelCount, this.idHi, this.idLo, ...this.labelWords, ...this.capacity,
        ...this.free,
      ];
      for (const col of cols) col[i] = col[last]!;
      this.ids[i] = this.ids[last]!;
      this.index.set(this.ids[i]!, i);
      this.nodeGroups[i] = this.nodeGroups[last]!;
    }
    this.ids.pop();
    this.nodeGroups.pop();
    this.index.delete(id);
    this.n = last;
  }

  setFree(id: string, free: Resources): void {
    checkResources('free', free, I32_MIN, I32_MAX);
    const i = this.index.get(id);
    if (i === undefined) return;
    for (let r = 0; r < N_RES; r++) this.free[r]![i] = free[RES_KEYS[r]!];
    this.refresh(i);
  }

  setAlive(id: string, alive: boolean): void {
    const i = this.index.get(id);
    if (i !== undefined) this.alive[i] = alive ? 1 : 0;
  }

  setGroups(id: string, groups: string[]): void {
    checkStrings('groups', groups);
    const i = this.index.get(id);
    if (i !== undefined) this.replaceGroups(i, this.internGroups(groups));
  }

  applyClaim(id: string, need: Resources): void {
    this.claim(id, need, -1);
  }

  releaseClaim(id: string, need: Resources): void {
    this.claim(id, need, 1);
  }

  private claim(id: string, need: Resources, sign: number): void {
    checkNeed(need);
    const i = this.index.get(id);
    if (i !== undefined) this.claimAt(i, need, sign);
  }

  private claimAt(i: number, need: Resources, sign: number): void {
    for (let r = 0; r < N_RES; r++) {
      const f = this.free[r]![i]! + sign * need[RES_KEYS[r]!];
      this.free[r]![i] = f < -FREE_LIMIT ? -FREE_LIMIT : f > FREE_LIMIT ? FREE_LIMIT : f;
    }
    this.refresh(i);
  }

  place(req: PlacementRequest): Placement {
    return this.placeExplained(req).placement;
  }

  placeBatch(reqs: PlacementRequest[]): Placement[] {
    return reqs.map((req) => {
      const { placement } = this.placeExplained(req);
      if (placement.ok) this.claimAt(this.index.get(placement.computeId)!, req.need, -1);
      return placement;
    });
  }

  placeExplained(req: PlacementRequest): Explained {
    checkNeed(req.need);
    const n = this.n;
    const k = this.k;
    const n0 = req.need.vcpus;
    const n1 = req.need.ram_mb;
    const n2 = req.need.disk_gb;
    const n3 = req.need.bandwidth_mbps;
    const zoneActive = req.zone !== undefined;
    const zoneWant = zoneActive ? (this.zones.get(req.zone!) ?? ZONE_NONE) : 0;
    // Required labels as (word, mask) pairs; an unknown label can never match.
    let labelsImpossible = false;
    const reqWords: number[] = [];
    const reqMasks: number[] = [];
    for (const l of req.labels ?? []) {
      const id = this.labels.get(l);
      if (id === undefined) {
        labelsImpossible = true;
        continue;
      }
      const w = id >>> 5;
      const p = reqWords.indexOf(w);
      if (p >= 0) reqMasks[p] = reqMasks[p]! | (1 << (id & 31));
      else {
        reqWords.push(w);
        reqMasks.push(1 << (id & 31));
      }
    }
    const labelsActive = labelsImpossible || reqWords.length > 0;
    const mark = this.mark;
    const alive = this.alive;
    const exclude: number[] = [];
    for (const e of req.exclude ?? []) {
      const i = this.index.get(e);
      if (i !== undefined) {
        mark[i]! |= EXCLUDED;
        exclude.push(i);
      }
    }
    const affinity = req.affinity === undefined ? NO_GROUPS : this.groupMembers(req.affinity);
    const anti = req.antiAffinity === undefined ? NO_GROUPS : this.groupMembers(req.antiAffinity);
    let affinityActive = false;
    for (const i of affinity) {
      mark[i]! |= AFFINE;
      if (alive[i] === 1) affinityActive = true;
    }
    for (const i of anti) mark[i]! |= ANTI_AFFINE;

    const { a0, a1, a2, a3, i0, i1, i2, i3, zone, labelWords, labelCount, tScore, tIdx } = this;
    const wr = this.options.wResource;
    const wb = this.options.wBandwidth;
    const wl = this.options.wLabels;
    const pack = packs(this.setting, req);
    // Pack counts only the resources the request asks for.
    const q0 = n0 > 0 ? 1 : 0;
    const q1 = n1 > 0 ? 1 : 0;
    const q2 = n2 > 0 ? 1 : 0;
    const q3 = n3 > 0 ? 1 : 0;
    const fr = Math.fround;
    const seed = fnv1a64(req.id);
    let rAlive = 0;
    let rExcluded = 0;
    let rZone = 0;
    let rLabels = 0;
    let rAffinity = 0;
    let rAnti = 0;
    let rFits = 0;
    let tLen = 0;
    for (let i = 0; i < n; i++) {
      if (alive[i] === 0) {
        rAlive++;
        continue;
      }
      const m = mark[i]!;
      if ((m & EXCLUDED) !== 0) {
        rExcluded++;
        continue;
      }
      if (zoneActive && zone[i] !== zoneWant) {
        rZone++;
        continue;
      }
      if (labelsActive) {
        let ok = !labelsImpossible;
        for (let w = 0; ok && w < reqWords.length; w++) {
          const col = labelWords[reqWords[w]!];
          const mask = reqMasks[w]!;
          ok = col !== undefined && (col[i]! & mask) === mask;
        }
        if (!ok) {
          rLabels++;
          continue;
        }
      }
      if (affinityActive && (m & AFFINE) === 0) {
        rAffinity++;
        continue;
      }
      if ((m & ANTI_AFFINE) !== 0) {
        rAnti++;
        continue;
      }
      const d0 = a0[i]! - n0;
      const d1 = a1[i]! - n1;
      const d2 = a2[i]! - n2;
      const d3 = a3[i]! - n3;
      if (d0 < 0 || d1 < 0 || d2 < 0 || d3 < 0) {
        rFits++;
        continue;
      }
      // Same operations, same order as the kernel (crates/quark-native/src/placement/rule.rs).
      const f0 = fr(fr(d0) * i0[i]!);
      const f1 = fr(fr(d1) * i1[i]!);
      const f2 = fr(fr(d2) * i2[i]!);
      const fb = fr(fr(d3) * i3[i]!);
      let score: number;
      if (pack) {
        let m = 0;
        const m0 = f0 * q0;
        if (m0 > m) m = m0;
        const m1 = f1 * q1;
        if (m1 > m) m = m1;
        const m2 = f2 * q2;
        if (m2 > m) m = m2;
        const m3 = fb * q3;
        if (m3 > m) m = m3;
        score = -fr(m + fr(wl * labelCount[i]!));
      } else score = fr(fr(wr * fr(fr(f0 + f1) + f2)) + fr(wb * fb));
      if (tLen === k && score < tScore[k - 1]!) continue;
      tLen = this.offer(score, i, seed, tLen);
    }
    for (const i of exclude) mark[i] = 0;
    for (const i of affinity) mark[i] = 0;
    for (const i of anti) mark[i] = 0;

    const rejected: RejectionCounts = {
      alive: rAlive,
      excluded: rExcluded,
      zone: rZone,
      labels: rLabels,
      affinity: rAffinity,
      anti_affinity: rAnti,
      fits: rFits,
    };
    let placement: Placement;
    if (tLen === 0) placement = { ok: false, considered: n, rejected: { ...rejected } };
    else {
      const alternates: string[] = [];
      for (let p = 1; p < tLen; p++) alternates.push(this.ids[tIdx[p]!]!);
      placement = { ok: true, computeId: this.ids[tIdx[0]!]!, alternates };
    }
    return { placement, considered: n, rejected };
  }

  /** Offers a feasible compute to the top k (it scores at least the k-th); returns the new length. */
  private offer(score: number, i: number, seed: U64, tLen: number): number {
    const { k, tScore, tHi, tLo, tIdx } = this;
    const tie = mix64((seed.hi ^ this.idHi[i]!) >>> 0, (seed.lo ^ this.idLo[i]!) >>> 0);
    let pos = 0;
    while (pos < tLen && !this.better(score, tie.hi, tie.lo, i, pos)) pos++;
    if (pos >= k) return tLen;
    const end = tLen < k ? tLen : k - 1;
    for (let p = end; p > pos; p--) {
      tScore[p] = tScore[p - 1]!;
      tHi[p] = tHi[p - 1]!;
      tLo[p] = tLo[p - 1]!;
      tIdx[p] = tIdx[p - 1]!;
    }
    tScore[pos] = score;
    tHi[pos] = tie.hi;
    tLo[pos] = tie.lo;
    tIdx[pos] = i;
    return tLen < k ? tLen + 1 : k;
  }

  private groupMembers(name: string): readonly number[] {
    const g = this.groups.get(name);
    return g === undefined ? NO_GROUPS : this.members[g]!;
  }

  private better(score: number, hi: number, lo: number, i: number, p: number): boolean {
    const s = this.tScore[p]!;
    if (score !== s) return score > s;
    const h = this.tHi[p]!;
    if (hi !== h) return hi > h;
    const l = this.tLo[p]!;
    if (lo !== l) return lo > l;
    return compareCodePoints(this.ids[i]!, this.ids[this.tIdx[p]!]!) < 0;
  }
}
