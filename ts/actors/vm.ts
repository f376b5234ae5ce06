// The VM lifecycle actor. Its state is the status users see; work-unit completions drive it. Every
// write of a server's status asks this machine for the next one (ts/lifecycle/server.ts).
import { setup, transition, type SnapshotFrom } from 'xstate';
import { VM_STATUSES, type ServerAction, type VmStatus } from '../common/vocabulary.js';

export { VM_STATUSES, type VmStatus };

export type VmEvent =
  | { type: 'BUILT' }
  | { type: 'STARTED' }
  | { type: 'STOPPED' }
  | { type: 'REBOOTED' }
  | { type: 'DELETE' }
  | { type: 'DELETED' }
  | { type: 'FAILED'; reason?: string }
  | { type: 'LOST' }
  /** An operator evacuated its dead compute: it is built again elsewhere, under the same id. */
  | { type: 'EVACUATE' }
  /** Its compute came back with the VM after it was marked LOST: `status` is what that compute recorded. */
  | { type: 'FOUND'; status: VmStatus };

export const vmMachine = setup({
  types: {} as { events: VmEvent; input: { status?: VmStatus } },
  guards: {
    recordedAs: ({ event }, params: { status: VmStatus }) => event.type === 'FOUND' && event.status === params.status,
  },
}).createMachine({
  id: 'vm',
  initial: 'BUILDING',
  states: {
    BUILDING: { on: { BUILT: 'ACTIVE', FAILED: 'ERROR', DELETE: 'DELETING', LOST: 'LOST' } },
    ACTIVE: {
      on: { STOPPED: 'STOPPED', REBOOTED: 'ACTIVE', STARTED: 'ACTIVE', DELETE: 'DELETING', FAILED: 'ERROR', LOST: 'LOST' },
    },
    STOPPED: { on: { STARTED: 'ACTIVE', STOPPED: 'STOPPED', DELETE: 'DELETING', FAILED: 'ERROR', LOST: 'LOST' } },
    DELETING: { on: { DELETED: 'DELETED', FAILED: 'ERROR', LOST: 'LOST' } },
    ERROR: { on: { DELETE: 'DELETING', STARTED: 'ACTIVE', STOPPED: 'STOPPED', LOST: 'LOST' } },
    LOST: {
      on: {
        DELETE: 'DELETING',
        EVACUATE: 'BUILDING',
        // Only a status a compute records for a VM it manages (managing/<vm>/status).
        FOUND: [
          { target: 'ACTIVE', guard: { type: 'recordedAs', params: { status: 'ACTIVE' } } },
          { target: 'STOPPED', guard: { type: 'recordedAs', params: { status: 'STOPPED' } } },
        ],
      },
    },
    DELETED: { type: 'final' },
  },
});

export type VmSnapshot = SnapshotFrom<typeof vmMachine>;

/** The status a new server starts in. */
export const VM_INITIAL_STATUS = vmMachine.config.initial as VmStatus;

/** The snapshot of a VM already in `status` (a restored actor continues from it). */
export const vmSnapshotAt = (status: VmStatus): VmSnapshot => vmMachine.resolveState({ value: status, context: {} });

/** The event a successful action delivers to the VM actor. */
export const ACTION_EVENT: Record<ServerAction | 'delete', VmEvent['type']> = {
  start: 'STARTED',
  stop: 'STOPPED',
  reboot: 'REBOOTED',
  delete: 'DELETE',
};

/** The machine's answer to `event` in `status`: the next status, or null when it does not take the event. */
export function vmTransition(status: VmStatus, event: VmEvent): VmStatus | null {
  const snap = vmSnapshotAt(status);
  if (!snap.can(event)) return null;
  const [next] = transition(vmMachine, snap, event);
  return next.value as VmStatus;
}

/** Whether a VM in `status` accepts the action: asked of the machine itself, not a second table. */
export function acceptsAction(status: VmStatus, action: ServerAction | 'delete'): boolean {
  if (status === 'BUILDING' && action !== 'delete') return false;
  return vmTransition(status, { type: ACTION_EVENT[action] } as VmEvent) !== null;
}

/** The next status, or the same one when the machine does not take the event. */
export function nextStatus(status: VmStatus, event: VmEvent): VmStatus {
  return vmTransition(status, event) ?? status;
}
