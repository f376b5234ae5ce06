// The VM lifecycle actor. Its state is the status users see; work-unit completions drive it.
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
  | { type: 'LOST' };

export const vmMachine = setup({
  types: {} as { events: VmEvent; input: { status?: VmStatus } },
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
    LOST: { on: { DELETE: 'DELETING' } },
    DELETED: { type: 'final' },
  },
});

export type VmSnapshot = SnapshotFrom<typeof vmMachine>;

/** The snapshot of a VM already in `status` (a restored actor continues from it). */
export const vmSnapshotAt = (status: VmStatus): VmSnapshot => vmMachine.resolveState({ value: status, context: {} });

/** The event a successful action delivers to the VM actor. */
export const ACTION_EVENT: Record<ServerAction | 'delete', VmEvent['type']> = {
  start: 'STARTED',
  stop: 'STOPPED',
  reboot: 'REBOOTED',
  delete: 'DELETE',
};

/** Whether a VM in `status` accepts the action: asked of the machine itself, not a second table. */
export function acceptsAction(status: VmStatus, action: ServerAction | 'delete'): boolean {
  if (status === 'BUILDING' && action !== 'delete') return false;
  return vmSnapshotAt(status).can({ type: ACTION_EVENT[action] } as VmEvent);
}

export function nextStatus(status: VmStatus, event: VmEvent): VmStatus {
  const [next] = transition(vmMachine, vmSnapshotAt(status), event);
  return next.value as VmStatus;
}
