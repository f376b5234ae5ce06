// What must hold after any fault, once the cluster has had its time to recover. Pure: the chaos
// runner reads a snapshot of ZooKeeper (and libvirt where it can) and hands it here.
import type { Consumes, ServerRecord, WorkUnitRecord } from '../../common/model.js';

export interface ComputeSnapshot {
  id: string;
  alive: boolean;
  capacity: Consumes;
  /** What next_tasks, active_tasks and managing hold, summed. */
  held: Consumes;
  /** Server ids under managing/. */
  managing: string[];
  /** Server ids whose domain libvirt reports running on this compute, when known. */
  running?: string[];
}

export interface ClusterSnapshot {
  units: WorkUnitRecord[];
  servers: ServerRecord[];
  computes: ComputeSnapshot[];
  overcommit: Consumes;
}

export interface Violation {
  invariant:
    | 'unit-not-terminal'
    | 'build-without-one-vm'
    | 'failed-build-left-a-vm'
    | 'vm-on-two-computes'
    | 'over-capacity';
  subject: string;
  detail: string;
}

const RESOURCES = ['vcpus', 'ram_mb', 'disk_gb', 'bandwidth_mbps'] as const;
/** A VM that exists as far as users are concerned. */
const HELD_STATUSES = new Set(['ACTIVE', 'STOPPED']);

export function checkInvariants(s: ClusterSnapshot): Violation[] {
  const out: Violation[] = [];
  const servers = new Map(s.servers.map((v) => [v.id as string, v]));
  const managedBy = new Map<string, string[]>();
  for (const c of s.computes) for (const vm of c.managing) managedBy.set(vm, [...(managedBy.get(vm) ?? []), c.id]);
  const deleted = new Set(s.units.filter((u) => u.kind === 'delete' && u.state === 'SUCCEEDED').map((u) => u.server_id as string));

  for (const u of s.units) {
    if (u.state !== 'SUCCEEDED' && u.state !== 'FAILED') {
      out.push({ invariant: 'unit-not-terminal', subject: u.id, detail: `${u.kind} is ${u.state} on ${u.compute_id ?? 'no compute'}` });
    }
  }

  for (const u of s.units) {
    if (u.kind !== 'build' || deleted.has(u.server_id)) continue;
    const vm = servers.get(u.server_id);
    const on = managedBy.get(u.server_id) ?? [];
    if (u.state === 'SUCCEEDED') {
      // Exactly one VM: a record that is ACTIVE/STOPPED on one live compute managing it, or LOST.
      if (!vm) {
        out.push({ invariant: 'build-without-one-vm', subject: u.server_id, detail: 'build succeeded but the server record is gone' });
      } else if (vm.status === 'LOST') {
        if (on.length > 1) out.push({ invariant: 'build-without-one-vm', subject: vm.id, detail: `LOST but managed by ${on.join(', ')}` });
      } else if (HELD_STATUSES.has(vm.status)) {
        const owner = s.computes.find((c) => c.id === vm.compute_id);
        if (on.length !== 1 || on[0] !== vm.compute_id || !owner?.alive) {
          out.push({
            invariant: 'build-without-one-vm',
            subject: vm.id,
            detail: `${vm.status} on ${vm.compute_id ?? 'no compute'} (${owner?.alive ? 'alive' : 'dead'}), managed by [${on.join(', ')}]`,
          });
        } else if (vm.status === 'ACTIVE' && owner.running && !owner.running.includes(vm.id)) {
          // The record says it runs; libvirt on its compute says it does not.
          out.push({ invariant: 'build-without-one-vm', subject: vm.id, detail: `ACTIVE on ${owner.id}, whose libvirt does not run it` });
        }
      } else if (vm.task === null) {
        // BUILDING/DELETING with no unit acting on it would never move again.
        out.push({ invariant: 'build-without-one-vm', subject: vm.id, detail: `${vm.status} with no unit acting on it` });
      }
    } else if (u.state === 'FAILED') {
      const later = s.units.some((o) => o.server_id === u.server_id && o.id !== u.id && o.kind === 'build' && o.state === 'SUCCEEDED');
      if (!later && (on.length > 0 || (vm && HELD_STATUSES.has(vm.status)))) {
        out.push({ invariant: 'failed-build-left-a-vm', subject: u.server_id, detail: `status ${vm?.status ?? 'gone'}, managed by [${on.join(', ')}]` });
      }
    }
  }

  const runningOn = new Map<string, string[]>();
  for (const c of s.computes) for (const vm of c.running ?? []) runningOn.set(vm, [...(runningOn.get(vm) ?? []), c.id]);
  for (const [vm, on] of runningOn) {
    if (on.length > 1) out.push({ invariant: 'vm-on-two-computes', subject: vm, detail: `running on ${on.join(', ')}` });
  }
  for (const [vm, on] of managedBy) {
    if (on.length > 1) out.push({ invariant: 'vm-on-two-computes', subject: vm, detail: `managed by ${on.join(', ')}` });
  }

  for (const c of s.computes) {
    for (const r of RESOURCES) {
      const limit = c.capacity[r] * s.overcommit[r];
      if (c.held[r] > limit) out.push({ invariant: 'over-capacity', subject: c.id, detail: `${r}: holds ${c.held[r]} of ${limit}` });
    }
  }
  return out;
}
