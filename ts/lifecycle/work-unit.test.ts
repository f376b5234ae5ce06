// The work-unit lifecycle decided without a cluster (Nomad's scheduler harness is the model): each
// writer's move, what is refused, and properties over random event sequences.
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import type { ComputeId, ServerId, WorkUnitId } from '../common/ids.js';
import type { StepDone, WorkUnitRecord } from '../common/model.js';
import { KINDS, TERMINAL, WORK_KINDS, type WorkKind } from '../common/vocabulary.js';
import { acceptedUnit, unitOn, type UnitEvent } from './work-unit.js';
import { must } from './transition.js';

const C1 = 'compute-1' as ComputeId;
const C2 = 'compute-2' as ComputeId;
const unit = (kind: WorkKind = 'build'): WorkUnitRecord =>
  acceptedUnit({ id: 'wu-1' as WorkUnitId, kind, server_id: 'vm-1' as ServerId, shard: 3, at: 1000 });
const done = (kind: WorkKind, n: number): StepDone[] => KINDS[kind].slice(0, n).map((name, i) => ({ name, time_to_completion_ms: 5 + i, completed_at: 2000 + i }));

describe('work-unit lifecycle', () => {
  it('accepted: PENDING, no compute, every step left', () => {
    const u = unit('delete');
    expect(u).toMatchObject({ state: 'PENDING', compute_id: null, attempts: 0, tried: [], steps_completed: [], finished_at: null });
    expect(u.steps_left).toEqual(['stop', 'undefine', 'release']);
  });

  it('a build from claim to success: SCHEDULED, RUNNING step by step, SUCCEEDED with every step', () => {
    let u = must(unitOn(unit(), { type: 'claimed', compute: C1, at: 1100 }));
    expect(u).toMatchObject({ state: 'SCHEDULED', compute_id: C1, attempts: 1, tried: [C1], updated_at: 1100 });
    for (let n = 1; n < 4; n++) {
      u = must(unitOn(u, { type: 'steps_committed', completed: done('build', n), at: 1100 + n }));
      expect(u.state).toBe('RUNNING');
      expect(u.steps_completed.map((s) => s.name)).toEqual(KINDS.build.slice(0, n));
      expect(u.steps_left).toEqual(KINDS.build.slice(n));
    }
    u = must(unitOn(u, { type: 'succeeded', completed: done('build', 4), at: 1200 }));
    expect(u).toMatchObject({ state: 'SUCCEEDED', steps_left: [], finished_at: 1200, updated_at: 1200 });
    expect(u.steps_completed).toEqual(done('build', 4));
  });

  it('a one-step action succeeds straight from SCHEDULED (intake and finish in one commit)', () => {
    const u = must(unitOn(unit('reboot'), { type: 'claimed', compute: C1, at: 1 }));
    expect(must(unitOn(u, { type: 'succeeded', completed: done('reboot', 1), at: 2 })).state).toBe('SUCCEEDED');
  });

  it('refuses steps out of order, a success with steps left, and a claim of a unit already placed', () => {
    const u = must(unitOn(unit(), { type: 'claimed', compute: C1, at: 1 }));
    const skipped = [done('build', 2)[1]!];
    expect(unitOn(u, { type: 'steps_committed', completed: skipped, at: 2 })).toMatchObject({ ok: false, code: 'STEPS_OUT_OF_ORDER' });
    expect(unitOn(u, { type: 'succeeded', completed: done('build', 3), at: 2 })).toMatchObject({ ok: false, code: 'STEPS_OUT_OF_ORDER' });
    expect(unitOn(u, { type: 'claimed', compute: C2, at: 2 })).toMatchObject({ ok: false, code: 'UNIT_NOT_PENDING' });
    expect(unitOn(unit(), { type: 'steps_committed', completed: done('build', 1), at: 2 })).toMatchObject({ ok: false, code: 'UNIT_NOT_PLACED' });
  });

  it('failed: keeps the steps the orc saw, or takes the compute’s; the error is kept', () => {
    const error = { code: 'NO_VALID_HOST', message: 'no compute can hold it' };
    const f = must(unitOn(unit(), { type: 'failed', error, at: 5 }));
    expect(f).toMatchObject({ state: 'FAILED', error, finished_at: 5, steps_left: KINDS.build });
    const running = must(unitOn(must(unitOn(unit(), { type: 'claimed', compute: C1, at: 1 })), { type: 'steps_committed', completed: done('build', 1), at: 2 }));
    const g = must(unitOn(running, { type: 'failed', error, completed: done('build', 2), at: 6 }));
    expect(g.steps_completed.map((s) => s.name)).toEqual(['allocate_vcpu', 'allocate_storage']);
    expect(g.steps_left).toEqual(['define', 'start']);
  });

  it('compute lost: a build with attempts left goes back to PENDING, keeping what it tried', () => {
    const placed = must(unitOn(unit(), { type: 'claimed', compute: C1, at: 1 }));
    const back = must(unitOn(placed, { type: 'compute_lost', compute: C1, maxAttempts: 3, at: 9 }));
    expect(back).toMatchObject({ state: 'PENDING', compute_id: null, attempts: 1, tried: [C1], updated_at: 9, finished_at: null });
    // Placed again elsewhere: a second attempt, both computes tried.
    expect(must(unitOn(back, { type: 'claimed', compute: C2, at: 10 }))).toMatchObject({ attempts: 2, tried: [C1, C2] });
  });

  it('compute lost: the last attempt of a build, and any action, FAIL with COMPUTE_LOST', () => {
    let u = unit();
    for (const c of [C1, C2, C1]) {
      u = must(unitOn(u, { type: 'claimed', compute: c, at: 1 }));
      if (u.attempts < 3) u = must(unitOn(u, { type: 'compute_lost', compute: c, maxAttempts: 3, at: 2 }));
    }
    expect(u.tried).toEqual([C1, C2]);
    const last = must(unitOn(u, { type: 'compute_lost', compute: C1, maxAttempts: 3, at: 3 }));
    expect(last.state).toBe('FAILED');
    expect(last.error).toEqual({ code: 'COMPUTE_LOST', message: 'compute compute-1 was lost while running this build (attempt 3 of 3)' });
    const stop = must(unitOn(unit('stop'), { type: 'claimed', compute: C1, at: 1 }));
    expect(must(unitOn(stop, { type: 'compute_lost', compute: C1, maxAttempts: 3, at: 2 })).error?.code).toBe('COMPUTE_LOST');
  });

  it('compute lost under a delete: PENDING again, on no compute, to be routed again (it then completes without the compute)', () => {
    const del = must(unitOn(unit('delete'), { type: 'claimed', compute: C1, at: 1 }));
    const back = must(unitOn(del, { type: 'compute_lost', compute: C1, maxAttempts: 3, at: 2 }));
    expect(back).toMatchObject({ state: 'PENDING', compute_id: null, updated_at: 2 });
    expect(must(unitOn(back, { type: 'deleted_without_compute', at: 3 })).state).toBe('SUCCEEDED');
  });

  it('compute lost: refused for a unit on another compute or not in flight', () => {
    const placed = must(unitOn(unit(), { type: 'claimed', compute: C1, at: 1 }));
    expect(unitOn(placed, { type: 'compute_lost', compute: C2, maxAttempts: 3, at: 2 })).toMatchObject({ ok: false, code: 'NOT_ON_COMPUTE' });
    expect(unitOn(unit(), { type: 'compute_lost', compute: C1, maxAttempts: 3, at: 2 })).toMatchObject({ ok: false, code: 'NOT_ON_COMPUTE' });
  });

  it('deleted without compute: only a PENDING delete, which succeeds with no steps', () => {
    expect(must(unitOn(unit('delete'), { type: 'deleted_without_compute', at: 4 }))).toMatchObject({ state: 'SUCCEEDED', steps_left: [], steps_completed: [], finished_at: 4 });
    expect(unitOn(unit('stop'), { type: 'deleted_without_compute', at: 4 }).ok).toBe(false);
  });

  it('property: any event sequence keeps a unit coherent, and an ended unit never moves again', () => {
    const computes = [C1, C2, 'compute-3' as ComputeId];
    const event = (kind: WorkKind): fc.Arbitrary<UnitEvent> =>
      fc.oneof(
        fc.record({ type: fc.constant('claimed' as const), compute: fc.constantFrom(...computes), at: fc.nat() }),
        fc.record({ type: fc.constant('steps_committed' as const), completed: fc.nat(KINDS[kind].length).map((n) => done(kind, n)), at: fc.nat() }),
        fc.record({ type: fc.constant('succeeded' as const), completed: fc.nat(KINDS[kind].length).map((n) => done(kind, n)), at: fc.nat() }),
        fc.record({ type: fc.constant('failed' as const), error: fc.constant({ code: 'X', message: 'x' }), at: fc.nat() }),
        fc.record({ type: fc.constant('compute_lost' as const), compute: fc.constantFrom(...computes), maxAttempts: fc.integer({ min: 1, max: 4 }), at: fc.nat() }),
        fc.record({ type: fc.constant('deleted_without_compute' as const), at: fc.nat() }),
      );
    const scenario = fc.constantFrom(...WORK_KINDS).chain((kind) => fc.tuple(fc.constant(kind), fc.array(event(kind), { maxLength: 30 })));
    fc.assert(
      fc.property(scenario, ([kind, events]) => {
        let u = unit(kind);
        for (const e of events) {
          const t = unitOn(u, e);
          if (TERMINAL.has(u.state)) expect(t.ok).toBe(false);
          if (!t.ok) continue;
          const prev = u;
          u = t.next;
          // Steps: completed then left is the kind's steps, in order (a delete with nothing to run lists none).
          if (e.type === 'deleted_without_compute') expect([u.steps_completed, u.steps_left]).toEqual([[], []]);
          else expect([...u.steps_completed.map((s) => s.name), ...u.steps_left]).toEqual(KINDS[kind]);
          // A placed unit names its compute; a waiting or ended-by-placement one names none new.
          if (u.state === 'SCHEDULED' || u.state === 'RUNNING') expect(u.compute_id).not.toBeNull();
          if (u.state === 'PENDING') expect(u.compute_id).toBeNull();
          expect(new Set(u.tried).size).toBe(u.tried.length);
          expect(u.attempts).toBeGreaterThanOrEqual(prev.attempts);
          // Back to PENDING after a lost compute: a build with attempts left, or a delete (routed again).
          if (e.type === 'compute_lost' && u.state === 'PENDING') {
            expect(['build', 'delete']).toContain(kind);
            if (kind === 'build') expect(u.attempts).toBeLessThan(e.maxAttempts);
          }
          if (TERMINAL.has(u.state)) expect(u.finished_at).toBe(e.at);
          if (u.state === 'SUCCEEDED') expect(u.steps_left).toEqual([]);
          if (u.state === 'FAILED') expect(u.error).toBeDefined();
        }
      }),
      { numRuns: 500 },
    );
  });
});
