// The REST calls the pages make, all to the origin that served them, with the token the visitor
// gave once (kept in this origin's localStorage). Event streams cannot send a header: they carry a
// short-lived stream ticket the token buys (GET /v1/stream-ticket), never the token itself, so the
// token stays out of URLs, server logs and the browser's history.
const TOKEN_KEY = 'quark-token';

export const storedToken = (): string | null => localStorage.getItem(TOKEN_KEY);
export const saveToken = (t: string): void => localStorage.setItem(TOKEN_KEY, t.trim());
export const forgetToken = (): void => localStorage.removeItem(TOKEN_KEY);
/** The token's header, for a call whose answer is not JSON (a guest's console). */
export const authHeader = (token = storedToken()): Record<string, string> => (token ? { authorization: `Bearer ${token}` } : {});

export class ApiFailure extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
  ) {
    super(message);
  }
}

export async function getJson<T>(path: string, token = storedToken()): Promise<{ body: T; headers: Headers }> {
  const res = await fetch(path, { headers: { accept: 'application/json', ...(token ? { authorization: `Bearer ${token}` } : {}) } });
  const text = await res.text();
  let body: unknown;
  try {
    body = text ? JSON.parse(text) : undefined;
  } catch {
    throw new ApiFailure(res.status, 'BAD_RESPONSE', `${path} answered ${res.status} with something that is not JSON`);
  }
  if (!res.ok) {
    const e = (body as { error?: { code?: string; message?: string } } | undefined)?.error;
    // The token is no good (expired, revoked): forget it, so the next load asks again.
    if (res.status === 401) forgetToken();
    throw new ApiFailure(res.status, e?.code ?? 'HTTP_ERROR', e?.message ?? `${path} answered ${res.status}`);
  }
  return { body: body as T, headers: res.headers };
}

export interface ComputeView {
  id: string;
  alive: boolean;
  zone: string;
  labels: string[];
  capacity: Resources;
  free: Resources;
  managing: number;
  active_tasks: number;
  next_tasks: number;
}

export interface Resources {
  vcpus: number;
  ram_mb: number;
  disk_gb: number;
  bandwidth_mbps: number;
}

export interface OrcView {
  id: string;
  pid: number;
  host: string;
  since: number;
  shards: number[];
}

/** A message from one of the feed's event streams, with the server's clock at sending. */
export interface FeedMessage<T> {
  data: T;
  serverTime: number;
}

export function parseFeed<T>(ev: MessageEvent<string>): T & { server_time?: number } {
  return JSON.parse(ev.data) as T & { server_time?: number };
}

/** The listeners a page adds, kept so each EventSource the feed opens (a fresh ticket each) gets them all. */
export class FeedSource {
  private readonly listeners: Array<[string, EventListener]> = [];
  private current: EventSource | undefined;

  addEventListener(type: string, fn: EventListener): void {
    this.listeners.push([type, fn]);
    this.current?.addEventListener(type, fn);
  }

  /** @internal the feed switches to a new EventSource */
  attach(es: EventSource): void {
    this.current = es;
    for (const [type, fn] of this.listeners) es.addEventListener(type, fn);
  }
}

/**
 * A page's event stream and its live badge (`data-live`): live once open, reconnecting while the
 * browser retries a dropped stream, closed once it gives up or the page closes it. A ticket lasts
 * minutes: when the browser's own retry is refused (an expired ticket), a new one is fetched.
 */
export class LiveFeed {
  private source: EventSource | undefined;
  private closed = false;

  constructor(private readonly badge: HTMLElement) {}

  set(mode: string, text: string): void {
    this.badge.setAttribute('data-live', mode);
    this.badge.textContent = text;
  }

  open(url: string): FeedSource {
    const feed = new FeedSource();
    void this.connect(url, feed, 0);
    return feed;
  }

  private async connect(url: string, feed: FeedSource, failures: number): Promise<void> {
    let ticket: string;
    try {
      ticket = (await getJson<{ ticket: string }>('/v1/stream-ticket')).body.ticket;
    } catch (e) {
      if (!this.closed) this.set('closed', `disconnected: ${e instanceof ApiFailure ? e.code : 'no stream ticket'}; reload to retry`);
      return;
    }
    if (this.closed) return;
    const source = new EventSource(`${url}${url.includes('?') ? '&' : '?'}ticket=${encodeURIComponent(ticket)}`);
    this.source = source;
    let opened = false;
    source.addEventListener('open', () => {
      opened = true;
      this.set('live', 'live');
    });
    source.addEventListener('error', () => {
      if (source !== this.source) return;
      if (source.readyState === EventSource.CLOSED) {
        source.close();
        this.source = undefined;
        const next = opened ? 0 : failures + 1;
        if (this.closed || next >= 3) {
          this.set('closed', 'disconnected: reload to retry');
          return;
        }
        this.set('reconnecting', 'reconnecting…');
        setTimeout(() => void this.connect(url, feed, next), 1000);
      } else {
        this.set('reconnecting', 'reconnecting…');
      }
    });
    feed.attach(source);
  }

  close(): void {
    this.closed = true;
    this.source?.close();
    this.source = undefined;
  }
}
