// The canonical body an Idempotency-Key is matched on, and where a key lives.
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { Paths } from '../zk/paths.js';
import { asProjectId } from '../auth/policy.js';
import { canonicalJson, expired, fingerprintOf, IDEMPOTENCY_TTL_MS, keyPath } from './idempotency.js';

/** The same value with every object's keys in a shuffled order. */
function shuffled(v: unknown, seed: number): unknown {
  if (Array.isArray(v)) return v.map((x, i) => shuffled(x, seed + i));
  if (v === null || typeof v !== 'object') return v;
  const entries = Object.entries(v as Record<string, unknown>);
  entries.sort((a, b) => ((a[0].charCodeAt(0) * 31 + seed) % 7) - ((b[0].charCodeAt(0) * 31 + seed) % 7) || (seed % 2 ? 1 : -1));
  return Object.fromEntries(entries.map(([k, x]) => [k, shuffled(x, seed + 1)]));
}

describe('canonicalJson', () => {
  it('is the same text whatever order the keys were written in, and parses back to the value', () => {
    fc.assert(
      fc.property(fc.jsonValue(), fc.integer({ min: 0, max: 1000 }), (v, seed) => {
        expect(canonicalJson(shuffled(v, seed))).toBe(canonicalJson(v));
        expect(JSON.parse(canonicalJson(v))).toEqual(JSON.parse(JSON.stringify(v)));
      }),
      { numRuns: 500 },
    );
  });

  it('tells different bodies apart', () => {
    expect(fingerprintOf({ name: 'a', flavor: { vcpus: 1 } })).toBe(fingerprintOf({ flavor: { vcpus: 1 }, name: 'a' }));
    expect(fingerprintOf({ name: 'a' })).not.toBe(fingerprintOf({ name: 'b' }));
    expect(fingerprintOf({ a: [1, 2] })).not.toBe(fingerprintOf({ a: [2, 1] }));
  });
});

describe('keys', () => {
  it('one key in two projects is two znodes', () => {
    const paths = new Paths('/q');
    const a = keyPath(paths, asProjectId('p1'), 'POST /v1/servers', 'k');
    const b = keyPath(paths, asProjectId('p2'), 'POST /v1/servers', 'k');
    expect(a).not.toBe(b);
    expect(a).toMatch(/^\/q\/idempotency\/[0-9a-f]{64}$/);
  });

  it('expire after 24 h; a record without a time counts as expired', () => {
    const now = 1_700_000_000_000;
    expect(expired({ created_at: now - IDEMPOTENCY_TTL_MS + 1 }, now)).toBe(false);
    expect(expired({ created_at: now - IDEMPOTENCY_TTL_MS }, now)).toBe(true);
    expect(expired({}, now)).toBe(true);
  });
});
