// What the API reads and writes in ZooKeeper. Every accepted request is one transaction that
// writes the work unit, its shard inbox entry and the server change together.
import { createHash } from 'node:crypto';
import { isZkError, type Zk } from '../zk/client.js';
import type { Paths } from '../zk/paths.js';
import { newServerId, newWorkUnitId, type ComputeId, type ServerId, type WorkUnitId } from '../common/ids.js';
import {
  shardOf,
  TERMINAL,
  type ClusterConfig,
  type ComputeCapacity,
  type Consumes,
  type Flavor,
  type PortMapping,
  type ServerRecord,
  type WorkUnitRecord,
} from '../common/model.js';
import { stepsOf, type ServerAction, type WorkKind } from '../actors/kinds.js';
import { acceptsAction } from '../actors/vm.js';
import { ApiError, notFound } from './errors.js';
import { lockQueue, type OrcMember } from '../orc/shards.js';
import type { ImageStore } from '../images/store.js';
import { imageRef, type ImageRecord } from '../images/model.js';

export interface CreateServer {
  name: string;
  flavor: Flavor;
  labels?: string[];
  zone?: string;
  bandwidth_mbps?: number;
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

interface IdempotencyRecord {
  fingerprint: string;
  answer: Accepted;
}

const iso = (ms: number | null | undefined): string | null => (ms ? new Date(ms).toISOString() : null);

export class ApiStore {
  constructor(
    private readonly zk: Zk,
    private readonly paths: Paths,
    private readonly config: ClusterConfig,
    private readonly images?: ImageStore,
  ) {}

  private newWorkUnit(kind: WorkKind, server: ServerId, extra: Partial<WorkUnitRecord> = {}): WorkUnitRecord {
    const id = newWorkUnitId();
    const now = Date.now();
    return {
      id,
      kind,
      state: 'PENDING',
      server_id: server,
      shard: shardOf(id, this.config.shards),
      compute_id: null,
      attempts: 0,
      tried: [],
      steps_completed: [],
      steps_left: [...stepsOf(kind)],
      created_at: now,
      updated_at: now,
      finished_at: null,
      ...extra,
    };
  }

  async createServer(req: CreateServer, idempotencyKey?: string): Promise<Accepted> {
    const fingerprint = createHash('sha256').update(JSON.stringify(req)).digest('hex');
    const keyPath = idempotencyKey
      ? this.paths.idempotencyKey(createHash('sha256').update(`POST /v1/servers\n${idempotencyKey}`).digest('hex'))
      : undefined;
    if (keyPath) {
      const seen = await this.replay(keyPath, fingerprint);
      if (seen) return seen;
    }
    const image = await this.imageFor(req);
    const ports = req.ports?.length ? req.ports : undefined;
    if (ports && new Set(ports.map((p) => p.host_port)).size !== ports.length) {
      throw new ApiError('BAD_REQUEST', 'two ports forward the same host_port');
    }
    const serverId = newServerId();
    const wu = this.newWorkUnit('build', serverId, {
      request: {
        name: req.name,
        flavor: req.flavor,
        bandwidth_mbps: req.bandwidth_mbps ?? 0,
        zone: req.zone,
        labels: req.labels,
        ...(image ? { image: imageRef(image) } : {}),
        ...(req.user_data ? { user_data: req.user_data } : {}),
        ...(ports ? { ports } : {}),
      },
    });
    const server: ServerRecord = {
      id: serverId,
      name: req.name,
      status: 'BUILDING',
      compute_id: null,
      flavor: req.flavor,
      labels: req.labels ?? [],
      zone: req.zone ?? null,
      created_at: wu.created_at,
      task: wu.id,
      ...(image ? { image: image.id } : {}),
      ...(ports ? { ports } : {}),
    };
    const answer: Accepted = { work_unit_id: wu.id, server_id: serverId };
    const txn = this.zk
      .txn()
      .create(this.paths.workUnit(wu.id), wu)
      .create(this.paths.server(serverId), server)
      .create(this.paths.inboxEntry(wu.shard, wu.id));
    if (keyPath) txn.create(keyPath, { fingerprint, answer } satisfies IdempotencyRecord);
    // The image cannot be deleted while this node exists, nor this server made once it is gone.
    if (image) this.images!.addUser(txn, image.id, serverId);
    try {
      await txn.commit();
    } catch (e) {
      if (image && isZkError(e, 'NO_NODE')) throw new ApiError('BAD_REQUEST', `image ${req.image} was deleted meanwhile`);
      // A concurrent request with the same key won the race: answer what it answered.
      if (keyPath && isZkError(e, 'NODE_EXISTS') && e.path === keyPath) {
        const seen = await this.replay(keyPath, fingerprint);
        if (seen) return seen;
      }
      throw e;
    }
    return answer;
  }

  private async imageFor(req: CreateServer): Promise<ImageRecord | undefined> {
    if (req.image === undefined) return undefined;
    if (!this.images) throw new ApiError('BAD_REQUEST', 'this API knows no images');
    const found = await this.images.resolve(req.image);
    if (!found) throw new ApiError('BAD_REQUEST', `no image named or with id ${req.image}`);
    return found;
  }

  private async replay(keyPath: string, fingerprint: string): Promise<Accepted | null> {
    const prior = await this.zk.get<IdempotencyRecord>(keyPath);
    if (!prior?.value) return null;
    if (prior.value.fingerprint !== fingerprint) {
      throw new ApiError('IDEMPOTENCY_KEY_REUSED', 'this Idempotency-Key was used with a different request body');
    }
    return prior.value.answer;
  }

  /** start / stop / reboot / delete: one unit at a time per server, and only what its state allows. */
  async act(serverId: ServerId, action: ServerAction | 'delete'): Promise<Accepted> {
    for (;;) {
      const cur = await this.zk.get<ServerRecord>(this.paths.server(serverId));
      if (!cur?.value) throw notFound('server', serverId);
      const s = cur.value;
      if (s.task) {
        const busy = await this.zk.get<WorkUnitRecord>(this.paths.workUnit(s.task));
        if (busy?.value && !TERMINAL.has(busy.value.state)) {
          throw new ApiError('SERVER_BUSY', `server ${serverId} is busy with ${busy.value.kind} work unit ${s.task}; retry when it finishes`);
        }
      }
      if (!acceptsAction(s.status, action)) {
        throw new ApiError('ACTION_NOT_ALLOWED', `cannot ${action} a server that is ${s.status}`);
      }
      const wu = this.newWorkUnit(action, serverId, { compute_id: null });
      try {
        await this.zk
          .txn()
          .create(this.paths.workUnit(wu.id), wu)
          .create(this.paths.inboxEntry(wu.shard, wu.id))
          .set(this.paths.server(serverId), { ...s, task: wu.id, ...(action === 'delete' ? { status: 'DELETING' } : {}) }, cur.stat.version)
          .commit();
        return { work_unit_id: wu.id, server_id: serverId };
      } catch (e) {
        if (isZkError(e, 'BAD_VERSION')) continue; // the server changed under us: judge again
        if (isZkError(e, 'NO_NODE')) throw notFound('server', serverId);
        throw e;
      }
    }
  }

  async getServer(id: ServerId) {
    const s = await this.zk.get<ServerRecord>(this.paths.server(id));
    if (!s?.value) throw notFound('server', id);
    // Whether GET /v1/servers/:id/console has something to show: its compute runs real guests.
    const compute = s.value.compute_id;
    const console = compute ? (await this.zk.exists(`${this.paths.self(compute)}/console`)) !== null : false;
    return { ...presentServer(s.value), console };
  }

  async listServers(status?: string) {
    const ids = (await this.zk.children(this.paths.servers)) ?? [];
    const recs = await Promise.all(ids.map((id) => this.zk.get<ServerRecord>(this.paths.server(id as ServerId))));
    return recs
      .map((r) => r?.value)
      .filter((r): r is ServerRecord => !!r && (!status || r.status === status))
      .sort((a, b) => a.created_at - b.created_at || a.id.localeCompare(b.id))
      .map(presentServer);
  }

  async getWorkUnit(id: WorkUnitId) {
    const w = await this.zk.get<WorkUnitRecord>(this.paths.workUnit(id));
    if (!w?.value) throw notFound('work unit', id);
    return presentWorkUnit(w.value);
  }

  async listComputes() {
    const ids = ((await this.zk.children(this.paths.computes)) ?? []).sort();
    const out = await Promise.all(
      ids.map(async (id) => {
        const cid = id as ComputeId;
        const [cap, free, alive, managing, active, next] = await Promise.all([
          this.zk.get<ComputeCapacity>(this.paths.selfCapacity(cid)),
          this.zk.get<Consumes>(this.paths.selfFree(cid)),
          this.zk.exists(this.paths.alive(cid)),
          this.zk.exists(this.paths.managing(cid)),
          this.zk.exists(this.paths.activeTasks(cid)),
          this.zk.exists(this.paths.nextTasks(cid)),
        ]);
        if (!cap?.value || !free?.value) return null;
        const { vcpus, ram_mb, disk_gb, bandwidth_mbps } = cap.value;
        return {
          id,
          alive: alive !== null,
          zone: cap.value.zone,
          labels: cap.value.labels,
          capacity: { vcpus, ram_mb, disk_gb, bandwidth_mbps },
          free: free.value,
          managing: managing?.numChildren ?? 0,
          active_tasks: active?.numChildren ?? 0,
          next_tasks: next?.numChildren ?? 0,
        };
      }),
    );
    return out.filter((c) => c !== null);
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
        out[String(n)] = q[0]?.orc ?? null;
      }),
    );
    return out;
  }
}

export function presentServer(s: ServerRecord) {
  return {
    id: s.id,
    name: s.name,
    status: s.status,
    compute_id: s.compute_id,
    flavor: s.flavor,
    labels: s.labels,
    zone: s.zone,
    task: s.task,
    created_at: iso(s.created_at),
    ...(s.last_error ? { last_error: s.last_error } : {}),
    ...(s.image ? { image: s.image } : {}),
    ...(s.ports ? { ports: s.ports } : {}),
  };
}

export function presentWorkUnit(w: WorkUnitRecord) {
  return {
    id: w.id,
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
    created_at: iso(w.created_at),
    finished_at: iso(w.finished_at),
  };
}
