// The read-timeout patch (ts/zk/wire/patches.ts): a connection whose server goes silent (no FIN,
// no RST: a cut link) is dropped after two thirds of the session timeout, so the client reports
// SUSPENDED and tries again, instead of hanging CONNECTED while its session expires unseen.
import { afterEach, describe, expect, it } from 'vitest';
import { Zk, type ConnectionState } from '../client.js';
import { readTimeoutMs } from './patches.js';
import { FaultyLink } from '../../../test/support/proxy.js';
import { uniqueRoot, waitFor, zkConnect } from '../../../test/support/index.js';

const SESSION_MS = 4000;
let cleanup: Array<() => Promise<void>> = [];
afterEach(async () => {
  for (const c of cleanup.reverse()) await c().catch(() => {});
  cleanup = [];
});

describe('read timeout', () => {
  it('is two thirds of the session timeout', () => {
    expect(readTimeoutMs(3000)).toBe(2000);
    expect(readTimeoutMs(4000)).toBe(2666);
  });

  // Invariant: a silent server is noticed (SUSPENDED) before the session could have expired, and
  // once it answers again the same session carries on.
  it('a silent link is SUSPENDED within the read timeout, and the same session comes back', async () => {
    const link = await FaultyLink.start(zkConnect());
    cleanup.push(() => link.close());
    const zk = await Zk.connect(link.address, { sessionTimeoutMs: SESSION_MS });
    cleanup.push(() => zk.close());
    const states: ConnectionState[] = [];
    zk.on('state', (s: ConnectionState) => states.push(s));
    const session = zk.sessionId;
    const root = uniqueRoot('read-timeout');
    await zk.mkdirp(root);
    cleanup.push(() => zk.removeTree(root));

    const t0 = performance.now();
    link.stall();
    // A request in flight while the link is silent: the library sends it again once connected.
    const pending = zk.get(root).then(
      () => 'answered',
      (e: Error) => e.message,
    );
    await waitFor(() => states.includes('SUSPENDED'), { what: 'SUSPENDED', timeoutMs: SESSION_MS });
    const noticedMs = performance.now() - t0;
    expect(noticedMs).toBeLessThan(SESSION_MS);
    expect(noticedMs).toBeGreaterThanOrEqual(readTimeoutMs(SESSION_MS) - 50);

    link.restore();
    await zk.waitConnected(SESSION_MS);
    expect(await pending).toBe('answered');
    expect(states).toContain('RECONNECTED');
    expect(zk.sessionId).toBe(session);
    expect(await zk.exists(root)).not.toBeNull();
  });

  // Invariant: this process's own stall is not the server's silence: a healthy connection is kept.
  it('a stall of the event loop longer than the read timeout does not drop a healthy connection', async () => {
    const zk = await Zk.connect(zkConnect(), { sessionTimeoutMs: SESSION_MS });
    cleanup.push(() => zk.close());
    const states: ConnectionState[] = [];
    zk.on('state', (s: ConnectionState) => states.push(s));
    await zk.exists('/');
    const until = performance.now() + readTimeoutMs(SESSION_MS) + 500;
    while (performance.now() < until) {
      // busy: no timer, no I/O
    }
    await new Promise((r) => setTimeout(r, 1000));
    expect(await zk.exists('/')).not.toBeNull();
    expect(states).toEqual([]);
  });
});
