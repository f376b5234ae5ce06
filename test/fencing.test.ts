// Fencing a compute whose ZooKeeper link is really cut (a TCP relay between it and the suite's
// ZooKeeper), issue 10: while its session is in doubt (SUSPENDED) no step of it begins; once its
// session has expired, the work it had in flight is dropped (no effect of it lands afterwards)
// and, on its new session, it destroys the domains of VMs the cluster gave to another compute or
// deleted meanwhile before taking any work. The orc, the computes and libvirt's test driver run in
// this process, each compute with its own session and private libvirt state.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { runWithSession, type SessionRunner } from '../ts/zk/session.js';
import { Zk } from '../ts/zk/client.js';
import { Paths } from '../ts/zk/paths.js';
import { readConfig } from '../ts/zk/config.js';
import { createLogger } from '../ts/common/log.js';
import type { ComputeId, ServerId, WorkUnitId } from '../ts/common/ids.js';
import type { ClusterConfig, ServerRecord, WorkUnitRecord } from '../ts/common/model.js';
import { Orc } from '../ts/orc/orc.js';
import { createClusterView } from '../ts/orc/placement/index.js';
import { Compute } from '../ts/compute/compute.js';
import { HOLLOW_NODE_XML, privateTestDriverUri } from '../ts/compute/hollow.js';
import { domainName } from '../ts/compute/steps.js';
import { Hypervisor } from '../ts/native/libvirt.js';
import { ApiStore } from '../ts/api/store.js';
import { FaultyLink } from './support/proxy.js';
import { uniqueRoot, waitFor, zkConnect } from './support/index.js';
import { ALL, asProjectId } from '../ts/auth/policy.js';

const PROJECT = asProjectId('fencing');

const log = createLogger({ test: 'fencing' }, 'error');
const capacity = { vcpus: 16, ram_mb: 32768, disk_gb: 500, bandwidth_mbps: 1000, zone: 'z', labels: [] };
const flavor = { vcpus: 1, ram_mb: 256, disk_gb: 1 };
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

let cleanup: Array<() => Promise<void>> = [];
afterEach(async () => {
  for (const f of cleanup.reverse()) await f().catch(() => {});
  cleanup = [];
});

interface World {
  paths: Paths;
  admin: Zk;
  store: ApiStore;
  link: FaultyLink;
  startOrc(): Promise<SessionRunner<Orc>>;
  /** A compute on a private libvirt state (`hv`, kept across its sessions), through `via`. */
  startCompute(id: string, o: { via: string; sessionTimeoutMs: number; stepDelayMs: number; hv?: Hypervisor }): Promise<{ runner: SessionRunner<Compute>; hv: Hypervisor }>;
  unit(id: string): Promise<WorkUnitRecord>;
  server(id: string): Promise<ServerRecord | undefined>;
}

async function world(): Promise<World> {
  const root = uniqueRoot('fence');
  const paths = new Paths(root);
  const admin = await Zk.connect(zkConnect());
  const config: ClusterConfig = await readConfig(admin, paths, { shards: 8 });
  const link = await FaultyLink.start(zkConnect());
  const dir = mkdtempSync(join(tmpdir(), 'quark-fence-'));
  writeFileSync(join(dir, 'node.xml'), HOLLOW_NODE_XML);
  cleanup.push(async () => {
    await link.close();
    await admin.removeTree(root);
    await admin.close();
    rmSync(dir, { recursive: true, force: true });
  });
  return {
    paths,
    admin,
    link,
    store: new ApiStore(admin, paths, config),
    async startOrc() {
      const runner = await runWithSession<Orc>({ zk: zkConnect(), root, sessionTimeoutMs: 2000, log, handleSignals: false }, async (zk, p) => {
        const orc = new Orc({ zk, paths: p, log, view: createClusterView({ overcommit: config.overcommit }), sweepIntervalMs: 250 });
        await orc.start();
        return orc;
      });
      cleanup.push(() => runner.stop());
      await waitFor(() => runner.service?.shards.length === 8, { what: 'the orc to own every shard', timeoutMs: 10_000 });
      return runner;
    },
    async startCompute(id, o) {
      const hv = o.hv ?? (await Hypervisor.open(privateTestDriverUri(join(dir, 'node.xml'))));
      const runner = await runWithSession<Compute>({ zk: o.via, root, sessionTimeoutMs: o.sessionTimeoutMs, log, handleSignals: false }, async (zk, p) => {
        const compute = new Compute({ id: id as ComputeId, zk, paths: p, hv, capacity: { ...capacity, libvirt_uri: hv.uri }, log, stepDelayMs: o.stepDelayMs });
        await compute.start();
        return compute;
      });
      cleanup.push(async () => {
        await runner.stop();
        if (!o.hv) await hv.close();
      });
      return { runner, hv };
    },
    async unit(id) {
      return (await admin.get<WorkUnitRecord>(paths.workUnit(id as WorkUnitId)))!.value!;
    },
    async server(id) {
      return (await admin.get<ServerRecord>(paths.server(id as ServerId)))?.value;
    },
  };
}

const domains = async (hv: Hypervisor) => new Map((await hv.list()).map((d) => [d.name, d.state]));
const stepsDone = (u: WorkUnitRecord) => u.steps_completed.map((s) => s.name);

describe('a compute whose link is cut', () => {
  // Invariant: while the session is SUSPENDED no step begins (libvirt is not touched); once
  // RECONNECTED on the same session the unit carries on where it stood.
  it('SUSPENDED: the next step waits (no domain defined) until RECONNECTED, then the build completes', async () => {
    const w = await world();
    await w.startOrc();
    const { runner, hv } = await w.startCompute('compute-a', { via: w.link.address, sessionTimeoutMs: 4000, stepDelayMs: 800 });
    const states: string[] = [];
    runner.zk!.on('state', (s: string) => states.push(s));
    const { work_unit_id: wu, server_id: vm } = await w.store.createServer({ name: 'vm', flavor }, PROJECT);
    // Cut inside define's 800 ms step delay: allocate_storage is durable and its commit's reply
    // has reached the compute (a cut before that reply would hold the runner in its commit).
    await waitFor(async () => stepsDone(await w.unit(wu)).includes('allocate_storage'), { what: 'allocate_storage durable', timeoutMs: 10_000, intervalMs: 5 });
    await sleep(250);
    w.link.sever();
    await waitFor(() => states.includes('SUSPENDED'), { what: 'compute-a SUSPENDED', timeoutMs: 2000 });
    await sleep(1200); // past define's 800 ms delay, well inside the 4 s session
    expect((await domains(hv)).has(domainName(vm))).toBe(false);
    expect(stepsDone(await w.unit(wu))).toEqual(['allocate_vcpu', 'allocate_storage']);

    w.link.restore();
    await waitFor(async () => (await w.unit(wu)).state === 'SUCCEEDED', { what: 'the build to finish', timeoutMs: 15_000 });
    expect((await domains(hv)).get(domainName(vm))).toBe('running');
    expect(states).not.toContain('LOST');
    expect(runner.starts).toBe(1);
  });

  // Invariants: after its session expired, no effect of the work it had in flight lands (no
  // domain of a VM now on another compute); back on a new session it destroys the domains of
  // VMs deleted or rebuilt elsewhere meanwhile, and keeps (finds again) the rest.
  it('LOST: its build in flight is dropped and rebuilt elsewhere; back, it holds only the VMs still its own', async () => {
    const w = await world();
    await w.startOrc();
    // First its VMs, quickly; then the same host's compute again with slow steps, the link cut.
    const first = await w.startCompute('compute-a', { via: zkConnect(), sessionTimeoutMs: 2000, stepDelayMs: 0 });
    const settled = await Promise.all([0, 1].map((i) => w.store.createServer({ name: `vm-${i}`, flavor }, PROJECT)));
    for (const s of settled) await waitFor(async () => (await w.unit(s.work_unit_id)).state === 'SUCCEEDED', { what: 'a settled build', timeoutMs: 10_000 });
    await first.runner.stop();
    const a = await w.startCompute('compute-a', { via: w.link.address, sessionTimeoutMs: 1000, stepDelayMs: 4000, hv: first.hv });
    const [deleted, kept] = [settled[0]!.server_id, settled[1]!.server_id];
    await waitFor(async () => (await w.server(kept))?.status === 'ACTIVE' && (await w.server(deleted))?.status === 'ACTIVE', { what: 'its VMs found again', timeoutMs: 10_000 });

    const { work_unit_id: wu, server_id: moved } = await w.store.createServer({ name: 'moved', flavor }, PROJECT);
    await waitFor(async () => stepsDone(await w.unit(wu)).includes('allocate_vcpu'), { what: 'the build under way on compute-a', timeoutMs: 15_000 });
    expect((await w.unit(wu)).compute_id).toBe('compute-a');
    const b = await w.startCompute('compute-b', { via: zkConnect(), sessionTimeoutMs: 2000, stepDelayMs: 0 });
    await waitFor(async () => stepsDone(await w.unit(wu)).includes('allocate_storage'), { what: 'allocate_storage durable', timeoutMs: 10_000, intervalMs: 5 });
    await sleep(250); // the commit's reply has reached compute-a: define's 4 s delay is running
    w.link.sever();
    const cutAt = Date.now();

    // The cluster moves on without compute-a: the build goes to compute-b, a VM is deleted.
    await waitFor(async () => (await w.server(deleted))?.status === 'LOST', { what: `${deleted} LOST`, timeoutMs: 5000, intervalMs: 20 });
    await w.store.act(deleted as ServerId, 'delete', ALL);
    await waitFor(async () => (await w.server(deleted)) === undefined, { what: `${deleted} deleted`, timeoutMs: 5000, intervalMs: 20 });
    await waitFor(async () => (await w.unit(wu)).state === 'SUCCEEDED', { what: 'the build rebuilt elsewhere', timeoutMs: 5000, intervalMs: 20 });
    expect((await w.unit(wu)).compute_id).toBe('compute-b');
    // The step compute-a had begun waiting for (define, 4 s after allocate_storage) must not land.
    expect(Date.now() - cutAt).toBeLessThan(3000);
    w.link.restore();
    await waitFor(() => a.runner.starts === 2, { what: 'compute-a on a new session', timeoutMs: 10_000 });
    await waitFor(async () => (await w.admin.exists(w.paths.alive('compute-a' as ComputeId))) !== null, { what: 'compute-a announced again', timeoutMs: 10_000 });
    await sleep(Math.max(0, cutAt + 4500 - Date.now())); // past the moment define would have begun

    expect([...(await domains(a.hv)).entries()]).toEqual([[domainName(kept), 'running']]);
    expect((await domains(b.hv)).get(domainName(moved))).toBe('running');
    expect(a.runner.service!.managedIds()).toEqual([kept]);
    await waitFor(async () => (await w.server(kept))?.status === 'ACTIVE', { what: `${kept} ACTIVE on compute-a`, timeoutMs: 10_000 });
    expect((await w.server(moved))?.compute_id).toBe('compute-b');
  });
});

describe('an orc that hears of a compute\'s loss after it came back', () => {
  // Invariant: a compute restarted with the same id claims `alive` as soon as its old session
  // expires, the moment its orcs hear of the loss; an orc acting on that loss once the compute is
  // back must leave the compute's units to it. Failing its action (COMPUTE_LOST) while it runs
  // the action anyway left a stopped domain whose server still read ACTIVE (the chaos suite,
  // seed 1, run 3, kill-compute-and-orc).
  it('leaves a stop in flight on the returned compute to finish there', async () => {
    const w = await world();
    const orc = await w.startOrc();
    const { hv } = await w.startCompute('compute-a', { via: zkConnect(), sessionTimeoutMs: 2000, stepDelayMs: 1000 });
    const { work_unit_id: build, server_id: vm } = await w.store.createServer({ name: 'vm', flavor }, PROJECT);
    await waitFor(async () => (await w.unit(build)).state === 'SUCCEEDED', { what: 'the build', timeoutMs: 20_000 });
    const { work_unit_id: stop } = await w.store.act(vm as ServerId, 'stop', ALL);
    await waitFor(async () => ['SCHEDULED', 'RUNNING'].includes((await w.unit(stop)).state), { what: 'the stop routed to compute-a', timeoutMs: 10_000, intervalMs: 20 });
    expect((await w.unit(stop)).compute_id).toBe('compute-a');
    // What the orc does on its cluster watch's 'lost', late: compute-a's `alive` is there (and
    // this incarnation's, whose step delay is still running).
    expect(await w.admin.exists(w.paths.alive('compute-a' as ComputeId))).not.toBeNull();
    await (orc.service as unknown as { onComputeLost(id: ComputeId): Promise<void> }).onComputeLost('compute-a' as ComputeId);
    await waitFor(async () => ['SUCCEEDED', 'FAILED'].includes((await w.unit(stop)).state), { what: 'the stop to end', timeoutMs: 10_000 });
    const ended = await w.unit(stop);
    expect(ended.error).toBeUndefined();
    expect(ended.state).toBe('SUCCEEDED');
    expect((await w.server(vm))?.status).toBe('STOPPED');
    expect((await domains(hv)).get(domainName(vm))).toBe('shutoff');
  }, 60_000);
});
