// The ACL rules, pure: what the compute role may write anywhere, who owns a compute's directory,
// which files carry the compute key. The server's enforcement is tested in test/zk-acl.test.ts.
import { describe, expect, it } from 'vitest';
import { AclPolicy, computeCredentials, computeIdentity, digestId, grantsFor, makeCredentials, PERM, type Grants } from './acl.js';

const W = PERM.WRITE;
const C = PERM.CREATE;
const D = PERM.DELETE;

// Every kind of node Quark makes, as segments below the root.
const NODES: string[][] = [
  [], ['config'], ['acl'],
  ['computes'], ['computes', 'c1'], ['computes', 'c1', 'alive'], ['computes', 'c1', 'cordoned'], ['computes', 'c1', 'self'], ['computes', 'c1', 'self', 'free'],
  ['computes', 'c1', 'next_tasks'], ['computes', 'c1', 'next_tasks', 'u'], ['computes', 'c1', 'next_tasks', 'u', 'consumes', 'cpu'],
  ['computes', 'c1', 'active_tasks', 'u', 'steps_left', 's'], ['computes', 'c1', 'managing', 'v', 'status'],
  ['work-units'], ['work-units', 'u'], ['servers'], ['servers', 'v'],
  ['shards'], ['shards', '0'], ['shards', '0', 'lock'], ['shards', '0', 'lock', 'x-0001'], ['shards', '0', 'inbox'], ['shards', '0', 'inbox', 'u'],
  ['orcs'], ['orcs', 'o1'], ['server-groups'], ['server-groups', 'g'], ['server-groups', 'g', 'members'], ['server-groups', 'g', 'members', 'v'],
  ['idempotency', 'k'], ['tokens'], ['tokens', 't'], ['audit', 'e-1-0001'], ['images', 'i'], ['image-names', 'p', 'n'],
  ['projects', 'p', 'usage'], ['projects', 'p', 'released'], ['projects', 'p', 'released', 'm'], ['charges'], ['charges', 'v'],
];
const at = (rel: string[]): Grants => grantsFor(rel);

describe('grantsFor', () => {
  it('the compute role writes no node anywhere; it creates and removes only where a compute must', () => {
    const creates: string[] = [];
    const removes: string[] = [];
    for (const rel of NODES) {
      const g = at(rel);
      expect((g.compute ?? 0) & W, rel.join('/')).toBe(0);
      if ((g.compute ?? 0) & C) creates.push(rel.join('/'));
      if ((g.compute ?? 0) & D) removes.push(rel.join('/'));
    }
    expect(creates).toEqual(['computes', 'projects/p/released']);
    expect(removes).toEqual(['servers', 'shards/0/inbox', 'server-groups/g/members', 'charges']);
  });

  it("a compute's own identity has rights only in its own directory, and none on its cordon", () => {
    for (const rel of NODES) {
      const own = rel[0] === 'computes' && rel.length >= 2 && rel[2] !== 'cordoned';
      expect(at(rel).self !== undefined, rel.join('/')).toBe(own);
    }
  });

  it('tokens and the audit trail are the api\'s alone, idempotency keys too but for the orcs\' pruning; shard locks and orc nodes the orcs\'', () => {
    for (const top of ['tokens', 'audit']) expect(at([top, 'x'])).toEqual({ api: PERM.READ | W | C | D });
    // The orcs read expired keys and remove them (ts/orc/retention.ts); they write none.
    expect(at(['idempotency', 'x'])).toEqual({ api: PERM.READ | W | C | D, orc: PERM.READ });
    expect(at(['idempotency'])).toEqual({ api: PERM.READ | W | C | D, orc: PERM.READ | D });
    expect(at(['shards', '0', 'lock', 'x'])).toEqual({ api: PERM.READ, orc: PERM.READ | W | C | D });
    expect(at(['orcs', 'o1']).api).toBe(PERM.READ);
    expect(at(['orcs', 'o1']).compute).toBeUndefined();
    expect(at(['config']).orc).toBe(PERM.READ);
  });
});

describe('credentials and the policy', () => {
  it('a compute file holds its own identity and the role, never the compute key; its digest is the derived one', () => {
    const made = makeCredentials();
    const one = computeCredentials(made.computeFleet, 'c1');
    expect(one.compute_key).toBeUndefined();
    expect(one.identities.map((i) => i.user)).toEqual(['compute', 'compute.c1']);
    expect(digestId(one.identities[1]!)).toBe(digestId(computeIdentity(made.computeFleet.compute_key!, 'c1')));
    expect(digestId(one.identities[1]!)).not.toBe(digestId(computeIdentity(made.computeFleet.compute_key!, 'c2')));
    expect(digestId(one.identities[1]!)).toMatch(/^compute\.c1:[A-Za-z0-9+/]{27}=$/);
    expect(made.api.compute_key).toBeUndefined();
    expect(made.orc.compute_key).toBeUndefined();
    expect(() => computeCredentials(made.admin, 'c1')).toThrow(/compute fleet/);
  });

  it("places every path under its root (told, or found by its first top-level name) and needs a compute's identity for its directory", () => {
    const made = makeCredentials();
    const orc = new AclPolicy(made.orc);
    orc.addRoot('/a/computes'); // a root whose own name is a top-level name still works once told
    expect(orc.locate('/a/computes/computes/c1')).toEqual({ root: '/a/computes', rel: ['computes', 'c1'] });
    expect(orc.locate('/quark/work-units/u')).toEqual({ root: '/quark', rel: ['work-units', 'u'] });
    expect(orc.locate('/quark')).toEqual({ root: '/quark', rel: [] });
    expect(() => orc.forPath('/quark/computes/c1/next_tasks/u')).toThrow(/not known/);
    orc.learnCompute('c1', 'compute.c1:abc');
    const acl = orc.forPath('/quark/computes/c1/next_tasks/u');
    expect(acl.map((e) => [e.id.id, e.permission])).toEqual([
      [made.admin.roles.admin, 31],
      [made.admin.roles.api, 15],
      [made.admin.roles.orc, 15],
      ['compute.c1:abc', 15],
    ]);
    // The admin derives any compute's identity from the key.
    expect(new AclPolicy(made.admin).forPath('/quark/computes/c9/self').some((e) => e.id.id === digestId(computeIdentity(made.admin.compute_key!, 'c9')))).toBe(true);
    // The claim's grant: the record's rule plus the compute, read and write.
    const grant = orc.recordGrant('/quark/work-units/u', 'c1');
    expect(grant.at(-1)).toMatchObject({ permission: PERM.READ | W, id: { scheme: 'digest', id: 'compute.c1:abc' } });
  });
});
