// The server record's lifecycle as pure functions. Its status is never written by hand: every
// change asks the VM machine (ts/actors/vm.ts) for the next status, and what the machine does not
// take is refused. Unit outcomes touch a server only while that unit is its task.
import type { ComputeId, ServerId, WorkUnitId } from '../common/ids.js';
import type { ErrorInfo, Flavor, ServerRecord, WorkUnitRecord } from '../common/model.js';
import { TERMINAL, type ServerAction, type VmStatus, type WorkKind } from '../common/vocabulary.js';
import { ACTION_EVENT, acceptsAction, VM_INITIAL_STATUS, vmTransition, type VmEvent } from '../actors/vm.js';
import { accept, refuse, type Transition } from './transition.js';

export interface ServerAccepted {
  id: ServerId;
  name: string;
  flavor: Flavor;
  labels: string[];
  zone: string | null;
  at: number;
  /** The build unit that will make it. */
  unit: WorkUnitId;
}

/** What a successful unit of each kind tells the VM machine. */
export const UNIT_DONE_EVENT: Record<WorkKind, VmEvent['type']> = {
  build: 'BUILT',
  start: 'STARTED',
  stop: 'STOPPED',
  reboot: 'REBOOTED',
  delete: 'DELETED',
};

/**
 * The VM's status once a unit of `kind` succeeded from `from` (the compute writes it to
 * managing/<vm>/status and the server): the machine's answer, or `from` if it does not take it.
 */
export function statusAfterSuccess(kind: Exclude<WorkKind, 'delete'>, from: VmStatus): VmStatus {
  return vmTransition(from, { type: UNIT_DONE_EVENT[kind] } as VmEvent) ?? from;
}

export type ServerEvent =
  /** The API accepted an action; `busyWith` is the unit the server names as its task, if it still exists. */
  | { type: 'action_accepted'; action: ServerAction | 'delete'; unit: WorkUnitId; busyWith: Pick<WorkUnitRecord, 'kind' | 'state'> | null }
  /**
   * Its unit succeeded on `compute` (none for a delete of a server no compute holds). `from` is
   * the status the machine starts from: what the compute recorded for the VM (managing/<vm>/status),
   * or BUILDING for a new one.
   */
  | { type: 'unit_succeeded'; unit: WorkUnitId; kind: WorkKind; compute: ComputeId | null; from: VmStatus }
  /** Its unit failed. An action leaves the VM as it was: `from` is the compute's record of it, if any. */
  | { type: 'unit_failed'; unit: WorkUnitId; kind: WorkKind; error: ErrorInfo; from?: VmStatus }
  /** Its build goes back to placement after its compute was lost. */
  | { type: 'build_retried'; unit: WorkUnitId }
  /** Its compute's session expired while no unit was acting on it. */
  | { type: 'compute_lost'; compute: ComputeId }
  /** Its compute came back with the VM, recorded as `recorded`, after it was marked LOST. */
  | { type: 'found_again'; compute: ComputeId; recorded: VmStatus }
  /** An operator evacuated `compute`, which is down: the LOST VM is built again elsewhere by `unit`. */
  | { type: 'evacuation_accepted'; compute: ComputeId; unit: WorkUnitId };

/** A server as the API accepts its build: in the machine's initial status, no compute yet. */
export function acceptedServer(a: ServerAccepted): ServerRecord {
  return {
    id: a.id,
    name: a.name,
    status: VM_INITIAL_STATUS,
    compute_id: null,
    flavor: a.flavor,
    labels: a.labels,
    zone: a.zone,
    created_at: a.at,
    task: a.unit,
  };
}

const notItsTask = (s: ServerRecord, unit: WorkUnitId): Transition<never> =>
  refuse('NOT_ITS_TASK', `server ${s.id} is acted on by ${s.task ?? 'no unit'}, not ${unit}`);

/** The machine's next status for `event`, or the refusal naming what it would not take. */
function machine(s: ServerRecord, from: VmStatus, event: VmEvent): Transition<VmStatus> {
  const next = vmTransition(from, event);
  return next === null ? refuse('STATUS_REFUSED', `a ${from} VM does not take ${event.type} (server ${s.id})`) : accept(next);
}

/** A delete's success removes the record (`next` is null); every other event gives the next record. */
export function serverOn(s: ServerRecord, e: Extract<ServerEvent, { type: 'unit_succeeded' }>): Transition<ServerRecord | null>;
export function serverOn(s: ServerRecord, e: Exclude<ServerEvent, { type: 'unit_succeeded' }>): Transition<ServerRecord>;
export function serverOn(s: ServerRecord, e: ServerEvent): Transition<ServerRecord | null> {
  switch (e.type) {
    case 'action_accepted': {
      if (s.task && e.busyWith && !TERMINAL.has(e.busyWith.state)) {
        return refuse('SERVER_BUSY', `server ${s.id} is busy with ${e.busyWith.kind} work unit ${s.task}; retry when it finishes`);
      }
      if (!acceptsAction(s.status, e.action)) return refuse('ACTION_NOT_ALLOWED', `cannot ${e.action} a server that is ${s.status}`);
      if (e.action !== 'delete') return accept({ ...s, task: e.unit });
      // The other actions change the status when they succeed; a delete shows DELETING at once.
      const status = machine(s, s.status, { type: ACTION_EVENT.delete } as VmEvent);
      return status.ok ? accept({ ...s, task: e.unit, status: status.next }) : status;
    }

    case 'unit_succeeded': {
      if (s.task !== e.unit) return notItsTask(s, e.unit);
      // The domain is gone once a delete succeeded: the record goes, whatever it showed.
      if (e.kind === 'delete') return accept(null);
      return accept({ ...s, status: statusAfterSuccess(e.kind, e.from), compute_id: e.compute, task: null });
    }

    case 'unit_failed': {
      if (s.task !== e.unit) return notItsTask(s, e.unit);
      // A failed build or delete leaves the VM in ERROR; a failed action leaves it as it was.
      let status = e.from ?? s.status;
      if (e.kind === 'build' || e.kind === 'delete') status = vmTransition(s.status, { type: 'FAILED' }) ?? s.status;
      return accept({ ...s, status, compute_id: e.kind === 'build' ? null : s.compute_id, task: null, last_error: e.error });
    }

    case 'build_retried':
      if (s.task !== e.unit) return notItsTask(s, e.unit);
      return accept({ ...s, compute_id: null });

    case 'compute_lost': {
      if (s.compute_id !== e.compute) return refuse('NOT_ON_COMPUTE', `server ${s.id} is on ${s.compute_id ?? 'no compute'}, not ${e.compute}`);
      if (s.task) return refuse('SERVER_BUSY', `server ${s.id} has work unit ${s.task} in flight: its outcome decides`);
      if (s.status === 'LOST') return refuse('ALREADY_LOST', `server ${s.id} is already LOST`);
      const status = machine(s, s.status, { type: 'LOST' });
      return status.ok ? accept({ ...s, status: status.next }) : status;
    }

    case 'found_again': {
      if (s.status !== 'LOST' || s.task || s.compute_id !== e.compute) {
        return refuse('NOT_LOST_HERE', `server ${s.id} is ${s.status} on ${s.compute_id ?? 'no compute'}${s.task ? ` with unit ${s.task}` : ''}`);
      }
      const status = machine(s, s.status, { type: 'FOUND', status: e.recorded });
      return status.ok ? accept({ ...s, status: status.next }) : status;
    }

    case 'evacuation_accepted': {
      // Only an idle VM the cluster has given up for LOST on that compute: one with a unit in
      // flight, or not yet marked, is left to the outcome or the mark that comes first.
      if (s.compute_id !== e.compute) return refuse('NOT_ON_COMPUTE', `server ${s.id} is on ${s.compute_id ?? 'no compute'}, not ${e.compute}`);
      if (s.task) return refuse('SERVER_BUSY', `server ${s.id} has work unit ${s.task} in flight`);
      const status = machine(s, s.status, { type: 'EVACUATE' });
      // No compute until the build is placed: the old one, if it returns, finds the VM not its own.
      return status.ok ? accept({ ...s, status: status.next, compute_id: null, task: e.unit }) : status;
    }
  }
}
