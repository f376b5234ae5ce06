// `quark`: one binary, one subcommand per process kind, plus `up` (everything, locally) and `zk`
// (operator views of the tree with decoded values).
import { existsSync, readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { parseArgs, type ParseArgsConfig } from 'node:util';
import { createLogger } from '../common/log.js';
import { asComputeId } from '../common/ids.js';
import { Zk } from '../zk/client.js';
import { Paths } from '../zk/paths.js';
import { readConfig, updateConfig } from '../zk/config.js';
import { DEFAULT_CONFIG, type ClusterConfig } from '../common/model.js';
import { policyFor, policySettingOf, withPlacementPolicy } from '../common/placement-policy.js';
import { printTree, printGet, printLs } from './zk-tools.js';
import { runWithSession } from '../zk/session.js';
import { up } from './up.js';
// A compute's capacity figures: the placement scorer's columns are 32-bit, so larger ones are refused.
import { RESOURCE_MAX } from '../lifecycle/records.js';

const HELP = `quark — a scalable maker and manipulator of computers, in a box

Usage: quark <command> [options]

Commands:
  up        start ZooKeeper, one api, orcs and computes locally, then boot a demo VM
            --orcs N (2) --computes M (3) --port P (8080) --zk-port Z (2181) --no-demo
            --hypervisor test|qemu (test: libvirt's test driver; qemu: real guests through
                                   libvirtd, one compute, the tiny image registered as 'tiny')
  api       the REST API           --port (8080) --host (127.0.0.1)
                                   --images-dir (.quark/image-store: where uploaded images are kept)
                                   --public-url (http://HOST:PORT: where computes fetch images)
                                   --tls-cert FILE --tls-key FILE   serve HTTPS
                                   --insecure   allow plain HTTP on a non-loopback --host (warned at start)
                                   --allowed-host NAME,…   more Host values to answer (loopback names always)
                                   --rate-limit (6000: requests per minute per token; 0 = off)
                                   --max-streams-per-token (32)   --request-timeout-ms (30000)
                                   --max-event-loop-delay-ms (1000: past it, 503 + Retry-After; 0 = off)
  token     bearer tokens          token create --project P --role admin|member|reader [--ttl 24h] [--name N]
                                   token list | token revoke <id>
                                   (through the API with $QUARK_TOKEN or .quark/token; --api URL.
                                   token create --bootstrap writes straight into ZooKeeper: the first admin token)
  project   quotas and usage       project quota set <P> [--instances N] [--vcpus N] [--ram-mb N] [--disk-gb N]
                                   (a number, or none = unlimited) | project quota show <P> | project usage <P>
  group     server groups          group create --name N --policy affinity|anti-affinity|soft-anti-affinity
                                   group list | group show <id> | group delete <id>   (through the API, as token)
  orc       an orchestrator        --id ID (random)
                                   --sweep-ms (2000: how often owned inboxes are re-read for units that could not move)
                                   --stale-free-ms (5000: how long another writer's change to a compute's
                                   self/free may go unread; it is always read before a claim on it)
                                   --unit-retention (7d: finished work units are kept this long)
                                   --units-per-server (100: and at most this many per server; 0 = no cap)
                                   --deleted-retention (7d: a deleted server's last record is kept this long)
                                   --idempotency-retention (24h: Idempotency-Keys are kept this long)
                                   --prune-batch (500: most records each retention pass looks at)
                                   --retention-pass-ms (60000: how often the owned shards are pruned)
  compute   one hypervisor host    --id ID --vcpus (16) --ram-mb (32768) --disk-gb (500)
                                   --bandwidth-mbps (10000) --zone (default) --labels a,b
                                   --libvirt-uri (test:///default; qemu:///system runs real guests,
                                   and --vcpus/--ram-mb then default to what libvirt reports)
                                   --shutdown-timeout-s (30: a stop's ACPI shutdown, then destroy)
            real guests only:      --state-dir (.quark/computes/ID: storage pool, consoles)
                                   --accel auto|kvm|tcg (auto: probe once, keep the answer)
                                   --cpu host-passthrough|host-model|default (with --accel kvm|tcg)
                                   --probe-image PATH (the qcow2 the probe boots; default: build the tiny image)
                                   --probe-cache FILE (STATE-DIR/accel-probe.json: the probe's answer, kept
                                   while the host stays the same)
                                   --guest-network isolated|nat|none|network:NAME|bridge:NAME (isolated)
                                   --console-port (0: any) --console-host (127.0.0.1)
                                   --step-delay-ms (0: a pause before each step, for demos and fault tests)
                                   --drain-timeout-ms (30000: on SIGTERM, how long to finish units in flight)
                                   --hypervisor-report-ms (200: least time between two writes of self/hypervisor)
            --hollow N --id-prefix P (hollow)   N computes in this one process, ids P-1…P-N, each with
                                   its own ZooKeeper session, directory and private libvirt test driver
            compute cordon <id> | uncordon <id>   (admin, through the API) placement passes a cordoned
                                   compute over; its VMs keep running
            compute evacuate <id>  (admin) rebuild the LOST VMs of a compute that is down on other
                                   computes, same server ids (refused while it is alive)
  zk        operator views         zk tree [path] | zk ls <path> | zk get <path>
            zk server --port P --data-dir D   (a standalone ZooKeeper, foreground)
  config    cluster settings       config get [key] [--zone Z] | config set placement-policy spread|pack [--zone Z]
            (every orc follows a change at once; --zone Z sets that zone's override, and the
            value 'inherit' removes it; requests naming zone Z follow its override)

Common options:
  --zk HOST:PORT[,…]   ZooKeeper (default: $QUARK_ZK, else .quark/cluster.json from 'up', else 127.0.0.1:2181)
  --root PATH          ZooKeeper root (default /quark)
  --session-timeout-ms (4000)   how long a dead process keeps its locks and liveness node
  -h, --help
`;

const COMMON: NonNullable<ParseArgsConfig['options']> = {
  zk: { type: 'string' },
  root: { type: 'string', default: '/quark' },
  'session-timeout-ms': { type: 'string', default: '4000' },
  help: { type: 'boolean', short: 'h' },
};

function defaultZk(): string {
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

function int(v: unknown, name: string, min = 0, max = Number.MAX_SAFE_INTEGER): number {
  const n = Number(v);
  if (!Number.isInteger(n) || n < min || n > max) {
    throw new UsageError(`--${name} must be an integer ${max === Number.MAX_SAFE_INTEGER ? `≥ ${min}` : `from ${min} to ${max}`}, got ${String(v)}`);
  }
  return n;
}


class UsageError extends Error {}

async function main(argv: string[]): Promise<void> {
  const [cmd, ...rest] = argv;
  if (!cmd || cmd === '--help' || cmd === '-h' || cmd === 'help') {
    process.stdout.write(HELP);
    return;
  }
  const parse = (extra: NonNullable<ParseArgsConfig['options']>, positionals = false) => {
    const { values, positionals: pos } = parseArgs({ args: rest, options: { ...COMMON, ...extra }, allowPositionals: positionals, strict: true });
    if (values.help) {
      process.stdout.write(HELP);
      process.exit(0);
    }
    const v = values as Record<string, string | boolean | undefined>;
    return {
      v,
      pos,
      zk: (v.zk as string | undefined) ?? defaultZk(),
      root: v.root as string,
      sessionTimeoutMs: int(v['session-timeout-ms'], 'session-timeout-ms', 400),
    };
  };

  switch (cmd) {
    case 'api': {
      const a = parse({
        port: { type: 'string', default: '8080' },
        host: { type: 'string', default: '127.0.0.1' },
        'images-dir': { type: 'string', default: join('.quark', 'image-store') },
        'public-url': { type: 'string' },
        'tls-cert': { type: 'string' },
        'tls-key': { type: 'string' },
        insecure: { type: 'boolean', default: false },
        'allowed-host': { type: 'string', default: '' },
        'rate-limit': { type: 'string', default: '6000' },
        'max-streams-per-token': { type: 'string', default: '32' },
        'request-timeout-ms': { type: 'string', default: '30000' },
        'max-event-loop-delay-ms': { type: 'string', default: '1000' },
      });
      const log = createLogger({ proc: 'api', pid: process.pid });
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
        images,
      };
      await runWithSession({ ...a, log }, async (zk, paths) => {
        const config = await readConfig(zk, paths);
        const app = await buildApp({ zk, paths, config, log, ...opts });
        await app.listen({ port, host });
        log.info('api listening', { url: `${surface.scheme}://${host.includes(':') ? `[${host}]` : host}:${port}` });
        return { stop: () => app.close() };
      });
      return;
    }
    case 'token':
    case 'project': {
      const a = parse(
        {
          api: { type: 'string' },
          project: { type: 'string' },
          role: { type: 'string' },
          ttl: { type: 'string' },
          name: { type: 'string' },
          bootstrap: { type: 'boolean', default: false },
          instances: { type: 'string' },
          vcpus: { type: 'string' },
          'ram-mb': { type: 'string' },
          'disk-gb': { type: 'string' },
        },
        true,
      );
      const cli = await import('../auth/cli.js');
      const api = (a.v.api as string | undefined) ?? cli.defaultApi();
      const [sub, arg, arg2] = a.pos;
      let out: string;
      try {
        if (cmd === 'token' && sub === 'create') {
          if (!a.v.project || !a.v.role) throw new UsageError('token create needs --project and --role');
          out = await cli.tokenCreate(api, {
            project: a.v.project as string,
            role: a.v.role as string,
            ttl: a.v.ttl as string | undefined,
            name: a.v.name as string | undefined,
            ...(a.v.bootstrap ? { bootstrap: { zk: a.zk, root: a.root } } : {}),
          });
        } else if (cmd === 'token' && sub === 'list') out = await cli.tokenList(api);
        else if (cmd === 'token' && sub === 'revoke' && arg) out = await cli.tokenRevoke(api, arg);
        else if (cmd === 'project' && sub === 'quota' && arg === 'set' && arg2) {
          out = await cli.projectQuotaSet(api, arg2, cli.quotaFromFlags(a.v as Record<string, string | undefined>));
        } else if (cmd === 'project' && sub === 'quota' && arg === 'show' && arg2) out = await cli.projectQuotaShow(api, arg2);
        else if (cmd === 'project' && sub === 'usage' && arg) out = await cli.projectUsage(api, arg);
        else throw new UsageError(cmd === 'token' ? 'usage: quark token create|list|revoke' : 'usage: quark project quota set|show <P> | project usage <P>');
      } catch (e) {
        if (e instanceof Error && /^invalid (project|TTL)|TTL/.test(e.message)) throw new UsageError(e.message);
        if (!(e instanceof cli.CliError)) throw e;
        process.stderr.write(`quark: ${e.message}\n`);
        process.exit(1);
      }
      process.stdout.write(out);
      return;
    }
    case 'group': {
      const a = parse({ api: { type: 'string' }, name: { type: 'string' }, policy: { type: 'string' } }, true);
      const cli = await import('../auth/cli.js');
      const groups = await import('./groups.js');
      const api = (a.v.api as string | undefined) ?? cli.defaultApi();
      const [sub, id] = a.pos;
      let out: string;
      try {
        if (sub === 'create') {
          if (!a.v.name || !a.v.policy) throw new UsageError('group create needs --name and --policy');
          out = await groups.groupCreate(api, a.v.name as string, a.v.policy as string);
        } else if (sub === 'list' && !id) out = await groups.groupList(api);
        else if (sub === 'show' && id) out = await groups.groupShow(api, id);
        else if (sub === 'delete' && id) out = await groups.groupDelete(api, id);
        else throw new UsageError('usage: quark group create --name N --policy P | list | show <id> | delete <id>');
      } catch (e) {
        if (!(e instanceof cli.CliError)) throw e;
        process.stderr.write(`quark: ${e.message}\n`);
        process.exit(1);
      }
      process.stdout.write(out);
      return;
    }
    case 'orc': {
      const a = parse({
        id: { type: 'string' },
        'sweep-ms': { type: 'string', default: '2000' },
        'stale-free-ms': { type: 'string', default: '5000' },
        'unit-retention': { type: 'string', default: '7d' },
        'units-per-server': { type: 'string', default: '100' },
        'deleted-retention': { type: 'string', default: '7d' },
        'idempotency-retention': { type: 'string', default: '24h' },
        'prune-batch': { type: 'string', default: '500' },
        'retention-pass-ms': { type: 'string', default: '60000' },
      });
      const { parseDuration } = await import('../lifecycle/retention.js');
      const duration = (k: string): number => {
        try {
          return parseDuration(a.v[k] as string);
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
      const id = (a.v.id as string | undefined) ?? undefined;
      const sweepIntervalMs = int(a.v['sweep-ms'], 'sweep-ms', 50);
      const staleFreeMs = int(a.v['stale-free-ms'], 'stale-free-ms', 0);
      const log = createLogger({ proc: 'orc', pid: process.pid, ...(id ? { orc: id } : {}) });
      const { Orc } = await import('../orc/orc.js');
      const { createClusterView } = await import('../orc/placement/index.js');
      await runWithSession({ ...a, log }, async (zk, paths) => {
        const config = await readConfig(zk, paths);
        const view = createClusterView({ overcommit: config.overcommit, log });
        const orc = new Orc({ zk, paths, log, view, sweepIntervalMs, staleFreeMs, retention, ...(id ? { id } : {}) });
        await orc.start();
        return orc;
      });
      return;
    }
    case 'compute': {
      const verb = rest[0];
      if (verb === 'evacuate' || verb === 'cordon' || verb === 'uncordon') {
        const a = parse({ api: { type: 'string' } }, true);
        const [, id, ...extra] = a.pos;
        if (!id || extra.length > 0) throw new UsageError(`usage: quark compute ${verb} <compute id> [--api URL]`);
        const cli = await import('../auth/cli.js');
        const ops = await import('./computes.js');
        const api = (a.v.api as string | undefined) ?? cli.defaultApi();
        try {
          process.stdout.write(verb === 'evacuate' ? await ops.evacuate(api, id) : await ops.cordon(api, id, verb === 'cordon'));
        } catch (e) {
          if (!(e instanceof cli.CliError)) throw e;
          process.stderr.write(`quark: ${e.message}\n`);
          process.exit(1);
        }
        return;
      }
      const a = parse({
        id: { type: 'string' },
        vcpus: { type: 'string' },
        'ram-mb': { type: 'string' },
        'disk-gb': { type: 'string', default: '500' },
        'bandwidth-mbps': { type: 'string', default: '10000' },
        zone: { type: 'string', default: 'default' },
        labels: { type: 'string', default: '' },
        'libvirt-uri': { type: 'string', default: 'test:///default' },
        'step-delay-ms': { type: 'string', default: '0' },
        'drain-timeout-ms': { type: 'string', default: '30000' },
        'hypervisor-report-ms': { type: 'string', default: '200' },
        hollow: { type: 'string' },
        'id-prefix': { type: 'string', default: 'hollow' },
        'start-concurrency': { type: 'string', default: '64' },
        'shutdown-timeout-s': { type: 'string', default: '30' },
        'state-dir': { type: 'string' },
        accel: { type: 'string', default: 'auto' },
        cpu: { type: 'string' },
        'probe-image': { type: 'string' },
        'probe-cache': { type: 'string' },
        'guest-network': { type: 'string', default: 'isolated' },
        'console-port': { type: 'string', default: '0' },
        'console-host': { type: 'string', default: '127.0.0.1' },
      });
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
      await runWithSession({ ...a, log }, async (zk, paths) => {
        const c = new Compute({ id, zk, paths, hv, capacity, log, stepDelayMs, hypervisorReportMs, drainTimeoutMs, shutdownTimeoutMs, ...(guest ? { guest } : {}) });
        await c.start();
        return c;
      });
      return;
    }
    case 'zk': {
      const a = parse({ port: { type: 'string' }, 'data-dir': { type: 'string' }, 'tick-ms': { type: 'string', default: '200' } }, true);
      const [sub, path] = a.pos;
      if (sub === 'server') {
        const { startZooKeeper } = await import('../dev/zookeeper.js');
        const zk = await startZooKeeper({
          clientPort: int(a.v.port ?? 2181, 'port', 1),
          dataDir: resolve((a.v['data-dir'] as string | undefined) ?? join('.quark', 'zk')),
          tickTime: int(a.v['tick-ms'], 'tick-ms', 1),
        });
        process.stdout.write(`ZooKeeper serving on ${zk.connectionString} (pid ${zk.pid}); Ctrl-C stops it\n`);
        const stop = () => void zk.stop().then(() => process.exit(0));
        process.on('SIGINT', stop);
        process.on('SIGTERM', stop);
        return;
      }
      const zk = await Zk.connect(a.zk, { connectTimeoutMs: 5000 });
      try {
        const paths = new Paths(a.root);
        if (sub === 'tree' || sub === undefined) await printTree(zk, path ?? paths.root, process.stdout);
        else if (sub === 'ls' && path) await printLs(zk, path, process.stdout);
        else if (sub === 'get' && path) await printGet(zk, path, process.stdout);
        else throw new UsageError('usage: quark zk tree [path] | ls <path> | get <path> | server');
      } finally {
        await zk.close();
      }
      return;
    }
    case 'config': {
      const a = parse({ zone: { type: 'string' } }, true);
      const zone = a.v.zone as string | undefined;
      const [sub, key, value, ...extra] = a.pos;
      const usage = 'usage: quark config get [key] [--zone Z] | quark config set placement-policy spread|pack [--zone Z]';
      if (sub === 'set' && key !== 'placement-policy') {
        throw new UsageError(key === undefined ? usage : `${key} cannot be set here; settable: placement-policy`);
      }
      if (sub === 'set' && (value === undefined || extra.length > 0)) throw new UsageError(usage);
      if (sub === 'get' && (value !== undefined || (zone !== undefined && key !== 'placement-policy'))) throw new UsageError(usage);
      if (sub !== 'get' && sub !== 'set') throw new UsageError(usage);
      const zk = await Zk.connect(a.zk, { connectTimeoutMs: 5000 });
      try {
        const paths = new Paths(a.root);
        if (sub === 'set') {
          let next: ClusterConfig;
          try {
            next = await updateConfig(zk, paths, (cur) => withPlacementPolicy(cur, value!, zone));
          } catch (err) {
            if (err instanceof RangeError || (await zk.exists(paths.config)) === null) throw new UsageError((err as Error).message);
            throw err;
          }
          printPolicy(next, zone);
          return;
        }
        const cur = await zk.get<ClusterConfig>(paths.config);
        if (!cur) throw new UsageError(`${paths.config} does not exist: no Quark cluster under ${paths.root}`);
        const cfg: ClusterConfig = { ...DEFAULT_CONFIG, ...cur.value };
        if (key === undefined) process.stdout.write(`${JSON.stringify(cfg, null, 2)}\n`);
        else if (key === 'placement-policy') {
          try {
            printPolicy(cfg, zone);
          } catch (err) {
            throw new UsageError(`${paths.config} holds an invalid policy (${(err as Error).message}); set a valid one`);
          }
        }
        else if (Object.hasOwn(cfg, key)) process.stdout.write(`${JSON.stringify(cfg[key as keyof ClusterConfig])}\n`);
        else throw new UsageError(`unknown setting ${key}; known: placement-policy, ${Object.keys(DEFAULT_CONFIG).join(', ')}`);
      } finally {
        await zk.close();
      }
      return;
    }
    case 'up': {
      const a = parse({
        orcs: { type: 'string', default: '2' },
        computes: { type: 'string' },
        port: { type: 'string', default: '8080' },
        'zk-port': { type: 'string', default: '2181' },
        'no-demo': { type: 'boolean', default: false },
        hypervisor: { type: 'string', default: 'test' },
      });
      const hypervisor = a.v.hypervisor as string;
      if (hypervisor !== 'test' && hypervisor !== 'qemu') throw new UsageError(`--hypervisor must be test or qemu, got ${hypervisor}`);
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
      });
      return;
    }
    default:
      throw new UsageError(`unknown command ${JSON.stringify(cmd)}; try 'quark --help'`);
  }
}

/** The policy in force: for `zone`, or the cluster's followed by one `zone <name>: <policy>` line per override. */
function printPolicy(cfg: ClusterConfig, zone: string | undefined): void {
  const s = policySettingOf(cfg);
  if (zone !== undefined) return void process.stdout.write(`${policyFor(s, zone)}\n`);
  process.stdout.write(`${s.policy}\n`);
  for (const [z, p] of Object.entries(s.byZone)) process.stdout.write(`zone ${z}: ${p}\n`);
}

main(process.argv.slice(2)).catch((err: unknown) => {
  if (err instanceof UsageError || (err as { code?: string }).code?.startsWith('ERR_PARSE_ARGS')) {
    process.stderr.write(`quark: ${(err as Error).message}\n`);
    process.exit(2);
  }
  process.stderr.write(`quark: ${(err as Error).stack ?? String(err)}\n`);
  process.exit(1);
});
