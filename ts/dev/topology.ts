// "Hosts" for tests and benchmarks: Linux network namespaces, each with one interface on a bridge
// that lives in a namespace of its own (the switch), addresses in 10.213.0.0/24. The range exists
// only inside these namespaces: there is no default route, no NAT and no link to the machine's
// own namespace, so nothing a process on a host sends can leave the topology. Two runs never
// meet: each has its own switch, and namespace names carry the run's pid and a random suffix
// (two runs may use the same addresses, on separate bridges).
//
// A host is cut off by taking its switch port down (a pulled cable: its packets go nowhere, its
// peers hear nothing, no connection is reset), or isolated from chosen peers by DROP rules in its
// own namespace. Every namespace goes when the topology is destroyed, when the process exits, and
// at the next topology's creation if the run that made it died without cleaning up. Needs root.
// Processes run on a host through LaunchSpec.wrap (startOn); a test or bench reaches into the
// topology only through a host agent (./host-agent.ts) asked over a Unix socket. The hosts share
// the machine's filesystem: a process on any host reads its ZooKeeper credentials file (startOn's
// `credentials`) where the caller wrote it.
import { execFile, execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { request } from 'node:http';
import { dirname, join } from 'node:path';
import { promisify } from 'node:util';
import { credentialsFileFor, quarkMain, type LaunchedProcess, type LaunchSpec, type Starter } from './cluster.js';
import { CREDENTIALS_ENV } from '../zk/acl.js';

const run = promisify(execFile);

/** The switch and every host namespace of this process's live topologies, for the exit hook. */
const liveNamespaces = new Set<string>();
let exitHooked = false;

const PREFIX = 'qtopo';
const SUBNET = '10.213.0';
const PREFIX_LEN = 24;
/** Host addresses start here (.1-.9 left for nothing in particular: easy to read in logs). */
const FIRST_HOST = 10;
const MAX_HOSTS = 240;
const HOST_NAME = /^[a-z][a-z0-9-]{0,15}$/;

export interface Host {
  name: string;
  /** The host's network namespace (`ip netns` name). */
  ns: string;
  /** Its one address, on its eth0. */
  address: string;
  /** Its port on the switch (an interface in the switch namespace). */
  port: string;
  /** How it is partitioned now, if it is. */
  partition: { kind: 'cut' } | { kind: 'isolated'; from: string[] } | undefined;
}

/** `ip …` (or any command) and its stdout; a failure names the command and its stderr. */
async function sh(argv: readonly string[]): Promise<string> {
  try {
    const { stdout } = await run(argv[0]!, argv.slice(1), { encoding: 'utf8' });
    return stdout;
  } catch (e) {
    const err = e as Error & { stderr?: string };
    throw new Error(`${argv.join(' ')} failed: ${(err.stderr ?? err.message).trim()}`, { cause: e });
  }
}

function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** Namespaces of every topology whose run has died (its pid is gone), deleted with what they hold. */
export async function reapStaleTopologies(): Promise<string[]> {
  const names = (await sh(['ip', 'netns', 'list']))
    .split('\n')
    .map((l) => l.split(' ')[0]!)
    .filter((n) => n.startsWith(`${PREFIX}-`));
  const stale = names.filter((n) => {
    const pid = Number(n.split('-')[1]);
    return Number.isInteger(pid) && pid > 0 && pid !== process.pid && !pidAlive(pid);
  });
  for (const ns of stale) await deleteNamespace(ns);
  return stale;
}

/** SIGKILLs whatever still runs in a namespace (only our own: it is one of ours), then deletes it. */
async function deleteNamespace(ns: string): Promise<void> {
  const pids = (await sh(['ip', 'netns', 'pids', ns]).catch(() => ''))
    .split('\n')
    .map(Number)
    .filter((p) => Number.isInteger(p) && p > 0);
  for (const pid of pids) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // gone meanwhile
    }
  }
  await sh(['ip', 'netns', 'del', ns]).catch(() => {});
  liveNamespaces.delete(ns);
}

function hookExit(): void {
  if (exitHooked) return;
  exitHooked = true;
  process.on('exit', () => {
    for (const ns of liveNamespaces) {
      try {
        const pids = execFileSync('ip', ['netns', 'pids', ns], { encoding: 'utf8' }).split('\n').map(Number).filter((p) => p > 0);
        for (const pid of pids) {
          try {
            process.kill(pid, 'SIGKILL');
          } catch {
            // gone
          }
        }
        execFileSync('ip', ['netns', 'del', ns], { stdio: 'ignore' });
      } catch {
        // best effort at exit
      }
    }
  });
}

export class Topology {
  readonly hosts = new Map<string, Host>();
  private destroyed = false;

  private constructor(
    /** `<pid>-<random>`: in every namespace name of this topology. */
    readonly id: string,
    /** The switch: the namespace holding the bridge. */
    readonly switchNs: string,
  ) {}

  /** Makes the switch and one host per name, each reachable from every other. */
  static async create(names: readonly string[]): Promise<Topology> {
    if (process.getuid?.() !== 0) throw new Error('a topology needs root (network namespaces, veth links, iptables)');
    if (names.length === 0 || names.length > MAX_HOSTS) throw new RangeError(`a topology has 1..${MAX_HOSTS} hosts, asked ${names.length}`);
    for (const n of names) if (!HOST_NAME.test(n)) throw new RangeError(`host name ${JSON.stringify(n)}: lower-case letters, digits and '-', at most 16`);
    if (new Set(names).size !== names.length) throw new RangeError('host names must be distinct');
    hookExit();
    await reapStaleTopologies();
    const id = `${process.pid}-${randomBytes(3).toString('hex')}`;
    const topo = new Topology(id, `${PREFIX}-${id}-switch`);
    try {
      await topo.addNamespace(topo.switchNs);
      await sh(['ip', '-n', topo.switchNs, 'link', 'add', 'br0', 'type', 'bridge']);
      await sh(['ip', '-n', topo.switchNs, 'link', 'set', 'br0', 'up']);
      let i = 0;
      for (const name of names) {
        const host: Host = {
          name,
          ns: `${PREFIX}-${id}-${name}`,
          address: `${SUBNET}.${FIRST_HOST + i}`,
          port: `p${i}`,
          partition: undefined,
        };
        i++;
        await topo.addNamespace(host.ns);
        // Both ends are made inside their namespaces: no interface ever appears in the machine's own.
        await sh(['ip', '-n', host.ns, 'link', 'add', 'eth0', 'type', 'veth', 'peer', 'name', host.port, 'netns', topo.switchNs]);
        await sh(['ip', '-n', topo.switchNs, 'link', 'set', host.port, 'master', 'br0']);
        await sh(['ip', '-n', topo.switchNs, 'link', 'set', host.port, 'up']);
        await sh(['ip', '-n', host.ns, 'addr', 'add', `${host.address}/${PREFIX_LEN}`, 'dev', 'eth0']);
        await sh(['ip', '-n', host.ns, 'link', 'set', 'eth0', 'up']);
        topo.hosts.set(name, host);
      }
    } catch (e) {
      await topo.destroy();
      throw e;
    }
    return topo;
  }

  private async addNamespace(ns: string): Promise<void> {
    await sh(['ip', 'netns', 'add', ns]);
    liveNamespaces.add(ns);
    await sh(['ip', '-n', ns, 'link', 'set', 'lo', 'up']);
  }

  host(name: string): Host {
    const h = this.hosts.get(name);
    if (!h) throw new RangeError(`no host ${JSON.stringify(name)} in this topology (${[...this.hosts.keys()].join(', ')})`);
    return h;
  }

  address(name: string): string {
    return this.host(name).address;
  }

  /** The command prefix that runs a process on `name` (LaunchSpec.wrap). */
  wrap(name: string): string[] {
    return ['ip', 'netns', 'exec', this.host(name).ns];
  }

  /** Runs a command on `name` and resolves with its stdout. */
  exec(name: string, argv: readonly string[]): Promise<string> {
    return sh([...this.wrap(name), ...argv]);
  }

  /** Pulls `name`'s cable: its switch port goes down; nothing reaches it or leaves it. */
  async cut(name: string): Promise<void> {
    const h = this.host(name);
    if (h.partition) throw new Error(`${name} is already partitioned (${h.partition.kind})`);
    await sh(['ip', '-n', this.switchNs, 'link', 'set', h.port, 'down']);
    h.partition = { kind: 'cut' };
  }

  /** Drops every packet between `name` and each of `peers` (both ways, silently), in `name`'s own firewall. */
  async isolate(name: string, peers: readonly string[]): Promise<void> {
    const h = this.host(name);
    if (h.partition) throw new Error(`${name} is already partitioned (${h.partition.kind})`);
    if (peers.length === 0) throw new RangeError('isolate needs at least one peer');
    for (const p of peers) {
      const addr = this.address(p);
      await this.exec(name, ['iptables', '-w', '-A', 'INPUT', '-s', addr, '-j', 'DROP']);
      await this.exec(name, ['iptables', '-w', '-A', 'OUTPUT', '-d', addr, '-j', 'DROP']);
    }
    h.partition = { kind: 'isolated', from: [...peers] };
  }

  /** Ends `name`'s partition, whichever it was. */
  async heal(name: string): Promise<void> {
    const h = this.host(name);
    if (!h.partition) return;
    if (h.partition.kind === 'cut') await sh(['ip', '-n', this.switchNs, 'link', 'set', h.port, 'up']);
    else {
      await this.exec(name, ['iptables', '-w', '-F', 'INPUT']);
      await this.exec(name, ['iptables', '-w', '-F', 'OUTPUT']);
    }
    h.partition = undefined;
  }

  /**
   * Every host's namespace and the switch, with anything still running in them (SIGKILL). Stop
   * the processes first: one still starting (inside `ip netns exec`, not yet in the namespace) is
   * not seen here; its launcher's watchdog is what ends it.
   */
  async destroy(): Promise<void> {
    if (this.destroyed) return;
    this.destroyed = true;
    for (const h of this.hosts.values()) await deleteNamespace(h.ns);
    await deleteNamespace(this.switchNs);
    // A host created before a failure in create() is not in `hosts` yet.
    for (const ns of [...liveNamespaces]) if (ns.startsWith(`${PREFIX}-${this.id}-`)) await deleteNamespace(ns);
  }

  /** Namespace names of this topology that still exist (empty once destroyed). */
  async remaining(): Promise<string[]> {
    return (await sh(['ip', 'netns', 'list']))
      .split('\n')
      .map((l) => l.split(' ')[0]!)
      .filter((n) => n.startsWith(`${PREFIX}-${this.id}-`));
  }
}

// ---- on the hosts: processes, a certificate for an address, the client agent (./host-agent.ts) ----

export interface HostLaunchSpec extends LaunchSpec {
  /**
   * A ZooKeeper credentials directory (ts/zk/acl.ts): the process gets only its role's file
   * (credentialsFileFor: the api's, the orcs', a compute its own, anything else the admin's).
   * null: none, whatever this process's own environment holds. Omitted: the environment's.
   */
  credentials?: string | null;
}

/** Starts a process on a host of the topology (its network; the same machine otherwise). */
export function startOn(starter: Starter, topo: Topology, host: string, spec: HostLaunchSpec): LaunchedProcess {
  const { credentials, ...launch } = spec;
  const file = credentials === undefined ? undefined : credentials === null ? '' : credentialsFileFor(credentials, launch.args);
  return starter.start({ ...launch, ...(file === undefined ? {} : { env: { ...launch.env, [CREDENTIALS_ENV]: file } }), wrap: topo.wrap(host) });
}

/** A self-signed certificate and key for `ip` (its subjectAltName), written under `dir`. */
export function certificateFor(dir: string, ip: string): { cert: string; key: string } {
  const cert = join(dir, 'api-cert.pem');
  const key = join(dir, 'api-key.pem');
  execFileSync(
    'openssl',
    ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-days', '1', '-subj', '/CN=quark-api', '-addext', `subjectAltName=IP:${ip}`, '-keyout', key, '-out', cert],
    { stdio: 'ignore' },
  );
  return { cert, key };
}

/** A request the agent failed; `code` is ZooKeeper's error name when a ZooKeeper call failed ('NO_AUTH'). */
export class AgentError extends Error {
  constructor(
    message: string,
    readonly code?: string,
  ) {
    super(message);
  }
}

export interface AgentResponse<T> {
  status: number;
  body: T;
  ms: number;
}

/** The client side of ts/dev/host-agent.ts: asks the agent on its host over its Unix socket. */
export class HostAgent {
  constructor(
    readonly proc: LaunchedProcess,
    readonly socket: string,
    /** Sent as `Authorization: Bearer` on every API call unless the call gives its own headers. */
    public token?: string,
  ) {}

  /**
   * Starts the agent on `host`; resolves once it listens. `credentials`: a ZooKeeper credentials
   * directory, whose admin file its ZooKeeper session holds (it reads every node); null: none.
   */
  static async start(
    starter: Starter,
    topo: Topology,
    host: string,
    o: { socket: string; zk?: string; ca?: string; token?: string; credentials?: string | null; name?: string },
  ): Promise<HostAgent> {
    const proc = startOn(starter, topo, host, {
      name: o.name ?? `agent@${host}`,
      script: join(dirname(quarkMain()), '..', 'dev', 'host-agent.js'),
      args: ['--socket', o.socket, ...(o.zk ? ['--zk', o.zk] : [])],
      env: o.ca ? { NODE_EXTRA_CA_CERTS: o.ca } : {},
      ...(o.credentials === undefined ? {} : { credentials: o.credentials }),
    });
    await proc.waitForOutput('host agent ready', { timeoutMs: 20_000 });
    return new HostAgent(proc, o.socket, o.token);
  }

  private ask<T>(path: string, q: unknown, timeoutMs = 30_000): Promise<T> {
    return new Promise((resolve, reject) => {
      const req = request({ socketPath: this.socket, path, method: 'POST', headers: { 'content-type': 'application/json' }, timeout: timeoutMs }, (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => {
          const parsed = JSON.parse(Buffer.concat(chunks).toString('utf8')) as T & { error?: string; code?: string };
          if (res.statusCode !== 200) reject(new AgentError(`agent ${path}: ${parsed.error ?? res.statusCode}`, parsed.code));
          else resolve(parsed);
        });
      });
      req.on('timeout', () => req.destroy(new Error(`agent ${path}: no answer in ${timeoutMs} ms`)));
      req.on('error', reject);
      req.end(JSON.stringify(q));
    });
  }

  /** An HTTP(S) call from the agent's host; the body parsed as JSON when there is one. */
  async http<T = unknown>(url: string, init: { method?: string; body?: unknown; headers?: Record<string, string>; timeoutMs?: number } = {}): Promise<AgentResponse<T>> {
    const headers = {
      ...(this.token ? { authorization: `Bearer ${this.token}` } : {}),
      ...(init.body !== undefined ? { 'content-type': 'application/json' } : {}),
      ...(init.headers ?? {}),
    };
    const r = await this.ask<{ status: number; text: string; ms: number }>(
      '/fetch',
      { url, method: init.method, headers, body: init.body, timeoutMs: init.timeoutMs },
      (init.timeoutMs ?? 15_000) + 5_000,
    );
    return { status: r.status, body: (r.text ? JSON.parse(r.text) : undefined) as T, ms: r.ms };
  }

  /** A read through the agent's ZooKeeper session; a failed one rejects with an AgentError carrying ZooKeeper's code. */
  async zk<T = unknown>(op: 'children' | 'get' | 'exists', path: string): Promise<T> {
    return (await this.ask<{ value: T }>('/zk', { op, path })).value;
  }

  async fourLetter(host: string, port: number, cmd: string): Promise<string> {
    return (await this.ask<{ text: string }>('/4lw', { host, port, cmd }, 10_000)).text;
  }
}
