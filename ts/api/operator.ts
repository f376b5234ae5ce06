// Operator calls on a compute (admin only): cordon and uncordon (placement passes a cordoned
// compute over; its VMs run on), and evacuate (a compute that is down has its LOST VMs built
// again on other computes under the same server ids, as Nova's evacuate does for a dead host).
import type { Zk } from '../zk/client.js';
import { isZkError } from '../zk/errors.js';
import { ConflictRetries } from '../zk/recipes/retry.js';
import type { Paths } from '../zk/paths.js';
import type { Logger } from '../common/log.js';
import { newWorkUnitId, type ComputeId, type ServerId, type WorkUnitId } from '../common/ids.js';
import { shardOf, type ClusterConfig, type ServerRecord, type WorkUnitRecord } from '../common/model.js';
import { acceptedUnit, serverOn } from '../lifecycle/index.js';
import { m } from '../common/metrics.js';
import { applyOps, removeWalked } from '../lifecycle/ops.js';
import { checkManaged, checkServer, readRecord } from '../lifecycle/records.js';
import { ApiError, notFound } from './errors.js';
import { commitSettled, outcomeUnknown } from './admission.js';

export interface Evacuation {
  compute_id: string;
  /** One build per VM, each under its server's id. */
  evacuated: Array<{ server_id: string; work_unit_id: string }>;
  /** VMs of the compute that were not rebuilt, and why (not LOST yet, a unit in flight, …). */
  skipped: Array<{ server_id: string; reason: string }>;
}

type InProject<T> = T & { project?: string };

export class Operator {
  constructor(
    private readonly zk: Zk,
    private readonly paths: Paths,
    private readonly config: ClusterConfig,
    private readonly log?: Logger,
  ) {}

  private async mustExist(id: ComputeId): Promise<number> {
    const dir = await this.zk.exists(this.paths.compute(id));
    if (!dir) throw notFound('compute', id);
    return dir.version;
  }

  /** Cordons (or uncordons) a compute: a znode in its directory that every orc's view watches. */
  async cordon(id: ComputeId, on: boolean): Promise<void> {
    await this.mustExist(id);
    if (on) {
      if (await this.zk.createIfAbsent(this.paths.cordoned(id), { at: Date.now() })) this.log?.info('compute cordoned', { compute: id });
      return;
    }
    try {
      await this.zk.remove(this.paths.cordoned(id));
      this.log?.info('compute uncordoned', { compute: id });
    } catch (e) {
      if (!isZkError(e, 'NO_NODE')) throw e;
    }
  }

  /**
   * Rebuilds the LOST VMs of a compute that is down on other computes: per VM, one transaction
   * creates its build unit (in its shard's inbox), turns the server BUILDING with that unit as its
   * task and no compute, and removes the VM from the dead compute's managing/, checked against the
   * compute directory's version read while it was down (a compute that comes back bumps it, so no
   * rebuild is committed once it is back). The returning compute finds the VM no longer its own
   * and destroys its domain (reconcile). Refused with 409 while the compute is alive.
   */
  async evacuate(id: ComputeId, requestId?: string): Promise<Evacuation> {
    const incarnation = await this.mustExist(id);
    if (await this.zk.exists(this.paths.alive(id))) {
      throw new ApiError('CONFLICT', `compute ${id} is alive: only a compute that is down can be evacuated (stop it, or wait until its session has expired)`);
    }
    const out: Evacuation = { compute_id: id, evacuated: [], skipped: [] };
    for (const vm of ((await this.zk.children(this.paths.managing(id))) ?? []).sort()) {
      const r = await this.evacuateVm(id, vm as ServerId, incarnation, requestId);
      if ('work_unit_id' in r) {
        out.evacuated.push({ server_id: vm, work_unit_id: r.work_unit_id });
        m.unitsAccepted.inc({ kind: 'build' });
        this.log?.info('work unit accepted', { wu: r.work_unit_id, kind: 'build', vm, evacuating: id, request_id: requestId });
      }
      else out.skipped.push({ server_id: vm, reason: r.reason });
    }
    this.log?.warn('compute evacuated', { compute: id, evacuated: out.evacuated.length, skipped: out.skipped.length });
    return out;
  }

  private async evacuateVm(id: ComputeId, vm: ServerId, incarnation: number, requestId?: string): Promise<{ work_unit_id: WorkUnitId } | { reason: string }> {
    const { zk, paths } = this;
    const managed = await readRecord(zk, paths.managed(id, vm), checkManaged);
    for (const conflicts = new ConflictRetries(`evacuate server ${vm}`); ; conflicts.again()) {
      const server = await readRecord(zk, paths.server(vm), checkServer);
      if (server.state === 'absent') return { reason: 'its server record is gone' };
      if (server.state === 'corrupt') return { reason: `its server record is malformed (${server.problem})` };
      const s = server.value as InProject<ServerRecord>;
      // Its build request kept only what the server record holds: an image's fetch reference is not among it.
      if (s.image) return { reason: `it was booted from image ${s.image}; evacuating real guests is not supported yet (delete it and boot it again)` };
      const unitId = newWorkUnitId();
      const accepted = serverOn(s, { type: 'evacuation_accepted', compute: id, unit: unitId });
      if (!accepted.ok) return { reason: s.status === 'LOST' || s.compute_id !== id ? accepted.message : `it is ${s.status}, not LOST yet (the orc owning the compute's shard marks it within a sweep); evacuate again` };
      // What the VM asked for when it was built: its flavor, placement constraints and bandwidth.
      const unit: InProject<WorkUnitRecord> = {
        ...acceptedUnit({
          id: unitId,
          kind: 'build',
          server_id: vm,
          shard: shardOf(unitId, this.config.shards),
          at: Date.now(),
          request: {
            name: s.name,
            flavor: s.flavor,
            bandwidth_mbps: managed.state === 'ok' ? managed.value.consumes.bandwidth_mbps : 0,
            ...(s.zone !== null ? { zone: s.zone } : {}),
            ...(s.labels.length > 0 ? { labels: s.labels } : {}),
            ...(s.group ? { group: s.group } : {}),
          },
        }),
        tried: [id],
        ...(requestId ? { request_id: requestId } : {}),
        ...(s.project ? { project: s.project } : {}),
      };
      const txn = applyOps(
        zk
          .txn()
          .create(paths.workUnit(unitId), unit)
          .create(paths.inboxEntry(unit.shard, unitId))
          .set(paths.server(vm), accepted.next, server.version)
          .check(paths.compute(id), incarnation),
        removeWalked(await zk.walk(paths.managed(id, vm))),
      );
      const outcome = await commitSettled(zk, txn, paths.workUnit(unitId), { log: this.log });
      if (outcome.kind === 'applied') return { work_unit_id: unitId };
      if (outcome.kind === 'unknown') throw outcomeUnknown({ compute_id: id, server_id: vm, work_unit_id: unitId });
      const e = outcome.error;
      if (isZkError(e, 'BAD_VERSION') && e.path === paths.compute(id)) {
        throw new ApiError('CONFLICT', `compute ${id} came back while it was being evacuated; its remaining VMs are its own again`);
      }
      // The server or the managed entry changed under us: judge this VM again.
      if (isZkError(e, 'BAD_VERSION') || isZkError(e, 'NO_NODE') || isZkError(e, 'NOT_EMPTY')) continue;
      throw e;
    }
  }
}
