// The chaos suite's fault schedule: which fault each run injects, where and when, drawn from a
// seeded generator so that a failing run is replayed by giving its seed again.

export const FAULT_KINDS = [
  'kill-orc',
  'kill-compute',
  'kill-api',
  'kill-compute-and-orc',
  'zk-restart',
  'zk-leader-kill',
  'power-cut',
  'cut-link',
] as const;
export type FaultKind = (typeof FAULT_KINDS)[number];

export interface FaultPlan {
  run: number;
  seed: number;
  kind: FaultKind;
  /** Index of the target among the processes of its kind (orc, compute); 0 when unused. */
  target: number;
  /** Second target, for a fault that hits two processes (a compute and an orc). */
  target2: number;
  /** How long after the workload starts the fault lands. */
  atMs: number;
  /** How long a cut link stays down. */
  downMs: number;
}

/** mulberry32: small, fast, and good enough to spread faults; not for anything secret. */
export function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export interface PlanOptions {
  seed: number;
  runs: number;
  kinds: readonly FaultKind[];
  orcs: number;
  computes: number;
  /** Faults land uniformly within this window after the workload starts. */
  windowMs: number;
}

/** The whole schedule, decided up front: run i's fault depends only on the seed and i. */
export function planFaults(o: PlanOptions): FaultPlan[] {
  if (o.kinds.length === 0) throw new Error('no fault kinds to choose from');
  if (o.orcs < 1 || o.computes < 1) throw new Error('a chaos run needs at least one orc and one compute');
  const plans: FaultPlan[] = [];
  for (let run = 0; run < o.runs; run++) {
    const seed = (o.seed + Math.imul(run, 0x9e3779b1)) >>> 0;
    const r = prng(seed);
    const kind = o.kinds[Math.floor(r() * o.kinds.length)]!;
    plans.push({
      run,
      seed,
      kind,
      target: Math.floor(r() * (kind === 'kill-orc' ? o.orcs : o.computes)),
      target2: Math.floor(r() * o.orcs),
      atMs: Math.floor(r() * o.windowMs),
      downMs: 500 + Math.floor(r() * 3000),
    });
  }
  return plans;
}
