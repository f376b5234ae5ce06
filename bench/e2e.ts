// End to end at scale: a standalone ZooKeeper, the api, O orcs and C hollow computes (one
// process, `quark compute --hollow C`), U boots through the REST API. stdout is JSON lines only,
// the last one the summary; progress goes to stderr.
//   npm run bench:e2e -- --computes 1000 --orcs 2 --units 5000
// Phases: (1) the server's raw capacity: the most multi() transactions per second it accepts from
// node-zookeeper-client (the library Quark uses), in the same run, against the same server, with
// transactions the size of a boot's; (2) closed loop: --concurrency boots in flight until U are
// done (the maximum rate); (3) open loop: fixed arrival rates (fractions of that maximum) for
// --sweep-seconds each, for latency. Transactions per boot are counted by ZooKeeper itself: every
// write transaction (multi or single) takes one zxid, so Δzxid / boots counts them all, including
// background writes (self/hypervisor reports) made meanwhile.
// --zk-acl on|off|on,off: ZooKeeper ACLs per role (every process with its own credentials) or none;
// with both, each variant runs in turn on a fresh cluster (its lines carry zk_acl) and a last
// line compares CPU per boot and ZooKeeper requests and transactions per boot.
// --list-settle-ms A,B,…: the api's list-index settle window (ts/api/listing.ts), compared the
// same way (lines carry list_settle_ms).
import { spawn } from 'node:child_process';
import { mkdtempSync, readdirSync, rmSync, statfsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { Zk } from '../ts/zk/client.js';
import { Paths } from '../ts/zk/paths.js';
import { fourLetter, type RunningZooKeeper } from '../ts/dev/zookeeper.js';
import { Launcher } from '../ts/dev/cluster.js';
import { Api, BenchCluster, Finisher, cpuSeconds, mntr, rssMb, threadCores, threadCpu } from './cluster.js';
import { percentile, pool } from './support.js';

const SELF = fileURLToPath(import.meta.url);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const say = (s: string) => process.stderr.write(`[bench:e2e] ${s}\n`);
const emit = (o: Record<string, unknown>) => process.stdout.write(JSON.stringify(o) + '\n');

// ---------------------------------------------------------------------------------------------
// Raw ZooKeeper capacity: a worker process, many sessions, many multi()s in flight.

async function rawWorker(v: Record<string, string | boolean | undefined>): Promise<void> {
  const sessions = Number(v.sessions);
  const inflight = Number(v.inflight);
  const ops = Number(v.ops);
  const warm = Number(v['warm-ms']);
  const window = Number(v['window-ms']);
  const base = `${v.root as string}/raw/${process.pid}`;
  const zks = await Promise.all(Array.from({ length: sessions }, () => Zk.connect(v.zk as string, { sessionTimeoutMs: 10_000 })));
  await zks[0]!.mkdirp(base);
  // A work-unit-sized record for the parent, small numbers below it: like a boot's transactions.
  const record = { id: 'x'.repeat(36), kind: 'build', state: 'RUNNING', steps: Array.from({ length: 4 }, (_, i) => ({ name: `step-${i}`, ms: i, at: Date.now() })), pad: 'p'.repeat(200) };
  const t0 = performance.now();
  const from = t0 + warm;
  const until = from + window;
  let counted = 0;
  let errors = 0;
  const loop = async (zk: Zk, slot: string): Promise<void> => {
    for (let i = 0; performance.now() < until; i++) {
      const dir = `${base}/${slot}-${i}`;
      const create = zk.txn().create(dir, record);
      for (let k = 1; k < ops; k++) create.create(`${dir}/${k}`, k);
      const remove = zk.txn();
      for (let k = ops - 1; k >= 1; k--) remove.remove(`${dir}/${k}`);
      remove.remove(dir);
      for (const t of [create, remove]) {
        try {
          await t.commit();
          const now = performance.now();
          if (now >= from && now < until) counted++;
        } catch {
          errors++;
        }
      }
    }
  };
  await Promise.all(zks.flatMap((zk, s) => Array.from({ length: inflight }, (_, j) => loop(zk, `${s}-${j}`))));
  process.stdout.write(JSON.stringify({ txns: counted, errors, window_ms: window }) + '\n');
  await Promise.all(zks.map((z) => z.close()));
  process.exit(0);
}

async function measureRaw(zkConn: string, root: string, o: { procs: number; sessions: number; inflight: number; ops: number; seconds: number }) {
  const window = o.seconds * 1000;
  const runs = await Promise.all(
    Array.from(
      { length: o.procs },
      () =>
        new Promise<{ txns: number; errors: number }>((resolve, reject) => {
          const p = spawn(
            process.execPath,
            [...process.execArgv, SELF, '--raw-worker', '--zk', zkConn, '--root', root, '--sessions', String(o.sessions), '--inflight', String(o.inflight), '--ops', String(o.ops), '--warm-ms', '1500', '--window-ms', String(window)],
            { stdio: ['ignore', 'pipe', 'inherit'] },
          );
          let out = '';
          p.stdout!.on('data', (c) => (out += String(c)));
          p.once('exit', (code) => (code === 0 ? resolve(JSON.parse(out.trim().split('\n').pop()!)) : reject(new Error(`raw worker exited ${code}`))));
        }),
    ),
  );
  const txns = runs.reduce((n, r) => n + r.txns, 0);
  return { txn_per_s: Math.round(txns / o.seconds), errors: runs.reduce((n, r) => n + r.errors, 0) };
}

// ---------------------------------------------------------------------------------------------
// ZooKeeper's own figures

async function zxid(port: number): Promise<number> {
  const m = /Zxid:\s*0x([0-9a-f]+)/i.exec(await fourLetter(port, 'srvr'));
  if (!m) throw new Error('srvr gave no Zxid');
  return Number(BigInt(`0x${m[1]}`) & 0xffffffffn); // the counter within the epoch
}

// ---------------------------------------------------------------------------------------------
// Latency

/**
 * Where a boot's time goes, from the units' own timestamps (one clock: every process is local):
 * accepted → the compute has run allocate_vcpu (api commit, orc placement and claim, compute
 * intake); → define done (allocate_storage, libvirt define); → start done; → the finishing
 * transaction committed (finished_at).
 */
async function phases(zk: Zk, paths: Paths, ids: string[]) {
  type Wu = { created_at: number; finished_at: number | null; steps_completed: Array<{ name: string; completed_at: number }> };
  const recs = (await Promise.all(ids.map((id) => zk.get<Wu>(paths.workUnit(id as never))))).map((r) => r?.value).filter((r): r is Wu => !!r?.finished_at);
  const at = (w: Wu, step: string) => w.steps_completed.find((s) => s.name === step)?.completed_at ?? NaN;
  const dist = (xs: number[]) => {
    const s = xs.filter((x) => Number.isFinite(x)).sort((a, b) => a - b);
    return { p50: pct(s, 50), p99: pct(s, 99) };
  };
  return {
    sampled: recs.length,
    to_placed_and_taken_ms: dist(recs.map((w) => at(w, 'allocate_vcpu') - w.created_at)),
    to_defined_ms: dist(recs.map((w) => at(w, 'define') - at(w, 'allocate_vcpu'))),
    to_started_ms: dist(recs.map((w) => at(w, 'start') - at(w, 'define'))),
    to_finished_ms: dist(recs.map((w) => w.finished_at! - at(w, 'start'))),
    total_ms: dist(recs.map((w) => w.finished_at! - w.created_at)),
  };
}

/** The p-th percentile of `sorted` (ascending) to the millisecond; 0 if it is empty. */
const pct = (sorted: number[], p: number): number => Math.round(percentile(sorted, p) ?? 0);

// ---------------------------------------------------------------------------------------------

async function main(): Promise<void> {
  const { values: v } = parseArgs({
    options: {
      'raw-worker': { type: 'boolean', default: false },
      zk: { type: 'string' },
      root: { type: 'string', default: '/quark' },
      sessions: { type: 'string', default: '4' },
      inflight: { type: 'string', default: '32' },
      ops: { type: 'string', default: '14' },
      'warm-ms': { type: 'string', default: '1500' },
      'window-ms': { type: 'string', default: '5000' },
      computes: { type: 'string', default: '100' },
      orcs: { type: 'string', default: '2' },
      units: { type: 'string', default: '1000' },
      concurrency: { type: 'string', default: '256' },
      // Boots run (closed loop) and discarded before the measured loop, so that the JVM's JIT
      // warm-up and first-touch costs are not counted; 0 measures from a cold start.
      'warmup-units': { type: 'string', default: '0' },
      rates: { type: 'string', default: '0.25,0.5,0.75' },
      'sweep-seconds': { type: 'string', default: '8' },
      'raw-seconds': { type: 'string', default: '5' },
      'raw-procs': { type: 'string', default: '2' },
      'session-timeout-ms': { type: 'string', default: '10000' },
      'hypervisor-report-ms': { type: 'string', default: '30000' },
      'zk-dir': { type: 'string' },
      'force-sync': { type: 'string', default: 'yes' },
      'zk-heap': { type: 'string', default: '2g' },
      // Profiling ZooKeeper (opt-in). --zk-jfr FILE: a JFR recording of the whole run to FILE
      // (settings=profile, Java stacks sampled every 1 ms); implies --zk-threads: ZooKeeper's
      // per-thread CPU (/proc) over an idle window before the closed loop (--zk-idle-seconds),
      // over the closed loop, and over its halves split at the U/2-th completed boot.
      'zk-jfr': { type: 'string' },
      'zk-threads': { type: 'boolean', default: false },
      // ZooKeeper's connection layer: nio (its default) or netty.
      'zk-cnxn': { type: 'string', default: 'nio' },
      'zk-idle-seconds': { type: 'string', default: '5' },
      // Extra JVM options for ZooKeeper, comma-separated (e.g. -Dzookeeper.nio.numWorkerThreads=0).
      'zk-java-opts': { type: 'string', default: '' },
      profile: { type: 'string' },
      keep: { type: 'boolean', default: false },
      'zk-acl': { type: 'string', default: 'on' },
      'list-settle-ms': { type: 'string', default: '50' },
    },
  });
  if (v['raw-worker']) return rawWorker(v);
  const aclVariants = (v['zk-acl'] as string).split(',').filter(Boolean);
  if (aclVariants.length === 0 || aclVariants.some((x) => x !== 'on' && x !== 'off')) throw new Error(`--zk-acl must be on, off or on,off; got ${String(v['zk-acl'])}`);
  if (aclVariants.length > 1) return compareVariants('zk-acl', aclVariants);
  const zkAcl = aclVariants[0] === 'on';
  const settleVariants = (v['list-settle-ms'] as string).split(',').filter(Boolean);
  if (settleVariants.length === 0 || settleVariants.some((x) => !/^\d+$/.test(x))) throw new Error(`--list-settle-ms must be milliseconds, or several comma-separated; got ${String(v['list-settle-ms'])}`);
  if (settleVariants.length > 1) return compareVariants('list-settle-ms', settleVariants);
  const listSettleMs = settleVariants[0]!;

  const C = Number(v.computes);
  const O = Number(v.orcs);
  const U = Number(v.units);
  const conc = Number(v.concurrency);
  const rates = (v.rates as string).split(',').filter(Boolean).map(Number);
  const sweepS = Number(v['sweep-seconds']);
  const dir = mkdtempSync(join(tmpdir(), 'quark-e2e-'));
  const zkDir = (v['zk-dir'] as string | undefined) ?? join(dir, 'zk');
  const forceSync = v['force-sync'] as string;
  const jfr = v['zk-jfr'] as string | undefined;
  const cnxn = v['zk-cnxn'] as string;
  if (cnxn !== 'nio' && cnxn !== 'netty') throw new Error(`--zk-cnxn must be nio or netty, got ${cnxn}`);
  const zkThreads = !!jfr || (v['zk-threads'] as boolean);
  // Unsupervised; stops wait 30 s for a process to drain before SIGKILL.
  const launcher = new Launcher({ graceMs: 30_000, tailLines: 100 });
  let zk: RunningZooKeeper | undefined;
  let client: Zk | undefined;
  let finisher: Finisher | undefined;
  let api: Api | undefined;
  const root = '/quark';
  say(`logs in ${dir}`);
  try {
    zk = await launcher.startZooKeeper({
      dataDir: zkDir,
      clientPort: 0,
      maxClientCnxns: 0,
      extraConfig: { forceSync, globalOutstandingLimit: 10_000 },
      connectionFactory: cnxn,
      javaOptions: [`-Xmx${v['zk-heap'] as string}`, ...(v['zk-java-opts'] as string).split(',').filter(Boolean), ...(jfr ? [`-XX:StartFlightRecording=filename=${jfr},settings=profile,method-profiling=max,dumponexit=true`] : [])],
    });
    const fs = statfsSync(zkDir);
    const fsName = fs.type === 0x01021994 ? 'tmpfs' : 'disk';
    emit({ event: 'zookeeper', data_dir: zkDir, data_fs: fsName, force_sync: forceSync, connection_factory: cnxn, tick_ms: 200, heap: v['zk-heap'], java_opts: v['zk-java-opts'] });

    // (1) raw capacity, nothing else running yet.
    const raw = await measureRaw(zk.connectionString, '/rawbench', {
      procs: Number(v['raw-procs']),
      sessions: Number(v.sessions),
      inflight: Number(v.inflight),
      ops: Number(v.ops),
      seconds: Number(v['raw-seconds']),
    });
    emit({ event: 'zk_raw', txn_per_s: raw.txn_per_s, ops_per_txn: Number(v.ops), procs: Number(v['raw-procs']), sessions_per_proc: Number(v.sessions), inflight_per_session: Number(v.inflight), errors: raw.errors });

    // (2) the cluster.
    const profDir = v.profile as string | undefined;
    const cluster = await BenchCluster.start(launcher, {
      zk,
      root,
      dir,
      acl: zkAcl,
      keep: (l, stream) =>
        stream === 'stderr' && (l.includes('"compute alive"') || l.includes('zk counters') || l.includes('"orc stats"') || l.includes('fleet ready') || l.includes('"level":"error"')),
      nodeArgs: (name) => (profDir ? ['--cpu-prof', '--cpu-prof-dir', profDir, '--cpu-prof-name', `${name}.cpuprofile`] : []),
      maxSockets: 128,
      waitMs: 600_000,
    });
    api = cluster.api;
    emit({ event: 'zk_acl', zk_acl: zkAcl ? 'on' : 'off' });
    cluster.startApi(['--list-settle-ms', listSettleMs]);
    const orcs = cluster.startOrcs(O, ['--session-timeout-ms', '4000']);
    const t0 = Date.now();
    const fleet = cluster.startHollow(C, ['--session-timeout-ms', String(v['session-timeout-ms']), '--hypervisor-report-ms', String(v['hypervisor-report-ms']), '--start-concurrency', '128']);
    await cluster.until(`${C} hollow computes`, () => fleet.count('fleet ready') > 0);
    await cluster.until('every orc to see every compute', () => orcs.every((o) => o.count('"compute alive"') >= C));
    const session = await cluster.connect();
    client = session.client;
    const { paths, shards } = session;
    emit({ event: 'cluster_ready', computes: C, orcs: O, ms: Date.now() - t0, hollow_rss_mb: rssMb(fleet.p.pid).rss_mb });
    finisher = new Finisher(client, paths, shards);
    await finisher.ready();
    const fin = finisher;

    let seq = 0;
    const sample: string[] = [];
    let errors = 0;
    const errorSamples: unknown[] = [];
    const boot = async (measured = true): Promise<number> => {
      const sent = performance.now();
      const r = await cluster.api.call('POST', '/v1/servers', { name: `b-${seq++}`, flavor: { vcpus: 1, ram_mb: 256, disk_gb: 1 } });
      if (r.status !== 202) {
        errors++;
        if (errorSamples.length < 5) errorSamples.push({ status: r.status, body: r.body });
        return -1;
      }
      if (measured && sample.length < 400 && seq % 5 === 0) sample.push(r.body.work_unit_id);
      const done = await fin.wait(r.body.work_unit_id);
      if (!done.ok) {
        errors++;
        if (errorSamples.length < 5) errorSamples.push({ state: done.state, error: done.error });
      }
      return performance.now() - sent;
    };

    // Profiling only: ZooKeeper with every session connected and no boots (pings, hypervisor
    // reports), and the wall-clock window of the closed loop to cut the JFR recording with.
    if (zkThreads) {
      const idleS = Number(v['zk-idle-seconds']);
      const t0 = threadCpu(zk.pid);
      const i0 = await mntr(zk.clientPort);
      const w0 = performance.now();
      await sleep(idleS * 1000);
      const s = (performance.now() - w0) / 1000;
      const i1 = await mntr(zk.clientPort);
      const perS = (k: string) => +((Number(i1[k]) - Number(i0[k])) / s).toFixed(1);
      emit({ event: 'zk_idle', seconds: +s.toFixed(2), packets_received_per_s: perS('zk_packets_received'), packets_sent_per_s: perS('zk_packets_sent'), cpu_cores: threadCores(t0, threadCpu(zk.pid), s) });
    }
    const W = Number(v['warmup-units']);
    if (!Number.isInteger(W) || W < 0) throw new Error(`--warmup-units must be an integer ≥ 0, got ${String(v['warmup-units'])}`);
    if (W > 0) {
      const w0 = performance.now();
      await pool(W, conc, () => boot(false));
      const ws = (performance.now() - w0) / 1000;
      emit({ event: 'warmup', units: W, seconds: +ws.toFixed(2), boots_per_s: Math.round(W / ws), errors, note: 'not counted below' });
    }
    let mid: { at: number; zk: Map<string, number> } | undefined;
    const closedWall0 = Date.now();

    // (3) closed loop.
    const who = [...cluster.procs.map((p) => ({ name: p.name, pid: p.p.pid })), { name: 'zookeeper', pid: zk.pid }, { name: 'bench', pid: process.pid }];
    const cpu0 = who.map((w) => cpuSeconds(w.pid));
    const z0 = await zxid(zk.clientPort);
    const m0 = await mntr(zk.clientPort);
    const lat: number[] = [];
    const zkT0 = zkThreads ? threadCpu(zk.pid) : undefined;
    const c0 = performance.now();
    const mono0 = process.hrtime.bigint() / 1000n; // µs on the clock V8's .cpuprofile timestamps use
    await pool(U, conc, async () => {
      const ms = await boot();
      if (ms >= 0) lat.push(ms);
      if (zkT0 && !mid && lat.length >= U / 2) mid = { at: performance.now(), zk: threadCpu(zk!.pid) };
    });
    const closedS = (performance.now() - c0) / 1000;
    const mono1 = process.hrtime.bigint() / 1000n;
    const z1 = await zxid(zk.clientPort);
    const m1 = await mntr(zk.clientPort);
    // Packets through ZooKeeper per boot over the closed loop (requests, replies, notifications,
    // and the sessions' pings meanwhile).
    const packetsPerBoot = (k: string): number => +((Number(m1[k]) - Number(m0[k])) / U).toFixed(1);
    const cpuUse = Object.fromEntries(who.map((w, i) => [w.name, +((cpuSeconds(w.pid) - cpu0[i]!) / closedS).toFixed(2)]));
    lat.sort((a, b) => a - b);
    const maxRate = U / closedS;
    const txnPerBoot = (z1 - z0) / U;
    emit({ event: 'closed_loop', units: U, concurrency: conc, seconds: +closedS.toFixed(2), boots_per_s: Math.round(maxRate), p50_ms: pct(lat, 50), p99_ms: pct(lat, 99), zk_txns: z1 - z0, zk_txn_per_boot: +txnPerBoot.toFixed(2), zk_packets_received_per_boot: packetsPerBoot('zk_packets_received'), zk_packets_sent_per_boot: packetsPerBoot('zk_packets_sent'), errors, cpu_cores: cpuUse, monotonic_us: [Number(mono0), Number(mono1)] });
    const closedErrors = errors;
    if (zkT0) {
      const zkT1 = threadCpu(zk.pid);
      const m = mid ?? { at: performance.now(), zk: zkT1 };
      const h1 = (m.at - c0) / 1000;
      const h2 = (performance.now() - c0) / 1000 - h1;
      const half = (a: Map<string, number>, b: Map<string, number>, s: number, boots: number) => {
        const cores = threadCores(a, b, s);
        return { seconds: +s.toFixed(2), boots_per_s: Math.round(boots / s), zk_cpu_ms_per_boot: +((cores.total! * s * 1000) / boots).toFixed(2), cpu_cores: cores };
      };
      emit({
        event: 'zk_threads_closed_loop',
        wall_start_ms: closedWall0,
        wall_end_ms: Date.now(),
        whole: half(zkT0, zkT1, closedS, U),
        first_half: half(zkT0, m.zk, h1, Math.ceil(U / 2)),
        second_half: half(m.zk, zkT1, h2, U - Math.ceil(U / 2)),
      });
    }
    emit({ event: 'closed_loop_phases', ...(await phases(client, paths, sample)) });

    // (4) open-loop sweep.
    const sweep: Array<{ fraction: number; p50_ms: number; p99_ms: number; achieved: number }> = [];
    for (const f of rates) {
      const rate = f * maxRate;
      const n = Math.max(1, Math.round(rate * sweepS));
      const ol: number[] = [];
      const e0 = errors;
      const s0 = performance.now();
      const inflight: Promise<void>[] = [];
      let sent = 0;
      while (sent < n) {
        const due = Math.min(n, Math.floor(((performance.now() - s0) / 1000) * rate) + 1);
        for (; sent < due; sent++) inflight.push(boot().then((ms) => void (ms >= 0 && ol.push(ms))));
        await sleep(2);
      }
      await Promise.all(inflight);
      const s = (performance.now() - s0) / 1000;
      ol.sort((a, b) => a - b);
      const row = { fraction: f, rate_per_s: Math.round(rate), units: n, achieved: Math.round(n / s), p50_ms: pct(ol, 50), p90_ms: pct(ol, 90), p99_ms: pct(ol, 99), max_ms: Math.round(ol[ol.length - 1] ?? 0), errors: errors - e0 };
      sweep.push(row);
      emit({ event: 'open_loop', ...row });
    }

    // (5) memory and ZooKeeper's view, then stop everything and collect the clients' counters.
    const orcMem = orcs.map((o) => rssMb(o.p.pid));
    const fleetMem = rssMb(fleet.p.pid);
    const m = await mntr(zk.clientPort);
    emit({
      event: 'zk_mntr',
      ...Object.fromEntries(
        ['zk_avg_latency', 'zk_max_latency', 'zk_num_alive_connections', 'zk_outstanding_requests', 'zk_znode_count', 'zk_watch_count', 'zk_approximate_data_size', 'zk_packets_received', 'zk_packets_sent']
          .filter((k) => k in m)
          .map((k) => [k, Number(m[k])]),
      ),
    });
    finisher.stop();
    await client.close();
    client = undefined;
    await cluster.stop();
    const counters = cluster.procs.map((p) => {
      const line = p.lines.find((l) => l.includes('zk counters'));
      const c = line ? (JSON.parse(line) as { txns: number; writes: number; reads: number }) : undefined;
      const st = p.lines.find((l) => l.includes('"orc stats"'));
      const orc = st ? (JSON.parse(st) as { placed: number; claimConflicts: number; noValidHost: number; retried: number }) : undefined;
      return {
        proc: p.name,
        txns: c?.txns ?? null,
        writes: c?.writes ?? null,
        reads: c?.reads ?? null,
        ...(orc ? { placed: orc.placed, claim_conflicts: orc.claimConflicts, no_valid_host: orc.noValidHost } : {}),
      };
    });
    emit({ event: 'zk_client_counters', note: 'whole run per process, startup included; txns = multi() calls, writes = ops in them plus single writes', processes: counters });
    if (profDir) emit({ event: 'profiles', dir: profDir, files: readdirSync(profDir).filter((f) => f.endsWith('.cpuprofile')) });
    if (errorSamples.length) emit({ event: 'error_samples', samples: errorSamples });

    const half = sweep.find((r) => r.fraction === 0.5) ?? sweep[0];
    const cpuMsPerBoot = Object.fromEntries(Object.entries(cpuUse).map(([k, cores]) => [k, +((cores * closedS * 1000) / U).toFixed(2)]));
    emit({
      computes: C,
      orcs: O,
      units: U,
      zk_acl: zkAcl ? 'on' : 'off',
      list_settle_ms: Number(listSettleMs),
      boots_per_s: Math.round(maxRate),
      p50_ms: half?.p50_ms ?? pct(lat, 50),
      p99_ms: half?.p99_ms ?? pct(lat, 99),
      latency_at: half ? `open loop at ${half.fraction} x max` : 'closed loop',
      zk_txn_per_boot: +txnPerBoot.toFixed(2),
      zk_raw_txn_per_s: raw.txn_per_s,
      zk_efficiency: +((maxRate * txnPerBoot) / raw.txn_per_s).toFixed(3),
      orc_rss_mb: Math.max(...orcMem.map((x) => x.rss_mb)),
      compute_rss_mb: fleetMem.rss_mb,
      compute_rss_kb_per_compute: Math.round((fleetMem.rss_mb * 1024) / C),
      errors,
      closed_loop_errors: closedErrors,
      zk_data_fs: fsName,
      zk_force_sync: forceSync,
      hypervisor_report_ms: Number(v['hypervisor-report-ms']),
      cpu_cores_closed_loop: cpuUse,
      cpu_ms_per_boot: cpuMsPerBoot,
      cpu_ms_per_boot_total: +Object.values(cpuMsPerBoot).reduce((a, b) => a + b, 0).toFixed(2),
      zk_packets_received_per_boot: packetsPerBoot('zk_packets_received'),
    });
  } finally {
    finisher?.stop();
    await client?.close().catch(() => {});
    await launcher.stopAll().catch(() => {});
    if (!v.keep) rmSync(dir, { recursive: true, force: true });
    api?.destroy();
  }
}

/**
 * Runs this bench once per variant of `flag` (--zk-acl, --list-settle-ms), in turn, each on its
 * own ZooKeeper and cluster with every other flag the same; passes their lines on tagged with the
 * variant, then compares them.
 */
async function compareVariants(flag: 'zk-acl' | 'list-settle-ms', variants: string[]): Promise<void> {
  const tag = flag.replaceAll('-', '_');
  const args = process.argv.slice(2);
  const rest: string[] = [];
  for (let i = 0; i < args.length; i++) {
    if (args[i] === `--${flag}`) i++;
    else if (!args[i]!.startsWith(`--${flag}=`)) rest.push(args[i]!);
  }
  const summaries: Record<string, Record<string, unknown>> = {};
  for (const variant of variants) {
    say(`variant --${flag} ${variant}`);
    const child = spawn(process.execPath, [...process.execArgv, SELF, ...rest, `--${flag}`, variant], { stdio: ['ignore', 'pipe', 'inherit'] });
    let buf = '';
    child.stdout.setEncoding('utf8');
    child.stdout.on('data', (chunk: string) => {
      buf += chunk;
      const lines = buf.split('\n');
      buf = lines.pop() ?? '';
      for (const line of lines.filter(Boolean)) {
        const o = JSON.parse(line) as Record<string, unknown>;
        if (o.event === undefined) summaries[variant] = o;
        emit({ ...o, [tag]: variant });
      }
    });
    const code = await new Promise<number | null>((r) => child.on('exit', r));
    if (code !== 0) throw new Error(`the --${flag} ${variant} run failed (exit ${code})`);
  }
  const pick = (s: Record<string, unknown> | undefined) =>
    s && {
      boots_per_s: s.boots_per_s,
      cpu_ms_per_boot_total: s.cpu_ms_per_boot_total,
      cpu_ms_per_boot: s.cpu_ms_per_boot,
      zk_txn_per_boot: s.zk_txn_per_boot,
      zk_packets_received_per_boot: s.zk_packets_received_per_boot,
      p50_ms: s.p50_ms,
      p99_ms: s.p99_ms,
      errors: s.errors,
    };
  emit({ event: `${tag}_compare`, note: 'cpu_ms_per_boot: CPU seconds of each process over the closed loop per boot; zk_txn_per_boot: Δzxid per boot; zk_packets_received_per_boot: requests ZooKeeper received per boot', ...Object.fromEntries(variants.map((x) => [x, pick(summaries[x])])) });
}

main().then(
  () => process.exit(0),
  (err) => {
    say(`failed: ${(err as Error).stack ?? String(err)}`);
    process.exit(1);
  },
);
