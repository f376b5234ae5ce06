// Poison records (issue 10): a malformed znode never crashes a process nor blocks other work. Each
// test writes damaged records straight into ZooKeeper, as a bad write, an older version or a hand
// edit would leave them, into a running cluster of real processes.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { http, startCluster, waitForUnit, type TestCluster, type WorkUnitView } from './cluster.js';
import { useProcessGroup, waitFor } from './support/index.js';
import { newServerId, newWorkUnitId, type ComputeId, type WorkUnitId } from '../ts/common/ids.js';
import { flavorConsumes, addConsumes, shardOf, type Consumes, type ServerRecord, type WorkUnitRecord } from '../ts/common/model.js';
import { acceptedServer, acceptedUnit, must, unitOn } from '../ts/lifecycle/index.js';
import { readConfig } from '../ts/zk/config.js';
import { grantRecords } from '../ts/orc/grant.js';

const group = useProcessGroup();
const COMPUTE = 'compute-1' as ComputeId;
const flavor = { vcpus: 1, ram_mb: 256, disk_gb: 1 };
let c: TestCluster;
let shards: number;

/** A unit and its server as the API accepts a boot, with the unit in its shard's inbox; `damage` edits the unit as written. */
async function writeBoot(damage: (u: WorkUnitRecord) => unknown = (u) => u, state: 'PENDING' | 'SCHEDULED' = 'PENDING') {
  const id = newWorkUnitId();
  const serverId = newServerId();
  let unit = acceptedUnit({ id, kind: 'build', server_id: serverId, shard: shardOf(id, shards), at: Date.now(), request: { name: `poison-${id.slice(0, 4)}`, flavor, bandwidth_mbps: 0 } });
  if (state === 'SCHEDULED') unit = must(unitOn(unit, { type: 'claimed', compute: COMPUTE, at: Date.now() }));
  const server = acceptedServer({ id: serverId, name: unit.request!.name, flavor, labels: [], zone: null, at: Date.now(), unit: id });
  return { id, serverId, unit, server, ops: (txn: ReturnType<typeof c.zk.txn>) => txn.create(c.paths.workUnit(id), damage(unit)).create(c.paths.server(serverId), server).create(c.paths.inboxEntry(unit.shard, id)) };
}

async function unitRecord(id: WorkUnitId): Promise<WorkUnitRecord> {
  return (await c.zk.get<WorkUnitRecord>(c.paths.workUnit(id)))!.value!;
}

async function bootsFine(name: string): Promise<WorkUnitView> {
  const r = await http(`${c.api}/v1/servers`, { method: 'POST', body: { name, flavor } });
  expect(r.status).toBe(202);
  const u = await waitForUnit(c.api, r.body.work_unit_id, 30_000);
  expect(u.state).toBe('SUCCEEDED');
  return u;
}

beforeAll(async () => {
  c = await startCluster(group, { computes: 1, orcs: 1, computeArgs: ['--vcpus', '64', '--ram-mb', '65536', '--disk-gb', '1000'] });
  shards = (await readConfig(c.zk, c.paths)).shards;
}, 120_000);

afterAll(async () => {
  await c?.close();
});

describe('a malformed work unit ends FAILED with CORRUPT_RECORD and blocks nothing', () => {
  // Invariant: every unit in an inbox reaches a terminal state, whatever its record holds.
  it('a unit in an unknown state, and a build whose request lost its flavor: both fail, their servers show why, other boots go on', async () => {
    const unknownState = await writeBoot((u) => ({ ...u, state: 'HALF_DONE' }));
    const noFlavor = await writeBoot((u) => ({ ...u, request: { name: 'x', bandwidth_mbps: 0 } }));
    await unknownState.ops(noFlavor.ops(c.zk.txn())).commit();
    for (const b of [unknownState, noFlavor]) {
      const failed = await waitFor(async () => ((await unitRecord(b.id)).state === 'FAILED' ? unitRecord(b.id) : undefined), { what: `${b.id} FAILED`, timeoutMs: 15_000 });
      expect(failed.error?.code).toBe('CORRUPT_RECORD');
      expect(failed.server_id).toBe(b.serverId);
      expect(await c.zk.exists(c.paths.inboxEntry(b.unit.shard, b.id))).toBeNull();
      const server = (await c.zk.get<ServerRecord>(c.paths.server(b.serverId)))!.value!;
      expect(server).toMatchObject({ status: 'ERROR', task: null, last_error: { code: 'CORRUPT_RECORD' } });
      // The API answers the unit as it now stands (a well-formed FAILED record).
      expect((await http(`${c.api}/v1/work-units/${b.id}`)).body).toMatchObject({ state: 'FAILED', error: { code: 'CORRUPT_RECORD' } });
    }
    expect(c.orcs.get('orc-1')!.running).toBe(true);
    await bootsFine('after-poison-units');
  });
});

describe('a malformed task never runs and blocks nothing', () => {
  // Invariant: a task the compute cannot read fails its unit (CORRUPT_RECORD) and gives back
  // exactly what its claim took; the compute keeps taking work.
  it('a task in next_tasks whose record is damaged: its unit FAILS with CORRUPT_RECORD, self/free is whole again', async () => {
    const b = await writeBoot(undefined, 'SCHEDULED');
    const need: Consumes = flavorConsumes(flavor, 0);
    const free = (await c.zk.get<Consumes>(c.paths.selfFree(COMPUTE)))!;
    // What a claim writes, with the task's own record damaged (its consumes are not numbers);
    // first, as the orc's claim does, the unit's and server's records are granted to the compute.
    await b.ops(c.zk.txn()).commit();
    await grantRecords(c.zk, c.paths, COMPUTE, [c.paths.workUnit(b.id), c.paths.server(b.serverId)]);
    const txn = c.zk.txn()
      .set(c.paths.selfFree(COMPUTE), addConsumes(free.value!, need, -1), free.stat.version)
      .create(c.paths.nextTask(COMPUTE, b.id), { work_unit_id: b.id, kind: 'build', server_id: b.serverId, shard: b.unit.shard, consumes: 'plenty', name: 'x', attempt: 1, birthed_on: Date.now() })
      .create(`${c.paths.nextTask(COMPUTE, b.id)}/kind`, 'build');
    await txn.commit();
    const failed = await waitFor(async () => ((await unitRecord(b.id)).state === 'FAILED' ? unitRecord(b.id) : undefined), { what: 'the unit to fail', timeoutMs: 15_000 });
    expect(failed.error?.code).toBe('CORRUPT_RECORD');
    expect(failed.error?.message).toMatch(/task on compute compute-1 is malformed \(consumes is "plenty"/);
    expect(await c.zk.exists(c.paths.nextTask(COMPUTE, b.id))).toBeNull();
    expect((await c.zk.get<Consumes>(c.paths.selfFree(COMPUTE)))!.value).toEqual(free.value);
    expect((await c.zk.get<ServerRecord>(c.paths.server(b.serverId)))!.value).toMatchObject({ status: 'ERROR', last_error: { code: 'CORRUPT_RECORD' } });
    expect(c.computes.get(COMPUTE)!.running).toBe(true);
    await bootsFine('after-poison-task');
  });
});

describe('lists skip a malformed record instead of failing', () => {
  // Invariant: one bad record never turns a list into a 500; the others are all listed.
  it('GET /v1/servers and /v1/work-units answer 200 without the damaged records', async () => {
    const good = await bootsFine('listed');
    const badServer = newServerId();
    const badUnit = newWorkUnitId();
    await c.zk
      .txn()
      .create(c.paths.server(badServer), { ...acceptedServer({ id: badServer, name: 'bad', flavor, labels: [], zone: null, at: Date.now(), unit: badUnit }), created_at: 1e300 })
      .create(c.paths.workUnit(badUnit), { ...acceptedUnit({ id: badUnit, kind: 'stop', server_id: badServer, shard: 0, at: Date.now() }), steps_completed: 'some' })
      .commit();
    const servers = await http<Array<{ id: string }>>(`${c.api}/v1/servers`);
    expect(servers.status).toBe(200);
    expect(servers.body.map((s) => s.id)).toContain(good.server_id);
    expect(servers.body.map((s) => s.id)).not.toContain(badServer);
    const units = await http<Array<{ id: string }>>(`${c.api}/v1/work-units?limit=1000`);
    expect(units.status).toBe(200);
    expect(units.body.map((u) => u.id)).toContain(good.id);
    expect(units.body.map((u) => u.id)).not.toContain(badUnit);
    // One by one, an admin is told what is wrong (a member would get 404).
    const one = await http(`${c.api}/v1/servers/${badServer}`);
    expect(one).toMatchObject({ status: 500, body: { error: { code: 'CORRUPT_RECORD' } } });
    expect(one.body.error.message).toMatch(/created_at is 1e\+300, not a time/);
    const act = await http(`${c.api}/v1/servers/${badServer}/actions`, { method: 'POST', body: { action: 'stop' } });
    expect(act.body.error.code).toBe('CORRUPT_RECORD');
    expect(c.apiProc.running).toBe(true);
  });
});

describe('a compute record out of range does not stop the orcs', () => {
  // Invariant: a compute whose capacity the scorer cannot hold is left out of placement, logged,
  // by every orc, also one that starts after the record was written; no orc exits over it.
  it('capacity ram_mb 3,000,000,000 (past the scorer\'s 32-bit columns): orcs stay up and place elsewhere; /v1/computes leaves it out', async () => {
    const huge = 'compute-huge' as ComputeId;
    const cap = { vcpus: 16, ram_mb: 3_000_000_000, disk_gb: 500, bandwidth_mbps: 0, zone: 'default', labels: [], libvirt_uri: 'test:///default' };
    await c.zk.mkdirp(c.paths.self(huge));
    for (const p of [c.paths.managing(huge), c.paths.nextTasks(huge), c.paths.activeTasks(huge)]) await c.zk.mkdirp(p);
    await c.zk.create(c.paths.selfCapacity(huge), cap);
    await c.zk.create(c.paths.selfFree(huge), { vcpus: 16, ram_mb: 3_000_000_000, disk_gb: 500, bandwidth_mbps: 0 });
    await c.zk.create(c.paths.alive(huge), { pid: 0, host: 'test', started_at: Date.now() }, 'ephemeral');
    const second = c.startOrc('orc-2'); // an orc starting with the record already there
    await second.waitForOutput('orc ready', { timeoutMs: 30_000 });
    await waitFor(async () => c.orcs.get('orc-1')!.output().includes('compute left out of placement') && second.output().includes('compute left out of placement'), {
      what: 'both orcs to report the compute they left out',
      timeoutMs: 10_000,
    });
    expect(second.output()).toMatch(/capacity.ram_mb must be|ram_mb is 3000000000/);
    // Every shard is owned again with both orcs up, and boots are placed on the sound compute.
    await waitFor(async () => Object.values((await http<Record<string, string | null>>(`${c.api}/v1/shards`)).body).every((o) => o !== null), { what: 'every shard owned', timeoutMs: 15_000 });
    for (let i = 0; i < 3; i++) expect((await bootsFine(`beside-huge-${i}`)).compute_id).toBe(COMPUTE);
    expect(c.orcs.get('orc-1')!.running && second.running).toBe(true);
    const computes = await http<Array<{ id: string }>>(`${c.api}/v1/computes`);
    expect(computes.status).toBe(200);
    expect(computes.body.map((x) => x.id)).toEqual([COMPUTE]);
    await c.zk.remove(c.paths.alive(huge));
  });

  it('the CLI refuses such a capacity before it reaches ZooKeeper', async () => {
    const p = group.spawnQuark(['compute', '--id', 'too-big', '--ram-mb', '3000000000', '--zk', '127.0.0.1:1', '--root', c.root]);
    const exit = await p.exited;
    expect(exit.code).toBe(2);
    expect(p.stderr()).toContain('--ram-mb must be an integer from 1 to 2147483647, got 3000000000');
    expect(await c.zk.exists(c.paths.compute('too-big' as ComputeId))).toBeNull();
  });
});
