// Placement benchmark: the native scorer, the TypeScript twin and the memory floor (a native
// pass that reads every byte of the scanned columns once), side by side in one process on the
// same cluster and the same requests, interleaved request by request so that all three see the
// same machine. Prints only JSON lines on stdout, one per case; progress goes to stderr.
//
//   npm run bench:placement        (needs `npm run build:native` first)
//
// Env: QUARK_BENCH_SIZES=1000,10000 to pick sizes; QUARK_BENCH_SCALE=0.2 for fewer iterations;
// QUARK_BENCH_PORTABLE=1 runs the portable (SSE2) build of the kernel and of the scan;
// QUARK_BENCH_CASES=latency,batch,fill picks cases; QUARK_BENCH_FILL_SIZES=1000,10000 the fills'.
//
// The fill cases measure density: per policy, requests are placed one after another, each
// claiming, until the first one no compute can take (three request streams per size).
import { NativeClusterView } from '../ts/orc/placement/native.js';
import { TwinClusterView } from '../ts/orc/placement/twin.js';
import type { ComputeRecord, Placement, PlacementRequest, Resources } from '../ts/orc/placement/types.js';
// Seeded (mulberry32), so that every run scores the same cluster with the same requests.
import { prng } from '../ts/dev/chaos/plan.js';

const FLAVOURS: Resources[] = [
  { vcpus: 32, ram_mb: 131_072, disk_gb: 1_000, bandwidth_mbps: 10_000 },
  { vcpus: 64, ram_mb: 262_144, disk_gb: 2_000, bandwidth_mbps: 25_000 },
  { vcpus: 96, ram_mb: 393_216, disk_gb: 4_000, bandwidth_mbps: 25_000 },
  { vcpus: 128, ram_mb: 1_048_576, disk_gb: 8_000, bandwidth_mbps: 100_000 },
];
const ZONES = ['az-1', 'az-2', 'az-3'];
const SIZES: Resources[] = [
  { vcpus: 1, ram_mb: 2_048, disk_gb: 20, bandwidth_mbps: 100 },
  { vcpus: 2, ram_mb: 4_096, disk_gb: 40, bandwidth_mbps: 250 },
  { vcpus: 4, ram_mb: 16_384, disk_gb: 80, bandwidth_mbps: 500 },
  { vcpus: 16, ram_mb: 65_536, disk_gb: 320, bandwidth_mbps: 2_000 },
];

/** A cluster of mixed flavours, partly used, 1% dead, with labels and server groups. */
function cluster(n: number): ComputeRecord[] {
  const r = prng(n);
  const out: ComputeRecord[] = [];
  for (let i = 0; i < n; i++) {
    const capacity = FLAVOURS[Math.floor(r() * FLAVOURS.length)]!;
    const used = r();
    const free = {} as Resources;
    for (const k of ['vcpus', 'ram_mb', 'disk_gb', 'bandwidth_mbps'] as const) {
      free[k] = Math.floor(capacity[k] * (1 - used * (0.7 + 0.3 * r())));
    }
    const labels: string[] = [];
    if (r() < 0.5) labels.push('ssd');
    if (r() < 0.05) labels.push('gpu');
    if (r() < 0.2) labels.push('sriov');
    if (capacity.vcpus >= 96) labels.push('large');
    const groups: string[] = [];
    // About one compute in five hosts a member of some server group (n/20 groups).
    if (r() < 0.2) groups.push(`sg-${Math.floor(r() * (n / 20))}`);
    out.push({
      id: `compute-${i.toString().padStart(6, '0')}`,
      capacity,
      free,
      zone: ZONES[i % ZONES.length]!,
      labels,
      alive: r() >= 0.01,
      groups,
    });
  }
  return out;
}

/**
 * The request mix: half plain, a fifth with a zone, a tenth zone + label, a tenth
 * anti-affinity, a tenth a retry (zone + excluded computes). Stream 0 is the one the latency
 * cases use; the fill cases also draw streams 1 and 2 (other seeds, other ids).
 */
function requestStream(n: number, stream = 0): () => PlacementRequest {
  const r = prng(n * 7 + 1 + stream);
  const prefix = stream === 0 ? `wu-${n}` : `wu-${n}-s${stream}`;
  let i = 0;
  return () => {
    const need = SIZES[Math.floor(r() * SIZES.length)]!;
    const req: PlacementRequest = { id: `${prefix}-${i}`, need };
    const kind = r();
    if (kind < 0.5) {
      // plain
    } else if (kind < 0.7) req.zone = ZONES[i % 3];
    else if (kind < 0.8) {
      req.zone = ZONES[i % 3];
      req.labels = ['ssd'];
    } else if (kind < 0.9) req.antiAffinity = `sg-${Math.floor(r() * (n / 20))}`;
    else {
      req.zone = ZONES[i % 3];
      req.exclude = [0, 1, 2].map(() => `compute-${Math.floor(r() * n).toString().padStart(6, '0')}`);
    }
    i++;
    return req;
  };
}

function requests(n: number, count: number): PlacementRequest[] {
  const next = requestStream(n);
  return Array.from({ length: count }, next);
}

function percentile(xs: number[], p: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))]!;
}

const round = (x: number, d = 2): number => Number(x.toFixed(d));
const now = (): bigint => process.hrtime.bigint();
const us = (t0: bigint, t1: bigint): number => Number(t1 - t0) / 1000;
const log = (msg: string): void => void process.stderr.write(`${msg}\n`);

function samePick(a: Placement, b: Placement): boolean {
  return a.ok === b.ok && (!a.ok || (b.ok && a.computeId === b.computeId));
}

const portable = process.env.QUARK_BENCH_PORTABLE === '1';
function nativeView(): NativeClusterView {
  const v = new NativeClusterView();
  if (portable) v.setSimd(false);
  return v;
}

function benchSize(n: number, iterations: number): Record<string, number | string> {
  const records = cluster(n);
  const native = nativeView();
  const twin = new TwinClusterView();
  for (const c of records) {
    native.upsert(c);
    twin.upsert(c);
  }
  const reqs = requests(n, iterations);
  const warm = Math.min(200, iterations);
  for (let i = 0; i < warm; i++) {
    native.place(reqs[i]!);
    twin.place(reqs[i]!);
    native.scanColumns();
  }
  const tNative: number[] = [];
  const tTwin: number[] = [];
  const tScan: number[] = [];
  let sink = 0;
  let placed = 0;
  for (let i = 0; i < iterations; i++) {
    const req = reqs[i]!;
    let t0 = now();
    const a = native.place(req);
    let t1 = now();
    tNative.push(us(t0, t1));
    t0 = now();
    const b = twin.place(req);
    t1 = now();
    tTwin.push(us(t0, t1));
    t0 = now();
    sink = (sink + native.scanColumns()) >>> 0;
    t1 = now();
    tScan.push(us(t0, t1));
    if (!samePick(a, b)) throw new Error(`native and twin disagree on ${req.id}`);
    placed += a.ok ? 1 : 0;
  }
  const nativeP50 = percentile(tNative, 50);
  const tsP50 = percentile(tTwin, 50);
  const scanP50 = percentile(tScan, 50);
  log(`placement n=${n}: ${placed}/${iterations} placed, checksum ${sink}`);
  return {
    nodes: n,
    native_p50_us: round(nativeP50),
    native_p99_us: round(percentile(tNative, 99)),
    ts_p50_us: round(tsP50),
    scan_p50_us: round(scanP50),
    speedup_vs_ts: round(tsP50 / nativeP50),
    ratio_to_scan: round(nativeP50 / scanP50),
    bytes_per_node: native.hotBytesPerNode,
    kernel: native.simd ? 'avx2' : 'portable',
  };
}

function benchBatch(n: number, batch: number, runs: number): Record<string, number> {
  const records = cluster(n);
  const reqs = requests(n + 1, batch);
  const perNative: number[] = [];
  const perTwin: number[] = [];
  let placed = 0;
  for (let run = 0; run < runs; run++) {
    const native = nativeView();
    const twin = new TwinClusterView();
    for (const c of records) {
      native.upsert(c);
      twin.upsert(c);
    }
    let t0 = now();
    const a = native.placeBatch(reqs);
    let t1 = now();
    perNative.push(us(t0, t1) / batch);
    t0 = now();
    const b = twin.placeBatch(reqs);
    t1 = now();
    perTwin.push(us(t0, t1) / batch);
    a.forEach((p, i) => {
      if (!samePick(p, b[i]!)) throw new Error(`batch: native and twin disagree on request ${i}`);
    });
    placed = a.filter((p) => p.ok).length;
  }
  log(`placement batch n=${n}: ${placed}/${batch} placed`);
  return {
    nodes: n,
    batch,
    per_placement_us: round(percentile(perNative, 50), 3),
    ts_per_placement_us: round(percentile(perTwin, 50), 3),
  };
}

type Policy = 'spread' | 'pack';
const RES_KEYS = ['vcpus', 'ram_mb', 'disk_gb', 'bandwidth_mbps'] as const;

interface StreamFill {
  placed: number;
  /** Used / capacity per resource over the alive computes, when the first request failed. */
  share: Record<(typeof RES_KEYS)[number], number>;
  /** Per alive compute: vcpus used / vcpus. */
  vcpuUtil: number[];
  times: number[];
}

/**
 * Places one stream's requests one after another, each success claiming its need in the view,
 * until the first request no compute can take. With `twin`, the twin places the same requests
 * in lockstep and must pick the same compute every time.
 */
function fillStream(n: number, policy: Policy, stream: number, twin: boolean): StreamFill {
  const records = cluster(n);
  const native = new NativeClusterView({ weights: { strategy: policy } });
  if (portable) native.setSimd(false);
  const mirror = twin ? new TwinClusterView({ weights: { strategy: policy } }) : undefined;
  for (const c of records) {
    native.upsert(c);
    mirror?.upsert(c);
  }
  const free = new Map(records.map((c) => [c.id, { ...c.free }]));
  const next = requestStream(n, stream);
  const times: number[] = [];
  for (;;) {
    const req = next();
    const t0 = now();
    const p = native.place(req);
    times.push(us(t0, now()));
    if (mirror && !samePick(p, mirror.place(req))) throw new Error(`fill: native and twin disagree on ${req.id}`);
    if (!p.ok) break;
    native.applyClaim(p.computeId, req.need);
    mirror?.applyClaim(p.computeId, req.need);
    const f = free.get(p.computeId)!;
    for (const k of RES_KEYS) f[k] -= req.need[k];
  }
  const alive = records.filter((c) => c.alive);
  const share = {} as StreamFill['share'];
  for (const k of RES_KEYS) {
    let cap = 0;
    let used = 0;
    for (const c of alive) {
      cap += c.capacity[k];
      used += c.capacity[k] - free.get(c.id)![k];
    }
    share[k] = used / cap;
  }
  const vcpuUtil = alive.map((c) => (c.capacity.vcpus - free.get(c.id)!.vcpus) / c.capacity.vcpus);
  return { placed: times.length - 1, share, vcpuUtil, times };
}

const mean = (xs: number[]): number => xs.reduce((a, x) => a + x, 0) / xs.length;
const stddev = (xs: number[]): number => Math.sqrt(mean(xs.map((x) => (x - mean(xs)) ** 2)));

/** The fill case of one policy on one cluster size: FILL_STREAMS request streams, one JSON line. */
function benchFill(n: number, policy: Policy): Record<string, unknown> {
  const runs = Array.from({ length: FILL_STREAMS }, (_, s) => fillStream(n, policy, s, n <= FILL_TWIN_MAX));
  const times = runs.flatMap((r) => r.times);
  const share = Object.fromEntries(RES_KEYS.map((k) => [k, round(mean(runs.map((r) => r.share[k])), 4)]));
  log(`fill n=${n} ${policy}: ${runs.map((r) => r.placed).join(', ')} placed`);
  return {
    case: 'fill',
    nodes: n,
    policy,
    streams: runs.length,
    placed_mean: round(mean(runs.map((r) => r.placed)), 1),
    placed: runs.map((r) => r.placed),
    share_in_use: share,
    vcpu_util_stddev: round(mean(runs.map((r) => stddev(r.vcpuUtil))), 4),
    per_placement_p50_us: round(percentile(times, 50)),
    per_placement_p99_us: round(percentile(times, 99)),
    kernel: nativeView().simd ? 'avx2' : 'portable',
  };
}

const FILL_STREAMS = 3;
/** Up to this size the twin replays every fill in lockstep (beyond, the property tests cover it). */
const FILL_TWIN_MAX = 1_000;

const scale = Number(process.env.QUARK_BENCH_SCALE ?? 1);
const sizes = (process.env.QUARK_BENCH_SIZES ?? '1000,10000,100000').split(',').filter(Boolean).map(Number);
const cases = new Set((process.env.QUARK_BENCH_CASES ?? 'latency,batch,fill').split(','));
const iterationsFor = (n: number): number => Math.max(50, Math.round(scale * (n <= 10_000 ? 3000 : 1000)));

if (cases.has('latency')) for (const n of sizes) console.log(JSON.stringify(benchSize(n, iterationsFor(n))));
if (cases.has('batch')) console.log(JSON.stringify(benchBatch(10_000, 1_000, Math.max(3, Math.round(7 * scale)))));
const fillSizes = (process.env.QUARK_BENCH_FILL_SIZES ?? '1000,10000').split(',').filter(Boolean).map(Number);
if (cases.has('fill')) for (const n of fillSizes) for (const policy of ['spread', 'pack'] as const) console.log(JSON.stringify(benchFill(n, policy)));
