// Every ZooKeeper path Quark uses, in one place. The compute directory keeps the seed's names.
import type { ComputeId, GroupId, ServerId, WorkUnitId } from '../common/ids.js';

export class Paths {
  constructor(readonly root = '/quark') {
    if (!/^\/[A-Za-z0-9._-]+(\/[A-Za-z0-9._-]+)*$/.test(root)) throw new Error(`invalid ZooKeeper root ${root}`);
  }

  get config(): string { return `${this.root}/config`; }
  get computes(): string { return `${this.root}/computes`; }
  compute(id: ComputeId): string { return `${this.computes}/${id}`; }
  alive(id: ComputeId): string { return `${this.compute(id)}/alive`; }
  /** Present while an operator has cordoned the compute: placement passes it over. */
  cordoned(id: ComputeId): string { return `${this.compute(id)}/cordoned`; }
  self(id: ComputeId): string { return `${this.compute(id)}/self`; }
  selfFree(id: ComputeId): string { return `${this.self(id)}/free`; }
  selfCapacity(id: ComputeId): string { return `${this.self(id)}/capacity`; }
  nextTasks(id: ComputeId): string { return `${this.compute(id)}/next_tasks`; }
  nextTask(id: ComputeId, wu: WorkUnitId): string { return `${this.nextTasks(id)}/${wu}`; }
  activeTasks(id: ComputeId): string { return `${this.compute(id)}/active_tasks`; }
  activeTask(id: ComputeId, wu: WorkUnitId): string { return `${this.activeTasks(id)}/${wu}`; }
  managing(id: ComputeId): string { return `${this.compute(id)}/managing`; }
  managed(id: ComputeId, vm: ServerId): string { return `${this.managing(id)}/${vm}`; }

  get workUnits(): string { return `${this.root}/work-units`; }
  workUnit(id: WorkUnitId): string { return `${this.workUnits}/${id}`; }
  get servers(): string { return `${this.root}/servers`; }
  server(id: ServerId): string { return `${this.servers}/${id}`; }
  /** Deleted servers' last records, kept for the deleted-retention period (status DELETED). */
  get deletedServers(): string { return `${this.root}/deleted-servers`; }
  deletedServer(id: ServerId): string { return `${this.deletedServers}/${id}`; }
  get serverGroups(): string { return `${this.root}/server-groups`; }
  serverGroup(id: GroupId): string { return `${this.serverGroups}/${id}`; }
  groupMembers(id: GroupId): string { return `${this.serverGroup(id)}/members`; }
  groupMember(id: GroupId, server: ServerId): string { return `${this.groupMembers(id)}/${server}`; }
  get idempotency(): string { return `${this.root}/idempotency`; }
  idempotencyKey(hash: string): string { return `${this.idempotency}/${hash}`; }

  get shards(): string { return `${this.root}/shards`; }
  shard(n: number): string { return `${this.shards}/${n}`; }
  shardLock(n: number): string { return `${this.shard(n)}/lock`; }
  inbox(n: number): string { return `${this.shard(n)}/inbox`; }
  inboxEntry(n: number, wu: WorkUnitId): string { return `${this.inbox(n)}/${wu}`; }
  /** What ended in this shard (finished units, deleted servers), named by when: its owner prunes it (ts/lifecycle/retention.ts). */
  ended(n: number): string { return `${this.shard(n)}/ended`; }
  endedEntry(n: number, name: string): string { return `${this.ended(n)}/${name}`; }
  /** Present once shard n's units that ended before ended/ existed have been filed there. */
  endedFiled(n: number): string { return `${this.shard(n)}/ended-filed`; }
  get orcs(): string { return `${this.root}/orcs`; }
  orc(id: string): string { return `${this.orcs}/${id}`; }

  /** The persistent directories every process may assume exist. */
  get skeleton(): string[] {
    return [this.root, this.computes, this.workUnits, this.servers, this.deletedServers, this.serverGroups, this.idempotency, this.shards, this.orcs];
  }
}
