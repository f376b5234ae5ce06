// The capacity rule, once for TypeScript: how much of a compute a need may use under overcommit.
// The orc's scorer (ts/orc/placement), its claim re-check (ts/orc/cluster.ts) and the compute's
// own admission all call these functions, and the native scorer implements the same integers
// (crates/quark-native/src/placement/rule.rs), so the three never disagree on what fits.
//
// Overcommit ratios become integer per-mille pm = round(ratio * 1000) (1000 = none). A compute's
// headroom on one resource is avail = floor((free*1000 + capacity*(pm-1000)) / 1000), clamped to
// [-2^30, 2^31-1], and a need fits when need <= avail on every resource: exactly
// need <= free + capacity*(ratio-1), i.e. use up to capacity * ratio.

/** Resources in contract order; every value an integer. */
export interface Resources {
  vcpus: number;
  ram_mb: number;
  disk_gb: number;
  bandwidth_mbps: number;
}

export type ResourceName = keyof Resources;
export const RES_KEYS = ['vcpus', 'ram_mb', 'disk_gb', 'bandwidth_mbps'] as const satisfies readonly ResourceName[];

/** Per-mille overcommit per resource, in RES_KEYS order. */
export type OvercommitPm = readonly [number, number, number, number];

export const I32_MAX = 2 ** 31 - 1;
export const AVAIL_MIN = -(2 ** 30);
export const OVERCOMMIT_PM_MAX = 1_000_000;
export const NO_OVERCOMMIT: OvercommitPm = [1000, 1000, 1000, 1000];

/** Ratios (missing ones 1) to per-mille; throws a RangeError naming the bad one. */
export function overcommitPm(ratios: Partial<Resources> = {}): OvercommitPm {
  return RES_KEYS.map((k) => {
    const ratio = ratios[k] ?? 1;
    const pm = Math.round(ratio * 1000);
    if (!Number.isFinite(ratio) || pm < 1 || pm > OVERCOMMIT_PM_MAX) {
      throw new RangeError(`overcommit.${k} must be a ratio from 0.001 to 1000, got ${ratio}`);
    }
    return pm;
  }) as unknown as OvercommitPm;
}

/** floor((free*1000 + cap*(pm-1000)) / 1000), clamped; exact: every term stays below 2^53. */
export function availOf(free: number, cap: number, pm: number): number {
  const n = free * 1000 + cap * (pm - 1000);
  let q = Math.floor(n / 1000);
  if (q * 1000 > n) q -= 1;
  else if ((q + 1) * 1000 <= n) q += 1;
  return q < AVAIL_MIN ? AVAIL_MIN : q > I32_MAX ? I32_MAX : q;
}

/** One resource: `need` fits a compute with `free` left of `cap` under `pm`. */
export function fitsOne(need: number, free: number, cap: number, pm: number): boolean {
  return need <= availOf(free, cap, pm);
}

/** The fits rule: every resource's need within its headroom. */
export function fits(need: Resources, free: Resources, capacity: Resources, pm: OvercommitPm): boolean {
  return RES_KEYS.every((k, r) => fitsOne(need[k], free[k], capacity[k], pm[r]!));
}

/** The most of a resource a compute may hold in use: floor(capacity * ratio). */
export function limitOf(cap: number, pm: number): number {
  return availOf(cap, cap, pm);
}

/** A resource a compute would use beyond what its capacity allows. */
export interface Excess {
  resource: ResourceName;
  used: number;
  limit: number;
}

/**
 * The compute's admission: the resources among `which` whose use (everything it runs, the new
 * unit included) exceeds what its capacity allows under overcommit; empty when it all fits.
 */
export function overUse(
  used: Resources,
  capacity: Resources,
  pm: OvercommitPm,
  which: readonly ResourceName[] = RES_KEYS,
): Excess[] {
  const out: Excess[] = [];
  for (const k of which) {
    const p = pm[RES_KEYS.indexOf(k)]!;
    if (!fitsOne(used[k], capacity[k], capacity[k], p)) out.push({ resource: k, used: used[k], limit: limitOf(capacity[k], p) });
  }
  return out;
}
