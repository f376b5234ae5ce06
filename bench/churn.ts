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
import { mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import http from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { Zk } from '../ts/zk/client.js';
import { Paths } from '../ts/zk/paths.js';
import { fourLetter, freePort, type RunningZooKeeper } from '../ts/dev/zookeeper.js';
import { Launcher, QuarkCluster, type LaunchedProcess } from '../ts/dev/cluster.js';
import { mintAdminToken } from '../ts/auth/local.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const say = (s: string) => process.stderr.write(`[bench:churn] ${s}\n`);
const emit = (o: Record<string, unknown>) => process.stdout.write(JSON.stringify(o) + '\n');

async function mntr(port: number): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  for (const line of (await fourLetter(port, 'mntr')).split('\n')) {
    const [k, v] = line.split('\t');
    if (k && v !== undefined) out[k] = v;
  }
  return out;
}

/** The JVM under ZooKeeper's watchdog shell: the process itself if it is java, else its java child. */
function jvmPid(pid: number): number {
  const comm = (p: number | string) => {
    try {
      return readFileSync(`/proc/${p}/comm`, 'utf8').trim();
    } catch {
      return '';
    }
  };
  if (comm(pid) === 'java') return pid;
  for (const d of readdirSync('/proc')) {
    if (!/^\d+$/.test(d) || comm(d) !== 'java') continue;
    try {
      const ppid = Number(readFileSync(`/proc/${d}/stat`, 'utf8').split(') ')[1]!.split(' ')[1]);
      if (ppid === pid) return Number(d);
    } catch {
      // gone meanwhile
    }
  }
  throw new Error(`no java process under ${pid}`);
}

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

const pct = (xs: number[], p: number): number => {
  if (xs.length === 0) return 0;
  const s = [...xs].sort((a, b) => a - b);
  return Math.round(s[Math.min(s.length - 1, Math.ceil((p / 100) * s.length) - 1)]! * 10) / 10;
};

const agent = new http.Agent({ keepAlive: true, maxSockets: 256 });
const auth: Record<string, string> = {};

function call(port: number, method: string, path: string, body?: unknown): Promise<{ status: number; body: any }> {
  const data = body === undefined ? undefined : JSON.stringify(body);
  return new Promise((resolve, reject) => {
    const req = http.request(
      {
        host: '127.0.0.1',
        port,
        path,
        method,
        agent,
        headers: { ...auth, ...(data ? { 'content-type': 'application/json', 'content-length': Buffer.byteLength(data) } : {}) },
      },
      (res) => {
        let text = '';
        res.setEncoding('utf8');
        res.on('data', (c) => (text += c));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body: text ? JSON.parse(text) : undefined }));
      },
    );
    req.on('error', reject);
    req.end(data);
  });
}

/**
 * When units finish: a finishing transaction removes the unit's inbox entry, and one persistent
 * recursive watch on the shards hears every such removal (one notification, no read); the unit is
 * then read once for its state. A removal heard before its wait was asked for is remembered.
 */
class Endings {
  private readonly waiting = new Map<string, (state: string) => void>();
  private readonly early = new Set<string>();
  private watch!: { stop(): Promise<void> };
  private readonly inbox: RegExp;

  constructor(
    private readonly zk: Zk,
    private readonly paths: Paths,
  ) {
    this.inbox = new RegExp(`^${paths.shards.replace(/[.]/g, '\\.')}/\\d+/inbox/([^/]+)$`);
  }

  async start(): Promise<void> {
    this.watch = await this.zk.persistentWatch(this.paths.shards, 'recursive', (ev) => {
      const m = ev.type === 'deleted' ? this.inbox.exec(ev.path) : null;
      if (m) this.ended(m[1]!);
    });
  }

  stop(): Promise<void> {
    return this.watch.stop();
  }

  wait(wu: string): Promise<string> {
    return new Promise((resolve) => {
      this.waiting.set(wu, resolve);
      if (this.early.delete(wu)) this.ended(wu);
    });
  }

  private ended(wu: string): void {
    const resolve = this.waiting.get(wu);
    if (!resolve) return void this.early.add(wu);
    this.waiting.delete(wu);
    void this.zk.get<{ state: string }>(this.paths.workUnit(wu as never)).then(
      (r) => resolve(r?.value?.state ?? 'MISSING'),
      () => resolve('READ_FAILED'),
    );
  }
}

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
  let endings: Endings | undefined;
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
    const root = '/quark';
    const apiPort = await freePort();
    const cluster = new QuarkCluster(launcher, { zk: zk.connectionString, root, apiPort, logDir: dir });
    const procs: Array<{ name: string; p: LaunchedProcess; ready: () => boolean }> = [];
    const start = (name: string, args: string[], readyLine: string) => {
      let seen = false;
      const p = cluster.start(name, args, { onLine: (l) => void (l.includes(readyLine) && (seen = true)) });
      procs.push({ name, p, ready: () => seen });
    };
    auth.authorization = `Bearer ${await mintAdminToken(zk.connectionString, root)}`;
    start('api', ['api', '--port', String(apiPort), '--rate-limit', '0', '--max-event-loop-delay-ms', '0'], 'api listening');
    const retention = [
      '--unit-retention', v['unit-retention'] as string,
      '--deleted-retention', v['deleted-retention'] as string,
      '--units-per-server', v['units-per-server'] as string,
      '--prune-batch', v['prune-batch'] as string,
      '--retention-pass-ms', v['retention-pass-ms'] as string,
    ];
    for (let i = 1; i <= O; i++) start(`orc-${i}`, ['orc', '--id', `orc-${i}`, '--session-timeout-ms', '10000', ...retention], 'orc ready');
    start('hollow', ['compute', '--hollow', String(C), '--id-prefix', 'hc', '--vcpus', '100000', '--ram-mb', '100000000', '--disk-gb', '10000000', '--session-timeout-ms', '10000', '--hypervisor-report-ms', '30000'], 'fleet ready');
    const until = async (what: string, fn: () => boolean | Promise<boolean>, ms = 300_000) => {
      const end = Date.now() + ms;
      while (!(await fn())) {
        for (const p of procs) if (!p.p.running) throw new Error(`${p.name} exited while waiting for ${what}; see ${join(dir, `${p.name}.log`)}`);
        if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
        await sleep(200);
      }
    };
    await until('every process', () => procs.every((p) => p.ready()));
    client = await Zk.connect(zk.connectionString, { sessionTimeoutMs: 10_000 });
    const paths = new Paths(root);
    const shards = (await client.get<{ shards: number }>(paths.config))!.value!.shards;
    await until('every shard owned', async () => {
      const r = await call(apiPort, 'GET', '/v1/shards').catch(() => null);
      return !!r && r.status === 200 && Object.keys(r.body).length === shards && Object.values(r.body).every((x) => x !== null);
    });
    endings = new Endings(client, paths);
    await endings.start();
    emit({ event: 'start', computes: C, orcs: O, concurrency: conc, shards, retention: Object.fromEntries(Object.entries(v).filter(([k]) => /retention|per-server|prune/.test(k))) });

    // The list calls, sampled all along.
    const listMs: number[] = [];
    const lists = (async () => {
      for (let i = 0; !stopLists; i++) {
        const t = performance.now();
        const r = await call(apiPort, 'GET', i % 2 === 0 ? '/v1/servers?limit=100' : '/v1/work-units?limit=100').catch(() => null);
        if (r?.status === 200) listMs.push(performance.now() - t);
        await sleep(Number(v['list-every-ms']));
      }
    })();

    let done = 0;
    let started = 0;
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
      const b = await call(apiPort, 'POST', '/v1/servers', { name: `churn-${n}`, flavor: { vcpus: 1, ram_mb: 256, disk_gb: 1 } });
      if (b.status !== 202) return fail({ boot: b.status, body: b.body });
      const built = await endings!.wait(b.body.work_unit_id);
      if (built !== 'SUCCEEDED') fail({ build: built });
      for (;;) {
        const d = await call(apiPort, 'DELETE', `/v1/servers/${b.body.server_id}`);
        if (d.status === 409) {
          await sleep(20); // the server is still busy: its build's finish has not reached it yet
          continue;
        }
        if (d.status !== 202) return fail({ delete: d.status, body: d.body });
        const deleted = await endings!.wait(d.body.work_unit_id);
        if (deleted !== 'SUCCEEDED') fail({ deleted });
        return;
      }
    };
    await Promise.all(
      Array.from({ length: Math.min(conc, cycles) }, async () => {
        while (started < cycles) {
          const n = started++;
          await cycle(n).catch((err: Error) => fail({ error: err.message }));
          done++;
          if (done >= nextLine) {
            nextLine += every;
            lining = lining.then(lineSurely);
          }
          if (done % 1000 === 0) say(`${done} cycles, ${Math.round(done / ((performance.now() - t0) / 1000))}/s`);
        }
      }),
    );
    await lining;
    if (done % every !== 0) await lineSurely();
    stopLists = true;
    await lists;
    const left = await call(apiPort, 'GET', '/v1/servers?limit=1000');
    emit({ event: 'summary', cycles: done, seconds: Math.round((performance.now() - t0) / 100) / 10, errors, error_samples: errorSamples, servers_left: left.body?.length ?? null });
  } finally {
    stopLists = true;
    await endings?.stop().catch(() => {});
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
