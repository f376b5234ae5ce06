// The record checks: every record Quark writes passes, each kind of damage is named, and a corrupt
// unit becomes a FAILED one that keeps what of it still reads right.
import { describe, expect, it } from 'vitest';
import { encode } from '../zk/codec.js';
import type { ComputeId, ServerId, WorkUnitId } from '../common/ids.js';
import { acceptedServer } from './server.js';
import { acceptedUnit, unitOn } from './work-unit.js';
import { must } from './transition.js';
import {
  checkCapacity,
  checkFree,
  checkManaged,
  checkServer,
  checkTask,
  checkWorkUnit,
  corruptUnitFailed,
  RESOURCE_MAX,
  storedOf,
} from './records.js';
import type { TaskRecord, WorkUnitRecord } from '../common/model.js';

const at = 1_700_000_000_000;
const flavor = { vcpus: 2, ram_mb: 2048, disk_gb: 20 };
const build = acceptedUnit({
  id: '3f6c1b8e-1111-4a4a-8b8b-000000000001' as WorkUnitId,
  kind: 'build',
  server_id: '3f6c1b8e-2222-4a4a-8b8b-000000000002' as ServerId,
  shard: 7,
  at,
  request: { name: 'web-1', flavor, bandwidth_mbps: 100 },
});
const scheduled = must(unitOn(build, { type: 'claimed', compute: 'compute-1' as ComputeId, at: at + 1 }));
const running = must(unitOn(scheduled, { type: 'steps_committed', completed: [{ name: 'allocate_vcpu', time_to_completion_ms: 3, completed_at: at + 2 }], at: at + 2 }));
const server = acceptedServer({ id: build.server_id, name: 'web-1', flavor, labels: ['ssd'], zone: null, at, unit: build.id });
const task: TaskRecord = {
  work_unit_id: build.id,
  kind: 'build',
  server_id: build.server_id,
  shard: 7,
  consumes: { vcpus: 2, ram_mb: 2048, disk_gb: 20, bandwidth_mbps: 100 },
  name: 'web-1',
  attempt: 1,
  birthed_on: at,
  unit: { record: scheduled, version: 1 },
};

const problemOf = (c: { ok: boolean; problem?: string }): string | undefined => (c.ok ? undefined : c.problem);

describe('records as Quark writes them pass', () => {
  it('units in every state, servers, tasks, managed VMs, capacity and free', () => {
    for (const u of [build, scheduled, running, must(unitOn(running, { type: 'failed', error: { code: 'X', message: 'y' }, at: at + 3 }))]) {
      expect(checkWorkUnit(u)).toEqual({ ok: true, value: u });
    }
    expect(checkWorkUnit({ ...build, project: 'web' }).ok).toBe(true); // fields beyond the shape are kept, not refused
    expect(checkServer(server).ok).toBe(true);
    expect(checkTask(task).ok).toBe(true);
    expect(checkManaged({ server_id: server.id, name: 'web-1', kind: 'vm', birthed_on: at, consumes: task.consumes, status: 'ACTIVE' }).ok).toBe(true);
    expect(checkCapacity({ vcpus: 16, ram_mb: 32768, disk_gb: 500, bandwidth_mbps: 10000, zone: 'default', labels: [], libvirt_uri: 'test:///default' }).ok).toBe(true);
    expect(checkFree({ vcpus: -4, ram_mb: 0, disk_gb: 10, bandwidth_mbps: 0 }).ok).toBe(true); // overcommit takes free below zero
  });
});

describe('damage is found and named', () => {
  it('a unit: unknown state, wrong types, a build without its request, an id that is no znode name', () => {
    expect(problemOf(checkWorkUnit({ ...build, state: 'BOGUS' }))).toMatch(/^state is "BOGUS", not one of PENDING/);
    expect(problemOf(checkWorkUnit({ ...build, steps_completed: 'all' }))).toMatch(/^steps_completed is "all", not a list/);
    expect(problemOf(checkWorkUnit({ ...running, steps_completed: [{ name: 'fly', time_to_completion_ms: 1, completed_at: 1 }] }))).toMatch(/^steps_completed\[0\]\.name/);
    const { request: _r, ...noRequest } = build;
    expect(problemOf(checkWorkUnit(noRequest))).toBe('request is missing from a build');
    expect(problemOf(checkWorkUnit({ ...build, request: { ...build.request!, flavor: { ...flavor, vcpus: 0 } } }))).toMatch(/^request\.flavor\.vcpus/);
    expect(problemOf(checkWorkUnit({ ...build, server_id: '../../config' }))).toMatch(/^server_id .* not an id/);
    expect(problemOf(checkWorkUnit('a string'))).toMatch(/^the record is "a string", not an object/);
    expect(problemOf(checkWorkUnit(undefined))).toMatch(/not an object/);
  });

  it('capacity past the scorer\'s 32-bit columns, a free that is not a number, a task whose claimed unit is damaged', () => {
    const cap = { vcpus: 16, ram_mb: 3_000_000_000, disk_gb: 500, bandwidth_mbps: 0, zone: 'z', labels: [], libvirt_uri: '' };
    expect(problemOf(checkCapacity(cap))).toBe(`ram_mb is 3000000000, not an integer in [0, ${RESOURCE_MAX}]`);
    expect(checkCapacity({ ...cap, ram_mb: RESOURCE_MAX }).ok).toBe(true);
    expect(problemOf(checkFree({ vcpus: 1, ram_mb: 'lots', disk_gb: 0, bandwidth_mbps: 0 }))).toMatch(/^ram_mb/);
    expect(problemOf(checkTask({ ...task, unit: { record: { ...scheduled, kind: 'dance' }, version: 1 } }))).toMatch(/^unit\.record\.kind/);
    expect(problemOf(checkTask({ ...task, consumes: { ...task.consumes, vcpus: 1.5 } }))).toMatch(/^consumes\.vcpus/);
    expect(problemOf(checkServer({ ...server, status: 'DELETED' }))).toMatch(/^status/); // DELETED is never stored
  });
});

describe('storedOf: bytes as read', () => {
  const stat = { version: 4 };
  it('absent, ok with its version, corrupt when the bytes do not decode or the value is wrong', () => {
    expect(storedOf(null, checkWorkUnit)).toEqual({ state: 'absent' });
    expect(storedOf({ data: encode(build), stat }, checkWorkUnit)).toEqual({ state: 'ok', value: build, version: 4 });
    const garbled = storedOf({ data: Buffer.from([0xc1, 0xff, 0x00]), stat }, checkWorkUnit);
    expect(garbled).toMatchObject({ state: 'corrupt', version: 4, raw: undefined });
    expect((garbled as { problem: string }).problem).toMatch(/^its bytes do not decode/);
    expect(storedOf({ data: undefined, stat }, checkWorkUnit)).toMatchObject({ state: 'corrupt', problem: 'the record is undefined, not an object' });
    expect(storedOf({ data: encode({ ...build, attempts: -1 }), stat }, checkWorkUnit)).toMatchObject({ state: 'corrupt', raw: { ...build, attempts: -1 } });
  });
});

describe('corruptUnitFailed', () => {
  it('keeps what reads right, fails with CORRUPT_RECORD, trusts no step', () => {
    const raw = { ...running, steps_left: 'some' };
    const f = corruptUnitFailed({ id: running.id, shard: 7, raw, problem: 'steps_left is "some", not a list', at: at + 9 });
    expect(checkWorkUnit(f).ok).toBe(true); // what it writes is a well-formed record
    expect(f).toMatchObject({
      id: running.id,
      kind: 'build',
      state: 'FAILED',
      server_id: running.server_id,
      compute_id: 'compute-1',
      attempts: 1,
      steps_completed: [],
      steps_left: [],
      request: running.request,
      created_at: at,
      finished_at: at + 9,
      error: { code: 'CORRUPT_RECORD' },
    });
    expect(f.error!.message).toContain('steps_left is "some"');
  });

  it('from nothing readable: a FAILED unit of the id and shard it was found under, with no server', () => {
    const f: WorkUnitRecord = corruptUnitFailed({ id: build.id, shard: 3, raw: undefined, problem: 'its bytes do not decode', at });
    expect(checkWorkUnit(f).ok).toBe(true); // a FAILED build needs no request, and may name no server
    expect(f).toMatchObject({ id: build.id, shard: 3, state: 'FAILED', server_id: '', compute_id: null, tried: [] });
    expect(f.request).toBeUndefined();
  });
});
