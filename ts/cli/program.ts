// `quark`'s commands on commander: the processes (api, orc, compute, zk server), the local cluster
// (up, down, status), the operator's tools (zk, config, token, project, group) and the user's
// commands (server, unit, image, compute list…, orc list, shard list: ts/cli/user.ts). Every
// command has its own --help; `quark completion bash` prints a completion script.
import { join, resolve } from 'node:path';
import { existsSync, readFileSync } from 'node:fs';
import { Command, CommanderError, Option } from 'commander';
import { createLogger, type Logger } from '../common/log.js';
import { asComputeId } from '../common/ids.js';
import type { Zk } from '../zk/client.js';
import type { Paths } from '../zk/paths.js';
import type { ClusterConfig } from '../common/model.js';
import { addClusterReads, addComputeCommands, addUserCommands, apiOptions } from './user.js';
import { CliError, UsageError } from './errors.js';
import { EXIT } from './format.js';
import { completionScript } from './completion.js';
import { applySettings, SettingsError } from './settings.js';

// What talks to ZooKeeper is loaded by the commands that do: the user's commands talk to the
// API only, and start faster without a ZooKeeper client.
const zkModules = async () => {
  const [{ Zk }, { Paths }, { readConfig, updateConfig }, { runWithSession }] = await Promise.all([
    import('../zk/client.js'),
    import('../zk/paths.js'),
    import('../zk/config.js'),
    import('../zk/session.js'),
  ]);
  return { Zk, Paths, readConfig, updateConfig, runWithSession };
};

export { UsageError };

/** --zk's default: $QUARK_ZK, else what `quark up` wrote, else the default port. */
export function defaultZk(): string {
  if (process.env.QUARK_ZK) return process.env.QUARK_ZK;
  const f = resolve('.quark/cluster.json');
  if (existsSync(f)) {
    try {
      return (JSON.parse(readFileSync(f, 'utf8')) as { zk: string }).zk;
    } catch {
      /* fall through */
    }
  }
  return '127.0.0.1:2181';
}

export function int(v: unknown, name: string, min = 0, max = Number.MAX_SAFE_INTEGER): number {
  const n = Number(v);
  if (!Number.isInteger(n) || n < min || n > max) {
    throw new UsageError(`--${name} must be an integer ${max === Number.MAX_SAFE_INTEGER ? `≥ ${min}` : `from ${min} to ${max}`}, got ${String(v)}`);
  }
  return n;
}

/** ZooKeeper's flags, on every command that talks to it. */
function zkOptions(c: Command): Command {
  return c
    .option('--zk <host:port,…>', 'ZooKeeper (default: $QUARK_ZK, else .quark/cluster.json from quark up, else 127.0.0.1:2181)')
    .option('--root <path>', 'ZooKeeper root', '/quark')
    .option('--session-timeout-ms <ms>', 'how long a dead process keeps its locks and liveness node', '4000')
    .option('--config <file>', 'settings file (JSON; default $QUARK_CONFIG): plain keys for every command, a section per command; flags, then QUARK_* variables, win over it');
}

/** Prometheus on orcs and computes (the api serves GET /metrics itself, to an admin token). */
function metricsOptions(c: Command): Command {
  return c
    .option('--metrics-port <port>', 'serve Prometheus GET /metrics on this port (0: any free one, logged; default: none)')
    .option('--metrics-host <host>', 'address the metrics are served on (no token: keep it loopback or firewalled)', '127.0.0.1');
}

async function serveMetrics(v: Flags['v'], log: Logger): Promise<void> {
  const { serveMetricsFromFlags, MetricsFlagError } = await import('../common/metrics.js');
  try {
    await serveMetricsFromFlags(v['metrics-port'] as string | undefined, v['metrics-host'] as string, log);
  } catch (e) {
    if (e instanceof MetricsFlagError) throw new UsageError(e.message);
    throw e;
  }
}

/** A command's flags by their long names ('ram-mb'), as the process code reads them. */
export interface Flags {
  v: Record<string, string | boolean | undefined>;
  zk: string;
  root: string;
  sessionTimeoutMs: number;
}

export function flagsOf(c: Command): Flags {
  const v: Record<string, string | boolean | undefined> = {};
  for (const opt of c.options) {
    const long = opt.long?.replace(/^--/, '');
    if (!long) continue;
    const value = c.getOptionValue(opt.attributeName()) as string | boolean | undefined;
    // --no-demo is kept under its own name, true when given, like the old parser's boolean.
    if (opt.negate) v[long] = value === false;
    else v[long] = value;
  }
  // `quark zk --zk H tree`: a flag given before the subcommand counts for it too, as it did before.
  for (let p = c.parent; p; p = p.parent) {
    for (const opt of p.options) {
      const long = opt.long?.replace(/^--/, '');
      if (long && p.getOptionValueSource(opt.attributeName()) === 'cli' && c.getOptionValueSource(opt.attributeName()) !== 'cli') v[long] = p.getOptionValue(opt.attributeName()) as string;
    }
  }
  return {
    v,
    zk: (v.zk as string | undefined) ?? defaultZk(),
    root: (v.root as string | undefined) ?? '/quark',
    sessionTimeoutMs: v['session-timeout-ms'] === undefined ? 4000 : int(v['session-timeout-ms'], 'session-timeout-ms', 400),
  };
}

/** Runs an operator tool's body; a refusal by the API (CliError) is printed and exits 1. */
async function viaApi(fn: () => Promise<string>): Promise<void> {
  let out: string;
  try {
    out = await fn();
  } catch (e) {
    if (e instanceof Error && !(e instanceof CliError) && /^invalid (project|TTL)|TTL/.test(e.message)) throw new UsageError(e.message);
    throw e;
  }
  process.stdout.write(out);
}

export function buildProgram(): Command {
  const program = new Command('quark');
  program
    .description('a scalable maker and manipulator of computers, in a box')
    .enablePositionalOptions()
    .showSuggestionAfterError()
    .exitOverride()
    .configureOutput({ outputError: (s, write) => write(`quark: ${s.replace(/^error: /, '')}`) })
    .addHelpText(
      'after',
      `
Start here:  quark up (a whole cluster on this machine; state in .quark/), then
             quark server create web-1 --wait, quark server list, quark --help for the rest.
Every command has its own help: quark server create --help. Exit codes: 0 done, 1 error,
2 bad arguments, 3 a waited-for work unit FAILED, 4 a wait timed out.`,
    );

  // Flags not given come from the environment, then the settings file (ts/cli/settings.ts).
  program.hook('preAction', (_program, action) => {
    try {
      applySettings(action);
    } catch (e) {
      if (e instanceof SettingsError) throw new UsageError(e.message);
      throw e;
    }
  });

  // ---- processes ---------------------------------------------------------------------------------
  zkOptions(
    program
      .command('api')
      .description('the REST API (one process; more may run side by side); it also serves GET /metrics (admin), /openapi.json and /docs')
      .option('--port <port>', 'TCP port', '8080')
      .option('--host <host>', 'address to bind', '127.0.0.1')
      .option('--images-dir <dir>', 'where uploaded images are kept', join('.quark', 'image-store'))
      .option('--public-url <url>', 'where computes fetch images (default http://HOST:PORT)')
      .option('--tls-cert <file>', 'serve HTTPS with this certificate (with --tls-key)')
      .option('--tls-key <file>', "the certificate's key")
      .option('--insecure', 'allow plain HTTP on a non-loopback --host (warned at start)', false)
      .option('--allowed-host <name,…>', 'more Host values to answer (loopback names always)', '')
      .option('--rate-limit <n>', 'requests per minute per token; 0 = off', '6000')
      .option('--max-streams-per-token <n>', 'open event streams per token', '32')
      .option('--request-timeout-ms <ms>', 'a request must be done within this', '30000')
      .option('--max-event-loop-delay-ms <ms>', 'past it, 503 + Retry-After; 0 = off', '1000')
      .option('--list-settle-ms <ms>', "how long the list indexes let a changed record settle before reading it (a list call never waits for it); 0 = read each change at once", '50'),
  ).action(async (_o, cmd: Command) => {
    const a = flagsOf(cmd);
    const log = createLogger({ proc: 'api', pid: process.pid });
    const { readConfig, runWithSession } = await zkModules();
    const { buildApp, DEFAULT_PRESSURE } = await import('../api/app.js');
    const { planSurface, SurfaceRefused } = await import('../api/server.js');
    const port = int(a.v.port, 'port');
    const host = a.v.host as string;
    let surface;
    try {
      surface = planSurface({
        host,
        port,
        tlsCert: a.v['tls-cert'] as string | undefined,
        tlsKey: a.v['tls-key'] as string | undefined,
        insecure: a.v.insecure as boolean,
        extraHosts: (a.v['allowed-host'] as string).split(',').filter(Boolean),
      });
    } catch (e) {
      if (e instanceof SurfaceRefused) throw new UsageError(e.message);
      throw e;
    }
    for (const w of surface.warnings) {
      log.warn(w);
      process.stderr.write(`\n*** ${w} ***\n\n`);
    }
    const rate = int(a.v['rate-limit'], 'rate-limit');
    const lag = int(a.v['max-event-loop-delay-ms'], 'max-event-loop-delay-ms');
    const publicHost = host === '0.0.0.0' || host === '::' ? '127.0.0.1' : host;
    const images = {
      dir: resolve(a.v['images-dir'] as string),
      publicUrl: ((a.v['public-url'] as string | undefined) ?? `${surface.scheme}://${publicHost.includes(':') ? `[${publicHost}]` : publicHost}:${port}`).replace(/\/+$/, ''),
    };
    const opts = {
      tls: surface.tls,
      allowedHosts: surface.allowedHosts,
      rateLimit: rate === 0 ? null : { max: rate, windowMs: 60_000 },
      pressure: lag === 0 ? null : { ...DEFAULT_PRESSURE, maxEventLoopDelayMs: lag },
      maxStreamsPerToken: int(a.v['max-streams-per-token'], 'max-streams-per-token', 1),
      requestTimeoutMs: int(a.v['request-timeout-ms'], 'request-timeout-ms', 1),
      listSettleMs: int(a.v['list-settle-ms'], 'list-settle-ms', 0, 10_000),
      images,
    };
    await runWithSession({ ...a, log }, async (zk, paths) => {
      const config = await readConfig(zk, paths);
      const app = await buildApp({ zk, paths, config, log, ...opts });
      await app.listen({ port, host });
      log.info('api listening', { url: `${surface.scheme}://${host.includes(':') ? `[${host}]` : host}:${port}` });
      return { stop: () => app.close() };
    });
  });

  const orc = zkOptions(metricsOptions(
    program
      .command('orc')
      .description('an orchestrator: owns shards, places work on computes, drives it to the end')
      .option('--id <id>', 'its id (default: random)')
      .option('--sweep-ms <ms>', 'how often owned inboxes are re-read for units that could not move', '2000')
      .option('--stale-free-ms <ms>', "how long another writer's change to a compute's self/free may go unread (it is always read before a claim)", '5000')
      // Retention (ts/orc/retention.ts): what ended is pruned by the owner of its shard.
      .option('--unit-retention <duration>', 'how long finished work units are kept (7d, 24h, 30m, 90s, 500ms)', '7d')
      .option('--units-per-server <n>', 'and at most this many per server, the newest (0: no cap)', '100')
      .option('--deleted-retention <duration>', "how long a deleted server's last record is kept (GET /v1/servers?status=DELETED)", '7d')
      .option('--idempotency-retention <duration>', 'how long an Idempotency-Key is kept', '24h')
      .option('--prune-batch <n>', 'most records one retention pass looks at, of each kind', '500')
      .option('--retention-pass-ms <ms>', 'how often the owned shards are pruned (sooner while a backlog remains)', '60000'),
  )).action(async (_o, cmd: Command) => {
    const a = flagsOf(cmd);
    const id = (a.v.id as string | undefined) ?? undefined;
    const sweepIntervalMs = int(a.v['sweep-ms'], 'sweep-ms', 50);
    const staleFreeMs = int(a.v['stale-free-ms'], 'stale-free-ms', 0);
    const { parseDuration } = await import('../lifecycle/retention.js');
    const duration = (k: string): number => {
      try {
        return parseDuration(String(a.v[k]));
      } catch (e) {
        throw new UsageError(`--${k}: ${(e as Error).message}`);
      }
    };
    const retention = {
      unitRetentionMs: duration('unit-retention'),
      unitsPerServer: int(a.v['units-per-server'], 'units-per-server', 0),
      deletedRetentionMs: duration('deleted-retention'),
      idempotencyTtlMs: duration('idempotency-retention'),
      batch: int(a.v['prune-batch'], 'prune-batch', 1, 100_000),
      passMs: int(a.v['retention-pass-ms'], 'retention-pass-ms', 10),
    };
    const log = createLogger({ proc: 'orc', pid: process.pid, ...(id ? { orc: id } : {}) });
    const { readConfig, runWithSession } = await zkModules();
    await serveMetrics(a.v, log);
    const { Orc } = await import('../orc/orc.js');
    const { createClusterView } = await import('../orc/placement/index.js');
    await runWithSession({ ...a, log }, async (zk, paths) => {
      const config = await readConfig(zk, paths);
      const view = createClusterView({ overcommit: config.overcommit, log });
      const o = new Orc({ zk, paths, log, view, sweepIntervalMs, staleFreeMs, retention, ...(id ? { id } : {}) });
      await o.start();
      return o;
    });
  });

  const compute = zkOptions(metricsOptions(
    program
      .command('compute')
      .description('one hypervisor host (or, with --hollow N, N simulated ones); also compute list|cordon|uncordon|evacuate')
      .option('--id <id>', 'its id (required unless --hollow)')
      .option('--vcpus <n>', 'vCPUs it offers (default 16; on qemu:// what libvirt reports)')
      .option('--ram-mb <n>', 'memory it offers (default 32768; on qemu:// what libvirt reports)')
      .option('--disk-gb <n>', 'disk it offers', '500')
      .option('--bandwidth-mbps <n>', 'network bandwidth it offers', '10000')
      .option('--zone <zone>', 'its zone', 'default')
      .option('--labels <a,b>', 'its labels', '')
      .option('--libvirt-uri <uri>', 'libvirt connection; qemu:///system runs real guests', 'test:///default')
      .option('--shutdown-timeout-s <s>', "a stop's ACPI shutdown, then destroy", '30')
      .option('--step-delay-ms <ms>', 'a pause before each step, for demos and fault tests', '0')
      .option('--drain-timeout-ms <ms>', 'on SIGTERM, how long to finish units in flight', '30000')
      .option('--hypervisor-report-ms <ms>', 'least time between two writes of self/hypervisor', '200')
      .option('--state-dir <dir>', 'real guests: storage pool, consoles (default .quark/computes/ID)')
      .option('--accel <auto|kvm|tcg>', 'real guests: accelerator (auto: probe once, keep the answer)', 'auto')
      .option('--cpu <mode>', 'real guests: host-passthrough|host-model|default (with --accel kvm|tcg)')
      .option('--probe-image <path>', "real guests: the qcow2 the accelerator probe boots (default: build the tiny image)")
      .option('--probe-cache <file>', "real guests: the probe's answer, kept while the host stays the same (default STATE-DIR/accel-probe.json)")
      .option('--guest-network <net>', 'real guests: isolated|nat|none|network:NAME|bridge:NAME', 'isolated')
      .option('--console-port <port>', "real guests: where the consoles are served (0: any)", '0')
      .option('--console-host <host>', 'real guests: address the consoles are served on', '127.0.0.1')
      .option('--hollow <n>', 'run N hollow computes in this one process, ids PREFIX-1…PREFIX-N, each with its own session and private test driver')
      .option('--id-prefix <prefix>', 'hollow computes: id prefix', 'hollow')
      .option('--start-concurrency <n>', 'hollow computes: how many start at once', '64'),
  )).action(async (_o, cmd: Command) => {
    const a = flagsOf(cmd);
    // A compute's capacity figures: the placement scorer's columns are 32-bit, so larger ones are refused.
    const { RESOURCE_MAX } = await import('../lifecycle/records.js');
    // Real guests default to the host libvirt reports; the test driver to a made-up one.
    const capacityOf = (uri: string, host?: { cpus: number; memory_kib: number }) => ({
      vcpus: int(a.v.vcpus ?? host?.cpus ?? 16, 'vcpus', 1, RESOURCE_MAX),
      ram_mb: int(a.v['ram-mb'] ?? (host ? Math.floor(host.memory_kib / 1024) : 32768), 'ram-mb', 1, RESOURCE_MAX),
      disk_gb: int(a.v['disk-gb'], 'disk-gb', 0, RESOURCE_MAX),
      bandwidth_mbps: int(a.v['bandwidth-mbps'], 'bandwidth-mbps', 0, RESOURCE_MAX),
      zone: a.v.zone as string,
      labels: (a.v.labels as string).split(',').filter(Boolean),
      libvirt_uri: uri,
    });
    const stepDelayMs = int(a.v['step-delay-ms'], 'step-delay-ms');
    const hypervisorReportMs = int(a.v['hypervisor-report-ms'], 'hypervisor-report-ms', 1);
    if (a.v.hollow !== undefined) {
      if (a.v.id) throw new UsageError('--hollow names its computes from --id-prefix; drop --id');
      const count = int(a.v.hollow, 'hollow', 1);
      const prefix = a.v['id-prefix'] as string;
      const log = createLogger({ proc: 'compute', pid: process.pid, hollow: prefix });
      await serveMetrics(a.v, log);
      const { runHollow } = await import('../compute/hollow.js');
      const { libvirt_uri: _uri, ...capacity } = capacityOf('');
      await runHollow({
        count,
        idPrefix: prefix,
        zk: a.zk,
        root: a.root,
        sessionTimeoutMs: a.sessionTimeoutMs,
        capacity,
        log,
        stepDelayMs,
        hypervisorReportMs,
        startConcurrency: int(a.v['start-concurrency'], 'start-concurrency', 1),
      });
      return;
    }
    if (!a.v.id) throw new UsageError('compute needs --id (or --hollow N)');
    const id = asComputeId(a.v.id as string);
    const log = createLogger({ proc: 'compute', pid: process.pid, compute: id });
    await serveMetrics(a.v, log);
    const { Compute } = await import('../compute/compute.js');
    const { Hypervisor } = await import('../native/libvirt.js');
    const uri = a.v['libvirt-uri'] as string;
    const hv = await Hypervisor.open(uri);
    const shutdownTimeoutMs = int(a.v['shutdown-timeout-s'], 'shutdown-timeout-s') * 1000;
    const { openGuestHost } = await import('../guest/cli.js');
    // qemu:// connections run real guests: pool, image cache, consoles, the probed accelerator.
    const guest = await openGuestHost(hv, id, a.v, log);
    // A real guest boots from an image: builds without one are placed elsewhere (ts/orc/orc.ts).
    const capacity = { ...capacityOf(uri, guest ? await hv.hostInfo() : undefined), ...(guest ? { image_required: true } : {}) };
    const drainTimeoutMs = int(a.v['drain-timeout-ms'], 'drain-timeout-ms');
    const { runWithSession } = await zkModules();
    await runWithSession({ ...a, log, computeId: id }, async (zk, paths) => {
      const c = new Compute({ id, zk, paths, hv, capacity, log, stepDelayMs, hypervisorReportMs, drainTimeoutMs, shutdownTimeoutMs, ...(guest ? { guest } : {}) });
      await c.start();
      return c;
    });
  });
  addComputeCommands(compute);

  // ---- the local cluster ---------------------------------------------------------------------------
  zkOptions(
    program
      .command('up')
      .description('start ZooKeeper, one api, orcs and computes on this machine (state in .quark/), then boot a demo VM')
      .option('--orcs <n>', 'orchestrators', '2')
      .option('--computes <n>', 'computes (default 3; 1 with --hypervisor qemu)')
      .option('--port <port>', "the API's port", '8080')
      .option('--zk-port <port>', "ZooKeeper's port (another is taken if it is in use)", '2181')
      .option('--no-demo', 'boot no demo VM')
      .addOption(new Option('--hypervisor <kind>', "test: libvirt's test driver; qemu: real guests through libvirtd, one compute, the tiny image registered as 'tiny'").choices(['test', 'qemu']).default('test'))
      .option('--fresh', 'start from an empty state: remove .quark/ (but its image cache) first')
      .option('--detach', 'start in the background and return once the cluster is up; quark status, quark down')
      .option('--logs', "show every process's log, merged, prefixed with its name and made readable")
      .option('--metrics-port <base>', 'Prometheus /metrics on every orc and compute: orc-1 on BASE, the next orcs and then the computes on the ports after it'),
  ).action(async (_o, cmd: Command) => {
    const a = flagsOf(cmd);
    const hypervisor = a.v.hypervisor as 'test' | 'qemu';
    const { up } = await import('./up.js');
    await up({
      orcs: int(a.v.orcs, 'orcs', 1),
      // One qemu compute by default: they would share one host's CPUs.
      computes: int(a.v.computes ?? (hypervisor === 'qemu' ? '1' : '3'), 'computes', 1),
      apiPort: int(a.v.port, 'port'),
      zkPort: int(a.v['zk-port'], 'zk-port'),
      demo: !a.v['no-demo'],
      root: a.root,
      sessionTimeoutMs: a.sessionTimeoutMs,
      hypervisor,
      fresh: a.v.fresh === true,
      detach: a.v.detach === true,
      logs: a.v.logs === true,
      ...(a.v['metrics-port'] !== undefined ? { metricsPort: int(a.v['metrics-port'], 'metrics-port', 1) } : {}),
      argv: process.argv.slice(2),
    });
  });
  program
    .command('down')
    .description('stop the cluster quark up started here (processes first, ZooKeeper last)')
    .option('--timeout <seconds>', 'how long to wait for it to stop before killing it', '30')
    .action(async (o: { timeout: string }) => {
      const { down } = await import('./local.js');
      process.exitCode = await down({ timeoutMs: int(o.timeout, 'timeout', 1) * 1000 });
    });
  apiOptions(program.command('status').description('is the cluster quark up started here running, and how is it (exit 0 up, 1 not)')).action(
    async (o: { url?: string; api?: string; output: 'table' | 'json' }) => {
      const { status } = await import('./local.js');
      process.exitCode = await status({ url: o.url ?? o.api, output: o.output });
    },
  );

  program
    .command('logs')
    .description("the logs of the cluster quark up started here (.quark/logs/), merged by time and readable")
    .option('-n, --lines <n>', 'how many of the last lines', '200')
    .option('-f, --follow', 'go on printing lines as they come (Ctrl-C stops)')
    .option('-p, --process <name>', 'only this process (api, orc-1, compute-2, up; repeat for more)', (v: string, prev: string[] = []) => [...prev, v])
    .action(async (o: { lines: string; follow?: boolean; process?: string[] }) => {
      const { showLogs } = await import('./logs-cmd.js');
      await showLogs({ lines: int(o.lines, 'lines', 1), follow: o.follow === true, ...(o.process ? { process: o.process } : {}) });
    });

  // ---- operator tools ----------------------------------------------------------------------------
  const zk = program.command('zk').description('operator views of the ZooKeeper tree, values decoded; zk server runs a ZooKeeper (standalone or an ensemble member)');
  const zkView = async (cmd: Command, fn: (zk: Zk, paths: Paths) => Promise<unknown>): Promise<void> => {
    const a = flagsOf(cmd);
    const { Zk, Paths } = await zkModules();
    (await import('./zk-credentials.js')).useLocalAdminCredentials();
    const client = await Zk.connect(a.zk, { connectTimeoutMs: 5000 });
    try {
      await fn(client, new Paths(a.root));
    } finally {
      await client.close();
    }
  };
  const tools = () => import('./zk-tools.js');
  zkOptions(zk.command('tree').description('the tree under a path (default: the root), decoded').argument('[path]')).action(async (path: string | undefined, _o, cmd: Command) =>
    zkView(cmd, async (c, paths) => (await tools()).printTree(c, path ?? paths.root, process.stdout)),
  );
  zkOptions(zk.command('ls').description("a znode's children").argument('<path>')).action(async (path: string, _o, cmd: Command) =>
    zkView(cmd, async (c) => (await tools()).printLs(c, path, process.stdout)),
  );
  zkOptions(zk.command('get').description("a znode's value, decoded").argument('<path>')).action(async (path: string, _o, cmd: Command) =>
    zkView(cmd, async (c) => (await tools()).printGet(c, path, process.stdout)),
  );
  zkOptions(
    zk
      .command('server')
      .description('a ZooKeeper in the foreground, standalone or (--ensemble) one member of an ensemble; Ctrl-C stops it')
      .option('--port <port>', 'client port', '2181')
      .option('--data-dir <dir>', 'its data (kept across restarts)', join('.quark', 'zk'))
      .option('--tick-ms <ms>', "ZooKeeper's tickTime", '200')
      .option('--host <addr>', 'where clients connect (default 127.0.0.1; with --ensemble, this member\'s address in the list)')
      .option('--ensemble <h1,h2,h3>', "every member's host[:peer:election] (ports 2888:3888), or id=host…; the same list on every member")
      .option('--myid <n>', "this member's id (default: the position of --host in --ensemble)")
      .option('--start-timeout-s <s>', 'how long to wait for a quorum', '600'),
  ).action(async (_o, cmd: Command) => {
    const a = flagsOf(cmd);
    const { zkServer } = await import('./zk-server.js');
    let server;
    try {
      server = await zkServer({
        port: a.v.port as string,
        dataDir: a.v['data-dir'] as string,
        tickMs: a.v['tick-ms'] as string,
        host: a.v.host as string | undefined,
        ensemble: a.v.ensemble as string | undefined,
        myid: a.v.myid as string | undefined,
        startTimeoutS: a.v['start-timeout-s'] as string,
        say: (line) => process.stdout.write(`${line}\n`),
      });
    } catch (e) {
      if (e instanceof RangeError) throw new UsageError(e.message);
      throw e;
    }
    process.stdout.write(`ZooKeeper serving on ${server.connectionString} (pid ${server.pid}); Ctrl-C stops it\n`);
    const stop = () => void server.stop().then(() => process.exit(0));
    process.on('SIGINT', stop);
    process.on('SIGTERM', stop);
  });
  // ZooKeeper ACLs per role (docs/security.md, ts/zk/acl.ts).
  zk.command('credentials')
    .description('make ZooKeeper credentials, one file per role (mode 0600), and one per --compute; kept if present')
    .option('--dir <dir>', 'where', join('.quark', 'zk-credentials'))
    .option('--compute <id...>', "a compute's own file (compute-<id>.json)")
    .action(async (o: { dir: string; compute?: string[] }) => {
      const computes = o.compute ?? [];
      for (const id of computes) asComputeId(id);
      process.stdout.write((await import('./zk-credentials.js')).credentialsCommand(resolve(o.dir), computes));
    });
  zkOptions(zk.command('secure').description('put a cluster made without ZooKeeper ACLs under them (as admin; stop the cluster first)')).action(async (_o, cmd: Command) => {
    const a = flagsOf(cmd);
    const creds = await import('./zk-credentials.js');
    creds.useLocalAdminCredentials();
    process.stdout.write(await creds.secureCommand(a.zk, a.root));
  });
  zkOptions(
    zk
      .command('rotate')
      .description('move a stopped cluster to the credentials in --dir (made by zk credentials --dir), as the old admin')
      .requiredOption('--dir <dir>', 'the new credentials'),
  ).action(async (_o, cmd: Command) => {
    const a = flagsOf(cmd);
    const creds = await import('./zk-credentials.js');
    creds.useLocalAdminCredentials();
    process.stdout.write(await creds.rotateCommand(a.zk, a.root, resolve(a.v.dir as string)));
  });
  // `quark zk` alone: the whole tree, as before.
  zkOptions(zk).action(async (_o, cmd: Command) => zkView(cmd, async (c, paths) => (await tools()).printTree(c, paths.root, process.stdout)));

  const configUsage = 'usage: quark config get [key] [--zone Z] | quark config set placement-policy spread|pack [--zone Z]';
  const config = zkOptions(
    program
      .command('config')
      .description("cluster settings: every orc follows a change at once; --zone Z sets or reads that zone's override ('inherit' removes it)")
      .argument('<get|set>')
      .argument('[key]', 'placement-policy, or (get) any setting')
      .argument('[value]', 'set: spread|pack (with --zone, also inherit)')
      .option('--zone <zone>', "a zone's override"),
  );
  config.action(async (sub: string, key: string | undefined, value: string | undefined, _o, cmd: Command) => {
    const a = flagsOf(cmd);
    const zone = a.v.zone as string | undefined;
    if (sub === 'set' && key !== 'placement-policy') {
      throw new UsageError(key === undefined ? configUsage : `${key} cannot be set here; settable: placement-policy`);
    }
    if (sub === 'set' && value === undefined) throw new UsageError(configUsage);
    if (sub === 'get' && (value !== undefined || (zone !== undefined && key !== 'placement-policy'))) throw new UsageError(configUsage);
    if (sub !== 'get' && sub !== 'set') throw new UsageError(configUsage);
    const { Zk, Paths, updateConfig } = await zkModules();
    const { DEFAULT_CONFIG } = await import('../common/model.js');
    const { withPlacementPolicy } = await import('../common/placement-policy.js');
    (await import('./zk-credentials.js')).useLocalAdminCredentials();
    const client = await Zk.connect(a.zk, { connectTimeoutMs: 5000 });
    try {
      const paths = new Paths(a.root);
      if (sub === 'set') {
        let next: ClusterConfig;
        try {
          next = await updateConfig(client, paths, (cur) => withPlacementPolicy(cur, value!, zone));
        } catch (err) {
          if (err instanceof RangeError || (await client.exists(paths.config)) === null) throw new UsageError((err as Error).message);
          throw err;
        }
        await printPolicy(next, zone);
        return;
      }
      const cur = await client.get<ClusterConfig>(paths.config);
      if (!cur) throw new UsageError(`${paths.config} does not exist: no Quark cluster under ${paths.root}`);
      const cfg: ClusterConfig = { ...DEFAULT_CONFIG, ...cur.value };
      if (key === undefined) process.stdout.write(`${JSON.stringify(cfg, null, 2)}\n`);
      else if (key === 'placement-policy') {
        try {
          await printPolicy(cfg, zone);
        } catch (err) {
          throw new UsageError(`${paths.config} holds an invalid policy (${(err as Error).message}); set a valid one`);
        }
      } else if (Object.hasOwn(cfg, key)) process.stdout.write(`${JSON.stringify(cfg[key as keyof ClusterConfig])}\n`);
      else throw new UsageError(`unknown setting ${key}; known: placement-policy, ${Object.keys(DEFAULT_CONFIG).join(', ')}`);
    } finally {
      await client.close();
    }
  });
  // The old parser's message for a wrong number of words.
  config.configureOutput({ outputError: (s, write) => write(`quark: ${s.replace(/^error: /, '')}${/argument|too many/.test(s) ? `${configUsage}\n` : ''}`) });

  const token = program.command('token').description('bearer tokens (admin): create, list, revoke; through the API as $QUARK_TOKEN or .quark/token');
  zkOptions(
    apiOptions(
      token
        .command('create')
        .description('a token for a project and role; shown once (--bootstrap: straight into ZooKeeper, the first admin token)')
        .requiredOption('--project <project>', 'its project')
        .requiredOption('--role <role>', 'admin|member|reader')
        .option('--ttl <ttl>', 'how long it lives, e.g. 24h, 30d (default: forever)')
        .option('--name <name>', 'a note saying whose it is')
        .option('--bootstrap', 'write it straight into ZooKeeper (--zk, --root): for a cluster with no admin token yet'),
      false,
    ),
  ).action(async (_o, cmd: Command) => {
    const a = flagsOf(cmd);
    const cli = await import('../auth/cli.js');
    const { apiUrl } = await import('./client.js');
    if (a.v.bootstrap) (await import('./zk-credentials.js')).useLocalAdminCredentials();
    await viaApi(() =>
      cli.tokenCreate(apiUrl((a.v.url ?? a.v.api) as string | undefined), {
        project: a.v.project as string,
        role: a.v.role as string,
        ttl: a.v.ttl as string | undefined,
        name: a.v.name as string | undefined,
        ...(a.v.bootstrap ? { bootstrap: { zk: a.zk, root: a.root } } : {}),
      }),
    );
  });
  apiOptions(token.command('list').description('every token (never a secret)'), false).action(async (o: { url?: string; api?: string }) => {
    const cli = await import('../auth/cli.js');
    const { apiUrl } = await import('./client.js');
    await viaApi(() => cli.tokenList(apiUrl(o.url ?? o.api)));
  });
  apiOptions(token.command('revoke').description('revoke a token; its open streams end').argument('<id>'), false).action(async (id: string, o: { url?: string; api?: string }) => {
    const cli = await import('../auth/cli.js');
    const { apiUrl } = await import('./client.js');
    await viaApi(() => cli.tokenRevoke(apiUrl(o.url ?? o.api), id));
  });

  const project = program.command('project').description("a project's quota and usage");
  const quota = project.command('quota').description("a project's quota");
  apiOptions(
    quota
      .command('set')
      .description('set limits (a number, or none = unlimited); unnamed limits stay as they were (admin)')
      .argument('<project>')
      .option('--instances <n>')
      .option('--vcpus <n>')
      .option('--ram-mb <n>')
      .option('--disk-gb <n>'),
    false,
  ).action(async (p: string, _o, cmd: Command) => {
    const a = flagsOf(cmd);
    const cli = await import('../auth/cli.js');
    const { apiUrl } = await import('./client.js');
    await viaApi(() => cli.projectQuotaSet(apiUrl((a.v.url ?? a.v.api) as string | undefined), p, cli.quotaFromFlags(a.v as Record<string, string | undefined>)));
  });
  apiOptions(quota.command('show').description("a project's quota").argument('<project>'), false).action(async (p: string, o: { url?: string; api?: string }) => {
    const cli = await import('../auth/cli.js');
    const { apiUrl } = await import('./client.js');
    await viaApi(() => cli.projectQuotaShow(apiUrl(o.url ?? o.api), p));
  });
  apiOptions(project.command('usage').description("a project's usage and quota").argument('<project>'), false).action(async (p: string, o: { url?: string; api?: string }) => {
    const cli = await import('../auth/cli.js');
    const { apiUrl } = await import('./client.js');
    await viaApi(() => cli.projectUsage(apiUrl(o.url ?? o.api), p));
  });

  const group = program.command('group').description('server groups: affinity, anti-affinity, soft-anti-affinity');
  apiOptions(
    group
      .command('create')
      .description('a server group in your project')
      .requiredOption('--name <name>')
      .requiredOption('--policy <policy>', 'affinity|anti-affinity|soft-anti-affinity'),
    false,
  ).action(async (o: { url?: string; api?: string; name: string; policy: string }) => {
    const groups = await import('./groups.js');
    const { apiUrl } = await import('./client.js');
    await viaApi(() => groups.groupCreate(apiUrl(o.url ?? o.api), o.name, o.policy));
  });
  apiOptions(group.command('list').description('server groups you can see'), false).action(async (o: { url?: string; api?: string }) => {
    const groups = await import('./groups.js');
    const { apiUrl } = await import('./client.js');
    await viaApi(() => groups.groupList(apiUrl(o.url ?? o.api)));
  });
  for (const verb of ['show', 'delete'] as const) {
    apiOptions(group.command(verb).description(verb === 'show' ? 'a group and its members' : 'delete a group (refused while it has members)').argument('<id>'), false).action(
      async (id: string, o: { url?: string; api?: string }) => {
        const groups = await import('./groups.js');
        const { apiUrl } = await import('./client.js');
        await viaApi(() => (verb === 'show' ? groups.groupShow(apiUrl(o.url ?? o.api), id) : groups.groupDelete(apiUrl(o.url ?? o.api), id)));
      },
    );
  }

  addUserCommands(program);
  addClusterReads(program, orc);

  program
    .command('completion')
    .description('print a shell completion script: eval "$(quark completion bash)", or save it under /etc/bash_completion.d/')
    .argument('<shell>', 'bash')
    .action((shell: string) => {
      if (shell !== 'bash') throw new UsageError(`completion: only bash is supported, got ${JSON.stringify(shell)}`);
      process.stdout.write(completionScript(program));
    });

  // The old parser took the ZooKeeper flags on every command, and launchers append them to any
  // subcommand they start: commands that do not use them still accept them (not shown in help).
  const walk = (c: Command): void => {
    if (c !== program && !c.options.some((o) => o.long === '--zk')) {
      c.addOption(new Option('--zk <host:port,…>').hideHelp());
      c.addOption(new Option('--root <path>').hideHelp());
      c.addOption(new Option('--session-timeout-ms <ms>').hideHelp());
    }
    c.commands.forEach(walk);
  };
  walk(program);
  return program;
}

/** The policy in force: for `zone`, or the cluster's followed by one `zone <name>: <policy>` line per override. */
async function printPolicy(cfg: ClusterConfig, zone: string | undefined): Promise<void> {
  const { policyFor, policySettingOf } = await import('../common/placement-policy.js');
  const s = policySettingOf(cfg);
  if (zone !== undefined) return void process.stdout.write(`${policyFor(s, zone)}\n`);
  process.stdout.write(`${s.policy}\n`);
  for (const [z, p] of Object.entries(s.byZone)) process.stdout.write(`zone ${z}: ${p}\n`);
}

/**
 * Runs `quark <argv>`. Exit status: 2 for bad arguments (the parser's or a command's own), 1 for a
 * refusal by the API or any other error, else what the command set (0, or a unit's outcome).
 */
export async function run(argv: string[]): Promise<void> {
  const program = buildProgram();
  // `quark` alone: the overview, as a successful answer.
  if (argv.length === 0) return void process.stdout.write(program.helpInformation());
  try {
    await program.parseAsync(argv, { from: 'user' });
  } catch (err) {
    if (err instanceof CommanderError) {
      // Help and version are exits too, with status 0.
      process.exit(err.exitCode === 0 ? 0 : EXIT.USAGE);
    }
    if (err instanceof UsageError) {
      process.stderr.write(`quark: ${err.message}\n`);
      process.exit(EXIT.USAGE);
    }
    if (err instanceof CliError) {
      process.stderr.write(`quark: ${err.message}\n`);
      process.exit(EXIT.ERROR);
    }
    process.stderr.write(`quark: ${(err as Error).stack ?? String(err)}\n`);
    process.exit(EXIT.ERROR);
  }
}
