// The fault suite's runner: for each planned run (plan.ts) it starts a real cluster (ZooKeeper,
// an api, two orcs, three computes on the libvirt test driver, each process supervised as
// `quark up` does), submits boots, actions and deletes, lands the run's fault for real (kill -9,
// a ZooKeeper restart or leader kill, a power cut of everything, a cut link), waits for the
// cluster to settle and checks what must hold (invariants.ts) on what ZooKeeper then holds.
// One JSON line per run and a summary; `npm run chaos -- --seed S --runs N` (main.ts).
// By default a run's cluster is under ZooKeeper ACLs as `quark up`'s is: a credentials directory
// in the run's own temp dir, the runner's sessions as admin, each process with its role's file
// only (a compute its own), and after the run a session without credentials must be refused
// every node it tries (NO_AUTH) — the proof that the ACLs were really on.
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Launcher, type LaunchedProcess, type Supervision } from '../cluster.js';
import { FaultyLink } from '../faulty-link.js';
import { freePort, startEnsemble, startZooKeeper, type Ensemble, type RunningZooKeeper } from '../zookeeper.js';
import { mintAdminToken } from '../../auth/local.js';
import { Zk } from '../../zk/client.js';
import { CREDENTIALS_ENV, credentialFiles, readCredentials, writeCredentialsDir, type Credentials } from '../../zk/acl.js';
import { readConfig } from '../../zk/config.js';
import { isZkError } from '../../zk/errors.js';
import { Paths } from '../../zk/paths.js';
import { lockQueue } from '../../zk/recipes/lock.js';
import { checkManaged, checkServer, checkTask, checkWorkUnit, readRecord } from '../../lifecycle/records.js';
import { addConsumes, ZERO, type AliveRecord, type ClusterConfig, type ComputeCapacity, type Consumes, type ServerRecord, type WorkUnitRecord } from '../../common/model.js';
import type { ComputeId, ServerId, WorkUnitId } from '../../common/ids.js';
import { FAULT_KINDS, planFaults, type FaultKind, type FaultPlan } from './plan.js';
import { checkInvariants, type ClusterSnapshot, type ComputeSnapshot, type Violation } from './invariants.js';

export interface ChaosOptions {
  seed: number;
  runs: number;
  kinds?: readonly FaultKind[];
  /** Every process's ZooKeeper session timeout (default 2000 ms). */
  sessionTimeoutMs?: number;
  /** Boots per run (default 12). */
  boots?: number;
  /** Faults land uniformly within this window after the workload starts (default 4000 ms). */
  windowMs?: number;
  /** How long a run may take to settle after its fault before what is left counts as stuck (default 90 s). */
  settleTimeoutMs?: number;
  /** Keep every run's process logs (default: only a run with violations keeps them). */
  keepLogs?: boolean;
  /** Run each cluster under ZooKeeper ACLs, every process with its role's credentials (default true). */
  zkAcl?: boolean;
  /** Each run's JSON line. */
  out?: (line: string) => void;
  /** Progress and supervision messages. */
  say?: (line: string) => void;
}

/** What the runner checks beyond the snapshot invariants. */
export interface RunViolation {
  invariant: Violation['invariant'] | 'not-settled' | 'shards-unowned' | 'process-down' | 'acl-open';
  subject: string;
  detail: string;
}

export interface RunReport {
  run: number;
  seed: number;
  kind: FaultKind;
  at_ms: number;
  down_ms: number;
  /** What was done to the cluster, each with the pid(s) it hit. */
  injected: string[];
  /** Processes their supervision started again after an unexpected exit (name, times). */
  restarted: Record<string, number>;
  boots: number;
  actions: number;
  units: number;
  succeeded: number;
  failed: Record<string, number>;
  /** From the fault until every unit had ended, every compute was alive and every shard owned by a live orc. */
  recovery_ms: number | null;
  /** From the fault's end (or the first live orc after it) until every shard was owned by a live orc. */
  shards_ms: number | null;
  violations: RunViolation[];
  /**
   * Under ACLs: the nodes a session without credentials tried to read after the run settled
   * (the root, its config, every unit, server and compute node) and how many it was refused
   * (NO_AUTH); each one it could read is an 'acl-open' violation. Absent with --zk-acl off.
   */
  acl_probe?: { nodes: number; refused: number };
  seconds: number;
  /** Where the run's process logs were kept (a run with violations, or --keep-logs). */
  logs?: string;
}

export interface ChaosSummary {
  runs: number;
  /** Whether the clusters ran under ZooKeeper ACLs. */
  zk_acl: boolean;
  faults: Record<string, number>;
  violations: number;
  boots: number;
  succeeded: number;
  failed: Record<string, number>;
  recovery_p50_ms: number | null;
  recovery_p99_ms: number | null;
  seconds: number;
}

const ROOT = '/quark';
const ORCS = ['orc-1', 'orc-2'];
const COMPUTES = ['compute-1', 'compute-2', 'compute-3'];
/** 16 vcpus (×4 overcommit) and 8 boots of RAM each: two computes still hold a whole run's boots. */
const COMPUTE_ARGS = ['--vcpus', '4', '--ram-mb', '4096', '--disk-gb', '100', '--step-delay-ms', '150'];
const FLAVOR = { vcpus: 1, ram_mb: 512, disk_gb: 5 };
/** `quark up`'s policy with shorter delays: a killed process is back within a second. */
const SUPERVISION: Supervision = { maxFailures: 5, baseDelayMs: 300, maxDelayMs: 2000, stableMs: 10_000 };
const POLL_MS = 200;

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** Rejects after `ms`: a read that hangs while ZooKeeper is away must not hold the poll. */
function within<T>(ms: number, p: Promise<T>): Promise<T> {
  let timer: NodeJS.Timeout;
  return Promise.race([p, new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(`no answer within ${ms} ms`)), ms)))]).finally(() =>
    clearTimeout(timer),
  );
}

export function percentile(sorted: number[], p: number): number | null {
  if (sorted.length === 0) return null;
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)]!;
}

// ---- ZooKeeper: one standalone server, or a three-server ensemble for a leader kill ------------

class Coordination {
  private standalone: RunningZooKeeper | undefined;
  ensemble: Ensemble | undefined;
  private constructor(
    private readonly dataDir: string,
    private readonly port: number,
  ) {}

  static async start(dir: string, ensemble: boolean): Promise<Coordination> {
    const c = new Coordination(join(dir, 'zk'), ensemble ? 0 : await freePort());
    if (ensemble) c.ensemble = await startEnsemble({ baseDir: join(dir, 'zk') });
    else await c.restart();
    return c;
  }

  get connectionString(): string {
    return this.ensemble ? this.ensemble.connectionString : `127.0.0.1:${this.port}`;
  }

  /** The standalone server, started (again) on the same data and port. */
  async restart(): Promise<number> {
    this.standalone = await startZooKeeper({ dataDir: this.dataDir, clientPort: this.port });
    return this.standalone.pid;
  }

  /** SIGKILL to the standalone server (or every ensemble member); resolves with the pids. */
  async kill(): Promise<number[]> {
    if (this.ensemble) {
      const pids = this.ensemble.servers.filter((s) => s.running).map((s) => s.pid);
      await Promise.all(this.ensemble.servers.map((s) => s.kill()));
      return pids;
    }
    const pid = this.standalone?.pid;
    await this.standalone?.kill();
    this.standalone = undefined;
    return pid === undefined ? [] : [pid];
  }

  async restartAll(): Promise<void> {
    if (this.ensemble) await Promise.all(this.ensemble.servers.map((s) => s.start()));
    else await this.restart();
  }

  async stop(): Promise<void> {
    await this.ensemble?.stop();
    await this.standalone?.stop();
  }
}

// ---- an admin session that outlives ZooKeeper restarts ----------------------------------------

class Admin {
  private zk: Zk | undefined;
  readonly paths = new Paths(ROOT);
  /** `credentials`: the admin's under ACLs, null without. */
  constructor(
    private readonly connect: string,
    private readonly credentials: Credentials | null,
  ) {}

  /** Runs `fn` on a connected session, connecting again if the last one was lost; bounded in time. */
  async use<T>(fn: (zk: Zk) => Promise<T>, timeoutMs = 5000): Promise<T> {
    try {
      if (!this.zk || this.zk.state === 'LOST') {
        const old = this.zk;
        this.zk = undefined;
        await old?.close();
        this.zk = await Zk.connect(this.connect, { sessionTimeoutMs: 30_000, connectTimeoutMs: timeoutMs, credentials: this.credentials });
      }
      const zk = this.zk;
      return await within(timeoutMs, fn(zk));
    } catch (err) {
      // A hung session is dropped: the next use connects afresh.
      const old = this.zk;
      this.zk = undefined;
      void old?.close();
      throw err;
    }
  }

  async close(): Promise<void> {
    await this.zk?.close();
    this.zk = undefined;
  }
}

interface Health {
  units: number;
  unfinished: number;
  computesAlive: number;
  /** Some orc's membership node belongs to a running process. */
  liveOrc: boolean;
  /** Every shard's lock is held (lowest candidate) by the session of a running orc. */
  shardsOwned: boolean;
}

async function health(zk: Zk, paths: Paths, shards: number): Promise<Health> {
  const units = (await zk.children(paths.workUnits)) ?? [];
  let unfinished = 0;
  await Promise.all(
    units.map(async (id) => {
      const r = await readRecord(zk, paths.workUnit(id as WorkUnitId), checkWorkUnit);
      if (r.state === 'ok' && r.value.state !== 'SUCCEEDED' && r.value.state !== 'FAILED') unfinished++;
    }),
  );
  let computesAlive = 0;
  for (const id of COMPUTES) {
    const a = await zk.get<AliveRecord>(paths.alive(id as ComputeId));
    if (a?.value && pidAlive(a.value.pid)) computesAlive++;
  }
  // Sessions of orcs whose process runs: a killed orc's nodes outlive it until its session expires.
  const live = new Set<string>();
  for (const id of (await zk.children(paths.orcs)) ?? []) {
    const m = await zk.get<{ pid: number }>(paths.orc(id));
    if (m?.value && pidAlive(m.value.pid)) live.add(m.stat.ephemeralOwner);
  }
  const owned = await Promise.all(
    Array.from({ length: shards }, async (_, n) => {
      const first = lockQueue((await zk.children(paths.shardLock(n))) ?? [])[0];
      if (!first) return false;
      const st = await zk.exists(`${paths.shardLock(n)}/${first.node}`);
      return st !== null && live.has(st.ephemeralOwner);
    }),
  );
  return { units: units.length, unfinished, computesAlive, liveOrc: live.size > 0, shardsOwned: owned.every(Boolean) };
}

/** What ZooKeeper holds, in the shape the invariants take. */
async function snapshot(zk: Zk, paths: Paths, config: ClusterConfig): Promise<ClusterSnapshot> {
  const units: WorkUnitRecord[] = [];
  for (const id of (await zk.children(paths.workUnits)) ?? []) {
    const r = await readRecord(zk, paths.workUnit(id as WorkUnitId), checkWorkUnit);
    if (r.state === 'ok') units.push(r.value);
  }
  const servers: ServerRecord[] = [];
  for (const id of (await zk.children(paths.servers)) ?? []) {
    const r = await readRecord(zk, paths.server(id as ServerId), checkServer);
    if (r.state === 'ok') servers.push(r.value);
  }
  const computes: ComputeSnapshot[] = [];
  for (const raw of (await zk.children(paths.computes)) ?? []) {
    const id = raw as ComputeId;
    const alive = await zk.get<AliveRecord>(paths.alive(id));
    const capacity = (await zk.get<ComputeCapacity>(paths.selfCapacity(id)))?.value ?? ZERO;
    let held: Consumes = ZERO;
    const managing = (await zk.children(paths.managing(id))) ?? [];
    for (const vm of managing) {
      const r = await readRecord(zk, paths.managed(id, vm as ServerId), checkManaged);
      if (r.state === 'ok') held = addConsumes(held, r.value.consumes);
    }
    // A build's claim holds its consumes until it commits (then its managing/ entry does).
    for (const dir of [paths.nextTasks(id), paths.activeTasks(id)]) {
      for (const wu of (await zk.children(dir)) ?? []) {
        const r = await readRecord(zk, `${dir}/${wu}`, checkTask);
        if (r.state === 'ok' && r.value.kind === 'build') held = addConsumes(held, r.value.consumes);
      }
    }
    // libvirt's own word, as the compute last published it (the test driver's domains live in
    // the compute's process, out of this process's reach).
    const hv = await zk.get<{ running?: string[] }>(`${paths.self(id)}/hypervisor`);
    const isAlive = !!alive?.value && pidAlive(alive.value.pid);
    computes.push({ id, alive: isAlive, capacity, held, managing, ...(isAlive && hv?.value?.running ? { running: hv.value.running } : {}) });
  }
  return { units, servers, computes, overcommit: config.overcommit };
}

/**
 * What a session without credentials gets on the root, its config and every unit, server and
 * compute node of the snapshot: under ACLs each read must be refused with NO_AUTH.
 */
export async function probeOpenReads(connect: string, paths: Paths, snap: ClusterSnapshot): Promise<{ nodes: number; refused: number; readable: string[] }> {
  const zk = await Zk.connect(connect, { credentials: null, connectTimeoutMs: 10_000 });
  try {
    const reads: Array<[string, () => Promise<unknown>]> = [
      [paths.root, () => zk.children(paths.root)],
      [paths.config, () => zk.get(paths.config)],
      [paths.workUnits, () => zk.children(paths.workUnits)],
      ...snap.units.map((u): [string, () => Promise<unknown>] => [paths.workUnit(u.id), () => zk.get(paths.workUnit(u.id))]),
      ...snap.servers.map((v): [string, () => Promise<unknown>] => [paths.server(v.id), () => zk.get(paths.server(v.id))]),
      ...snap.computes.map((c): [string, () => Promise<unknown>] => [paths.selfCapacity(c.id as ComputeId), () => zk.get(paths.selfCapacity(c.id as ComputeId))]),
    ];
    const readable: string[] = [];
    let refused = 0;
    for (const [path, read] of reads) {
      try {
        await read();
        readable.push(path);
      } catch (e) {
        if (!isZkError(e, 'NO_AUTH')) throw e;
        refused++;
      }
    }
    return { nodes: reads.length, refused, readable };
  } finally {
    await zk.close();
  }
}

// ---- the cluster's processes ------------------------------------------------------------------

interface Procs {
  api: LaunchedProcess;
  orcs: LaunchedProcess[];
  computes: LaunchedProcess[];
}

const all = (p: Procs): LaunchedProcess[] => [p.api, ...p.orcs, ...p.computes];

// ---- one run ----------------------------------------------------------------------------------

class Api {
  constructor(
    readonly url: string,
    private readonly token: string,
  ) {}

  async call(method: string, path: string, body?: unknown, headers: Record<string, string> = {}): Promise<{ status: number; body: unknown } | null> {
    try {
      const res = await fetch(`${this.url}${path}`, {
        method,
        headers: { authorization: `Bearer ${this.token}`, ...(body !== undefined ? { 'content-type': 'application/json' } : {}), ...headers },
        body: body !== undefined ? JSON.stringify(body) : undefined,
        signal: AbortSignal.timeout(5000),
      });
      const text = await res.text();
      return { status: res.status, body: text ? JSON.parse(text) : undefined };
    } catch {
      return null; // the api is down or restarting
    }
  }

  /**
   * Submits until accepted (202) or refused (a 4xx other than 429); through api restarts and
   * ZooKeeper outages (5xx, no answer) it tries again, for at most `forMs`.
   */
  async submit(method: string, path: string, body: unknown, headers: Record<string, string>, forMs = 60_000): Promise<string | null> {
    const deadline = Date.now() + forMs;
    while (Date.now() < deadline) {
      const r = await this.call(method, path, body, headers);
      if (r?.status === 202) return (r.body as { work_unit_id: string }).work_unit_id;
      if (r && r.status >= 400 && r.status < 500 && r.status !== 429) return null;
      await sleep(250);
    }
    return null;
  }
}

async function oneRun(plan: FaultPlan, o: Required<Omit<ChaosOptions, 'kinds' | 'out'>>): Promise<RunReport> {
  const started = Date.now();
  const say = (line: string) => o.say(`[chaos run ${plan.run}] ${line}`);
  const dir = await mkdtemp(join(tmpdir(), `quark-chaos-${plan.run}-`));
  const launcher = new Launcher({ supervision: SUPERVISION, graceMs: 3000, say });
  const links: FaultyLink[] = [];
  let zk: Coordination | undefined;
  let admin: Admin | undefined;
  const injected: string[] = [];
  const violations: RunViolation[] = [];
  let keep = o.keepLogs;
  const report = (extra: Partial<RunReport>): RunReport => ({
    run: plan.run,
    seed: plan.seed,
    kind: plan.kind,
    at_ms: plan.atMs,
    down_ms: plan.downMs,
    injected,
    restarted: {},
    boots: 0,
    actions: 0,
    units: 0,
    succeeded: 0,
    failed: {},
    recovery_ms: null,
    shards_ms: null,
    violations,
    seconds: 0,
    ...extra,
  });
  try {
    // The credentials live in the run's own dir (0700, each file 0600), beside ZooKeeper's data:
    // a power cut's restart finds them there, as a restarted machine finds its own.
    const creds = o.zkAcl ? credentialFiles(join(dir, 'credentials')) : undefined;
    if (o.zkAcl) writeCredentialsDir(join(dir, 'credentials'), COMPUTES);
    const adminCredentials = creds ? readCredentials(creds.admin) : null;
    // Each process's file, by name, in its environment ('' without ACLs: none, whatever this
    // process's own environment says). A supervised restart reuses the spec, so the same file.
    const credentialsOf = (name: string): string => {
      if (!creds) return '';
      if (name === 'api') return creds.api;
      if (ORCS.includes(name)) return creds.orc;
      return creds.compute(name);
    };
    zk = await Coordination.start(dir, plan.kind === 'zk-leader-kill');
    const conn = zk.connectionString;
    admin = new Admin(conn, adminCredentials);
    // The admin puts the fresh root under ACLs before any other role may use it (ts/zk/config.ts).
    await admin.use((z) => readConfig(z, admin!.paths), 30_000);
    const token = await mintAdminToken(conn, ROOT, 'admin', adminCredentials);
    const apiPort = await freePort();
    const api = new Api(`http://127.0.0.1:${apiPort}`, token);

    // A cut link partitions one compute and one orc from ZooKeeper at once.
    const cutCompute = plan.kind === 'cut-link' ? COMPUTES[plan.target % COMPUTES.length] : undefined;
    const cutOrc = plan.kind === 'cut-link' ? ORCS[plan.target2 % ORCS.length] : undefined;
    const zkOf = new Map<string, string>();
    for (const name of [cutCompute, cutOrc]) {
      if (!name) continue;
      const link = await FaultyLink.start(conn);
      links.push(link);
      zkOf.set(name, link.address);
    }
    const common = (name: string) => ['--zk', zkOf.get(name) ?? conn, '--root', ROOT, '--session-timeout-ms', String(o.sessionTimeoutMs)];
    const start = (name: string, args: string[]) =>
      launcher.start({ name, args: [...args, ...common(name)], logFile: join(dir, `${name}.log`), env: { [CREDENTIALS_ENV]: credentialsOf(name) } });
    const startAll = (): Procs => ({
      api: start('api', ['api', '--port', String(apiPort), '--rate-limit', '0']),
      orcs: ORCS.map((id) => start(id, ['orc', '--id', id])),
      computes: COMPUTES.map((id) => start(id, ['compute', '--id', id, ...COMPUTE_ARGS])),
    });
    let procs = startAll();

    const config = (await admin.use(async (z) => (await z.get<ClusterConfig>(admin!.paths.config))?.value, 30_000)) ?? null;
    const shards = config?.shards ?? 64;
    const readyBy = Date.now() + 60_000;
    for (;;) {
      const h = await admin.use((z) => health(z, admin!.paths, shards)).catch(() => null);
      const up = (await api.call('GET', '/healthz'))?.status === 200;
      if (h && up && h.computesAlive === COMPUTES.length && h.shardsOwned) break;
      if (Date.now() > readyBy) throw new Error(`the cluster was not ready within 60 s (${JSON.stringify(h)}, api ${up ? 'up' : 'down'})`);
      await sleep(POLL_MS);
    }
    const cfg = config ?? ((await admin.use(async (z) => (await z.get<ClusterConfig>(admin!.paths.config))?.value)) as ClusterConfig);

    // ---- the workload: boots, then actions and deletes on what is up, through every fault ----
    const t0 = Date.now();
    let boots = 0;
    let actions = 0;
    const workload = (async () => {
      const booted = await Promise.all(
        Array.from({ length: o.boots }, async (_, i) => {
          await sleep(i * 150);
          const name = `chaos-${plan.run}-${i}`;
          const wu = await api.submit('POST', '/v1/servers', { name, flavor: FLAVOR }, { 'idempotency-key': `${plan.seed}-${name}` });
          if (wu) boots++;
          return wu;
        }),
      );
      void booted;
      await sleep(Math.max(0, t0 + 2500 - Date.now()));
      // Actions on servers that are up; a fault may hold the boots back for a while.
      let active: string[] = [];
      for (const until = Date.now() + 15_000; active.length < 4 && Date.now() < until; await sleep(250)) {
        const list = await api.call('GET', '/v1/servers');
        if (Array.isArray(list?.body)) active = (list.body as Array<{ id: string; status: string }>).filter((s) => s.status === 'ACTIVE').map((s) => s.id);
      }
      const todo: Array<[string, string]> = [];
      active.slice(0, 2).forEach((id) => todo.push(['DELETE', `/v1/servers/${id}`]));
      if (active[2]) todo.push(['stop', active[2]]);
      if (active[3]) todo.push(['reboot', active[3]]);
      await Promise.all(
        todo.map(async ([what, target]) => {
          const wu =
            what === 'DELETE' ? await api.submit('DELETE', target, undefined, {}) : await api.submit('POST', `/v1/servers/${target}/actions`, { action: what }, {});
          if (wu) actions++;
        }),
      );
    })();

    // ---- the fault ----
    await sleep(plan.atMs);
    const tFault = Date.now();
    let faultEnd: number | undefined;
    const kill = async (p: LaunchedProcess) => {
      const pid = p.pid;
      p.signal('SIGKILL');
      await p.exited;
      injected.push(`kill -9 ${p.name} (pid ${pid})`);
    };
    const fault = (async () => {
      switch (plan.kind) {
        case 'kill-orc':
          await kill(procs.orcs[plan.target % ORCS.length]!);
          break;
        case 'kill-compute':
          await kill(procs.computes[plan.target % COMPUTES.length]!);
          break;
        case 'kill-api':
          await kill(procs.api);
          break;
        case 'kill-compute-and-orc':
          await Promise.all([kill(procs.computes[plan.target % COMPUTES.length]!), kill(procs.orcs[plan.target2 % ORCS.length]!)]);
          break;
        case 'zk-restart': {
          const pids = await zk!.kill();
          const pid = await zk!.restart();
          injected.push(`kill -9 zookeeper (pid ${pids.join(', ')}), started again on its data (pid ${pid})`);
          break;
        }
        case 'zk-leader-kill': {
          const e = zk!.ensemble!;
          const leader = await e.leader();
          const pid = e.servers[leader]!.pid;
          await e.servers[leader]!.kill();
          injected.push(`kill -9 zookeeper leader server ${e.servers[leader]!.id} (pid ${pid})`);
          await sleep(plan.downMs);
          await e.servers[leader]!.start();
          injected.push(`server ${e.servers[leader]!.id} started again (pid ${e.servers[leader]!.pid})`);
          break;
        }
        case 'power-cut': {
          const old = all(procs);
          const [, zkPids] = await Promise.all([Promise.all(old.map((p) => p.stop(0, 'SIGKILL'))), zk!.kill()]);
          injected.push(`power cut: kill -9 of ${old.map((p) => `${p.name} (pid ${p.pid})`).join(', ')} and zookeeper (pid ${zkPids.join(', ')})`);
          await zk!.restartAll();
          procs = startAll();
          injected.push(`all started again on the same data`);
          break;
        }
        case 'cut-link': {
          for (const l of links) l.sever();
          injected.push(`cut the links of ${cutCompute} and ${cutOrc} to zookeeper`);
          await sleep(plan.downMs);
          for (const l of links) l.restore();
          injected.push(`links restored after ${plan.downMs} ms`);
          break;
        }
      }
      faultEnd = Date.now();
    })();

    // ---- recovery: watched from the fault on ----
    let shardsOwnedAt: number | undefined;
    let liveOrcAt: number | undefined;
    let recoveredAt: number | undefined;
    let workloadDone = false;
    void workload.finally(() => (workloadDone = true));
    let last: Health | null = null;
    const settleBy = () => (faultEnd ?? Date.now()) + o.settleTimeoutMs;
    while (Date.now() < settleBy()) {
      // Only a look that began after the fault ended counts: one under way during a kill reads the old state.
      const ended = faultEnd !== undefined;
      last = await admin.use((z) => health(z, admin!.paths, shards)).catch(() => null);
      const now = Date.now();
      if (last && ended) {
        if (last.liveOrc) liveOrcAt ??= now;
        if (last.shardsOwned && liveOrcAt !== undefined) shardsOwnedAt ??= now;
        // Settled also means every process runs again and the api answers (a supervised restart
        // takes a moment: a look before it would count the killed api as down for good).
        const up = all(procs).every((p) => p.running) && (await api.call('GET', '/healthz'))?.status === 200;
        if (workloadDone && up && last.unfinished === 0 && last.computesAlive === COMPUTES.length && last.shardsOwned) {
          recoveredAt = now;
          break;
        }
      }
      await sleep(POLL_MS);
    }
    await fault;
    await workload;

    const shardClock = Math.max(faultEnd!, liveOrcAt ?? faultEnd!);
    const shardsMs = shardsOwnedAt === undefined ? null : Math.max(0, shardsOwnedAt - shardClock);
    const shardBound = o.sessionTimeoutMs + 2000;
    if (shardsMs === null || shardsMs > shardBound) {
      violations.push({ invariant: 'shards-unowned', subject: 'shards', detail: `every shard owned by a live orc ${shardsMs === null ? 'never' : `after ${shardsMs} ms`}; the bound is ${shardBound} ms` });
    }
    if (recoveredAt === undefined) {
      violations.push({ invariant: 'not-settled', subject: 'cluster', detail: `not settled ${o.settleTimeoutMs} ms after the fault ended: ${JSON.stringify(last)}` });
    }
    for (const p of all(procs)) {
      if (!p.running) violations.push({ invariant: 'process-down', subject: p.name, detail: `${p.gaveUp ? 'given up' : 'not running'}: ${JSON.stringify(p.exit)}` });
    }

    // Past the computes' debounce of their libvirt report (200 ms), so it shows the settled state.
    await sleep(600);
    const snap = await admin.use((z) => snapshot(z, admin!.paths, cfg), 30_000);
    violations.push(...checkInvariants(snap));
    let aclProbe: RunReport['acl_probe'];
    if (o.zkAcl) {
      const probe = await probeOpenReads(conn, admin.paths, snap);
      aclProbe = { nodes: probe.nodes, refused: probe.refused };
      for (const path of probe.readable) violations.push({ invariant: 'acl-open', subject: path, detail: 'a session without credentials could read it' });
    }
    const builds = snap.units.filter((u) => u.kind === 'build');
    const failed: Record<string, number> = {};
    for (const u of builds) if (u.state === 'FAILED') failed[u.error?.code ?? '?'] = (failed[u.error?.code ?? '?'] ?? 0) + 1;
    if (violations.length > 0) keep = true;
    const restarted: Record<string, number> = {};
    for (const p of launcher.procs) if (p.restarts > 0) restarted[p.name] = (restarted[p.name] ?? 0) + p.restarts;
    return report({
      restarted,
      boots,
      actions,
      units: snap.units.length,
      succeeded: builds.filter((u) => u.state === 'SUCCEEDED').length,
      failed,
      recovery_ms: recoveredAt === undefined ? null : recoveredAt - tFault,
      shards_ms: shardsMs,
      ...(aclProbe ? { acl_probe: aclProbe } : {}),
      seconds: Math.round((Date.now() - started) / 100) / 10,
      ...(keep ? { logs: dir } : {}),
    });
  } catch (err) {
    keep = true;
    violations.push({ invariant: 'not-settled', subject: 'runner', detail: `the run could not complete: ${(err as Error).message}` });
    return report({ seconds: Math.round((Date.now() - started) / 100) / 10, logs: dir });
  } finally {
    await launcher.stopAll().catch(() => {});
    await Promise.all(links.map((l) => l.close().catch(() => {})));
    await admin?.close().catch(() => {});
    await zk?.stop().catch(() => {});
    if (!keep) await rm(dir, { recursive: true, force: true }).catch(() => {});
  }
}

/** Runs the plan's runs one after another; each run's line goes to `out` as it ends. */
export async function runChaos(opts: ChaosOptions): Promise<{ reports: RunReport[]; summary: ChaosSummary }> {
  const o = {
    seed: opts.seed,
    runs: opts.runs,
    sessionTimeoutMs: opts.sessionTimeoutMs ?? 2000,
    boots: opts.boots ?? 12,
    windowMs: opts.windowMs ?? 4000,
    settleTimeoutMs: opts.settleTimeoutMs ?? 90_000,
    keepLogs: opts.keepLogs ?? false,
    zkAcl: opts.zkAcl ?? true,
    say: opts.say ?? ((line: string) => void process.stderr.write(`${line}\n`)),
  };
  const started = Date.now();
  const plans = planFaults({ seed: o.seed, runs: o.runs, kinds: opts.kinds ?? FAULT_KINDS, orcs: ORCS.length, computes: COMPUTES.length, windowMs: o.windowMs });
  const reports: RunReport[] = [];
  for (const plan of plans) {
    const r = await oneRun(plan, o);
    reports.push(r);
    opts.out?.(JSON.stringify(r));
  }
  const faults: Record<string, number> = {};
  const failed: Record<string, number> = {};
  for (const r of reports) {
    faults[r.kind] = (faults[r.kind] ?? 0) + 1;
    for (const [code, n] of Object.entries(r.failed)) failed[code] = (failed[code] ?? 0) + n;
  }
  const recoveries = reports.flatMap((r) => (r.recovery_ms === null ? [] : [r.recovery_ms])).sort((a, b) => a - b);
  const summary: ChaosSummary = {
    runs: reports.length,
    zk_acl: o.zkAcl,
    faults,
    violations: reports.reduce((n, r) => n + r.violations.length, 0),
    boots: reports.reduce((n, r) => n + r.boots, 0),
    succeeded: reports.reduce((n, r) => n + r.succeeded, 0),
    failed,
    recovery_p50_ms: percentile(recoveries, 50),
    recovery_p99_ms: percentile(recoveries, 99),
    seconds: Math.round((Date.now() - started) / 1000),
  };
  return { reports, summary };
}
