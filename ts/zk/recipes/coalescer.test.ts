// The one "run once more afterwards": pure logic, no server.
import { describe, expect, it } from 'vitest';
import { Coalescer } from './coalescer.js';

const tick = () => new Promise((r) => setTimeout(r, 1));

describe('Coalescer', () => {
  it('runs one body at a time; calls during a run make exactly one more run, and every caller waits for it', async () => {
    let runs = 0;
    let inside = 0;
    let most = 0;
    let release!: () => void;
    const c = new Coalescer(
      async () => {
        runs++;
        inside++;
        most = Math.max(most, inside);
        if (runs === 1) await new Promise<void>((r) => (release = r));
        inside--;
      },
      () => false,
      (e) => {
        throw e;
      },
    );
    const first = c.run();
    expect(c.busy).toBe(true);
    const joined = [c.run(), c.run(), c.run()];
    let settled = 0;
    for (const p of [first, ...joined]) void p.then(() => settled++);
    await tick();
    expect(settled).toBe(0);
    release();
    await Promise.all([first, ...joined]);
    expect(runs).toBe(2);
    expect(most).toBe(1);
    expect(c.busy).toBe(false);
    await c.run();
    expect(runs).toBe(3);
  });

  it('a body returning true runs again; after() follows the burst once', async () => {
    const seen: string[] = [];
    let left = 3;
    const c = new Coalescer(
      async () => {
        seen.push('body');
        return --left > 0;
      },
      () => false,
      () => seen.push('error'),
      () => seen.push('after'),
    );
    await c.run();
    expect(seen).toEqual(['body', 'body', 'body', 'after']);
  });

  it('an error ends the burst and goes to onError; the next call runs again', async () => {
    const errors: unknown[] = [];
    let fail = true;
    let runs = 0;
    let afters = 0;
    const c = new Coalescer(
      async () => {
        runs++;
        if (fail) throw new Error('boom');
      },
      () => false,
      (e) => errors.push(e),
      () => afters++,
    );
    await expect(c.run()).resolves.toBeUndefined();
    expect(errors).toHaveLength(1);
    expect(afters).toBe(0);
    fail = false;
    await c.run();
    expect(runs).toBe(2);
    expect(afters).toBe(1);
  });

  it('nothing runs once stopped, and a burst stops between runs', async () => {
    let stopped = false;
    let runs = 0;
    const c = new Coalescer(
      async () => {
        runs++;
        stopped = true;
        return true; // would run again, but stop wins
      },
      () => stopped,
      () => {},
    );
    await c.run();
    expect(runs).toBe(1);
    await c.run();
    expect(runs).toBe(1);
  });
});
