// fast-check over every route of the app, against a real ZooKeeper: random path values, queries,
// bodies and headers, sent with a token of every role of two projects, and with no, expired,
// revoked and malformed tokens. Invariants: never a 5xx, the app keeps answering, a non-admin
// never reads another project's data (its ids or names appear in no answer unless the request
// itself carried them), a caller without a usable token gets 401 from every non-public route, a
// reader never changes anything, and only an admin passes an admin route.
// Event streams run over a real socket (their answer never ends); the rest through app.inject().
import { request as httpRequest } from 'node:http';
import type net from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import fc from 'fast-check';
import type { FastifyInstance } from 'fastify';
import { buildApp, type RouteEntry } from './app.js';
import { Zk } from '../zk/client.js';
import { Paths } from '../zk/paths.js';
import { readConfig } from '../zk/config.js';
import { uniqueRoot, zkConnect } from '../../test/support/index.js';
import { mintToken, revokeToken } from '../auth/tokens.js';
import { AuthPaths } from '../auth/layout.js';
import { asProjectId, type Role } from '../auth/policy.js';

const RUNS = Number(process.env.QUARK_FUZZ_RUNS ?? 25);

let zk: Zk;
let app: FastifyInstance;
let port: number;
const paths = new Paths(uniqueRoot('fuzz'));
const ap = new AuthPaths(paths);

type Who = 'admin' | 'memberA' | 'readerA' | 'memberB' | 'readerB' | 'none' | 'expired' | 'revoked' | 'malformed' | 'wrongScheme';
const WHO: Who[] = ['admin', 'memberA', 'readerA', 'memberB', 'readerB', 'none', 'expired', 'revoked', 'malformed', 'wrongScheme'];
const PROJECT_OF: Partial<Record<Who, 'A' | 'B'>> = { memberA: 'A', readerA: 'A', memberB: 'B', readerB: 'B' };
const ROLE_OF: Partial<Record<Who, Role>> = { admin: 'admin', memberA: 'member', readerA: 'reader', memberB: 'member', readerB: 'reader' };
const tokens: Partial<Record<Who, string>> = {};

/** Per project: what must never reach the other project. */
const secrets: Record<'A' | 'B', { servers: string[]; units: string[]; tokenIds: string[]; names: string[] }> = {
  A: { servers: [], units: [], tokenIds: [], names: [] },
  B: { servers: [], units: [], tokenIds: [], names: [] },
};
const counts = new Map<string, number>();
let cases = 0;

beforeAll(async () => {
  zk = await Zk.connect(zkConnect());
  const config = await readConfig(zk, paths, { shards: 4 });
  // No rate limit and no shedding here: those answer 429/503 by design and have their own tests.
  app = await buildApp({ zk, paths, config, rateLimit: null, pressure: null, maxStreamsPerToken: 1000 });
  await app.listen({ port: 0, host: '127.0.0.1' });
  port = (app.server.address() as net.AddressInfo).port;
  await freshTokens();
  const mint = async (project: string, role: Role, ttlMs?: number) => mintToken(zk, ap, { project: asProjectId(project), role, ttlMs });
  tokens.expired = (await mint('alpha', 'member', 1)).secret;
  const revoked = await mint('alpha', 'member');
  await revokeToken(zk, ap, revoked.record.id);
  tokens.revoked = revoked.secret;
  tokens.malformed = 'quark.nothex.short';
  // Each project holds servers and units, with names that appear nowhere else.
  for (const [p, who, quota] of [['A', 'memberA', 'alpha'], ['B', 'memberB', 'bravo']] as const) {
    for (let i = 0; i < 2; i++) {
      const name = `${p === 'A' ? 'alphasecret' : 'bravosecret'}${i}x${Math.random().toString(36).slice(2, 8)}`;
      const r = await app.inject({ method: 'POST', url: '/v1/servers', payload: { name, flavor: { vcpus: 1, ram_mb: 64, disk_gb: 1 } }, headers: auth(who) });
      expect(r.statusCode).toBe(202);
      secrets[p].servers.push(r.json().server_id);
      secrets[p].units.push(r.json().work_unit_id);
      secrets[p].names.push(name);
    }
    // A quota keeps the random boots that pass validation from piling up.
    await zk.mkdirp(ap.project(asProjectId(quota)));
    await zk.create(ap.quota(asProjectId(quota)), { instances: 40 });
  }
});

afterAll(async () => {
  await app.close();
  await zk.removeTree(paths.root);
  await zk.close();
  const roles = new Set([...counts.keys()].map((k) => k.split(' ')[0]));
  const routes = new Set([...counts.keys()].map((k) => k.split(' ').slice(1).join(' ')));
  // The figure the report quotes: routes × callers × cases.
  console.log(JSON.stringify({ fuzz: { routes: routes.size, callers: roles.size, cases, per_route_and_caller: RUNS } }));
});

/** Tokens for the five roles, new each time: the admin's run may revoke any token it is shown. */
async function freshTokens(): Promise<void> {
  for (const [who, project, role] of [
    ['admin', 'ops', 'admin'],
    ['memberA', 'alpha', 'member'],
    ['readerA', 'alpha', 'reader'],
    ['memberB', 'bravo', 'member'],
    ['readerB', 'bravo', 'reader'],
  ] as const) {
    const t = await mintToken(zk, ap, { project: asProjectId(project), role });
    tokens[who] = t.secret;
    const p = PROJECT_OF[who];
    if (p) secrets[p].tokenIds.push(t.record.id);
  }
}

function auth(who: Who): Record<string, string> {
  if (who === 'none') return {};
  if (who === 'wrongScheme') return { authorization: `Basic ${Buffer.from('admin:admin').toString('base64')}` };
  return { authorization: `Bearer ${tokens[who]}` };
}

const uuidish = fc.constantFrom('00000000-0000-4000-8000-000000000000', 'not-a-uuid', '..', '%2e%2e', 'ZZZZZZZZ-0000-4000-8000-000000000000', '');
/** A value for a path parameter: ids of both projects, made-up ones, junk. */
function paramValue(url: string): fc.Arbitrary<string> {
  if (url.startsWith('/v1/tokens')) return fc.oneof(fc.constantFrom(...secrets.A.tokenIds, ...secrets.B.tokenIds), fc.string({ unit: fc.constantFrom(...'0123456789abcdef'), minLength: 24, maxLength: 24 }), fc.string());
  if (url.startsWith('/v1/projects')) return fc.oneof(fc.constantFrom('alpha', 'bravo', 'ops', 'nobody', '..', '.hidden'), fc.string({ maxLength: 70 }));
  if (url.startsWith('/ui/assets')) return fc.oneof(fc.constantFrom('ui.js', 'ui.css', '..%2Fpackage.json', 'x.map'), fc.string());
  return fc.oneof(fc.constantFrom(...secrets.A.servers, ...secrets.B.servers, ...secrets.A.units, ...secrets.B.units), fc.uuid(), uuidish, fc.string({ maxLength: 40 }));
}

const queryKeys = fc.constantFrom('status', 'state', 'kind', 'server_id', 'limit', 'since', 'ticket', 'x', 'project');
const queryValue = fc.oneof(
  fc.constantFrom('ACTIVE', 'PENDING', 'build', '1', '0', '1000', '99999', '-1', 'true', ...secrets.A.servers, ...secrets.B.servers),
  fc.string({ maxLength: 30 }),
  fc.date({ noInvalidDate: true }).map((d) => d.toISOString()),
);
const query = fc.dictionary(queryKeys, queryValue, { maxKeys: 3 }).map((q) => {
  const s = new URLSearchParams(q).toString();
  return s ? `?${s}` : '';
});

const flavor = fc.record(
  { vcpus: fc.oneof(fc.integer({ min: -2, max: 2000 }), fc.constant('2')), ram_mb: fc.integer({ min: 0, max: 70_000 }), disk_gb: fc.integer({ min: -1, max: 100 }) },
  { requiredKeys: [] },
);
const body = fc.oneof(
  fc.record({ name: fc.oneof(fc.constantFrom('web', 'db-1', '../x', ''), fc.string({ maxLength: 70 })), flavor, labels: fc.array(fc.string({ maxLength: 10 }), { maxLength: 3 }) }, { requiredKeys: [] }),
  fc.record({ action: fc.oneof(fc.constantFrom('start', 'stop', 'reboot', 'explode'), fc.string()) }, { requiredKeys: [] }),
  fc.record({ project: fc.constantFrom('alpha', 'bravo', 'x/y'), role: fc.constantFrom('admin', 'member', 'reader', 'root'), ttl_seconds: fc.integer({ min: -5, max: 100 }) }, { requiredKeys: [] }),
  fc.record({ instances: fc.oneof(fc.integer({ min: -1, max: 100 }), fc.constant(null)), vcpus: fc.integer({ min: 0, max: 100 }) }, { requiredKeys: [] }),
  fc.jsonValue({ maxDepth: 3 }),
);
const rawBody = fc.oneof(
  body.map((b) => ({ payload: JSON.stringify(b), type: 'application/json' })),
  fc.string({ maxLength: 200 }).map((s) => ({ payload: s, type: 'application/json' })),
  fc.string({ maxLength: 100 }).map((s) => ({ payload: s, type: 'text/plain' })),
  fc.constant({ payload: '', type: 'application/json' }),
  fc.constant(undefined),
);
const extraHeaders = fc.record(
  {
    'idempotency-key': fc.oneof(fc.constantFrom('k1', 'k2', ''), fc.string({ maxLength: 300 }).filter((s) => /^[\x21-\x7e ]*$/.test(s))),
    accept: fc.constantFrom('application/json', '*/*', 'text/event-stream', 'text/html'),
    'x-forwarded-for': fc.constantFrom('10.0.0.1', 'junk'),
  },
  { requiredKeys: [] },
);

/** Fills a route pattern's `:params` with values; some values may break the path (that is the point). */
const pathFor = (r: RouteEntry): fc.Arbitrary<string> => {
  const names = [...r.url.matchAll(/:([a-z_]+)/g)].map((m) => m[1]!);
  if (names.length === 0) return fc.constant(r.url);
  return fc.tuple(...names.map(() => paramValue(r.url))).map((vals) => {
    let out = r.url;
    names.forEach((n, i) => (out = out.replace(`:${n}`, encodeURIComponent(vals[i]!))));
    return out;
  });
};

/** A stream route over a socket: the status and whatever arrives in the first moments, then hang up. */
function streamOnce(path: string, headers: Record<string, string>): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = httpRequest({ host: '127.0.0.1', port, path, headers }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (body += c));
      const done = () => {
        req.destroy();
        resolve({ status: res.statusCode!, body });
      };
      if (res.statusCode === 200) setTimeout(done, 30);
      else res.on('end', done);
    });
    req.on('error', reject);
    req.end();
  });
}

/** Does `path`, resolved the way a client resolves it, still name `route`? */
function reaches(route: RouteEntry, path: string): boolean {
  const resolved = new URL(path, 'http://h').pathname;
  const pattern = new RegExp(`^${route.url.replace(/:[a-z_]+/g, '[^/]+')}$`);
  return pattern.test(resolved);
}

function leaked(who: Who, question: string, answer: string): string[] {
  const mine = PROJECT_OF[who];
  const others = who === 'admin' ? [] : mine ? [mine === 'A' ? 'B' : 'A'] : ['A', 'B'];
  const out: string[] = [];
  for (const p of others as Array<'A' | 'B'>) {
    const s = secrets[p];
    for (const v of [...s.servers, ...s.units, ...s.tokenIds, ...s.names]) if (answer.includes(v) && !question.includes(v)) out.push(v);
  }
  return out;
}

describe('fuzz: every route, every kind of caller', () => {
  it('covers every route the app serves', () => {
    const declared = app.routeTable.map((r) => `${r.method} ${r.url}`);
    expect(declared.length).toBeGreaterThanOrEqual(20);
    // Every route says what it needs (none relies on the admin-only default by accident).
    expect(app.routeTable.filter((r) => !['public', 'read', 'write', 'admin'].includes(r.access))).toEqual([]);
  });

  for (const who of WHO) {
    it(`${who}: no 5xx, no other project's data, the right refusals`, async () => {
      await freshTokens();
      for (const route of app.routeTable) {
        await fc.assert(
          fc.asyncProperty(pathFor(route), query, rawBody, extraHeaders, async (path, q, b, extra) => {
            const headers: Record<string, string> = { ...extra, ...auth(who) };
            const url = path + q;
            let status: number;
            let answer: string;
            if (route.stream) {
              ({ status, body: answer } = await streamOnce(url, headers));
            } else {
              const sendsBody = route.method !== 'GET' && route.method !== 'DELETE' && b !== undefined;
              const r = await app.inject({
                method: route.method as 'GET',
                url,
                headers: sendsBody ? { ...headers, 'content-type': b.type } : headers,
                ...(sendsBody ? { payload: b.payload } : {}),
              });
              status = r.statusCode;
              answer = `${JSON.stringify(r.headers)}\n${r.body}`;
            }
            cases++;
            const key = `${who} ${route.method} ${route.url}`;
            counts.set(key, (counts.get(key) ?? 0) + 1);
            const question = `${url}\n${JSON.stringify(headers)}\n${b?.payload ?? ''}`;
            expect(status, `${route.method} ${url}`).toBeLessThan(500);
            expect(leaked(who, question, answer), `${who} ${route.method} ${url}: ${answer.slice(0, 300)}`).toEqual([]);
            const role = ROLE_OF[who];
            // A path the fuzzer broke (.., empty segments) no longer names this route: nothing to refuse there.
            const noRoute = !reaches(route, path);
            if (!role && route.access !== 'public' && !noRoute) expect(status, `${who} ${route.method} ${url}`).toBe(401);
            if (role === 'reader' && route.method !== 'GET') expect(status, `${route.method} ${url}`).toBeGreaterThanOrEqual(400);
            if (role && role !== 'admin' && route.access === 'admin' && !noRoute) expect(status, `${route.method} ${url}`).toBe(403);
          }),
          { numRuns: RUNS },
        );
      }
      // Still answering after all that.
      expect((await app.inject('/healthz')).statusCode).toBe(200);
    });
  }
});
