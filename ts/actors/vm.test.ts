import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { createActor } from 'xstate';
import { ACTIONS, VM_STATUSES, type VmStatus } from '../common/vocabulary.js';
import { ACTION_EVENT, acceptsAction, nextStatus, vmMachine, vmSnapshotAt, vmTransition, type VmEvent } from './vm.js';

type EventType = VmEvent['type'];

/**
 * Quark's VM lifecycle as docs/architecture.md states it, written out as the oracle the machine
 * is checked against: status → event → next status. What is missing is refused.
 */
const SPEC: Record<VmStatus, Partial<Record<EventType, VmStatus>>> = {
  BUILDING: { BUILT: 'ACTIVE', FAILED: 'ERROR', DELETE: 'DELETING', LOST: 'LOST' },
  ACTIVE: { STOPPED: 'STOPPED', REBOOTED: 'ACTIVE', STARTED: 'ACTIVE', DELETE: 'DELETING', FAILED: 'ERROR', LOST: 'LOST' },
  STOPPED: { STARTED: 'ACTIVE', STOPPED: 'STOPPED', DELETE: 'DELETING', FAILED: 'ERROR', LOST: 'LOST' },
  DELETING: { DELETED: 'DELETED', FAILED: 'ERROR', LOST: 'LOST' },
  ERROR: { DELETE: 'DELETING', STARTED: 'ACTIVE', STOPPED: 'STOPPED', LOST: 'LOST' },
  LOST: { DELETE: 'DELETING', EVACUATE: 'BUILDING' }, // and FOUND, back to what the compute recorded (below)
  DELETED: {},
};
/** LOST + FOUND: a compute only ever records ACTIVE or STOPPED for a VM it manages. */
const FOUND_TO: ReadonlySet<VmStatus> = new Set(['ACTIVE', 'STOPPED']);

function expected(from: VmStatus, e: VmEvent): VmStatus | null {
  if (e.type === 'FOUND') return from === 'LOST' && FOUND_TO.has(e.status) ? e.status : null;
  return SPEC[from][e.type] ?? null;
}

/** Which user actions the API accepts in each status (a 409 otherwise). */
const ACCEPTS: Record<VmStatus, ReadonlyArray<(typeof ACTIONS)[number] | 'delete'>> = {
  BUILDING: ['delete'],
  ACTIVE: ['start', 'stop', 'reboot', 'delete'],
  STOPPED: ['start', 'stop', 'delete'],
  DELETING: [],
  ERROR: ['start', 'stop', 'delete'],
  LOST: ['delete'],
  DELETED: [],
};

const anyEvent: fc.Arbitrary<VmEvent> = fc.oneof(
  fc.constantFrom<VmEvent>(
    { type: 'BUILT' }, { type: 'STARTED' }, { type: 'STOPPED' }, { type: 'REBOOTED' },
    { type: 'DELETE' }, { type: 'DELETED' }, { type: 'FAILED' }, { type: 'LOST' }, { type: 'EVACUATE' },
  ),
  fc.constantFrom(...VM_STATUSES).map((status): VmEvent => ({ type: 'FOUND', status })),
);

describe('VM lifecycle', () => {
  it('follows a build, stop, start, reboot, delete', () => {
    const a = createActor(vmMachine, { input: {} }).start();
    const seen: string[] = [a.getSnapshot().value];
    for (const type of ['BUILT', 'STOPPED', 'STARTED', 'REBOOTED', 'DELETE', 'DELETED'] as const) {
      a.send({ type });
      seen.push(a.getSnapshot().value);
    }
    expect(seen).toEqual(['BUILDING', 'ACTIVE', 'STOPPED', 'ACTIVE', 'ACTIVE', 'DELETING', 'DELETED']);
    expect(a.getSnapshot().status).toBe('done');
  });

  it('refuses what the state does not allow', () => {
    expect(acceptsAction('BUILDING', 'start')).toBe(false);
    expect(acceptsAction('BUILDING', 'delete')).toBe(true);
    expect(acceptsAction('STOPPED', 'reboot')).toBe(false);
    expect(acceptsAction('ACTIVE', 'reboot')).toBe(true);
    expect(acceptsAction('DELETING', 'delete')).toBe(false);
    expect(acceptsAction('LOST', 'start')).toBe(false);
    expect(acceptsAction('LOST', 'delete')).toBe(true);
  });

  it('a restored snapshot continues from its status', () => {
    const a = createActor(vmMachine, { snapshot: vmSnapshotAt('STOPPED'), input: {} }).start();
    a.send({ type: 'STARTED' });
    expect(a.getSnapshot().value).toBe('ACTIVE');
  });

  it('a VM found again after LOST returns to the status its compute recorded, and no other', () => {
    expect(vmTransition('LOST', { type: 'FOUND', status: 'STOPPED' })).toBe('STOPPED');
    expect(vmTransition('LOST', { type: 'FOUND', status: 'ACTIVE' })).toBe('ACTIVE');
    expect(vmTransition('LOST', { type: 'FOUND', status: 'DELETING' })).toBeNull();
    expect(vmTransition('ACTIVE', { type: 'FOUND', status: 'STOPPED' })).toBeNull();
  });

  it('property: for any event sequence the machine moves exactly as Quark’s lifecycle says, and refuses the rest', () => {
    fc.assert(
      fc.property(fc.constantFrom(...VM_STATUSES), fc.array(anyEvent, { maxLength: 25 }), (start, events) => {
        // The running actor, the pure transition and the oracle walk side by side.
        const actor = createActor(vmMachine, { snapshot: vmSnapshotAt(start), input: {} }).start();
        let s: VmStatus = start;
        for (const e of events) {
          const want = expected(s, e);
          expect(vmTransition(s, e), `${s} + ${e.type}`).toBe(want);
          expect(actor.getSnapshot().can(e)).toBe(want !== null);
          if (actor.getSnapshot().status !== 'done') actor.send(e); // DELETED is final: a stopped actor takes nothing
          s = want ?? s;
          expect(actor.getSnapshot().value).toBe(s);
          expect(nextStatus(s, e)).toBe(expected(s, e) ?? s);
        }
        actor.stop();
      }),
      { numRuns: 300 },
    );
  });

  it('the API accepts an action exactly where Quark allows it, and an accepted action can complete', () => {
    for (const s of VM_STATUSES) {
      for (const action of [...ACTIONS, 'delete'] as const) {
        expect(acceptsAction(s, action), `${action} on ${s}`).toBe(ACCEPTS[s].includes(action));
        if (!acceptsAction(s, action)) continue;
        const next = vmTransition(s, { type: ACTION_EVENT[action] } as VmEvent);
        // What the API accepts, the machine takes when the unit succeeds: no accepted unit ends
        // with a success the VM cannot show (a delete's DELETING then takes DELETED).
        expect(next).not.toBeNull();
        if (action === 'delete') expect(vmTransition(next!, { type: 'DELETED' })).toBe('DELETED');
      }
    }
  });

  it('Quark’s safety rules hold in every status', () => {
    for (const s of VM_STATUSES) {
      // A record disappears only through DELETING: no other event reaches DELETED.
      for (const e of ['BUILT', 'STARTED', 'STOPPED', 'REBOOTED', 'DELETE', 'FAILED', 'LOST'] as const) {
        expect(vmTransition(s, { type: e })).not.toBe('DELETED');
      }
      // A failure never shows a VM as running or stopped cleanly.
      const failed = vmTransition(s, { type: 'FAILED' });
      if (failed !== null) expect(failed).toBe('ERROR');
      // Nothing is stuck: every status but DELETED can still end deleted.
      if (s !== 'DELETED') {
        const viaDelete = s === 'DELETING' ? s : vmTransition(s, { type: 'DELETE' });
        expect(viaDelete, `${s} cannot be deleted`).toBe('DELETING');
        expect(vmTransition('DELETING', { type: 'DELETED' })).toBe('DELETED');
      }
      // An idle VM of a lost compute can always be marked LOST, except once gone.
      expect(vmTransition(s, { type: 'LOST' }) !== null).toBe(s !== 'LOST' && s !== 'DELETED');
    }
  });
});
