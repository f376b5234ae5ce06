// The REST calls the pages make, all to the origin that served them.
export class ApiFailure extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
  ) {
    super(message);
  }
}

export async function getJson<T>(path: string): Promise<{ body: T; headers: Headers }> {
  const res = await fetch(path, { headers: { accept: 'application/json' } });
  const text = await res.text();
  let body: unknown;
  try {
    body = text ? JSON.parse(text) : undefined;
  } catch {
    throw new ApiFailure(res.status, 'BAD_RESPONSE', `${path} answered ${res.status} with something that is not JSON`);
  }
  if (!res.ok) {
    const e = (body as { error?: { code?: string; message?: string } } | undefined)?.error;
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

/**
 * A page's event stream and its live badge (`data-live`): live once open, reconnecting while the
 * browser retries a dropped stream, closed once it gives up or the page closes it.
 */
export class LiveFeed {
  private source: EventSource | undefined;

  constructor(private readonly badge: HTMLElement) {}

  set(mode: string, text: string): void {
    this.badge.setAttribute('data-live', mode);
    this.badge.textContent = text;
  }

  open(url: string): EventSource {
    const source = new EventSource(url);
    this.source = source;
    source.addEventListener('open', () => this.set('live', 'live'));
    source.addEventListener('error', () => {
      if (source.readyState === EventSource.CLOSED) {
        this.close();
        this.set('closed', 'disconnected: reload to retry');
      } else if (this.source) {
        this.set('reconnecting', 'reconnecting…');
      }
    });
    return source;
  }

  close(): void {
    this.source?.close();
    this.source = undefined;
  }
}
