// The kinds of work and their steps, as the machines use them. The words themselves are defined
// once in ts/common/vocabulary.ts; each step is idempotent and keyed by the work unit and VM ids,
// so a step re-run after a crash finds its effect already done and succeeds without repeating it.
import { KINDS, type StepName, type WorkKind } from '../common/vocabulary.js';

export { ACTIONS, isWorkKind, KINDS, WORK_KINDS, type ServerAction, type StepName, type WorkKind } from '../common/vocabulary.js';

export const stepsOf = (kind: WorkKind): readonly StepName[] => KINDS[kind];
