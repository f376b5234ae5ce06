// GET /metrics on the API (admin token): this process's series (ts/common/metrics.ts), each API
// request counted by route and code, and ZooKeeper's own `mntr` figures, asked of every server of
// the connection string at scrape time (ZooKeeper must allow the word: 4lw.commands.whitelist
// includes mntr in the configuration Quark writes, ts/dev/zookeeper.ts).
import { createConnection } from 'node:net';
import type { FastifyInstance } from 'fastify';
import { Gauge } from 'prom-client';
import { CONTENT_TYPE, m, registry } from '../common/metrics.js';
import type { Logger } from '../common/log.js';

const MNTR_TIMEOUT_MS = 2000;

/** host:port of each server a ZooKeeper connection string names (its chroot dropped). */
export function zkServers(connectionString: string): Array<{ host: string; port: number }> {
  const hosts = connectionString.split('/')[0]!;
  return hosts
    .split(',')
    .map((h) => h.trim())
    .filter(Boolean)
    .map((h) => {
      const m6 = /^\[(.+)\](?::(\d+))?$/.exec(h);
      if (m6) return { host: m6[1]!, port: Number(m6[2] ?? 2181) };
      const i = h.lastIndexOf(':');
      return i < 0 ? { host: h, port: 2181 } : { host: h.slice(0, i), port: Number(h.slice(i + 1)) };
    });
}

/** `mntr`'s tab-separated lines as key → value. */
export function parseMntr(text: string): Map<string, string> {
  const out = new Map<string, string>();
  for (const line of text.split('\n')) {
    const tab = line.indexOf('\t');
    if (tab > 0) out.set(line.slice(0, tab).trim(), line.slice(tab + 1).trim());
  }
  return out;
}

function ask(host: string, port: number, word: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    const socket = createConnection({ host, port });
    socket.setTimeout(MNTR_TIMEOUT_MS, () => socket.destroy(new Error(`'${word}' to ${host}:${port} timed out`)));
    socket.once('connect', () => socket.end(word));
    socket.on('data', (c: Buffer) => chunks.push(c));
    socket.once('error', reject);
    socket.once('close', (hadError) => {
      if (!hadError) resolve(Buffer.concat(chunks).toString('utf8'));
    });
  });
}

// The relayed figures: quark_zookeeper_<mntr key without zk_>{server}, made as keys first appear.
// One set per process (a registry refuses a name twice), whatever number of apps a test builds.
const gauges = new Map<string, Gauge<'server'>>();
const up = new Gauge({ name: 'quark_zookeeper_up', help: "1 if the ZooKeeper server answered the API's mntr at the last scrape", labelNames: ['server'] as const, registers: [registry] });
const info = new Gauge({
  name: 'quark_zookeeper_info',
  help: "The ZooKeeper server's version and role (mntr's zk_version, zk_server_state) as labels; always 1",
  labelNames: ['server', 'version', 'state'] as const,
  registers: [registry],
});

function gauge(key: string): Gauge<'server'> {
  const name = `quark_zookeeper_${key.replace(/^zk_/, '').replace(/[^A-Za-z0-9_]/g, '_')}`;
  let g = gauges.get(name);
  if (!g) {
    g = new Gauge({ name, help: `ZooKeeper mntr ${key}, relayed by the API`, labelNames: ['server'] as const, registers: [registry] });
    gauges.set(name, g);
  }
  return g;
}

/** Asks every server of the connection string for mntr and sets the gauges from the answers. */
export async function relayMntr(connectionString: string, log?: Logger): Promise<void> {
  info.reset();
  await Promise.all(
    zkServers(connectionString).map(async ({ host, port }) => {
      const server = `${host}:${port}`;
      let text: string;
      try {
        text = await ask(host, port, 'mntr');
      } catch (err) {
        up.set({ server }, 0);
        log?.warn('ZooKeeper did not answer mntr', { server, err });
        return;
      }
      const figures = parseMntr(text);
      // A server that refuses the word answers a sentence, not figures.
      up.set({ server }, figures.size > 0 ? 1 : 0);
      if (figures.size === 0) return;
      info.set({ server, version: figures.get('zk_version') ?? '', state: figures.get('zk_server_state') ?? '' }, 1);
      for (const [key, value] of figures) {
        const n = Number(value);
        if (value !== '' && Number.isFinite(n)) gauge(key).set({ server }, n);
      }
    }),
  );
}

export function metricsRoute(app: FastifyInstance, zkConnectionString: string, log?: Logger): void {
  app.get('/metrics', { config: { access: 'admin' } }, async (_req, reply) => {
    await relayMntr(zkConnectionString, log);
    return reply.type(CONTENT_TYPE).send(await registry.metrics());
  });
  // Every request, by the route's pattern (a path would make one series per server id).
  app.addHook('onResponse', (req, reply, done) => {
    const route = req.is404 ? 'unmatched' : (req.routeOptions.url ?? 'unmatched');
    const labels = { method: req.method, route, code: String(reply.statusCode) };
    m.httpRequests.inc(labels);
    m.httpDuration.observe(labels, reply.elapsedTime / 1000);
    done();
  });
}
