// What GET /v1/servers and GET /v1/work-units answer from: an in-memory index of each directory's
// records, kept by one persistent recursive watch per directory (ZooKeeper 3.6+). A change costs
// one notification and one read of that record; a list call costs one round trip (so that it sees
// every change committed before it, its own writes included) and no reads of records. Entries are
// kept sorted by (created_at, id), which never changes for a record, so a page is a binary search
// for the marker and a walk to the next `limit` matches.
//
// Paging: `limit` and an opaque `marker` (the sort key of the last item returned, so it stays
// valid when that item is deleted meanwhile); the next page's marker comes back in X-Next-Marker
// (and a Link rel="next" header), absent on the last page.
import type { ConnectionState, Watcher, Zk } from '../zk/client.js';
import type { Paths } from '../zk/paths.js';
import type { Logger } from '../common/log.js';
import type { ServerRecord } from '../common/model.js';
import { checkServer, checkWorkUnit, storedOf, type Checked } from '../lifecycle/records.js';
import type { DeletedServerRecord } from '../lifecycle/retention.js';
import { canSee, type Scope } from '../auth/policy.js';
import { ApiError } from './errors.js';
import { presentServer } from './store.js';
import { unitView } from './ui-feed.js';

export interface Keyed {
  id: string;
  created_at: number;
}

export interface Page<V> {
  items: V[];
  /** The marker of the next page, or null on the last. */
  next: string | null;
}

/** A page's position as a client carries it: base64url of "<created_at>.<id>". */
export function encodeMarker(k: Keyed): string {
  return Buffer.from(`${k.created_at}.${k.id}`, 'utf8').toString('base64url');
}

export function decodeMarker(m: string): Keyed {
  const s = /^[A-Za-z0-9_-]{1,400}$/.test(m) ? Buffer.from(m, 'base64url').toString('utf8') : '';
  const dot = s.indexOf('.');
  const at = Number(s.slice(0, dot));
  const id = s.slice(dot + 1);
  if (dot < 1 || !Number.isSafeInteger(at) || at < 0 || !/^[A-Za-z0-9._-]{1,128}$/.test(id)) {
    throw new ApiError('BAD_REQUEST', 'marker is not one this API gave out (pass X-Next-Marker back as it came)');
  }
  return { created_at: at, id };
}

const before = (a: Keyed, b: Keyed): boolean => a.created_at < b.created_at || (a.created_at === b.created_at && a.id < b.id);

/** How many record reads one index keeps in flight at most (a full load reads every record). */
const MAX_READS = 128;

/**
 * How long a changed record waits before it is read. A boot changes its unit's record about eight
 * times and its server's three or four within a few hundred milliseconds (accepted, claimed, each
 * step, the end); changes that come within this window cost one read, not one each. A list call
 * does not wait for it: sync() reads what is waiting at once.
 */
export const SETTLE_MS = 50;

/**
 * The records of one directory whose children are leaves, as `decode` makes them (null: left out,
 * e.g. malformed, which it logs). Start it, then `sync()` before each answer.
 */
export class RecordIndex<V extends Keyed> {
  private readonly byId = new Map<string, V>();
  /** Sorted by (created_at, id); a removed entry leaves a hole (null) until the next compaction. */
  private order: Array<Keyed | null> = [];
  private holes = 0;
  private readonly reading = new Map<string, { again: boolean; done: Promise<void> }>();
  private readsInFlight = 0;
  private readonly waiting: Array<() => void> = [];
  private watch: { stop(): Promise<void> } | undefined;
  private stopped = false;
  private readonly prefix: string;
  /** Records changed and not read yet: read together when the settle window ends, or at a sync(). */
  private readonly settling = new Set<string>();
  private settleTimer: NodeJS.Timeout | undefined;
  /** Reads made since start (the tests check that a list call reads nothing). */
  reads = 0;

  constructor(
    private readonly zk: Zk,
    readonly dir: string,
    private readonly decode: (raw: unknown, id: string) => V | null,
    private readonly log?: Logger,
    private readonly settleMs = SETTLE_MS,
  ) {
    this.prefix = `${dir}/`;
  }

  get size(): number {
    return this.byId.size;
  }

  async start(): Promise<void> {
    this.watch = await this.zk.persistentWatch(this.dir, 'recursive', this.onEvent);
    this.zk.on('state', this.onState);
    await this.reload();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.settleTimer);
    this.settling.clear();
    this.zk.off('state', this.onState);
    await this.watch?.stop().catch(() => {});
  }

  /**
   * Waits until the index holds every change committed before this call: one round trip (the
   * server sends a session its notifications before any later reply), then the reads those
   * notifications started.
   */
  async sync(): Promise<void> {
    await this.zk.exists(this.dir);
    this.readSettling();
    // Only the reads under way now: under a steady stream of changes, waiting for none at all
    // would never end.
    await Promise.all([...this.reading.values()].map((r) => r.done));
  }

  get(id: string): V | undefined {
    return this.byId.get(id);
  }

  /**
   * Up to `limit` records that `match`, after `marker` (ascending) or before it (descending), and
   * the marker of the next page if more match. `total` also counts every match (a full walk).
   */
  page(q: { limit: number; marker?: string; descending?: boolean; match: (v: V) => boolean; total?: boolean }): Page<V> & { total?: number } {
    const from = q.marker === undefined ? null : decodeMarker(q.marker);
    const items: V[] = [];
    let more = false;
    const n = this.order.length;
    // The first position past the marker in the walk's direction.
    let i: number;
    if (q.descending) i = from ? this.lowerBound(from) - 1 : n - 1;
    else i = from ? this.upperBound(from) : 0;
    const step = q.descending ? -1 : 1;
    for (; i >= 0 && i < n; i += step) {
      const k = this.order[i];
      const v = k && this.byId.get(k.id);
      if (!v || !q.match(v)) continue;
      if (items.length === q.limit) {
        more = true;
        break;
      }
      items.push(v);
    }
    const out: Page<V> & { total?: number } = { items, next: more ? encodeMarker(items[items.length - 1]!) : null };
    if (q.total) {
      let total = 0;
      for (const v of this.byId.values()) if (q.match(v)) total++;
      out.total = total;
    }
    return out;
  }

  // ---- keeping it fed ----------------------------------------------------------------------------

  private readonly onEvent: Watcher = (ev) => {
    if (this.stopped || !ev.path.startsWith(this.prefix)) return;
    const id = ev.path.slice(this.prefix.length);
    if (id.includes('/')) return; // records are leaves; anything deeper is not one
    if (ev.type === 'deleted' && !this.reading.has(id)) {
      this.settling.delete(id);
      this.drop(id);
    } else if (ev.type === 'created' || ev.type === 'data' || ev.type === 'deleted') this.readSoon(id);
  };

  /** Reads a changed record once the settle window ends (at once with no window). */
  private readSoon(id: string): void {
    if (this.settleMs <= 0) return this.read(id);
    this.settling.add(id);
    this.settleTimer ??= setTimeout(() => this.readSettling(), this.settleMs);
  }

  private readSettling(): void {
    clearTimeout(this.settleTimer);
    this.settleTimer = undefined;
    if (this.stopped) return;
    const ids = [...this.settling];
    this.settling.clear();
    for (const id of ids) this.read(id);
  }

  /** After a reconnect, changes made while the connection was down were not notified: read everything again. */
  private readonly onState = (s: ConnectionState): void => {
    if (s === 'RECONNECTED' && !this.stopped) void this.reload().catch((err) => this.log?.warn('list index reload failed', { dir: this.dir, err }));
  };

  private async reload(): Promise<void> {
    const ids = (await this.zk.children(this.dir)) ?? [];
    const present = new Set(ids);
    for (const id of [...this.byId.keys()]) if (!present.has(id)) this.drop(id);
    for (const id of ids) this.read(id);
    await this.sync();
  }

  /** (Re)reads one record; a change while a read is under way reads it once more after. */
  private read(id: string): void {
    const cur = this.reading.get(id);
    if (cur) {
      cur.again = true;
      return;
    }
    const r = { again: true, done: Promise.resolve() };
    this.reading.set(id, r);
    r.done = (async () => {
      try {
        while (r.again && !this.stopped) {
          r.again = false;
          await this.slot();
          try {
            this.reads++;
            const got = await this.zk.getRaw(`${this.prefix}${id}`);
            this.apply(id, got);
          } catch (err) {
            this.log?.warn('list index could not read a record', { dir: this.dir, id, err });
          } finally {
            this.release();
          }
        }
      } finally {
        // In the same turn as the last check of `again`: a read asked for after it starts a loop
        // of its own. (Removed a turn later, as it was, a read asked for from another promise's
        // continuation in between, such as a list call's sync(), was taken as "once more" by a
        // loop that had ended: that change, a deletion among them, was never read, and the
        // record stayed listed; bench:churn saw 32 such after 200,000 cycles.)
        this.reading.delete(id);
      }
    })();
  }

  private apply(id: string, got: Awaited<ReturnType<Zk['getRaw']>>): void {
    const stored = storedOf(got, (raw): Checked<V> => {
      const v = this.decode(raw, id);
      return v ? { ok: true, value: v } : { ok: false, problem: 'left out' };
    });
    if (stored.state !== 'ok') {
      if (stored.state === 'corrupt' && stored.problem !== 'left out') this.log?.error('record is malformed; left out of the list', { dir: this.dir, id, problem: stored.problem });
      this.drop(id);
      return;
    }
    const v = stored.value;
    const prev = this.byId.get(id);
    this.byId.set(id, v);
    if (prev && prev.created_at === v.created_at) return;
    if (prev) this.unorder(prev);
    this.insert({ id, created_at: v.created_at });
  }

  private drop(id: string): void {
    const prev = this.byId.get(id);
    if (!prev) return;
    this.byId.delete(id);
    this.unorder(prev);
  }

  private insert(k: Keyed): void {
    const last = this.order[this.order.length - 1];
    // Records arrive in about the order they were made: nearly always an append.
    if (this.order.length === 0 || (last && before(last, k))) this.order.push(k);
    else this.order.splice(this.upperBound(k), 0, k);
  }

  private unorder(k: Keyed): void {
    const i = this.lowerBound(k);
    for (let j = i; j < this.order.length; j++) {
      const e = this.order[j];
      if (!e) continue;
      if (e.id === k.id && e.created_at === k.created_at) {
        this.order[j] = null;
        this.holes++;
        this.compact();
        return;
      }
      if (before(k, e)) return;
    }
  }

  /** Closes the holes once they are a good part of the array (each close is one pass). */
  private compact(): void {
    // Few holes keep the searches short (a hole is skipped by a scan); closing them costs one
    // pass over the array, paid once per order.length / 16 removals.
    if (this.holes < 64 || this.holes * 16 < this.order.length) return;
    this.order = this.order.filter((k) => k !== null);
    this.holes = 0;
  }

  /** First position whose key is not before `k` (holes skipped by looking at the nearest key). */
  private lowerBound(k: Keyed): number {
    let lo = 0;
    let hi = this.order.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      const e = this.keyNear(mid, hi);
      if (e && before(e, k)) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }

  /** First position whose key is after `k`. */
  private upperBound(k: Keyed): number {
    let lo = 0;
    let hi = this.order.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      const e = this.keyNear(mid, hi);
      if (e && !before(k, e)) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }

  /**
   * The key at `i`, or for a hole the next key after it (before `hi`); null if only holes follow.
   * A hole sorts like its next key, so the searches stay monotone.
   */
  private keyNear(i: number, hi: number): Keyed | null {
    for (let j = i; j < hi; j++) {
      const e = this.order[j];
      if (e) return e;
    }
    return null;
  }

  private slot(): Promise<void> {
    if (this.readsInFlight < MAX_READS) {
      this.readsInFlight++;
      return Promise.resolve();
    }
    return new Promise((resolve) => this.waiting.push(() => resolve()));
  }

  private release(): void {
    const next = this.waiting.shift();
    if (next) next();
    else this.readsInFlight--;
  }
}

// ---- the lists the API serves ----------------------------------------------------------------------

export interface ServerEntry extends Keyed {
  project: string | null;
  status: string;
  compute_id: string | null;
  name: string;
  view: ReturnType<typeof presentServer> | ReturnType<typeof presentDeleted>;
}

export interface UnitEntry extends Keyed {
  project: string | null;
  state: string;
  kind: string;
  compute_id: string | null;
  server_id: string;
  view: ReturnType<typeof unitView>;
}

export interface ServerQuery {
  status?: string;
  compute_id?: string;
  name_prefix?: string;
  limit: number;
  marker?: string;
}

export interface UnitQuery {
  state?: string;
  kind?: string;
  server_id?: string;
  compute_id?: string;
  limit: number;
  marker?: string;
}

const projectOf = (v: unknown): string | null => {
  const p = (v as { project?: unknown }).project;
  return typeof p === 'string' ? p : null;
};

export function presentDeleted(d: DeletedServerRecord) {
  return { ...presentServer({ ...d, status: 'DELETING' } as ServerRecord), status: 'DELETED' as const, task: null, deleted_at: new Date(d.deleted_at).toISOString() };
}

/** The three indexes: servers, deleted servers (kept for the deleted-retention), work units. */
export class Listings {
  readonly servers: RecordIndex<ServerEntry>;
  readonly deleted: RecordIndex<ServerEntry>;
  readonly units: RecordIndex<UnitEntry>;

  constructor(zk: Zk, paths: Paths, log?: Logger, settleMs = SETTLE_MS) {
    this.servers = new RecordIndex<ServerEntry>(
      zk,
      paths.servers,
      (raw) => {
        const c = checkServer(raw);
        if (!c.ok) return null;
        const s = c.value;
        return { id: s.id, created_at: s.created_at, project: projectOf(s), status: s.status, compute_id: s.compute_id, name: s.name, view: presentServer(s) };
      },
      log,
      settleMs,
    );
    this.deleted = new RecordIndex<ServerEntry>(
      zk,
      paths.deletedServers,
      (raw) => {
        // Checked as the server record it was (a deleted one keeps every field), plus when it went.
        const c = checkServer({ ...(raw as object), status: 'DELETING' });
        const at = (raw as { deleted_at?: unknown }).deleted_at;
        if (!c.ok || typeof at !== 'number') return null;
        const d = { ...(raw as DeletedServerRecord) };
        return { id: d.id, created_at: d.created_at, project: projectOf(d), status: 'DELETED', compute_id: d.compute_id, name: d.name, view: presentDeleted(d) };
      },
      log,
      settleMs,
    );
    this.units = new RecordIndex<UnitEntry>(
      zk,
      paths.workUnits,
      (raw) => {
        const c = checkWorkUnit(raw);
        if (!c.ok) return null;
        const w = c.value;
        return { id: w.id, created_at: w.created_at, project: projectOf(w), state: w.state, kind: w.kind, compute_id: w.compute_id, server_id: w.server_id, view: unitView(w) };
      },
      log,
      settleMs,
    );
  }

  async start(): Promise<void> {
    await Promise.all([this.servers.start(), this.deleted.start(), this.units.start()]);
  }

  async stop(): Promise<void> {
    await Promise.all([this.servers.stop(), this.deleted.stop(), this.units.stop()]);
  }

  /** Servers, oldest first; status DELETED lists the deleted ones still kept. */
  async listServers(q: ServerQuery, scope: Scope): Promise<Page<ServerEntry['view']>> {
    const index = q.status === 'DELETED' ? this.deleted : this.servers;
    await index.sync();
    const p = index.page({
      limit: q.limit,
      marker: q.marker,
      match: (s) =>
        canSee(scope, s.project) &&
        (!q.status || s.status === q.status) &&
        (q.compute_id === undefined || s.compute_id === q.compute_id) &&
        (q.name_prefix === undefined || s.name.startsWith(q.name_prefix)),
    });
    return { items: p.items.map((s) => s.view), next: p.next };
  }

  /** Work units, newest first, with how many match in all. */
  async listUnits(q: UnitQuery, scope: Scope): Promise<Page<UnitEntry['view']> & { total: number; scanned: number }> {
    await this.units.sync();
    const p = this.units.page({
      limit: q.limit,
      marker: q.marker,
      descending: true,
      total: true,
      match: (w) =>
        canSee(scope, w.project) &&
        (!q.state || w.state === q.state) &&
        (!q.kind || w.kind === q.kind) &&
        (!q.server_id || w.server_id === q.server_id) &&
        (q.compute_id === undefined || w.compute_id === q.compute_id),
    });
    return { items: p.items.map((w) => w.view), next: p.next, total: p.total ?? 0, scanned: this.units.size };
  }
}
