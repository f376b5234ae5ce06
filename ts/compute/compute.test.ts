// Two computes in one process (as hollow computes run), each with its own session and private
// libvirt test-driver state, against the real ZooKeeper. Units are handed to them as an orc's claim
// would; each compute runs only its own units on its own runner and libvirt, and a step that really
// takes time records that time.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Zk } from '../zk/client.js';
import { Paths } from '../zk/paths.js';
import { readConfig } from '../zk/config.js';
import { createEntries, nextTaskEntries } from '../zk/layout.js';
import { Hypervisor } from '../native/libvirt.js';
import { createLogger } from '../common/log.js';
import { addConsumes, shardOf, type Consumes, type ServerRecord, type TaskRecord, type WorkUnitRecord } from '../common/model.js';
import type { ComputeId, ServerId, WorkUnitId } from '../common/ids.js';
import { acceptedServer, acceptedUnit, must, unitOn } from '../lifecycle/index.js';
import { uniqueRoot, waitFor, zkConnect } from '../../test/support/index.js';
import { HOLLOW_NODE_XML, privateTestDriverUri } from './hollow.js';
import { Compute } from './compute.js';
import { stepDuration } from './runner.js';
import { domainName } from './steps.js';

const paths = new Paths(uniqueRoot('compute'));
const log = createLogger({ test: 'compute' }, 'error');
const capacity = { vcpus: 8, ram_mb: 16384, disk_gb: 200, bandwidth_mbps: 1000, zone: 'z', labels: [] };
const need: Consumes = { vcpus: 1, ram_mb: 512, disk_gb: 5, bandwidth_mbps: 0 };
const STEP_DELAY_MS = 150;

let admin: Zk;
let dir: string;
const members: Array<{ id: ComputeId; zk: Zk; hv: Hypervisor; compute: Compute }> = [];
let shards = 0;

beforeAll(async () => {
  admin = await Zk.connect(zkConnect());
  shards = (await readConfig(admin, paths, { shards: 4 })).shards;
  dir = mkdtempSync(join(tmpdir(), 'quark-compute-test-'));
  writeFileSync(join(dir, 'node.xml'), HOLLOW_NODE_XML);
  for (const [id, stepDelayMs] of [['slow', STEP_DELAY_MS], ['fast', 0]] as const) {
    const zk = await Zk.connect(zkConnect());
    const hv = await Hypervisor.open(privateTestDriverUri(join(dir, 'node.xml')));
    const compute = new Compute({ id: id as ComputeId, zk, paths, hv, capacity: { ...capacity, libvirt_uri: hv.uri }, log, stepDelayMs, hypervisorReportMs: 50 });
    members.push({ id: id as ComputeId, zk, hv, compute });
    await compute.start();
  }
});

afterAll(async () => {
  for (const m of members) {
    await m.compute.stop();
    await m.zk.close();
    await m.hv.close();
  }
  await admin?.removeTree(paths.root);
  await admin?.close();
  rmSync(dir, { recursive: true, force: true });
});

/** What the api and then an orc's claim write for a build placed on `compute`. */
async function placeBuild(compute: ComputeId): Promise<{ wu: WorkUnitId; vm: ServerId }> {
  const wuId = randomUUID() as WorkUnitId;
  const vm = randomUUID() as ServerId;
  const at = Date.now();
  const unit = acceptedUnit({ id: wuId, kind: 'build', server_id: vm, shard: shardOf(wuId, shards), at, request: { name: `vm-${compute}`, flavor: need, bandwidth_mbps: 0 } });
  const server = acceptedServer({ id: vm, name: `vm-${compute}`, flavor: need, labels: [], zone: null, at, unit: wuId });
  await admin.txn().create(paths.workUnit(wuId), unit).create(paths.server(vm), server).create(paths.inboxEntry(unit.shard, wuId)).commit();
  const scheduled = must(unitOn(unit, { type: 'claimed', compute, at: Date.now() }));
  const task: TaskRecord = { work_unit_id: wuId, kind: 'build', server_id: vm, shard: unit.shard, consumes: need, name: `vm-${compute}`, attempt: 1, birthed_on: Date.now(), unit: { record: scheduled, version: 1 } };
  const free = (await admin.get<Consumes>(paths.selfFree(compute)))!;
  const txn = admin.txn().set(paths.selfFree(compute), addConsumes(free.value!, need, -1), free.stat.version);
  createEntries(txn, paths.nextTask(compute, wuId), nextTaskEntries(task));
  await txn.set(paths.workUnit(wuId), scheduled, 0).commit();
  return { wu: wuId, vm };
}

const unitOf = async (wu: WorkUnitId) => (await admin.get<WorkUnitRecord>(paths.workUnit(wu)))?.value;

describe('computes sharing a process', () => {
  it('each runs its own units on its own runner and libvirt; a slow step records the time it took', async () => {
    const placed: Array<{ wu: WorkUnitId; vm: ServerId }> = [];
    // One claim at a time: each sets self/free at the version it read, as a claim does.
    for (const c of ['slow', 'fast', 'slow', 'fast']) placed.push(await placeBuild(c as ComputeId));
    await waitFor(async () => (await Promise.all(placed.map((p) => unitOf(p.wu)))).every((u) => u?.state === 'SUCCEEDED' || u?.state === 'FAILED'), {
      what: 'the four builds to end',
      timeoutMs: 20_000,
    });
    const [slowA, fastA, slowB, fastB] = placed;
    for (const [p, owner] of [[slowA, 'slow'], [fastA, 'fast'], [slowB, 'slow'], [fastB, 'fast']] as const) {
      const u = (await unitOf(p!.wu))!;
      expect(u.state, JSON.stringify(u.error)).toBe('SUCCEEDED');
      expect(u.compute_id).toBe(owner);
      expect((await admin.get<ServerRecord>(paths.server(p!.vm)))?.value).toMatchObject({ status: 'ACTIVE', compute_id: owner, task: null });
      const window = u.finished_at! - u.created_at;
      const total = u.steps_completed.reduce((n, s) => n + s.time_to_completion_ms, 0);
      for (const s of u.steps_completed) {
        expect(Number.isInteger(s.time_to_completion_ms)).toBe(true);
        // A step that waited STEP_DELAY_MS before its effect took at least that long.
        if (owner === 'slow') expect(s.time_to_completion_ms).toBeGreaterThanOrEqual(STEP_DELAY_MS);
        else expect(s.time_to_completion_ms).toBeLessThan(STEP_DELAY_MS);
      }
      // The steps ran inside the unit's life: their durations (each rounded up by at most 1 ms) fit in it.
      expect(total).toBeLessThanOrEqual(window + u.steps_completed.length);
    }
    // Each compute manages exactly its own VMs, and its own libvirt state holds exactly those domains.
    for (const m of members) {
      const mine = placed.filter((_, i) => (i % 2 === 0 ? 'slow' : 'fast') === m.id).map((p) => p.vm);
      expect(m.compute.managedIds().sort()).toEqual([...mine].sort());
      expect((await m.hv.list()).map((d) => d.name).sort()).toEqual(mine.map(domainName).sort());
    }
  });
});

describe('stepDuration', () => {
  it('whole milliseconds, rounded to nearest, and never 0 for a step that ran', () => {
    expect(stepDuration(100, 100)).toBe(1);
    expect(stepDuration(100, 100.4)).toBe(1);
    expect(stepDuration(100, 101.49)).toBe(1);
    expect(stepDuration(100, 101.5)).toBe(2);
    expect(stepDuration(10, 1234.2)).toBe(1224);
  });
});
