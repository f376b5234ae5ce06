// The server lifecycle decided without a cluster: every status change comes from the VM machine,
// unit outcomes touch only the server they act on, and LOST is marked and lifted by the rules.
import { describe, expect, it } from 'vitest';
import type { ComputeId, ServerId, WorkUnitId } from '../common/ids.js';
import type { ServerRecord } from '../common/model.js';
import { SERVER_STATUSES, type VmStatus } from '../common/vocabulary.js';
import { acceptedServer, serverOn, statusAfterSuccess } from './server.js';
import { must } from './transition.js';

const C1 = 'compute-1' as ComputeId;
const WU = 'wu-1' as WorkUnitId;
const OTHER = 'wu-2' as WorkUnitId;
const fresh = (): ServerRecord =>
  acceptedServer({ id: 'vm-1' as ServerId, name: 'web', flavor: { vcpus: 1, ram_mb: 512, disk_gb: 1 }, labels: [], zone: null, at: 1, unit: WU });
const at = (status: VmStatus, over: Partial<ServerRecord> = {}): ServerRecord => ({ ...fresh(), status, compute_id: C1, task: null, ...over });
const error = { code: 'BOOM', message: 'step define failed: boom' };

describe('server lifecycle', () => {
  it('accepted: BUILDING, on no compute, its build as task', () => {
    expect(fresh()).toMatchObject({ status: 'BUILDING', compute_id: null, task: WU });
  });

  it('a build succeeds: ACTIVE on its compute, no task', () => {
    expect(must(serverOn(fresh(), { type: 'unit_succeeded', unit: WU, kind: 'build', compute: C1, from: 'BUILDING' }))).toMatchObject({
      status: 'ACTIVE',
      compute_id: C1,
      task: null,
    });
  });

  it('actions: accepted only where the machine takes them, and never while another unit is in flight', () => {
    const ok = serverOn(at('ACTIVE'), { type: 'action_accepted', action: 'stop', unit: WU, busyWith: null });
    expect(must(ok)).toMatchObject({ status: 'ACTIVE', task: WU });
    expect(serverOn(at('STOPPED'), { type: 'action_accepted', action: 'reboot', unit: WU, busyWith: null })).toEqual({
      ok: false,
      code: 'ACTION_NOT_ALLOWED',
      message: 'cannot reboot a server that is STOPPED',
    });
    const busy = serverOn(at('ACTIVE', { task: OTHER }), { type: 'action_accepted', action: 'stop', unit: WU, busyWith: { kind: 'reboot', state: 'RUNNING' } });
    expect(busy).toMatchObject({ ok: false, code: 'SERVER_BUSY' });
    // A task that has ended no longer holds the server.
    const ended = serverOn(at('ACTIVE', { task: OTHER }), { type: 'action_accepted', action: 'stop', unit: WU, busyWith: { kind: 'reboot', state: 'FAILED' } });
    expect(must(ended).task).toBe(WU);
  });

  it('a delete shows DELETING at once and removes the record when it succeeds', () => {
    for (const status of ['ACTIVE', 'STOPPED', 'ERROR', 'LOST', 'BUILDING'] as const) {
      const d = must(serverOn(at(status), { type: 'action_accepted', action: 'delete', unit: WU, busyWith: null }));
      expect(d).toMatchObject({ status: 'DELETING', task: WU });
      expect(serverOn(d, { type: 'unit_succeeded', unit: WU, kind: 'delete', compute: C1, from: d.status })).toEqual({ ok: true, next: null });
    }
    expect(serverOn(at('DELETING'), { type: 'action_accepted', action: 'delete', unit: WU, busyWith: null })).toMatchObject({ ok: false, code: 'ACTION_NOT_ALLOWED' });
    // A failed build's server has no compute: its delete runs nowhere and still removes it.
    const orphan = must(serverOn(at('ERROR', { compute_id: null }), { type: 'action_accepted', action: 'delete', unit: WU, busyWith: null }));
    expect(serverOn(orphan, { type: 'unit_succeeded', unit: WU, kind: 'delete', compute: null, from: orphan.status })).toEqual({ ok: true, next: null });
  });

  it('unit outcomes touch the server only while that unit is its task', () => {
    const s = at('ACTIVE', { task: OTHER });
    expect(serverOn(s, { type: 'unit_succeeded', unit: WU, kind: 'stop', compute: C1, from: 'ACTIVE' })).toMatchObject({ ok: false, code: 'NOT_ITS_TASK' });
    expect(serverOn(s, { type: 'unit_failed', unit: WU, kind: 'stop', error })).toMatchObject({ ok: false, code: 'NOT_ITS_TASK' });
    expect(serverOn(s, { type: 'build_retried', unit: WU })).toMatchObject({ ok: false, code: 'NOT_ITS_TASK' });
  });

  it('a failed build or delete is ERROR; a failed action leaves the VM as the compute recorded it', () => {
    const build = must(serverOn(fresh(), { type: 'unit_failed', unit: WU, kind: 'build', error }));
    expect(build).toMatchObject({ status: 'ERROR', compute_id: null, task: null, last_error: error });
    const del = must(serverOn(at('DELETING', { task: WU }), { type: 'unit_failed', unit: WU, kind: 'delete', error }));
    expect(del).toMatchObject({ status: 'ERROR', compute_id: C1, task: null });
    const stop = must(serverOn(at('ACTIVE', { task: WU }), { type: 'unit_failed', unit: WU, kind: 'stop', error, from: 'STOPPED' }));
    expect(stop).toMatchObject({ status: 'STOPPED', compute_id: C1, task: null, last_error: error });
    const orcFailed = must(serverOn(at('STOPPED', { task: WU }), { type: 'unit_failed', unit: WU, kind: 'start', error }));
    expect(orcFailed.status).toBe('STOPPED');
  });

  it('a success the machine does not take leaves the status as it was, and still ends the task', () => {
    const t = must(serverOn(at('STOPPED', { task: WU }), { type: 'unit_succeeded', unit: WU, kind: 'reboot', compute: C1, from: 'STOPPED' }));
    expect(t).toMatchObject({ status: 'STOPPED', task: null });
    expect(statusAfterSuccess('reboot', 'STOPPED')).toBe('STOPPED');
    expect(statusAfterSuccess('stop', 'ACTIVE')).toBe('STOPPED');
  });

  it('a build retried elsewhere leaves its compute and stays BUILDING', () => {
    expect(must(serverOn(fresh(), { type: 'build_retried', unit: WU }))).toMatchObject({ status: 'BUILDING', compute_id: null, task: WU });
  });

  it('compute lost: an idle VM on that compute becomes LOST; one with a unit in flight, elsewhere or already LOST is left', () => {
    for (const status of ['ACTIVE', 'STOPPED', 'ERROR'] as const) {
      expect(must(serverOn(at(status), { type: 'compute_lost', compute: C1 })).status).toBe('LOST');
    }
    expect(serverOn(at('ACTIVE', { task: WU }), { type: 'compute_lost', compute: C1 })).toMatchObject({ ok: false, code: 'SERVER_BUSY' });
    expect(serverOn(at('ACTIVE', { compute_id: 'compute-2' as ComputeId }), { type: 'compute_lost', compute: C1 })).toMatchObject({ ok: false, code: 'NOT_ON_COMPUTE' });
    expect(serverOn(at('LOST'), { type: 'compute_lost', compute: C1 })).toMatchObject({ ok: false, code: 'ALREADY_LOST' });
  });

  it('found again: a LOST VM returns to what its compute recorded, and only to a status a compute records', () => {
    expect(must(serverOn(at('LOST'), { type: 'found_again', compute: C1, recorded: 'STOPPED' })).status).toBe('STOPPED');
    expect(must(serverOn(at('LOST'), { type: 'found_again', compute: C1, recorded: 'ACTIVE' })).status).toBe('ACTIVE');
    expect(serverOn(at('LOST'), { type: 'found_again', compute: C1, recorded: 'DELETING' })).toMatchObject({ ok: false, code: 'STATUS_REFUSED' });
    expect(serverOn(at('ACTIVE'), { type: 'found_again', compute: C1, recorded: 'ACTIVE' })).toMatchObject({ ok: false, code: 'NOT_LOST_HERE' });
    expect(serverOn(at('LOST', { task: WU }), { type: 'found_again', compute: C1, recorded: 'ACTIVE' })).toMatchObject({ ok: false, code: 'NOT_LOST_HERE' });
  });

  it('evacuated: only an idle LOST VM of that compute, which becomes BUILDING on no compute with the rebuild as its task', () => {
    expect(must(serverOn(at('LOST'), { type: 'evacuation_accepted', compute: C1, unit: OTHER }))).toMatchObject({ status: 'BUILDING', compute_id: null, task: OTHER });
    for (const status of ['ACTIVE', 'STOPPED', 'ERROR', 'DELETING', 'BUILDING'] as const) {
      expect(serverOn(at(status), { type: 'evacuation_accepted', compute: C1, unit: OTHER })).toMatchObject({ ok: false, code: 'STATUS_REFUSED' });
    }
    expect(serverOn(at('LOST', { task: WU }), { type: 'evacuation_accepted', compute: C1, unit: OTHER })).toMatchObject({ ok: false, code: 'SERVER_BUSY' });
    expect(serverOn(at('LOST'), { type: 'evacuation_accepted', compute: 'compute-2' as ComputeId, unit: OTHER })).toMatchObject({ ok: false, code: 'NOT_ON_COMPUTE' });
    // The rebuild's outcome is the server's like any build's.
    const rebuilding = must(serverOn(at('LOST'), { type: 'evacuation_accepted', compute: C1, unit: OTHER }));
    const c2 = 'compute-2' as ComputeId;
    expect(must(serverOn(rebuilding, { type: 'unit_succeeded', unit: OTHER, kind: 'build', compute: c2, from: 'BUILDING' }))).toMatchObject({ status: 'ACTIVE', compute_id: c2, task: null });
    expect(must(serverOn(rebuilding, { type: 'unit_failed', unit: OTHER, kind: 'build', error }))).toMatchObject({ status: 'ERROR', compute_id: null, task: null });
  });

  it('no transition ever produces a status a stored server cannot have', () => {
    for (const status of SERVER_STATUSES) {
      for (const action of ['start', 'stop', 'reboot', 'delete'] as const) {
        const t = serverOn(at(status), { type: 'action_accepted', action, unit: WU, busyWith: null });
        if (t.ok) expect(SERVER_STATUSES).toContain(t.next.status);
      }
    }
  });
});
