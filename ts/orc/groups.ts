// Placing a server group's member: the orc reads the group (record and members), tells its view
// which computes host the group's other members, and asks the scorer under the group's policy. The
// claim then carries the group's ops (ts/lifecycle/groups.ts), so the placement holds across orcs.
import type { Zk } from '../zk/client.js';
import type { Paths } from '../zk/paths.js';
import type { ComputeId, GroupId, ServerId } from '../common/ids.js';
import type { ServerGroupRecord } from '../common/model.js';
import type { GroupPolicy } from '../common/vocabulary.js';
import { membersByCompute, type GroupRead } from '../lifecycle/groups.js';
import type { ClusterView, Placement, PlacementRequest } from './placement/types.js';

/**
 * The requests to try, in order, for a member of a group with `policy` whose other members stand
 * on `counts` (compute → members); the first that places wins. affinity and anti-affinity are one
 * request through the scorer's filter of that name. soft-anti-affinity asks first for a compute
 * with none of the group, then with fewer than 2, 3, … (the fuller ones excluded), then anywhere:
 * it lands where the fewest members are, and still places when every compute has some.
 */
export function placementTries(policy: GroupPolicy, group: GroupId, counts: ReadonlyMap<ComputeId, number>, base: PlacementRequest): PlacementRequest[] {
  if (policy === 'affinity') return [{ ...base, affinity: group }];
  if (policy === 'anti-affinity') return [{ ...base, antiAffinity: group }];
  const most = Math.max(0, ...counts.values());
  const tries: PlacementRequest[] = [{ ...base, antiAffinity: group }];
  for (let k = 2; k <= most; k++) {
    const full = [...counts].filter(([, n]) => n >= k).map(([c]) => c);
    tries.push({ ...base, exclude: [...(base.exclude ?? []), ...full] });
  }
  if (most > 0) tries.push(base);
  return tries;
}

/** Which scorer filter a policy's rejections are counted under (soft-anti-affinity's last try has none). */
export const groupFilterOf = (policy: GroupPolicy): 'affinity' | 'anti_affinity' => (policy === 'affinity' ? 'affinity' : 'anti_affinity');

export class GroupPlacement {
  /** Group → the computes this orc's view marks as hosting it; compute → the groups marked on it. */
  private readonly hosts = new Map<GroupId, Set<ComputeId>>();
  private readonly marked = new Map<ComputeId, Set<GroupId>>();
  private readonly turns = new Map<GroupId, Promise<unknown>>();

  constructor(
    private readonly zk: Zk,
    private readonly paths: Paths,
    private readonly view: ClusterView,
  ) {}

  /** The group as it stands (null: gone). The record is read before the members, so a claim committed between the two reads fails ours on the version. */
  async read(id: GroupId): Promise<GroupRead | null> {
    const rec = await this.zk.get<ServerGroupRecord>(this.paths.serverGroup(id));
    if (!rec?.value) return null;
    const members = (await this.zk.children(this.paths.groupMembers(id))) ?? [];
    return { record: rec.value, version: rec.stat.version, members: members as ServerId[] };
  }

  /** Places member `self`'s request under the group's policy: the first try that places, else the last one's refusal. */
  place(req: PlacementRequest, g: GroupRead, self: ServerId): Placement {
    const counts = membersByCompute(g, self);
    this.mark(g.record.id, new Set(counts.keys()));
    let last: Placement | undefined;
    for (const r of placementTries(g.record.policy, g.record.id, counts, req)) {
      last = this.view.place(r);
      if (last.ok) return last;
    }
    return last!;
  }

  /**
   * Runs `fn` once this orc's earlier placements of the group's members are done: two of them
   * would place on the same members and one would lose the claim. Other orcs are kept apart by the
   * claim's version check.
   */
  turn<T>(id: GroupId, fn: () => Promise<T>): Promise<T> {
    const run = (this.turns.get(id) ?? Promise.resolve()).then(fn, fn);
    const tail = run.catch(() => {});
    this.turns.set(id, tail);
    void tail.then(() => {
      if (this.turns.get(id) === tail) this.turns.delete(id);
    });
    return run;
  }

  /**
   * The view's group marks for `id` become `computes`. Every compute marked before or now is set
   * again, not only those that changed: the view forgets a compute's marks when it re-adds it.
   */
  private mark(id: GroupId, computes: Set<ComputeId>): void {
    for (const c of new Set([...(this.hosts.get(id) ?? []), ...computes])) {
      const on = this.marked.get(c) ?? new Set<GroupId>();
      if (computes.has(c)) on.add(id);
      else on.delete(id);
      if (on.size > 0) this.marked.set(c, on);
      else this.marked.delete(c);
      this.view.setGroups(c, [...on]);
    }
    if (computes.size > 0) this.hosts.set(id, computes);
    else this.hosts.delete(id);
  }
}
