// The optimistic claim (Omega, Nova placement generations): self/free is written only if its
// znode version is the one the placement was scored on, together with whatever else the caller
// adds (the next_tasks entry, the work unit's new state), in one transaction. A lost race
// refreshes the view and reports 'conflict' so the caller re-places.
import type { Zk } from '../zk/client.js';
import { isZkError } from '../zk/errors.js';
import type { Txn } from '../zk/txn.js';
import type { Paths } from '../zk/paths.js';
import type { ComputeId } from '../common/ids.js';
import { addConsumes, type Consumes } from '../common/model.js';
import type { ClusterWatch } from './cluster.js';

export type ClaimOutcome = 'claimed' | 'conflict' | 'other-version';

export async function claimCapacity(
  zk: Zk,
  paths: Paths,
  cluster: ClusterWatch,
  target: ComputeId,
  need: Consumes,
  addOps: (txn: Txn) => void,
): Promise<ClaimOutcome> {
  // Another writer changed it since we last read it: read it now (a claim on a stale version
  // would only fail).
  if ((cluster.computes.get(target)?.staleSince ?? 0) > 0) await cluster.refresh(target);
  // The placement was scored before this claim's turn: another claim of this orc on the same
  // compute may have committed since, and the version check cannot see that (this claim carries
  // the new version). So the need must still fit what the view holds now, or it is re-placed.
  const st = cluster.computes.get(target);
  if (!st || !cluster.fits(st, need)) return 'conflict';
  const newFree = addConsumes(st.free, need, -1);
  const txn = zk.txn().set(paths.selfFree(target), newFree, st.freeVersion);
  addOps(txn);
  cluster.reserve(target, need);
  try {
    const res = await txn.commit();
    cluster.settle(target, need, { free: newFree, version: res[0]!.stat!.version });
    return 'claimed';
  } catch (e) {
    cluster.settle(target, need);
    if (isZkError(e, 'BAD_VERSION') && e.path === paths.selfFree(target)) {
      await cluster.refresh(target);
      return 'conflict';
    }
    // Another op's version or existence check failed: the caller's own record moved.
    if (isZkError(e, 'BAD_VERSION') || isZkError(e, 'NO_NODE') || isZkError(e, 'NODE_EXISTS')) return 'other-version';
    throw e;
  }
}
