// The ZooKeeper wrapper against a real server: values, exact versions in transactions (the
// version-0 hazard of node-zookeeper-client 1.1.3), and the watch recipes.
import { describe, expect, it } from 'vitest';
import zookeeper from 'node-zookeeper-client';
import { credentialsFromEnv } from './acl.js';
import { Zk } from './client.js';
import { isZkError, ZkError } from './errors.js';
import { watchChildren } from './recipes/watch.js';
import { uniqueRoot, useZkRoot, waitFor, zkConnect } from '../../test/support/index.js';

let zk: Zk;
const root = uniqueRoot('zk-client');

useZkRoot(root, (z) => (zk = z));

describe('values', () => {
  it('round-trips msgpack values and reports versions', async () => {
    await zk.create(`${root}/v`, { a: 1, b: ['x'] });
    const got = await zk.get<{ a: number; b: string[] }>(`${root}/v`);
    expect(got?.value).toEqual({ a: 1, b: ['x'] });
    expect(got?.stat.version).toBe(0);
    expect(await zk.get(`${root}/missing`)).toBeNull();
  });
});

describe('reply framing', () => {
  // Replies are split into frames without the library's recursive re-concatenation: thousands
  // of small replies arrive many to a chunk, and a large one spans many chunks.
  it('reads thousands of replies in one burst and a 900 KB value across chunks, in order', async () => {
    const small = `${root}/small`;
    const big = `${root}/big`;
    await zk.create(small, { n: 7 });
    const blob = Buffer.alloc(900 * 1024, 7).toString('latin1');
    await zk.create(big, blob);
    const gets = await Promise.all([
      ...Array.from({ length: 3000 }, (_, i) => (i === 1500 ? zk.get<string>(big) : zk.get<{ n: number }>(small))),
      zk.children(root),
    ]);
    for (let i = 0; i < 3000; i++) {
      if (i === 1500) expect((gets[i] as { value: string }).value).toBe(blob);
      else expect((gets[i] as { value: { n: number } }).value).toEqual({ n: 7 });
    }
    expect(gets[3000]).toEqual(expect.arrayContaining(['small', 'big']));
  });
});

describe('transactions keep version 0 exact', () => {
  // Regression: the library's own Transaction.setData(path, data, 0) sends -1 ("any version").
  it('the raw library turns version 0 into "any" (the hazard we wrap)', async () => {
    const p = `${root}/raw`;
    await zk.create(p, 1);
    await zk.set(p, 2, 0); // now at version 1
    const client = zookeeper.createClient(zkConnect());
    // The suite's nodes are under ACLs: the raw client authenticates as the suite's admin too.
    for (const i of credentialsFromEnv()?.identities ?? []) client.addAuthInfo('digest', Buffer.from(`${i.user}:${i.password}`));
    await new Promise<void>((r) => {
      client.once('connected', () => r());
      client.connect();
    });
    const err = await new Promise<unknown>((r) => client.transaction().setData(p, Buffer.from([3]), 0).commit((e) => r(e)));
    client.close();
    expect(err).toBeFalsy(); // a stale version-0 write went through: the bug is real
  });

  it('set with a stale version 0 fails with BAD_VERSION at that op', async () => {
    const p = `${root}/set0`;
    await zk.create(p, 'first');
    await zk.txn().set(p, 'second', 0).commit(); // exact version 0 matches a fresh node
    const e = await zk.txn().create(`${root}/side`).set(p, 'third', 0).commit().catch((x: unknown) => x);
    expect(e).toBeInstanceOf(ZkError);
    expect((e as ZkError).code).toBe('BAD_VERSION');
    expect((e as ZkError).opIndex).toBe(1);
    expect((e as ZkError).path).toBe(p);
    expect(await zk.exists(`${root}/side`)).toBeNull(); // all or nothing
    expect((await zk.get(p))?.value).toBe('second');
  });

  it('check and remove with a stale version 0 fail too', async () => {
    const p = `${root}/chk0`;
    await zk.create(p, 1);
    await zk.set(p, 2, 0);
    const c = await zk.txn().check(p, 0).commit().catch((x: unknown) => x);
    expect(isZkError(c, 'BAD_VERSION')).toBe(true);
    const r = await zk.txn().remove(p, 0).commit().catch((x: unknown) => x);
    expect(isZkError(r, 'BAD_VERSION')).toBe(true);
    await zk.txn().check(p, 1).remove(p, 1).commit();
    expect(await zk.exists(p)).toBeNull();
  });

  it('rejects versions below -1 before sending', () => {
    expect(() => zk.txn().set(`${root}/x`, 1, -2)).toThrow(/invalid znode version/);
  });
});

describe('watch recipes', () => {
  it('watchChildren follows creations and deletions, including of the parent', async () => {
    const p = `${root}/kids`;
    const seen: Array<string[] | null> = [];
    const w = watchChildren(zk, p, (k) => seen.push(k ? [...k].sort() : null));
    await waitFor(() => seen.length >= 1, { what: 'first report' });
    expect(seen[0]).toBeNull();
    await zk.create(p);
    await zk.create(`${p}/a`);
    await waitFor(() => seen.some((s) => s?.includes('a')), { what: 'child a' });
    await zk.remove(`${p}/a`);
    await waitFor(() => JSON.stringify(seen[seen.length - 1]) === '[]', { what: 'child a removed' });
    w.stop();
  });
});
