// What an orc does when its ZooKeeper connection wavers, with the link really cut (a TCP relay
// between the orc and the suite's ZooKeeper): SUSPENDED stops it acting on its shards at once,
// RECONNECTED (same session) has it re-check its locks and act again, and LOST (session expired)
// has it drop everything and join again on a new session, while the other orc covers for it.
import { afterEach, describe, expect, it } from 'vitest';
import { runWithSession, type SessionRunner } from '../ts/zk/session.js';
import { createLogger } from '../ts/common/log.js';
import { Orc } from '../ts/orc/orc.js';
import { lockQueue } from '../ts/zk/recipes/lock.js';
import { createClusterView } from '../ts/orc/placement/index.js';
import { Zk } from '../ts/zk/client.js';
import { readConfig } from '../ts/zk/config.js';
import { Paths } from '../ts/zk/paths.js';
import { FaultyLink } from './support/proxy.js';
import { uniqueRoot, waitFor, zkConnect } from './support/index.js';

const SESSION_MS = 2000;
const SHARDS = 8;

let cleanup: Array<() => Promise<void>> = [];
afterEach(async () => {
  for (const f of cleanup.reverse()) await f().catch(() => {});
  cleanup = [];
});

interface World {
  paths: Paths;
  admin: Zk;
  link: FaultyLink;
  startOrc(id: string, via: string): Promise<SessionRunner<Orc>>;
  /** Each shard's owner as ZooKeeper records it: the orc of the first lock candidate. */
  owners(): Promise<Array<string | null>>;
}

async function world(): Promise<World> {
  const root = uniqueRoot('conn');
  const paths = new Paths(root);
  const admin = await Zk.connect(zkConnect());
  await readConfig(admin, paths, { shards: SHARDS });
  const link = await FaultyLink.start(zkConnect());
  cleanup.push(async () => {
    await link.close();
    await admin.removeTree(root);
    await admin.close();
  });
  return {
    paths,
    admin,
    link,
    async startOrc(id, via) {
      const log = createLogger({ proc: 'orc', orc: id }, 'error');
      const runner = await runWithSession<Orc>(
        { zk: via, root, sessionTimeoutMs: SESSION_MS, log, handleSignals: false },
        async (zk, p) => {
          const config = await readConfig(zk, p);
          const orc = new Orc({ zk, paths: p, log, view: createClusterView({ overcommit: config.overcommit }), id });
          await orc.start();
          return orc;
        },
      );
      cleanup.push(() => runner.stop());
      return runner;
    },
    async owners() {
      const out: Array<string | null> = [];
      for (let n = 0; n < SHARDS; n++) out.push(lockQueue((await admin.children(paths.shardLock(n))) ?? [])[0]?.owner ?? null);
      return out;
    },
  };
}

const shardsOf = (r: SessionRunner<Orc>) => r.service?.shards ?? [];
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('an orc whose ZooKeeper link is cut', () => {
  it('SUSPENDED: stops acting at once; its shards stay its own while its session lives; RECONNECTED: acts on them again', async () => {
    const w = await world();
    const a = await w.startOrc('orc-a', w.link.address);
    const b = await w.startOrc('orc-b', zkConnect());
    await waitFor(() => shardsOf(a).length === SHARDS / 2 && shardsOf(b).length === SHARDS / 2, { what: 'an even split', timeoutMs: 10_000 });
    const mine = shardsOf(a);
    const theirs = shardsOf(b);
    const states: string[] = [];
    a.zk!.on('state', (s: string) => states.push(s));

    w.link.sever();
    await waitFor(() => states.includes('SUSPENDED'), { what: 'orc-a to see its connection drop', timeoutMs: 5000 });
    expect(shardsOf(a)).toEqual([]); // acts on nothing while it cannot know it still owns it
    await sleep(SESSION_MS / 3);
    // The session is alive, so its locks are too: nobody else takes its shards meanwhile.
    const owners = await w.owners();
    for (const n of mine) expect(owners[n]).toBe('orc-a');
    expect(shardsOf(b)).toEqual(theirs);

    w.link.restore();
    await waitFor(() => states.includes('RECONNECTED'), { what: 'orc-a to reconnect', timeoutMs: 5000 });
    await waitFor(() => shardsOf(a).join() === mine.join(), { what: 'orc-a to own its shards again', timeoutMs: 5000 });
    expect(states).not.toContain('LOST');
    expect(a.starts).toBe(1); // the same session and the same orc throughout
  });

  it('LOST: past the session timeout the other orc takes every shard; the cut-off orc rejoins on a new session and gets its share back', async () => {
    const w = await world();
    const a = await w.startOrc('orc-a', w.link.address);
    const b = await w.startOrc('orc-b', zkConnect());
    await waitFor(() => shardsOf(a).length === SHARDS / 2 && shardsOf(b).length === SHARDS / 2, { what: 'an even split', timeoutMs: 10_000 });
    const oldSession = a.zk!.sessionId;

    const cutAt = Date.now();
    w.link.sever();
    await waitFor(() => shardsOf(b).length === SHARDS, { what: 'orc-b to take every shard', timeoutMs: SESSION_MS + 5000 });
    const takenMs = Date.now() - cutAt;
    // Not before orc-a's session could expire. ZooKeeper counts the timeout from the last packet
    // it heard, which can precede the cut by up to one ping interval (a third of the timeout).
    expect(takenMs).toBeGreaterThanOrEqual(SESSION_MS / 2);
    expect(await w.owners()).toEqual(Array(SHARDS).fill('orc-b'));
    expect(shardsOf(a)).toEqual([]);

    w.link.restore();
    await waitFor(() => a.starts === 2, { what: 'orc-a to start again on a new session', timeoutMs: 15_000 });
    expect(a.zk!.sessionId).not.toBe(oldSession);
    await waitFor(() => shardsOf(a).length === SHARDS / 2 && shardsOf(b).length === SHARDS / 2, {
      what: 'the split to be even again',
      timeoutMs: 10_000,
    });
    const owners = await w.owners();
    for (let n = 0; n < SHARDS; n++) expect(owners[n]).toBe(shardsOf(a).includes(n) ? 'orc-a' : 'orc-b');
  });
});
