// What the API reads and writes in ZooKeeper. Every accepted request is one transaction that
// writes the work unit, its shard inbox entry and the server change together; the records come
// from the lifecycle (ts/lifecycle), which also decides whether an action is accepted. A boot's
// transaction also carries the project's quota usage (./admission.ts).
import type { Zk } from '../zk/client.js';
import { isZkError } from '../zk/errors.js';
import { ConflictRetries } from '../zk/recipes/retry.js';
import type { Paths } from '../zk/paths.js';
import { newServerId, newWorkUnitId, type ComputeId, type GroupId, type ServerId, type WorkUnitId } from '../common/ids.js';
import { m } from '../common/metrics.js';
import {
  shardOf,
  type BuildRequest,
  type ClusterConfig,
  type Flavor,
  type OrcMember,
  type PortMapping,
  type ServerRecord,
  type WorkUnitRecord,
} from '../common/model.js';
import type { ServerAction, WorkKind } from '../common/vocabulary.js';
import { acceptedServer, acceptedUnit, serverOn } from '../lifecycle/index.js';
import { ApiError, notFound } from './errors.js';
import { lockQueue } from '../zk/recipes/lock.js';
import type { ImageStore } from '../images/store.js';
import { imageRef, type ImageRecord } from '../images/model.js';
import type { Logger } from '../common/log.js';
import { AuthPaths } from '../auth/layout.js';
import { canSee, type ProjectId, type Scope } from '../auth/policy.js';
import { chargeOf } from '../auth/quota.js';
import { Admission, commitSettled, outcomeUnknown, type AdmissionOptions } from './admission.js';
import { fingerprintOf, keyPath } from './idempotency.js';
import { GroupStore } from './groups.js';
import { checkCapacity, checkFree, checkServer, checkWorkUnit, readRecord, type Stored } from '../lifecycle/records.js';

/** Records the API writes carry the project they belong to (servers, and the units acting on them). */
type InProject<T> = T & { project?: ProjectId };

export interface CreateServer {
  name: string;
  flavor: Flavor;
  labels?: string[];
  zone?: string;
  bandwidth_mbps?: number;
  /** A server group of the project: the server joins it, and placement follows its policy. */
  group?: GroupId;
  /** Image name or id. */
  image?: string;
  /** base64 */
  user_data?: string;
  ports?: PortMapping[];
}

export interface Accepted {
  work_unit_id: WorkUnitId;
  server_id: ServerId;
}

const iso = (ms: number | null | undefined): string | null => (ms ? new Date(ms).toISOString() : null);

export class ApiStore {
  private readonly admission: Admission<Accepted>;
  /** Server groups (./groups.ts). */
  readonly groups: GroupStore;

  constructor(
    private readonly zk: Zk,
    private readonly paths: Paths,
    private readonly config: ClusterConfig,
    private readonly log?: Logger,
    /** How boots are committed (group size, settle time); the defaults serve. */
    private readonly admit: AdmissionOptions = {},
    /** Images boots may name; without it, a boot naming one is refused. */
    private readonly images?: ImageStore,
  ) {
    this.admission = new Admission(zk, new AuthPaths(paths), { log, ...admit });
    this.groups = new GroupStore(zk, paths);
  }

  private newWorkUnit(kind: WorkKind, server: ServerId, request?: BuildRequest, requestId?: string): WorkUnitRecord {
    const id = newWorkUnitId();
    const wu = acceptedUnit({ id, kind, server_id: server, shard: shardOf(id, this.config.shards), at: Date.now(), request });
    return requestId ? { ...wu, request_id: requestId } : wu;
  }

  /** Counted once the unit is committed (the request's own log line names it). */
  private accepted(a: Accepted, kind: WorkKind): Accepted {
    m.unitsAccepted.inc({ kind });
    return a;
  }

  /**
   * A boot for `project`. The quota check, the Idempotency-Key and the commit are the admission's
   * (one transaction with the project's usage); this builds the records.
   */
  async createServer(req: CreateServer, project: ProjectId, idempotencyKey?: string, requestId?: string): Promise<Accepted> {
    const image = await this.imageFor(req, project);
    const ports = req.ports?.length ? req.ports : undefined;
    if (ports && new Set(ports.map((p) => p.host_port)).size !== ports.length) {
      throw new ApiError('BAD_REQUEST', 'two ports forward the same host_port');
    }
    const serverId = newServerId();
    const group = req.group;
    if (group) await this.groups.joinable(group, project);
    const wu: InProject<WorkUnitRecord> = {
      ...this.newWorkUnit('build', serverId, {
        name: req.name,
        flavor: req.flavor,
        bandwidth_mbps: req.bandwidth_mbps ?? 0,
        zone: req.zone,
        labels: req.labels,
        ...(group ? { group } : {}),
        ...(image ? { image: imageRef(image) } : {}),
        ...(req.user_data ? { user_data: req.user_data } : {}),
        ...(ports ? { ports } : {}),
      }, requestId),
      project,
    };
    const server: InProject<ServerRecord> = {
      ...acceptedServer({
        id: serverId,
        name: req.name,
        flavor: req.flavor,
        labels: req.labels ?? [],
        zone: req.zone ?? null,
        at: wu.created_at,
        unit: wu.id,
      }),
      ...(group ? { group } : {}),
      ...(image ? { image: image.id } : {}),
      ...(ports ? { ports } : {}),
      project,
    };
    // The server uses the image: its boot fails NO_NODE once the image is gone (ts/images/store.ts).
    const userPath = image ? this.images!.zkPaths.user(image.id, serverId) : null;
    const answer = await this.admission.admit({
      project,
      serverId,
      charge: chargeOf(req.flavor),
      unitPath: this.paths.workUnit(wu.id),
      write: (txn) => {
        txn
          .create(this.paths.workUnit(wu.id), wu)
          .create(this.paths.server(serverId), server)
          .create(this.paths.inboxEntry(wu.shard, wu.id));
        // Joins its group in the same transaction (a group deleted meanwhile fails this create).
        if (group) txn.create(this.paths.groupMember(group, serverId));
        // The image cannot be removed while this node exists, nor this server made once it is gone.
        if (userPath) txn.create(userPath);
      },
      refusal: (e) => {
        if (!isZkError(e, 'NO_NODE')) return null;
        if (userPath && e.path === userPath) return new ApiError('BAD_REQUEST', `image ${req.image} was removed meanwhile`);
        if (group && e.path === this.paths.groupMember(group, serverId)) return notFound('server group', group);
        return null;
      },
      answer: { work_unit_id: wu.id, server_id: serverId },
      ...(idempotencyKey !== undefined
        ? { idempotency: { path: keyPath(this.paths, project, 'POST /v1/servers', idempotencyKey), fingerprint: fingerprintOf(req) } }
        : {}),
    });
    return this.accepted(answer, 'build');
  }

  /** The image a boot names, by id or by name within the booting project; only one the caller may see. */
  private async imageFor(req: CreateServer, project: ProjectId): Promise<ImageRecord | undefined> {
    if (req.image === undefined) return undefined;
    if (!this.images) throw new ApiError('BAD_REQUEST', 'this API knows no images');
    const found = await this.images.resolve(req.image, project);
    if (!found) throw new ApiError('BAD_REQUEST', `no image named or with id ${req.image} in project ${project}`);
    return found;
  }

  /** start / stop / reboot / delete: one unit at a time per server, and only what its state allows. */
  async act(serverId: ServerId, action: ServerAction | 'delete', scope: Scope, requestId?: string): Promise<Accepted> {
    for (const conflicts = new ConflictRetries(`${action} server ${serverId}`); ; conflicts.again()) {
      const cur = this.visible(await readRecord(this.zk, this.paths.server(serverId), checkServer), 'server', serverId, scope);
      const s = cur.value;
      const busy = s.task ? await readRecord(this.zk, this.paths.workUnit(s.task), checkWorkUnit) : null;
      // A malformed unit on it is being failed by its orc (CORRUPT_RECORD): until then the server is busy.
      if (busy?.state === 'corrupt') throw new ApiError('SERVER_BUSY', `server ${serverId} is busy with work unit ${s.task}, whose record is malformed and is being failed; retry`);
      const busyWith = busy?.state === 'ok' ? busy.value : null;
      // The unit acting on a server is its project's.
      const wu: InProject<WorkUnitRecord> = { ...this.newWorkUnit(action, serverId, undefined, requestId), ...(s.project ? { project: s.project } : {}) };
      const next = serverOn(s, { type: 'action_accepted', action, unit: wu.id, busyWith });
      if (!next.ok) throw new ApiError(next.code === 'SERVER_BUSY' ? 'SERVER_BUSY' : 'ACTION_NOT_ALLOWED', next.message);
      const txn = this.zk
        .txn()
        .create(this.paths.workUnit(wu.id), wu)
        .create(this.paths.inboxEntry(wu.shard, wu.id))
        .set(this.paths.server(serverId), next.next, cur.version);
      const answer = { work_unit_id: wu.id, server_id: serverId };
      const outcome = await commitSettled(this.zk, txn, this.paths.workUnit(wu.id), { log: this.log, settleMs: this.admit.settleMs });
      if (outcome.kind === 'applied') return this.accepted(answer, action);
      if (outcome.kind === 'unknown') throw outcomeUnknown(answer);
      const e = outcome.error;
      if (isZkError(e, 'BAD_VERSION')) continue; // the server changed under us: judge again
      if (isZkError(e, 'NO_NODE')) throw notFound('server', serverId);
      throw e;
    }
  }

  /**
   * A record the caller may see, or why not: absent or another project's is 404; a malformed one
   * (which no project can be read from) is 404 to a member and CORRUPT_RECORD to an admin, and logged.
   */
  private visible<T>(r: Stored<T>, what: string, id: string, scope: Scope): { value: InProject<T>; version: number } {
    if (r.state === 'corrupt') {
      this.log?.error(`${what} record is malformed`, { id, problem: r.problem });
      if (scope.all) throw new ApiError('CORRUPT_RECORD', `the record of ${what} ${id} is malformed (${r.problem})`);
    }
    if (r.state !== 'ok' || !canSee(scope, (r.value as InProject<T>).project)) throw notFound(what, id);
    return r as { value: InProject<T>; version: number };
  }

  async getServer(id: ServerId, scope: Scope) {
    const s = this.visible(await readRecord(this.zk, this.paths.server(id), checkServer), 'server', id, scope);
    // Whether GET /v1/servers/:id/console has something to show: its compute runs real guests.
    const compute = s.value.compute_id;
    const console = compute ? (await this.zk.exists(`${this.paths.self(compute)}/console`)) !== null : false;
    return { ...presentServer(s.value), console };
  }

  // The lists (GET /v1/servers, /v1/work-units) are answered from ./listing.ts's indexes.

  async getWorkUnit(id: WorkUnitId, scope: Scope) {
    return presentWorkUnit(this.visible(await readRecord(this.zk, this.paths.workUnit(id), checkWorkUnit), 'work unit', id, scope).value);
  }

  async listComputes() {
    const ids = ((await this.zk.children(this.paths.computes)) ?? []).sort();
    const out = await Promise.all(ids.map((id) => this.computeView(id as ComputeId)));
    return out.filter((c) => c !== null);
  }

  /** One compute as GET /v1/computes shows it; null if its records are missing or malformed (logged). */
  async computeView(cid: ComputeId) {
    const [cap, free, alive, cordoned, managing, active, next] = await Promise.all([
      readRecord(this.zk, this.paths.selfCapacity(cid), checkCapacity),
      readRecord(this.zk, this.paths.selfFree(cid), checkFree),
      this.zk.exists(this.paths.alive(cid)),
      this.zk.exists(this.paths.cordoned(cid)),
      this.zk.exists(this.paths.managing(cid)),
      this.zk.exists(this.paths.activeTasks(cid)),
      this.zk.exists(this.paths.nextTasks(cid)),
    ]);
    for (const [what, r] of [['self/capacity', cap], ['self/free', free]] as const) {
      if (r.state === 'corrupt') this.log?.error('compute record is malformed; left out of the list', { compute: cid, record: what, problem: r.problem });
    }
    if (cap.state !== 'ok' || free.state !== 'ok') return null;
    const { vcpus, ram_mb, disk_gb, bandwidth_mbps } = cap.value;
    return {
      id: cid as string,
      alive: alive !== null,
      cordoned: cordoned !== null,
      zone: cap.value.zone,
      labels: cap.value.labels,
      capacity: { vcpus, ram_mb, disk_gb, bandwidth_mbps },
      free: free.value,
      managing: managing?.numChildren ?? 0,
      active_tasks: active?.numChildren ?? 0,
      next_tasks: next?.numChildren ?? 0,
    };
  }

  async listOrcs(): Promise<OrcMember[]> {
    const ids = ((await this.zk.children(this.paths.orcs)) ?? []).sort();
    const recs = await Promise.all(ids.map((id) => this.zk.get<OrcMember>(this.paths.orc(id))));
    return recs.map((r) => r?.value).filter((r): r is OrcMember => !!r);
  }

  /** shard → owning orc (the first candidate in its lock queue), or null while unowned. */
  async shardOwners(): Promise<Record<string, string | null>> {
    const out: Record<string, string | null> = {};
    await Promise.all(
      Array.from({ length: this.config.shards }, async (_, n) => {
        const q = lockQueue((await this.zk.children(this.paths.shardLock(n))) ?? []);
        out[String(n)] = q[0]?.owner ?? null;
      }),
    );
    return out;
  }
}

export function presentServer(s: InProject<ServerRecord>) {
  return {
    id: s.id,
    project: s.project ?? null,
    name: s.name,
    status: s.status,
    compute_id: s.compute_id,
    flavor: s.flavor,
    labels: s.labels,
    zone: s.zone,
    task: s.task,
    group: s.group ?? null,
    created_at: iso(s.created_at),
    ...(s.last_error ? { last_error: s.last_error } : {}),
    ...(s.image ? { image: s.image } : {}),
    ...(s.ports ? { ports: s.ports } : {}),
  };
}

export function presentWorkUnit(w: InProject<WorkUnitRecord>) {
  return {
    id: w.id,
    project: w.project ?? null,
    kind: w.kind,
    state: w.state,
    server_id: w.server_id,
    compute_id: w.compute_id,
    attempts: w.attempts,
    steps_completed: w.steps_completed.map((s) => ({
      name: s.name,
      time_to_completion_ms: s.time_to_completion_ms,
      completed_at: iso(s.completed_at),
    })),
    steps_left: w.steps_left,
    ...(w.error ? { error: w.error } : {}),
    request_id: w.request_id ?? null,
    created_at: iso(w.created_at),
    finished_at: iso(w.finished_at),
  };
}
