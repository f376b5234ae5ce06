// The user CLI's side of the REST API: where the API is, calls with the caller's token, and a work
// unit followed to its end through its event stream (GET /v1/work-units/:id/events), falling back
// to reading the unit when the stream is refused or drops.
import { createReadStream, statSync } from 'node:fs';
import { Readable } from 'node:stream';
import { call, CliError, defaultApi } from '../auth/cli.js';
import { defaultToken, tokenFile } from '../auth/local.js';
import { TERMINAL } from '../common/vocabulary.js';
import type { UnitView } from './format.js';

/** The API: --url (or --api), else $QUARK_URL, else $QUARK_API, else .quark/cluster.json, else :8080. */
export function apiUrl(flag?: string): string {
  return (flag ?? process.env.QUARK_URL ?? defaultApi()).replace(/\/+$/, '');
}

function token(): string {
  const t = defaultToken();
  if (!t) throw new CliError(`no token: set QUARK_TOKEN or put one in ${tokenFile()} (quark up writes one)`);
  return t;
}

export { call };

/** A call whose answer is not JSON (the console's text), or whose headers matter (a list's paging). */
export async function raw(api: string, method: string, path: string, init: { body?: NonNullable<RequestInit["body"]>; headers?: Record<string, string>; duplex?: 'half' } = {}): Promise<Response> {
  let res: Response;
  try {
    res = await fetch(`${api}${path}`, { method, ...init, headers: { authorization: `Bearer ${token()}`, ...init.headers } } as RequestInit);
  } catch (e) {
    throw new CliError(`${method} ${path}: cannot reach the API at ${api} (${(e as Error & { cause?: Error }).cause?.message ?? (e as Error).message}); is a cluster running (quark status)?`);
  }
  if (!res.ok) {
    const text = await res.text();
    let e: { code?: string; message?: string } | undefined;
    try {
      e = (JSON.parse(text) as { error?: { code?: string; message?: string } }).error;
    } catch {
      /* not JSON: shown as it is */
    }
    throw new CliError(`${method} ${path}: ${res.status} ${e?.code ?? ''} ${e?.message ?? text}`.trim());
  }
  return res;
}

/** One JSON call; unreachable APIs and refusals become a CliError naming status and code. */
export async function json<T>(api: string, method: string, path: string, body?: unknown, headers: Record<string, string> = {}): Promise<T> {
  const res = await raw(api, method, path, {
    headers: { ...(body !== undefined ? { 'content-type': 'application/json' } : {}), ...headers },
    ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
  });
  const text = await res.text();
  return (text ? JSON.parse(text) : undefined) as T;
}

/**
 * Every page of a list. GET /v1/servers may page (`limit` and an opaque `marker`, the next marker in
 * the `x-next-marker` header); an API that does not page answers everything at once and no header.
 */
export async function listAll<T>(api: string, path: string, query: Record<string, string | undefined> = {}): Promise<T[]> {
  const out: T[] = [];
  let marker: string | undefined;
  for (let page = 0; page < 100_000; page++) {
    const q = new URLSearchParams(Object.entries({ ...query, ...(marker ? { marker } : {}) }).filter((e): e is [string, string] => e[1] !== undefined));
    const res = await raw(api, 'GET', `${path}${q.size > 0 ? `?${q}` : ''}`);
    out.push(...((await res.json()) as T[]));
    const next = res.headers.get('x-next-marker');
    if (!next || next === marker) return out;
    marker = next;
  }
  return out;
}

/** Uploads a file as the body, streamed (an image may be gigabytes). */
export async function upload<T>(api: string, path: string, file: string): Promise<T> {
  const size = statSync(file).size;
  const res = await raw(api, 'POST', path, {
    body: Readable.toWeb(createReadStream(file)) as unknown as NonNullable<RequestInit["body"]>,
    headers: { 'content-type': 'application/octet-stream', 'content-length': String(size) },
    duplex: 'half',
  });
  return (await res.json()) as T;
}

// ---- a work unit followed to its end ----------------------------------------------------------------

export type Outcome = 'SUCCEEDED' | 'FAILED' | 'timeout' | 'gone';

export interface FollowOptions {
  timeoutMs: number;
  /** Every new view of the unit, with the server's clock at that moment. */
  onUnit: (u: UnitView, serverNow: number) => void;
  /** How often to read the unit when no stream can be had. */
  pollMs?: number;
}

interface SseEvent {
  event: string;
  data: string;
}

/** Server-sent events from a fetch body; comments and retry lines are skipped. */
export async function* sseEvents(body: ReadableStream<Uint8Array>): AsyncGenerator<SseEvent> {
  const decoder = new TextDecoder();
  let buf = '';
  for await (const chunk of body as unknown as AsyncIterable<Uint8Array>) {
    buf += decoder.decode(chunk, { stream: true });
    let at: number;
    while ((at = buf.indexOf('\n\n')) >= 0) {
      const block = buf.slice(0, at);
      buf = buf.slice(at + 2);
      let event = 'message';
      const data: string[] = [];
      for (const line of block.split('\n')) {
        if (line.startsWith('event:')) event = line.slice(6).trim();
        else if (line.startsWith('data:')) data.push(line.slice(5).replace(/^ /, ''));
      }
      if (data.length > 0) yield { event, data: data.join('\n') };
    }
  }
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * Follows a work unit until it ends or `timeoutMs` passes. The event stream carries every change;
 * if it is refused (too many streams) or drops (the API restarted), the unit is read again and
 * the stream reopened, so a wait survives an API restart.
 */
export async function followUnit(api: string, id: string, o: FollowOptions): Promise<{ outcome: Outcome; unit: UnitView | undefined }> {
  const deadline = Date.now() + o.timeoutMs;
  let last: UnitView | undefined;
  const seen = (u: UnitView, serverNow: number): Outcome | undefined => {
    last = u;
    o.onUnit(u, serverNow);
    return TERMINAL.has(u.state as 'SUCCEEDED') ? (u.state as Outcome) : undefined;
  };
  const readOnce = async (): Promise<Outcome | undefined> => {
    try {
      return seen(await json<UnitView>(api, 'GET', `/v1/work-units/${id}`), Date.now());
    } catch (e) {
      if (e instanceof CliError && / 404 /.test(e.message) && last) return 'gone';
      throw e;
    }
  };
  let streamRefused = false;
  while (Date.now() < deadline) {
    if (!streamRefused) {
      const ac = new AbortController();
      const timer = setTimeout(() => ac.abort(), Math.max(0, deadline - Date.now()));
      try {
        const res = await fetch(`${api}/v1/work-units/${id}/events`, { headers: { authorization: `Bearer ${token()}` }, signal: ac.signal });
        if (res.status === 404) {
          await res.body?.cancel();
          if (last) return { outcome: 'gone', unit: last };
          throw new CliError(`GET /v1/work-units/${id}/events: 404 NOT_FOUND work unit ${id} does not exist`);
        }
        if (res.status === 401 || res.status === 403) {
          const text = await res.text();
          throw new CliError(`GET /v1/work-units/${id}/events: ${res.status} ${text}`);
        }
        if (!res.ok || !res.body) {
          // Refused for now (429 too many streams, 503 overloaded): read the unit instead.
          await res.body?.cancel();
          streamRefused = true;
        } else {
          for await (const ev of sseEvents(res.body)) {
            const msg = JSON.parse(ev.data) as { unit?: UnitView; server_time?: number; state?: string };
            if (ev.event === 'unit' && msg.unit) {
              const end = seen(msg.unit, msg.server_time ?? Date.now());
              if (end) {
                ac.abort();
                return { outcome: end, unit: last };
              }
            } else if (ev.event === 'gone') {
              ac.abort();
              return { outcome: 'gone', unit: last };
            } else if (ev.event === 'end') {
              ac.abort();
              break;
            }
          }
        }
      } catch (e) {
        if (e instanceof CliError) throw e;
        // The stream dropped or could not open: the unit is read below, then the stream reopened.
      } finally {
        clearTimeout(timer);
      }
    }
    if (Date.now() >= deadline) break;
    let end: Outcome | undefined;
    try {
      end = await readOnce();
    } catch (e) {
      // An API that is restarting: keep trying until the deadline.
      if (!(e instanceof CliError) || !/cannot reach the API|: 50[23] /.test(e.message)) throw e;
    }
    if (end) return { outcome: end, unit: last };
    await sleep(Math.min(streamRefused ? (o.pollMs ?? 500) : 1000, Math.max(0, deadline - Date.now())));
  }
  return { outcome: 'timeout', unit: last };
}
