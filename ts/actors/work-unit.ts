// The work-unit actor: one state per step of its kind, in order, then SUCCEEDED or FAILED.
// steps_completed is the context; steps_left is the current state and those after it. A unit
// restored from its completed steps resumes at the first step not completed and never repeats one.
import { assign, fromPromise, setup, type SnapshotFrom } from 'xstate';
import { stepsOf, type StepName, type WorkKind } from './kinds.js';
import type { UnitErrorCode } from '../common/vocabulary.js';

export interface CompletedStep {
  name: StepName;
  time_to_completion_ms: number;
  completed_at: number;
}

export interface StepFailure {
  step: StepName;
  code: string;
  message: string;
}

/** Who runs a unit's steps (its compute): given with each actor, since machines are shared. */
export interface StepRunner {
  runStep(input: StepInput): Promise<CompletedStep>;
}

export interface WorkUnitContext {
  workUnitId: string;
  kind: WorkKind;
  completed: CompletedStep[];
  failure: StepFailure | null;
  runner: StepRunner | null;
}

export interface WorkUnitInput {
  workUnitId: string;
  completed?: CompletedStep[];
  runner?: StepRunner;
}

export interface StepInput {
  workUnitId: string;
  kind: WorkKind;
  step: StepName;
  /** True for the kind's final step: its commit also finishes the work unit. */
  last: boolean;
  completed: CompletedStep[];
  /** The runner the actor was started with (see `StepRunner`). */
  runner?: StepRunner | null;
}

/** Errors carrying a code keep it in the failure record: one of Quark's own unit error codes. */
export class StepError extends Error {
  constructor(
    readonly code: UnitErrorCode,
    message: string,
  ) {
    super(message);
  }
}

export const FINAL_STATES = ['SUCCEEDED', 'FAILED'] as const;

export function workUnitMachine(kind: WorkKind) {
  const steps = stepsOf(kind);
  const stepStates = Object.fromEntries(
    steps.map((step, i) => [
      step,
      {
        invoke: {
          src: 'runStep' as const,
          input: ({ context }: { context: WorkUnitContext }): StepInput => ({
            workUnitId: context.workUnitId,
            kind,
            step,
            last: i === steps.length - 1,
            completed: context.completed,
            runner: context.runner,
          }),
          onDone: { target: steps[i + 1] ?? 'SUCCEEDED', actions: 'recordStep' as const },
          onError: { target: 'FAILED', actions: 'recordFailure' as const },
        },
      },
    ]),
  );

  return setup({
    types: {} as { context: WorkUnitContext; input: WorkUnitInput },
    actors: {
      // The runner the actor was started with (the compute: libvirt effect + ZooKeeper commit). Passing
      // it in the input, not in provide(), keeps one machine per kind for every compute of a process.
      runStep: fromPromise<CompletedStep, StepInput>(async ({ input }) => {
        if (!input.runner) throw new StepError('NOT_PROVIDED', `no runner for step ${input.step}`);
        return input.runner.runStep(input);
      }),
    },
    guards: {
      isNext: ({ context }, params: { step: StepName }) =>
        steps.find((s) => !context.completed.some((c) => c.name === s)) === params.step,
    },
    actions: {
      recordStep: assign({
        completed: ({ context, event }) => [...context.completed, (event as unknown as { output: CompletedStep }).output],
      }),
      recordFailure: assign({
        failure: ({ context, event }) => {
          const err = (event as unknown as { error: unknown }).error as { code?: string; message?: string };
          const step = steps.find((s) => !context.completed.some((c) => c.name === s)) ?? steps[steps.length - 1]!;
          return { step, code: err?.code ?? ('STEP_FAILED' satisfies UnitErrorCode), message: err?.message ?? String(err) };
        },
      }),
    },
  }).createMachine({
    id: `work-unit.${kind}`,
    context: ({ input }) => ({
      workUnitId: input.workUnitId,
      kind,
      completed: input.completed ?? [],
      failure: null,
      runner: input.runner ?? null,
    }),
    initial: 'resume',
    states: {
      // Transient: jump to the first step not yet completed (the start of a fresh unit too).
      resume: {
        always: [
          ...steps.map((step) => ({ target: step, guard: { type: 'isNext' as const, params: { step } } })),
          { target: 'SUCCEEDED' },
        ],
      },
      ...stepStates,
      SUCCEEDED: { type: 'final' },
      FAILED: { type: 'final' },
    },
  });
}

export type WorkUnitMachine = ReturnType<typeof workUnitMachine>;

const machines = new Map<WorkKind, WorkUnitMachine>();
/**
 * The machine of a kind, built once per process: building a statechart (state nodes,
 * transitions) for every unit was about a tenth of a busy hollow process's time, and one per
 * compute would cost ~21 KB each. Immutable, so every compute of the process shares it.
 */
export function machineOf(kind: WorkKind): WorkUnitMachine {
  let m = machines.get(kind);
  if (!m) machines.set(kind, (m = workUnitMachine(kind)));
  return m;
}
export type WorkUnitSnapshot = SnapshotFrom<WorkUnitMachine>;

/** steps_left as the seed shows it: the current step and those after it. */
export function stepsLeft(kind: WorkKind, completed: readonly { name: StepName }[]): StepName[] {
  return stepsOf(kind).filter((s) => !completed.some((c) => c.name === s));
}
