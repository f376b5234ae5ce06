// Server group membership as data: where a group's members stand, what a member's claim adds to
// its transaction, and what leaving costs the finish of a delete or of a failed build. Who is a
// member is the children of the group's members/ directory; where each was placed is the group
// record's `placed`, which only claims write, each at the version its placement read.
import type { ComputeId, GroupId, ServerId } from '../common/ids.js';
import type { ServerGroupRecord, ServerRecord } from '../common/model.js';
import type { Paths } from '../zk/paths.js';
import { remove, set, type Op } from './ops.js';

/** A group as one placement read it: the record, its version, and who is a member now. */
export interface GroupRead {
  record: ServerGroupRecord;
  version: number;
  members: readonly ServerId[];
}

/** Where the members other than `self` are placed: compute → how many. A member not placed yet (or that left) counts nowhere. */
export function membersByCompute(g: GroupRead, self: ServerId): Map<ComputeId, number> {
  const out = new Map<ComputeId, number>();
  for (const m of g.members) {
    const at = m === self ? undefined : g.record.placed[m];
    if (at) out.set(at, (out.get(at) ?? 0) + 1);
  }
  return out;
}

/** The record a claim of member `self` on `compute` writes: `placed` cut to the members of now, plus this one. */
export function placedAfterClaim(g: GroupRead, self: ServerId, compute: ComputeId): ServerGroupRecord {
  const placed: Record<ServerId, ComputeId> = {};
  for (const m of g.members) {
    const at = g.record.placed[m];
    if (at && m !== self) placed[m] = at;
  }
  placed[self] = compute;
  return { ...g.record, placed };
}

/**
 * The ops a member's claim adds to its transaction: it must still be a member, and the record is
 * set at the version the placement read. Another claim of this group committed since (by any orc)
 * fails the version check, so two placements that saw the same members cannot both land.
 */
export function claimOps(paths: Paths, g: GroupRead, self: ServerId, compute: ComputeId): Op[] {
  return [
    { type: 'check', path: paths.groupMember(g.record.id, self), version: -1 },
    set(paths.serverGroup(g.record.id), placedAfterClaim(g, self, compute), g.version),
  ];
}

/** Leaving is the member node's removal alone: it loosens every policy, so no placement needs to see it first. */
export const leaveOps = (paths: Paths, group: GroupId, server: ServerId): Op[] => [remove(paths.groupMember(group, server))];

/**
 * What leaving its group costs the finish of a server's delete or failed build: the member node's
 * removal, if it is still a member (one read, only for a server in a group).
 */
export async function groupLeave(zk: { exists(path: string): Promise<unknown> }, paths: Paths, server: ServerRecord | null | undefined): Promise<Op[]> {
  if (!server?.group) return [];
  return (await zk.exists(paths.groupMember(server.group, server.id))) ? leaveOps(paths, server.group, server.id) : [];
}
