// The work-unit lifecycle as pure functions: a record and an event in, the next record or a
// refusal out. The api (accept), the orc (claim, route, fail, retry after a lost compute) and the
// compute (step commits, success, failure) all write units through these, so the rules of who may
// move a unit where live here and nowhere else.
//
//   PENDING ──claimed──▶ SCHEDULED ──steps_committed──▶ RUNNING ──succeeded──▶ SUCCEEDED
//      ▲                     │  └──────────────succeeded────────────────────────▲
//      └──compute_lost (a build with attempts left, a delete)──┘   any non-terminal ──failed──▶ FAILED
import type { ComputeId, ServerId, WorkUnitId } from '../common/ids.js';
import type { BuildRequest, ErrorInfo, StepDone, WorkUnitRecord } from '../common/model.js';
import { KINDS, TERMINAL, type UnitErrorCode, type WorkKind, type WorkUnitState } from '../common/vocabulary.js';
import { stepsLeft } from '../actors/work-unit.js';
import { accept, refuse, type Transition } from './transition.js';

export interface UnitAccepted {
  id: WorkUnitId;
  kind: WorkKind;
  server_id: ServerId;
  shard: number;
  at: number;
  /** A build's flavor and placement constraints. */
  request?: BuildRequest;
}

export type UnitEvent =
  /** An orc placed it (a build's claim) or routed it (an action) to a compute. */
  | { type: 'claimed'; compute: ComputeId; at: number }
  /** The compute made these steps durable; the unit runs. */
  | { type: 'steps_committed'; completed: readonly StepDone[]; at: number }
  /** The compute committed the last step. */
  | { type: 'succeeded'; completed: readonly StepDone[]; at: number }
  /** It ends with `error`; a compute also says which steps it completed. */
  | { type: 'failed'; error: ErrorInfo; completed?: readonly StepDone[]; at: number }
  /** Its compute's session expired: retried elsewhere if attempts are left (builds only), else failed. */
  | { type: 'compute_lost'; compute: ComputeId; maxAttempts: number; at: number }
  /** A delete of a server no compute holds: nothing to run, the records just go. */
  | { type: 'deleted_without_compute'; at: number };

/** A unit as the API accepts it: PENDING, every step still to run. */
export function acceptedUnit(a: UnitAccepted): WorkUnitRecord {
  return {
    id: a.id,
    kind: a.kind,
    state: 'PENDING',
    server_id: a.server_id,
    shard: a.shard,
    compute_id: null,
    attempts: 0,
    tried: [],
    steps_completed: [],
    steps_left: [...KINDS[a.kind]],
    created_at: a.at,
    updated_at: a.at,
    finished_at: null,
    ...(a.request ? { request: a.request } : {}),
  };
}

const PLACED: ReadonlySet<WorkUnitState> = new Set(['SCHEDULED', 'RUNNING']);

/** Completed steps must be a prefix of the kind's steps: in order, none twice, none foreign. */
function badSteps(wu: WorkUnitRecord, completed: readonly StepDone[]): string | null {
  const steps = KINDS[wu.kind];
  for (let i = 0; i < completed.length; i++) {
    if (completed[i]!.name !== steps[i]) return `step ${i + 1} of a ${wu.kind} is ${steps[i] ?? 'none'}, not ${completed[i]!.name}`;
  }
  return null;
}

function withSteps(wu: WorkUnitRecord, completed: readonly StepDone[]): Pick<WorkUnitRecord, 'steps_completed' | 'steps_left'> {
  return { steps_completed: completed.map((c) => ({ ...c })), steps_left: stepsLeft(wu.kind, completed) };
}

const notIn = (wu: WorkUnitRecord, what: string): Transition<WorkUnitRecord> =>
  refuse(TERMINAL.has(wu.state) ? 'UNIT_FINISHED' : 'UNIT_NOT_PLACED', `work unit ${wu.id} is ${wu.state}: ${what}`);

export function unitOn(wu: WorkUnitRecord, e: UnitEvent): Transition<WorkUnitRecord> {
  switch (e.type) {
    case 'claimed':
      if (wu.state !== 'PENDING') return refuse('UNIT_NOT_PENDING', `work unit ${wu.id} is ${wu.state}, not PENDING: it cannot be placed`);
      return accept({
        ...wu,
        state: 'SCHEDULED',
        compute_id: e.compute,
        attempts: wu.attempts + 1,
        tried: wu.tried.includes(e.compute) ? wu.tried : [...wu.tried, e.compute],
        steps_left: [...KINDS[wu.kind]],
        steps_completed: [],
        updated_at: e.at,
      });

    case 'steps_committed': {
      if (!PLACED.has(wu.state)) return notIn(wu, 'only a placed unit runs steps');
      const bad = badSteps(wu, e.completed);
      if (bad) return refuse('STEPS_OUT_OF_ORDER', bad);
      return accept({ ...wu, ...withSteps(wu, e.completed), updated_at: e.at, state: 'RUNNING' });
    }

    case 'succeeded': {
      if (!PLACED.has(wu.state)) return notIn(wu, 'only a placed unit succeeds');
      const bad = badSteps(wu, e.completed) ?? (e.completed.length === KINDS[wu.kind].length ? null : `${KINDS[wu.kind].length - e.completed.length} step(s) not done`);
      if (bad) return refuse('STEPS_OUT_OF_ORDER', bad);
      return accept({ ...wu, ...withSteps(wu, e.completed), updated_at: e.at, state: 'SUCCEEDED', finished_at: e.at });
    }

    case 'failed':
      if (TERMINAL.has(wu.state)) return notIn(wu, 'it has already ended');
      return accept({
        ...wu,
        ...(e.completed ? withSteps(wu, e.completed) : {}),
        updated_at: e.at,
        state: 'FAILED',
        error: e.error,
        finished_at: e.at,
      });

    case 'compute_lost': {
      if (!PLACED.has(wu.state) || wu.compute_id !== e.compute) {
        return refuse('NOT_ON_COMPUTE', `work unit ${wu.id} is ${wu.state} on ${wu.compute_id ?? 'no compute'}, not in flight on ${e.compute}`);
      }
      if (wu.kind === 'build' && wu.attempts < e.maxAttempts) {
        return accept({ ...wu, state: 'PENDING', compute_id: null, updated_at: e.at });
      }
      // A delete in flight is routed again: with its compute down it completes without it (the
      // records go; a returning compute destroys the domain), as a delete routed then would. Failing
      // it left the server in ERROR for good, its VM running once the compute came back.
      if (wu.kind === 'delete') return accept({ ...wu, state: 'PENDING', compute_id: null, updated_at: e.at });
      return unitOn(wu, {
        type: 'failed',
        error: {
          code: 'COMPUTE_LOST' satisfies UnitErrorCode,
          message: `compute ${e.compute} was lost while running this ${wu.kind} (attempt ${wu.attempts} of ${e.maxAttempts})`,
        },
        at: e.at,
      });
    }

    case 'deleted_without_compute':
      if (wu.kind !== 'delete' || wu.state !== 'PENDING') {
        return refuse('UNIT_NOT_PENDING', `work unit ${wu.id} is a ${wu.state} ${wu.kind}, not a PENDING delete`);
      }
      return accept({ ...wu, state: 'SUCCEEDED', steps_left: [], steps_completed: [], updated_at: e.at, finished_at: e.at });
  }
}
