// Issue 16's observability on a real cluster (api, two orcs, two computes, a hollow fleet, all
// separate processes on the suite's ZooKeeper):
// - the OpenAPI document names every route the API serves, and real answers, errors included,
//   validate against the schema it gives for their status;
// - every process kind serves Prometheus metrics, and the figures move after real boots;
// - an X-Request-Id sent with a boot is answered back, stored on its work unit, and found on the
//   api's, the placing orc's and the running compute's log lines for that unit.
import { randomBytes, randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Ajv } from 'ajv';
import { http, startCluster, waitForUnit, type TestCluster } from './cluster.js';
import { useProcessGroup, waitFor, zkConnect, type Child } from './support/index.js';
import { buildApp } from '../ts/api/app.js';
import { readConfig } from '../ts/zk/config.js';

const group = useProcessGroup();
let c: TestCluster;
let fleet: Child;
const HOLLOW = 2;
const flavor = { vcpus: 1, ram_mb: 256, disk_gb: 1 };

/** The URL a process logged for its metrics listener (it was started with --metrics-port 0). */
const metricsUrlOf = (p: Child): Promise<string> =>
  waitFor(
    () => {
      for (const line of p.stderr().split('\n')) {
        if (!line.includes('"metrics listening"')) continue;
        return (JSON.parse(line) as { url: string }).url;
      }
      return undefined;
    },
    { what: `${p.label}'s metrics listener`, timeoutMs: 30_000 },
  );

type Series = Map<string, number>;

/** Prometheus text as `name{labels}` → value (labels as the exposition writes them). */
function parseProm(text: string): Series {
  const out: Series = new Map();
  for (const line of text.split('\n')) {
    if (!line || line.startsWith('#')) continue;
    const i = line.lastIndexOf(' ');
    out.set(line.slice(0, i), Number(line.slice(i + 1)));
  }
  return out;
}

/** The sum of every series of `name` whose labels include each of `labels` (k="v"). */
function sum(s: Series, name: string, labels: Record<string, string> = {}): number {
  let total = 0;
  for (const [k, v] of s) {
    const brace = k.indexOf('{');
    const n = brace < 0 ? k : k.slice(0, brace);
    if (n !== name) continue;
    if (Object.entries(labels).every(([l, val]) => k.includes(`${l}="${val}"`))) total += v;
  }
  return total;
}

const scrape = async (url: string, headers: Record<string, string> = {}): Promise<Series> => {
  const res = await fetch(url, { headers });
  expect(res.status, url).toBe(200);
  expect(res.headers.get('content-type')).toMatch(/^text\/plain/);
  return parseProm(await res.text());
};
const scrapeApi = () => scrape(`${c.api}/metrics`, { authorization: `Bearer ${c.token}` });

interface Urls {
  orcs: string[];
  computes: string[];
  hollow: string;
}
let urls: Urls;

const boot = async (name: string, extra: Record<string, unknown> = {}, headers: Record<string, string> = {}) => {
  const r = await http<{ work_unit_id: string; server_id: string }>(`${c.api}/v1/servers`, { method: 'POST', body: { name, flavor, ...extra }, headers });
  expect(r.status, JSON.stringify(r.body)).toBe(202);
  return r.body;
};

beforeAll(async () => {
  c = await startCluster(group, { computes: 2, orcs: 2, computeArgs: ['--metrics-port', '0', '--labels', 'plain'], orcArgs: ['--metrics-port', '0'] });
  // Hollow computes carry a label of their own, so a boot can be sent to them on purpose.
  fleet = group.spawnQuark(
    ['compute', '--hollow', String(HOLLOW), '--id-prefix', 'ho', '--labels', 'hollow', '--metrics-port', '0', '--zk', zkConnect(), '--root', c.root, '--session-timeout-ms', '2000'],
    { label: 'quark compute --hollow' },
  );
  await waitFor(async () => (await http<Array<{ alive: boolean }>>(`${c.api}/v1/computes`)).body.filter((x) => x.alive).length === 2 + HOLLOW, {
    what: 'every compute alive',
    timeoutMs: 60_000,
    intervalMs: 200,
  });
  urls = {
    orcs: await Promise.all([...c.orcs.values()].map(metricsUrlOf)),
    computes: await Promise.all([...c.computes.values()].map(metricsUrlOf)),
    hollow: await metricsUrlOf(fleet),
  };
}, 120_000);

afterAll(async () => {
  await c?.close();
});

// ---- OpenAPI ---------------------------------------------------------------------------------

interface Operation {
  responses: Record<string, { content?: Record<string, { schema: object }> }>;
  security?: unknown[];
}
type Doc = { openapi: string; paths: Record<string, Record<string, Operation>> };

const docPath = (url: string) => url.replace(/:([A-Za-z_]+)/g, '{$1}');

describe('OpenAPI', () => {
  let doc: Doc;
  const ajv = new Ajv({ strict: false, allErrors: true });

  /** Validates a real answer against the document's schema for its route, method and status. */
  const check = (method: string, route: string, status: number, body: unknown, type = 'application/json') => {
    const op = doc.paths[docPath(route)]?.[method.toLowerCase()];
    expect(op, `${method} ${route} is in the document`).toBeDefined();
    const r = op!.responses[String(status)] ?? op!.responses[`${String(status)[0]}XX`];
    expect(r, `${method} ${route} documents ${status}`).toBeDefined();
    const schema = r!.content?.[type]?.schema;
    expect(schema, `${method} ${route} ${status} has a ${type} schema`).toBeDefined();
    const ok = ajv.validate(schema!, body);
    expect(ok, `${method} ${route} ${status}: ${ajv.errorsText()} in ${JSON.stringify(body).slice(0, 400)}`).toBe(true);
  };

  beforeAll(async () => {
    // Public: no token.
    const res = await fetch(`${c.api}/openapi.json`);
    expect(res.status).toBe(200);
    doc = (await res.json()) as Doc;
  });

  it('is OpenAPI 3 and names every route the API serves, each with its errors', async () => {
    expect(doc.openapi).toMatch(/^3\./);
    // The routes as the API registers them (an in-process app on the same ZooKeeper root).
    const app = await buildApp({ zk: c.zk, paths: c.paths, config: await readConfig(c.zk, c.paths), rateLimit: null, pressure: null });
    try {
      await app.ready();
      const routes = app.routeTable.filter((r) => !r.url.startsWith('/docs'));
      expect(routes.length).toBeGreaterThan(30);
      for (const r of routes) {
        const op = doc.paths[docPath(r.url)]?.[r.method.toLowerCase()];
        expect(op, `${r.method} ${r.url} in /openapi.json`).toBeDefined();
        const codes = Object.keys(op!.responses);
        expect(codes.some((k) => k.startsWith('2')), `${r.method} ${r.url} documents its success`).toBe(true);
        expect(codes.some((k) => k.startsWith('4')), `${r.method} ${r.url} documents its refusals`).toBe(true);
        // A public route says so (no token); the rest need the bearer token.
        if (r.access === 'public') expect(op!.security, `${r.method} ${r.url}`).toEqual([]);
        else expect(op!.security).toBeUndefined();
      }
    } finally {
      await app.close();
    }
  });

  it('real answers, successes and errors, validate against the document', async () => {
    const get = async (route: string, path = route) => {
      const r = await http(`${c.api}${path}`);
      check('GET', route, r.status, r.body);
      return r;
    };
    const created = await http<{ work_unit_id: string; server_id: string }>(`${c.api}/v1/servers`, { method: 'POST', body: { name: 'doc-1', flavor } });
    check('POST', '/v1/servers', created.status, created.body);
    expect(created.status).toBe(202);
    const { server_id, work_unit_id } = created.body;
    await waitForUnit(c.api, work_unit_id);

    expect((await get('/healthz')).status).toBe(200);
    expect((await get('/v1/servers')).status).toBe(200);
    expect((await get('/v1/servers/:id', `/v1/servers/${server_id}`)).status).toBe(200);
    expect((await get('/v1/work-units/:id', `/v1/work-units/${work_unit_id}`)).status).toBe(200);
    expect((await get('/v1/work-units', '/v1/work-units?limit=5')).status).toBe(200);
    for (const route of ['/v1/computes', '/v1/orcs', '/v1/shards', '/v1/whoami', '/v1/stream-ticket', '/v1/tokens', '/v1/audit', '/v1/images', '/v1/server-groups', '/v1/ui/feed']) {
      expect((await get(route)).status, route).toBe(200);
    }
    expect((await get('/v1/projects/:id/usage', '/v1/projects/admin/usage')).status).toBe(200);
    expect((await get('/v1/projects/:id/quota', '/v1/projects/admin/quota')).status).toBe(200);
    const grp = await http(`${c.api}/v1/server-groups`, { method: 'POST', body: { name: 'doc-g', policy: 'anti-affinity' } });
    check('POST', '/v1/server-groups', grp.status, grp.body);
    expect(grp.status).toBe(201);

    // Errors: each documented, each an error body.
    const missing = await get('/v1/servers/:id', `/v1/servers/${randomUUID()}`);
    expect(missing.status).toBe(404);
    const bad = await http(`${c.api}/v1/servers`, { method: 'POST', body: { name: 'x', flavor: { vcpus: 0 } } });
    check('POST', '/v1/servers', bad.status, bad.body);
    expect(bad.status).toBe(400);
    const noToken = await fetch(`${c.api}/v1/servers`, { headers: { authorization: 'Bearer nope' } });
    check('GET', '/v1/servers', noToken.status, await noToken.json());
    expect(noToken.status).toBe(401);
    const member = await boot('doc-member', { group: (grp.body as { id: string }).id });
    const inUse = await http(`${c.api}/v1/server-groups/${(grp.body as { id: string }).id}`, { method: 'DELETE' });
    check('DELETE', '/v1/server-groups/:id', inUse.status, inUse.body);
    expect(inUse.status).toBe(409);
    const stop = await http(`${c.api}/v1/servers/${server_id}/actions`, { method: 'POST', body: { action: 'stop' } });
    check('POST', '/v1/servers/:id/actions', stop.status, stop.body);
    expect(stop.status).toBe(202);
    await waitForUnit(c.api, member.work_unit_id);
    const del = await http(`${c.api}/v1/servers/${server_id}`, { method: 'DELETE' });
    check('DELETE', '/v1/servers/:id', del.status, del.body);
    expect(del.status).toBe(202);
  });

  it('the docs page is served offline: its page and assets come from the API, public', async () => {
    const page = await fetch(`${c.api}/docs/`);
    expect(page.status).toBe(200);
    const html = await page.text();
    expect(html).toMatch(/swagger/i);
    // Every script and style sheet it loads is the API's own (relative), none from another host.
    const refs = [...html.matchAll(/(?:src|href)="([^"]+)"/g)].map((m) => m[1]!);
    expect(refs.length).toBeGreaterThan(0);
    for (const ref of refs) {
      expect(ref, ref).not.toMatch(/^(https?:)?\/\//);
      const asset = await fetch(new URL(ref, `${c.api}/docs/`));
      expect(asset.status, ref).toBe(200);
    }
    // The page's script reads the document from the API itself; no address of another host but in a comment.
    const init = await (await fetch(`${c.api}/docs/static/swagger-initializer.js`)).text();
    expect(init).toContain("url: resolveUrl('./json')");
    for (const line of init.split('\n').filter((l) => !l.trim().startsWith('//'))) expect(line).not.toMatch(/https?:\/\//);
  });
});

// ---- Prometheus ------------------------------------------------------------------------------

describe('Prometheus metrics', () => {
  it('the api needs an admin token for /metrics', async () => {
    expect((await fetch(`${c.api}/metrics`)).status).toBe(401);
    const member = await http<{ token: string }>(`${c.api}/v1/tokens`, { method: 'POST', body: { project: 'obs', role: 'member' } });
    expect(member.status).toBe(201);
    expect((await fetch(`${c.api}/metrics`, { headers: { authorization: `Bearer ${member.body.token}` } })).status).toBe(403);
  });

  it('every process kind counts real work: boots, placements, steps, libvirt, ZooKeeper', async () => {
    const before = {
      api: await scrapeApi(),
      orcs: await Promise.all(urls.orcs.map((u) => scrape(u))),
      computes: await Promise.all(urls.computes.map((u) => scrape(u))),
      hollow: await scrape(urls.hollow),
    };
    const total = (list: Series[], name: string, labels?: Record<string, string>) => list.reduce((n, s) => n + sum(s, name, labels), 0);

    // Three boots on the two plain computes, one on the hollow fleet (each kind has its label), and
    // one no compute can hold.
    const units = [];
    for (let i = 0; i < 3; i++) units.push((await boot(`m-${i}`, { labels: ['plain'] })).work_unit_id);
    const onHollow = (await boot('m-hollow', { labels: ['hollow'] })).work_unit_id;
    const tooBig = (await boot('m-big', { flavor: { vcpus: 1000, ram_mb: 256, disk_gb: 1 } })).work_unit_id;
    const ends = await Promise.all([...units, onHollow, tooBig].map((u) => waitForUnit(c.api, u)));
    expect(ends.map((u) => u.state)).toEqual(['SUCCEEDED', 'SUCCEEDED', 'SUCCEEDED', 'SUCCEEDED', 'FAILED']);
    expect(ends[4]!.error?.code).toBe('NO_VALID_HOST');
    expect(ends[3]!.compute_id).toMatch(/^ho-/);

    const after = {
      api: await scrapeApi(),
      orcs: await Promise.all(urls.orcs.map((u) => scrape(u))),
      computes: await Promise.all(urls.computes.map((u) => scrape(u))),
      hollow: await scrape(urls.hollow),
    };
    const moved = (list: [Series[], Series[]], name: string, labels?: Record<string, string>) => total(list[1], name, labels) - total(list[0], name, labels);

    // The api: requests by route and code, units accepted, its ZooKeeper, and ZooKeeper's own figures.
    const api: [Series[], Series[]] = [[before.api], [after.api]];
    expect(moved(api, 'quark_http_requests_total', { method: 'POST', route: '/v1/servers', code: '202' })).toBe(5);
    expect(moved(api, 'quark_http_request_duration_seconds_count', { route: '/v1/work-units/:id' })).toBeGreaterThan(0);
    expect(moved(api, 'quark_units_accepted_total', { kind: 'build' })).toBe(5);
    expect(moved(api, 'quark_zk_request_duration_seconds_count', { op: 'multi', outcome: 'ok' })).toBeGreaterThanOrEqual(5);
    expect(sum(after.api, 'quark_zk_sessions', { state: 'CONNECTED' })).toBe(1);
    expect(sum(after.api, 'quark_zookeeper_up')).toBe(1);
    expect(sum(after.api, 'quark_zookeeper_znode_count')).toBeGreaterThan(sum(before.api, 'quark_zookeeper_znode_count'));
    expect(sum(after.api, 'process_cpu_seconds_total')).toBeGreaterThan(0);

    // The orcs: placements, NO_VALID_HOST by filter, the failure, and every shard owned once.
    const orcs: [Series[], Series[]] = [before.orcs, after.orcs];
    expect(moved(orcs, 'quark_placement_duration_seconds_count', { outcome: 'placed' })).toBe(4);
    expect(moved(orcs, 'quark_placement_duration_seconds_count', { outcome: 'no_valid_host' })).toBe(1);
    expect(moved(orcs, 'quark_no_valid_host_total')).toBeGreaterThanOrEqual(1);
    expect(moved(orcs, 'quark_no_valid_host_total', { filter: 'none' })).toBe(0);
    expect(moved(orcs, 'quark_units_failed_total', { kind: 'build', code: 'NO_VALID_HOST' })).toBe(1);
    expect(total(after.orcs, 'quark_claim_conflicts_total')).toBeGreaterThanOrEqual(0);
    const shards = Object.keys((await http<Record<string, string | null>>(`${c.api}/v1/shards`)).body).length;
    expect(total(after.orcs, 'quark_shards_owned')).toBe(shards);

    // The computes: units succeeded, step durations by kind and step, libvirt calls.
    const computes: [Series[], Series[]] = [before.computes, after.computes];
    expect(moved(computes, 'quark_units_succeeded_total', { kind: 'build' })).toBe(3);
    expect(moved(computes, 'quark_step_duration_seconds_count', { kind: 'build', step: 'start' })).toBe(3);
    expect(moved(computes, 'quark_libvirt_call_duration_seconds_count', { call: 'define', outcome: 'ok' })).toBe(3);
    expect(moved(computes, 'quark_zk_request_duration_seconds_count', { op: 'multi' })).toBeGreaterThan(0);

    // The hollow fleet: one process, one session per compute, and the boot it ran.
    const hollow: [Series[], Series[]] = [[before.hollow], [after.hollow]];
    expect(sum(after.hollow, 'quark_zk_sessions', { state: 'CONNECTED' })).toBe(HOLLOW);
    expect(moved(hollow, 'quark_units_succeeded_total', { kind: 'build' })).toBe(1);
    expect(moved(hollow, 'quark_libvirt_call_duration_seconds_count', { call: 'start' })).toBe(1);
  });

  it('the orc and compute listeners answer only GET /metrics', async () => {
    expect((await fetch(urls.orcs[0]!.replace(/\/metrics$/, '/'))).status).toBe(404);
    expect((await fetch(urls.computes[0]!, { method: 'POST' })).status).toBe(404);
    // Loopback by default.
    for (const u of [...urls.orcs, ...urls.computes, urls.hollow]) expect(new URL(u).hostname).toBe('127.0.0.1');
  });
});

// ---- request ids -----------------------------------------------------------------------------

interface LogLine {
  msg: string;
  level: string;
  t: string;
  wu?: string;
  request_id?: string;
}
const linesOf = (p: Child): LogLine[] =>
  p
    .stderr()
    .split('\n')
    .filter((l) => l.startsWith('{'))
    .map((l) => JSON.parse(l) as LogLine);

describe('X-Request-Id', () => {
  it('is answered back, stored on the unit, and on the api, orc and compute lines for it', async () => {
    const id = `obs-${randomBytes(6).toString('hex')}`;
    const res = await fetch(`${c.api}/v1/servers`, {
      method: 'POST',
      headers: { authorization: `Bearer ${c.token}`, 'content-type': 'application/json', 'x-request-id': id },
      body: JSON.stringify({ name: 'rid-1', flavor, labels: ['plain'] }),
    });
    expect(res.status).toBe(202);
    expect(res.headers.get('x-request-id')).toBe(id);
    const { work_unit_id: wu } = (await res.json()) as { work_unit_id: string };
    const done = await waitForUnit(c.api, wu);
    expect(done.state).toBe('SUCCEEDED');
    expect((await http<{ request_id: string }>(`${c.api}/v1/work-units/${wu}`)).body.request_id).toBe(id);

    const about = (p: Child) => linesOf(p).filter((l) => l.request_id === id && l.wu === wu);
    // Each line is pino's JSON with Quark's keys.
    await waitFor(() => about(c.apiProc).length > 0, { what: "the api's line for the unit" });
    const apiLine = about(c.apiProc)[0]!;
    expect(apiLine).toMatchObject({ msg: 'request', level: 'info', method: 'POST', url: '/v1/servers', status: 202 });
    expect(Date.parse(apiLine.t)).not.toBeNaN();
    // A process logs a unit's end after committing it: the line may follow the API's answer.
    await waitFor(() => [...c.orcs.values()].flatMap(about).some((l) => l.msg === 'work unit placed'), { what: "the placing orc's line" });
    const runner = c.computes.get(done.compute_id!)!;
    await waitFor(() => about(runner).some((l) => l.msg === 'work unit succeeded'), { what: "the compute's line" });
    // No other process has lines for it.
    for (const [cid, p] of c.computes) if (cid !== done.compute_id) expect(about(p)).toEqual([]);
  });

  it('an action carries its own id to the orc that routes it and the compute that runs it', async () => {
    const built = await boot('rid-2', { labels: ['plain'] });
    const b = await waitForUnit(c.api, built.work_unit_id);
    const id = `obs-stop-${randomBytes(4).toString('hex')}`;
    const r = await http<{ work_unit_id: string }>(`${c.api}/v1/servers/${built.server_id}/actions`, { method: 'POST', body: { action: 'stop' }, headers: { 'x-request-id': id } });
    expect(r.status).toBe(202);
    const stop = await waitForUnit(c.api, r.body.work_unit_id);
    expect(stop.state).toBe('SUCCEEDED');
    const about = (p: Child) => linesOf(p).filter((l) => l.request_id === id && l.wu === stop.id);
    await waitFor(() => [...c.orcs.values()].flatMap(about).some((l) => l.msg === 'work unit routed'), { what: "the routing orc's line" });
    await waitFor(() => about(c.computes.get(b.compute_id!)!).some((l) => l.msg === 'work unit succeeded'), { what: "the compute's line" });
  });

  it('is made when absent or unfit, and answered on refusals too', async () => {
    const made = await fetch(`${c.api}/healthz`);
    expect(made.headers.get('x-request-id')).toMatch(/^[0-9a-f-]{36}$/);
    const unfit = await fetch(`${c.api}/healthz`, { headers: { 'x-request-id': 'has spaces\tand tabs' } });
    expect(unfit.headers.get('x-request-id')).toMatch(/^[0-9a-f-]{36}$/);
    const long = await fetch(`${c.api}/healthz`, { headers: { 'x-request-id': 'x'.repeat(129) } });
    expect(long.headers.get('x-request-id')).toMatch(/^[0-9a-f-]{36}$/);
    const refused = await fetch(`${c.api}/v1/servers`, { headers: { 'x-request-id': 'refused-1' } });
    expect(refused.status).toBe(401);
    expect(refused.headers.get('x-request-id')).toBe('refused-1');
  });
});
