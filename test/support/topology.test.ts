// The topology helper itself (ts/dev/topology.ts): hosts reach each other and nothing else, a cut
// or an isolation stops exactly the traffic it names and healing restores it, and nothing is left
// behind: not by destroy(), not by a run that died without cleaning up.
import { execFileSync, spawnSync } from 'node:child_process';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { reapStaleTopologies } from '../../ts/dev/topology.js';
import { isAlive, useProcessGroup, waitFor } from './index.js';
import { startOn, Topology } from './topology.js';

const group = useProcessGroup();
let topo: Topology;

/** Whether `from` opens a TCP connection to `to`:7000 within a second. */
async function reaches(from: string, to: string): Promise<boolean> {
  try {
    await topo.exec(from, ['timeout', '1', 'bash', '-c', `exec 3<>/dev/tcp/${topo.address(to)}/7000`]);
    return true;
  } catch {
    return false;
  }
}

(process.getuid?.() === 0 ? describe : describe.skip)('topology', () => {
  beforeAll(async () => {
    topo = await Topology.create(['a', 'b', 'c']);
    const listener = startOn(group, topo, 'b', {
      name: 'listener',
      script: null,
      args: ['-e', `require('net').createServer((s) => s.end()).listen(7000, '${topo.address('b')}', () => console.log('listening'))`],
    });
    await listener.waitForOutput('listening');
  });
  afterAll(async () => {
    await group.stopAll();
    await topo?.destroy();
  });

  it('gives each host one address on the bridge and no route out', async () => {
    expect(new Set(['a', 'b', 'c'].map((h) => topo.address(h))).size).toBe(3);
    for (const h of ['a', 'b', 'c']) {
      const routes = (await topo.exec(h, ['ip', '-4', 'route'])).trim().split('\n');
      expect(routes).toEqual([expect.stringMatching(/^10\.213\.0\.0\/24 dev eth0 /)]);
    }
    expect(await reaches('a', 'b')).toBe(true);
    expect(await reaches('c', 'b')).toBe(true);
    // The range exists only inside the topology: the machine's own namespace has no address in it.
    expect(execFileSync('ip', ['-4', '-o', 'addr'], { encoding: 'utf8' })).not.toContain(' 10.213.0.');
  });

  it('a cut stops all traffic of the host until healed', async () => {
    await topo.cut('b');
    expect(await reaches('a', 'b')).toBe(false);
    expect(await reaches('c', 'b')).toBe(false);
    await expect(topo.cut('b')).rejects.toThrow(/already partitioned/);
    await topo.heal('b');
    expect(await reaches('a', 'b')).toBe(true);
  });

  it('an isolation drops only the peers it names, both ways', async () => {
    await topo.isolate('b', ['a']);
    expect(await reaches('a', 'b')).toBe(false);
    expect(await reaches('c', 'b')).toBe(true);
    await topo.heal('b');
    expect(await reaches('a', 'b')).toBe(true);
  });

  it('destroy removes every namespace and what still runs in them; a dead run’s are reaped', async () => {
    const t = await Topology.create(['x']);
    const sleeper = startOn(group, t, 'x', { name: 'sleeper', script: null, args: ['-e', 'console.log("up"); setInterval(() => {}, 1000)'] });
    // Running on the host (not still inside `ip netns exec`, which joins the namespace before it execs).
    await sleeper.waitForOutput('up');
    expect((await t.remaining()).length).toBe(2);
    await t.destroy();
    expect(await t.remaining()).toEqual([]);
    await waitFor(() => !isAlive(sleeper.pid), { what: 'the process in the namespace gone' });

    // A namespace named for a run whose process no longer exists.
    const gone = spawnSync('true').pid!;
    const stale = `qtopo-${gone}-dead00-switch`;
    execFileSync('ip', ['netns', 'add', stale]);
    expect(await reapStaleTopologies()).toContain(stale);
    expect(execFileSync('ip', ['netns', 'list'], { encoding: 'utf8' })).not.toContain(stale);
  });
});
