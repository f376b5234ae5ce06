// The claim's grant (issue 12's ZooKeeper ACLs): a compute may write a unit's record and its
// server's only once the orc that sends it the unit has added the compute's own identity to those
// two nodes' ACLs. ZooKeeper has no setACL inside a multi, so the grant is its own request, made
// before the claim's transaction: the compute can never see a task whose records it may not
// write. A claim that then loses its race leaves the grant behind on a unit it does not run
// (docs/security.md says so); the next claim's grant replaces it.
import type { Zk } from '../zk/client.js';
import { isZkError } from '../zk/errors.js';
import { computeUser } from '../zk/acl.js';
import type { Paths } from '../zk/paths.js';
import type { ComputeId } from '../common/ids.js';

/**
 * Makes sure this session knows a compute's own identity (the digest its directory's ACL names),
 * reading it once. False if the compute has no directory, or one that names no identity.
 */
export async function knowCompute(zk: Zk, paths: Paths, id: ComputeId): Promise<boolean> {
  const acl = zk.acl;
  if (!acl || acl.computeDigest(id)) return true;
  const entries = await zk.getAcl(paths.compute(id));
  const own = entries?.find((e) => e.scheme === 'digest' && e.id.startsWith(`${computeUser(id)}:`));
  if (!own) return false;
  acl.learnCompute(id, own.id);
  return true;
}

/** Grants `compute` write access to these records (a unit's, its server's); a record already gone is passed over. */
export async function grantRecords(zk: Zk, paths: Paths, compute: ComputeId, records: readonly string[]): Promise<boolean> {
  const acl = zk.acl;
  if (!acl) return true;
  if (!(await knowCompute(zk, paths, compute))) return false;
  await Promise.all(
    records.map((p) =>
      zk.setAcl(p, acl.recordGrant(p, compute)).catch((e) => {
        if (!isZkError(e, 'NO_NODE')) throw e;
      }),
    ),
  );
  return true;
}
