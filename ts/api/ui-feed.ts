// The visualizer's server side: ZooKeeper watches shared by every open page (one watch per znode,
// however many viewers), server-sent-event streams fed by them, and the work-unit list (a scan of
// /work-units, newest first, fine at UI scale). A watch is dropped when its last viewer leaves.
import type { ServerResponse } from 'node:http';
import type { Zk, Versioned } from '../zk/client.js';
import type { Paths } from '../zk/paths.js';
import type { Logger } from '../common/log.js';
import type { ServerId, WorkUnitId } from '../common/ids.js';
import { TERMINAL, type ServerRecord, type WorkUnitRecord } from '../common/model.js';
import { presentServer, presentWorkUnit } from './store.js';
import { ALL, canSee, type Scope } from '../auth/policy.js';

type Listener<T> = (v: Versioned<T> | null) => void;

interface Entry {
  path: string;
  listeners: Set<Listener<unknown>>;
  /** A ZooKeeper watch is registered and has not fired yet. */
  armed: boolean;
  reading: boolean;
  /** Read again when the current read ends (the watch fired during it). */
  again: boolean;
  /** The value as last read; undefined while nobody listens. */
  last: Versioned<unknown> | null | undefined;
  /** True when the value can no longer change (a finished unit): it is not watched. */
  settled: (v: Versioned<unknown> | null) => boolean;
  retry: NodeJS.Timeout | undefined;
  /** One function per entry, so the client never holds two registrations of this path. */
  watcher: () => void;
}

export interface HubStats {
  /** Znodes with an entry: watched now, or read for a viewer. */
  paths: number;
  listeners: number;
  /** ZooKeeper watches registered and not yet fired. */
  armed: number;
}

/**
 * One reader per znode, fanned out to every listener. ZooKeeper (before 3.6) cannot cancel a watch,
 * so the hub never registers a second one on a path whose first has not fired: a viewer leaving
 * leaves at most one pending watch per path, which is forgotten when it fires. A value for which
 * `settled` holds (a finished unit, a deleted node) is read without a watch at all.
 */
export class WatchHub {
  private readonly entries = new Map<string, Entry>();
  private closed = false;

  constructor(
    private readonly zk: Zk,
    private readonly log?: Logger,
  ) {}

  subscribe<T>(path: string, listener: Listener<T>, settled: (v: Versioned<T> | null) => boolean = () => false): () => void {
    if (this.closed) throw new Error('watch hub is closed');
    let e = this.entries.get(path);
    if (!e) {
      const entry: Entry = {
        path,
        listeners: new Set(),
        armed: false,
        reading: false,
        again: false,
        last: undefined,
        settled: settled as Entry['settled'],
        retry: undefined,
        watcher: () => {
          entry.armed = false;
          if (entry.listeners.size > 0 && !this.closed) void this.refresh(entry);
          else this.forget(entry);
        },
      };
      this.entries.set(path, entry);
      e = entry;
    }
    const l = listener as Listener<unknown>;
    e.listeners.add(l);
    const entry = e;
    if (entry.reading) {
      // The read in progress delivers to every listener present when it ends, this one included.
    } else if (entry.last !== undefined) {
      const last = entry.last;
      queueMicrotask(() => {
        if (entry.listeners.has(l)) this.deliver(l, last);
      });
    } else {
      void this.refresh(entry);
    }
    return () => {
      entry.listeners.delete(l);
      if (entry.listeners.size === 0) {
        clearTimeout(entry.retry);
        entry.retry = undefined;
        entry.last = undefined;
        this.forget(entry);
      }
    };
  }

  /** Drops an entry nobody listens to, unless its watch is still pending (it is reused if a viewer comes back). */
  private forget(e: Entry): void {
    if (e.listeners.size === 0 && !e.armed && !e.reading && this.entries.get(e.path) === e) this.entries.delete(e.path);
  }

  private deliver(l: Listener<unknown>, v: Versioned<unknown> | null): void {
    try {
      l(v);
    } catch (err) {
      this.log?.error('ui feed listener failed', { err });
    }
  }

  private async refresh(e: Entry): Promise<void> {
    if (e.reading) {
      e.again = true;
      return;
    }
    e.reading = true;
    try {
      do {
        e.again = false;
        let v: Versioned<unknown> | null;
        if (e.armed) {
          v = await this.zk.get(e.path);
        } else {
          v = await this.zk.get(e.path);
          if (!e.settled(v) && e.listeners.size > 0) {
            // Still changing: read again with the watch, so no change between the reads is missed.
            // Armed before the call, not after: a change can arrive in the same packet as the
            // reply, and the client runs the watch before this function resumes. Marking it
            // armed afterwards would overwrite that firing, and the path would never be
            // watched again (the page freezes on a stale step).
            e.armed = true;
            try {
              v = await this.zk.get(e.path, e.watcher);
              if (v === null) {
                if (await this.zk.exists(e.path, e.watcher)) e.again = true; // created between the two calls
              }
            } catch (err) {
              e.armed = false; // a failed call registered no watch
              throw err;
            }
          }
        }
        if (e.listeners.size === 0) break;
        e.last = v;
        if (!e.again) for (const l of [...e.listeners]) this.deliver(l, v);
      } while (e.again && e.listeners.size > 0 && !this.closed);
    } catch (err) {
      this.log?.warn('ui feed read failed; retrying', { path: e.path, err });
      if (e.listeners.size > 0 && !this.closed) {
        clearTimeout(e.retry);
        e.retry = setTimeout(() => {
          e.retry = undefined;
          void this.refresh(e);
        }, 1000);
        e.retry.unref();
      }
    } finally {
      e.reading = false;
      if (e.listeners.size === 0) {
        e.last = undefined;
        this.forget(e);
      }
    }
  }

  stats(): HubStats {
    let listeners = 0;
    let armed = 0;
    for (const e of this.entries.values()) {
      listeners += e.listeners.size;
      if (e.armed) armed++;
    }
    return { paths: this.entries.size, listeners, armed };
  }

  close(): void {
    this.closed = true;
    for (const e of this.entries.values()) {
      clearTimeout(e.retry);
      e.listeners.clear();
    }
    this.entries.clear();
  }
}

// ---- server-sent events ------------------------------------------------------------------------

export interface EventStream {
  send(event: string, data: unknown): void;
  /** Ends the response; the stream's cleanups run once. */
  end(): void;
  onClose(fn: () => void): void;
  readonly closed: boolean;
}

const HEARTBEAT_MS = 15_000;

/** Opens a text/event-stream on a raw response; the caller has taken the reply over from fastify. */
export function openEventStream(res: ServerResponse, streams: Set<EventStream>): EventStream {
  res.writeHead(200, {
    'content-type': 'text/event-stream; charset=utf-8',
    'cache-control': 'no-cache, no-transform',
    connection: 'keep-alive',
    'x-accel-buffering': 'no',
  });
  // Tells EventSource how long to wait before reconnecting after a dropped connection.
  res.write('retry: 2000\n\n');
  const cleanups: Array<() => void> = [];
  let closed = false;
  const heartbeat = setInterval(() => res.write(': keep-alive\n\n'), HEARTBEAT_MS);
  heartbeat.unref();
  const close = (): void => {
    if (closed) return;
    closed = true;
    clearInterval(heartbeat);
    streams.delete(stream);
    for (const fn of cleanups.splice(0)) {
      try {
        fn();
      } catch {
        // a cleanup must not stop the others
      }
    }
  };
  const stream: EventStream = {
    send(event, data) {
      if (closed) return;
      // JSON.stringify never emits a raw newline, so one data line carries the whole payload.
      res.write(`event: ${event}\ndata: ${JSON.stringify(data)}\n\n`);
    },
    end() {
      close();
      if (!res.writableEnded) res.end();
    },
    onClose(fn) {
      if (closed) fn();
      else cleanups.push(fn);
    },
    get closed() {
      return closed;
    },
  };
  res.on('close', close);
  streams.add(stream);
  return stream;
}

// ---- what the pages are fed ----------------------------------------------------------------------

const iso = (ms: number | null | undefined): string | null => (ms ? new Date(ms).toISOString() : null);

/** The API's work-unit JSON plus updated_at, which the timeline needs to start the running step. */
export const unitView = (w: WorkUnitRecord) => ({ ...presentWorkUnit(w), updated_at: iso(w.updated_at) });

const unitSettled = (v: Versioned<WorkUnitRecord> | null): boolean => v === null || (!!v.value && TERMINAL.has(v.value.state));

/**
 * Streams one work unit: `unit` on every change (the first at once), then `end` once it has
 * finished, after which the server closes the stream (the page closes its EventSource on `end`).
 */
export function streamWorkUnit(hub: WatchHub, paths: Paths, id: WorkUnitId, s: EventStream): void {
  const stop = hub.subscribe<WorkUnitRecord>(
    paths.workUnit(id),
    (v) => {
      if (!v?.value) {
        s.send('gone', { id, server_time: Date.now() });
        s.end();
        return;
      }
      s.send('unit', { unit: unitView(v.value), server_time: Date.now() });
      if (TERMINAL.has(v.value.state)) {
        s.send('end', { state: v.value.state });
        s.end();
      }
    },
    unitSettled,
  );
  s.onClose(stop);
}

/**
 * Streams a server: `server` on every change of its record, and `unit` for each unit acting on it.
 * A unit is followed until it finishes, even after the server's `task` moved on: the last step's
 * transaction clears the task and finishes the unit at once, and the page must see both.
 */
export function streamServer(hub: WatchHub, paths: Paths, id: ServerId, s: EventStream): void {
  const units = new Map<WorkUnitId, () => void>();
  const follow = (wu: WorkUnitId): void => {
    if (units.has(wu)) return;
    const stop = hub.subscribe<WorkUnitRecord>(
      paths.workUnit(wu),
      (v) => {
        if (v?.value) s.send('unit', { unit: unitView(v.value), server_time: Date.now() });
        if (unitSettled(v)) {
          units.get(wu)?.();
          units.delete(wu);
        }
      },
      unitSettled,
    );
    units.set(wu, stop);
  };
  const stop = hub.subscribe<ServerRecord>(
    paths.server(id),
    (v) => {
      if (!v?.value) {
        s.send('gone', { id, server_time: Date.now() });
        s.end();
        return;
      }
      s.send('server', { server: presentServer(v.value), server_time: Date.now() });
      if (v.value.task) follow(v.value.task);
    },
    (v) => v === null,
  );
  s.onClose(() => {
    stop();
    for (const unfollow of units.values()) unfollow();
    units.clear();
  });
}

// ---- the work-unit list ----------------------------------------------------------------------------

export interface UnitQuery {
  /** Whose units: a member or reader sees its project's only. Default: all. */
  scope?: Scope;
  state?: string;
  kind?: string;
  server_id?: string;
  limit: number;
}

const READ_BATCH = 64;
const SETTLED_CACHE_MAX = 50_000;

/**
 * Lists work units newest first by reading every record under /work-units. Finished units never
 * change, so they are cached; only the ones still moving are read again on the next scan.
 */
export class WorkUnitScanner {
  private readonly settled = new Map<string, WorkUnitRecord>();

  constructor(
    private readonly zk: Zk,
    private readonly paths: Paths,
  ) {}

  async list(q: UnitQuery): Promise<{ units: ReturnType<typeof unitView>[]; matched: number; scanned: number }> {
    const ids = (await this.zk.children(this.paths.workUnits)) ?? [];
    const present = new Set(ids);
    for (const id of this.settled.keys()) if (!present.has(id)) this.settled.delete(id);
    const records: WorkUnitRecord[] = [];
    const toRead: string[] = [];
    for (const id of ids) {
      const cached = this.settled.get(id);
      if (cached) records.push(cached);
      else toRead.push(id);
    }
    for (let i = 0; i < toRead.length; i += READ_BATCH) {
      const batch = await Promise.all(
        toRead.slice(i, i + READ_BATCH).map((id) => this.zk.get<WorkUnitRecord>(this.paths.workUnit(id as WorkUnitId)).catch(() => null)),
      );
      for (const r of batch) {
        const w = r?.value;
        if (!w || typeof w !== 'object' || typeof w.id !== 'string') continue; // malformed or gone: not listable
        records.push(w);
        if (TERMINAL.has(w.state) && this.settled.size < SETTLED_CACHE_MAX) this.settled.set(w.id, w);
      }
    }
    const scope = q.scope ?? ALL;
    const matching = records.filter(
      (w) => canSee(scope, (w as { project?: string }).project) && (!q.state || w.state === q.state) && (!q.kind || w.kind === q.kind) && (!q.server_id || w.server_id === q.server_id),
    );
    matching.sort((a, b) => (b.created_at ?? 0) - (a.created_at ?? 0) || b.id.localeCompare(a.id));
    return { units: matching.slice(0, q.limit).map(unitView), matched: matching.length, scanned: ids.length };
  }
}
