// A process whose ZooKeeper session expired closes that client and starts again on a new one
// (ts/zk/session.ts). Closing an expired client must not end the process: the library never says
// `disconnected` for it, and if nothing else is left to keep Node's event loop alive (the api has
// closed its HTTP server by then) the process used to exit, code 0, in the middle of its restart,
// so `quark up` (Restart=on-failure) did not start it again (found by the chaos suite's
// zk-restart runs on a loaded machine). Real ZooKeeper, a real cut link; the client runs in a
// child process, whose event loop is the point. Invariant: after LOST, close() returns and the
// process goes on.
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { FaultyLink } from './support/proxy.js';
import { repoRoot, useProcessGroup, zkConnect } from './support/index.js';

const links: FaultyLink[] = [];
afterAll(async () => {
  for (const l of links) await l.close();
});
const group = useProcessGroup();

describe('closing a client whose session expired', () => {
  it('returns, and the process goes on to whatever follows', async () => {
    const link = await FaultyLink.start(zkConnect());
    links.push(link);
    const client = pathToFileURL(join(repoRoot(), 'dist', 'ts', 'zk', 'client.js')).href;
    const script = [
      `import { Zk } from ${JSON.stringify(client)};`,
      `const zk = await Zk.connect(process.argv[1], { sessionTimeoutMs: 1000 });`,
      `console.log('connected');`,
      `zk.on('state', async (s) => {`,
      `  if (s !== 'LOST') return;`,
      `  console.log('lost');`,
      // As the services do: stop what ran on the session first (the library has meanwhile closed the socket).
      `  await new Promise((r) => setTimeout(r, 500));`,
      `  await zk.close();`,
      `  console.log('closed');`,
      `  process.exit(3);`,
      `});`,
    ].join('\n');
    const child = group.spawn(['--input-type=module', '-e', script, link.address], { label: 'zk client' });
    await child.waitForOutput('connected');
    // Cut for longer than the session timeout: the server expires the session, and the client
    // learns it when the link is back.
    link.sever();
    await new Promise((r) => setTimeout(r, 3000));
    link.restore();
    await child.waitForOutput('lost', { timeoutMs: 15_000 });
    const exit = await child.done;
    expect(child.stdout().split('\n')).toEqual(['connected', 'lost', 'closed']);
    expect(exit.code).toBe(3);
  }, 60_000);
});
