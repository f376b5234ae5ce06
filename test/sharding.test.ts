// Orcs scale out and die: shard ownership through ZooKeeper locks, takeover and handover under
// load, computes killed with work in flight, and a ZooKeeper leader killed mid-burst. Every
// process is real and killed for real (SIGKILL).
import { afterAll, describe, expect, it } from 'vitest';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { http, startCluster, waitForUnit, type TestCluster } from './cluster.js';
import { uniqueRoot, useProcessGroup, waitFor, zkConnect } from './support/index.js';
import { startEnsemble, type Ensemble } from '../ts/dev/zookeeper.js';
import type { ComputeId } from '../ts/common/ids.js';
import { Zk } from '../ts/zk/client.js';
import { Paths } from '../ts/zk/paths.js';
import { createLogger } from '../ts/common/log.js';
import { ShardOwnership } from '../ts/orc/shards.js';
import { lockQueue } from '../ts/zk/recipes/lock.js';

const group = useProcessGroup();
const SESSION_MS = 2000;
const SHARDS = 64;
const big = ['--vcpus', '64', '--ram-mb', '262144', '--disk-gb', '10000'];
const small = { vcpus: 1, ram_mb: 256, disk_gb: 1 };

/** Boots n VMs; each request carries an Idempotency-Key, so a retried boot is never a second VM. */
async function boot(c: TestCluster, n: number, prefix: string) {
  const res = await Promise.all(
    Array.from({ length: n }, (_, i) =>
      waitFor(
        async () => {
          const r = await http(`${c.api}/v1/servers`, { method: 'POST', body: { name: `${prefix}-${i}`, flavor: small }, headers: { 'idempotency-key': `${prefix}-${i}` } });
          return r.status === 503 ? undefined : r; // the API answers 503 while ZooKeeper elects
        },
        { what: `boot ${prefix}-${i} accepted`, timeoutMs: 30_000, intervalMs: 200 },
      ),
    ),
  );
  for (const r of res) expect(r.status).toBe(202);
  return res.map((r) => r.body as { work_unit_id: string; server_id: string });
}

/** Shard → owner as the locks say, and each live orc's own claim; both must agree and cover all. */
async function ownership(c: TestCluster) {
  const shards = (await http<Record<string, string | null>>(`${c.api}/v1/shards`)).body;
  const orcs = (await http<Array<{ id: string; shards: number[] }>>(`${c.api}/v1/orcs`)).body;
  return { shards, orcs };
}

function ownedByExactlyOneLiveOrc(o: Awaited<ReturnType<typeof ownership>>, live: string[]): boolean {
  const claimed = new Map<number, string[]>();
  for (const orc of o.orcs) for (const n of orc.shards) claimed.set(n, [...(claimed.get(n) ?? []), orc.id]);
  for (let n = 0; n < SHARDS; n++) {
    const owner = o.shards[String(n)];
    if (!owner || !live.includes(owner)) return false;
    const who = claimed.get(n) ?? [];
    if (who.length !== 1 || who[0] !== owner) return false;
  }
  return true;
}

async function managedTotal(c: TestCluster): Promise<number> {
  const cs = (await http<Array<{ managing: number }>>(`${c.api}/v1/computes`)).body;
  return cs.reduce((n, x) => n + x.managing, 0);
}

async function libvirtTotal(c: TestCluster, ids: string[]): Promise<number> {
  let n = 0;
  for (const id of ids) {
    const v = await c.zk.get<{ domains: number }>(`${c.paths.self(id as ComputeId)}/hypervisor`);
    n += v?.value?.domains ?? 0;
  }
  return n;
}

describe('orc failover', () => {
  it('3 orcs, 60 boots, kill -9 one orc mid-flight: all 60 SUCCEED, 60 VMs, every shard re-owned in time', async () => {
    const c = await startCluster(group, { computes: 3, orcs: 3, sessionTimeoutMs: SESSION_MS, computeArgs: [...big, '--step-delay-ms', '25'] });
    try {
      const units = await boot(c, 60, 'fo');
      // The kill must take shards away: wait until orc-2 holds its share, as all three do.
      await waitFor(
        async () => {
          const o = await ownership(c);
          const held = (id: string) => o.orcs.find((x) => x.id === id)?.shards.length ?? 0;
          return ownedByExactlyOneLiveOrc(o, ['orc-1', 'orc-2', 'orc-3']) && ['orc-1', 'orc-2', 'orc-3'].every((id) => held(id) >= Math.floor(SHARDS / 3));
        },
        { what: 'the three orcs balanced before the kill', timeoutMs: 10_000, intervalMs: 50 },
      );
      const victim = c.orcs.get('orc-2')!;
      await group.kill9(victim.pid);
      const killedAt = Date.now();
      await waitFor(async () => ownedByExactlyOneLiveOrc(await ownership(c), ['orc-1', 'orc-3']), {
        what: 'every shard owned by exactly one live orc',
        timeoutMs: SESSION_MS + 1000 + 2000,
        intervalMs: 50,
      });
      const reowned = Date.now() - killedAt;
      console.log(JSON.stringify({ case: 'orc-kill', session_timeout_ms: SESSION_MS, shards_reowned_ms: reowned }));
      expect(reowned).toBeLessThanOrEqual(SESSION_MS + 1000);
      const done = await Promise.all(units.map((u) => waitForUnit(c.api, u.work_unit_id)));
      for (const u of done) {
        expect(u.state, JSON.stringify(u.error)).toBe('SUCCEEDED');
        expect((u as unknown as { attempts: number }).attempts).toBe(1); // placed once, never run twice
      }
      expect(await managedTotal(c)).toBe(60);
      await waitFor(async () => (await libvirtTotal(c, ['compute-1', 'compute-2', 'compute-3'])) === 60, { what: '60 libvirt domains' });
    } finally {
      await c.close();
    }
  });

  it('a 4th orc joining under load takes its share within 2 s; nothing lost or run twice', async () => {
    const c = await startCluster(group, { computes: 3, orcs: 3, sessionTimeoutMs: SESSION_MS, computeArgs: [...big, '--step-delay-ms', '25'] });
    try {
      const units = await boot(c, 60, 'join');
      const spawned = Date.now();
      const fourth = c.startOrc('orc-4');
      // "Ready" is when it joins the orcs' membership (after its cluster view is loaded).
      const joined = await waitFor(async () => ((await ownership(c)).orcs.some((o) => o.id === 'orc-4') ? Date.now() : undefined), {
        what: 'orc-4 to join',
        timeoutMs: 20_000,
        intervalMs: 20,
      });
      const share = Math.ceil(SHARDS / 4);
      const balanced = await waitFor(
        async () => {
          const o = await ownership(c);
          const mine = o.orcs.find((x) => x.id === 'orc-4')?.shards.length ?? 0;
          return mine === share && ownedByExactlyOneLiveOrc(o, ['orc-1', 'orc-2', 'orc-3', 'orc-4']) ? Date.now() : undefined;
        },
        { what: `orc-4 to own ${share} shards`, timeoutMs: 10_000, intervalMs: 20 },
      ).catch(async (e) => {
        // Rare in CI, not reproduced alone: leave what is needed to find out why.
        console.log('orc-join timed out; ownership:', JSON.stringify(await ownership(c)));
        const locks: Record<number, string[]> = {};
        for (let n = 0; n < SHARDS; n++) locks[n] = (await c.zk.children(c.paths.shardLock(n))) ?? [];
        console.log('lock queues:', JSON.stringify(locks));
        for (const [id, ch] of c.orcs) console.log(`${id} (running: ${ch.running}):\n${ch.lastLines(40)}`);
        throw e;
      });
      console.log(JSON.stringify({ case: 'orc-join', process_start_to_join_ms: joined - spawned, join_to_share_ms: balanced - joined }));
      expect(balanced - joined).toBeLessThanOrEqual(2000);
      expect(fourth.running).toBe(true);
      const more = await boot(c, 20, 'join-after');
      const done = await Promise.all([...units, ...more].map((u) => waitForUnit(c.api, u.work_unit_id)));
      for (const u of done) {
        expect(u.state, JSON.stringify(u.error)).toBe('SUCCEEDED');
        expect((u as unknown as { attempts: number }).attempts).toBe(1);
      }
      expect(await managedTotal(c)).toBe(80);
    } finally {
      await c.close();
    }
  });
});

describe('compute failure', () => {
  it('kill -9 a compute with work in flight: the work completes elsewhere and its VMs become LOST', async () => {
    const c = await startCluster(group, { computes: 3, orcs: 2, sessionTimeoutMs: SESSION_MS, computeArgs: [...big, '--step-delay-ms', '150'] });
    try {
      // First, VMs that will be on the victim when it dies.
      const first = await Promise.all((await boot(c, 6, 'settled')).map((u) => waitForUnit(c.api, u.work_unit_id)));
      const onVictim = first.filter((u) => u.compute_id === 'compute-3').map((u) => u.server_id);
      expect(onVictim.length).toBeGreaterThan(0); // spread placement uses every compute
      const burst = await boot(c, 12, 'inflight');
      await waitFor(
        async () => (await http<Array<{ id: string; active_tasks: number }>>(`${c.api}/v1/computes`)).body.find((x) => x.id === 'compute-3')!.active_tasks > 0,
        { what: 'work in flight on compute-3', timeoutMs: 10_000, intervalMs: 20 },
      );
      await group.kill9(c.computes.get('compute-3')!.pid);
      const done = await Promise.all(burst.map((u) => waitForUnit(c.api, u.work_unit_id, 30_000)));
      const moved = done.filter((u) => (u as unknown as { attempts: number }).attempts > 1);
      expect(moved.length).toBeGreaterThan(0);
      for (const u of done) {
        expect(u.state, JSON.stringify(u.error)).toBe('SUCCEEDED');
        expect(u.compute_id).not.toBe('compute-3');
      }
      for (const id of onVictim) {
        await waitFor(async () => (await http(`${c.api}/v1/servers/${id}`)).body.status === 'LOST', { what: `server ${id} LOST`, timeoutMs: 10_000 });
      }
      // The survivors hold exactly the builds that succeeded: 6 − lost + 12.
      const survivors = (await http<Array<{ id: string; managing: number }>>(`${c.api}/v1/computes`)).body.filter((x) => x.id !== 'compute-3');
      expect(survivors.reduce((n, x) => n + x.managing, 0)).toBe(6 - onVictim.length + 12);
    } finally {
      await c.close();
    }
  });
});

describe('ZooKeeper ensemble', () => {
  let ensemble: Ensemble | undefined;
  let dir: string | undefined;
  afterAll(async () => {
    await ensemble?.stop();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('kill the ZooKeeper leader during a burst of boots: all work completes', async () => {
    dir = await mkdtemp(join(tmpdir(), 'quark-ensemble-'));
    ensemble = await startEnsemble({ baseDir: dir, size: 3 });
    const c = await startCluster(group, {
      computes: 3,
      orcs: 2,
      zk: ensemble.connectionString,
      sessionTimeoutMs: 4000,
      computeArgs: [...big, '--step-delay-ms', '20'],
    });
    try {
      const units = await boot(c, 40, 'zk');
      const leader = await ensemble.leader();
      await ensemble.servers[leader]!.kill();
      const more = await boot(c, 10, 'zk-after');
      const done = await Promise.all([...units, ...more].map((u) => waitForUnit(c.api, u.work_unit_id, 60_000)));
      for (const u of done) expect(u.state, JSON.stringify(u.error)).toBe('SUCCEEDED');
      expect(await managedTotal(c)).toBe(50);
    } finally {
      await c.close();
    }
  });
});

describe('shard locks (ShardOwnership in-process, against the real ZooKeeper)', () => {
  /** Each orc's claim must be exactly the shards whose lock queue it heads. */
  async function claimsMatchLocks(admin: Zk, paths: Paths, shards: number, orcs: ShardOwnership[]): Promise<string | true> {
    for (let n = 0; n < shards; n++) {
      const head = lockQueue((await admin.children(paths.shardLock(n))) ?? [])[0]?.owner;
      for (const o of orcs) {
        if (o.owned.has(n) !== (head === o.orcId)) return `shard ${n}: lock head ${head ?? 'none'}, ${o.orcId} claims it: ${o.owned.has(n)}`;
      }
    }
    return true;
  }

  it('a shard that stops being wanted while its lock is being confirmed is never claimed without the lock', async () => {
    const paths = new Paths(uniqueRoot('shards'));
    const admin = await Zk.connect(zkConnect());
    await admin.mkdirp(paths.orcs);
    const zkA = await Zk.connect(zkConnect());
    const zkB = await Zk.connect(zkConnect());
    const log = createLogger({}, 'error');
    const a = new ShardOwnership(zkA, paths, 'a', 2, log);
    const b = new ShardOwnership(zkB, paths, 'b', 2, log);
    // Hold b's ownership confirmation of shard 1 (its exists, without a watch, on its own lock
    // candidate) once the server has answered it: a membership change lands in that window.
    const lock1 = paths.shardLock(1);
    let entered!: () => void;
    const held = new Promise<void>((r) => (entered = r));
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    let armed = true;
    const exists = zkB.exists.bind(zkB);
    zkB.exists = async (path, watch) => {
      const st = await exists(path, watch);
      if (armed && !watch && path.startsWith(`${lock1}/c-b-`)) {
        armed = false;
        entered();
        await gate;
      }
      return st;
    };
    try {
      await a.start();
      await waitFor(() => a.owned.size === 2, { what: 'a to own both shards' });
      // b joins: a hands shard 1 over, and b, first in line, confirms the lock (held here).
      await b.start();
      await Promise.race([held, new Promise((_, reject) => setTimeout(() => reject(new Error('b never confirmed shard 1')), 10_000))]);
      // A member ranked ahead of b: b now wants no shard. Give b's rebalance time to act.
      await admin.create(paths.orc('aa'), undefined, 'ephemeral');
      await waitFor(async () => lockQueue((await admin.children(lock1)) ?? []).every((c) => c.owner !== 'b'), {
        what: 'b to leave shard 1',
        timeoutMs: 1000,
      }).catch(() => {});
      release();
      await new Promise((r) => setTimeout(r, 500));
      expect(await claimsMatchLocks(admin, paths, 2, [a, b])).toBe(true);
    } finally {
      release();
      await b.stop();
      await a.stop();
      await Promise.all([zkA.close(), zkB.close()]);
      await admin.removeTree(paths.root);
      await admin.close();
    }
  });
});
