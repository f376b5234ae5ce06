// Who may call what, and who sees which record: the whole table, and the property behind it.
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { asProjectId, canSee, decide, isProjectId, ROLES, scopeOf, type Access, type Principal, type Role } from './policy.js';

const who = (role: Role, project = 'p1'): Principal => ({ tokenId: 'a'.repeat(24), project: asProjectId(project), role });

describe('decide', () => {
  it.each<[Role, Access, boolean]>([
    ['admin', 'public', true],
    ['admin', 'read', true],
    ['admin', 'write', true],
    ['admin', 'admin', true],
    ['member', 'public', true],
    ['member', 'read', true],
    ['member', 'write', true],
    ['member', 'admin', false],
    ['reader', 'public', true],
    ['reader', 'read', true],
    ['reader', 'write', false],
    ['reader', 'admin', false],
  ])('%s on a %s route: %s', (role, access, allowed) => {
    const d = decide(who(role), access);
    expect(d.allow).toBe(allowed);
    if (!d.allow) expect(d).toMatchObject({ status: 403, code: 'FORBIDDEN' });
  });
});

describe('canSee', () => {
  it('an admin sees every project and records without one; others see their own project only', () => {
    fc.assert(
      fc.property(fc.constantFrom(...ROLES), fc.constantFrom('p1', 'p2', 'other'), fc.option(fc.constantFrom('p1', 'p2', 'other'), { nil: undefined }), (role, mine, theirs) => {
        const seen = canSee(scopeOf(who(role, mine)), theirs);
        expect(seen).toBe(role === 'admin' || theirs === mine);
      }),
    );
  });
});

describe('project ids', () => {
  it('are path segments: no slash, no leading dot, at most 63 characters', () => {
    for (const bad of ['', '.', '..', '.hidden', 'a/b', 'a b', 'x'.repeat(64), 'é']) expect(isProjectId(bad), bad).toBe(false);
    for (const good of ['a', 'admin', 'team-1', 'A.b_c', 'x'.repeat(63)]) expect(isProjectId(good), good).toBe(true);
    expect(() => asProjectId('../etc')).toThrow(/invalid project/);
  });
});
