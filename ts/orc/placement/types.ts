// The placement contract shared by the native scorer and its TypeScript twin.
// Units: vcpus (count), ram_mb, disk_gb, bandwidth_mbps. All integers.
import type { OvercommitPm, Resources } from '../../common/capacity.js';
import type { PolicySetting } from '../../common/placement-policy.js';

export type { OvercommitPm, Resources } from '../../common/capacity.js';
export type { PlacementPolicy, PolicySetting } from '../../common/placement-policy.js';

/** What the orc knows of one compute; fed from ZooKeeper watches. */
export interface ComputeRecord {
  id: string;
  capacity: Resources;
  free: Resources;
  zone: string;
  labels: string[];
  alive: boolean;
  /** Server groups with a member on this compute (for affinity / anti-affinity). */
  groups: string[];
}

export interface PlacementRequest {
  /** The work unit id: also the seed that breaks ties, so a placement can be replayed. */
  id: string;
  need: Resources;
  zone?: string;
  /** Every label must be present on the compute. */
  labels?: string[];
  /** Must land on a compute that already hosts a member of this group (if any compute does). */
  affinity?: string;
  /** Must not land on a compute hosting a member of this group. */
  antiAffinity?: string;
  /** Computes to skip (earlier failed attempts). */
  exclude?: string[];
}

/** Filter names, in the order they run; each rejection is counted under the first filter that rejects. */
export const FILTERS = ['alive', 'excluded', 'zone', 'labels', 'affinity', 'anti_affinity', 'fits'] as const;
export type FilterName = (typeof FILTERS)[number];

export type Placement =
  | { ok: true; computeId: string; alternates: string[] }
  | { ok: false; considered: number; rejected: Record<FilterName, number> };

export interface Overcommit {
  vcpus: number;
  ram_mb: number;
  disk_gb: number;
  bandwidth_mbps: number;
}

export interface Weights {
  /**
   * The policy of every request, unless `ScorerOptions.policy` or `setPolicy` says otherwise:
   * 'spread' prefers the emptiest compute (default); 'pack' the fullest that fits.
   */
  strategy: 'spread' | 'pack';
  /** Spread: weight of vcpu, ram and disk headroom. */
  resource: number;
  /** Spread: weight of bandwidth headroom. */
  bandwidth: number;
  /** Pack: the cost of each label a compute has beyond the request's (keeps them for it). */
  labels: number;
}

export interface ScorerOptions {
  overcommit?: Partial<Overcommit>;
  weights?: Partial<Weights>;
  /** The policy setting to start with (cluster-wide policy and zone overrides). */
  policy?: PolicySetting;
  alternates?: number;
}

/**
 * The cluster view the orc keeps current from watches and scores on. Implemented natively
 * (crates/quark-native) and by a TypeScript twin with the same semantics.
 */
export interface ClusterView {
  readonly size: number;
  /** Overcommit per resource in per-mille: the fits rule the view filters with. */
  readonly overcommitPm: OvercommitPm;
  /** The policy setting placements follow now. */
  readonly policy: PolicySetting;
  /** Replaces the policy setting; the next placement follows it (no rebuild). */
  setPolicy(s: PolicySetting): void;
  upsert(c: ComputeRecord): void;
  remove(id: string): void;
  setFree(id: string, free: Resources): void;
  setAlive(id: string, alive: boolean): void;
  setGroups(id: string, groups: string[]): void;
  /** Subtract a claim from free (after a successful claim transaction, before the watch lands). */
  applyClaim(id: string, need: Resources): void;
  releaseClaim(id: string, need: Resources): void;
  place(req: PlacementRequest): Placement;
  /** Places requests in order, each consuming capacity in the view for the next. */
  placeBatch(reqs: PlacementRequest[]): Placement[];
}
