// The fan-out watch: first against a stand-in that delivers watch notifications the way
// node-zookeeper-client does (a change arriving in the same packet as a read's reply fires the
// watch before the code awaiting that read resumes, an ordering a real server cannot be made to
// produce on demand), then against the real ZooKeeper.
import { describe, expect, it } from 'vitest';
import { Zk, type Stat, type Versioned, type Watcher } from '../client.js';
import { FanOutWatch } from './fan-out.js';
import { uniqueRoot, waitFor, zkConnect } from '../../../test/support/index.js';

const stat = (version: number): Stat => ({ version, cversion: 0, numChildren: 0, ephemeralOwner: '0000000000000000', ctime: 0, mtime: 0, aversion: 0 });

class FakeZk {
  value: number | null = 0;
  version = 0;
  private watchers: Watcher[] = [];
  /** The next write lands just after the next watched read is answered, in the same packet. */
  writeAfterWatchedRead: number | null = null;

  get watching(): number {
    return this.watchers.length;
  }

  private read(): Versioned<number> | null {
    return this.value === null ? null : { value: this.value, stat: stat(this.version) };
  }

  get(path: string, watch?: Watcher): Promise<Versioned<number> | null> {
    const v = this.read();
    if (watch && v !== null) this.watchers.push(watch);
    const p = Promise.resolve(v);
    if (watch && this.writeAfterWatchedRead !== null) {
      const next = this.writeAfterWatchedRead;
      this.writeAfterWatchedRead = null;
      // The reply is resolved, and the notification runs synchronously: before `await` resumes.
      this.set(path, next);
    }
    return p;
  }

  exists(_path: string, watch?: Watcher): Promise<Stat | null> {
    if (watch) this.watchers.push(watch);
    return Promise.resolve(this.value === null ? null : stat(this.version));
  }

  set(path: string, value: number): void {
    this.value = value;
    this.version++;
    for (const w of this.watchers.splice(0)) w({ type: 'data', path });
  }
}

const settle = () => new Promise((r) => setTimeout(r, 10));

describe('FanOutWatch', () => {
  it('keeps watching when a change is notified before the watched read resumes', async () => {
    const zk = new FakeZk();
    const hub = new FanOutWatch(zk as unknown as Zk);
    const seen: Array<number | undefined> = [];
    zk.writeAfterWatchedRead = 1;
    const stop = hub.subscribe<number>('/u', (v) => seen.push(v?.value));
    await settle();
    expect(seen[seen.length - 1]).toBe(1);
    // The path is still watched: later changes keep arriving.
    expect(zk.watching).toBe(1);
    for (const n of [2, 3, 4]) {
      zk.set('/u', n);
      await settle();
      expect(seen[seen.length - 1]).toBe(n);
    }
    stop();
    expect(hub.stats()).toEqual({ paths: 1, listeners: 0, armed: 1 }); // the pending watch, forgotten when it fires
    zk.set('/u', 5);
    expect(hub.stats()).toEqual({ paths: 0, listeners: 0, armed: 0 });
    hub.close();
  });

  it('a second viewer gets the current value, and both follow every change', async () => {
    const zk = new FakeZk();
    const hub = new FanOutWatch(zk as unknown as Zk);
    const a: Array<number | undefined> = [];
    const b: Array<number | undefined> = [];
    const stopA = hub.subscribe<number>('/u', (v) => a.push(v?.value));
    await settle();
    zk.set('/u', 1);
    await settle();
    const stopB = hub.subscribe<number>('/u', (v) => b.push(v?.value));
    await settle();
    expect(b).toEqual([1]);
    zk.set('/u', 2);
    await settle();
    expect(a).toEqual([0, 1, 2]);
    expect(b).toEqual([1, 2]);
    expect(zk.watching).toBe(1); // one watch however many viewers
    stopA();
    stopB();
    hub.close();
  });
});

describe('FanOutWatch against the real ZooKeeper', () => {
  it('one watch per node for every listener, each change to all of them, nothing watched once settled', async () => {
    const zk = await Zk.connect(zkConnect());
    const p = uniqueRoot('fan-out');
    const hub = new FanOutWatch(zk);
    try {
      await zk.create(p, { n: 0 });
      const a: number[] = [];
      const b: number[] = [];
      const settled = (v: Versioned<{ n: number }> | null) => (v?.value?.n ?? 0) >= 3;
      const stopA = hub.subscribe<{ n: number }>(p, (v) => a.push(v!.value!.n), settled);
      const stopB = hub.subscribe<{ n: number }>(p, (v) => b.push(v!.value!.n), settled);
      await waitFor(() => a.length > 0 && b.length > 0, { what: 'both listeners to get the first value' });
      expect(hub.stats()).toEqual({ paths: 1, listeners: 2, armed: 1 });
      for (const n of [1, 2, 3]) {
        await zk.set(p, { n }, -1);
        await waitFor(() => a.at(-1) === n && b.at(-1) === n, { what: `both to see ${n}` });
      }
      // 3 is final: read without a watch, so the node is no longer watched.
      expect(hub.stats().armed).toBe(0);
      expect(a).toEqual([0, 1, 2, 3]);
      expect(b).toEqual([0, 1, 2, 3]);
      stopA();
      stopB();
      expect(hub.stats()).toEqual({ paths: 0, listeners: 0, armed: 0 });
    } finally {
      hub.close();
      await zk.remove(p).catch(() => {});
      await zk.close();
    }
  });
});
