// The bounded retry of optimistic read-modify-writes: the bound itself (pure), and a real
// version conflict loop against ZooKeeper that wins, and one that never can.
import { describe, expect, it } from 'vitest';
import type { Zk } from '../client.js';
import { isZkError } from '../errors.js';
import { ConflictRetries, ConflictRetriesExhausted } from './retry.js';
import { uniqueRoot, useZkRoot } from '../../../test/support/index.js';

describe('ConflictRetries', () => {
  it('allows max attempts, then throws naming what it gave up on', () => {
    const c = new ConflictRetries('bump /x', 3);
    expect(c.attempts).toBe(1);
    c.again();
    c.again();
    expect(c.attempts).toBe(3);
    expect(() => c.again()).toThrow(ConflictRetriesExhausted);
    expect(() => c.again()).toThrow('bump /x: gave up after 3 attempts in a row, each lost to a concurrent write (version conflict)');
  });

  it('rejects a bound that is not a positive integer', () => {
    expect(() => new ConflictRetries('x', 0)).toThrow(/positive integer/);
    expect(() => new ConflictRetries('x', 1.5)).toThrow(/positive integer/);
  });
});

describe('a read-modify-write loop against ZooKeeper', () => {
  let zk: Zk;
  const root = uniqueRoot('retry');
  useZkRoot(root, (z) => (zk = z));

  /** Adds 1 to the counter at `path`; `meddle` runs between the read and the versioned write. */
  async function increment(path: string, meddle: (attempt: number) => Promise<void>, max: number): Promise<number> {
    for (const conflicts = new ConflictRetries(`increment ${path}`, max); ; conflicts.again()) {
      const cur = (await zk.get<number>(path))!;
      await meddle(conflicts.attempts);
      try {
        await zk.set(path, (cur.value ?? 0) + 1, cur.stat.version);
        return conflicts.attempts;
      } catch (e) {
        if (isZkError(e, 'BAD_VERSION')) continue;
        throw e;
      }
    }
  }

  it('reads again after each conflict and wins once the other writer stops', async () => {
    const p = `${root}/wins`;
    await zk.create(p, 0);
    const attempts = await increment(p, async (n) => void (n < 3 && (await zk.set(p, 100 * n, -1))), 10);
    expect(attempts).toBe(3);
    expect((await zk.get<number>(p))!.value).toBe(201); // the other writer's last value, plus ours
  });

  it('gives up with ConflictRetriesExhausted when every attempt loses', async () => {
    const p = `${root}/loses`;
    await zk.create(p, 0);
    let meddled = 0;
    const err = await increment(p, async () => void (meddled++, await zk.set(p, -1, -1)), 5).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ConflictRetriesExhausted);
    expect((err as Error).message).toContain(`increment ${p}: gave up after 5 attempts`);
    expect(meddled).toBe(5);
    expect((await zk.get<number>(p))!.value).toBe(-1);
  });
});
