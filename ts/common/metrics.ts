// Prometheus metrics (prom-client): one registry per process, Quark's own series named quark_*,
// next to prom-client's process and Node.js defaults. The api serves them at GET /metrics (admin
// token); orcs and computes on their own small listener (--metrics-port, loopback by default).
// Every series is defined here, so a name is spelled once and every process kind shares the set
// (a process simply leaves the ones it never touches at zero).
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client';
import type { Logger } from './log.js';
import { observers } from './observe.js';

export const registry = new Registry();
collectDefaultMetrics({ register: registry });

// Buckets in seconds: from a sub-millisecond ZooKeeper read to a real guest's minute-long step.
const FAST = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5];
const SLOW = [0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120];

export const m = {
  httpRequests: new Counter({
    name: 'quark_http_requests_total',
    help: 'API requests answered, by method, route (the pattern, not the path) and status code',
    labelNames: ['method', 'route', 'code'] as const,
    registers: [registry],
  }),
  httpDuration: new Histogram({
    name: 'quark_http_request_duration_seconds',
    help: 'API request latency, from arrival to the last byte of the answer',
    labelNames: ['method', 'route', 'code'] as const,
    buckets: FAST,
    registers: [registry],
  }),
  unitsAccepted: new Counter({
    name: 'quark_units_accepted_total',
    help: 'Work units the API accepted (202), by kind',
    labelNames: ['kind'] as const,
    registers: [registry],
  }),
  unitsSucceeded: new Counter({
    name: 'quark_units_succeeded_total',
    help: 'Work units this process ended SUCCEEDED, by kind',
    labelNames: ['kind'] as const,
    registers: [registry],
  }),
  unitsFailed: new Counter({
    name: 'quark_units_failed_total',
    help: 'Work units this process ended FAILED, by kind and error code',
    labelNames: ['kind', 'code'] as const,
    registers: [registry],
  }),
  placement: new Histogram({
    name: 'quark_placement_duration_seconds',
    help: "A build's placement by an orc, from its first look at the unit to the claim committed (placed) or the unit failed (no_valid_host)",
    labelNames: ['outcome'] as const,
    buckets: FAST,
    registers: [registry],
  }),
  claimConflicts: new Counter({
    name: 'quark_claim_conflicts_total',
    help: "Claims that lost a race for a compute's capacity (the orc placed the unit again)",
    registers: [registry],
  }),
  noValidHost: new Counter({
    name: 'quark_no_valid_host_total',
    help: 'Builds failed NO_VALID_HOST, by each placement filter that removed computes (none: there was no compute to filter)',
    labelNames: ['filter'] as const,
    registers: [registry],
  }),
  stepDuration: new Histogram({
    name: 'quark_step_duration_seconds',
    help: "A work unit's step on a compute, its libvirt effect and delay (not its commit), by unit kind and step",
    labelNames: ['kind', 'step'] as const,
    buckets: SLOW,
    registers: [registry],
  }),
  zkRequest: new Histogram({
    name: 'quark_zk_request_duration_seconds',
    help: 'ZooKeeper requests of this process, sent to answered, by operation and outcome (ok or the error code)',
    labelNames: ['op', 'outcome'] as const,
    buckets: FAST,
    registers: [registry],
  }),
  zkSessions: new Gauge({
    name: 'quark_zk_sessions',
    help: "This process's ZooKeeper sessions by connection state (a hollow compute process holds one per compute)",
    labelNames: ['state'] as const,
    registers: [registry],
  }),
  libvirtCall: new Histogram({
    name: 'quark_libvirt_call_duration_seconds',
    help: 'libvirt calls through the native addon, by call and outcome (ok or the error code)',
    labelNames: ['call', 'outcome'] as const,
    buckets: FAST,
    registers: [registry],
  }),
  shardsOwned: new Gauge({
    name: 'quark_shards_owned',
    help: 'Shards this orc holds the lock of',
    registers: [registry],
  }),
};

const STATES = ['CONNECTED', 'SUSPENDED', 'RECONNECTED', 'LOST'] as const;
for (const s of STATES) m.zkSessions.set({ state: s }, 0);

// The ZooKeeper client and the libvirt wrapper know nothing of Prometheus: they call these.
// Bound series, kept: observing through labels hashes them on every call (ZooKeeper requests are many).
const bound = <T>(make: (a: string, b: string) => T) => {
  const kept = new Map<string, T>();
  return (a: string, b: string): T => {
    const key = `${a}\u0000${b}`;
    let s = kept.get(key);
    if (!s) kept.set(key, (s = make(a, b)));
    return s;
  };
};
const zkSeries = bound((op, outcome) => m.zkRequest.labels({ op, outcome }));
const libvirtSeries = bound((call, outcome) => m.libvirtCall.labels({ call, outcome }));
observers.zkRequest = (op, seconds, outcome) => zkSeries(op, outcome).observe(seconds);
observers.zkState = (from, to) => {
  if (from) m.zkSessions.dec({ state: from });
  if (to) m.zkSessions.inc({ state: to });
};
observers.libvirtCall = (call, seconds, outcome) => libvirtSeries(call, outcome).observe(seconds);

/** Seconds since `start` (a performance.now() reading). */
export const since = (start: number): number => (performance.now() - start) / 1000;

export const CONTENT_TYPE = registry.contentType;

export interface MetricsListener {
  url: string;
  close(): Promise<void>;
}

/**
 * GET /metrics on host:port, nothing else (404). No token: it binds loopback unless told
 * otherwise, and holds counts and latencies, never names or ids of anyone's servers.
 */
export async function serveMetrics(host: string, port: number, log?: Logger): Promise<MetricsListener> {
  const server: Server = createServer((req, res) => {
    if (req.method !== 'GET' || (req.url ?? '').split('?')[0] !== '/metrics') {
      res.writeHead(404, { 'content-type': 'text/plain; charset=utf-8' }).end('only GET /metrics here\n');
      return;
    }
    registry.metrics().then(
      (text) => res.writeHead(200, { 'content-type': CONTENT_TYPE }).end(text),
      (err: unknown) => {
        log?.error('metrics failed', { err });
        res.writeHead(500, { 'content-type': 'text/plain; charset=utf-8' }).end('metrics failed\n');
      },
    );
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const a = server.address() as AddressInfo;
  const url = `http://${a.family === 'IPv6' ? `[${a.address}]` : a.address}:${a.port}/metrics`;
  log?.info('metrics listening', { url });
  return {
    url,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}

/**
 * The --metrics-port / --metrics-host flags of orc and compute: a listener when a port is given
 * (0: any free port, logged), none otherwise.
 */
export async function serveMetricsFromFlags(port: string | undefined, host: string | undefined, log: Logger): Promise<MetricsListener | null> {
  if (port === undefined) return null;
  const n = Number(port);
  if (!Number.isInteger(n) || n < 0 || n > 65535) throw new MetricsFlagError(`--metrics-port must be an integer from 0 to 65535, got ${port}`);
  return serveMetrics(host ?? '127.0.0.1', n, log);
}

export class MetricsFlagError extends Error {}
