// claimEphemeral against the real ZooKeeper: a free node is created, this session's own is kept,
// a dead holder (its link cut, its session left to expire) is waited out, a live holder is
// refused after the wait, and no other session's node is ever deleted.
import { describe, expect, it } from 'vitest';
import { Zk } from '../client.js';
import { claimEphemeral, IdentityInUse, maxSessionTimeoutMs } from './ephemeral.js';
import { FaultyLink } from '../../../test/support/proxy.js';
import { uniqueRoot, useZkRoot, zkConnect } from '../../../test/support/index.js';

describe('claimEphemeral', () => {
  let zk: Zk;
  const root = uniqueRoot('claim');
  useZkRoot(root, (z) => (zk = z));

  it('creates the node and its missing parents, with the extra ops in the same transaction', async () => {
    const p = `${root}/fresh/a/alive`;
    await claimEphemeral(zk, p, { pid: 1 }, { what: 'x', alongWith: (txn) => txn.set(`${root}/fresh/a`, undefined, -1) });
    const st = (await zk.exists(p))!;
    expect(st.ephemeralOwner).toBe(zk.sessionId);
    expect((await zk.get(p))!.value).toEqual({ pid: 1 });
    expect((await zk.exists(`${root}/fresh/a`))!.version).toBe(1);
  });

  it("takes this session's own node as it is", async () => {
    const p = `${root}/own`;
    await zk.create(p, 'first', 'ephemeral');
    await claimEphemeral(zk, p, 'second', { what: 'x', waitMs: 100 });
    expect((await zk.get(p))!.value).toBe('first');
  });

  it("waits out a dead holder's node until its session expires, then claims it", async () => {
    const p = `${root}/dead`;
    const link = await FaultyLink.start(zkConnect());
    const holder = await Zk.connect(link.address, { sessionTimeoutMs: 2000 });
    try {
      await holder.create(p, 'old', 'ephemeral');
      const old = holder.sessionId;
      link.sever(); // the holder is gone; its session lives on at the server until it expires
      const t0 = Date.now();
      await claimEphemeral(zk, p, 'new', { what: 'x', waitMs: 20_000 });
      const waited = Date.now() - t0;
      const st = (await zk.exists(p))!;
      expect(st.ephemeralOwner).toBe(zk.sessionId);
      expect(st.ephemeralOwner).not.toBe(old);
      expect((await zk.get(p))!.value).toBe('new');
      // Not before the old session could expire, and well before the bound.
      expect(waited).toBeGreaterThan(1000);
      expect(waited).toBeLessThan(10_000);
    } finally {
      await holder.close();
      await link.close();
    }
  });

  it('refuses a live holder after the wait, naming its session, and leaves its node alone', async () => {
    const p = `${root}/live`;
    const holder = await Zk.connect(zkConnect());
    try {
      await holder.create(p, 'holder', 'ephemeral');
      const t0 = Date.now();
      const err = await claimEphemeral(zk, p, 'intruder', { what: 'compute id c-1', waitMs: 1500 }).catch((e: unknown) => e);
      expect(Date.now() - t0).toBeGreaterThanOrEqual(1500);
      expect(err).toBeInstanceOf(IdentityInUse);
      expect((err as Error).message).toMatch(new RegExp(`^compute id c-1 is in use by a live session 0x${holder.sessionId}`));
      const st = (await zk.exists(p))!;
      expect(st.ephemeralOwner).toBe(holder.sessionId);
      expect((await zk.get(p))!.value).toBe('holder');
    } finally {
      await holder.close();
    }
  });

  it('refuses a persistent node at once', async () => {
    const p = `${root}/persistent`;
    await zk.create(p, 'x');
    await expect(claimEphemeral(zk, p, 'y', { what: 'x', waitMs: 60_000 })).rejects.toThrow(/exists and is not ephemeral/);
  });
});

describe('maxSessionTimeoutMs', () => {
  it("is the server's maximum, learned from a session that asks for more", async () => {
    // test/setup/zookeeper.ts starts the server with ts/dev/zookeeper.ts's default maximum, 60 s.
    expect(await maxSessionTimeoutMs(zkConnect())).toBe(60_000);
  });
});
