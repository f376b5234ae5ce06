// What a retention pass chooses from one shard's ended/ names, as pure functions: the names say
// enough (when, which server, which unit) to choose without reading a record.
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { deletedServerName, endedUnitName, parseDuration, parseEnded, selectPrunable, type RetentionPolicy } from './retention.js';

const S1 = '11111111-1111-4111-8111-111111111111';
const S2 = '22222222-2222-4222-8222-222222222222';
const wu = (n: number) => `00000000-0000-4000-8000-${String(n).padStart(12, '0')}`;
const HOUR = 3_600_000;
const policy: RetentionPolicy = { unitRetentionMs: 24 * HOUR, unitsPerServer: 3, deletedRetentionMs: 2 * HOUR, idempotencyTtlMs: HOUR };

describe('ended/ names', () => {
  it('say when, which server and which unit, and sort by time', () => {
    const a = endedUnitName(1_700_000_000_000, S1, wu(1));
    expect(parseEnded(a)).toEqual({ kind: 'unit', name: a, at: 1_700_000_000_000, server: S1, wu: wu(1) });
    const b = deletedServerName(1_700_000_000_001, S2);
    expect(parseEnded(b)).toEqual({ kind: 'server', name: b, at: 1_700_000_000_001, server: S2 });
    // A unit failed as corrupt may name no server.
    expect(parseEnded(endedUnitName(5, null, wu(2)))).toMatchObject({ kind: 'unit', server: null, at: 5 });
    expect(endedUnitName(9, S1, wu(1)) < endedUnitName(10, S1, wu(1))).toBe(true);
  });

  it('a name this version did not write is not understood, hence never pruned', () => {
    for (const n of ['x', 'u_12_a_b', `u_${'9'.repeat(15)}_${S1}`, `s_${'1'.repeat(15)}_a/b`, `lock-${S1}`]) expect(parseEnded(n)).toBeNull();
    expect(selectPrunable(['garbage', 'u_1_2_3'], { ...policy, unitRetentionMs: 0, deletedRetentionMs: 0 }, Date.now(), 100)).toEqual([]);
  });
});

describe('selectPrunable', () => {
  const now = 1_800_000_000_000;

  it('takes units past their retention, past their server\'s newest N, and deleted servers past theirs, oldest first', () => {
    const names = [
      endedUnitName(now - 25 * HOUR, S1, wu(1)), // too old
      endedUnitName(now - 5 * HOUR, S1, wu(2)), // 4th newest of S1: past the cap
      endedUnitName(now - 4 * HOUR, S1, wu(3)),
      endedUnitName(now - 3 * HOUR, S1, wu(4)),
      endedUnitName(now - 1 * HOUR, S1, wu(5)),
      endedUnitName(now - 1 * HOUR, S2, wu(6)), // S2's only one
      deletedServerName(now - 3 * HOUR, S2), // past 2 h
      deletedServerName(now - 1 * HOUR, S1), // kept
    ];
    const got = selectPrunable(names, policy, now, 100).map((e) => e.name);
    expect(got).toEqual([names[0], names[1], names[6]]);
    // The batch bounds it, oldest first.
    expect(selectPrunable(names, policy, now, 2).map((e) => e.name)).toEqual([names[0], names[1]]);
    // No cap: only age.
    expect(selectPrunable(names, { ...policy, unitsPerServer: 0 }, now, 100).map((e) => e.name)).toEqual([names[0], names[6]]);
  });

  it('property: what it takes is exactly what the rules say, and never more than the batch', () => {
    const entry = fc.record({
      kind: fc.constantFrom('unit', 'server'),
      ageMs: fc.integer({ min: 0, max: 48 * HOUR }),
      server: fc.constantFrom(S1, S2, null),
      n: fc.integer({ min: 1, max: 10_000 }),
    });
    fc.assert(
      fc.property(fc.uniqueArray(entry, { selector: (e) => `${e.kind}${e.n}${e.server}`, maxLength: 40 }), fc.integer({ min: 1, max: 50 }), fc.integer({ min: 0, max: 5 }), (entries, batch, cap) => {
        const p = { ...policy, unitsPerServer: cap };
        const names = entries.map((e) => (e.kind === 'server' ? deletedServerName(now - e.ageMs, e.server ?? S1) : endedUnitName(now - e.ageMs, e.server, wu(e.n))));
        const all = selectPrunable(names, p, now, 10_000);
        const chosen = new Set(all.map((e) => e.name));
        // The model: per server, units in retention ranked newest first; beyond `cap` go.
        for (const name of new Set(names)) {
          const e = parseEnded(name)!;
          let expected: boolean;
          if (e.kind === 'server') expected = now - e.at >= p.deletedRetentionMs;
          else if (now - e.at >= p.unitRetentionMs) expected = true;
          else if (cap === 0 || e.server === null) expected = false;
          else {
            const newer = [...new Set(names)]
              .map(parseEnded)
              .filter((o) => o!.kind === 'unit' && o!.server === e.server && now - o!.at < p.unitRetentionMs && (o!.at > e.at || (o!.at === e.at && o!.name > e.name)));
            expected = newer.length >= cap;
          }
          expect(chosen.has(name), name).toBe(expected);
        }
        const some = selectPrunable(names, p, now, batch);
        expect(some.length).toBe(Math.min(batch, all.length));
        // The batch is the oldest of them.
        expect(some.map((e) => e.name)).toEqual(all.slice(0, batch).map((e) => e.name));
      }),
    );
  });
});

describe('parseDuration', () => {
  it('reads ms, s, m, h, d and bare milliseconds; refuses the rest', () => {
    expect(parseDuration('7d')).toBe(7 * 24 * HOUR);
    expect(parseDuration('24h')).toBe(24 * HOUR);
    expect(parseDuration('30m')).toBe(1_800_000);
    expect(parseDuration('90s')).toBe(90_000);
    expect(parseDuration('500ms')).toBe(500);
    expect(parseDuration('250')).toBe(250);
    expect(parseDuration('0')).toBe(0);
    for (const bad of ['', '-1d', '1w', '1.5h', 'd', '7 days']) expect(() => parseDuration(bad)).toThrow(/invalid duration/);
  });
});
