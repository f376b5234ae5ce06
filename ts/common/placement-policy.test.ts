// The placement policy setting: which policy a request follows, and what a config may hold.
import { describe, expect, it } from 'vitest';
import { DEFAULT_CONFIG } from './model.js';
import { policyFor, policySettingOf, withPlacementPolicy } from './placement-policy.js';

describe('placement policy', () => {
  it('a request follows its zone override, else the cluster policy', () => {
    const s = { policy: 'spread' as const, byZone: { gpu: 'pack' as const } };
    expect(policyFor(s, 'gpu')).toBe('pack');
    expect(policyFor(s, 'az-1')).toBe('spread');
    expect(policyFor(s, undefined)).toBe('spread');
    expect(policyFor(s, 'constructor')).toBe('spread'); // not the object's prototype
  });

  it('defaults to spread and reads valid config fields', () => {
    expect(policySettingOf(DEFAULT_CONFIG)).toEqual({ policy: 'spread', byZone: {} });
    expect(policySettingOf({})).toEqual({ policy: 'spread', byZone: {} });
    expect(policySettingOf({ placement_policy: 'pack', placement_policy_by_zone: { a: 'spread' } })).toEqual({ policy: 'pack', byZone: { a: 'spread' } });
  });

  it('refuses bad values with a message that says what is valid', () => {
    expect(() => policySettingOf({ placement_policy: 'binpack' })).toThrow('placement_policy must be one of spread, pack, got "binpack"');
    expect(() => policySettingOf({ placement_policy_by_zone: { a: 'dense' } })).toThrow('placement_policy_by_zone.a must be one of spread, pack, got "dense"');
    expect(() => policySettingOf({ placement_policy_by_zone: ['a'] })).toThrow(/must be an object of zone: policy/);
    expect(() => policySettingOf({ placement_policy_by_zone: { '': 'pack' } })).toThrow(/zone name must not be empty/);
  });

  it('setting: the cluster policy, a zone override, and inherit to drop it', () => {
    const packed = withPlacementPolicy(DEFAULT_CONFIG, 'pack');
    expect(packed.placement_policy).toBe('pack');
    const zoned = withPlacementPolicy(packed, 'spread', 'az-1');
    expect(zoned.placement_policy_by_zone).toEqual({ 'az-1': 'spread' });
    expect(packed.placement_policy_by_zone).toEqual({}); // not changed in place
    expect(withPlacementPolicy(zoned, 'inherit', 'az-1').placement_policy_by_zone).toEqual({});
    expect(() => withPlacementPolicy(DEFAULT_CONFIG, 'inherit')).toThrow("placement-policy must be one of spread, pack, got \"inherit\"");
    expect(() => withPlacementPolicy(DEFAULT_CONFIG, 'dense', 'az-1')).toThrow("placement-policy for zone az-1 (or 'inherit') must be one of spread, pack");
    expect(() => withPlacementPolicy(DEFAULT_CONFIG, 'pack', '')).toThrow('--zone must name a zone');
  });
});
