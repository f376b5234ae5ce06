// The chaos suite's pure parts: a seed replays the same faults, and each invariant fires on the
// state it describes and stays quiet on a healthy cluster.
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { FAULT_KINDS, planFaults } from './plan.js';
import { checkInvariants, type ClusterSnapshot } from './invariants.js';
import type { ServerRecord, WorkUnitRecord } from '../../common/model.js';
import type { ComputeId, ServerId, WorkUnitId } from '../../common/ids.js';

const opts = { runs: 50, kinds: FAULT_KINDS, orcs: 2, computes: 3, windowMs: 4000 };

describe('fault plan', () => {
  it('is the same for the same seed, and run i does not depend on how many runs there are', () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 2 ** 31 }), (seed) => {
        const a = planFaults({ ...opts, seed });
        expect(planFaults({ ...opts, seed })).toEqual(a);
        expect(planFaults({ ...opts, seed, runs: 7 })).toEqual(a.slice(0, 7));
      }),
    );
  });

  it('draws every kind over enough runs, with targets in range', () => {
    const plans = planFaults({ ...opts, seed: 1, runs: 400 });
    expect(new Set(plans.map((p) => p.kind))).toEqual(new Set(FAULT_KINDS));
    for (const p of plans) {
      expect(p.target).toBeLessThan(p.kind === 'kill-orc' ? opts.orcs : opts.computes);
      expect(p.target2).toBeLessThan(opts.orcs);
      expect(p.atMs).toBeLessThan(opts.windowMs);
    }
  });

  it('refuses an empty choice', () => {
    expect(() => planFaults({ ...opts, seed: 1, kinds: [] })).toThrow(/no fault kinds/);
  });
});

const cap = { vcpus: 8, ram_mb: 8192, disk_gb: 100, bandwidth_mbps: 1000 };
const none = { vcpus: 0, ram_mb: 0, disk_gb: 0, bandwidth_mbps: 0 };
const flavor = { vcpus: 2, ram_mb: 2048, disk_gb: 20 };
const held = { vcpus: 2, ram_mb: 2048, disk_gb: 20, bandwidth_mbps: 0 };

function unit(id: string, server: string, over: Partial<WorkUnitRecord> = {}): WorkUnitRecord {
  return {
    id: id as WorkUnitId,
    kind: 'build',
    state: 'SUCCEEDED',
    server_id: server as ServerId,
    shard: 0,
    compute_id: 'c1' as ComputeId,
    attempts: 1,
    tried: [],
    steps_completed: [],
    steps_left: [],
    created_at: 0,
    updated_at: 0,
    finished_at: 1,
    ...over,
  };
}
function server(id: string, over: Partial<ServerRecord> = {}): ServerRecord {
  return { id: id as ServerId, name: id, status: 'ACTIVE', compute_id: 'c1' as ComputeId, flavor, labels: [], zone: null, created_at: 0, task: null, ...over };
}
function healthy(): ClusterSnapshot {
  return {
    units: [unit('u1', 'vm1')],
    servers: [server('vm1')],
    computes: [
      { id: 'c1', alive: true, capacity: cap, held, managing: ['vm1'], running: ['vm1'] },
      { id: 'c2', alive: true, capacity: cap, held: none, managing: [], running: [] },
    ],
    overcommit: { vcpus: 1, ram_mb: 1, disk_gb: 1, bandwidth_mbps: 1 },
  };
}
const kinds = (s: ClusterSnapshot) => checkInvariants(s).map((v) => v.invariant);

describe('invariants', () => {
  it('a healthy cluster has none', () => {
    expect(checkInvariants(healthy())).toEqual([]);
  });

  it('a unit left in flight', () => {
    const s = healthy();
    s.units.push(unit('u2', 'vm2', { state: 'SCHEDULED' }));
    s.servers.push(server('vm2', { status: 'BUILDING', task: 'u2' as WorkUnitId }));
    expect(kinds(s)).toEqual(['unit-not-terminal']);
  });

  it('an ACTIVE VM whose compute is dead, or that nobody manages, or that two manage', () => {
    const dead = healthy();
    dead.computes[0]!.alive = false;
    expect(kinds(dead)).toEqual(['build-without-one-vm']);
    const orphan = healthy();
    orphan.computes[0]!.managing = [];
    expect(kinds(orphan)).toEqual(['build-without-one-vm']);
    const twice = healthy();
    twice.computes[1]!.managing = ['vm1'];
    expect(kinds(twice)).toEqual(['build-without-one-vm', 'vm-on-two-computes']);
  });

  it('LOST on a dead compute is fine; a succeeded build whose record vanished is not', () => {
    const lost = healthy();
    lost.computes[0]!.alive = false;
    lost.servers[0]!.status = 'LOST';
    expect(checkInvariants(lost)).toEqual([]);
    const gone = healthy();
    gone.servers = [];
    expect(kinds(gone)).toEqual(['build-without-one-vm']);
  });

  it('a deleted VM is no longer owed', () => {
    const s = healthy();
    s.units.push(unit('u2', 'vm1', { kind: 'delete' }));
    s.servers = [];
    s.computes[0]!.managing = [];
    s.computes[0]!.running = [];
    s.computes[0]!.held = none;
    expect(checkInvariants(s)).toEqual([]);
  });

  it('a failed build that left a VM behind', () => {
    const s = healthy();
    s.units[0]!.state = 'FAILED';
    s.servers[0]!.status = 'ERROR';
    expect(kinds(s)).toEqual(['failed-build-left-a-vm']);
    s.computes[0]!.managing = [];
    s.computes[0]!.held = none;
    expect(checkInvariants(s)).toEqual([]);
  });

  it('an ACTIVE VM that libvirt on its compute does not run (when libvirt\'s word is known)', () => {
    const s = healthy();
    s.computes[0]!.running = [];
    expect(kinds(s)).toEqual(['build-without-one-vm']);
    delete s.computes[0]!.running;
    expect(checkInvariants(s)).toEqual([]);
    const stopped = healthy();
    stopped.servers[0]!.status = 'STOPPED';
    stopped.computes[0]!.running = [];
    expect(checkInvariants(stopped)).toEqual([]);
  });

  it('a domain running on two computes', () => {
    const s = healthy();
    s.computes[1]!.running = ['vm1'];
    expect(kinds(s)).toEqual(['vm-on-two-computes']);
  });

  it('a compute holding more than capacity times overcommit, and not at exactly the limit', () => {
    const s = healthy();
    s.computes[0]!.held = { ...cap, vcpus: cap.vcpus };
    expect(checkInvariants(s)).toEqual([]);
    s.computes[0]!.held = { ...cap, vcpus: cap.vcpus + 1 };
    expect(checkInvariants(s)).toEqual([{ invariant: 'over-capacity', subject: 'c1', detail: 'vcpus: holds 9 of 8' }]);
    s.overcommit = { ...s.overcommit, vcpus: 4 };
    expect(checkInvariants(s)).toEqual([]);
  });
});
