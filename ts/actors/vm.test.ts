import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { createActor } from 'xstate';
import { acceptsAction, nextStatus, vmMachine, vmSnapshotAt, VM_STATUSES, type VmEvent } from './vm.js';

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

  it('property: every event sequence stays within the statuses; DELETED is final', () => {
    const ev = fc.constantFrom<VmEvent>(
      { type: 'BUILT' }, { type: 'STARTED' }, { type: 'STOPPED' }, { type: 'REBOOTED' },
      { type: 'DELETE' }, { type: 'DELETED' }, { type: 'FAILED' }, { type: 'LOST' },
    );
    fc.assert(
      fc.property(fc.array(ev, { maxLength: 20 }), (events) => {
        let s = 'BUILDING' as (typeof VM_STATUSES)[number];
        for (const e of events) {
          const n = nextStatus(s, e);
          expect(VM_STATUSES).toContain(n);
          if (s === 'DELETED') expect(n).toBe('DELETED');
          s = n;
        }
      }),
    );
  });
});
