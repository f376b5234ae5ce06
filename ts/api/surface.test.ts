// The API's surface over real sockets (127.0.0.1, ports chosen by the OS): HTTPS, the Host check,
// the per-token rate limit, the cap on event streams, stream tickets, load shedding and the
// request timeout. ZooKeeper is the suite's real server.
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { request as httpRequest, type IncomingMessage } from 'node:http';
import { request as httpsRequest } from 'node:https';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { FastifyInstance } from 'fastify';
import { buildApp, DEFAULT_PRESSURE, type AppOptions } from './app.js';
import { planSurface, SurfaceRefused } from './server.js';
import { loopbackHosts } from './guard.js';
import { Zk } from '../zk/client.js';
import { Paths } from '../zk/paths.js';
import { readConfig } from '../zk/config.js';
import { uniqueRoot, waitFor, zkConnect } from '../../test/support/index.js';
import { mintToken, revokeToken } from '../auth/tokens.js';
import { AuthPaths } from '../auth/layout.js';
import { asProjectId, type Role } from '../auth/policy.js';

let zk: Zk;
const paths = new Paths(uniqueRoot('surface'));
const ap = new AuthPaths(paths);
const apps: FastifyInstance[] = [];
const dirs: string[] = [];

beforeAll(async () => {
  zk = await Zk.connect(zkConnect());
  await readConfig(zk, paths, { shards: 2 });
});
afterAll(async () => {
  for (const a of apps) await a.close().catch(() => {});
  await zk.removeTree(paths.root);
  await zk.close();
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

const token = async (role: Role = 'admin', project = 'ops') => (await mintToken(zk, ap, { project: asProjectId(project), role })).secret;

/** An app listening on 127.0.0.1:<free port>; closed after the file. */
async function listening(o: Partial<AppOptions> = {}): Promise<{ app: FastifyInstance; port: number }> {
  const config = await readConfig(zk, paths);
  const app = await buildApp({ zk, paths, config, ...o });
  apps.push(app);
  await app.listen({ port: 0, host: '127.0.0.1' });
  return { app, port: (app.server.address() as net.AddressInfo).port };
}

interface Answer {
  status: number;
  headers: IncomingMessage['headers'];
  body: string;
}

function call(port: number, path: string, headers: Record<string, string> = {}, o: { tls?: { ca: Buffer }; method?: string; body?: string } = {}): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const req = (o.tls ? httpsRequest : httpRequest)(
      { host: '127.0.0.1', port, path, method: o.method ?? 'GET', headers, ...(o.tls ? { ca: o.tls.ca, servername: 'localhost' } : {}) },
      (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (c: string) => (body += c));
        res.on('end', () => resolve({ status: res.statusCode!, headers: res.headers, body }));
      },
    );
    req.on('error', reject);
    req.end(o.body);
  });
}

/** Opens an event stream and resolves once its head has arrived; `close()` drops it. */
function openStream(port: number, path: string, headers: Record<string, string> = {}): Promise<{ status: number; text: () => string; ended: Promise<void>; close: () => void }> {
  return new Promise((resolve, reject) => {
    const req = httpRequest({ host: '127.0.0.1', port, path, headers }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (text += c));
      const ended = new Promise<void>((r) => res.on('close', () => r()));
      resolve({ status: res.statusCode!, text: () => text, ended, close: () => req.destroy() });
    });
    req.on('error', reject);
    req.end();
  });
}

describe('planSurface', () => {
  const pem = () => Buffer.from('pem');
  it('refuses plain HTTP off loopback unless --insecure, and then says so', () => {
    expect(() => planSurface({ host: '0.0.0.0', port: 8080 }, pem)).toThrow(SurfaceRefused);
    expect(() => planSurface({ host: '10.1.2.3', port: 8080 }, pem)).toThrow(/--tls-cert/);
    const s = planSurface({ host: '0.0.0.0', port: 8080, insecure: true }, pem);
    expect(s.warnings.join()).toMatch(/INSECURE: serving plain HTTP on 0\.0\.0\.0:8080/);
    expect(s.allowedHosts).toBeNull();
    expect(planSurface({ host: '0.0.0.0', port: 8443, tlsCert: 'c', tlsKey: 'k' }, pem)).toMatchObject({ scheme: 'https', warnings: [] });
  });

  it('checks Host on a loopback bind; a certificate needs its key', () => {
    for (const host of ['127.0.0.1', 'localhost', '::1', '127.0.0.2']) {
      const s = planSurface({ host, port: 8080 }, pem);
      expect(s.warnings).toEqual([]);
      expect(s.allowedHosts?.has('127.0.0.1:8080') && s.allowedHosts.has('localhost:8080') && s.allowedHosts.has('[::1]:8080')).toBe(true);
      expect(s.allowedHosts?.has('evil.example:8080')).toBe(false);
    }
    expect(() => planSurface({ host: '127.0.0.1', port: 1, tlsCert: 'c' }, pem)).toThrow(/go together/);
  });
});

describe('over a socket', () => {
  it('serves HTTPS with --tls-cert/--tls-key; plain HTTP to that port gets nothing', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'quark-tls-'));
    dirs.push(dir);
    execFileSync('openssl', [
      'req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '1', '-subj', '/CN=localhost',
      '-addext', 'subjectAltName=DNS:localhost,IP:127.0.0.1', '-keyout', join(dir, 'key.pem'), '-out', join(dir, 'cert.pem'),
    ], { stdio: 'ignore' });
    const s = planSurface({ host: '0.0.0.0', port: 0, tlsCert: join(dir, 'cert.pem'), tlsKey: join(dir, 'key.pem') });
    const { port } = await listening({ tls: s.tls });
    const t = await token('reader', 'p1');
    const ok = await call(port, '/v1/whoami', { authorization: `Bearer ${t}` }, { tls: { ca: readFileSync(join(dir, 'cert.pem')) } });
    expect(ok.status).toBe(200);
    expect(JSON.parse(ok.body)).toMatchObject({ project: 'p1', role: 'reader' });
    await expect(call(port, '/healthz')).rejects.toThrow();
  });

  it('answers a loopback bind only for loopback Host names (DNS rebinding)', async () => {
    // The port is known once listening: the set is filled then (the guard holds the same set).
    const hosts = new Set<string>();
    const { port } = await listening({ allowedHosts: hosts });
    for (const h of loopbackHosts(port)) hosts.add(h);
    const answers = await Promise.all(
      [`localhost:${port}`, `127.0.0.1:${port}`, `[::1]:${port}`, `evil.example:${port}`, 'evil.example', `127.0.0.1.evil.example:${port}`].map((host) => call(port, '/healthz', { host })),
    );
    expect(answers.map((a) => a.status)).toEqual([200, 200, 200, 421, 421, 421]);
    expect(JSON.parse(answers[3]!.body).error.code).toBe('MISDIRECTED_REQUEST');
    // Before any token is looked at.
    expect((await call(port, '/v1/servers', { host: `evil.example:${port}`, authorization: `Bearer ${await token()}` })).status).toBe(421);
  });

  it('limits requests per token: 429 with Retry-After, other tokens unaffected', async () => {
    const { port } = await listening({ rateLimit: { max: 5, windowMs: 60_000 } });
    const a = await token('reader', 'p1');
    const b = await token('reader', 'p1');
    const statuses: number[] = [];
    let limited: Answer | undefined;
    for (let i = 0; i < 7; i++) {
      const r = await call(port, '/v1/servers', { authorization: `Bearer ${a}` });
      statuses.push(r.status);
      if (r.status === 429) limited = r;
    }
    expect(statuses).toEqual([200, 200, 200, 200, 200, 429, 429]);
    expect(Number(limited!.headers['retry-after'])).toBeGreaterThan(0);
    expect(JSON.parse(limited!.body).error.code).toBe('RATE_LIMITED');
    expect((await call(port, '/v1/servers', { authorization: `Bearer ${b}` })).status).toBe(200);
  });

  it('cuts off a flood of made-up tokens from one address before it reaches ZooKeeper; known tokens still pass', async () => {
    const { port } = await listening({ rateLimit: { max: 600, windowMs: 60_000 } }); // 60 refusals a minute per address
    const good = await token('reader', 'p1');
    expect((await call(port, '/v1/servers', { authorization: `Bearer ${good}` })).status).toBe(200);
    const reads = zk.counters.reads;
    const statuses: number[] = [];
    for (let i = 0; i < 70; i++) {
      const fake = `quark.${i.toString(16).padStart(24, '0')}.${'x'.repeat(43)}`;
      statuses.push((await call(port, '/v1/servers', { authorization: `Bearer ${fake}` })).status);
    }
    expect(statuses.slice(0, 60).every((s) => s === 401)).toBe(true);
    expect(statuses.slice(60).every((s) => s === 429)).toBe(true);
    expect(zk.counters.reads - reads).toBe(60); // one token read per refusal, none once blocked
    const blocked = await call(port, '/v1/servers', { authorization: `Bearer quark.${'f'.repeat(24)}.${'y'.repeat(43)}` });
    expect(Number(blocked.headers['retry-after'])).toBeGreaterThan(0);
    expect(JSON.parse(blocked.body).error.code).toBe('RATE_LIMITED');
    expect((await call(port, '/v1/servers', { authorization: `Bearer ${good}` })).status).toBe(200);
  });

  it('caps open event streams per token, ends a revoked token\'s streams, and opens them with a ticket', async () => {
    const { port } = await listening({ maxStreamsPerToken: 2 });
    const m = await token('member', 'p1');
    const auth = { authorization: `Bearer ${m}` };
    const boot = await call(port, '/v1/servers', { ...auth, 'content-type': 'application/json' }, { method: 'POST', body: JSON.stringify({ name: 'streamed', flavor: { vcpus: 1, ram_mb: 64, disk_gb: 1 } }) });
    expect(boot.status).toBe(202);
    const { work_unit_id, server_id } = JSON.parse(boot.body);
    const s1 = await openStream(port, `/v1/work-units/${work_unit_id}/events`, auth);
    const s2 = await openStream(port, `/v1/servers/${server_id}/events`, auth);
    expect([s1.status, s2.status]).toEqual([200, 200]);
    const third = await call(port, `/v1/work-units/${work_unit_id}/events`, auth);
    expect(third.status).toBe(429);
    expect(JSON.parse(third.body).error.code).toBe('TOO_MANY_STREAMS');
    // Another token has its own allowance; this one gets a slot back when a stream closes.
    const other = await openStream(port, `/v1/work-units/${work_unit_id}/events`, { authorization: `Bearer ${await token('reader', 'p1')}` });
    expect(other.status).toBe(200);
    other.close();
    s1.close();
    await waitFor(async () => {
      const s = await openStream(port, `/v1/work-units/${work_unit_id}/events`, auth);
      s.close();
      return s.status === 200;
    }, { what: 'a slot after closing a stream', timeoutMs: 3000 });

    // A ticket opens a stream (EventSource cannot send the header), and the stream carries the unit.
    const ticket = JSON.parse((await call(port, '/v1/stream-ticket', auth)).body).ticket as string;
    const viaTicket = await openStream(port, `/v1/work-units/${work_unit_id}/events?ticket=${encodeURIComponent(ticket)}`);
    expect(viaTicket.status).toBe(200);
    await waitFor(() => viaTicket.text().includes('event: unit'), { what: 'the unit event', timeoutMs: 3000 });

    // Revoking the token ends what it holds open.
    await revokeToken(zk, ap, m.split('.')[1]!);
    await Promise.race([Promise.all([s2.ended, viaTicket.ended]), new Promise((_, r) => setTimeout(() => r(new Error('streams not ended after revoke')), 5000))]);
  });

  it('sheds load with 503 OVERLOADED and Retry-After while the event loop lags', async () => {
    const { port } = await listening({ pressure: { ...DEFAULT_PRESSURE, maxEventLoopDelayMs: 30, sampleIntervalMs: 20, retryAfterS: 7 } });
    const t = await token();
    // Hold the loop well past the bound; the next sample sees the lag.
    const until = Date.now() + 400;
    while (Date.now() < until) {
      /* busy: the overload */
    }
    const r = await call(port, '/v1/servers', { authorization: `Bearer ${t}` });
    expect(r.status).toBe(503);
    expect(r.headers['retry-after']).toBe('7');
    expect(JSON.parse(r.body).error.code).toBe('OVERLOADED');
    await waitFor(async () => (await call(port, '/v1/servers', { authorization: `Bearer ${t}` })).status === 200, { what: 'recovery', timeoutMs: 5000 });
  });

  it('drops a request that does not arrive in time (a slow client cannot hold a socket)', async () => {
    const { port } = await listening({ requestTimeoutMs: 400 });
    const t = await token('member', 'p1');
    const sock = net.connect(port, '127.0.0.1');
    await new Promise<void>((r) => sock.once('connect', () => r()));
    let answer = '';
    sock.on('data', (d) => (answer += d.toString()));
    const closed = new Promise<number>((r) => sock.once('close', () => r(Date.now())));
    const started = Date.now();
    // A valid token, so the server waits for the body, which never comes.
    sock.write(`POST /v1/servers HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer ${t}\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{"na`);
    const at = await Promise.race([closed, new Promise<number>((_, rej) => setTimeout(() => rej(new Error('socket still open after 5 s')), 5000))]);
    expect(at - started).toBeLessThan(5000);
    expect(answer).toMatch(/^HTTP\/1\.1 408/);
  });
});
