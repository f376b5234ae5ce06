// Restarts after an unclean stop, with every process real and killed for real:
// (a) a power cut: the api, both orcs, the computes and ZooKeeper SIGKILLed at once while boots are
//     in flight, then all started again on the same ZooKeeper data. Invariant: no lost work (every
//     accepted unit reaches a terminal state) and no process dies of its predecessor's ephemeral
//     nodes (every orc and compute of the restarted cluster keeps running).
// (b) a second compute, and a second orc, started with an id whose holder is alive: each refuses
//     to start with a clear error, and the first runs on untouched.
// (c) a compute started again at once waits out its predecessor's `alive`, so the orcs see it gone
//     and mark its VMs LOST, racing its return (its reconcile restores what it reads as LOST).
//     Invariant: no LOST mark lands after the compute came back.
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { Launcher, QuarkCluster, type LaunchedProcess } from '../ts/dev/cluster.js';
import { freePorts } from '../ts/dev/zookeeper.js';
import { Zk } from '../ts/zk/client.js';
import { Paths } from '../ts/zk/paths.js';
import { newServerId, type ComputeId } from '../ts/common/ids.js';
import { createLogger } from '../ts/common/log.js';
import { DEFAULT_CONFIG, type ComputeCapacity, type ManagedRecord, type ServerRecord } from '../ts/common/model.js';
import { Orc } from '../ts/orc/orc.js';
import { createClusterView } from '../ts/orc/placement/index.js';
import { readConfig } from '../ts/zk/config.js';
import { claimEphemeral } from '../ts/zk/recipes/ephemeral.js';
import { http, useAdminToken, waitForUnit } from './cluster.js';
import { mintAdminToken } from '../ts/auth/local.js';
import { uniqueRoot, waitFor, zkConnect } from './support/index.js';

const SESSION_MS = 2000;
/** Long enough that the killed processes' sessions outlive the ZooKeeper restart and the new processes' start. */
const CUT_SESSION_MS = 6000;
const big = ['--vcpus', '64', '--ram-mb', '262144', '--disk-gb', '10000'];
const small = { vcpus: 1, ram_mb: 256, disk_gb: 1 };
const TERMINAL = new Set(['SUCCEEDED', 'FAILED']);

const dirs: string[] = [];
const launchers: Launcher[] = [];
afterAll(async () => {
  // Everything these tests started, by pid (also after a failure), then their data.
  await Promise.all(launchers.map((l) => l.stopAll().catch(() => {})));
  await Promise.all(dirs.map((d) => rm(d, { recursive: true, force: true })));
});

/** Unsupervised: a process that dies stays dead, so the test sees it. */
function launcher(): Launcher {
  const l = new Launcher({ graceMs: 3000 });
  launchers.push(l);
  return l;
}

function report(procs: Iterable<LaunchedProcess>): string {
  return [...procs].map((p) => `----- ${p.name} (pid ${p.pid}, ${p.running ? 'running' : JSON.stringify(p.exit)}) -----\n${p.lastLines(30)}`).join('\n');
}

async function boot(api: string, name: string): Promise<string> {
  const r = await http<{ work_unit_id: string }>(`${api}/v1/servers`, { method: 'POST', body: { name, flavor: small }, headers: { 'idempotency-key': name } });
  expect(r.status).toBe(202);
  return r.body.work_unit_id;
}

describe('power cut: every process and ZooKeeper killed at once, then all started again on the same data', () => {
  it('every accepted unit reaches a terminal state and every orc and compute of the restarted cluster keeps running', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'quark-power-cut-'));
    dirs.push(dir);
    const [zkPort, apiPort] = await freePorts(2);
    const root = '/quark';
    let token: string | undefined; // minted once: it lives in ZooKeeper's data, across the cut
    const up = async (l: Launcher) => {
      const zk = await l.startZooKeeper({ dataDir: join(dir, 'zk'), clientPort: zkPort! });
      token ??= await mintAdminToken(zk.connectionString, root);
      const c = new QuarkCluster(l, { zk: zk.connectionString, root, sessionTimeoutMs: CUT_SESSION_MS, apiPort: apiPort!, computeArgs: [...big, '--step-delay-ms', '150'], token });
      useAdminToken(c.api, token);
      c.startApi();
      for (const id of ['orc-1', 'orc-2']) c.startOrc(id);
      for (const id of ['compute-1', 'compute-2', 'compute-3']) c.startCompute(id);
      return c;
    };

    const first = launcher();
    const before = await up(first);
    await before.ready({ computes: 3 });
    const units = await Promise.all(Array.from({ length: 30 }, (_, i) => boot(before.api, `pc-${i}`)));
    const firstProcs = [before.apiProc!, ...before.orcs.values(), ...before.computes.values()];
    // Cut the power while work is in flight: some VMs built, some building...
    await waitFor(
      async () => {
        const servers = (await http<Array<{ status: string }>>(`${before.api}/v1/servers`)).body;
        return servers.filter((x) => x.status === 'ACTIVE').length >= 3 && servers.some((x) => x.status === 'BUILDING');
      },
      { what: 'boots in flight', timeoutMs: 30_000, intervalMs: 50 },
    ).catch((err: unknown) => {
      console.error(report(firstProcs));
      throw err;
    });
    // ...and some just accepted, not yet placed: the cut comes as the first answers of a burst do.
    let answered = 0;
    let cut!: () => void;
    const cutNow = new Promise<void>((r) => (cut = r));
    const burst = Array.from({ length: 30 }, async (_, i) => {
      const name = `pc-late-${i}`;
      const r = await http<{ work_unit_id: string }>(`${before.api}/v1/servers`, { method: 'POST', body: { name, flavor: small }, headers: { 'idempotency-key': name } }).catch(() => null);
      if (r?.status === 202 && ++answered >= 10) cut();
      return r?.status === 202 ? r.body.work_unit_id : null;
    });
    await cutNow;
    await first.killAll();
    const late = (await Promise.all(burst)).filter((u): u is string => u !== null);
    units.push(...late);

    const after = await up(launcher());
    const restarted = [after.apiProc!, ...after.orcs.values(), ...after.computes.values()];
    try {
      const done = await Promise.all(units.map((u) => waitForUnit(after.api, u, 60_000)));
      for (const u of done) expect(TERMINAL.has(u.state), JSON.stringify(u)).toBe(true);
      await after.ready({ computes: 3, timeoutMs: 30_000 });
      const orcs = (await http<Array<{ id: string; shards: number[] }>>(`${after.api}/v1/orcs`)).body;
      expect(orcs.map((o) => o.id).sort()).toEqual(['orc-1', 'orc-2']);
      for (const p of restarted) expect(p.running, `${p.name} exited: ${JSON.stringify(p.exit)}\n${p.lastLines(20)}`).toBe(true);
      const failed = done.filter((u) => u.state === 'FAILED').map((u) => u.error?.code ?? '?');
      console.log(`[power cut] ${done.length - failed.length} of ${done.length} SUCCEEDED; FAILED: ${JSON.stringify(failed)}`);
    } catch (err) {
      console.error(report(restarted));
      throw err;
    }
  }, 240_000);
});

describe('an id already held by a live process', () => {
  it('a second compute and a second orc with a live id refuse to start, naming the session; the first ones run on untouched', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'quark-live-id-'));
    dirs.push(dir);
    const l = launcher();
    // A short server maximum session timeout: the refusal comes after it (plus a margin).
    const server = await l.startZooKeeper({ dataDir: join(dir, 'zk'), clientPort: 0, maxSessionTimeout: 3000 });
    const [apiPort] = await freePorts(1);
    const root = '/quark';
    const token = await mintAdminToken(server.connectionString, root);
    const c = new QuarkCluster(l, { zk: server.connectionString, root, sessionTimeoutMs: SESSION_MS, apiPort: apiPort!, token });
    useAdminToken(c.api, token);
    c.startApi();
    const orc = c.startOrc('orc-1');
    const compute = c.startCompute('compute-1', big);
    await c.ready({ computes: 1 });
    const first = await waitForUnit(c.api, await boot(c.api, 'kept'));
    expect(first.state).toBe('SUCCEEDED');

    const zk = await Zk.connect(server.connectionString);
    const paths = new Paths(root);
    const cid = 'compute-1' as ComputeId;
    try {
      const alive = (await zk.exists(paths.alive(cid)))!;
      const member = (await zk.exists(paths.orc('orc-1')))!;
      const capacity = (await zk.get<ComputeCapacity>(paths.selfCapacity(cid)))!;

      // Different capacities: a duplicate that got as far as publishing itself would show.
      const twin = c.start('compute-1-twin', ['compute', '--id', 'compute-1', '--vcpus', '1', '--ram-mb', '512', '--disk-gb', '5']);
      const orcTwin = c.start('orc-1-twin', ['orc', '--id', 'orc-1']);
      const [twinExit, orcTwinExit] = await Promise.race([
        Promise.all([twin.done, orcTwin.done]),
        new Promise<never>((_, reject) =>
          setTimeout(() => reject(new Error(`still running after 30 s: ${[twin, orcTwin].filter((p) => p.running).map((p) => p.name).join(', ')}`)), 30_000),
        ),
      ]);
      expect(twinExit.code, twin.lastLines()).toBe(1);
      expect(twin.stderr()).toMatch(new RegExp(`compute id compute-1 is in use by a live session 0x${alive.ephemeralOwner}`));
      expect(orcTwinExit.code, orcTwin.lastLines()).toBe(1);
      expect(orcTwin.stderr()).toMatch(new RegExp(`orc id orc-1 is in use by a live session 0x${member.ephemeralOwner}`));

      // The first ones: running, their nodes the same session's, nothing of theirs rewritten.
      expect(compute.running).toBe(true);
      expect(orc.running).toBe(true);
      expect((await zk.exists(paths.alive(cid)))!.ephemeralOwner).toBe(alive.ephemeralOwner);
      expect((await zk.exists(paths.orc('orc-1')))!.ephemeralOwner).toBe(member.ephemeralOwner);
      const capNow = (await zk.get<ComputeCapacity>(paths.selfCapacity(cid)))!;
      expect(capNow.value).toEqual(capacity.value);
      expect(capNow.stat.version).toBe(capacity.stat.version);
      const owners = (await http<Record<string, string | null>>(`${c.api}/v1/shards`)).body;
      expect(new Set(Object.values(owners))).toEqual(new Set(['orc-1']));
      expect((await http<{ status: string }>(`${c.api}/v1/servers/${first.server_id}`)).body.status).toBe('ACTIVE');
      const next = await waitForUnit(c.api, await boot(c.api, 'still-works'));
      expect(next.state, JSON.stringify(next.error)).toBe('SUCCEEDED');
      expect(next.compute_id).toBe('compute-1');
    } catch (err) {
      console.error(report(l.procs));
      throw err;
    } finally {
      await zk.close();
    }
  }, 120_000);
});

describe('a compute that comes back while an orc is marking its VMs LOST', () => {
  // In process, so the race can be held open: the orc's LOST write of one VM is stopped just
  // before it leaves, the compute comes back (claims `alive`, reads the VM's server record as
  // ACTIVE, so it has nothing to restore), and only then is the write let go.
  it('a mark that would land after the return is refused: the VM stays ACTIVE', async () => {
    const paths = new Paths(uniqueRoot('return'));
    const admin = await Zk.connect(zkConnect());
    await readConfig(admin, paths, { shards: 1 });
    const id = 'c-1' as ComputeId;
    const vm = newServerId();
    const consumes = { vcpus: 1, ram_mb: 256, disk_gb: 1, bandwidth_mbps: 0 };
    const server: ServerRecord = { id: vm, name: 'kept', status: 'ACTIVE', compute_id: id, flavor: small, labels: [], zone: null, created_at: Date.now(), task: null };
    const managed: ManagedRecord = { server_id: vm, name: 'kept', kind: 'vm', birthed_on: Date.now(), consumes, status: 'ACTIVE' };
    await admin.mkdirp(paths.managing(id));
    await admin.mkdirp(paths.self(id));
    await admin.create(paths.selfCapacity(id), { ...consumes, vcpus: 8, ram_mb: 8192, disk_gb: 100, zone: 'default', labels: [], libvirt_uri: 'test:///default' });
    await admin.create(paths.selfFree(id), { vcpus: 7, ram_mb: 7936, disk_gb: 99, bandwidth_mbps: 0 });
    await admin.create(paths.server(vm), server);
    await admin.create(paths.managed(id, vm), managed);
    const claim = (zk: Zk) => claimEphemeral(zk, paths.alive(id), { pid: 1, host: 'h', started_at: Date.now() }, { what: `compute id ${id}`, alongWith: (t) => t.set(paths.compute(id), undefined, -1) });
    const before = await Zk.connect(zkConnect(), { sessionTimeoutMs: 2000 });
    await claim(before);

    const orcZk = await Zk.connect(zkConnect());
    // Hold the orc's write of this server record (single or in a transaction) until released.
    let held!: () => void;
    const reached = new Promise<void>((r) => (held = r));
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    const writesServer = (ops: Array<{ path: string }>) => ops.some((op) => op.path === paths.server(vm));
    const commit = orcZk.commit.bind(orcZk);
    orcZk.commit = async (t) => {
      if (writesServer(t.ops)) {
        held();
        await gate;
      }
      return commit(t);
    };
    const set = orcZk.set.bind(orcZk);
    orcZk.set = async (path, value, version) => {
      if (path === paths.server(vm)) {
        held();
        await gate;
      }
      return set(path, value, version);
    };
    const log = createLogger({ proc: 'orc' }, 'error');
    const orc = new Orc({ zk: orcZk, paths, log, view: createClusterView({ overcommit: DEFAULT_CONFIG.overcommit }), id: 'orc-1' });
    let after: Zk | undefined;
    try {
      await orc.start();
      await waitFor(() => orc.shards.length === 1, { what: 'the orc to own the shard' });
      await before.close(); // the compute is gone: its alive goes with its session
      await Promise.race([reached, new Promise((_, reject) => setTimeout(() => reject(new Error('the orc never marked the VM LOST')), 10_000))]);
      // The compute comes back and, as its reconcile does, reads its VM's record: still ACTIVE.
      after = await Zk.connect(zkConnect());
      await claim(after);
      expect((await after.get<ServerRecord>(paths.server(vm)))!.value!.status).toBe('ACTIVE');
      release();
      await new Promise((r) => setTimeout(r, 500));
      expect((await admin.get<ServerRecord>(paths.server(vm)))!.value!.status).toBe('ACTIVE');
    } finally {
      release();
      await orc.stop();
      await orcZk.close();
      await after?.close();
      await before.close();
      await admin.removeTree(paths.root);
      await admin.close();
    }
  });
});
