// The placement policy: how the orcs rank the computes a request fits. Cluster-wide in
// /quark/config (`placement_policy`), overridable per zone (`placement_policy_by_zone`); the
// policy of a request is its zone's override if it names a zone that has one, else the
// cluster's. Every orc reads the setting and follows its changes (ts/orc/cluster.ts).

export const PLACEMENT_POLICIES = ['spread', 'pack'] as const;
export type PlacementPolicy = (typeof PLACEMENT_POLICIES)[number];
export const DEFAULT_PLACEMENT_POLICY: PlacementPolicy = 'spread';

export interface PolicySetting {
  policy: PlacementPolicy;
  byZone: Readonly<Record<string, PlacementPolicy>>;
}

export const DEFAULT_POLICY_SETTING: PolicySetting = Object.freeze({
  policy: DEFAULT_PLACEMENT_POLICY,
  byZone: Object.freeze({}),
});

export function isPlacementPolicy(x: unknown): x is PlacementPolicy {
  return typeof x === 'string' && (PLACEMENT_POLICIES as readonly string[]).includes(x);
}

/** `value` as a policy, or a RangeError that says what `what` accepts. */
export function parsePlacementPolicy(value: unknown, what = 'placement policy'): PlacementPolicy {
  if (isPlacementPolicy(value)) return value;
  throw new RangeError(`${what} must be one of ${PLACEMENT_POLICIES.join(', ')}, got ${JSON.stringify(value)}`);
}

/** The policy setting of a config's fields (missing ones default); throws on a bad value. */
export function policySettingOf(cfg: { placement_policy?: unknown; placement_policy_by_zone?: unknown }): PolicySetting {
  const policy = parsePlacementPolicy(cfg.placement_policy ?? DEFAULT_PLACEMENT_POLICY, 'placement_policy');
  const raw = cfg.placement_policy_by_zone ?? {};
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) {
    throw new RangeError(`placement_policy_by_zone must be an object of zone: policy, got ${JSON.stringify(raw)}`);
  }
  const byZone: Record<string, PlacementPolicy> = {};
  for (const [zone, p] of Object.entries(raw)) {
    if (zone === '') throw new RangeError('placement_policy_by_zone: a zone name must not be empty');
    byZone[zone] = parsePlacementPolicy(p, `placement_policy_by_zone.${zone}`);
  }
  return { policy, byZone };
}

/** The policy a request follows: its zone's override, else the cluster's. */
export function policyFor(s: PolicySetting, zone: string | undefined): PlacementPolicy {
  return (zone !== undefined && Object.hasOwn(s.byZone, zone) ? s.byZone[zone] : undefined) ?? s.policy;
}

/** What `quark config set placement-policy` accepts for a zone besides a policy: drop its override. */
export const INHERIT = 'inherit';

/**
 * The config's policy fields after setting `value` as the cluster's policy, or as `zone`'s
 * override (where 'inherit' removes the override). Throws a RangeError that says what is valid.
 */
export function withPlacementPolicy<C extends { placement_policy: PlacementPolicy; placement_policy_by_zone: Record<string, PlacementPolicy> }>(
  cfg: C,
  value: string,
  zone?: string,
): C {
  if (zone === undefined) {
    return { ...cfg, placement_policy: parsePlacementPolicy(value, 'placement-policy') };
  }
  if (zone === '') throw new RangeError('--zone must name a zone');
  const byZone = { ...(cfg.placement_policy_by_zone ?? {}) };
  if (value === INHERIT) delete byZone[zone];
  else byZone[zone] = parsePlacementPolicy(value, `placement-policy for zone ${zone} (or '${INHERIT}')`);
  return { ...cfg, placement_policy_by_zone: byZone };
}
