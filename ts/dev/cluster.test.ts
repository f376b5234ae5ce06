// The cluster launcher: Restart=on-failure's decisions (pure), then real processes supervised,
// killed, stopped and power-cut, ZooKeeper included. Everything started here is stopped by pid.
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { afterExit, DEFAULT_SUPERVISION, isFailure, Launcher, type Supervision } from './cluster.js';
import { fourLetter } from './zookeeper.js';
import { isAlive as alive, waitFor } from '../../test/support/index.js';

describe('Restart=on-failure decisions', () => {
  const s: Supervision = { maxFailures: 5, baseDelayMs: 500, maxDelayMs: 3000, stableMs: 10_000 };

  it('a clean exit (code 0, or a stop signal) is not restarted; a non-zero code or SIGKILL is', () => {
    expect(isFailure({ code: 0, signal: null })).toBe(false);
    expect(isFailure({ code: null, signal: 'SIGTERM' })).toBe(false);
    expect(isFailure({ code: null, signal: 'SIGINT' })).toBe(false);
    expect(isFailure({ code: 1, signal: null })).toBe(true);
    expect(isFailure({ code: null, signal: 'SIGKILL' })).toBe(true);
    expect(isFailure({ code: null, signal: 'SIGSEGV' })).toBe(true);
    expect(afterExit({ code: 0, signal: null }, 10, 3, s)).toEqual({ restart: false, reason: 'clean exit', failures: 0 });
  });

  it('backs off exponentially up to the cap, and gives up at the Nth failure in a row', () => {
    const crash = { code: 1, signal: null };
    const seen: string[] = [];
    let failures = 0;
    for (;;) {
      const d = afterExit(crash, 100, failures, s);
      failures = d.failures;
      if (!d.restart) {
        seen.push(d.reason);
        break;
      }
      seen.push(String(d.delayMs));
    }
    expect(seen).toEqual(['500', '1000', '2000', '3000', 'gave up']);
    expect(failures).toBe(5);
  });

  it('a run that lasted stableMs starts the count again', () => {
    expect(afterExit({ code: 1, signal: null }, 10_000, 4, s)).toEqual({ restart: true, delayMs: 500, failures: 1 });
    expect(afterExit({ code: 1, signal: null }, 9_999, 4, s)).toEqual({ restart: false, reason: 'gave up', failures: 5 });
  });

  it('the default gives up after 5 failures in a row', () => {
    expect(DEFAULT_SUPERVISION.maxFailures).toBe(5);
  });
});

describe('supervised processes', () => {
  const fast: Supervision = { maxFailures: 3, baseDelayMs: 100, maxDelayMs: 1000, stableMs: 60_000 };
  const launchers: Launcher[] = [];
  const said: string[] = [];
  const launcher = (supervision: Supervision | false = fast) => {
    const l = new Launcher({ supervision, graceMs: 500, say: (line) => said.push(line) });
    launchers.push(l);
    return l;
  };
  afterAll(async () => {
    await Promise.all(launchers.map((l) => l.stopAll()));
  });

  it('a process that keeps failing is restarted with growing delays, then given up with a clear message', async () => {
    const l = launcher();
    const p = l.start({ name: 'crasher', script: null, args: ['-e', 'console.log("up " + Date.now()); process.exit(3)'] });
    const last = await p.done;
    expect(last).toEqual({ code: 3, signal: null });
    expect(p.pids).toHaveLength(3);
    expect(new Set(p.pids).size).toBe(3);
    expect(p.restarts).toBe(2);
    expect(p.gaveUp).toBe(true);
    const starts = p.stdout().split('\n').map((line) => Number(line.split(' ')[1]));
    expect(starts).toHaveLength(3);
    // 100 ms, then 200 ms before the restarts (plus Node's start-up each time).
    expect(starts[1]! - starts[0]!).toBeGreaterThanOrEqual(100);
    expect(starts[2]! - starts[1]!).toBeGreaterThanOrEqual(200);
    expect(said.filter((s) => s.startsWith('!! crasher exited (code 3); restarting in'))).toHaveLength(2);
    expect(said).toContain('!! crasher failed 3 times in a row (last: code 3); not restarting it again');
  });

  it('kill -9 of a supervised process brings a new one; stop() ends it for good', async () => {
    const l = launcher();
    const p = l.start({ name: 'server', script: null, args: ['-e', 'console.log("ready"); setInterval(() => {}, 1000)'] });
    await p.waitForOutput('ready');
    const first = p.pid;
    process.kill(first, 'SIGKILL');
    await waitFor(() => p.pids.length === 2 && p.running, { what: 'the restart', timeoutMs: 5_000 });
    expect(alive(first)).toBe(false);
    expect(alive(p.pid)).toBe(true);
    await l.stop([p]);
    expect(p.exit).toEqual({ code: null, signal: 'SIGTERM' });
    expect(await p.done).toEqual({ code: null, signal: 'SIGTERM' });
    await new Promise((r) => setTimeout(r, 300));
    expect(p.pids).toHaveLength(2);
    expect(alive(p.pid)).toBe(false);
  });

  it('supervision turned off for one process: a kill -9 leaves it dead', async () => {
    const l = launcher();
    const p = l.start({ name: 'victim', script: null, args: ['-e', 'setInterval(() => {}, 1000)'], supervise: false });
    process.kill(p.pid, 'SIGKILL');
    expect(await p.done).toEqual({ code: null, signal: 'SIGKILL' });
    await new Promise((r) => setTimeout(r, 300));
    expect(p.pids).toHaveLength(1);
    expect(p.running).toBe(false);
  });

  it('a power cut kills every process and ZooKeeper at once, and nothing is restarted; stopAll stops ZooKeeper last', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'quark-launcher-'));
    try {
      const l = launcher();
      const zk = await l.startZooKeeper({ dataDir: join(dir, 'zk'), clientPort: 0 });
      const procs = [1, 2].map((i) => l.start({ name: `p${i}`, script: null, args: ['-e', 'setInterval(() => {}, 1000)'] }));
      await l.killAll();
      for (const p of procs) expect(p.exit).toEqual({ code: null, signal: 'SIGKILL' });
      expect(alive(zk.pid)).toBe(false);
      await new Promise((r) => setTimeout(r, 300));
      for (const p of procs) expect(p.pids).toHaveLength(1);

      const l2 = launcher();
      const zk2 = await l2.startZooKeeper({ dataDir: join(dir, 'zk'), clientPort: 0 });
      // On SIGTERM it asks ZooKeeper ruok and exits 0 only if it answered: ZooKeeper outlived it.
      const askOnStop = `process.on('SIGTERM', () => {
        const s = require('node:net').createConnection({ host: '127.0.0.1', port: ${zk2.clientPort} });
        let out = '';
        s.on('connect', () => s.end('ruok'));
        s.on('data', (d) => (out += d));
        s.on('close', () => process.exit(out === 'imok' ? 0 : 5));
        s.on('error', () => process.exit(6));
      });
      console.log('ready');
      setInterval(() => {}, 1000);`;
      const p = l2.start({ name: 'after', script: null, args: ['-e', askOnStop] });
      await p.waitForOutput('ready');
      expect(await fourLetter(zk2.clientPort, 'ruok')).toBe('imok');
      await l2.stopAll();
      expect(p.exit).toEqual({ code: 0, signal: null });
      expect(alive(zk2.pid)).toBe(false);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
