// Churn: boot a server and delete it, over and over, on hollow computes with a short retention,
// and watch whether ZooKeeper and the list calls stay flat. A standalone ZooKeeper (its default
// 512 MB heap, which exits when full), the api, O orcs and C hollow computes in one process.
// stdout is JSON lines only, one per --every cycles (and a last one), then a summary; progress
// goes to stderr.
//   npm run bench:churn -- --cycles 40000
// Each line: {cycles, zk_znodes, zk_data_bytes, zk_heap_mb, list_p99_ms, boots_per_s}
//   zk_znodes, zk_data_bytes: ZooKeeper's own mntr figures (zk_znode_count, zk_approximate_data_size)
//   zk_heap_mb: the JVM's heap in use right after a full GC (jcmd GC.run, then GC.heap_info): live data
//   list_p99_ms: p99 of GET /v1/servers?limit=100 and GET /v1/work-units?limit=100, sampled every
//     --list-every-ms since the previous line
//   boots_per_s: cycles (boot + delete, both finished) per second since the previous line
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import type { Zk } from '../ts/zk/client.js';
import type { RunningZooKeeper } from '../ts/dev/zookeeper.js';
import { Launcher } from '../ts/dev/cluster.js';
import { BenchCluster, Finisher, jvmPid, mntr } from './cluster.js';
import { percentile, pool } from './support.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const say = (s: string) => process.stderr.write(`[bench:churn] ${s}\n`);
const emit = (o: Record<string, unknown>) => process.stdout.write(JSON.stringify(o) + '\n');

/**
 * Live heap: a full GC (jcmd GC.run), then what the heap holds outside its young regions (jcmd
 * GC.heap_info: "garbage-first heap total …K, used …K" and "region size …K, N young"): the server
 * keeps allocating between the two calls, and what it allocated meanwhile is young and not live.
 */
function liveHeapMb(pid: number): number {
  execFileSync('jcmd', [String(pid), 'GC.run'], { stdio: 'ignore', timeout: 60_000 });
  const info = execFileSync('jcmd', [String(pid), 'GC.heap_info'], { encoding: 'utf8', timeout: 60_000 });
  const used = /used\s+(\d+)K/.exec(info);
  if (!used) throw new Error(`GC.heap_info said nothing of "used": ${info.slice(0, 200)}`);
  const young = /region size (\d+)K, (\d+) young/.exec(info);
  const kb = Number(used[1]) - (young ? Number(young[1]) * Number(young[2]) : 0);
  return Math.round(kb / 102.4) / 10;
}

/** The p-th percentile of `xs` to a tenth; 0 if it is empty. */
const pct = (xs: number[], p: number): number => Math.round((percentile([...xs].sort((a, b) => a - b), p) ?? 0) * 10) / 10;

async function main(): Promise<void> {
  const { values: v } = parseArgs({
    options: {
      cycles: { type: 'string', default: '40000' },
      every: { type: 'string', default: '10000' },
      computes: { type: 'string', default: '20' },
      orcs: { type: 'string', default: '2' },
      concurrency: { type: 'string', default: '64' },
      'unit-retention': { type: 'string', default: '30s' },
      'deleted-retention': { type: 'string', default: '30s' },
      'units-per-server': { type: 'string', default: '10' },
      'prune-batch': { type: 'string', default: '2000' },
      'retention-pass-ms': { type: 'string', default: '2000' },
      'list-every-ms': { type: 'string', default: '200' },
      'zk-heap': { type: 'string', default: '512m' },
      keep: { type: 'boolean', default: false },
    },
  });
  const cycles = Number(v.cycles);
  const every = Number(v.every);
  const C = Number(v.computes);
  const O = Number(v.orcs);
  const conc = Number(v.concurrency);
  for (const [k, n] of Object.entries({ cycles, every, computes: C, orcs: O, concurrency: conc })) {
    if (!Number.isInteger(n) || n < 1) throw new Error(`--${k} must be an integer ≥ 1`);
  }
  const dir = mkdtempSync(join(tmpdir(), 'quark-churn-'));
  const launcher = new Launcher({ graceMs: 30_000, tailLines: 100 });
  let zk: RunningZooKeeper | undefined;
  let client: Zk | undefined;
  let finisher: Finisher | undefined;
  let stopLists = false;
  say(`logs in ${dir}`);
  try {
    zk = await launcher.startZooKeeper({
      dataDir: join(dir, 'zk'),
      clientPort: 0,
      maxClientCnxns: 0,
      // Snapshots and log purging as a production server would: the data directory stays bounded too.
      extraConfig: { globalOutstandingLimit: 10_000, 'autopurge.snapRetainCount': 3, 'autopurge.purgeInterval': 1 },
      javaOptions: [`-Xmx${v['zk-heap'] as string}`],
    });
    const jvm = jvmPid(zk.pid);
    const cluster = await BenchCluster.start(launcher, {
      zk,
      root: '/quark',
      dir,
      keep: (l) => ['api listening', 'orc ready', 'fleet ready'].some((r) => l.includes(r)),
      maxSockets: 256,
      waitMs: 300_000,
    });
    const api = cluster.api;
    const apiProc = cluster.startApi(['--max-event-loop-delay-ms', '0']);
    const retention = [
      '--unit-retention', v['unit-retention'] as string,
      '--deleted-retention', v['deleted-retention'] as string,
      '--units-per-server', v['units-per-server'] as string,
      '--prune-batch', v['prune-batch'] as string,
      '--retention-pass-ms', v['retention-pass-ms'] as string,
    ];
    const orcs = cluster.startOrcs(O, ['--session-timeout-ms', '10000', ...retention]);
    const fleet = cluster.startHollow(C, ['--session-timeout-ms', '10000', '--hypervisor-report-ms', '30000']);
    await cluster.until('every process', () => apiProc.count('api listening') > 0 && orcs.every((o) => o.count('orc ready') > 0) && fleet.count('fleet ready') > 0);
    const session = await cluster.connect();
    client = session.client;
    const { paths, shards } = session;
    finisher = new Finisher(client, paths, shards);
    await finisher.ready();
    const fin = finisher;
    emit({ event: 'start', computes: C, orcs: O, concurrency: conc, shards, retention: Object.fromEntries(Object.entries(v).filter(([k]) => /retention|per-server|prune/.test(k))) });

    // The list calls, sampled all along.
    const listMs: number[] = [];
    const lists = (async () => {
      for (let i = 0; !stopLists; i++) {
        const t = performance.now();
        const r = await api.call('GET', i % 2 === 0 ? '/v1/servers?limit=100' : '/v1/work-units?limit=100').catch(() => null);
        if (r?.status === 200) listMs.push(performance.now() - t);
        await sleep(Number(v['list-every-ms']));
      }
    })();

    let done = 0;
    let errors = 0;
    const errorSamples: unknown[] = [];
    const fail = (what: unknown) => {
      errors++;
      if (errorSamples.length < 5) errorSamples.push(what);
    };
    let lastAt = performance.now();
    let lastDone = 0;
    const t0 = performance.now();
    const line = async (): Promise<void> => {
      const now = performance.now();
      const m = await mntr(zk!.clientPort);
      const count = async (p: string) => (await client!.exists(p))?.numChildren ?? 0;
      emit({
        cycles: done,
        zk_znodes: Number(m.zk_znode_count),
        zk_data_bytes: Number(m.zk_approximate_data_size),
        zk_heap_mb: liveHeapMb(jvm),
        list_p99_ms: pct(listMs.splice(0), 99),
        boots_per_s: Math.round(((done - lastDone) / ((now - lastAt) / 1000)) * 10) / 10,
        // What retention keeps right now, for context.
        work_units: await count(paths.workUnits),
        deleted_servers: await count(paths.deletedServers),
        errors,
      });
      lastAt = now;
      lastDone = done;
    };
    let nextLine = every;
    let lining: Promise<void> = Promise.resolve();
    // A line's reads may meet a connection loss (the machine stalls; ZooKeeper pauses for the full
    // GC asked of it): tried again, and never allowed to stop the run.
    const lineSurely = async (): Promise<void> => {
      for (let attempt = 1; ; attempt++) {
        try {
          return await line();
        } catch (err) {
          say(`measuring a line failed (${(err as Error).message}); attempt ${attempt}`);
          if (attempt >= 5) return;
          await sleep(2000);
        }
      }
    };
    const cycle = async (n: number): Promise<void> => {
      const b = await api.call('POST', '/v1/servers', { name: `churn-${n}`, flavor: { vcpus: 1, ram_mb: 256, disk_gb: 1 } });
      if (b.status !== 202) return fail({ boot: b.status, body: b.body });
      const built = (await fin.wait(b.body.work_unit_id)).state;
      if (built !== 'SUCCEEDED') fail({ build: built });
      for (;;) {
        const d = await api.call('DELETE', `/v1/servers/${b.body.server_id}`);
        if (d.status === 409) {
          await sleep(20); // the server is still busy: its build's finish has not reached it yet
          continue;
        }
        if (d.status !== 202) return fail({ delete: d.status, body: d.body });
        const deleted = (await fin.wait(d.body.work_unit_id)).state;
        if (deleted !== 'SUCCEEDED') fail({ deleted });
        return;
      }
    };
    await pool(cycles, conc, async (n) => {
      await cycle(n).catch((err: Error) => fail({ error: err.message }));
      done++;
      if (done >= nextLine) {
        nextLine += every;
        lining = lining.then(lineSurely);
      }
      if (done % 1000 === 0) say(`${done} cycles, ${Math.round(done / ((performance.now() - t0) / 1000))}/s`);
    });
    await lining;
    if (done % every !== 0) await lineSurely();
    stopLists = true;
    await lists;
    const left = await api.call('GET', '/v1/servers?limit=1000');
    emit({ event: 'summary', cycles: done, seconds: Math.round((performance.now() - t0) / 100) / 10, errors, error_samples: errorSamples, servers_left: left.body?.length ?? null });
  } finally {
    stopLists = true;
    finisher?.stop();
    await client?.close().catch(() => {});
    await launcher.stop();
    if (!v.keep) rmSync(dir, { recursive: true, force: true });
  }
}

main().then(
  () => process.exit(0),
  (err) => {
    process.stderr.write(`[bench:churn] ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
    process.exit(1);
  },
);
