// What the benches that drive a whole cluster (bench/e2e.ts, bench/churn.ts) share: the cluster
// itself (the api, orcs and one process of hollow computes, on a ZooKeeper the bench started),
// started and waited for the same way; the api through one keep-alive agent with the admin token;
// units' ends heard from one watch; ZooKeeper's own figures; and what /proc says of a process
// (CPU time, memory, its threads).
import { readFileSync, readdirSync } from 'node:fs';
import http from 'node:http';
import { join } from 'node:path';
import { Zk } from '../ts/zk/client.js';
import { Paths } from '../ts/zk/paths.js';
import { shardOf } from '../ts/common/model.js';
import { fourLetter, freePort, type RunningZooKeeper } from '../ts/dev/zookeeper.js';
import { QuarkCluster, type Launcher, type LaunchedProcess } from '../ts/dev/cluster.js';
import { mintAdminToken } from '../ts/auth/local.js';
import { CREDENTIALS_ENV, credentialFiles, writeCredentialsDir } from '../ts/zk/acl.js';
import { readConfig } from '../ts/zk/config.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

// ---------------------------------------------------------------------------------------------
// ZooKeeper's own figures

/** ZooKeeper's `mntr` four-letter word, as name → value. */
export async function mntr(port: number): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  for (const line of (await fourLetter(port, 'mntr')).split('\n')) {
    const [k, v] = line.split('\t');
    if (k && v !== undefined) out[k] = v;
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// Processes, from /proc

/** A /proc stat file: the command name and the fields after it (state first); undefined once gone. */
function procStat(path: string): { comm: string; fields: string[] } | undefined {
  let raw: string;
  try {
    raw = readFileSync(path, 'utf8');
  } catch {
    return undefined;
  }
  // The name may hold spaces and parentheses: it runs from the first '(' to the last ')'.
  return { comm: raw.slice(raw.indexOf('(') + 1, raw.lastIndexOf(')')), fields: raw.slice(raw.lastIndexOf(') ') + 2).split(' ') };
}

/** utime and stime of a stat's fields, in seconds (clock ticks, USER_HZ = 100). */
const userSys = (f: string[]) => ({ user: Number(f[11]) / 100, sys: Number(f[12]) / 100 });

/** CPU seconds (user + system) a process has used so far; 0 once it is gone. */
export function cpuSeconds(pid: number): number {
  const s = procStat(`/proc/${pid}/stat`);
  if (!s) return 0;
  const t = userSys(s.fields);
  return t.user + t.sys;
}

/**
 * CPU seconds per thread of `pid`, summed by thread name with digits dropped
 * ("NIOWorkerThread-#"); the kernel's part of each appears again under "<name> [sys]".
 */
export function threadCpu(pid: number): Map<string, number> {
  const out = new Map<string, number>();
  let tids: string[];
  try {
    tids = readdirSync(`/proc/${pid}/task`);
  } catch {
    return out;
  }
  for (const tid of tids) {
    const s = procStat(`/proc/${pid}/task/${tid}/stat`);
    if (!s) continue; // the thread exited
    const name = s.comm.replace(/\d+/g, '#');
    const t = userSys(s.fields);
    out.set(name, (out.get(name) ?? 0) + t.user + t.sys);
    out.set(`${name} [sys]`, (out.get(`${name} [sys]`) ?? 0) + t.sys);
  }
  return out;
}

/** Cores per thread group between two threadCpu() samples `s` seconds apart, busiest first, with `total`. */
export function threadCores(a: Map<string, number>, b: Map<string, number>, s: number): Record<string, number> {
  const rows = [...b].map(([k, v]) => [k, (v - (a.get(k) ?? 0)) / s] as const).filter(([, c]) => c >= 0.005);
  rows.sort((x, y) => y[1] - x[1]);
  const sum = (m: Map<string, number>, sys: boolean) => [...m].filter(([k]) => k.endsWith(' [sys]') === sys).reduce((x, [, y]) => x + y, 0);
  const total = sum(b, false) - sum(a, false);
  const sys = sum(b, true) - sum(a, true);
  return { total: +(total / s).toFixed(3), 'total [sys]': +(sys / s).toFixed(3), ...Object.fromEntries(rows.map(([k, c]) => [k, +c.toFixed(3)])) };
}

export function rssMb(pid: number): { rss_mb: number; hwm_mb: number } {
  try {
    const s = readFileSync(`/proc/${pid}/status`, 'utf8');
    const kb = (k: string) => Number(new RegExp(`${k}:\\s+(\\d+)`).exec(s)?.[1] ?? 0);
    return { rss_mb: Math.round(kb('VmRSS') / 102.4) / 10, hwm_mb: Math.round(kb('VmHWM') / 102.4) / 10 };
  } catch {
    return { rss_mb: 0, hwm_mb: 0 };
  }
}

/** The JVM under ZooKeeper's watchdog shell: the process itself if it is java, else its java child. */
export function jvmPid(pid: number): number {
  if (procStat(`/proc/${pid}/stat`)?.comm === 'java') return pid;
  for (const d of readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    const s = procStat(`/proc/${d}/stat`); // undefined: gone meanwhile
    if (s?.comm === 'java' && Number(s.fields[1]) === pid) return Number(d);
  }
  throw new Error(`no java process under ${pid}`);
}

// ---------------------------------------------------------------------------------------------
// The api

/** The cluster's api on 127.0.0.1, every call through one keep-alive agent and with the admin token. */
export class Api {
  private readonly agent: http.Agent;
  private readonly auth: Record<string, string>;

  constructor(
    readonly port: number,
    token: string,
    maxSockets: number,
  ) {
    this.agent = new http.Agent({ keepAlive: true, maxSockets });
    this.auth = { authorization: `Bearer ${token}` };
  }

  call(method: string, path: string, body?: unknown): Promise<{ status: number; body: any }> {
    const data = body === undefined ? undefined : JSON.stringify(body);
    return new Promise((resolve, reject) => {
      const req = http.request(
        {
          host: '127.0.0.1',
          port: this.port,
          path,
          method,
          agent: this.agent,
          headers: { ...this.auth, ...(data ? { 'content-type': 'application/json', 'content-length': Buffer.byteLength(data) } : {}) },
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

  destroy(): void {
    this.agent.destroy();
  }
}

// ---------------------------------------------------------------------------------------------
// The cluster

/** A process of the bench's cluster and the output lines of it the bench keeps. */
export interface BenchProc {
  name: string;
  p: LaunchedProcess;
  log: string;
  lines: string[];
  count(substr: string): number;
}

export interface BenchClusterOptions {
  zk: RunningZooKeeper;
  root: string;
  /** Each process's output goes to <dir>/<name>.log; credentials, if any, to <dir>/zk-credentials. */
  dir: string;
  /** ZooKeeper ACLs: true, every process with its role's credentials; false, none; omitted, the environment's. */
  acl?: boolean;
  /** Which output lines a process keeps (BenchProc.lines), for the bench's waits and reports. */
  keep: (line: string, stream: 'stdout' | 'stderr') => boolean;
  /** Node's own options for a process (e.g. --cpu-prof). */
  nodeArgs?: (name: string) => string[];
  /** The api calls in flight at once. */
  maxSockets: number;
  /** How long until() waits unless told. */
  waitMs: number;
}

/**
 * The api, orcs and hollow computes of a bench, as processes of one QuarkCluster on the bench's
 * ZooKeeper. The bench holds the admin token (minted in start()) and stops the processes.
 */
export class BenchCluster {
  readonly procs: BenchProc[] = [];

  private constructor(
    private readonly launcher: Launcher,
    private readonly o: BenchClusterOptions,
    private readonly cluster: QuarkCluster,
    readonly api: Api,
  ) {}

  /** Sets up the credentials (with ACLs), picks the api's port and mints the admin token; starts no process. */
  static async start(launcher: Launcher, o: BenchClusterOptions): Promise<BenchCluster> {
    // With ACLs the bench acts as the admin (it sets the root up, mints the token, watches the
    // units) and each process gets its own role's credentials.
    const credentials = o.acl === undefined ? undefined : o.acl ? join(o.dir, 'zk-credentials') : null;
    if (credentials) {
      writeCredentialsDir(credentials);
      process.env[CREDENTIALS_ENV] = credentialFiles(credentials).admin;
      const admin = await Zk.connect(o.zk.connectionString);
      await readConfig(admin, new Paths(o.root)).finally(() => admin.close());
    } else if (credentials === null) {
      process.env[CREDENTIALS_ENV] = '';
    }
    const apiPort = await freePort();
    const cluster = new QuarkCluster(launcher, { zk: o.zk.connectionString, root: o.root, apiPort, logDir: o.dir, credentials });
    const token = await mintAdminToken(o.zk.connectionString, o.root);
    return new BenchCluster(launcher, o, cluster, new Api(apiPort, token, o.maxSockets));
  }

  /** Any quark subcommand as a process of the cluster. */
  start(name: string, args: string[]): BenchProc {
    const lines: string[] = [];
    const p = this.cluster.start(name, args, {
      nodeArgs: this.o.nodeArgs?.(name),
      onLine: (l, stream) => void (this.o.keep(l, stream) && lines.push(l)),
    });
    const proc: BenchProc = { name, p, log: join(this.o.dir, `${name}.log`), lines, count: (s) => lines.filter((l) => l.includes(s)).length };
    this.procs.push(proc);
    return proc;
  }

  /** The api, with no per-token rate limit: the load is the point. */
  startApi(extra: string[] = []): BenchProc {
    return this.start('api', ['api', '--port', String(this.api.port), '--rate-limit', '0', ...extra]);
  }

  /** Orcs orc-1 … orc-n. */
  startOrcs(n: number, extra: string[] = []): BenchProc[] {
    return Array.from({ length: n }, (_, i) => this.start(`orc-${i + 1}`, ['orc', '--id', `orc-${i + 1}`, ...extra]));
  }

  /** `n` hollow computes (hc-…) in one process, 'hollow', each with room for any number of boots. */
  startHollow(n: number, extra: string[] = []): BenchProc {
    return this.start('hollow', ['compute', '--hollow', String(n), '--id-prefix', 'hc', '--vcpus', '100000', '--ram-mb', '100000000', '--disk-gb', '10000000', ...extra]);
  }

  /** Resolves once `fn` holds; rejects as soon as a process has exited, or after `ms`. */
  async until(what: string, fn: () => boolean | Promise<boolean>, ms = this.o.waitMs): Promise<void> {
    const end = Date.now() + ms;
    while (!(await fn())) {
      for (const p of this.procs) if (!p.p.running) throw new Error(`${p.name} exited (${p.p.exit?.signal ?? p.p.exit?.code}) while waiting for ${what}; see ${p.log}`);
      if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
      await sleep(200);
    }
  }

  /**
   * The bench's own ZooKeeper session (the admin's, with ACLs), the cluster's paths and its number
   * of shards, once every shard has an owner; the caller closes the session.
   */
  async connect(): Promise<{ client: Zk; paths: Paths; shards: number }> {
    const client = await Zk.connect(this.o.zk.connectionString, { sessionTimeoutMs: 10_000 });
    try {
      const paths = new Paths(this.o.root);
      const shards = (await client.get<{ shards: number }>(paths.config))!.value!.shards;
      await this.until('every shard owned', async () => {
        const r = await this.api.call('GET', '/v1/shards').catch(() => null);
        return !!r && r.status === 200 && Object.keys(r.body).length === shards && Object.values(r.body).every((x) => x !== null);
      });
      return { client, paths, shards };
    } catch (err) {
      await client.close().catch(() => {});
      throw err;
    }
  }

  /** Stops every process of the cluster (not ZooKeeper). */
  stop(): Promise<void> {
    return this.launcher.stop(this.procs.map((p) => p.p));
  }
}

// ---------------------------------------------------------------------------------------------
// Units' ends

export interface Ending {
  ok: boolean;
  state: string;
  error?: unknown;
}

/**
 * Learns when units finish from one persistent recursive watch on the shards (ZooKeeper 3.6+):
 * the finishing transaction removes the unit's inbox entry, and its 'deleted' event names the
 * unit, so a finished unit costs the bench one notification and one read of the unit's state
 * (a one-shot children watch per inbox cost a notification and a listing per change). An entry
 * can go before its 202 has been read here: such names wait in `gone` until `wait` asks. After
 * a reconnect (events meanwhile are lost) every pending unit's shard is listed once.
 */
export class Finisher {
  private readonly pending = new Map<string, { shard: number; resolve: (e: Ending) => void }>();
  private readonly gone = new Set<string>();
  private stopped = false;
  private watch: Promise<{ stop(): Promise<void> }>;
  private readonly inboxPrefix: RegExp;

  constructor(
    private readonly zk: Zk,
    private readonly paths: Paths,
    private readonly shards: number,
  ) {
    this.inboxPrefix = new RegExp(`^${paths.shards.replace(/[.]/g, '\\.')}/\\d+/inbox/([^/]+)$`);
    this.watch = zk.persistentWatch(paths.shards, 'recursive', (ev) => {
      if (ev.type !== 'deleted') return;
      const m = this.inboxPrefix.exec(ev.path);
      if (m) this.finished(m[1]!);
    });
    zk.on('state', this.onState);
  }

  /** Resolves once the persistent watch is set; units must not be asked for before. */
  ready(): Promise<void> {
    return this.watch.then(() => undefined);
  }

  wait(wu: string): Promise<Ending> {
    return new Promise((resolve) => {
      this.pending.set(wu, { shard: shardOf(wu, this.shards), resolve });
      if (this.gone.delete(wu)) this.finished(wu);
    });
  }

  private finished(wu: string): void {
    const p = this.pending.get(wu);
    if (!p) return void this.gone.add(wu);
    this.pending.delete(wu);
    void this.zk.get<{ state: string; error?: unknown }>(this.paths.workUnit(wu as never)).then(
      (r) => p.resolve({ ok: r?.value?.state === 'SUCCEEDED', state: r?.value?.state ?? 'MISSING', error: r?.value?.error }),
      () => p.resolve({ ok: false, state: 'READ_FAILED' }),
    );
  }

  private readonly onState = (s: string): void => {
    if (s !== 'RECONNECTED' || this.stopped) return;
    for (const shard of new Set([...this.pending.values()].map((p) => p.shard))) void this.list(shard);
  };

  private async list(n: number): Promise<void> {
    const kids = await this.zk.children(this.paths.inbox(n)).catch(() => undefined);
    if (kids === undefined) return void setTimeout(() => void this.list(n), 100);
    const present = new Set(kids ?? []);
    for (const [wu, p] of this.pending) if (p.shard === n && !present.has(wu)) this.finished(wu);
  }

  stop(): void {
    this.stopped = true;
    this.zk.off('state', this.onState);
    void this.watch.then((w) => w.stop()).catch(() => {});
  }
}
