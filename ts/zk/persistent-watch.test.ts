// ZooKeeper 3.6+ persistent watches through the wrapper (`addWatch`, which node-zookeeper-client
// 1.1.3 does not speak), against the suite's real server: every change reported in order with no
// re-arming read, recursive watches, a dropped connection on the same session, and stop().
import { describe, expect, it } from 'vitest';
import { Zk, type ConnectionState } from './client.js';
import { watchChildrenOwned, watchChildrenPersistent } from './recipes/watch.js';
import { uniqueRoot, useZkRoot, waitFor, zkConnect } from '../../test/support/index.js';
import { FaultyLink } from '../../test/support/proxy.js';

let zk: Zk;
const root = uniqueRoot('zk-persistent');
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
type Ev = { type: string; path: string };

/** Counts every watcher notification the session receives, before any routing. */
function rawNotifications(z: Zk): { count: number } {
  const out = { count: 0 };
  const wm = (z as unknown as { client: { connectionManager: { watcherManager: { emit(e: unknown): void } } } }).client
    .connectionManager.watcherManager;
  const emit = wm.emit.bind(wm);
  wm.emit = (e) => {
    out.count++;
    emit(e);
  };
  return out;
}

useZkRoot(root, (z) => (zk = z));

/**
 * A second session through a link the test can cut. `drop()` severs the link and waits for the
 * session to see SUSPENDED; `restore()` lets it through again. Both are closed after `fn`.
 */
async function throughCuttableLink(
  fn: (c: { zk: Zk; states: ConnectionState[]; drop(): Promise<void>; restore(): void }) => Promise<void>,
): Promise<void> {
  const link = await FaultyLink.start(zkConnect());
  const cut = await Zk.connect(link.address, { sessionTimeoutMs: 6000 });
  try {
    const states: ConnectionState[] = [];
    cut.on('state', (s: ConnectionState) => states.push(s));
    const drop = async (): Promise<void> => {
      link.sever();
      await waitFor(() => states.includes('SUSPENDED'), { what: 'the drop', timeoutMs: 5000 });
    };
    await fn({ zk: cut, states, drop, restore: () => link.restore() });
  } finally {
    await cut.close();
    await link.close();
  }
}

describe('persistent watches', () => {
  it('a persistent watch reports every change in order, children included, without re-arming reads', async () => {
    const p = `${root}/p`;
    const events: Ev[] = [];
    const w = await zk.persistentWatch(p, 'persistent', (e) => events.push(e));
    const reads = zk.counters.reads;
    await zk.create(p, 0);
    // Not awaited one by one: a one-shot watch would coalesce these into one or two events.
    await Promise.all([1, 2, 3, 4, 5].map((i) => zk.set(p, i, -1)));
    await zk.create(`${p}/c`);
    await zk.remove(`${p}/c`);
    await zk.remove(p);
    const want: Ev[] = [
      { type: 'created', path: p },
      ...Array(5).fill({ type: 'data', path: p }),
      { type: 'children', path: p },
      { type: 'children', path: p },
      { type: 'deleted', path: p },
    ];
    await waitFor(() => events.length >= want.length, { what: 'all events' });
    expect(events).toEqual(want);
    expect(zk.counters.reads).toBe(reads); // nothing read to keep it armed
    await w.stop();
  });

  it('a recursive watch reports created/deleted/data for every descendant, never children', async () => {
    const p = `${root}/r`;
    await zk.create(p);
    const events: Ev[] = [];
    const w = await zk.persistentWatch(p, 'recursive', (e) => events.push(e));
    await zk.create(`${p}/a`);
    await zk.create(`${p}/a/b`, 1);
    await zk.set(`${p}/a/b`, 2, -1);
    await zk.txn().remove(`${p}/a/b`).remove(`${p}/a`).commit();
    const want: Ev[] = [
      { type: 'created', path: `${p}/a` },
      { type: 'created', path: `${p}/a/b` },
      { type: 'data', path: `${p}/a/b` },
      { type: 'deleted', path: `${p}/a/b` },
      { type: 'deleted', path: `${p}/a` },
    ];
    await waitFor(() => events.length >= want.length, { what: 'all events' });
    await sleep(100);
    expect(events).toEqual(want);
    await w.stop();
  });

  it('stop() stops delivery and removes the server watch', async () => {
    const p = `${root}/s`;
    await zk.create(p, 0);
    const events: Ev[] = [];
    const w = await zk.persistentWatch(p, 'persistent', (e) => events.push(e));
    const raw = rawNotifications(zk);
    await zk.set(p, 1, -1);
    await waitFor(() => events.length === 1, { what: 'one event' });
    await w.stop();
    await zk.set(p, 2, -1);
    await zk.set(p, 3, -1);
    await sleep(200);
    expect(events).toHaveLength(1);
    expect(raw.count).toBe(1); // the server no longer sends them
  });

  it('two listeners on one path share the watch; the watch lives until the last one stops', async () => {
    const p = `${root}/two`;
    await zk.create(p, 0);
    const a: Ev[] = [];
    const b: Ev[] = [];
    const wa = await zk.persistentWatch(p, 'persistent', (e) => a.push(e));
    const wb = await zk.persistentWatch(p, 'persistent', (e) => b.push(e));
    await expect(zk.persistentWatch(p, 'recursive', () => {})).rejects.toThrow(/already has a persistent watch/);
    await zk.set(p, 1, -1);
    await waitFor(() => a.length === 1 && b.length === 1, { what: 'both listeners' });
    await wa.stop();
    await zk.set(p, 2, -1);
    await waitFor(() => b.length === 2, { what: 'the remaining listener' });
    expect(a).toHaveLength(1);
    await wb.stop();
  });

  it('survives a dropped connection on the same session: re-added on RECONNECTED', async () => {
    const p = `${root}/drop`;
    await zk.create(p, 0);
    await throughCuttableLink(async ({ zk: cut, states, drop, restore }) => {
      const events: Ev[] = [];
      await cut.persistentWatch(p, 'persistent', (e) => events.push(e));
      await zk.set(p, 1, -1);
      await waitFor(() => events.length === 1, { what: 'an event before the cut' });
      const session = cut.sessionId;

      await drop();
      restore();
      await waitFor(() => states.includes('RECONNECTED'), { what: 'the reconnect', timeoutMs: 5000 });
      expect(cut.sessionId).toBe(session);

      await zk.set(p, 2, -1);
      await zk.set(p, 3, -1);
      await waitFor(() => events.length === 3, { what: 'events after the reconnect' });
      expect(events.every((e) => e.type === 'data' && e.path === p)).toBe(true);
    });
  });
});

describe('watchChildrenPersistent', () => {
  it('lists once, then follows creations and deletions from the watch alone', async () => {
    const p = `${root}/q`;
    const seen: Array<string[] | null> = [];
    const reads = zk.counters.reads;
    const w = watchChildrenPersistent(zk, p, (k) => seen.push(k ? [...k].sort() : null));
    await waitFor(() => seen.length >= 1, { what: 'first report' });
    expect(seen[0]).toBeNull();
    await zk.create(p);
    await waitFor(() => JSON.stringify(seen[seen.length - 1]) === '[]', { what: 'the node created' });
    const afterCreate = zk.counters.reads;
    await Promise.all(['a', 'b', 'c'].map((n) => zk.create(`${p}/${n}`)));
    await waitFor(() => JSON.stringify(seen[seen.length - 1]) === '["a","b","c"]', { what: 'three children' });
    await zk.set(`${p}/b`, 1, -1); // a child's data is not a change of the listing
    await zk.remove(`${p}/a`);
    await waitFor(() => JSON.stringify(seen[seen.length - 1]) === '["b","c"]', { what: 'child a removed' });
    expect(zk.counters.reads).toBe(afterCreate); // no read per change
    expect(afterCreate - reads).toBeLessThanOrEqual(2); // a listing at start and one on creation
    await zk.txn().remove(`${p}/b`).remove(`${p}/c`).remove(p).commit();
    await waitFor(() => seen[seen.length - 1] === null, { what: 'the node removed' });
    w.stop();
  });

  it('lists again after a dropped connection, catching changes made while it was down', async () => {
    const p = `${root}/q2`;
    await zk.create(p);
    await zk.create(`${p}/a`);
    await throughCuttableLink(async ({ zk: cut, drop, restore }) => {
      const seen: string[][] = [];
      const w = watchChildrenPersistent(cut, p, (k) => seen.push([...(k ?? [])].sort()));
      await waitFor(() => seen.length >= 1, { what: 'first report' });
      expect(seen[0]).toEqual(['a']);
      await drop();
      await zk.create(`${p}/b`); // while the link is down
      await zk.remove(`${p}/a`);
      restore();
      await waitFor(() => JSON.stringify(seen[seen.length - 1]) === '["b"]', { what: 'the listing after reconnect', timeoutMs: 5000 });
      await zk.create(`${p}/c`);
      await waitFor(() => JSON.stringify(seen[seen.length - 1]) === '["b","c"]', { what: 'a change after reconnect' });
      w.stop();
    });
  });
});

describe('watchChildrenOwned', () => {
  it("reads the listing for others' changes, and not for the caller's own announced writes", async () => {
    const p = `${root}/owned`;
    await zk.create(p);
    const other = await Zk.connect(zkConnect());
    try {
      const seen: string[][] = [];
      const w = watchChildrenOwned(zk, p, (k) => seen.push([...(k ?? [])].sort()));
      await waitFor(() => seen.length >= 1, { what: 'first report' });
      const reads = zk.counters.reads;
      await other.create(`${p}/a`); // someone else's: one listing
      await waitFor(() => JSON.stringify(seen[seen.length - 1]) === '["a"]', { what: 'child a' });
      expect(zk.counters.reads).toBe(reads + 1);

      await w.own(zk.remove(`${p}/a`)); // our own: no listing
      await sleep(150);
      expect(zk.counters.reads).toBe(reads + 1);
      expect(seen[seen.length - 1]).toEqual(['a']); // not re-reported: the caller knows

      // Someone else's write while ours is in flight is still read, once ours has settled.
      await Promise.all([w.own(zk.create(`${p}/b`)), other.create(`${p}/c`)]);
      await waitFor(() => JSON.stringify(seen[seen.length - 1]) === '["b","c"]', { what: 'child c' });
      // A failed own write explains nothing.
      await expect(w.own(zk.create(`${p}/b`))).rejects.toThrow(/NODE_EXISTS/);
      await other.remove(`${p}/c`);
      await waitFor(() => JSON.stringify(seen[seen.length - 1]) === '["b"]', { what: 'child c removed' });
      w.stop();
    } finally {
      await other.close();
    }
  });

  it('lists again after a dropped connection', async () => {
    const p = `${root}/owned2`;
    await zk.create(p);
    await throughCuttableLink(async ({ zk: cut, drop, restore }) => {
      const seen: string[][] = [];
      const w = watchChildrenOwned(cut, p, (k) => seen.push([...(k ?? [])].sort()));
      await waitFor(() => seen.length >= 1, { what: 'first report' });
      await drop();
      await zk.create(`${p}/x`);
      restore();
      await waitFor(() => JSON.stringify(seen[seen.length - 1]) === '["x"]', { what: 'the listing after reconnect', timeoutMs: 5000 });
      await zk.create(`${p}/y`);
      await waitFor(() => JSON.stringify(seen[seen.length - 1]) === '["x","y"]', { what: 'a change after reconnect' });
      w.stop();
    });
  });
});
