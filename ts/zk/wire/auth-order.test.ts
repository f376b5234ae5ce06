// The auth-order patch (ts/zk/wire/patches.ts): after a reconnect, the session's credentials are
// sent before any request that waited for the connection. Invariant: a request a session with
// credentials makes while its link is down is answered, once the link is back, as the same request
// made while connected would be: never NO_AUTH for a node its credentials may read and write.
import { afterEach, describe, expect, it } from 'vitest';
import { Zk, type ConnectionState } from '../client.js';
import { makeCredentials } from '../acl.js';
import { FaultyLink } from '../../../test/support/proxy.js';
import { uniqueRoot, waitFor, zkConnect } from '../../../test/support/index.js';

const SESSION_MS = 8000;
let cleanup: Array<() => Promise<void>> = [];
afterEach(async () => {
  for (const c of cleanup.reverse()) await c().catch(() => {});
  cleanup = [];
});

describe('credentials across a reconnect', () => {
  it('requests queued while the link was down run with the session\'s credentials', async () => {
    const { admin } = makeCredentials();
    const link = await FaultyLink.start(zkConnect());
    cleanup.push(() => link.close());
    const zk = await Zk.connect(link.address, { sessionTimeoutMs: SESSION_MS, credentials: admin });
    cleanup.push(() => zk.close());
    const states: ConnectionState[] = [];
    zk.on('state', (s: ConnectionState) => states.push(s));
    const root = uniqueRoot('auth-order');
    await zk.mkdirp(root);
    cleanup.push(() => zk.removeTree(root));
    await zk.create(`${root}/a`, { n: 1 });
    // The node is the admin's alone: without the credentials every one of these is NO_AUTH.
    expect(new Set((await zk.getAcl(`${root}/a`))!.map((e) => e.scheme))).toEqual(new Set(['digest']));
    const session = zk.sessionId;

    link.sever();
    await waitFor(() => states.includes('SUSPENDED'), { what: 'SUSPENDED', timeoutMs: SESSION_MS });
    // Made while disconnected: the library queues them until the next connection.
    const waiting = Promise.allSettled([
      zk.get<{ n: number }>(`${root}/a`),
      zk.create(`${root}/b`, { n: 2 }),
      zk.set(`${root}/a`, { n: 3 }, -1),
      zk.txn().create(`${root}/c`, { n: 4 }).commit(),
    ]);
    link.restore();
    const [got, created, set, txn] = await waiting;
    expect(zk.sessionId).toBe(session);
    expect(got.status === 'fulfilled' ? got.value?.value : got.reason).toEqual({ n: 1 });
    expect(created.status === 'rejected' ? created.reason : 'ok').toBe('ok');
    expect(set.status === 'rejected' ? set.reason : 'ok').toBe('ok');
    expect(txn.status === 'rejected' ? txn.reason : 'ok').toBe('ok');
    expect((await zk.get<{ n: number }>(`${root}/b`))?.value).toEqual({ n: 2 });
    expect((await zk.get<{ n: number }>(`${root}/c`))?.value).toEqual({ n: 4 });
  });
});
