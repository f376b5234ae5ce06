// `quark zk secure`: puts a cluster made without ZooKeeper ACLs under them (the migration path).
// Every node under the root takes its rule's ACL (an open node lets anyone set its ACL, so the
// admin can), unit and server records their compute's grant, and the marker goes last: until it
// is there, processes with credentials refuse the root. Processes still running without
// credentials lose their access as it goes: stop the cluster first, and start it again with
// credentials (docs/security.md).
import type { Zk } from './client.js';
import { isZkError } from './errors.js';
import type { Paths } from './paths.js';
import { aclMarkerPath, type AclMarker } from './config.js';

export interface SecureReport {
  nodes: number;
  granted: number;
}

export async function secureRoot(zk: Zk, paths: Paths): Promise<SecureReport> {
  const acl = zk.acl;
  if (!acl || acl.credentials.role !== 'admin') throw new Error('quark zk secure needs the admin credentials (QUARK_ZK_CREDENTIALS, or .quark/zk-credentials/admin.json)');
  if (!(await zk.exists(paths.root))) throw new Error(`${paths.root} does not exist`);
  acl.addRoot(paths.root);
  const report: SecureReport = { nodes: 0, granted: 0 };
  // Parents first (walk's order): a node's ACL is set while its parent still lets the walk read it.
  for (const path of await zk.walk(paths.root)) {
    const at = acl.locate(path);
    let target = acl.forPath(path);
    const [top] = at.rel;
    if (at.rel.length === 2 && (top === 'work-units' || top === 'servers')) {
      const rec = await zk.get<{ compute_id?: string | null }>(path).catch(() => null);
      const compute = rec?.value?.compute_id;
      if (compute) {
        target = acl.recordGrant(path, compute);
        report.granted++;
      }
    }
    try {
      await zk.setAcl(path, target);
      report.nodes++;
    } catch (e) {
      if (!isZkError(e, 'NO_NODE')) throw e; // gone meanwhile (an ephemeral)
    }
  }
  await zk.createIfAbsent(aclMarkerPath(paths), { roles: acl.roles, at: Date.now() } satisfies AclMarker);
  return report;
}
