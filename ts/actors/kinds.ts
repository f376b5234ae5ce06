// The kinds of work and their steps. Each step is idempotent and keyed by the work unit and VM ids,
// so a step re-run after a crash finds its effect already done and succeeds without repeating it.

export const KINDS = {
  build: ['allocate_vcpu', 'allocate_storage', 'define', 'start'],
  delete: ['stop', 'undefine', 'release'],
  start: ['start'],
  stop: ['stop'],
  reboot: ['reboot'],
} as const;

export type WorkKind = keyof typeof KINDS;
export type StepName = (typeof KINDS)[WorkKind][number];
export const WORK_KINDS = Object.keys(KINDS) as WorkKind[];

export const stepsOf = (kind: WorkKind): readonly StepName[] => KINDS[kind];

/** Server actions a user may request through POST /v1/servers/:id/actions. */
export const ACTIONS = ['start', 'stop', 'reboot'] as const;
export type ServerAction = (typeof ACTIONS)[number];

export const isWorkKind = (s: unknown): s is WorkKind => typeof s === 'string' && s in KINDS;
