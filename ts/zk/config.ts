// /quark/config: cluster-wide settings, written once by whichever process starts first, and
// changed by `quark config set` (updateConfig).
import { DEFAULT_CONFIG, type ClusterConfig } from '../common/model.js';
import { policySettingOf } from '../common/placement-policy.js';
import { isZkError } from './errors.js';
import type { Zk } from './client.js';
import type { Paths } from './paths.js';
import type { Role } from './acl.js';

/** `<root>/acl`: present once the root is under ACLs; the roles' digest ids (public). */
export interface AclMarker {
  roles: Record<Role, string>;
  at: number;
}

export const aclMarkerPath = (paths: Paths): string => `${paths.root}/acl`;

/** Why a process cannot use a root as its credentials stand. */
export class AclSetupError extends Error {
  override readonly name = 'AclSetupError';
  constructor(
    readonly code: 'ZK_CREDENTIALS_REQUIRED' | 'ZK_CREDENTIALS_MISMATCH' | 'ZK_ROOT_WITHOUT_ACLS' | 'ZK_ROOT_NOT_INITIALISED',
    message: string,
  ) {
    super(`${code}: ${message}`);
  }
}

/**
 * Checks that this session and the root agree about ACLs, before anything is read or written:
 * - no credentials: the root must have no ACL marker (a cluster made before ACLs, or run without);
 * - credentials, marker present: its roles must be the credentials' (not another cluster's);
 * - credentials, no marker: an admin session puts the root under ACLs if it holds no cluster yet
 *   (no config); a root that does (made without credentials) is refused with the migration
 *   command; any other role is refused until an admin has initialised the root.
 */
export async function checkAclRoot(zk: Zk, paths: Paths): Promise<void> {
  const marker = aclMarkerPath(paths);
  const acl = zk.acl;
  if (!acl) {
    if (await zk.exists(marker)) {
      throw new AclSetupError('ZK_CREDENTIALS_REQUIRED', `${paths.root} is under ZooKeeper ACLs: give this process its credentials file in QUARK_ZK_CREDENTIALS (made by \`quark zk credentials\`)`);
    }
    return;
  }
  acl.addRoot(paths.root);
  let cur;
  try {
    cur = await zk.get<AclMarker>(marker);
  } catch (e) {
    if (!isZkError(e, 'NO_AUTH')) throw e;
    throw new AclSetupError('ZK_CREDENTIALS_MISMATCH', `these ZooKeeper credentials may not read ${marker}: they are not this cluster's`);
  }
  if (cur) {
    const roles = cur.value?.roles;
    if (!roles || Object.entries(acl.roles).some(([r, d]) => roles[r as Role] !== d)) {
      throw new AclSetupError('ZK_CREDENTIALS_MISMATCH', `${marker} names other identities than these credentials: they are another cluster's`);
    }
    return;
  }
  if (await zk.exists(paths.config)) {
    // An admin that set the root up meanwhile wrote the marker before the config: check that one.
    if (await zk.exists(marker)) return checkAclRoot(zk, paths);
    throw new AclSetupError(
      'ZK_ROOT_WITHOUT_ACLS',
      `${paths.root} holds a cluster made without ZooKeeper ACLs: run \`quark zk secure --root ${paths.root}\` with the admin credentials to put them on every node (or run every process without credentials)`,
    );
  }
  if (acl.credentials.role !== 'admin') {
    throw new AclSetupError('ZK_ROOT_NOT_INITIALISED', `${paths.root} is not set up for ZooKeeper ACLs yet: start the cluster with the admin credentials first (\`quark up\`, or \`quark token create --bootstrap --root ${paths.root}\` for a cluster started by hand)`);
  }
  await zk.mkdirp(paths.root);
  // A root made earlier (open) takes its rule's ACL now; what is under it keeps its own.
  await zk.setAcl(paths.root, zk.aclFor(paths.root));
  await zk.createIfAbsent(marker, { roles: acl.roles, at: Date.now() } satisfies AclMarker);
}

/** Creates the persistent skeleton and the config (if absent), and returns the config in force. */
export async function readConfig(zk: Zk, paths: Paths, wanted: Partial<ClusterConfig> = {}): Promise<ClusterConfig> {
  await checkAclRoot(zk, paths);
  for (const p of paths.skeleton) await zk.mkdirp(p);
  await zk.createIfAbsent(paths.config, { ...DEFAULT_CONFIG, ...wanted });
  const cur = await zk.get<ClusterConfig>(paths.config);
  const cfg = { ...DEFAULT_CONFIG, ...(cur?.value ?? {}) };
  if (!Number.isInteger(cfg.shards) || cfg.shards < 1 || cfg.shards > 4096) {
    throw new Error(`${paths.config}: shards must be an integer in 1..4096, got ${cfg.shards}`);
  }
  for (let n = 0; n < cfg.shards; n++) {
    await zk.mkdirp(paths.inbox(n));
    // Every finishing transaction writes here: it exists before any process of this version acts.
    await zk.mkdirp(paths.ended(n));
  }
  return cfg;
}

/**
 * Changes the config in force: `edit` gets the current one and returns the next, whose placement
 * policy must be valid (readConfig does not check it: a bad one must not keep computes from
 * starting; orcs keep the policy they have). Written only over the version read; another writer
 * in between means read and edit again.
 */
export async function updateConfig(zk: Zk, paths: Paths, edit: (cur: ClusterConfig) => ClusterConfig): Promise<ClusterConfig> {
  for (let attempt = 1; ; attempt++) {
    const cur = await zk.get<ClusterConfig>(paths.config);
    if (!cur) throw new Error(`${paths.config} does not exist: no Quark cluster under ${paths.root}`);
    const next = edit({ ...DEFAULT_CONFIG, ...cur.value });
    policySettingOf(next);
    try {
      await zk.set(paths.config, next, cur.stat.version);
      return next;
    } catch (e) {
      if (!isZkError(e, 'BAD_VERSION') || attempt >= 10) throw e;
    }
  }
}
