// `quark zk secure` and `quark zk rotate`: every node under a root takes its rule's ACL for a set
// of credentials (ts/zk/acl.ts), unit and server records their compute's grant, and the marker
// names that set. secure: a cluster made without ACLs gets them (an open node lets anyone set its
// ACL). rotate: a cluster under one set moves to another, done as the old admin, which may set
// every node's ACL. Processes running meanwhile lose their access as it goes: stop the cluster
// first, and start it again with the new files (docs/security.md).
import type { Zk } from './client.js';
import { isZkError } from './errors.js';
import type { Paths } from './paths.js';
import { aclMarkerPath, type AclMarker } from './config.js';
import { AclPolicy, type Credentials } from './acl.js';

export interface SecureReport {
  nodes: number;
  granted: number;
}

/**
 * Sets every node under the root to the ACL `to` gives it (default: this session's own
 * credentials). The session must be the current admin (or the root open). The marker is written
 * first; nodes are then set children first, so the walk never loses its own access to a parent
 * before it is done below it.
 */
export async function secureRoot(zk: Zk, paths: Paths, to?: Credentials): Promise<SecureReport> {
  const own = zk.acl;
  if (!own || own.credentials.role !== 'admin') throw new Error('this needs the admin credentials (QUARK_ZK_CREDENTIALS, or .quark/zk-credentials/admin.json)');
  if (to && (to.role !== 'admin' || !to.compute_key)) throw new Error('rotate to a set given by its admin.json (it holds the compute key)');
  if (!(await zk.exists(paths.root))) throw new Error(`${paths.root} does not exist`);
  own.addRoot(paths.root);
  const policy = to ? new AclPolicy(to) : own;
  policy.addRoot(paths.root);
  const marker: AclMarker = { roles: policy.roles, at: Date.now() };
  if (!(await zk.createIfAbsent(aclMarkerPath(paths), marker))) await zk.set(aclMarkerPath(paths), marker, -1);
  const report: SecureReport = { nodes: 0, granted: 0 };
  const all = await zk.walk(paths.root);
  // Records first read (their compute decides their grant), while every node is still readable.
  const grants = new Map<string, string>();
  for (const path of all) {
    const [top, , deeper] = policy.locate(path).rel;
    if ((top === 'work-units' || top === 'servers') && deeper === undefined && path !== `${paths.root}/${top}`) {
      const rec = await zk.get<{ compute_id?: string | null }>(path).catch(() => null);
      if (rec?.value?.compute_id) grants.set(path, rec.value.compute_id);
    }
  }
  for (const path of [...all].reverse()) {
    const compute = grants.get(path);
    try {
      await zk.setAcl(path, compute ? policy.recordGrant(path, compute) : policy.forPath(path));
      report.nodes++;
      if (compute) report.granted++;
    } catch (e) {
      if (!isZkError(e, 'NO_NODE')) throw e; // gone meanwhile (an ephemeral)
    }
  }
  return report;
}
