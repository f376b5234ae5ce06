// The placement contract shared by the native scorer and its TypeScript twin.
// Units: vcpus (count), ram_mb, disk_gb, bandwidth_mbps. All integers.

export interface Resources {
  vcpus: number;
  ram_mb: number;
  disk_gb: number;
  bandwidth_mbps: number;
}

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
  /** 'spread' prefers the emptiest compute (default); 'pack' the fullest that fits. */
  strategy: 'spread' | 'pack';
  resource: number;
  bandwidth: number;
}

export interface ScorerOptions {
  overcommit?: Partial<Overcommit>;
  weights?: Partial<Weights>;
  alternates?: number;
}

/**
 * The cluster view the orc keeps current from watches and scores on. Implemented natively
 * (crates/quark-native) and by a TypeScript twin with the same semantics.
 */
export interface ClusterView {
  readonly size: number;
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
