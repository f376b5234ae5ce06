// Paging and filters of GET /v1/servers and GET /v1/work-units, answered from the watch-fed
// index (ts/api/listing.ts), against the real ZooKeeper: every record once and in order across
// pages even while records come and go, filters, project scoping, no record read per list call,
// read-your-writes, and a marker that is not one the API gave out.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { FastifyInstance, LightMyRequestResponse } from 'fastify';
import { randomUUID } from 'node:crypto';
import { buildApp } from './app.js';
import { Zk } from '../zk/client.js';
import { Paths } from '../zk/paths.js';
import { readConfig } from '../zk/config.js';
import { uniqueRoot, waitFor, zkConnect } from '../../test/support/index.js';
import { mintToken } from '../auth/tokens.js';
import { AuthPaths } from '../auth/layout.js';
import { asProjectId, type Role } from '../auth/policy.js';
import { shardOf, type ServerRecord, type WorkUnitRecord } from '../common/model.js';
import type { ComputeId, ServerId, WorkUnitId } from '../common/ids.js';
import { acceptedServer, acceptedUnit } from '../lifecycle/index.js';
import { serverDeletedOps } from '../lifecycle/retention.js';
import { applyOps } from '../lifecycle/ops.js';
import { RecordIndex, decodeMarker, encodeMarker, type Keyed } from './listing.js';

let zk: Zk;
let app: FastifyInstance;
const paths = new Paths(uniqueRoot('listing'));
const ap = new AuthPaths(paths);
const tok: Record<string, string> = {};
const flavor = { vcpus: 1, ram_mb: 512, disk_gb: 1 };
const T0 = 1_700_000_000_000;

/** A server record as the API writes one, in `project`, with a chosen creation time. */
function server(name: string, project: string, at: number, extra: Partial<ServerRecord> = {}): ServerRecord & { project: string } {
  return { ...acceptedServer({ id: randomUUID() as ServerId, name, flavor, labels: [], zone: null, at, unit: null as never }), task: null, ...extra, project };
}

function unit(s: ServerRecord & { project: string }, kind: WorkUnitRecord['kind'], at: number, extra: Partial<WorkUnitRecord> = {}): WorkUnitRecord & { project: string } {
  const id = randomUUID() as WorkUnitId;
  const request = kind === 'build' ? { name: s.name, flavor, bandwidth_mbps: 0 } : undefined;
  return { ...acceptedUnit({ id, kind, server_id: s.id, shard: shardOf(id, 4), at, request }), ...extra, project: s.project };
}

beforeAll(async () => {
  zk = await Zk.connect(zkConnect());
  const config = await readConfig(zk, paths, { shards: 4 });
  app = await buildApp({ zk, paths, config });
  for (const [name, project, role] of [
    ['admin', 'ops', 'admin'],
    ['m1', 'p1', 'member'],
    ['m2', 'p2', 'member'],
  ] as const) {
    tok[name] = (await mintToken(zk, ap, { project: asProjectId(project), role: role as Role })).secret;
  }
});
afterAll(async () => {
  await app?.close();
  await zk.removeTree(paths.root);
  await zk.close();
});

const get = (who: string, url: string) => app.inject({ url, headers: { authorization: `Bearer ${tok[who]}` } });
const code = (r: LightMyRequestResponse) => (r.json() as { error?: { code: string } }).error?.code;

/** Every page of `url` as a client walks it: following X-Next-Marker until there is none. */
async function walk<T>(who: string, url: string): Promise<{ items: T[]; pages: number }> {
  const items: T[] = [];
  let pages = 0;
  for (let marker: string | undefined; ; ) {
    const sep = url.includes('?') ? '&' : '?';
    const r = await get(who, marker ? `${url}${sep}marker=${encodeURIComponent(marker)}` : url);
    expect(r.statusCode, r.body).toBe(200);
    items.push(...(r.json() as T[]));
    pages++;
    const next = r.headers['x-next-marker'] as string | undefined;
    if (!next) {
      expect(r.headers.link).toBeUndefined();
      return { items, pages };
    }
    expect(r.headers.link).toBe(`<${new URL(url, 'http://x').pathname}?${new URLSearchParams({ ...Object.fromEntries(new URL(url, 'http://x').searchParams), marker: next })}>; rel="next"`);
    marker = next;
  }
}

describe('GET /v1/servers pages', () => {
  const made: Array<ServerRecord & { project: string }> = [];

  beforeAll(async () => {
    // 60 servers in p1 and 20 in p2, created in a shuffled order (creation times decide the order, not arrival).
    const specs = Array.from({ length: 80 }, (_, i) => ({ i, at: T0 + i * 1000 }));
    specs.sort(() => Math.random() - 0.5);
    for (const { i, at } of specs) {
      const s = server(i % 4 === 0 ? `db-${i}` : `web-${i}`, i < 60 ? 'p1' : 'p2', at, i % 3 === 0 ? { status: 'ACTIVE', compute_id: 'c-1' as ComputeId } : {});
      made.push(s);
      await zk.create(paths.server(s.id), s);
    }
    made.sort((a, b) => a.created_at - b.created_at);
  });

  it('every server once, oldest first, across pages of `limit`; the last page has no marker', async () => {
    const { items, pages } = await walk<{ id: string }>('admin', '/v1/servers?limit=7');
    expect(items.map((s) => s.id)).toEqual(made.map((s) => s.id));
    expect(pages).toBe(Math.ceil(80 / 7));
    // Without a limit: the whole list up to 1000, as before paging.
    const all = await get('admin', '/v1/servers');
    expect((all.json() as unknown[]).length).toBe(80);
    expect(all.headers['x-next-marker']).toBeUndefined();
  });

  it('filters by status, compute and name prefix, and pages the filtered list', async () => {
    const active = await walk<{ id: string; status: string }>('admin', '/v1/servers?status=ACTIVE&limit=5');
    expect(active.items.map((s) => s.id)).toEqual(made.filter((s) => s.status === 'ACTIVE').map((s) => s.id));
    const onC1 = await walk<{ id: string }>('admin', '/v1/servers?compute_id=c-1&limit=100');
    expect(onC1.items.map((s) => s.id)).toEqual(made.filter((s) => s.compute_id === 'c-1').map((s) => s.id));
    const db = await walk<{ id: string; name: string }>('admin', '/v1/servers?name_prefix=db-&limit=3');
    expect(db.items.map((s) => s.id)).toEqual(made.filter((s) => s.name.startsWith('db-')).map((s) => s.id));
    expect(db.items.length).toBe(20);
    const both = await walk<{ id: string }>('admin', '/v1/servers?name_prefix=db-&status=ACTIVE&limit=2');
    expect(both.items.map((s) => s.id)).toEqual(made.filter((s) => s.name.startsWith('db-') && s.status === 'ACTIVE').map((s) => s.id));
  });

  it("a member pages through its own project's servers only", async () => {
    const p2 = await walk<{ id: string; project: string }>('m2', '/v1/servers?limit=6');
    expect(p2.items.map((s) => s.id)).toEqual(made.filter((s) => s.project === 'p2').map((s) => s.id));
    // Another project's marker position gives away nothing: the walk goes on in its own project.
    const p1 = await walk<{ project: string }>('m1', '/v1/servers?limit=50');
    expect(p1.items.length).toBe(60);
    expect(new Set(p1.items.map((s) => s.project))).toEqual(new Set(['p1']));
  });

  it('a walk while servers come and go returns every server that stayed exactly once, in order', async () => {
    const seen: string[] = [];
    let marker: string | undefined;
    const removed = new Set<string>();
    const added: string[] = [];
    for (let page = 0; ; page++) {
      const r = await get('admin', `/v1/servers?limit=9${marker ? `&marker=${marker}` : ''}`);
      seen.push(...(r.json() as Array<{ id: string }>).map((s) => s.id));
      marker = r.headers['x-next-marker'] as string | undefined;
      if (!marker) break;
      // Between pages: one server removed (maybe one already seen, maybe not), one made now (newest: last).
      const victim = made[(page * 13) % made.length]!;
      if (!removed.has(victim.id)) {
        await zk.remove(paths.server(victim.id));
        removed.add(victim.id);
      }
      const s = server(`late-${page}`, 'p1', T0 + 1_000_000 + page);
      await zk.create(paths.server(s.id), s);
      added.push(s.id);
    }
    const stayed = made.map((s) => s.id).filter((id) => !removed.has(id));
    expect(new Set(seen).size).toBe(seen.length);
    for (const id of stayed) expect(seen).toContain(id);
    // Servers made during the walk sort last, so the walk reaches them too.
    for (const id of added) expect(seen).toContain(id);
    expect(seen.filter((id) => stayed.includes(id as ServerId))).toEqual(stayed);
  });

  it('deleted servers kept for the retention are listed with status DELETED, and only there', async () => {
    const s = server('to-delete', 'p1', T0 + 5_000_000);
    await zk.create(paths.server(s.id), s);
    expect((await get('admin', `/v1/servers?name_prefix=to-delete`)).json()).toHaveLength(1);
    // A delete's finishing transaction: the record goes, its last record is kept.
    await applyOps(zk.txn().remove(paths.server(s.id)), serverDeletedOps(paths, 4, s, T0 + 6_000_000)).commit();
    expect((await get('admin', `/v1/servers?name_prefix=to-delete`)).json()).toHaveLength(0);
    const d = (await get('admin', '/v1/servers?status=DELETED')).json() as Array<{ id: string; status: string; deleted_at: string; task: null }>;
    expect(d).toEqual([expect.objectContaining({ id: s.id, status: 'DELETED', deleted_at: new Date(T0 + 6_000_000).toISOString(), task: null })]);
    expect((await get('m2', '/v1/servers?status=DELETED')).json()).toEqual([]);
    expect((await get('admin', `/v1/servers/${s.id}`)).statusCode).toBe(404);
  });

  it('a marker that is not one the API gave out is 400 with a code; so is a limit out of range', async () => {
    for (const m of ['nope!', Buffer.from('x.y').toString('base64url'), Buffer.from('12.a/b').toString('base64url')]) {
      const r = await get('admin', `/v1/servers?marker=${encodeURIComponent(m)}`);
      expect(r.statusCode).toBe(400);
      expect(code(r)).toBe('BAD_REQUEST');
    }
    for (const l of ['0', '1001', 'x', '-1']) expect((await get('admin', `/v1/servers?limit=${l}`)).statusCode).toBe(400);
  });
});

describe('GET /v1/work-units pages', () => {
  it('newest first, filtered by state, kind, server and compute, with X-Total-Count; a member sees its own', async () => {
    const s1 = server('u-1', 'p1', T0);
    const s2 = server('u-2', 'p2', T0);
    const units = [
      unit(s1, 'build', T0 + 1, { state: 'SUCCEEDED', compute_id: 'c-1' as ComputeId }),
      unit(s1, 'reboot', T0 + 2, { state: 'FAILED', compute_id: 'c-1' as ComputeId }),
      unit(s1, 'stop', T0 + 3, { state: 'RUNNING', compute_id: 'c-2' as ComputeId }),
      unit(s2, 'build', T0 + 4, { state: 'SUCCEEDED', compute_id: 'c-2' as ComputeId }),
      unit(s2, 'delete', T0 + 5),
    ];
    for (const u of units) await zk.create(paths.workUnit(u.id), u);
    const ids = (us: WorkUnitRecord[]) => us.map((u) => u.id).reverse();
    const all = await walk<{ id: string }>('admin', '/v1/work-units?limit=2');
    expect(all.items.map((u) => u.id)).toEqual(ids(units));
    expect(all.pages).toBe(3);
    const first = await get('admin', '/v1/work-units?limit=2');
    expect(first.headers['x-total-count']).toBe('5');
    expect((await walk<{ id: string }>('admin', '/v1/work-units?kind=build')).items.map((u) => u.id)).toEqual(ids([units[0]!, units[3]!]));
    expect((await walk<{ id: string }>('admin', '/v1/work-units?state=SUCCEEDED&limit=1')).items.map((u) => u.id)).toEqual(ids([units[0]!, units[3]!]));
    expect((await walk<{ id: string }>('admin', `/v1/work-units?server_id=${s1.id}&limit=1`)).items.map((u) => u.id)).toEqual(ids(units.slice(0, 3)));
    expect((await walk<{ id: string }>('admin', '/v1/work-units?compute_id=c-2')).items.map((u) => u.id)).toEqual(ids([units[2]!, units[3]!]));
    const m2 = await get('m2', '/v1/work-units');
    expect((m2.json() as Array<{ id: string }>).map((u) => u.id)).toEqual(ids(units.slice(3)));
    expect(m2.headers['x-total-count']).toBe('2');
    expect(m2.headers['x-scanned-count']).toBeUndefined();
  });

  it('a unit the API itself just accepted is in the next list call (read-your-writes), and its changes follow', async () => {
    const r = await app.inject({ method: 'POST', url: '/v1/servers', payload: { name: 'fresh', flavor }, headers: { authorization: `Bearer ${tok.m1}` } });
    expect(r.statusCode).toBe(202);
    const { work_unit_id, server_id } = r.json() as { work_unit_id: string; server_id: string };
    const listed = (await get('m1', '/v1/work-units?limit=1')).json() as Array<{ id: string; state: string }>;
    expect(listed[0]).toMatchObject({ id: work_unit_id, state: 'PENDING' });
    expect(((await get('m1', '/v1/servers?name_prefix=fresh')).json() as Array<{ id: string }>)[0]!.id).toBe(server_id);
    // Another writer changes it: the next list call shows the change.
    const cur = await zk.get<WorkUnitRecord>(paths.workUnit(work_unit_id as WorkUnitId));
    await zk.set(paths.workUnit(work_unit_id as WorkUnitId), { ...cur!.value!, state: 'FAILED', finished_at: Date.now() }, cur!.stat.version);
    expect(((await get('m1', `/v1/work-units?server_id=${server_id}`)).json() as Array<{ state: string }>)[0]!.state).toBe('FAILED');
  });
});

describe('the index', () => {
  it('answers a list call with no read of any record, and a malformed record is left out', async () => {
    const root = uniqueRoot('index');
    await zk.mkdirp(root);
    try {
      for (let i = 0; i < 300; i++) await zk.create(`${root}/r${String(i).padStart(4, '0')}`, { id: `r${String(i).padStart(4, '0')}`, created_at: i });
      await zk.create(`${root}/bad`, { id: 'bad' });
      const idx = new RecordIndex<Keyed>(zk, root, (raw) => (typeof (raw as Keyed).created_at === 'number' ? (raw as Keyed) : null));
      await idx.start();
      expect(idx.size).toBe(300);
      const reads = idx.reads;
      let marker: string | undefined;
      const seen: string[] = [];
      do {
        await idx.sync();
        const p = idx.page({ limit: 50, marker, match: () => true });
        seen.push(...p.items.map((x) => x.id));
        marker = p.next ?? undefined;
      } while (marker);
      expect(seen.length).toBe(300);
      expect(idx.reads).toBe(reads);
      // A change costs one read.
      await zk.set(`${root}/r0005`, { id: 'r0005', created_at: 5, touched: true }, -1);
      await idx.sync();
      expect(idx.reads).toBe(reads + 1);
      expect(idx.get('r0005')).toMatchObject({ touched: true });
      await zk.remove(`${root}/r0006`);
      await idx.sync();
      expect(idx.get('r0006')).toBeUndefined();
      expect(idx.page({ limit: 1000, match: () => true }).items.length).toBe(299);
      await idx.stop();
    } finally {
      await zk.removeTree(root);
    }
  });

  it('changes to a record within the settle window cost one read; a list call does not wait for the window', async () => {
    const root = uniqueRoot('index-settle');
    await zk.mkdirp(root);
    type N = Keyed & { n: number };
    const indexes: RecordIndex<N>[] = [];
    try {
      await zk.create(`${root}/a`, { id: 'a', created_at: 1, n: 0 });
      const idx = new RecordIndex<N>(zk, root, (raw) => raw as N, undefined, 1000);
      indexes.push(idx);
      await idx.start();
      const reads = idx.reads;
      // Five changes sent together (one session's writes land in order): one read, of the last.
      await Promise.all([1, 2, 3, 4, 5].map((n) => zk.set(`${root}/a`, { id: 'a', created_at: 1, n }, -1)));
      await waitFor(() => idx.get('a')?.n === 5, { what: 'the last change read', timeoutMs: 5000, intervalMs: 20 });
      expect(idx.reads).toBe(reads + 1);

      // A window longer than the test's timeout: a list call that waited for it would never answer.
      const slow = new RecordIndex<N>(zk, root, (raw) => raw as N, undefined, 600_000);
      indexes.push(slow);
      await slow.start();
      await zk.set(`${root}/a`, { id: 'a', created_at: 1, n: 6 }, -1);
      await slow.sync();
      expect(slow.get('a')?.n).toBe(6);
    } finally {
      for (const i of indexes) await i.stop();
      await zk.removeTree(root);
    }
  });

  // Invariant: a record deleted while the index reads it is gone from the index once the next
  // list call has synced, however the replies and the list call's continuation interleave.
  it('a deletion noticed while its record is being read is not lost to a list call running in between', async () => {
    const root = uniqueRoot('index-race');
    const own = await Zk.connect(zkConnect());
    await own.mkdirp(root);
    type N = Keyed & { n: number };
    // A window longer than the test: only sync() reads what changed, so each read starts where the test says.
    const idx = new RecordIndex<N>(own, root, (raw) => raw as N, undefined, 600_000);
    // Right behind the index's read of a record, on the same session: its deletion and the next
    // list call's sync. The server answers in that order (the record as it was, the deletion's
    // notification, the deletion, the sync's round trip), so the next sync asks for a read of the
    // deleted record just as the first read's loop ends.
    const getRaw = own.getRaw.bind(own);
    const racing: Promise<unknown>[] = [];
    const raced = new Set<string>();
    own.getRaw = (path: string) => {
      const got = getRaw(path);
      if (path.startsWith(`${root}/`) && !raced.has(path)) {
        raced.add(path);
        racing.push(own.remove(path), idx.sync());
      }
      return got;
    };
    try {
      await idx.start();
      // Each round loses the deletion only when the replies come in one read of the socket (a few
      // in a hundred did before the fix): 300 rounds.
      for (let i = 0; i < 300; i++) {
        await own.create(`${root}/r${i}`, { id: `r${i}`, created_at: i, n: 0 });
        await idx.sync(); // reads the creation, which starts the race
        await Promise.all(racing.splice(0));
      }
      await idx.sync();
      expect(raced.size).toBe(300);
      expect(await own.children(root)).toEqual([]);
      expect(idx.page({ limit: 1000, match: () => true }).items.map((x) => x.id)).toEqual([]);
    } finally {
      await idx.stop();
      await own.removeTree(root);
      await own.close();
    }
  });

  it('markers carry the sort key only', () => {
    const k = { id: 'abc-1', created_at: 42 };
    expect(decodeMarker(encodeMarker(k))).toEqual(k);
  });
});
