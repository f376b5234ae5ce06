// Who may do what, as pure functions: roles, what a route asks for, and which records a caller sees.
// A route that declares nothing is admin-only, so a route added later is closed until it says otherwise.

export const ROLES = ['admin', 'member', 'reader'] as const;
export type Role = (typeof ROLES)[number];
export const isRole = (s: unknown): s is Role => typeof s === 'string' && (ROLES as readonly string[]).includes(s);

/**
 * What a route needs. `public`: nothing (health, the visualizer's static shell and assets).
 * `read`: any token; what it returns is cut to the token's project. `write`: admin or member; acts
 * on the token's project only. `admin`: the cluster's internals (computes, orcs, shards), tokens,
 * quotas, audit, operator actions.
 */
export type Access = 'public' | 'read' | 'write' | 'admin';

/** A checked bearer token: who is calling. */
export interface Principal {
  tokenId: string;
  project: ProjectId;
  role: Role;
}

declare const projectBrand: unique symbol;
export type ProjectId = string & { readonly [projectBrand]: 'ProjectId' };

/** A project id is a ZooKeeper path segment and a hash input: letters, digits, . _ - (max 63), no leading dot. */
const PROJECT = /^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$/;
export const isProjectId = (s: unknown): s is ProjectId => typeof s === 'string' && PROJECT.test(s);
export function asProjectId(s: string): ProjectId {
  if (!isProjectId(s)) throw new Error(`invalid project ${JSON.stringify(s)}: letters, digits, . _ - (max 63), starting with a letter or digit`);
  return s;
}
export const PROJECT_PATTERN = PROJECT.source;

export type Decision = { allow: true } | { allow: false; status: 403; code: 'FORBIDDEN'; message: string };

const RANK: Record<Role, number> = { reader: 0, member: 1, admin: 2 };
const NEEDS: Record<Exclude<Access, 'public'>, Role> = { read: 'reader', write: 'member', admin: 'admin' };

/** May this principal call a route that needs `access`? (Project scoping of records is `canSee`.) */
export function decide(p: Principal, access: Access): Decision {
  if (access === 'public') return { allow: true };
  const need = NEEDS[access];
  if (RANK[p.role] >= RANK[need]) return { allow: true };
  return {
    allow: false,
    status: 403,
    code: 'FORBIDDEN',
    message: access === 'admin' ? 'this call needs an admin token' : `a ${p.role} token may only read`,
  };
}

/** The records a caller may see: every project (admin) or one. */
export type Scope = { all: true } | { all: false; project: ProjectId };
export const scopeOf = (p: Principal): Scope => (p.role === 'admin' ? { all: true } : { all: false, project: p.project });
export const ALL: Scope = { all: true };

/**
 * A record is visible when the scope covers its project. A record without a project (written
 * before projects existed) belongs to no project: only an admin sees it.
 */
export function canSee(scope: Scope, recordProject: string | null | undefined): boolean {
  return scope.all || (typeof recordProject === 'string' && recordProject === scope.project);
}
