// The claim's grant (issue 12's ZooKeeper ACLs): a compute may write a unit's record and its
// server's only once the orc that sends it the unit has added the compute's own identity to those
// two nodes' ACLs. ZooKeeper has no setACL inside a multi, so the grant is its own request, made
// before the claim's transaction: the compute can never see a task whose records it may not
// write. A claim that then loses its race gives the records to the unit's winner if its own grant
// was the last (restoreGrant); a grant for a claim that failed otherwise stays until the next
// claim's replaces it (docs/security.md says so).
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

/** What one grant did: each record it set (a record already gone is not listed) and the ACL version it left. */
export interface Granted {
  compute: ComputeId;
  records: Array<{ path: string; aversion: number }>;
}

/**
 * Grants `compute` write access to these records (a unit's, its server's); a record already gone
 * is passed over. Null if the compute's identity is unknown (it has no directory). Every setACL
 * has ended when this returns, failed or not: the library retries a write on a lost connection,
 * and a grant still being retried after its claim was given up could land after the next claim's
 * grant and take the record from the compute that won it.
 */
export async function grantRecords(zk: Zk, paths: Paths, compute: ComputeId, records: readonly string[]): Promise<Granted | null> {
  const acl = zk.acl;
  if (!acl) return { compute, records: [] };
  if (!(await knowCompute(zk, paths, compute))) return null;
  const settled = await Promise.allSettled(records.map((p) => zk.setAcl(p, acl.recordGrant(p, compute))));
  const granted: Granted = { compute, records: [] };
  for (const [i, r] of settled.entries()) {
    if (r.status === 'fulfilled') granted.records.push({ path: records[i]!, aversion: r.value.aversion });
    else if (!isZkError(r.reason, 'NO_NODE')) throw r.reason;
  }
  return granted;
}

/**
 * After a claim that lost its race: if the unit went to another compute (`holder`), this grant
 * may have landed after the winner's and taken the records from it. Each record whose ACL is still
 * the one this grant left (its version unchanged) is given to the holder; a record granted again
 * since is left to whoever granted it. Idempotent; a record gone is passed over.
 */
export async function restoreGrant(zk: Zk, paths: Paths, granted: Granted, holder: ComputeId): Promise<number> {
  const acl = zk.acl;
  if (!acl || holder === granted.compute || granted.records.length === 0) return 0;
  if (!(await knowCompute(zk, paths, holder))) return 0;
  const settled = await Promise.allSettled(granted.records.map(({ path, aversion }) => zk.setAcl(path, acl.recordGrant(path, holder), aversion)));
  let restored = 0;
  for (const r of settled) {
    if (r.status === 'fulfilled') restored++;
    else if (!isZkError(r.reason, 'BAD_VERSION') && !isZkError(r.reason, 'NO_NODE')) throw r.reason;
  }
  return restored;
}
