// The visualizer's server side: server-sent-event streams fed by one fan-out watch shared by every
// open page (ts/zk/recipes/fan-out.ts: one watch per znode, however many viewers). The work-unit
// list is ts/api/listing.ts's.
import type { ServerResponse } from 'node:http';
import type { Versioned } from '../zk/client.js';
import type { FanOutWatch } from '../zk/recipes/fan-out.js';
import type { Paths } from '../zk/paths.js';
import type { ServerId, WorkUnitId } from '../common/ids.js';
import { TERMINAL, type ServerRecord, type WorkUnitRecord } from '../common/model.js';
import { presentServer, presentWorkUnit } from './store.js';
import { checkServer, checkWorkUnit } from '../lifecycle/records.js';

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
export function streamWorkUnit(hub: FanOutWatch, paths: Paths, id: WorkUnitId, s: EventStream): void {
  const stop = hub.subscribe<WorkUnitRecord>(
    paths.workUnit(id),
    (v) => {
      if (!v?.value) {
        s.send('gone', { id, server_time: Date.now() });
        s.end();
        return;
      }
      // A malformed record is not shown (its orc fails it, and that change is streamed).
      if (!checkWorkUnit(v.value).ok) return;
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
export function streamServer(hub: FanOutWatch, paths: Paths, id: ServerId, s: EventStream): void {
  const units = new Map<WorkUnitId, () => void>();
  const follow = (wu: WorkUnitId): void => {
    if (units.has(wu)) return;
    const stop = hub.subscribe<WorkUnitRecord>(
      paths.workUnit(wu),
      (v) => {
        if (v?.value && checkWorkUnit(v.value).ok) s.send('unit', { unit: unitView(v.value), server_time: Date.now() });
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
      if (!checkServer(v.value).ok) return;
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
