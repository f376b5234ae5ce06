// The one cluster launcher, for `quark up`, the integration tests and the benches: a standalone
// ZooKeeper (ts/dev/zookeeper.ts) and quark processes (api, orcs, computes), each tracked by pid and
// stopped by pid, its whole process group with it, also when the caller fails or vanishes.
// A process may be supervised like systemd's Restart=on-failure: an unexpected exit is restarted
// with exponential backoff, logged, and after so many failures in a row it is given up, saying so.
import { spawn, type ChildProcess } from 'node:child_process';
import { EventEmitter } from 'node:events';
import { createWriteStream, existsSync, type WriteStream } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { reapedOnExit, WATCHDOG } from './reap.js';
import { CREDENTIALS_ENV, credentialFiles, mintComputeFile } from '../zk/acl.js';
import { startZooKeeper, type RunningZooKeeper, type ZooKeeperServerOptions } from './zookeeper.js';

export interface ExitInfo {
  code: number | null;
  signal: NodeJS.Signals | null;
}

// ---- supervision (pure) ------------------------------------------------------------------------

export interface Supervision {
  /** Failures in a row after which the process is given up (the last one is not restarted). */
  maxFailures: number;
  /** The first restart's delay; each further failure in a row doubles it. */
  baseDelayMs: number;
  maxDelayMs: number;
  /** A run at least this long was a success: the count of failures in a row starts again. */
  stableMs: number;
}

export const DEFAULT_SUPERVISION: Supervision = { maxFailures: 5, baseDelayMs: 500, maxDelayMs: 10_000, stableMs: 10_000 };

/** Signals systemd counts as a clean stop (someone asked it to stop), not a failure. */
const CLEAN_SIGNALS = new Set<NodeJS.Signals>(['SIGTERM', 'SIGINT', 'SIGHUP', 'SIGPIPE']);

/** Restart=on-failure's notion of failure: a non-zero exit code, or death by an unclean signal. */
export function isFailure(exit: ExitInfo): boolean {
  if (exit.signal) return !CLEAN_SIGNALS.has(exit.signal);
  return exit.code !== 0;
}

export type RestartDecision =
  | { restart: true; delayMs: number; failures: number }
  | { restart: false; reason: 'clean exit' | 'gave up'; failures: number };

/** What to do after an exit, given how long the run lasted and the failures in a row before it. */
export function afterExit(exit: ExitInfo, ranMs: number, failuresBefore: number, s: Supervision = DEFAULT_SUPERVISION): RestartDecision {
  if (!isFailure(exit)) return { restart: false, reason: 'clean exit', failures: 0 };
  const failures = (ranMs >= s.stableMs ? 0 : failuresBefore) + 1;
  if (failures >= s.maxFailures) return { restart: false, reason: 'gave up', failures };
  return { restart: true, delayMs: Math.min(s.maxDelayMs, s.baseDelayMs * 2 ** (failures - 1)), failures };
}

const describeExit = (e: ExitInfo): string => (e.signal ? `signal ${e.signal}` : `code ${e.code}`);

// ---- one process -------------------------------------------------------------------------------

export interface LaunchSpec {
  /** Its name in logs and reports: 'api', 'orc-1'. */
  name: string;
  /** Arguments after the script: for a quark process, the subcommand and its flags. */
  args: string[];
  /** The script Node runs; default the quark CLI (dist/ts/cli/main.js); null: `args` are Node's own. */
  script?: string | null;
  /** Node's own options before the script (e.g. --cpu-prof). */
  nodeArgs?: string[];
  env?: Record<string, string | undefined>;
  cwd?: string;
  /** stdout and stderr are appended to this file as well. */
  logFile?: string;
  /** Every output line, as it arrives. */
  onLine?: (line: string, stream: 'stdout' | 'stderr') => void;
  /** Overrides the launcher's supervision for this process (false: never restarted). */
  supervise?: Supervision | false;
  /**
   * A command the process runs under, which must exec it (so the pid stays the process's own):
   * `['ip', 'netns', 'exec', NS]` runs it on another network (ts/dev/topology.ts).
   */
  wrap?: string[];
}

interface Line {
  stream: 'stdout' | 'stderr';
  text: string;
}

/** Every process any launcher started and has not seen exit, so that they die with this one. */
const live = reapedOnExit<LaunchedProcess>((p) => p.killGroup());

/**
 * A launched process: the current run's pid and exit, every run's pid, and its output's tail
 * (bounded). A supervised one is started again after a failure; `done` resolves once no run
 * follows (stopped, exited cleanly, given up, or unsupervised and exited).
 */
export class LaunchedProcess extends EventEmitter {
  readonly name: string;
  readonly pids: number[] = [];
  private child!: ChildProcess;
  private exitInfo: ExitInfo | undefined;
  private startedAt = 0;
  private failures = 0;
  private restartTimer: NodeJS.Timeout | undefined;
  private stopping = false;
  private finished = false;
  private resolveDone!: (e: ExitInfo) => void;
  private log: WriteStream | undefined;
  /** This run's exit. */
  exited!: Promise<ExitInfo>;
  /** Resolves with the last exit once no run will follow. */
  readonly done = new Promise<ExitInfo>((r) => (this.resolveDone = r));
  readonly lines: Line[] = [];
  private readonly partial = { stdout: '', stderr: '' };
  restarts = 0;
  gaveUp = false;
  /** Supervision for this process; false to leave it dead after any exit (set it before a deliberate kill). */
  supervision: Supervision | false;

  constructor(
    readonly spec: LaunchSpec,
    private readonly argv: string[],
    supervision: Supervision | false,
    private readonly o: { watchdog: boolean; tailLines: number; say: (line: string) => void },
  ) {
    super();
    this.name = spec.name;
    this.supervision = spec.supervise ?? supervision;
    if (spec.logFile) {
      this.log = createWriteStream(spec.logFile, { flags: 'a' });
      // A log that cannot be written must not take the launcher (and every other process) down.
      this.log.on('error', (err) => this.o.say(`!! ${this.name}: its log ${spec.logFile} failed: ${err.message}`));
    }
    this.launch();
  }

  /** The name in failure reports (the tests' word for it). */
  get label(): string {
    return this.name;
  }

  get pid(): number {
    return this.pids[this.pids.length - 1]!;
  }

  get running(): boolean {
    return this.exitInfo === undefined;
  }

  /** This run's exit, once it has exited. */
  get exit(): ExitInfo | undefined {
    return this.exitInfo;
  }

  /** No run will follow: stopped, exited cleanly, given up, or unsupervised and exited. */
  get ended(): boolean {
    return this.finished;
  }

  private launch(): void {
    const inner = this.o.watchdog ? ['/bin/sh', '-c', WATCHDOG, `quark-${this.name}`, String(process.pid), process.execPath, ...this.argv] : [process.execPath, ...this.argv];
    const [cmd, ...args] = [...(this.spec.wrap ?? []), ...inner] as [string, ...string[]];
    const child = spawn(cmd, args, {
      cwd: this.spec.cwd,
      env: { ...process.env, ...this.spec.env },
      stdio: ['ignore', 'pipe', 'pipe'],
      // Its own process group: stopping it reaps what it started, and a terminal's Ctrl-C
      // reaches only the launcher, which stops it in order.
      detached: true,
    });
    if (child.pid === undefined) throw new Error(`could not spawn ${this.name}`);
    this.child = child;
    this.exitInfo = undefined;
    this.startedAt = Date.now();
    this.pids.push(child.pid);
    live.add(this);
    this.attach(child.stdout, 'stdout');
    this.attach(child.stderr, 'stderr');
    this.exited = new Promise((resolve) => {
      child.once('exit', (code, signal) => {
        const exit = { code, signal };
        this.exitInfo = exit;
        live.delete(this);
        resolve(exit);
        this.onExit(exit);
      });
    });
  }

  private onExit(exit: ExitInfo): void {
    const policy = this.supervision;
    if (this.stopping || !policy) return this.finish(exit);
    const d = afterExit(exit, Date.now() - this.startedAt, this.failures, policy);
    this.failures = d.failures;
    const where = this.spec.logFile ? `; see ${this.spec.logFile}` : '';
    if (!d.restart) {
      if (d.reason === 'gave up') {
        this.gaveUp = true;
        this.o.say(`!! ${this.name} failed ${d.failures} times in a row (last: ${describeExit(exit)}); not restarting it again${where}`);
      }
      return this.finish(exit);
    }
    this.o.say(
      `!! ${this.name} exited (${describeExit(exit)}); restarting in ${(d.delayMs / 1000).toFixed(1)} s (failure ${d.failures} of ${policy.maxFailures} in a row)${where}`,
    );
    this.restartTimer = setTimeout(() => {
      this.restartTimer = undefined;
      if (this.stopping) return this.finish(exit);
      this.restarts++;
      this.launch();
      this.emit('restarted', this.pid);
    }, d.delayMs);
  }

  private finish(exit: ExitInfo): void {
    if (this.finished) return;
    this.finished = true;
    this.log?.end();
    this.resolveDone(exit);
    this.emit('done', exit);
  }

  private attach(stream: NodeJS.ReadableStream | null, name: Line['stream']): void {
    if (!stream) return;
    stream.setEncoding('utf8');
    stream.on('data', (chunk: string) => {
      // Output may still arrive after the exit that ended the log (a child's pipes drain after 'exit').
      if (this.log && !this.log.writableEnded) this.log.write(chunk);
      const parts = (this.partial[name] + chunk).split('\n');
      this.partial[name] = parts.pop() ?? '';
      for (const text of parts) this.push({ stream: name, text });
    });
    stream.on('end', () => {
      if (this.partial[name]) this.push({ stream: name, text: this.partial[name] });
      this.partial[name] = '';
    });
  }

  private push(line: Line): void {
    this.lines.push(line);
    if (this.lines.length > this.o.tailLines) this.lines.splice(0, this.lines.length - this.o.tailLines);
    this.spec.onLine?.(line.text, line.stream);
    this.emit('line', line);
  }

  stdout(): string {
    return this.text('stdout');
  }

  stderr(): string {
    return this.text('stderr');
  }

  /** stdout and stderr interleaved in arrival order. */
  output(): string {
    return this.text();
  }

  private text(stream?: Line['stream']): string {
    return this.lines
      .filter((l) => stream === undefined || l.stream === stream)
      .map((l) => l.text)
      .join('\n');
  }

  /** The last `n` lines, stderr lines marked, for failure reports. */
  lastLines(n = 60): string {
    return this.lines
      .slice(-n)
      .map((l) => (l.stream === 'stderr' ? `[stderr] ${l.text}` : l.text))
      .join('\n');
  }

  /**
   * Resolves with the first output line (either stream, past or future) matching `pattern`;
   * rejects on timeout, or if the process exits first with no restart to follow, with the tail.
   */
  waitForOutput(pattern: RegExp | string, { timeoutMs = 15_000 } = {}): Promise<string> {
    const matches = (text: string) => (typeof pattern === 'string' ? text.includes(pattern) : pattern.test(text));
    const seen = this.lines.find((l) => matches(l.text));
    if (seen) return Promise.resolve(seen.text);
    return new Promise((resolve, reject) => {
      const cleanup = () => {
        clearTimeout(timer);
        this.off('line', onLine);
        this.off('done', onDone);
      };
      const onLine = (l: Line) => {
        if (matches(l.text)) {
          cleanup();
          resolve(l.text);
        }
      };
      const onDone = () => {
        cleanup();
        reject(new Error(`${this.name} (pid ${this.pid}) exited before printing ${pattern}\n${this.lastLines()}`));
      };
      const timer = setTimeout(() => {
        cleanup();
        reject(new Error(`${this.name} (pid ${this.pid}) did not print ${pattern} in ${timeoutMs} ms\n${this.lastLines()}`));
      }, timeoutMs);
      this.on('line', onLine);
      if (this.finished) onDone();
      else this.on('done', onDone);
    });
  }

  /** Sends `sig` to the current run itself (not its descendants); supervision judges the exit. */
  signal(sig: NodeJS.Signals): void {
    if (!this.running) return;
    try {
      process.kill(this.pid, sig);
    } catch {
      // already gone
    }
  }

  /** SIGKILLs whatever is left of the current run's process group (its descendants). */
  killGroup(): void {
    try {
      process.kill(-this.pid, 'SIGKILL');
    } catch {
      // no such group left
    }
  }

  /** Stops it for good: no restart; SIGTERM (or `sig`), SIGKILL after the grace period, then its group. */
  async stop(graceMs: number, sig: NodeJS.Signals = 'SIGTERM'): Promise<void> {
    this.stopping = true;
    if (this.restartTimer) {
      clearTimeout(this.restartTimer);
      this.restartTimer = undefined;
      this.finish(this.exitInfo!);
    }
    if (this.running) {
      this.signal(sig);
      const timer = sig === 'SIGKILL' ? undefined : setTimeout(() => this.signal('SIGKILL'), graceMs);
      await this.exited;
      clearTimeout(timer);
    }
    this.killGroup();
    this.finish(this.exitInfo!);
  }
}

// ---- the launcher ------------------------------------------------------------------------------

export interface LauncherOptions {
  /** Supervision for every process unless its spec says otherwise; default none. */
  supervision?: Supervision | false;
  /** How long a stop waits after SIGTERM before SIGKILL; default 5 s. */
  graceMs?: number;
  /** Kill children if this process vanishes without its exit hook (default true). */
  watchdog?: boolean;
  /** Output lines kept per process (default 5000). */
  tailLines?: number;
  /** Where supervision reports restarts and give-ups; default stderr. */
  say?: (line: string) => void;
}

/** The quark CLI entry, dist/ts/cli/main.js, whether this module runs compiled or from source. */
export function quarkMain(): string {
  const here = fileURLToPath(new URL('.', import.meta.url));
  for (const candidate of [join(here, '..', 'cli', 'main.js'), join(here, '..', '..', 'dist', 'ts', 'cli', 'main.js')]) {
    if (existsSync(candidate)) return candidate;
  }
  throw new Error('dist/ts/cli/main.js is missing: build it with scripts/build-if-stale.sh (or npm run build:ts)');
}

/** Starts ZooKeeper and quark processes, and stops them: processes first, ZooKeeper last. */
export class Launcher {
  readonly procs: LaunchedProcess[] = [];
  readonly zookeepers: RunningZooKeeper[] = [];
  private readonly graceMs: number;

  constructor(private readonly o: LauncherOptions = {}) {
    this.graceMs = o.graceMs ?? 5_000;
  }

  /** A standalone ZooKeeper, stopped by stopAll() after every process. */
  async startZooKeeper(opts: ZooKeeperServerOptions): Promise<RunningZooKeeper> {
    const zk = await startZooKeeper(opts);
    this.zookeepers.push(zk);
    return zk;
  }

  start(spec: LaunchSpec): LaunchedProcess {
    const script = spec.script === undefined ? quarkMain() : spec.script;
    const argv = [...(spec.nodeArgs ?? []), ...(script === null ? [] : [script]), ...spec.args];
    const p = new LaunchedProcess(spec, argv, this.o.supervision ?? false, {
      watchdog: this.o.watchdog ?? true,
      tailLines: this.o.tailLines ?? 5_000,
      say: this.o.say ?? ((line) => void process.stderr.write(`${line}\n`)),
    });
    this.procs.push(p);
    return p;
  }

  /** Stops the given processes (default all) for good, at once; see LaunchedProcess.stop. */
  async stop(procs: readonly LaunchedProcess[] = this.procs, graceMs = this.graceMs): Promise<void> {
    await Promise.all(procs.map((p) => p.stop(graceMs)));
  }

  /** Every process, then every ZooKeeper; also when some stop fails. */
  async stopAll(): Promise<void> {
    try {
      await this.stop();
    } finally {
      await Promise.all(this.zookeepers.splice(0).map((zk) => zk.stop()));
    }
  }

  /** A power cut: SIGKILL to every process and every ZooKeeper at once; nothing is restarted. */
  async killAll(): Promise<void> {
    await Promise.all([...this.procs.map((p) => p.stop(0, 'SIGKILL')), ...this.zookeepers.splice(0).map((zk) => zk.kill())]);
  }

  /** Forgets processes that will not run again (their reports are no longer needed). */
  prune(): void {
    for (let i = this.procs.length - 1; i >= 0; i--) if (this.procs[i]!.ended) this.procs.splice(i, 1);
  }
}

// ---- a quark cluster ---------------------------------------------------------------------------

/** Whatever starts processes: a Launcher, or a test's ProcessGroup (which scopes them to a test). */
export interface Starter {
  start(spec: LaunchSpec): LaunchedProcess;
}

/**
 * The file of a credentials directory (ts/zk/acl.ts) a quark subcommand runs with: the api's,
 * the orcs', a compute its own (made here on first use), a hollow fleet the fleet's, anything
 * else the admin's.
 */
export function credentialsFileFor(dir: string, args: readonly string[]): string {
  const f = credentialFiles(dir);
  const [cmd] = args;
  if (cmd === 'api') return f.api;
  if (cmd === 'orc') return f.orc;
  if (cmd === 'compute') {
    if (args.includes('--hollow')) return f.computeFleet;
    const i = args.indexOf('--id');
    const id = i >= 0 ? args[i + 1] : undefined;
    // A compute holds only its own identity (and the role's): it cannot act as another compute.
    return id ? mintComputeFile(dir, id) : f.computeFleet;
  }
  return f.admin;
}

export interface QuarkClusterSpec {
  /** ZooKeeper's connection string. */
  zk: string;
  root?: string;
  /** Passed to every process unless omitted (each then uses its own default or its args'). */
  sessionTimeoutMs?: number;
  apiPort: number;
  /** Extra flags for every process of a kind. */
  apiArgs?: string[];
  orcArgs?: string[];
  computeArgs?: string[];
  /** Each process's output is appended to <logDir>/<name>.log. */
  logDir?: string;
  /** Launch options for every process (supervision, Node options, an output line handler). */
  launch?: Omit<LaunchSpec, 'name' | 'args' | 'logFile'>;
  /** An admin token, for the API calls `ready` makes (every route but /healthz needs one). */
  token?: string;
  /**
   * A ZooKeeper credentials directory (ts/zk/acl.ts, `quark zk credentials`): each process gets
   * its role's file (a compute its own, made here on first start), any other subcommand the
   * admin's. null: every process runs without credentials. Omitted: whatever the environment says.
   */
  credentials?: string | null;
}

/**
 * The api, orcs and computes of one cluster as separate processes, all against one ZooKeeper and
 * root; names are 'api' and the ids ('orc-1', 'compute-1'). Nothing starts until asked.
 */
export class QuarkCluster {
  readonly api: string;
  apiProc: LaunchedProcess | undefined;
  readonly orcs = new Map<string, LaunchedProcess>();
  readonly computes = new Map<string, LaunchedProcess>();
  private readonly common: string[];

  constructor(
    private readonly starter: Starter,
    readonly spec: QuarkClusterSpec,
  ) {
    this.common = ['--zk', spec.zk, ...(spec.root ? ['--root', spec.root] : [])];
    if (spec.sessionTimeoutMs !== undefined) this.common.push('--session-timeout-ms', String(spec.sessionTimeoutMs));
    this.api = `http://127.0.0.1:${spec.apiPort}`;
  }

  startApi(extra: string[] = [], launch: Omit<LaunchSpec, 'name' | 'args'> = {}): LaunchedProcess {
    this.apiProc = this.start('api', ['api', '--port', String(this.spec.apiPort), ...(this.spec.apiArgs ?? []), ...extra], launch);
    return this.apiProc;
  }

  /** Any quark subcommand as a process of this cluster (its ZooKeeper flags appended). */
  start(name: string, args: string[], launch: Omit<LaunchSpec, 'name' | 'args'> = {}): LaunchedProcess {
    const credentials = this.credentialsFor(args);
    return this.starter.start({
      ...this.spec.launch,
      ...(this.spec.logDir ? { logFile: join(this.spec.logDir, `${name}.log`) } : {}),
      ...launch,
      env: { ...this.spec.launch?.env, ...(credentials === undefined ? {} : { [CREDENTIALS_ENV]: credentials }), ...launch.env },
      name,
      args: [...args, ...this.common],
    });
  }

  /** The credentials file a subcommand runs with ('' for none), or undefined to leave the environment's. */
  private credentialsFor(args: readonly string[]): string | undefined {
    const dir = this.spec.credentials;
    if (dir === undefined) return undefined;
    if (dir === null) return '';
    return credentialsFileFor(dir, args);
  }

  startOrc(id: string, extra: string[] = [], launch: Omit<LaunchSpec, 'name' | 'args'> = {}): LaunchedProcess {
    const p = this.start(id, ['orc', '--id', id, ...(this.spec.orcArgs ?? []), ...extra], launch);
    this.orcs.set(id, p);
    return p;
  }

  startCompute(id: string, extra: string[] = [], launch: Omit<LaunchSpec, 'name' | 'args'> = {}): LaunchedProcess {
    const p = this.start(id, ['compute', '--id', id, ...(this.spec.computeArgs ?? []), ...extra], launch);
    this.computes.set(id, p);
    return p;
  }

  /**
   * Resolves once the API answers, at least `computes` computes are alive and every shard has an
   * owner; rejects after timeoutMs with the last thing seen.
   */
  async ready({ computes, timeoutMs = 60_000, intervalMs = 200 }: { computes: number; timeoutMs?: number; intervalMs?: number }): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    let last: string;
    for (;;) {
      try {
        const health = await fetch(`${this.api}/healthz`);
        const headers: Record<string, string> = this.spec.token ? { authorization: `Bearer ${this.spec.token}` } : {};
        const alive = ((await (await fetch(`${this.api}/v1/computes`, { headers })).json()) as Array<{ alive: boolean }>).filter((c) => c.alive).length;
        const owners = Object.values((await (await fetch(`${this.api}/v1/shards`, { headers })).json()) as Record<string, string | null>);
        const unowned = owners.filter((o) => !o).length;
        if (health.status === 200 && alive >= computes && owners.length > 0 && unowned === 0) return;
        last = `healthz ${health.status}, ${alive} of ${computes} computes alive, ${unowned} of ${owners.length} shards unowned`;
      } catch (err) {
        last = (err as Error).message;
      }
      if (Date.now() + intervalMs > deadline) throw new Error(`the cluster was not ready within ${timeoutMs} ms (last: ${last})`);
      await new Promise((r) => setTimeout(r, intervalMs));
    }
  }
}
