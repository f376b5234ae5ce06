// Placement benchmark: the native scorer, the TypeScript twin and the memory floor (a native
// pass that reads every byte of the scanned columns once), side by side in one process on the
// same cluster and the same requests, interleaved request by request so that all three see the
// same machine. Prints only JSON lines on stdout, one per case; progress goes to stderr.
//
//   npm run bench:placement        (needs `npm run build:native` first)
//
// Env: QUARK_BENCH_SIZES=1000,10000 to pick sizes; QUARK_BENCH_SCALE=0.2 for fewer iterations;
// QUARK_BENCH_PORTABLE=1 runs the portable (SSE2) build of the kernel and of the scan.
import { NativeClusterView } from '../ts/orc/placement/native.js';
import { TwinClusterView } from '../ts/orc/placement/twin.js';
import type { ComputeRecord, Placement, PlacementRequest, Resources } from '../ts/orc/placement/types.js';

/** Deterministic PRNG (mulberry32) so every run scores the same cluster. */
function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

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
  const r = rng(n);
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
 * anti-affinity, a tenth a retry (zone + excluded computes).
 */
function requests(n: number, count: number): PlacementRequest[] {
  const r = rng(n * 7 + 1);
  const out: PlacementRequest[] = [];
  for (let i = 0; i < count; i++) {
    const need = SIZES[Math.floor(r() * SIZES.length)]!;
    const req: PlacementRequest = { id: `wu-${n}-${i}`, need };
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
    out.push(req);
  }
  return out;
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

const scale = Number(process.env.QUARK_BENCH_SCALE ?? 1);
const sizes = (process.env.QUARK_BENCH_SIZES ?? '1000,10000,100000').split(',').map(Number);
const iterationsFor = (n: number): number => Math.max(50, Math.round(scale * (n <= 10_000 ? 3000 : 1000)));

for (const n of sizes) console.log(JSON.stringify(benchSize(n, iterationsFor(n))));
console.log(JSON.stringify(benchBatch(10_000, 1_000, Math.max(3, Math.round(7 * scale)))));
