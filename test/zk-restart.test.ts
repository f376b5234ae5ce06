// A standalone ZooKeeper killed (kill -9) and started again on its data, with sessions connected:
// each must come back. Invariant: within the session timeout after the server serves again, every
// session has left CONNECTING: RECONNECTED (the same session) or LOST (expired; the process then
// starts a new one), never stuck SUSPENDED with a silent socket (the node-zookeeper-client
// handshake patch, ts/zk/wire/patches.ts; the chaos suite's zk-restart runs found it).
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { freePort, startZooKeeper, type RunningZooKeeper } from '../ts/dev/zookeeper.js';
import { Zk } from '../ts/zk/client.js';
import { waitFor } from './support/index.js';

const SESSION_MS = 4000;
const SESSIONS = 8;
let server: RunningZooKeeper | undefined;
const clients: Zk[] = [];
let dir: string | undefined;
afterAll(async () => {
  await Promise.all(clients.map((c) => c.close()));
  await server?.kill();
  if (dir) await rm(dir, { recursive: true, force: true });
});

describe('ZooKeeper killed and started again on its data', () => {
  it('every session comes back (RECONNECTED or LOST) within the session timeout, over three restarts', async () => {
    dir = await mkdtemp(join(tmpdir(), 'quark-zk-restart-'));
    const port = await freePort();
    server = await startZooKeeper({ dataDir: join(dir, 'zk'), clientPort: port });
    for (let i = 0; i < SESSIONS; i++) clients.push(await Zk.connect(`127.0.0.1:${port}`, { sessionTimeoutMs: SESSION_MS }));
    for (let round = 1; round <= 3; round++) {
      await server.kill();
      server = undefined;
      await waitFor(() => clients.every((c) => c.state === 'SUSPENDED' || c.state === 'LOST'), { what: 'every session to see the server go' });
      server = await startZooKeeper({ dataDir: join(dir, 'zk'), clientPort: port });
      await waitFor(() => clients.every((c) => c.state === 'RECONNECTED' || c.state === 'LOST'), {
        what: `every session back after restart ${round}`,
        timeoutMs: SESSION_MS + 2000,
      }).catch((err: Error) => {
        throw new Error(`${err.message}; states: ${clients.map((c) => c.state).join(', ')}`);
      });
      // A session that came back serves requests.
      for (const c of clients) if (c.state === 'RECONNECTED') expect(await c.exists('/')).not.toBeNull();
      // Expired ones are replaced, as every process does on LOST.
      for (let i = 0; i < clients.length; i++) {
        if (clients[i]!.state !== 'LOST') continue;
        await clients[i]!.close();
        clients[i] = await Zk.connect(`127.0.0.1:${port}`, { sessionTimeoutMs: SESSION_MS });
      }
    }
  }, 120_000);
});
