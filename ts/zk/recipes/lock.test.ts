// The lock recipe against the real ZooKeeper: queue order, a waiter taking over when the holder's
// session ends, and a hand-over that waits until the next holder is queued.
import { describe, expect, it } from 'vitest';
import { Zk } from '../client.js';
import { lockQueue, LockSet } from './lock.js';
import { createLogger } from '../../common/log.js';
import { uniqueRoot, useZkRoot, waitFor, zkConnect } from '../../../test/support/index.js';

const log = createLogger({}, 'error');

describe('lockQueue', () => {
  it('parses c-<owner>-<seq> candidates in sequence order and ignores anything else', () => {
    const q = lockQueue(['c-orc-b-0000000007', 'junk', 'c-a-0000000002', 'c-orc-1-0000000010', 'c-x-12']);
    expect(q).toEqual([
      { node: 'c-a-0000000002', owner: 'a', seq: 2 },
      { node: 'c-orc-b-0000000007', owner: 'orc-b', seq: 7 },
      { node: 'c-orc-1-0000000010', owner: 'orc-1', seq: 10 },
    ]);
  });
});

describe('LockSet', () => {
  let admin: Zk;
  const root = uniqueRoot('lock');
  useZkRoot(root, (z) => (admin = z));

  async function holder(owner: string, dir: string, wants: { has(k: number): boolean }) {
    const zk = await Zk.connect(zkConnect(), { sessionTimeoutMs: 2000 });
    const set = new LockSet<number>({ zk, dir: () => dir, owner, wants: (k) => wants.has(k), log });
    const events: string[] = [];
    set.on('acquired', (k: number) => events.push(`acquired ${k}`));
    set.on('released', (k: number) => events.push(`released ${k}`));
    return { zk, set, events };
  }

  it('the first candidate holds; the next takes over when the holder session closes', async () => {
    const dir = `${root}/takeover`;
    await admin.mkdirp(dir);
    const a = await holder('a', dir, new Set([0]));
    const b = await holder('b', dir, new Set([0]));
    try {
      await a.set.check(0);
      await waitFor(() => a.set.owned.has(0), { what: 'a to hold the lock' });
      await b.set.check(0);
      expect(b.set.owned.has(0)).toBe(false);
      expect(lockQueue((await admin.children(dir))!).map((c) => c.owner)).toEqual(['a', 'b']);
      await a.zk.close(); // its candidate goes with the session: b's predecessor watch fires
      await waitFor(() => b.set.owned.has(0), { what: 'b to take the lock over' });
      expect(b.events).toEqual(['acquired 0']);
    } finally {
      await b.set.stop();
      await b.zk.close();
      await a.zk.close();
    }
  });

  it('a holder that stops wanting the lock keeps it until someone else is queued, then hands it over', async () => {
    const dir = `${root}/handover`;
    await admin.mkdirp(dir);
    const aWants = new Set([0]);
    const a = await holder('a', dir, aWants);
    const b = await holder('b', dir, new Set([0]));
    try {
      await a.set.check(0);
      expect(a.set.owned.has(0)).toBe(true);
      aWants.delete(0);
      await a.set.check(0);
      // Nobody else queued: still held (a lock is never left without a holder).
      expect(a.set.owned.has(0)).toBe(true);
      await b.set.check(0);
      await waitFor(() => b.set.owned.has(0) && !a.set.owned.has(0), { what: 'the hand-over to b' });
      expect(a.events).toEqual(['acquired 0', 'released 0']);
      expect(lockQueue((await admin.children(dir))!).map((c) => c.owner)).toEqual(['b']);
    } finally {
      await a.set.stop();
      await b.set.stop();
      await Promise.all([a.zk.close(), b.zk.close()]);
    }
  });

  it('pause releases what is held at once; resume holds it again on the same session', async () => {
    const dir = `${root}/pause`;
    await admin.mkdirp(dir);
    const a = await holder('a', dir, new Set([0]));
    try {
      await a.set.check(0);
      expect(a.set.owned.has(0)).toBe(true);
      a.set.pause();
      expect(a.set.owned.size).toBe(0);
      await a.set.check(0);
      expect(a.set.owned.size).toBe(0);
      await a.set.resume([0]);
      expect(a.set.owned.has(0)).toBe(true);
      expect(a.events).toEqual(['acquired 0', 'released 0', 'acquired 0']);
    } finally {
      await a.set.stop();
      await a.zk.close();
    }
    expect(await admin.children(dir)).toEqual([]);
  });
});
