// Server groups in ZooKeeper, as the API reads and writes them: /server-groups/<id> holds the
// record, /server-groups/<id>/members/<server> one node per member. A boot joins in its accept's
// transaction (a create under members/); a delete removes members/ and the record together, which
// ZooKeeper refuses while members/ has a child: a group with members cannot go, and a boot racing
// the delete either joins first (the delete is refused) or finds no group (the boot is refused).
import type { Zk } from '../zk/client.js';
import { isZkError } from '../zk/errors.js';
import type { Paths } from '../zk/paths.js';
import { newGroupId, type GroupId, type ServerId } from '../common/ids.js';
import type { ServerGroupRecord } from '../common/model.js';
import type { GroupPolicy } from '../common/vocabulary.js';
import { canSee, type ProjectId, type Scope } from '../auth/policy.js';
import { ApiError, notFound } from './errors.js';

export interface CreateGroup {
  name: string;
  policy: GroupPolicy;
}

const iso = (ms: number): string => new Date(ms).toISOString();

export class GroupStore {
  constructor(
    private readonly zk: Zk,
    private readonly paths: Paths,
  ) {}

  async create(req: CreateGroup, project: ProjectId) {
    const g: ServerGroupRecord = { id: newGroupId(), project, name: req.name, policy: req.policy, created_at: Date.now(), placed: {} };
    await this.zk.txn().create(this.paths.serverGroup(g.id), g).create(this.paths.groupMembers(g.id)).commit();
    return present(g, []);
  }

  async list(scope: Scope) {
    const ids = (await this.zk.children(this.paths.serverGroups)) ?? [];
    const recs = await Promise.all(ids.map((id) => this.zk.get<ServerGroupRecord>(this.paths.serverGroup(id as GroupId))));
    const visible = recs.map((r) => r?.value).filter((g): g is ServerGroupRecord => !!g && canSee(scope, g.project));
    const members = await Promise.all(visible.map((g) => this.zk.children(this.paths.groupMembers(g.id))));
    return visible
      .map((g, i) => present(g, (members[i] ?? []) as ServerId[]))
      .sort((a, b) => a.created_at.localeCompare(b.created_at) || a.id.localeCompare(b.id));
  }

  async get(id: GroupId, scope: Scope) {
    const g = await this.visible(id, scope);
    return present(g, ((await this.zk.children(this.paths.groupMembers(id))) ?? []) as ServerId[]);
  }

  /** Refused (409) while the group has members. */
  async delete(id: GroupId, scope: Scope): Promise<void> {
    await this.visible(id, scope);
    const members = (await this.zk.children(this.paths.groupMembers(id))) ?? [];
    if (members.length > 0) throw inUse(id, members);
    try {
      // members/ goes first: ZooKeeper refuses it while a boot's join is in it.
      await this.zk.txn().remove(this.paths.groupMembers(id), -1).remove(this.paths.serverGroup(id), -1).commit();
    } catch (e) {
      if (isZkError(e, 'NOT_EMPTY')) throw inUse(id, (await this.zk.children(this.paths.groupMembers(id))) ?? []);
      if (isZkError(e, 'NO_NODE')) throw notFound('server group', id);
      throw e;
    }
  }

  /** The group a boot of `project` joins: one of that project's (another project's is 404, to an admin too). */
  async joinable(id: GroupId, project: ProjectId): Promise<ServerGroupRecord> {
    return this.visible(id, { all: false, project });
  }

  private async visible(id: GroupId, scope: Scope): Promise<ServerGroupRecord> {
    const g = await this.zk.get<ServerGroupRecord>(this.paths.serverGroup(id));
    if (!g?.value || !canSee(scope, g.value.project)) throw notFound('server group', id);
    return g.value;
  }
}

const inUse = (id: GroupId, members: readonly string[]): ApiError =>
  new ApiError('GROUP_IN_USE', `server group ${id} has ${members.length} member${members.length === 1 ? '' : 's'}; delete them first`, { members: [...members].sort() });

/** A group as the API shows it: each member with the compute its claim placed it on (null until placed). */
function present(g: ServerGroupRecord, members: readonly ServerId[]) {
  return {
    id: g.id,
    project: g.project,
    name: g.name,
    policy: g.policy,
    created_at: iso(g.created_at),
    members: [...members].sort().map((m) => ({ server_id: m, compute_id: g.placed[m] ?? null })),
  };
}
