// What every part of a compute works with: its identity, its ZooKeeper session and layout, its
// libvirt connection, what it offers, and the VMs it manages (as managing/ records them).
import type { Hypervisor } from '../native/libvirt.js';
import type { Zk } from '../zk/client.js';
import type { Paths } from '../zk/paths.js';
import type { Logger } from '../common/log.js';
import type { ComputeId, ServerId } from '../common/ids.js';
import type { GuestHost } from '../guest/host.js';
import { addConsumes, type ComputeCapacity, type Consumes, type ManagedRecord } from '../common/model.js';

export interface ComputeContext {
  id: ComputeId;
  zk: Zk;
  paths: Paths;
  hv: Hypervisor;
  capacity: ComputeCapacity;
  log: Logger;
  /** Real guests (a qemu:// connection): storage, seeds, consoles, the probed accelerator. */
  guest?: GuestHost;
}

/** The VMs this compute manages, each as its managing/<vm> record (status included). */
export type ManagedVms = Map<ServerId, ManagedRecord>;

/** self/free: capacity minus what next_tasks, active_tasks and managing hold. */
export function freeOf(cap: ComputeCapacity, used: Consumes): Consumes {
  return addConsumes({ vcpus: cap.vcpus, ram_mb: cap.ram_mb, disk_gb: cap.disk_gb, bandwidth_mbps: cap.bandwidth_mbps }, used, -1);
}
