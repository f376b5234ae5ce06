import { describe, expect, it } from 'vitest';
import { fourLetter } from '../../ts/dev/zookeeper.js';
import { isAlive as alive, ProcessGroup, uniqueRoot, useProcessGroup, waitFor, zkConnect } from './index.js';

describe('the suite ZooKeeper', () => {
  it('is provided by the global setup and answers ruok', async () => {
    const connect = zkConnect();
    const port = Number(/^127\.0\.0\.1:(\d+)$/.exec(connect)?.[1]);
    expect(port).toBeGreaterThan(0);
    expect(await fourLetter(port, 'ruok')).toBe('imok');
  });
});

describe('uniqueRoot', () => {
  it('gives distinct absolute paths with the prefix', () => {
    const a = uniqueRoot();
    expect(a).toMatch(/^\/quark-test-[0-9a-f]{12}$/);
    expect(uniqueRoot()).not.toBe(a);
    expect(uniqueRoot('orc')).toMatch(/^\/orc-/);
  });
});

describe('waitFor', () => {
  it('returns the first value that is not undefined, null or false', async () => {
    let n = 0;
    expect(await waitFor(() => (++n >= 3 ? n : undefined), { what: 'three calls', intervalMs: 1 })).toBe(3);
    expect(await waitFor(async () => 0, { what: 'zero' })).toBe(0);
  });

  it('names what it waited for and the last error on timeout', async () => {
    await expect(
      waitFor(
        () => {
          throw new Error('not yet');
        },
        { what: 'the moon', timeoutMs: 100, intervalMs: 10 },
      ),
    ).rejects.toThrow(/timed out after \d+ ms waiting for the moon \(last error: not yet\)/);
  });

  it('does not hang on an attempt that never settles', async () => {
    await expect(waitFor(() => new Promise<never>(() => {}), { what: 'a hung call', timeoutMs: 100 })).rejects.toThrow(
      /waiting for a hung call/,
    );
  });
});

describe('ProcessGroup', () => {
  const procs = useProcessGroup({ graceMs: 500 });
  let fromPreviousTest = 0;

  it('captures output and waits for a line', async () => {
    const c = procs.spawn(['-e', 'console.log("hello"); console.error("oops"); setInterval(() => {}, 1000)'], {
      label: 'greeter',
    });
    expect(await c.waitForOutput('hello')).toBe('hello');
    await c.waitForOutput(/oops/);
    expect(c.stdout()).toBe('hello');
    expect(c.lastLines()).toContain('[stderr] oops');
    expect(c.running).toBe(true);
    fromPreviousTest = c.pid;
  });

  it('stopped the previous test’s children after it', () => {
    expect(fromPreviousTest).toBeGreaterThan(0);
    expect(alive(fromPreviousTest)).toBe(false);
  });

  it('kill9 is a crash', async () => {
    const c = procs.spawn(['-e', 'setInterval(() => {}, 1000)']);
    await procs.kill9(c.pid);
    expect(c.exit).toEqual({ code: null, signal: 'SIGKILL' });
  });

  it('stopAll escalates to SIGKILL and takes grandchildren with it', async () => {
    const group = new ProcessGroup(300);
    const stubborn = group.spawn([
      '-e',
      `process.on('SIGTERM', () => {});
       const { spawn } = require('node:child_process');
       const g = spawn(process.execPath, ['-e', 'setInterval(() => {}, 1000)'], { stdio: 'ignore' });
       console.log('grandchild ' + g.pid);
       setInterval(() => {}, 1000);`,
    ]);
    const grandchild = Number((await stubborn.waitForOutput(/^grandchild \d+$/)).split(' ')[1]);
    expect(alive(grandchild)).toBe(true);
    await group.stopAll();
    expect(stubborn.exit?.signal).toBe('SIGKILL');
    await waitFor(() => !alive(grandchild), { what: 'the grandchild to be gone', timeoutMs: 2_000 });
  });

  it('waitForOutput rejects with the tail when the child exits first', async () => {
    const c = procs.spawn(['-e', 'console.log("bye"); process.exit(3)'], { label: 'quitter' });
    await expect(c.waitForOutput('never printed')).rejects.toThrow(/quitter .* exited before printing[\s\S]*bye/);
    expect((await c.exited).code).toBe(3);
  });
});
