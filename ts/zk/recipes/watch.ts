// Watch caches: a callback kept fed with a node's children or value, on one-shot watches re-armed
// by each read, or on persistent watches that need no re-arming.
import type { ConnectionState, Versioned, Watcher, Zk } from '../client.js';
import { Coalescer } from './coalescer.js';
import { OwnWrites } from './own-writes.js';

/**
 * Keeps a callback fed with what `read` returns (null: the node is missing), re-arming the
 * one-shot watch it is given at each read; a missing node is watched for creation.
 */
function watchOneShot<T>(
  zk: Zk,
  path: string,
  read: (watch: Watcher) => Promise<T | null>,
  onChange: (v: T | null) => void,
  onError: (err: unknown) => void,
): { stop(): void } {
  let stopped = false;
  const arm = async (): Promise<void> => {
    if (stopped) return;
    try {
      const v = await read(() => void arm());
      if (v === null) {
        const st = await zk.exists(path, () => void arm());
        if (st) return arm();
      }
      if (!stopped) onChange(v);
    } catch (e) {
      if (!stopped) onError(e);
    }
  };
  void arm();
  return { stop: () => void (stopped = true) };
}

/**
 * Keeps a callback fed with a node's children, re-arming the one-shot watch each time.
 * Stops when stop() is called. A missing node reports null and is watched for creation.
 */
export function watchChildren(
  zk: Zk,
  path: string,
  onChange: (children: string[] | null) => void,
  onError: (err: unknown) => void = () => {},
): { stop(): void } {
  return watchOneShot(zk, path, (watch) => zk.children(path, watch), onChange, onError);
}

/** Keeps a callback fed with a node's value (null when absent), re-arming the watch each time. */
export function watchData<T>(
  zk: Zk,
  path: string,
  onChange: (v: Versioned<T> | null) => void,
  onError: (err: unknown) => void = () => {},
): { stop(): void } {
  return watchOneShot(zk, path, (watch) => zk.get<T>(path, watch), onChange, onError);
}

/**
 * watchChildren on a persistent recursive watch, for a node whose children are leaves (a queue
 * of names): the children are listed once, then kept from the watch's created/deleted events
 * for direct children, so a change costs one notification and no read (watchChildren pays a
 * getChildren per notification to re-arm). Deeper descendants would each cost a notification,
 * hence leaves only. The listing is read again after a reconnect (changes made while the
 * connection was down are not reported), when the node itself is created, and if an event
 * arrived while a listing was in flight. A missing node reports null.
 */
export function watchChildrenPersistent(
  zk: Zk,
  path: string,
  onChange: (children: string[] | null) => void,
  onError: (err: unknown) => void = () => {},
): { stop(): void } {
  let stopped = false;
  let kids: Set<string> | null = null;
  let watch: { stop(): Promise<void> } | undefined;
  const prefix = `${path}/`;
  const report = (): void => {
    if (!stopped) onChange(kids ? [...kids] : null);
  };
  const listing = new Coalescer(
    async () => {
      if (!watch) watch = await zk.persistentWatch(path, 'recursive', onEvent);
      if (stopped) return void watch.stop();
      const got = await zk.children(path);
      kids = got ? new Set(got) : null;
    },
    () => stopped,
    onError,
    report,
  );
  const onEvent: Watcher = (ev) => {
    if (stopped) return;
    if (ev.path === path) {
      if (ev.type === 'deleted') {
        kids = null;
        report();
      } else if (ev.type === 'created') void listing.run();
      return;
    }
    if (!ev.path.startsWith(prefix) || ev.path.indexOf('/', prefix.length) >= 0) return;
    // A listing under way may or may not include this change: list once more after it.
    if (listing.busy) return void listing.run();
    const name = ev.path.slice(prefix.length);
    if (ev.type === 'created') {
      if (!kids) kids = new Set();
      if (kids.has(name)) return;
      kids.add(name);
    } else if (ev.type === 'deleted') {
      if (!kids?.delete(name)) return;
    } else return;
    report();
  };
  return {
    stop: listUntilStopped(zk, listing, () => {
      stopped = true;
      void watch?.stop();
    }),
  };
}

/**
 * Runs `listing` now and after every reconnect (changes made while the connection was down are
 * not notified); the returned stop ends that and calls `onStop`.
 */
function listUntilStopped(zk: Zk, listing: Coalescer, onStop: () => void): () => void {
  const onState = (s: ConnectionState): void => {
    if (s === 'RECONNECTED') void listing.run();
  };
  zk.on('state', onState);
  void listing.run();
  return () => {
    onStop();
    zk.off('state', onState);
  };
}

/**
 * watchChildren on a persistent watch, for a node whose children have children of their own
 * (where a recursive watch would report every descendant): each 'children' event is one
 * getChildren without a watch, so nothing is re-armed. A change the caller makes itself can skip
 * even that read: `own(commit)` opens a window around a write that adds or removes `changes`
 * children; ZooKeeper sends a session the notification of its own write before the write's
 * reply, so once every such write has settled, the listing is read only if more events arrived
 * than the writes that committed could explain. Read again after a reconnect (changes made while
 * the connection was down are not reported). A missing node reports null.
 */
export function watchChildrenOwned(
  zk: Zk,
  path: string,
  onChange: (children: string[] | null) => void,
  onError: (err: unknown) => void = () => {},
): { stop(): void; own<T>(write: Promise<T>, changes?: number): Promise<T> } {
  let stopped = false;
  let watch: { stop(): Promise<void> } | undefined;
  const mine = new OwnWrites();
  const listing = new Coalescer(
    async () => {
      if (!watch) watch = await zk.persistentWatch(path, 'persistent', onEvent);
      if (stopped) return void watch.stop();
      const kids = await zk.children(path);
      if (!stopped) onChange(kids);
    },
    () => stopped,
    onError,
  );
  const onEvent: Watcher = (ev) => {
    if (stopped || ev.path !== path) return;
    if (ev.type === 'children' && mine.absorb()) return;
    if (ev.type === 'children' || ev.type === 'created' || ev.type === 'deleted') void listing.run();
  };
  return {
    stop: listUntilStopped(zk, listing, () => {
      stopped = true;
      void watch?.stop();
    }),
    async own<T>(write: Promise<T>, changes = 1): Promise<T> {
      mine.begin();
      let ok = false;
      try {
        const r = await write;
        ok = true;
        return r;
      } finally {
        if (mine.end(ok, changes)) void listing.run();
      }
    },
  };
}

