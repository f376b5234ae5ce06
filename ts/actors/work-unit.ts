// The work-unit actor: one state per step of its kind, in order, then SUCCEEDED or FAILED.
// steps_completed is the context; steps_left is the current state and those after it. A unit
// restored from its completed steps resumes at the first step not completed and never repeats one.
import { assign, fromPromise, setup, type SnapshotFrom } from 'xstate';
import { stepsOf, type StepName, type WorkKind } from './kinds.js';

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

export interface WorkUnitContext {
  workUnitId: string;
  kind: WorkKind;
  completed: CompletedStep[];
  failure: StepFailure | null;
}

export interface WorkUnitInput {
  workUnitId: string;
  completed?: CompletedStep[];
}

export interface StepInput {
  workUnitId: string;
  kind: WorkKind;
  step: StepName;
  /** True for the kind's final step: its commit also finishes the work unit. */
  last: boolean;
  completed: CompletedStep[];
}

/** Errors carrying a code keep it in the failure record. */
export class StepError extends Error {
  constructor(
    readonly code: string,
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
      // The compute provides the real step runner (libvirt effect + ZooKeeper commit).
      runStep: fromPromise<CompletedStep, StepInput>(async ({ input }) => {
        throw new StepError('NOT_PROVIDED', `no runner for step ${input.step}`);
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
          return { step, code: err?.code ?? 'STEP_FAILED', message: err?.message ?? String(err) };
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
export type WorkUnitSnapshot = SnapshotFrom<WorkUnitMachine>;

/** steps_left as the seed shows it: the current step and those after it. */
export function stepsLeft(kind: WorkKind, completed: readonly { name: StepName }[]): StepName[] {
  return stepsOf(kind).filter((s) => !completed.some((c) => c.name === s));
}
