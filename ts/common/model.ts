// The records Quark keeps in ZooKeeper. One definition, used by api, orc and compute.
import type { ComputeId, GroupId, ServerId, WorkUnitId } from './ids.js';
import type { GroupPolicy, StepName, VmStatus, WorkKind, WorkUnitState } from './vocabulary.js';
import type { PlacementPolicy } from './placement-policy.js';
import type { ImageRef } from '../images/model.js';

export { TERMINAL, type WorkUnitState } from './vocabulary.js';

export interface Flavor {
  vcpus: number;
  ram_mb: number;
  disk_gb: number;
}

/** What a VM holds on its compute while it exists (the seed's `consumes/`). */
export interface Consumes {
  vcpus: number;
  ram_mb: number;
  disk_gb: number;
  bandwidth_mbps: number;
}

export interface ErrorInfo {
  /** One of UNIT_ERROR_CODES (vocabulary.ts), or the code of what a step failed on (libvirt's, ZooKeeper's). */
  code: string;
  message: string;
  /** NO_VALID_HOST: how many computes each filter removed. */
  rejected?: Record<string, number>;
}

export interface StepDone {
  name: StepName;
  time_to_completion_ms: number;
  completed_at: number;
}

/** /quark/work-units/<id>: what the API polls. */
export interface WorkUnitRecord {
  id: WorkUnitId;
  kind: WorkKind;
  state: WorkUnitState;
  server_id: ServerId;
  shard: number;
  compute_id: ComputeId | null;
  /** Placement attempts so far; computes tried are excluded on retry. */
  attempts: number;
  tried: ComputeId[];
  steps_completed: StepDone[];
  steps_left: StepName[];
  /** For build: what the VM will consume and how it is placed. */
  request?: BuildRequest;
  error?: ErrorInfo;
  /** The X-Request-Id of the API call that made the unit: its log lines in every process carry it. */
  request_id?: string;
  created_at: number;
  updated_at: number;
  finished_at: number | null;
}

export interface BuildRequest {
  name: string;
  flavor: Flavor;
  bandwidth_mbps: number;
  zone?: string;
  labels?: string[];
  /** The server group the VM is a member of: placement follows its policy. */
  group?: GroupId;
  anti_affinity_group?: string;
  /** What a real guest boots from (required on a qemu compute; the test driver ignores it). */
  image?: ImageRef;
  /** NoCloud user data, base64, as the API took it. */
  user_data?: string;
  /** TCP ports of the compute's 127.0.0.1 forwarded into the guest (user-mode network). */
  ports?: PortMapping[];
}

export interface PortMapping {
  host_port: number;
  guest_port: number;
}

/** /quark/servers/<id>: the VM as users see it. */
export interface ServerRecord {
  id: ServerId;
  name: string;
  status: VmStatus;
  compute_id: ComputeId | null;
  flavor: Flavor;
  labels: string[];
  zone: string | null;
  created_at: number;
  /** The work unit currently acting on this server; one at a time. */
  task: WorkUnitId | null;
  last_error?: ErrorInfo;
  /** The image's id, when booted from one. */
  image?: string;
  ports?: PortMapping[];
  /** Its server group, if it joined one at boot; it leaves when deleted or when its build fails. */
  group?: GroupId;
}

/**
 * /quark/server-groups/<id>: a server group (Nova's). Who is a member is the children of its
 * members/ directory (joined by the boot's accept, left by the delete's or failed build's finish);
 * where each member was placed is `placed`, written by the claims. Every claim of a member sets
 * this record at the version its placement read, so the version is the group's placement
 * generation: two claims placed on the same membership cannot both commit.
 */
export interface ServerGroupRecord {
  id: GroupId;
  project: string;
  name: string;
  policy: GroupPolicy;
  created_at: number;
  /** Member → the compute its claim placed it on. An entry whose member left is dropped by the next claim. */
  placed: Record<ServerId, ComputeId>;
}

/** next_tasks/<wu> (and active_tasks/<wu>) node value: everything a compute needs to run it. */
export interface TaskRecord {
  work_unit_id: WorkUnitId;
  kind: WorkKind;
  server_id: ServerId;
  shard: number;
  consumes: Consumes;
  name: string;
  attempt: number;
  birthed_on: number;
  /**
   * In next_tasks only: the unit as the orc's claim wrote it, and its version after that claim
   * (the version it read + 1), so the compute's intake need not read the unit back. Stale if
   * anything wrote the unit since; the compute's first commit, versioned, then finds out.
   */
  unit?: { record: WorkUnitRecord; version: number };
}

/** managing/<vm> node value. */
export interface ManagedRecord {
  server_id: ServerId;
  name: string;
  kind: 'vm';
  birthed_on: number;
  consumes: Consumes;
  status: VmStatus;
}

export interface ComputeCapacity extends Consumes {
  zone: string;
  labels: string[];
  libvirt_uri: string;
  /** A compute that runs real guests: the orcs place only builds that name an image there. */
  image_required?: boolean;
}

/** The ephemeral `alive` node. */
export interface AliveRecord {
  pid: number;
  host: string;
  started_at: number;
}

/** An orc's ephemeral membership node, /orcs/<id>: who it is and the shards it owns. */
export interface OrcMember {
  id: string;
  pid: number;
  host: string;
  since: number;
  shards: number[];
}

export interface ClusterConfig {
  shards: number;
  /** Per-resource overcommit ratios, used by the orcs' filters and the computes' admission. */
  overcommit: { vcpus: number; ram_mb: number; disk_gb: number; bandwidth_mbps: number };
  /** Placement attempts per work unit before it fails (a lost compute costs one attempt). */
  max_attempts: number;
  /** How orcs rank the computes a request fits (see ts/common/placement-policy.ts). */
  placement_policy: PlacementPolicy;
  /** Zone: policy, for requests that name that zone. */
  placement_policy_by_zone: Record<string, PlacementPolicy>;
}

export const DEFAULT_CONFIG: ClusterConfig = {
  shards: 64,
  overcommit: { vcpus: 4, ram_mb: 1, disk_gb: 1, bandwidth_mbps: 1 },
  max_attempts: 3,
  placement_policy: 'spread',
  placement_policy_by_zone: {},
};

export const ZERO: Consumes = { vcpus: 0, ram_mb: 0, disk_gb: 0, bandwidth_mbps: 0 };

export const flavorConsumes = (f: Flavor, bandwidth_mbps = 0): Consumes => ({
  vcpus: f.vcpus,
  ram_mb: f.ram_mb,
  disk_gb: f.disk_gb,
  bandwidth_mbps,
});

export function addConsumes(a: Consumes, b: Consumes, sign: 1 | -1 = 1): Consumes {
  return {
    vcpus: a.vcpus + sign * b.vcpus,
    ram_mb: a.ram_mb + sign * b.ram_mb,
    disk_gb: a.disk_gb + sign * b.disk_gb,
    bandwidth_mbps: a.bandwidth_mbps + sign * b.bandwidth_mbps,
  };
}

/** Shard of a work unit or compute: FNV-1a 32 of its id, mod S. */
export function shardOf(id: string, shards: number): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < id.length; i++) {
    h ^= id.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  return (h >>> 0) % shards;
}
