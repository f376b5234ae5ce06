// Tests across hosts: the topology (ts/dev/topology.ts: network namespaces on a private bridge),
// processes started on chosen hosts, a client agent on a host asked over a Unix socket, a
// certificate for an address on the topology. The topology and everything in it are destroyed
// after the file, also when a test fails or the run dies (the topology's exit hook and its reaper).
import { execFileSync } from 'node:child_process';
import { request } from 'node:http';
import { join } from 'node:path';
import { afterAll } from 'vitest';
import { Topology } from '../../ts/dev/topology.js';
import type { LaunchSpec } from '../../ts/dev/cluster.js';
import { repoRoot, type Child, type ProcessGroup } from './index.js';

export { Topology } from '../../ts/dev/topology.js';

/** Whether this machine can make topologies (root, `ip`, `iptables`). */
export function canMakeTopology(): boolean {
  if (process.getuid?.() !== 0) return false;
  try {
    execFileSync('ip', ['-V'], { stdio: 'ignore' });
    execFileSync('iptables', ['-V'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

/**
 * For a test file: `make(names)` (in its beforeAll) builds the topology; after the file's tests,
 * `group`'s processes are stopped and then the topology destroyed (a namespace lives as long as a
 * process runs in it; destroy() SIGKILLs any still there).
 */
export function useTopology(group: ProcessGroup): { make(names: readonly string[]): Promise<Topology> } {
  const made: Topology[] = [];
  afterAll(async () => {
    try {
      await group.stopAll();
    } finally {
      for (const t of made.splice(0)) await t.destroy();
    }
  });
  return {
    async make(names) {
      const t = await Topology.create(names);
      made.push(t);
      return t;
    },
  };
}

/** Starts a process on a host of the topology (its network; the same machine otherwise). */
export function startOn(group: ProcessGroup, topo: Topology, host: string, spec: LaunchSpec): Child {
  return group.start({ ...spec, wrap: topo.wrap(host) });
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

export interface AgentResponse<T> {
  status: number;
  body: T;
  ms: number;
}

/** The client side of ts/dev/host-agent.ts: asks the agent on its host over its Unix socket. */
export class HostAgent {
  constructor(
    readonly proc: Child,
    readonly socket: string,
    /** Sent as `Authorization: Bearer` on every API call unless the call gives its own headers. */
    public token?: string,
  ) {}

  /** Starts the agent on `host`; resolves once it listens. */
  static async start(group: ProcessGroup, topo: Topology, host: string, o: { socket: string; zk?: string; ca?: string; token?: string }): Promise<HostAgent> {
    const proc = startOn(group, topo, host, {
      name: `agent@${host}`,
      script: join(repoRoot(), 'dist', 'ts', 'dev', 'host-agent.js'),
      args: ['--socket', o.socket, ...(o.zk ? ['--zk', o.zk] : [])],
      env: o.ca ? { NODE_EXTRA_CA_CERTS: o.ca } : {},
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
          const parsed = JSON.parse(Buffer.concat(chunks).toString('utf8')) as T & { error?: string };
          if (res.statusCode !== 200) reject(new Error(`agent ${path}: ${parsed.error ?? res.statusCode}`));
          else resolve(parsed);
        });
      });
      req.on('timeout', () => req.destroy(new Error(`agent ${path}: no answer in ${timeoutMs} ms`)));
      req.on('error', reject);
      req.end(JSON.stringify(q));
    });
  }

  /** An HTTP(S) call from the agent's host; the body parsed as JSON when there is one. */
  async http<T = any>(url: string, init: { method?: string; body?: unknown; headers?: Record<string, string>; timeoutMs?: number } = {}): Promise<AgentResponse<T>> {
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

  async zk<T = unknown>(op: 'children' | 'get' | 'exists', path: string): Promise<T> {
    return (await this.ask<{ value: T }>('/zk', { op, path })).value;
  }

  async fourLetter(host: string, port: number, cmd: string): Promise<string> {
    return (await this.ask<{ text: string }>('/4lw', { host, port, cmd }, 10_000)).text;
  }
}
