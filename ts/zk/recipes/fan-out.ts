// A fan-out watch: one reader per znode, its value delivered to every listener of that path
// (the visualizer's pages: one watch per znode however many viewers). A path's watch is dropped
// when its last listener leaves.
import type { Versioned, Zk } from '../client.js';
import type { Logger } from '../../common/log.js';
import { Coalescer } from './coalescer.js';

export type Listener<T> = (v: Versioned<T> | null) => void;

interface Entry {
  path: string;
  listeners: Set<Listener<unknown>>;
  /** A ZooKeeper watch is registered and has not fired yet. */
  armed: boolean;
  /** Reads the value (and arms the watch) one read at a time; a firing meanwhile reads once more. */
  reader: Coalescer;
  /** The value as last read; undefined while nobody listens. */
  last: Versioned<unknown> | null | undefined;
  /** True when the value can no longer change (a finished unit): it is not watched. */
  settled: (v: Versioned<unknown> | null) => boolean;
  retry: NodeJS.Timeout | undefined;
  /** One function per entry, so the client never holds two registrations of this path. */
  watcher: () => void;
}

export interface FanOutStats {
  /** Znodes with an entry: watched now, or read for a listener. */
  paths: number;
  listeners: number;
  /** ZooKeeper watches registered and not yet fired. */
  armed: number;
}

/**
 * One reader per znode, fanned out to every listener. A one-shot watch cannot be cancelled, so
 * no second one is registered on a path whose first has not fired: a listener leaving leaves at
 * most one pending watch per path, which is forgotten when it fires (and reused if a listener
 * comes back first). A value for which `settled` holds (a finished unit, a deleted node) is read
 * without a watch at all. A failed read is tried again a second later while anyone listens.
 */
export class FanOutWatch {
  private readonly entries = new Map<string, Entry>();
  private closed = false;

  constructor(
    private readonly zk: Zk,
    private readonly log?: Logger,
  ) {}

  subscribe<T>(path: string, listener: Listener<T>, settled: (v: Versioned<T> | null) => boolean = () => false): () => void {
    if (this.closed) throw new Error('fan-out watch is closed');
    const entry = this.entries.get(path) ?? this.add(path, settled as Entry['settled']);
    const l = listener as Listener<unknown>;
    entry.listeners.add(l);
    if (entry.reader.busy) {
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

  private add(path: string, settled: Entry['settled']): Entry {
    const entry: Entry = {
      path,
      listeners: new Set(),
      armed: false,
      reader: new Coalescer(
        () => this.read(entry),
        () => entry.listeners.size === 0 || this.closed,
        (err) => this.failed(entry, err),
        () => {
          for (const l of [...entry.listeners]) this.deliver(l, entry.last ?? null);
        },
      ),
      last: undefined,
      settled,
      retry: undefined,
      watcher: () => {
        entry.armed = false;
        if (entry.listeners.size > 0 && !this.closed) void this.refresh(entry);
        else this.forget(entry);
      },
    };
    this.entries.set(path, entry);
    return entry;
  }

  /** Drops an entry nobody listens to, unless its watch is still pending (it is reused if a listener comes back). */
  private forget(e: Entry): void {
    if (e.listeners.size === 0 && !e.armed && !e.reader.busy && this.entries.get(e.path) === e) this.entries.delete(e.path);
  }

  private deliver(l: Listener<unknown>, v: Versioned<unknown> | null): void {
    try {
      l(v);
    } catch (err) {
      this.log?.error('fan-out listener failed', { err });
    }
  }

  private async refresh(e: Entry): Promise<void> {
    await e.reader.run();
    if (e.reader.busy) return; // a new burst began meanwhile: it ends the same way
    if (e.listeners.size === 0) {
      e.last = undefined;
      this.forget(e);
    }
  }

  /** One read of the value; true if it must be read again (the node was created meanwhile). */
  private async read(e: Entry): Promise<boolean> {
    let again = false;
    let v: Versioned<unknown> | null = await this.zk.get(e.path);
    if (!e.armed && !e.settled(v) && e.listeners.size > 0) {
      // Still changing: read again with the watch, so no change between the reads is missed.
      // Armed before the call, not after: a change can arrive in the same packet as the
      // reply, and the client runs the watch before this function resumes. Marking it
      // armed afterwards would overwrite that firing, and the path would never be
      // watched again (the page freezes on a stale step).
      e.armed = true;
      try {
        v = await this.zk.get(e.path, e.watcher);
        if (v === null) {
          if (await this.zk.exists(e.path, e.watcher)) again = true; // created between the two calls
        }
      } catch (err) {
        e.armed = false; // a failed call registered no watch
        throw err;
      }
    }
    if (e.listeners.size > 0) e.last = v;
    return again;
  }

  private failed(e: Entry, err: unknown): void {
    this.log?.warn('fan-out read failed; retrying', { path: e.path, err });
    clearTimeout(e.retry);
    e.retry = setTimeout(() => {
      e.retry = undefined;
      void this.refresh(e);
    }, 1000);
    e.retry.unref();
  }

  stats(): FanOutStats {
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
