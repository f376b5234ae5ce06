// The work-unit machine, driven for real (createActor) with injected step runners.
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { createActor, fromPromise, waitFor } from 'xstate';
import { KINDS, WORK_KINDS, stepsOf, type StepName, type WorkKind } from './kinds.js';
import { machineOf, StepError, stepsLeft, workUnitMachine, type CompletedStep, type StepInput, type StepRunner } from './work-unit.js';

/** Runs a unit until it stops; `crashAt` stops it (like a killed process) when that step starts. */
async function run(
  kind: WorkKind,
  completed: CompletedStep[],
  opts: { failAt?: StepName; crashAt?: StepName; log: StepName[] },
) {
  let crashed = false;
  const machine = workUnitMachine(kind).provide({
    actors: {
      runStep: fromPromise<CompletedStep, StepInput>(async ({ input }) => {
        if (input.step === opts.crashAt) {
          crashed = true;
          return new Promise<CompletedStep>(() => {}); // never finishes: the process died
        }
        if (input.step === opts.failAt) throw new StepError('DOMAIN_MISSING', `${input.step} failed`);
        opts.log.push(input.step);
        return { name: input.step, time_to_completion_ms: 1, completed_at: 0 };
      }),
    },
  });
  const actor = createActor(machine, { input: { workUnitId: 'wu-1', completed } });
  actor.start();
  await waitFor(actor, (s) => s.status === 'done' || crashed, { timeout: 2000 });
  const snap = actor.getSnapshot();
  actor.stop();
  return { snap, crashed };
}

describe('work-unit machine', () => {
  it('has one state per step of its kind, then SUCCEEDED and FAILED', () => {
    for (const kind of WORK_KINDS) {
      const states = Object.keys(workUnitMachine(kind).config.states ?? {});
      expect(states).toEqual(['resume', ...KINDS[kind], 'SUCCEEDED', 'FAILED']);
    }
  });

  it('records a failed step with its code and stops there', async () => {
    const log: StepName[] = [];
    const { snap } = await run('build', [], { failAt: 'define', log });
    expect(snap.value).toBe('FAILED');
    expect(log).toEqual(['allocate_vcpu', 'allocate_storage']);
    expect(snap.context.failure).toEqual({ step: 'define', code: 'DOMAIN_MISSING', message: 'define failed' });
    expect(stepsLeft('build', snap.context.completed)).toEqual(['define', 'start']);
  });

  it('property: steps run in order, none twice, across any crash and restore', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.constantFrom(...WORK_KINDS),
        fc.array(fc.nat(5), { maxLength: 3 }),
        async (kind, crashes) => {
          const steps = stepsOf(kind);
          const log: StepName[] = [];
          let completed: CompletedStep[] = [];
          // Each crash kills the unit at some step; the restored unit sees only what was persisted.
          for (const c of crashes) {
            const crashAt = steps[c % steps.length]!;
            if (completed.some((d) => d.name === crashAt)) continue;
            const { snap } = await run(kind, completed, { crashAt, log });
            completed = snap.context.completed;
            expect(completed.map((d) => d.name)).toEqual(steps.slice(0, steps.indexOf(crashAt)));
          }
          const { snap } = await run(kind, completed, { log });
          expect(snap.value).toBe('SUCCEEDED');
          expect(log).toEqual([...steps]); // in order, each exactly once
          expect(snap.context.completed.map((d) => d.name)).toEqual([...steps]);
        },
      ),
      { numRuns: 150 },
    );
  });

  it('a unit restored with every step completed finishes without running any', async () => {
    const log: StepName[] = [];
    const done = stepsOf('delete').map((name) => ({ name, time_to_completion_ms: 1, completed_at: 0 }));
    const { snap } = await run('delete', done, { log });
    expect(snap.value).toBe('SUCCEEDED');
    expect(log).toEqual([]);
  });

  it('one machine per kind, shared: each actor runs its steps on the runner it was started with', async () => {
    expect(machineOf('build')).toBe(machineOf('build'));
    const ran: Array<[string, string, StepName]> = [];
    const runner = (name: string): StepRunner => ({
      runStep: async (input) => {
        ran.push([name, input.workUnitId, input.step]);
        return { name: input.step, time_to_completion_ms: 1, completed_at: 0 };
      },
    });
    const a = createActor(machineOf('build'), { input: { workUnitId: 'wu-a', runner: runner('compute-a') } }).start();
    const b = createActor(machineOf('build'), { input: { workUnitId: 'wu-b', runner: runner('compute-b') } }).start();
    await Promise.all([a, b].map((x) => waitFor(x, (s) => s.status === 'done', { timeout: 2000 })));
    expect(a.getSnapshot().value).toBe('SUCCEEDED');
    expect(b.getSnapshot().value).toBe('SUCCEEDED');
    expect(ran.filter(([c]) => c === 'compute-a').map(([, wu, s]) => [wu, s])).toEqual(stepsOf('build').map((s) => ['wu-a', s]));
    expect(ran.filter(([c]) => c === 'compute-b').map(([, wu, s]) => [wu, s])).toEqual(stepsOf('build').map((s) => ['wu-b', s]));
  });

  it('without a runner, the first step fails with NOT_PROVIDED', async () => {
    const a = createActor(machineOf('stop'), { input: { workUnitId: 'wu-x' } }).start();
    await waitFor(a, (s) => s.status === 'done', { timeout: 2000 });
    expect(a.getSnapshot().context.failure).toMatchObject({ step: 'stop', code: 'NOT_PROVIDED' });
  });
});
