// `quark up`: a whole local cluster for a newcomer. ZooKeeper (data under .quark/), one api, N orcs
// and M computes on the libvirt test driver, each a real process started by the cluster launcher
// (ts/dev/cluster.ts) and supervised like systemd's Restart=on-failure; then a demo VM is booted.
// Ctrl-C stops everything, children first, ZooKeeper last.
import { closeSync, mkdirSync, openSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { spawn } from 'node:child_process';
import net from 'node:net';
import { join, resolve } from 'node:path';
import { DEFAULT_SUPERVISION, Launcher, QuarkCluster, quarkMain } from '../dev/cluster.js';
import { freePort } from '../dev/zookeeper.js';
import { authHeaders, ensureLocalAdminToken } from '../auth/local.js';
import { CREDENTIALS_ENV, credentialFiles, writeCredentialsDir } from '../zk/acl.js';
import { Zk } from '../zk/client.js';
import { Paths } from '../zk/paths.js';
import { AclSetupError, readConfig } from '../zk/config.js';
import { secureRoot } from '../zk/acl-secure.js';
import { LOCAL_CREDENTIALS_DIR } from './zk-credentials.js';
import { clearUpState, isReady, isRunning, probeCluster, runningUp, waitingLine, wipeState, writeUpState } from './local.js';
import { readableLogLine } from './logs.js';
import { UsageError } from './errors.js';

export interface UpOptions {
  orcs: number;
  computes: number;
  apiPort: number;
  zkPort: number;
  demo: boolean;
  root: string;
  sessionTimeoutMs: number;
  /** ZooKeeper ACLs per role (default on): credentials in .quark/zk-credentials/. */
  zkAcl?: boolean;
  /** test: libvirt's test driver; qemu: real guests (ts/dev/qemu-up.ts). */
  hypervisor?: 'test' | 'qemu';
  /** Empty .quark/ (but its image cache) first. */
  fresh?: boolean;
  /** Run in the background and return once the cluster is up (quark status, quark down). */
  detach?: boolean;
  /** Every process's log lines, merged and readable, on stdout. */
  logs?: boolean;
  /** Prometheus listeners for the orcs and computes: orc-i on base+i-1, then compute-j after the orcs (the api serves its own /metrics). */
  metricsPort?: number;
  /** The command line `up` was given, for the background copy --detach starts. */
  argv?: string[];
}

/** Set in the background copy of `up` that --detach starts. */
const DETACHED_ENV = 'QUARK_UP_DETACHED';
/** The line the background copy prints once the cluster is up (and its demo done). */
const DETACHED_READY = 'quark status shows it; quark down stops it.';

function portFree(port: number): Promise<boolean> {
  return new Promise((res) => {
    const s = net.createServer();
    s.once('error', () => res(false));
    s.listen(port, '127.0.0.1', () => s.close(() => res(true)));
  });
}

const say = (s: string): void => void process.stdout.write(`${s}\n`);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function http<T>(url: string, init?: RequestInit): Promise<{ status: number; body: T }> {
  const res = await fetch(url, { ...init, headers: { 'content-type': 'application/json', ...authHeaders(), ...(init?.headers ?? {}) } });
  return { status: res.status, body: (await res.json()) as T };
}

export async function up(o: UpOptions): Promise<void> {
  const home = resolve('.quark');
  const running = runningUp(home);
  if (running) {
    throw new UsageError(`a cluster is already running here (quark up, pid ${running.pid}, api ${running.api}); quark status shows it, quark logs -f its logs, quark down stops it`);
  }
  if (o.detach && o.logs) throw new UsageError('--logs shows the logs in this terminal; drop --detach (quark logs -f shows a detached cluster\'s)');
  metricsPorts(o); // a bad --metrics-port is refused before anything starts
  const detachedChild = process.env[DETACHED_ENV] === '1';
  if (o.fresh && !detachedChild) {
    const removed = wipeState(home);
    say(removed.length > 0 ? `--fresh: removed .quark/{${removed.join(',')}} (kept the image cache)` : '--fresh: .quark/ was already empty');
  }
  if (o.detach && !detachedChild) return detach(home, o);
  const logs = join(home, 'logs');
  mkdirSync(logs, { recursive: true });
  if (!(await portFree(o.apiPort))) throw new Error(`port ${o.apiPort} is in use; pick another with --port`);
  let zkPort = o.zkPort;
  if (!(await portFree(zkPort))) {
    zkPort = await freePort();
    say(`port ${o.zkPort} is in use; ZooKeeper will listen on ${zkPort}`);
  }

  // A child that dies unexpectedly is started again (with backoff, logged here), and given up
  // after so many failures in a row; its log says why.
  const launcher = new Launcher({ supervision: DEFAULT_SUPERVISION, graceMs: 5000, say });
  let stopping = false;
  const stopAll = async (code: number): Promise<void> => {
    if (stopping) return;
    stopping = true;
    say('\nstopping the cluster…');
    await launcher.stopAll();
    clearUpState(process.pid, home);
    say('stopped.');
    process.exit(code);
  };
  process.on('SIGINT', () => void stopAll(0));
  process.on('SIGTERM', () => void stopAll(0));

  const qemu = o.hypervisor === 'qemu' ? await (await import('../dev/qemu-up.js')).prepareQemu({ home, say }) : undefined;

  say(`starting ZooKeeper on 127.0.0.1:${zkPort} (data in .quark/zk)…`);
  const zk = await launcher.startZooKeeper({ dataDir: join(home, 'zk'), clientPort: zkPort });
  const credentials = o.zkAcl === false ? null : resolve(LOCAL_CREDENTIALS_DIR);
  if (credentials) {
    const { created } = writeCredentialsDir(credentials);
    // This process acts as the admin: it sets the root up and makes the admin token.
    process.env[CREDENTIALS_ENV] = credentialFiles(credentials).admin;
    say(`${created ? 'made' : 'reusing'} the ZooKeeper credentials in .quark/zk-credentials/ (mode 0600: one file per role; every process gets its own)`);
    await setUpRoot(zk.connectionString, o.root);
  } else {
    process.env[CREDENTIALS_ENV] = '';
  }
  const admin = await ensureLocalAdminToken({ zk: zk.connectionString, root: o.root, home });
  process.env.QUARK_TOKEN = admin.token; // this cluster's, over any stale one in the caller's shell
  say(`${admin.created ? 'created an' : 'reusing the'} admin token in .quark/token (mode 0600; the CLI and the examples below read it)`);
  const cluster = new QuarkCluster(launcher, {
    token: admin.token,
    credentials,
    zk: zk.connectionString,
    root: o.root,
    sessionTimeoutMs: o.sessionTimeoutMs,
    apiPort: o.apiPort,
    logDir: logs,
  });
  const api = cluster.api;
  writeFileSync(join(home, 'cluster.json'), JSON.stringify({ zk: zk.connectionString, api, root: o.root }, null, 2));
  writeUpState({ pid: process.pid, api, zk: zk.connectionString, detached: detachedChild, started_at: new Date().toISOString(), orcs: o.orcs, computes: o.computes }, home);
  // --logs: each process's lines, prefixed with its name, as they come.
  const width = Math.max(3, `orc-${o.orcs}`.length, `compute-${o.computes}`.length);
  const tee = (name: string) =>
    o.logs ? { onLine: (line: string) => void process.stdout.write(`${readableLogLine(name, line, { width, color: process.stdout.isTTY })}\n`) } : {};
  cluster.startApi([], tee('api'));
  const metrics = metricsPorts(o);
  const metricsArgs = (name: string): string[] => (metrics.has(name) ? ['--metrics-port', String(metrics.get(name))] : []);
  for (let i = 1; i <= o.orcs; i++) cluster.startOrc(`orc-${i}`, metricsArgs(`orc-${i}`), tee(`orc-${i}`));
  for (let i = 1; i <= o.computes; i++) cluster.startCompute(`compute-${i}`, [...(qemu?.computeArgs(i) ?? []), ...metricsArgs(`compute-${i}`)], tee(`compute-${i}`));

  // Ready when the API answers, every orc and compute is there and every shard has an owner. A
  // qemu compute probes its accelerator first, once per host.
  const readyS = qemu ? 180 : 60;
  if (!(await waitReady(api, admin.token, { orcs: o.orcs, computes: o.computes }, readyS * 1000, !o.logs))) {
    say(`the cluster did not come up within ${readyS} s; see .quark/logs/`);
    return stopAll(1);
  }
  say(`cluster up: api ${api}, ${o.orcs} orcs, ${o.computes} computes (${qemu?.describe ?? 'libvirt test:///default'}), ZooKeeper ${zk.connectionString}`);
  if (metrics.size > 0) say(`metrics: ${api}/metrics (admin token), ${[...metrics].map(([name, port]) => `${name} http://127.0.0.1:${port}/metrics`).join(', ')}`);

  if (o.demo) await (qemu ? qemu.demo(api) : demo(api));

  say(`
Where to look:
  ${api}/ui                 the visualizer (it asks once for the token: cat .quark/token)
  npx quark server create web-1 --vcpus 2 --ram-mb 2048 --wait   # boot a VM, step by step
  npx quark server list                    # servers; -o json for scripts
  npx quark compute list; npx quark shard list
  npx quark token create --project demo --role member     # a token for someone else
  npx quark zk tree /quark/computes        # the ZooKeeper directories, decoded
  npx quark --help                         # every command (each has its own --help)
  state: .quark/ (npx quark up --fresh starts from empty); logs: .quark/logs/ (npx quark up --logs shows them merged)
${detachedChild ? DETACHED_READY : 'Ctrl-C stops everything.'}`);
}

/** Each orc's and compute's metrics port under --metrics-port BASE (none without it). */
export function metricsPorts(o: Pick<UpOptions, 'orcs' | 'computes' | 'metricsPort'>): Map<string, number> {
  const out = new Map<string, number>();
  if (o.metricsPort === undefined) return out;
  const last = o.metricsPort + o.orcs + o.computes - 1;
  if (o.metricsPort < 1 || last > 65535) throw new UsageError(`--metrics-port ${o.metricsPort} leaves no room for ${o.orcs + o.computes} listeners (ports ${o.metricsPort}..${last})`);
  for (let i = 1; i <= o.orcs; i++) out.set(`orc-${i}`, o.metricsPort + i - 1);
  for (let i = 1; i <= o.computes; i++) out.set(`compute-${i}`, o.metricsPort + o.orcs + i - 1);
  return out;
}

/**
 * Waits until the cluster is ready, saying what it still waits for: on a terminal one line
 * rewritten in place, elsewhere a line whenever that changes. False after `timeoutMs`.
 */
async function waitReady(api: string, token: string, want: { orcs: number; computes: number }, timeoutMs: number, show: boolean): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  const tty = process.stdout.isTTY && show;
  let shown = '';
  try {
    for (;;) {
      const p = await probeCluster(api, token);
      if (isReady(p, want)) return true;
      const line = waitingLine(p, want);
      if (show && line !== shown) {
        process.stdout.write(tty ? `\r\x1b[K${line}` : `${line}\n`);
        shown = line;
      }
      if (Date.now() + 250 > deadline) return false;
      await sleep(250);
    }
  } finally {
    if (tty && shown) process.stdout.write('\r\x1b[K');
  }
}

/**
 * --detach: runs `up` again in the background (its own session, output to .quark/logs/up.log),
 * shows that log until the cluster is up, then returns. If the background copy dies first, its
 * log's end says why and the exit status is 1.
 */
async function detach(home: string, o: UpOptions): Promise<void> {
  mkdirSync(join(home, 'logs'), { recursive: true });
  const logFile = join(home, 'logs', 'up.log');
  writeFileSync(logFile, '');
  const fd = openSync(logFile, 'a');
  const args = (o.argv ?? ['up']).filter((a) => a !== '--detach' && a !== '--fresh');
  const child = spawn(process.execPath, [quarkMain(), ...args], {
    detached: true,
    stdio: ['ignore', fd, fd],
    env: { ...process.env, [DETACHED_ENV]: '1' },
  });
  closeSync(fd);
  child.unref();
  const pid = child.pid!;
  say(`starting the cluster in the background (quark up, pid ${pid}; its output: .quark/logs/up.log)`);
  let offset = 0;
  let partial = '';
  for (;;) {
    const size = statSync(logFile).size;
    if (size > offset) {
      const text = partial + readFileSync(logFile).subarray(offset, size).toString('utf8');
      offset = size;
      const lines = text.split('\n');
      partial = lines.pop() ?? '';
      for (const line of lines) {
        say(line);
        if (line === DETACHED_READY) return;
      }
    }
    if (!isRunning(pid)) {
      if (partial) say(partial);
      say(`quark up (pid ${pid}) stopped before the cluster was up; see .quark/logs/`);
      process.exitCode = 1;
      return;
    }
    await sleep(200);
  }
}

/**
 * Puts the root under ZooKeeper ACLs as the admin. A cluster an older `quark up` left in .quark/zk
 * without ACLs is migrated (quark zk secure), saying so: it is this machine's own.
 */
async function setUpRoot(connectionString: string, root: string): Promise<void> {
  const zk = await Zk.connect(connectionString, { connectTimeoutMs: 15_000 });
  try {
    const paths = new Paths(root);
    try {
      await readConfig(zk, paths);
    } catch (e) {
      if (!(e instanceof AclSetupError && e.code === 'ZK_ROOT_WITHOUT_ACLS')) throw e;
      say(`${root} in .quark/zk was made without ZooKeeper ACLs: putting them on (quark zk secure)…`);
      const r = await secureRoot(zk, paths);
      say(`ACLs set on ${r.nodes} nodes`);
    }
  } finally {
    await zk.close();
  }
}

async function demo(api: string): Promise<void> {
  const created = await http<{ work_unit_id: string; server_id: string }>(`${api}/v1/servers`, {
    method: 'POST',
    body: JSON.stringify({ name: 'hello-quark', flavor: { vcpus: 1, ram_mb: 512, disk_gb: 10 } }),
  });
  if (created.status !== 202) {
    say(`demo boot was refused: ${JSON.stringify(created.body)}`);
    return;
  }
  say(`booting demo VM hello-quark: server ${created.body.server_id}, work unit ${created.body.work_unit_id}`);
  const deadline = Date.now() + 60_000;
  for (;;) {
    const wu = await http<{ state: string; compute_id: string | null; steps_completed: Array<{ name: string; time_to_completion_ms: number }>; error?: { code: string; message: string } }>(
      `${api}/v1/work-units/${created.body.work_unit_id}`,
    );
    if (wu.body.state === 'SUCCEEDED' || wu.body.state === 'FAILED' || Date.now() > deadline) {
      const steps = wu.body.steps_completed.map((s) => `${s.name} ${s.time_to_completion_ms} ms`).join(', ');
      say(`demo work unit ${wu.body.state} on ${wu.body.compute_id ?? '-'}: ${steps}${wu.body.error ? ` — ${wu.body.error.code}: ${wu.body.error.message}` : ''}`);
      const server = await http<{ status: string }>(`${api}/v1/servers/${created.body.server_id}`);
      say(`server hello-quark is ${server.body.status}`);
      return;
    }
    await sleep(100);
  }
}
