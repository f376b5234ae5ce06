// Runs a real ZooKeeper (Debian's `zookeeper` package) as a child JVM: one standalone server
// for `quark up`, `quark zk server` and the test suite, a three-server ensemble on 127.0.0.1
// for failover tests, or one member of an ensemble on given addresses (`quark zk server
// --ensemble`, one per host). We write the configuration ourselves and start QuorumPeerMain directly,
// so no system-wide ZooKeeper service or /etc/zookeeper setting is involved.

import { spawn, type ChildProcess } from 'node:child_process';
import { closeSync, existsSync, openSync } from 'node:fs';
import { mkdir, open, readFile, rm, writeFile } from 'node:fs/promises';
import { createConnection, createServer } from 'node:net';
import { dirname, join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { reapedOnExit, WATCHDOG } from './reap.js';

export interface ZooKeeperServerOptions {
  dataDir: string;
  /** The address clients connect to (clientPortAddress); default 127.0.0.1. */
  host?: string;
  /** 0 picks a free port (and picks again if it is taken before the JVM binds it); see RunningZooKeeper.clientPort. */
  clientPort: number;
  /**
   * Milliseconds per ZooKeeper tick; default 200. Session expiry is checked once per tick and
   * the election/sync limits are counted in ticks, so a short tick makes a dead compute's
   * `alive` znode and a dead orc's shard locks disappear promptly after their session timeout,
   * and lets the ensemble elect and sync a new leader quickly. With ZooKeeper's own 2000 ms,
   * each expiry lands up to a whole tick (2 s) late and the minimum session timeout is 4 s.
   */
  tickTime?: number;
  /** Per-client-IP connection limit; default 0 = unlimited: hollow computes open thousands of sessions from one address. */
  maxClientCnxns?: number;
  /** Default 2 × tickTime (ZooKeeper's own rule). */
  minSessionTimeout?: number;
  /** Default 60 000 ms, set explicitly so a short tickTime does not cap clients at 20 ticks (4 s). */
  maxSessionTimeout?: number;
  /** ZooKeeper's log4j log; default `<dataDir>/zookeeper.log`. The JVM's own stdout/stderr go beside it (`.out`). */
  logFile?: string;
  /** Extra zoo.cfg lines (key → value), written after ours. */
  extraConfig?: Record<string, string | number | boolean>;
  /** Extra JVM options, appended after ours. */
  javaOptions?: string[];
  /**
   * The server's connection layer: 'nio' (ZooKeeper's default) or 'netty'
   * (NettyServerCnxnFactory, with Debian's netty-codec jar, which zookeeper.jar's manifest
   * leaves out). Netty spent less kernel time per packet in bench:e2e; see docs/benchmarks.md.
   */
  connectionFactory?: 'nio' | 'netty';
  /** How long to wait for the server to answer; default 30 000 ms. */
  startTimeoutMs?: number;
}

export interface RunningZooKeeper {
  pid: number;
  clientPort: number;
  connectionString: string;
  /** SIGTERM, then SIGKILL after a grace period; resolves once the process has exited. */
  stop(): Promise<void>;
  /** SIGKILL; resolves once the process has exited. */
  kill(): Promise<void>;
}

export interface EnsembleMember {
  /** The server's myid (1-based). */
  id: number;
  clientPort: number;
  /** Pid of the current (or last) JVM; changes after start(). */
  pid: number;
  running: boolean;
  kill(): Promise<void>;
  /** Restarts the server with the same id, ports, config and data; resolves once it serves again. */
  start(): Promise<void>;
}

export interface Ensemble {
  servers: EnsembleMember[];
  connectionString: string;
  /** Index into `servers` of the leader; waits (up to 30 s) until exactly one running server says `Mode: leader`. */
  leader(): Promise<number>;
  stop(): Promise<void>;
}

export interface EnsembleOptions {
  baseDir: string;
  size?: number;
  tickTime?: number;
  maxSessionTimeout?: number;
  startTimeoutMs?: number;
}

const DEFAULT_TICK_MS = 200;
const DEFAULT_MAX_SESSION_TIMEOUT_MS = 60_000;
const DEFAULT_START_TIMEOUT_MS = 30_000;
const STOP_GRACE_MS = 10_000;
const FOUR_LETTER_TIMEOUT_MS = 3_000;
const FOUR_LETTER_WORDS = 'ruok,srvr,mntr,stat,conf';
const MAIN_CLASS = 'org.apache.zookeeper.server.quorum.QuorumPeerMain';
const LOOPBACK = '127.0.0.1';

/** Where Debian's libzookeeper-java puts the jars; QUARK_ZK_JAR_DIR overrides it. */
function jarDir(): string {
  return process.env.QUARK_ZK_JAR_DIR ?? '/usr/share/java';
}

function javaBinary(): string {
  const home = process.env.JAVA_HOME;
  return home ? join(home, 'bin', 'java') : 'java';
}

/**
 * zookeeper.jar's manifest pulls its own dependencies; it ships no slf4j binding, so we add
 * log4j 1.2 and its slf4j bridge (both dependencies of the Debian package) to get a log file.
 */
function classpath(extra: string[] = []): string {
  if (process.env.QUARK_ZK_CLASSPATH) return [process.env.QUARK_ZK_CLASSPATH, ...extra].join(':');
  const dir = jarDir();
  const zk = join(dir, 'zookeeper.jar');
  if (!existsSync(zk)) {
    throw new Error(
      `ZooKeeper is not installed: ${zk} is missing. Run scripts/ensure-deps.sh ` +
        `(installs the Debian package \`zookeeper\`), or point QUARK_ZK_JAR_DIR at the jars.`,
    );
  }
  return [zk, join(dir, 'slf4j-log4j12.jar'), join(dir, 'log4j-1.2.jar'), ...extra].join(':');
}

/** JVM options and classpath additions for a connection factory. */
function connectionLayer(factory: 'nio' | 'netty' = 'nio'): { javaOptions: string[]; classpath: string[] } {
  if (factory === 'nio') return { javaOptions: [], classpath: [] };
  const codec = join(jarDir(), 'netty-codec.jar');
  if (!existsSync(codec)) throw new Error(`the netty connection factory needs ${codec} (Debian package libnetty-java)`);
  return { javaOptions: ['-Dzookeeper.serverCnxnFactory=org.apache.zookeeper.server.NettyServerCnxnFactory'], classpath: [codec] };
}

function configText(entries: Array<[string, string | number | boolean]>): string {
  return entries.map(([k, v]) => `${k}=${String(v)}`).join('\n') + '\n';
}

function log4jProperties(): string {
  return [
    'log4j.rootLogger=INFO, FILE',
    'log4j.appender.FILE=org.apache.log4j.RollingFileAppender',
    'log4j.appender.FILE.File=${zookeeper.log.file}',
    'log4j.appender.FILE.MaxFileSize=10MB',
    'log4j.appender.FILE.MaxBackupIndex=3',
    'log4j.appender.FILE.layout=org.apache.log4j.PatternLayout',
    'log4j.appender.FILE.layout.ConversionPattern=%d{ISO8601} %-5p [%t:%C{1}@%L] - %m%n',
    // Every 4-letter-word probe logs a line at INFO; keep the readiness polling out of the log.
    'log4j.logger.org.apache.zookeeper.server.command.FourLetterCommands=WARN',
    'log4j.logger.org.apache.zookeeper.server.NIOServerCnxn=WARN',
    '',
  ].join('\n');
}

function sessionLimits(tickTime: number, o: { minSessionTimeout?: number; maxSessionTimeout?: number }) {
  return {
    min: o.minSessionTimeout ?? 2 * tickTime,
    max: o.maxSessionTimeout ?? DEFAULT_MAX_SESSION_TIMEOUT_MS,
  };
}

/** Lines shared by standalone and ensemble configs. */
function baseConfig(
  dataDir: string,
  clientPort: number,
  tickTime: number,
  o: { host?: string; maxClientCnxns?: number; minSessionTimeout?: number; maxSessionTimeout?: number },
): Array<[string, string | number | boolean]> {
  const sessions = sessionLimits(tickTime, o);
  return [
    ['tickTime', tickTime],
    ['dataDir', dataDir],
    ['clientPort', clientPort],
    ['clientPortAddress', o.host ?? LOOPBACK],
    ['maxClientCnxns', o.maxClientCnxns ?? 0],
    ['minSessionTimeout', sessions.min],
    ['maxSessionTimeout', sessions.max],
    // Limits are counted in ticks; keep them the same wall-clock length whatever the tick.
    ['initLimit', Math.max(10, Math.ceil(10_000 / tickTime))],
    ['syncLimit', Math.max(5, Math.ceil(3_000 / tickTime))],
    ['admin.enableServer', false],
    ['4lw.commands.whitelist', FOUR_LETTER_WORDS],
    // A snapshot every 100k transactions; purge old snapshots and logs hourly, keeping 3.
    ['snapCount', 100_000],
    ['autopurge.snapRetainCount', 3],
    ['autopurge.purgeInterval', 1],
  ];
}

function outFileFor(logFile: string): string {
  return logFile.endsWith('.log') ? logFile.slice(0, -4) + '.out' : logFile + '.out';
}

/** Last `lines` lines of a file, or '' if it cannot be read. */
async function tail(path: string, lines = 40): Promise<string> {
  try {
    const fh = await open(path, 'r');
    try {
      const { size } = await fh.stat();
      const length = Math.min(size, 64 * 1024);
      const buf = Buffer.alloc(length);
      await fh.read(buf, 0, length, size - length);
      return buf.toString('utf8').split('\n').slice(-lines).join('\n');
    } finally {
      await fh.close();
    }
  } catch {
    return '';
  }
}

// ---------------------------------------------------------------------------------------------
// One JVM

/** Every JVM we started and have not seen exit, so that they die with us. */
const live = reapedOnExit<ZooKeeperProcess>((p) => p.signal('SIGKILL'));

interface ProcessSpec {
  dataDir: string;
  configFile: string;
  logFile: string;
  javaOptions: string[];
  classpath?: string[];
}

class ZooKeeperProcess {
  readonly child: ChildProcess;
  readonly pid: number;
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  exitInfo: { code: number | null; signal: NodeJS.Signals | null } | undefined;

  constructor(readonly spec: ProcessSpec) {
    const java = [
      '-Xmx512m',
      '-XX:+ExitOnOutOfMemoryError',
      '-Djava.net.preferIPv4Stack=true',
      `-Dlog4j.configuration=${pathToFileURL(join(spec.dataDir, 'log4j.properties')).href}`,
      `-Dzookeeper.log.file=${spec.logFile}`,
      '-Dzookeeper.log.dir=' + dirname(spec.logFile),
      '-Dzookeeper.admin.enableServer=false',
      '-Dzookeeper.jmx.log4j.disable=true',
      ...spec.javaOptions,
      '-cp',
      classpath(spec.classpath),
      MAIN_CLASS,
      spec.configFile,
    ];
    const out = openSync(outFileFor(spec.logFile), 'a');
    try {
      // Under the watchdog, so no ZooKeeper is orphaned; its own process group keeps a
      // terminal's Ctrl-C from reaching it before we shut down.
      this.child = spawn('/bin/sh', ['-c', WATCHDOG, 'quark-zookeeper', String(process.pid), javaBinary(), ...java], {
        cwd: spec.dataDir,
        detached: true,
        stdio: ['ignore', out, out],
      });
    } finally {
      closeSync(out);
    }
    if (this.child.pid === undefined) throw new Error('failed to spawn the ZooKeeper JVM');
    this.pid = this.child.pid;
    live.add(this);
    this.exited = new Promise((resolveExit) => {
      this.child.once('exit', (code, signal) => {
        this.exitInfo = { code, signal };
        live.delete(this);
        resolveExit(this.exitInfo);
      });
    });
    this.child.once('error', () => {
      // 'exit' may not follow a spawn error; treat it as exited.
      if (!this.exitInfo) {
        this.exitInfo = { code: null, signal: null };
        live.delete(this);
      }
    });
  }

  get running(): boolean {
    return this.exitInfo === undefined;
  }

  /** Signals the JVM's process group (the JVM and its watchdog). */
  signal(sig: NodeJS.Signals): void {
    if (!this.running) return;
    try {
      process.kill(-this.pid, sig);
    } catch {
      try {
        process.kill(this.pid, sig);
      } catch {
        // already gone
      }
    }
  }

  async stop(graceMs = STOP_GRACE_MS): Promise<void> {
    if (!this.running) return;
    this.signal('SIGTERM');
    const timer = setTimeout(() => this.signal('SIGKILL'), graceMs);
    try {
      await this.exited;
    } finally {
      clearTimeout(timer);
    }
  }

  async kill(): Promise<void> {
    if (!this.running) return;
    this.signal('SIGKILL');
    await this.exited;
  }

  async logTail(): Promise<string> {
    const log = await tail(this.spec.logFile);
    const out = await tail(outFileFor(this.spec.logFile));
    return [
      `--- ${this.spec.logFile} (tail) ---`,
      log || '(empty)',
      `--- ${outFileFor(this.spec.logFile)} (tail) ---`,
      out || '(empty)',
    ].join('\n');
  }

  /**
   * Polls until `srvr` reports one of `modes` (which implies `ruok` → `imok` and that the
   * server is serving requests). Rejects with the log tail if the JVM exits or time runs out.
   */
  async waitServing(port: number, modes: readonly string[], timeoutMs: number, host = LOOPBACK): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    let last = 'no answer yet';
    while (Date.now() < deadline) {
      if (!this.running) {
        const how = this.exitInfo?.signal ? `signal ${this.exitInfo.signal}` : `code ${this.exitInfo?.code}`;
        throw new Error(`ZooKeeper (pid ${this.pid}, port ${port}) exited with ${how}\n${await this.logTail()}`);
      }
      try {
        const ok = await fourLetter(port, 'ruok', host);
        if (ok.trim() === 'imok') {
          const srvr = await fourLetter(port, 'srvr', host);
          const mode = parseMode(srvr);
          if (mode && modes.includes(mode)) return;
          last = mode ? `Mode: ${mode}` : srvr.trim().split('\n')[0] ?? srvr;
        } else {
          last = `ruok answered ${JSON.stringify(ok)}`;
        }
      } catch (err) {
        last = (err as Error).message;
      }
      await delay(100);
    }
    await this.kill();
    throw new Error(
      `ZooKeeper (pid ${this.pid}, port ${port}) not ready after ${timeoutMs} ms (last: ${last})\n${await this.logTail()}`,
    );
  }
}

function parseMode(srvr: string): string | undefined {
  return /^Mode:\s*(\S+)/m.exec(srvr)?.[1];
}

function delay(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

// ---------------------------------------------------------------------------------------------
// Public API

/** Sends a four-letter word to `host`:`port` (default 127.0.0.1) and resolves with the whole answer. */
export function fourLetter(port: number, cmd: string, host = LOOPBACK): Promise<string> {
  return new Promise((resolveAnswer, reject) => {
    const chunks: Buffer[] = [];
    const socket = createConnection({ host, port });
    socket.setTimeout(FOUR_LETTER_TIMEOUT_MS, () => {
      socket.destroy(new Error(`four-letter word '${cmd}' to port ${port} timed out`));
    });
    socket.once('connect', () => socket.end(cmd));
    socket.on('data', (c: Buffer) => chunks.push(c));
    socket.once('error', reject);
    socket.once('close', (hadError) => {
      if (!hadError) resolveAnswer(Buffer.concat(chunks).toString('utf8'));
    });
  });
}

/** `n` distinct ports that were free on 127.0.0.1 a moment ago (all held open together, then released). */
export async function freePorts(n: number): Promise<number[]> {
  const servers = await Promise.all(
    Array.from(
      { length: n },
      () =>
        new Promise<ReturnType<typeof createServer>>((resolveServer, reject) => {
          const srv = createServer();
          srv.unref();
          srv.once('error', reject);
          srv.listen(0, '127.0.0.1', () => resolveServer(srv));
        }),
    ),
  );
  const ports = servers.map((s) => {
    const addr = s.address();
    if (addr === null || typeof addr === 'string') throw new Error('unexpected server address');
    return addr.port;
  });
  await Promise.all(servers.map((s) => new Promise<void>((r) => s.close(() => r()))));
  return ports;
}

/** A port that was free on 127.0.0.1 a moment ago. */
export async function freePort(): Promise<number> {
  const [port] = await freePorts(1);
  return port!;
}

/** Starts a standalone server; resolves once it answers `ruok` with `imok` and serves requests. */
export async function startZooKeeper(o: ZooKeeperServerOptions): Promise<RunningZooKeeper> {
  if (o.clientPort !== 0) return startStandalone(o, o.clientPort);
  // clientPort 0: pick a free port, and pick again if someone takes it before the JVM binds it.
  for (let attempt = 1; ; attempt++) {
    try {
      return await startStandalone(o, await freePort());
    } catch (err) {
      if (attempt >= PORT_ATTEMPTS || !isPortClash(err)) throw err;
    }
  }
}

const PORT_ATTEMPTS = 3;

/** Whether a start failed because a port we picked was taken in the meantime. */
function isPortClash(err: unknown): boolean {
  return err instanceof Error && /BindException|Address already in use/.test(err.message);
}

/** Writes a server's zoo.cfg (these lines) and log4j settings into its data directory and starts its JVM. */
async function launch(
  o: Pick<ZooKeeperServerOptions, 'connectionFactory' | 'javaOptions'>,
  dataDir: string,
  logFile: string,
  config: Parameters<typeof configText>[0],
): Promise<ZooKeeperProcess> {
  const configFile = join(dataDir, 'zoo.cfg');
  await writeFile(configFile, configText(config));
  await writeFile(join(dataDir, 'log4j.properties'), log4jProperties());
  const layer = connectionLayer(o.connectionFactory);
  return new ZooKeeperProcess({
    dataDir,
    configFile,
    logFile,
    javaOptions: [...layer.javaOptions, ...(o.javaOptions ?? [])],
    classpath: layer.classpath,
  });
}

async function startStandalone(o: ZooKeeperServerOptions, clientPort: number): Promise<RunningZooKeeper> {
  const dataDir = resolve(o.dataDir);
  const tickTime = o.tickTime ?? DEFAULT_TICK_MS;
  const logFile = resolve(o.logFile ?? join(dataDir, 'zookeeper.log'));
  await mkdir(dataDir, { recursive: true });
  await mkdir(dirname(logFile), { recursive: true });
  const proc = await launch(o, dataDir, logFile, [...baseConfig(dataDir, clientPort, tickTime, o), ...Object.entries(o.extraConfig ?? {})]);
  const host = o.host ?? LOOPBACK;
  await proc.waitServing(clientPort, ['standalone'], o.startTimeoutMs ?? DEFAULT_START_TIMEOUT_MS, host);
  return runningOf(proc, host, clientPort);
}

/** A started server as its callers hold it. */
function runningOf(proc: ZooKeeperProcess, host: string, clientPort: number): RunningZooKeeper {
  return { pid: proc.pid, clientPort, connectionString: `${hostPort(host)}:${clientPort}`, stop: () => proc.stop(), kill: () => proc.kill() };
}

const QUORUM_MODES = ['leader', 'follower'] as const;

class Member implements EnsembleMember {
  private proc: ZooKeeperProcess | undefined;

  constructor(
    readonly id: number,
    readonly clientPort: number,
    private readonly spec: ProcessSpec,
    private readonly startTimeoutMs: number,
  ) {}

  get pid(): number {
    return this.proc?.pid ?? -1;
  }

  get running(): boolean {
    return this.proc?.running ?? false;
  }

  /** Spawns the JVM without waiting for it to join a quorum (used to boot all members at once). */
  launch(): void {
    if (this.running) return;
    this.proc = new ZooKeeperProcess(this.spec);
  }

  async waitInQuorum(): Promise<void> {
    if (!this.proc) throw new Error(`server ${this.id} was never started`);
    await this.proc.waitServing(this.clientPort, QUORUM_MODES, this.startTimeoutMs);
  }

  async start(): Promise<void> {
    this.launch();
    await this.waitInQuorum();
  }

  async kill(): Promise<void> {
    await this.proc?.kill();
  }

  async stop(): Promise<void> {
    await this.proc?.stop();
  }

  async mode(): Promise<string | undefined> {
    if (!this.running) return undefined;
    try {
      return parseMode(await fourLetter(this.clientPort, 'srvr'));
    } catch {
      return undefined;
    }
  }
}

/**
 * Starts `size` (default 3) servers on 127.0.0.1 with distinct client, peer and election ports,
 * each under `<baseDir>/server-<id>`; resolves once they have formed a quorum with one leader.
 */
export async function startEnsemble(o: EnsembleOptions): Promise<Ensemble> {
  const size = o.size ?? 3;
  if (!Number.isInteger(size) || size < 1) throw new Error(`ensemble size must be a positive integer, got ${size}`);
  // Nine ports are free when probed; one may be taken (by any outgoing connection) before a JVM binds it.
  for (let attempt = 1; ; attempt++) {
    try {
      return await launchEnsemble(o, size);
    } catch (err) {
      if (attempt >= PORT_ATTEMPTS || !isPortClash(err)) throw err;
    }
  }
}

async function launchEnsemble(o: EnsembleOptions, size: number): Promise<Ensemble> {
  const tickTime = o.tickTime ?? DEFAULT_TICK_MS;
  const startTimeoutMs = o.startTimeoutMs ?? DEFAULT_START_TIMEOUT_MS;
  const baseDir = resolve(o.baseDir);
  const ports = await freePorts(size * 3);
  const ids = Array.from({ length: size }, (_, i) => i + 1);
  const portsOf = (id: number) => ({
    client: ports[(id - 1) * 3]!,
    peer: ports[(id - 1) * 3 + 1]!,
    election: ports[(id - 1) * 3 + 2]!,
  });
  const quorum: Array<[string, string]> = ids.map((id) => {
    const p = portsOf(id);
    return [`server.${id}`, `127.0.0.1:${p.peer}:${p.election}`];
  });

  const members: Member[] = [];
  for (const id of ids) {
    const dataDir = join(baseDir, `server-${id}`);
    // A fresh directory: a failed earlier attempt may have left state for other ports.
    await rm(dataDir, { recursive: true, force: true });
    await mkdir(dataDir, { recursive: true });
    await writeFile(join(dataDir, 'myid'), `${id}\n`);
    const configFile = join(dataDir, 'zoo.cfg');
    const cfg = baseConfig(dataDir, portsOf(id).client, tickTime, { maxSessionTimeout: o.maxSessionTimeout });
    await writeFile(configFile, configText([...cfg, ...quorum]));
    await writeFile(join(dataDir, 'log4j.properties'), log4jProperties());
    const spec = { dataDir, configFile, logFile: join(dataDir, 'zookeeper.log'), javaOptions: [] };
    members.push(new Member(id, portsOf(id).client, spec, startTimeoutMs));
  }

  const stopAll = async () => {
    await Promise.all(members.map((m) => m.stop()));
  };

  try {
    for (const m of members) m.launch();
    await Promise.all(members.map((m) => m.waitInQuorum()));
  } catch (err) {
    await stopAll();
    throw err;
  }

  const ensemble: Ensemble = {
    servers: members,
    connectionString: members.map((m) => `127.0.0.1:${m.clientPort}`).join(','),
    async leader() {
      const deadline = Date.now() + 30_000;
      let seen = '';
      while (Date.now() < deadline) {
        const modes = await Promise.all(members.map((m) => m.mode()));
        const leaders = modes.flatMap((mode, i) => (mode === 'leader' ? [i] : []));
        if (leaders.length === 1) return leaders[0]!;
        seen = modes.map((mode, i) => `server ${members[i]!.id}: ${mode ?? 'down'}`).join(', ');
        await delay(100);
      }
      throw new Error(`no single ZooKeeper leader after 30 s (${seen})`);
    },
    stop: stopAll,
  };
  return ensemble;
}

// ---------------------------------------------------------------------------------------------
// One member of an ensemble on given addresses (a server per host)

export interface EnsembleServer {
  /** The server's myid, 1..255. */
  id: number;
  host: string;
  /** Followers connect to the leader here; default 2888. */
  peerPort: number;
  /** Leader election; default 3888. */
  electionPort: number;
}

export const DEFAULT_CLIENT_PORT = 2181;
export const DEFAULT_PEER_PORT = 2888;
export const DEFAULT_ELECTION_PORT = 3888;

/** An IPv6 address in brackets, for host:port strings. */
function hostPort(host: string): string {
  return host.includes(':') ? `[${host}]` : host;
}

/**
 * Parses an ensemble's member list: comma-separated `host[:peer:election]`, the position giving
 * the id (1, 2, …), or `id=host[:peer:election]` with explicit ids. Ports default to 2888/3888.
 * Throws on a malformed entry, a duplicate id, or a duplicate host:peer.
 */
export function parseEnsemble(spec: string): EnsembleServer[] {
  const entries = spec.split(',').map((e) => e.trim()).filter(Boolean);
  if (entries.length === 0) throw new RangeError('the ensemble names no server');
  const servers = entries.map((entry, i): EnsembleServer => {
    const m = /^(?:(\d+)=)?(\[[^\]]+\]|[^:=[\]]+)(?::(\d+):(\d+))?$/.exec(entry);
    if (!m) throw new RangeError(`ensemble member ${JSON.stringify(entry)}: expected host, host:peer:election or id=host[:peer:election]`);
    const id = m[1] !== undefined ? Number(m[1]) : i + 1;
    if (!Number.isInteger(id) || id < 1 || id > 255) throw new RangeError(`ensemble member ${JSON.stringify(entry)}: id must be 1..255`);
    const port = (v: string | undefined, dflt: number): number => {
      const n = v === undefined ? dflt : Number(v);
      if (!Number.isInteger(n) || n < 1 || n > 65535) throw new RangeError(`ensemble member ${JSON.stringify(entry)}: port ${v} out of range`);
      return n;
    };
    return { id, host: m[2]!.replace(/^\[|\]$/g, ''), peerPort: port(m[3], DEFAULT_PEER_PORT), electionPort: port(m[4], DEFAULT_ELECTION_PORT) };
  });
  const ids = new Set<number>();
  const ends = new Set<string>();
  for (const s of servers) {
    if (ids.has(s.id)) throw new RangeError(`ensemble: id ${s.id} appears twice`);
    ids.add(s.id);
    const end = `${s.host}:${s.peerPort}`;
    if (ends.has(end)) throw new RangeError(`ensemble: ${end} appears twice`);
    ends.add(end);
  }
  return servers;
}

/** The `server.N` lines of zoo.cfg for an ensemble. */
export function serverLines(servers: readonly EnsembleServer[]): Array<[string, string]> {
  return servers.map((s) => [`server.${s.id}`, `${hostPort(s.host)}:${s.peerPort}:${s.electionPort}`]);
}

export interface EnsembleMemberOptions extends Omit<ZooKeeperServerOptions, 'clientPort' | 'host'> {
  /** This server's id among `servers`. */
  myid: number;
  servers: readonly EnsembleServer[];
  /** Where clients connect; default this member's host in `servers`. */
  host?: string;
  clientPort?: number;
}

export interface RunningMember extends RunningZooKeeper {
  /** 'leader', 'follower', or undefined while it is out of the quorum (or not answering). */
  mode(): Promise<string | undefined>;
}

/**
 * Starts this host's member of an ensemble (its data directory kept across restarts: a member
 * that comes back rejoins with what it had) and resolves once it is in a quorum, as leader or
 * follower: that needs a majority of `servers` running, so start the others meanwhile (the default
 * wait is 30 s; `quark zk server` waits longer). Refuses a data directory that belongs to another id.
 */
export async function startEnsembleMember(o: EnsembleMemberOptions): Promise<RunningMember> {
  const me = o.servers.find((s) => s.id === o.myid);
  if (!me) throw new RangeError(`myid ${o.myid} is not among the ensemble's ids (${o.servers.map((s) => s.id).join(', ')})`);
  const dataDir = resolve(o.dataDir);
  const tickTime = o.tickTime ?? DEFAULT_TICK_MS;
  const logFile = resolve(o.logFile ?? join(dataDir, 'zookeeper.log'));
  const host = o.host ?? me.host;
  const clientPort = o.clientPort ?? DEFAULT_CLIENT_PORT;
  await mkdir(dataDir, { recursive: true });
  await mkdir(dirname(logFile), { recursive: true });
  const myidFile = join(dataDir, 'myid');
  const had = await readFile(myidFile, 'utf8').catch(() => undefined);
  if (had !== undefined && Number(had.trim()) !== o.myid) {
    throw new Error(`${dataDir} holds server ${had.trim()}'s data, not server ${o.myid}'s: give each member its own --data-dir`);
  }
  await writeFile(myidFile, `${o.myid}\n`);
  const proc = await launch(o, dataDir, logFile, [
    ...baseConfig(dataDir, clientPort, tickTime, { ...o, host }),
    ...serverLines(o.servers),
    ...Object.entries(o.extraConfig ?? {}),
  ]);
  await proc.waitServing(clientPort, QUORUM_MODES, o.startTimeoutMs ?? DEFAULT_START_TIMEOUT_MS, host);
  return {
    ...runningOf(proc, host, clientPort),
    mode: async () => {
      if (!proc.running) return undefined;
      try {
        return parseMode(await fourLetter(clientPort, 'srvr', host));
      } catch {
        return undefined;
      }
    },
  };
}
