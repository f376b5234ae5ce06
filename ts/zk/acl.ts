// ZooKeeper ACLs per role (issue 12). Every process authenticates with digest credentials: the
// api, the orcs and the computes each as their role, every compute also as itself
// (`compute.<id>`), operators and tools as admin. Every znode Quark creates under a root carries
// the ACL its path's rule gives (grantsFor, pure), so who may write what is decided here, in one
// table, whichever process creates the node. A compute writes a unit's and a server's record only
// once the orc that placed the unit there granted it on those two nodes (recordGrant).
//
// ZooKeeper checks a create and a delete on the *parent* (CREATE / DELETE), a write and a read on
// the node itself (WRITE / READ), `check` in a multi as READ; `exists` is never checked.
import { createHash, createHmac, randomBytes } from 'node:crypto';
import { chmodSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import zookeeper from 'node-zookeeper-client';

export type Role = 'admin' | 'api' | 'orc' | 'compute';
export const ROLES: readonly Role[] = ['admin', 'api', 'orc', 'compute'];

/** ZooKeeper's permission bits. */
export const PERM = { READ: 1, WRITE: 2, CREATE: 4, DELETE: 8, ADMIN: 16 } as const;
const R = PERM.READ;
const W = PERM.WRITE;
const C = PERM.CREATE;
const D = PERM.DELETE;
const RWCD = R | W | C | D;
const ALL = RWCD | PERM.ADMIN;

/** A digest user and its password (what `addAuth digest user:password` sends). */
export interface Identity {
  user: string;
  password: string;
}

/** One process's credentials file (JSON, mode 0600). */
export interface Credentials {
  /** This file's role. */
  role: Role;
  /** What the session authenticates as: the role, and a compute also as itself. */
  identities: Identity[];
  /** The four roles' digest ids (`user:base64(sha1(user:password))`): public, put in every ACL. */
  roles: Record<Role, string>;
  /** A compute's own id (its file carries `compute.<id>`). */
  compute_id?: string;
  /** The admin's and a hollow fleet's: derives any compute's own password (computeIdentity). */
  compute_key?: string;
}

/** ZooKeeper's digest id of an identity. */
export const digestId = (i: Identity): string => `${i.user}:${createHash('sha1').update(`${i.user}:${i.password}`).digest('base64')}`;

export const computeUser = (id: string): string => `compute.${id}`;

/** A compute's own identity, derived from the cluster's compute key: only the key's holders can derive it. */
export function computeIdentity(key: string, id: string): Identity {
  return { user: computeUser(id), password: createHmac('sha256', Buffer.from(key, 'base64url')).update(`compute:${id}`).digest('base64url') };
}

const secret = (): string => randomBytes(24).toString('base64url');

/** A fresh set of credentials: one file per role, and the compute key in the admin's and the fleet's. */
export function makeCredentials(): { admin: Credentials; api: Credentials; orc: Credentials; computeFleet: Credentials } {
  const ids = Object.fromEntries(ROLES.map((r) => [r, { user: r, password: secret() }])) as Record<Role, Identity>;
  const roles = Object.fromEntries(ROLES.map((r) => [r, digestId(ids[r])])) as Record<Role, string>;
  const computeKey = secret();
  const file = (role: Role, extra: Partial<Credentials> = {}): Credentials => ({ role, identities: [ids[role]], roles, ...extra });
  return { admin: file('admin', { compute_key: computeKey }), api: file('api'), orc: file('orc'), computeFleet: file('compute', { compute_key: computeKey }) };
}

/** One compute's own file, minted from the compute fleet's file (which holds the role and the compute key). */
export function computeCredentials(fleet: Credentials, id: string): Credentials {
  const role = fleet.identities.find((i) => i.user === 'compute');
  if (fleet.role !== 'compute' || !role || !fleet.compute_key) throw new Error("compute credentials are made from the compute fleet's file (compute-fleet.json)");
  return { role: 'compute', identities: [role, computeIdentity(fleet.compute_key, id)], roles: fleet.roles, compute_id: id };
}

/** What a session authenticates as, with a compute's own identity derived when the file holds only the key. */
export function identitiesFor(c: Credentials, computeId?: string): Identity[] {
  const out = [...c.identities];
  if (computeId && c.compute_key && c.role === 'compute' && !out.some((i) => i.user === computeUser(computeId))) out.push(computeIdentity(c.compute_key, computeId));
  return out;
}

// ---- files -------------------------------------------------------------------------------------

export const CREDENTIALS_ENV = 'QUARK_ZK_CREDENTIALS';

function check(c: unknown, where: string): Credentials {
  const x = c as Partial<Credentials>;
  const ok =
    x &&
    typeof x === 'object' &&
    ROLES.includes(x.role as Role) &&
    Array.isArray(x.identities) &&
    x.identities.every((i) => typeof i?.user === 'string' && typeof i?.password === 'string' && !i.user.includes(':')) &&
    x.roles &&
    ROLES.every((r) => typeof x.roles![r] === 'string');
  if (!ok) throw new Error(`${where}: not a Quark ZooKeeper credentials file`);
  return x as Credentials;
}

export function readCredentials(file: string): Credentials {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (e) {
    throw new Error(`cannot read ZooKeeper credentials ${file}: ${(e as Error).message}`, { cause: e });
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (e) {
    throw new Error(`${file}: not JSON`, { cause: e });
  }
  return check(parsed, file);
}

/** Written with mode 0600 (and re-chmodded: an existing file keeps its mode on write). */
export function writeCredentials(file: string, c: Credentials): void {
  writeFileSync(file, `${JSON.stringify(c, null, 2)}\n`, { mode: 0o600 });
  chmodSync(file, 0o600);
}

/** The files of a credentials directory. */
export const credentialFiles = (dir: string) => ({
  admin: join(dir, 'admin.json'),
  api: join(dir, 'api.json'),
  orc: join(dir, 'orc.json'),
  computeFleet: join(dir, 'compute-fleet.json'),
  compute: (id: string) => join(dir, `compute-${id}.json`),
});

/**
 * Makes a credentials directory (mode 0700) if it has no admin.json yet, and one file per given
 * compute id (kept if present). Returns whether the role files were made now.
 */
export function writeCredentialsDir(dir: string, computeIds: readonly string[] = []): { created: boolean } {
  const f = credentialFiles(dir);
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  chmodSync(dir, 0o700);
  const created = !existsSync(f.admin);
  if (created) {
    const made = makeCredentials();
    writeCredentials(f.api, made.api);
    writeCredentials(f.orc, made.orc);
    writeCredentials(f.computeFleet, made.computeFleet);
    writeCredentials(f.admin, made.admin); // last: its presence says the set is whole
  }
  for (const id of computeIds) mintComputeFile(dir, id);
  return { created };
}

/** compute-<id>.json from the fleet's file (kept if it exists); returns its path. */
export function mintComputeFile(dir: string, id: string): string {
  const f = credentialFiles(dir);
  const file = f.compute(id);
  if (!existsSync(file)) writeCredentials(file, computeCredentials(readCredentials(f.computeFleet), id));
  return file;
}

/** The credentials named by QUARK_ZK_CREDENTIALS (a file), or undefined if it is unset or empty. */
export function credentialsFromEnv(env: NodeJS.ProcessEnv = process.env): Credentials | undefined {
  const file = env[CREDENTIALS_ENV];
  return file ? readCredentials(file) : undefined;
}

// ---- the rules ---------------------------------------------------------------------------------

/** What each role may do on a node; `self` is the compute whose directory the node is in. */
export interface Grants {
  api?: number;
  orc?: number;
  compute?: number;
  self?: number;
}

const CONTROL: Grants = { api: RWCD, orc: RWCD, compute: R };
/** A unit's or server's record: the orc also sets its ACL (ADMIN), to grant the compute it sends the unit to. */
const RECORD: Grants = { api: RWCD, orc: ALL, compute: R };

/**
 * The rule for a node, by its path's segments below the root. admin has every permission
 * everywhere (added by aclOf). Anything not named here is the control plane's (api, orc) and
 * readable by computes.
 */
export function grantsFor(rel: readonly string[]): Grants {
  const [top, , b] = rel;
  const depth = rel.length;
  switch (top) {
    case undefined:
      // The root: api and orc may add top-level directories (their ACLs still follow these rules).
      return { api: R | C, orc: R | C, compute: R };
    case 'config':
    case 'acl':
      return { api: R, orc: R, compute: R };
    case 'computes':
      if (depth === 1) return { api: R, orc: R, compute: R | C }; // a compute creates its own directory
      // The orc reads the compute's own digest from this node's ACL: ZooKeeper shows digests
      // (not an "x") only to a reader with ADMIN.
      if (depth === 2) return { api: RWCD, orc: ALL, self: RWCD };
      if (b === 'cordoned') return { api: RWCD, orc: R }; // an operator's, read by the orcs
      return { api: RWCD, orc: RWCD, self: RWCD };
    case 'servers':
      // A compute's delete removes the server's record: ZooKeeper checks that on servers/ itself.
      return depth === 1 ? { api: RWCD, orc: RWCD, compute: R | D } : RECORD;
    case 'work-units':
      return depth === 1 ? CONTROL : RECORD;
    case 'shards':
      if (depth <= 2) return { api: R, orc: RWCD, compute: R };
      if (b === 'lock') return { api: R, orc: RWCD };
      if (b === 'inbox' && depth === 3) return { api: RWCD, orc: RWCD, compute: R | D }; // a finished unit's compute removes its entry
      // A unit's ending transaction files its name here (ts/lifecycle/retention.ts); the owner prunes it.
      if (b === 'ended' && depth === 3) return { api: R, orc: RWCD, compute: R | C };
      return CONTROL;
    case 'deleted-servers':
      // A compute's delete keeps the server's last record here; the owning orc prunes it.
      return depth === 1 ? { api: R, orc: RWCD, compute: R | C } : { api: R, orc: RWCD, compute: R };
    case 'orcs':
      return { api: R, orc: RWCD };
    case 'server-groups':
      if (depth === 3 && b === 'members') return { api: RWCD, orc: RWCD, compute: R | D }; // a deleted server leaves its group
      return CONTROL;
    case 'idempotency':
      // The orcs prune expired keys (ts/orc/retention.ts): they read them and remove them.
      return depth === 1 ? { api: RWCD, orc: R | D } : { api: RWCD, orc: R };
    case 'tokens':
    case 'audit':
      return { api: RWCD };
    case 'images':
    case 'image-names':
      return { api: RWCD, orc: R };
    case 'projects':
      // A release (orc or compute) leaves a marker in released/, folded by the next accept.
      if (depth === 3 && b === 'released') return { api: RWCD, orc: R | C, compute: R | C };
      return { api: RWCD, orc: R, compute: R };
    case 'charges':
      // A release removes the server's charge.
      return depth === 1 ? { api: RWCD, orc: R | D, compute: R | D } : { api: RWCD, orc: R, compute: R };
    default:
      return CONTROL;
  }
}

/** The top-level directories under a root (Paths, AuthPaths, the image store). */
export const TOP_LEVEL: ReadonlySet<string> = new Set([
  'config', 'acl', 'computes', 'servers', 'deleted-servers', 'work-units', 'shards', 'orcs', 'server-groups',
  'tokens', 'idempotency', 'audit', 'images', 'image-names', 'projects', 'charges',
]);

/** What a compute granted on a unit's or server's record may do there (the claim's grant). */
export const RECORD_GRANT = R | W;

// ---- the policy one session applies ------------------------------------------------------------

type LibraryAcl = zookeeper.ACL & { permission: number; id: { scheme: string; id: string } };
const { ACL, Id } = zookeeper as unknown as {
  ACL: new (perm: number, id: unknown) => LibraryAcl;
  Id: new (scheme: string, id: string) => unknown;
};
export const OPEN_ACL = (zookeeper.ACL as unknown as { OPEN_ACL_UNSAFE: LibraryAcl[] }).OPEN_ACL_UNSAFE;
export type AclList = readonly LibraryAcl[];

const digestAcl = (perm: number, id: string): LibraryAcl => new ACL(perm, new Id('digest', id));

/** The ACL of a node with these grants, given the roles' digests and (if asked for) the compute's own. */
export function aclOf(g: Grants, roles: Record<Role, string>, self?: string): LibraryAcl[] {
  const out = [digestAcl(ALL, roles.admin)];
  for (const r of ['api', 'orc', 'compute'] as const) if (g[r]) out.push(digestAcl(g[r], roles[r]));
  if (g.self) {
    if (!self) throw new Error('a compute directory node needs its compute\'s identity');
    out.push(digestAcl(g.self, self));
  }
  return out;
}

/** One session's ACLs: the rules, the roots it was told of, and the compute identities it knows. */
export class AclPolicy {
  private readonly roots = new Set<string>();
  private readonly computes = new Map<string, string>();
  private readonly cache = new Map<string, LibraryAcl[]>();

  constructor(readonly credentials: Credentials, computeId?: string) {
    for (const i of identitiesFor(credentials, computeId)) {
      if (i.user.startsWith('compute.')) this.computes.set(i.user.slice('compute.'.length), digestId(i));
    }
  }

  get roles(): Record<Role, string> {
    return this.credentials.roles;
  }

  addRoot(root: string): void {
    this.roots.add(root);
  }

  hasRoot(root: string): boolean {
    return this.roots.has(root);
  }

  /**
   * The root a path is under and its segments below it: a root this session was told of, else
   * the path up to its first segment that names one of Quark's top-level directories. A path
   * with none is taken as a root (or a parent of one): only admin may create under it.
   */
  locate(path: string): { root: string; rel: string[] } {
    for (const root of this.roots) {
      if (path === root) return { root, rel: [] };
      if (path.startsWith(`${root}/`)) return { root, rel: path.slice(root.length + 1).split('/') };
    }
    const segs = path.split('/').slice(1);
    const i = segs.findIndex((s) => TOP_LEVEL.has(s));
    if (i <= 0) return { root: path, rel: [] };
    return { root: `/${segs.slice(0, i).join('/')}`, rel: segs.slice(i) };
  }

  /** A compute's own digest id, if known here (its own, learned, or derivable from the key). */
  computeDigest(id: string): string | undefined {
    let d = this.computes.get(id);
    if (!d && this.credentials.compute_key) {
      d = digestId(computeIdentity(this.credentials.compute_key, id));
      this.computes.set(id, d);
    }
    return d;
  }

  learnCompute(id: string, digest: string): void {
    if (this.computes.get(id) === digest) return;
    this.computes.set(id, digest);
    this.cache.clear();
  }

  /** The ACL a node created at `path` carries. */
  forPath(path: string): AclList {
    const at = this.locate(path);
    const g = grantsFor(at.rel);
    const self = g.self ? at.rel[1]! : '';
    const key = `${g.api ?? 0}|${g.orc ?? 0}|${g.compute ?? 0}|${g.self ?? 0}|${self}`;
    let acl = this.cache.get(key);
    if (!acl) {
      const digest = self ? this.computeDigest(self) : undefined;
      if (self && !digest) throw new Error(`ACL for ${path}: the identity of compute ${self} is not known to this session (learn it first)`);
      acl = aclOf(g, this.roles, digest);
      this.cache.set(key, acl);
    }
    return acl;
  }

  /** A unit's or server's record with a compute granted on it (the orc's claim). */
  recordGrant(path: string, computeId: string): AclList {
    const digest = this.computeDigest(computeId);
    if (!digest) throw new Error(`cannot grant ${path} to compute ${computeId}: its identity is not known to this session`);
    return [...this.forPath(path), digestAcl(RECORD_GRANT, digest)];
  }
}
