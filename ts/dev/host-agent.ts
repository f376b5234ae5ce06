// A client on a topology host (ts/dev/topology.ts): it runs inside the host's network namespace
// and does there what a test or a benchmark asks: HTTPS calls to the API, reads of ZooKeeper,
// four-letter words to a ZooKeeper server. It is asked over a Unix socket, which is a file, not
// a network address: the caller stays in the machine's own namespace and no route into the
// topology is needed. `node host-agent.js --socket PATH [--zk CONNECTION]`; the API's CA comes
// from NODE_EXTRA_CA_CERTS, and its ZooKeeper credentials from QUARK_ZK_CREDENTIALS, as for any
// Quark process (none: an unauthenticated session). One JSON request, one JSON answer (a failure:
// status 500, {error, code?}, code being ZooKeeper's error name, e.g. NO_AUTH):
//   POST /fetch {url, method?, headers?, body?}  → {status, text, ms}
//   POST /zk    {op: 'children'|'get'|'exists', path} → {value}
//   POST /4lw   {host, port, cmd}                → {text}
import { createServer, type IncomingMessage } from 'node:http';
import { rmSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { Zk } from '../zk/client.js';
import { ZkError } from '../zk/errors.js';
import { fourLetter } from './zookeeper.js';

const { values } = parseArgs({ options: { socket: { type: 'string' }, zk: { type: 'string' }, 'session-timeout-ms': { type: 'string', default: '4000' } } });
const socket = values.socket;
if (!socket) {
  process.stderr.write('host-agent: --socket PATH is required\n');
  process.exit(2);
}

let zk: Promise<Zk> | undefined;
const session = (): Promise<Zk> => {
  if (!values.zk) throw new Error('host-agent: started without --zk');
  zk ??= Zk.connect(values.zk, { sessionTimeoutMs: Number(values['session-timeout-ms']), connectTimeoutMs: 30_000 }).catch((e: unknown) => {
    zk = undefined;
    throw e;
  });
  return zk;
};

async function body(req: IncomingMessage): Promise<Record<string, unknown>> {
  const chunks: Buffer[] = [];
  for await (const c of req) chunks.push(c as Buffer);
  return JSON.parse(Buffer.concat(chunks).toString('utf8') || '{}') as Record<string, unknown>;
}

async function answer(path: string, q: Record<string, unknown>): Promise<unknown> {
  switch (path) {
    case '/fetch': {
      const t0 = performance.now();
      const res = await fetch(String(q.url), {
        method: (q.method as string | undefined) ?? 'GET',
        headers: (q.headers as Record<string, string> | undefined) ?? {},
        body: q.body === undefined ? undefined : JSON.stringify(q.body),
        signal: AbortSignal.timeout(Number(q.timeoutMs ?? 15_000)),
      });
      const text = await res.text();
      return { status: res.status, text, ms: performance.now() - t0 };
    }
    case '/zk': {
      const z = await session();
      const p = String(q.path);
      if (q.op === 'children') return { value: await z.children(p) };
      if (q.op === 'get') return { value: (await z.get(p))?.value ?? null };
      if (q.op === 'exists') return { value: (await z.exists(p)) !== null };
      throw new Error(`unknown zk op ${String(q.op)}`);
    }
    case '/4lw':
      return { text: await fourLetter(Number(q.port), String(q.cmd), String(q.host)) };
    default:
      throw new Error(`unknown request ${path}`);
  }
}

rmSync(socket, { force: true });
const server = createServer((req, res) => {
  void (async () => {
    let status = 200;
    let out: unknown;
    try {
      out = await answer(req.url ?? '', await body(req));
    } catch (e) {
      status = 500;
      out = { error: (e as Error).message, ...(e instanceof ZkError ? { code: e.code } : {}) };
    }
    res.writeHead(status, { 'content-type': 'application/json' });
    res.end(JSON.stringify(out, (_k, v: unknown) => (typeof v === 'bigint' ? v.toString() : v)));
  })();
});
server.listen(socket, () => process.stdout.write(`host agent ready on ${socket}\n`));
const stop = (): void => {
  server.close();
  void (zk ? zk.then((z) => z.close()).catch(() => {}) : Promise.resolve()).finally(() => process.exit(0));
};
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
