// quark-compute: publishes its directory, takes next_tasks into active_tasks, runs each work
// unit's steps against libvirt (one transaction per step), and keeps managing/ and self/ true.
import os from 'node:os';
import { createActor, fromPromise, type Actor } from 'xstate';
import type { Hypervisor } from '../native/libvirt.js';
import { commitSurely, isZkError, watchChildrenOwned, type Txn, type Zk } from '../zk/client.js';
import type { Paths } from '../zk/paths.js';
import { activeTaskEntries, createEntries, managedEntries, nextTaskEntries, removeEntries } from '../zk/layout.js';
import type { Logger } from '../common/log.js';
import type { ComputeId, ServerId, WorkUnitId } from '../common/ids.js';
import {
  addConsumes,
  ZERO,
  type AliveRecord,
  type ClusterConfig,
  type ComputeCapacity,
  type Consumes,
  type ManagedRecord,
  type ServerRecord,
  type TaskRecord,
  type WorkUnitRecord,
} from '../common/model.js';
import { stepsOf, type StepName } from '../actors/kinds.js';
import { StepError, stepsLeft, workUnitMachine, type CompletedStep, type StepInput } from '../actors/work-unit.js';
import { nextStatus, type VmEvent, type VmStatus } from '../actors/vm.js';
import { domainName, ensureDefined, ensureRunning, ensureUndefined, runStepEffect, vmIdOfDomain } from './steps.js';
import { readConfig } from '../zk/config.js';
import type { GuestHost } from '../guest/host.js';

export interface ComputeOptions {
  id: ComputeId;
  zk: Zk;
  paths: Paths;
  hv: Hypervisor;
  capacity: ComputeCapacity;
  log: Logger;
  shutdownTimeoutMs?: number;
  /** Added before every step's effect: makes work visibly in flight (demos, visualizer, fault tests). */
  stepDelayMs?: number;
  /** Graceful shutdown waits this long for the units in flight (default 30 s). */
  drainTimeoutMs?: number;
  /** Least time between two writes of self/hypervisor (default 200 ms). */
  hypervisorReportMs?: number;
  /** Real guests (a qemu:// connection): storage, seeds, consoles, the probed accelerator. */
  guest?: GuestHost;
}

interface InFlight {
  task: TaskRecord;
  /** False while the task is still in next_tasks: the first commit moves it to active_tasks. */
  intaken: boolean;
  /** The unit's completed steps that are durable in active_tasks. */
  durable: CompletedStep[];
  /** Version of the work-unit znode as this compute last wrote it. */
  wuVersion: number;
  wu: WorkUnitRecord;
  actor: Actor<ReturnType<typeof workUnitMachine>>;
  done: Promise<void>;
}

/**
 * One machine per kind per process, built once: building a statechart (state nodes, transitions)
 * for every unit was about a tenth of a busy hollow process's time, and one per compute would cost
 * ~21 KB each. Its runStep finds the unit's compute in `runners` (unit ids are unique).
 */
const runners = new Map<string, Compute>();
const machines = new Map<string, ReturnType<typeof workUnitMachine>>();
function machineFor(kind: TaskRecord['kind']): ReturnType<typeof workUnitMachine> {
  let m = machines.get(kind);
  if (!m) {
    m = workUnitMachine(kind).provide({
      actors: {
        runStep: fromPromise<CompletedStep, StepInput>(({ input }) => {
          const c = runners.get(input.workUnitId);
          if (!c) throw new StepError('NOT_IN_FLIGHT', `work unit ${input.workUnitId} is not in flight`);
          return c.runStep(input);
        }),
      },
    });
    machines.set(kind, m);
  }
  return m;
}

const ACTION_DONE: Record<string, VmEvent> = {
  build: { type: 'BUILT' },
  start: { type: 'STARTED' },
  stop: { type: 'STOPPED' },
  reboot: { type: 'REBOOTED' },
};

export class Compute {
  private readonly inflight = new Map<WorkUnitId, InFlight>();
  private readonly managed = new Map<ServerId, ManagedRecord>();
  private readonly intakeQueue = new Set<WorkUnitId>();
  private watcher: ReturnType<typeof watchChildrenOwned> | undefined;
  private stopped = false;
  /** Draining: no new task is taken (graceful shutdown). */
  private draining = false;
  private config: ClusterConfig | undefined;

  constructor(private readonly o: ComputeOptions) {}

  get id(): ComputeId {
    return this.o.id;
  }

  async start(): Promise<void> {
    const { zk, paths, id } = this.o;
    this.config = await readConfig(zk, paths);
    await this.publishSelf();
    await this.reconcile();
    await this.claimAlive();
    await this.publishHypervisor();
    // A persistent watch: a new task costs one listing, and the compute's own intake (the first
    // step's commit removes next_tasks/<wu>) costs none, since it is announced through own().
    this.watcher = watchChildrenOwned(
      zk,
      paths.nextTasks(id),
      (kids) => {
        for (const wu of kids ?? []) this.enqueueIntake(wu as WorkUnitId);
      },
      (err) => this.o.log.error('next_tasks watch failed', { err }),
    );
    this.o.log.info('compute ready', { managing: this.managed.size, resumed: this.inflight.size });
  }

  async stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.hvTimer);
    this.watcher?.stop();
    for (const [wu, f] of this.inflight) {
      f.actor.stop();
      if (runners.get(wu) === this) runners.delete(wu);
    }
  }

  /**
   * Graceful shutdown's first half: takes no new task, and waits (at most timeoutMs) for the
   * units already running here to finish, so a planned stop does not cut a VM's build in half.
   * Tasks still in next_tasks stay there; when this compute's liveness node goes, their orc
   * places builds elsewhere and fails the rest, as for any lost compute.
   */
  async drain(timeoutMs = this.o.drainTimeoutMs ?? 30_000): Promise<{ finished: number; left: number }> {
    this.draining = true;
    this.watcher?.stop();
    this.watcher = undefined;
    const running = [...this.inflight.values()];
    if (running.length === 0) return { finished: 0, left: 0 };
    this.o.log.info('draining: finishing the units in flight', { units: running.length, timeout_ms: timeoutMs });
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([
      Promise.allSettled(running.map((f) => f.done)),
      new Promise((r) => (timer = setTimeout(r, timeoutMs))),
    ]);
    clearTimeout(timer);
    const left = running.filter((f) => this.inflight.has(f.task.work_unit_id)).length;
    if (left > 0) this.o.log.warn('drain timed out: units left unfinished', { left });
    return { finished: running.length - left, left };
  }

  // ---- self/ ---------------------------------------------------------------------------------

  private async publishSelf(): Promise<void> {
    const { zk, paths, id, capacity: cap } = this.o;
    for (const dir of [paths.self(id), paths.nextTasks(id), paths.activeTasks(id), paths.managing(id)]) await zk.mkdirp(dir);
    await zk.mkdirp(`${paths.self(id)}/network`);
    const leaves: Array<[string, unknown]> = [
      [paths.selfCapacity(id), cap],
      [`${paths.self(id)}/ram`, cap.ram_mb],
      [`${paths.self(id)}/cpu`, cap.vcpus],
      [`${paths.self(id)}/disk`, cap.disk_gb],
      [`${paths.self(id)}/network/max_bandwidth`, cap.bandwidth_mbps],
      // What runs the guests (kvm, tcg, or the test driver's records), and where their consoles are read.
      [`${paths.self(id)}/accel`, this.o.guest?.accel ?? 'test'],
      ...(this.o.guest ? ([[`${paths.self(id)}/console`, this.o.guest.consoleUrl]] as Array<[string, unknown]>) : []),
    ];
    for (const [p, v] of leaves) {
      if (!(await zk.createIfAbsent(p, v))) await zk.set(p, v, -1);
    }
    // A console server left from an earlier life of this id on a real hypervisor is gone now.
    if (!this.o.guest) await zk.remove(`${paths.self(id)}/console`).catch((e) => { if (!isZkError(e, 'NO_NODE')) throw e; });
    await zk.createIfAbsent(paths.selfFree(id), this.freeOf(ZERO));
  }

  private freeOf(used: Consumes): Consumes {
    const c = this.o.capacity;
    return addConsumes({ vcpus: c.vcpus, ram_mb: c.ram_mb, disk_gb: c.disk_gb, bandwidth_mbps: c.bandwidth_mbps }, used, -1);
  }

  /**
   * The ephemeral liveness node. One left by our previous (dead) session is replaced in the same
   * transaction, so watchers never see the compute vanish (which would mark its VMs LOST).
   */
  private async claimAlive(): Promise<void> {
    const { zk, paths, id, log } = this.o;
    const me: AliveRecord = { pid: process.pid, host: os.hostname(), started_at: Date.now() };
    for (;;) {
      const st = await zk.exists(paths.alive(id));
      try {
        if (!st) await zk.create(paths.alive(id), me, 'ephemeral');
        else {
          log.warn('replacing a liveness node left by an earlier session', { owner: st.ephemeralOwner });
          await zk.txn().remove(paths.alive(id), st.version).create(paths.alive(id), me, 'ephemeral').commit();
        }
        return;
      } catch (e) {
        if (!isZkError(e, 'NODE_EXISTS') && !isZkError(e, 'NO_NODE') && !isZkError(e, 'BAD_VERSION')) throw e;
      }
    }
  }

  // ---- reconcile -------------------------------------------------------------------------------

  /**
   * Makes libvirt and ZooKeeper agree after a (re)start: VMs recorded in managing/ are redefined
   * (the libvirt test driver, like a crashed host, forgets them), quark domains nobody manages are
   * removed, unfinished work units resume, and self/free is recomputed from what is held.
   */
  private async reconcile(): Promise<void> {
    const { zk, paths, id, hv, log } = this.o;
    for (const vm of (await zk.children(paths.managing(id))) ?? []) {
      const rec = await zk.get<ManagedRecord>(paths.managed(id, vm as ServerId));
      if (!rec?.value) continue;
      const server = await zk.get<ServerRecord>(paths.server(vm as ServerId));
      if (!server?.value || server.value.compute_id !== id) {
        // The orc gave this VM up (LOST and rebuilt elsewhere, or deleted): drop our copy.
        log.warn('dropping a VM this compute no longer owns', { vm });
        await ensureUndefined(hv, vm as ServerId, this.o.guest);
        await removeEntries(zk.txn(), paths.managed(id, vm as ServerId), managedEntries(rec.value)).commit();
        continue;
      }
      this.managed.set(vm as ServerId, rec.value);
      if (server.value.status === 'LOST' && !server.value.task) {
        // We were given up for dead but came back with the VM: it is ours again, as recorded.
        log.info('VM found again after its compute was lost', { vm, status: rec.value.status });
        await zk.set(paths.server(vm as ServerId), { ...server.value, status: rec.value.status }, server.stat.version);
      }
      await ensureDefined(hv, vm as ServerId, rec.value.consumes, id);
      if (rec.value.status === 'ACTIVE') await ensureRunning(hv, vm as ServerId);
    }
    const active = (await zk.children(paths.activeTasks(id))) ?? [];
    const queued = (await zk.children(paths.nextTasks(id))) ?? [];
    for (const dom of await hv.list()) {
      const vm = vmIdOfDomain(dom.name);
      // Only domains this compute defined: another compute may share the libvirt.
      if (vm && dom.owner === id && !this.managed.has(vm as ServerId) && !(await this.hasTaskFor(active, queued, vm))) {
        log.warn('removing a libvirt domain nobody manages', { domain: dom.name });
        await ensureUndefined(hv, vm as ServerId, this.o.guest);
      }
    }
    for (const wu of active) await this.resumeActive(wu as WorkUnitId);
    await this.recomputeFree();
  }

  /** Whether a task in active_tasks, or one in next_tasks (its first steps may have run), is for `vm`. */
  private async hasTaskFor(active: string[], queued: string[], vm: string): Promise<boolean> {
    const { zk, paths, id } = this.o;
    for (const [dir, wus] of [[paths.activeTasks(id), active], [paths.nextTasks(id), queued]] as const) {
      for (const wu of wus) {
        const t = await zk.get<TaskRecord>(`${dir}/${wu}`);
        if (t?.value?.server_id === vm) return true;
      }
    }
    return false;
  }

  /** free = capacity − what next_tasks, active_tasks and managing hold; versioned against claims. */
  async recomputeFree(): Promise<Consumes> {
    const { zk, paths, id } = this.o;
    for (;;) {
      const cur = await zk.get<Consumes>(paths.selfFree(id));
      if (!cur) throw new Error('self/free is missing');
      let used = ZERO;
      for (const dir of [paths.nextTasks(id), paths.activeTasks(id)]) {
        for (const wu of (await zk.children(dir)) ?? []) {
          const t = await zk.get<TaskRecord>(`${dir}/${wu}`);
          if (t?.value && t.value.kind === 'build') used = addConsumes(used, t.value.consumes);
        }
      }
      for (const vm of (await zk.children(paths.managing(id))) ?? []) {
        const m = await zk.get<ManagedRecord>(paths.managed(id, vm as ServerId));
        if (m?.value) used = addConsumes(used, m.value.consumes);
      }
      const free = this.freeOf(used);
      try {
        await zk.set(paths.selfFree(id), free, cur.stat.version);
        return free;
      } catch (e) {
        if (!isZkError(e, 'BAD_VERSION')) throw e; // an orc claimed meanwhile: count again
      }
    }
  }

  // ---- intake ----------------------------------------------------------------------------------

  private enqueueIntake(wu: WorkUnitId): void {
    if (this.stopped || this.draining || this.inflight.has(wu) || this.intakeQueue.has(wu)) return;
    this.intakeQueue.add(wu);
    this.intake(wu)
      .catch((err) => this.o.log.error('intake failed', { wu, err }))
      .finally(() => this.intakeQueue.delete(wu));
  }

  /**
   * Starts a task found in next_tasks. It is not moved yet: the first step's transaction moves it
   * (next_tasks/<wu> → active_tasks/<wu>, the unit RUNNING) together with that step's completion,
   * which saves a transaction per unit. A crash before then leaves the task in next_tasks, and the
   * restarted compute starts it again from its first step, whose completion was never recorded.
   */
  private async intake(wuId: WorkUnitId): Promise<void> {
    const { zk, paths, id, log } = this.o;
    const next = await zk.get<TaskRecord>(paths.nextTask(id, wuId));
    if (!next?.value) return;
    const { unit, ...task } = next.value;
    // The claim carries the unit as it wrote it; an older task (or a route without it) is read.
    const wu = unit ? { value: unit.record, stat: { version: unit.version } } : await zk.get<WorkUnitRecord>(paths.workUnit(wuId));
    if (!wu?.value || wu.value.compute_id !== id || wu.value.state === 'SUCCEEDED' || wu.value.state === 'FAILED') {
      log.warn('discarding a task that is no longer ours', { wu: wuId, state: wu?.value?.state });
      await this.discard(task);
      return;
    }
    if (this.stopped || this.draining || this.inflight.has(wuId)) return;
    const record: WorkUnitRecord = { ...wu.value, steps_left: [...stepsOf(task.kind)], steps_completed: [] };
    this.run(task, record, wu.stat.version, [], false);
  }

  /** Removes a task never taken in, and gives back what its claim took from self/free. */
  private discard(task: TaskRecord): Promise<void> {
    const { paths, id } = this.o;
    return this.dropTask(task, (txn) => void removeEntries(txn, paths.nextTask(id, task.work_unit_id), nextTaskEntries(task)));
  }

  /**
   * One transaction: the task's znodes that `remove` lists go, and what a build's claim took from
   * self/free comes back. Tried again if a claim moved self/free meanwhile.
   */
  private async dropTask(task: TaskRecord, remove: (txn: Txn) => void | Promise<void>): Promise<void> {
    const { zk, paths, id } = this.o;
    for (;;) {
      const txn = zk.txn();
      await remove(txn);
      if (task.kind === 'build') {
        const free = await zk.get<Consumes>(paths.selfFree(id));
        if (free?.value) txn.set(paths.selfFree(id), addConsumes(free.value, task.consumes), free.stat.version);
      }
      try {
        await commitSurely(zk, txn, this.finished(task.work_unit_id));
        return;
      } catch (e) {
        if (!isZkError(e, 'BAD_VERSION')) throw e;
      }
    }
  }

  private async resumeActive(wuId: WorkUnitId): Promise<void> {
    const { zk, paths, id, log } = this.o;
    const base = paths.activeTask(id, wuId);
    const t = await zk.get<TaskRecord>(base);
    if (!t?.value) return;
    const completed: CompletedStep[] = [];
    for (const s of (await zk.children(`${base}/steps_completed`)) ?? []) {
      const ttc = await zk.get<number>(`${base}/steps_completed/${s}/time_to_completion`);
      completed.push({ name: s as StepName, time_to_completion_ms: ttc?.value ?? 0, completed_at: ttc?.stat.mtime ?? 0 });
    }
    const order = stepsOf(t.value.kind);
    completed.sort((a, b) => order.indexOf(a.name) - order.indexOf(b.name));
    const wu = await zk.get<WorkUnitRecord>(paths.workUnit(wuId));
    if (!wu?.value || wu.value.compute_id !== id || wu.value.state !== 'RUNNING') {
      log.warn('dropping an active task that is no longer ours', { wu: wuId, state: wu?.value?.state });
      if (t.value.kind === 'build' && !this.managed.has(t.value.server_id)) await ensureUndefined(this.o.hv, t.value.server_id, this.o.guest);
      await removeEntries(zk.txn(), base, activeTaskEntries(t.value, completed)).commit();
      return;
    }
    log.info('resuming work unit', { wu: wuId, completed: completed.map((c) => c.name) });
    this.run(t.value, wu.value, wu.stat.version, completed, true);
  }

  // ---- running a work unit ---------------------------------------------------------------------

  private run(task: TaskRecord, wu: WorkUnitRecord, wuVersion: number, completed: CompletedStep[], intaken: boolean): void {
    const log = this.o.log.child({ wu: task.work_unit_id, kind: task.kind, vm: task.server_id });
    const machine = machineFor(task.kind);
    const actor = createActor(machine, { input: { workUnitId: task.work_unit_id, completed } });
    let finish!: () => void;
    const done = new Promise<void>((r) => (finish = r));
    const entry: InFlight = { task, intaken, durable: completed, wu, wuVersion, actor, done };
    this.inflight.set(task.work_unit_id, entry);
    runners.set(task.work_unit_id, this);
    actor.subscribe({
      next: (snap) => {
        if (snap.status !== 'done') return;
        const end = async () => {
          if (snap.value === 'FAILED' && snap.context.failure) {
            log.warn('work unit failed', { failure: snap.context.failure });
            await this.commitFailure(entry, snap.context.completed, snap.context.failure);
          }
        };
        end()
          .catch((err) => log.error('could not record the outcome', { err }))
          .finally(() => {
            this.inflight.delete(task.work_unit_id);
            if (runners.get(task.work_unit_id) === this) runners.delete(task.work_unit_id);
            this.schedulePublishHypervisor();
            finish();
          });
      },
      error: (err) => log.error('work-unit actor crashed', { err }),
    });
    actor.start();
  }

  /** Called by the shared machine's runStep actor (see `machineFor`). */
  async runStep(input: StepInput): Promise<CompletedStep> {
    const entry = this.inflight.get(input.workUnitId as WorkUnitId);
    if (!entry) throw new StepError('NOT_IN_FLIGHT', `work unit ${input.workUnitId} is not in flight`);
    const { task } = entry;
    const started = performance.now();
    if (this.o.stepDelayMs) await new Promise((r) => setTimeout(r, this.o.stepDelayMs));
    await runStepEffect(input.step, {
      hv: this.o.hv,
      vm: task.server_id,
      consumes: task.consumes,
      admit: (what) => this.admit(task, what),
      shutdownTimeoutMs: this.o.shutdownTimeoutMs ?? 30_000,
      owner: this.o.id,
      guest: this.o.guest,
      request: entry.wu.request,
      onRetry: (err, attempt) => this.o.log.warn('libvirt unreachable; retrying the step', { wu: task.work_unit_id, step: input.step, attempt, err }),
    });
    const step: CompletedStep = {
      name: input.step,
      time_to_completion_ms: Math.max(1, Math.round(performance.now() - started)),
      completed_at: Date.now(),
    };
    if (input.last) await this.commitSuccess(entry, [...input.completed, step]);
    else await this.commitSteps(entry, [...input.completed, step]);
    return step;
  }

  /** The compute's own admission check (Nova's compute-side claim): what it runs must fit. */
  private admit(task: TaskRecord, what: 'vcpu' | 'storage'): void {
    const ratio = this.config?.overcommit ?? { vcpus: 1, ram_mb: 1, disk_gb: 1, bandwidth_mbps: 1 };
    const cap = this.o.capacity;
    let used = ZERO;
    for (const m of this.managed.values()) used = addConsumes(used, m.consumes);
    for (const f of this.inflight.values()) if (f.task.kind === 'build') used = addConsumes(used, f.task.consumes);
    const over = (what === 'vcpu' ? (['vcpus', 'ram_mb'] as const) : (['disk_gb'] as const)).filter(
      (r) => used[r] > cap[r] * ratio[r],
    );
    if (over.length > 0) {
      throw new StepError('NO_CAPACITY', `compute ${this.o.id} would exceed its ${over.join(', ')} (${over.map((r) => `${used[r]} > ${cap[r] * ratio[r]}`).join(', ')})`);
    }
    void task;
  }

  private progress(entry: InFlight, completed: CompletedStep[], extra: Partial<WorkUnitRecord> = {}): WorkUnitRecord {
    entry.wu = {
      ...entry.wu,
      steps_completed: completed.map((c) => ({ ...c })),
      steps_left: stepsLeft(entry.task.kind, completed),
      updated_at: Date.now(),
      ...extra,
    };
    return entry.wu;
  }

  private async wuVersionNow(wu: WorkUnitId): Promise<number> {
    const cur = await this.o.zk.exists(this.o.paths.workUnit(wu));
    if (!cur) throw new Error(`work unit ${wu} vanished`);
    return cur.version;
  }

  /** Commits a unit's transaction; `applied` tells, after a dropped connection, whether it landed. */
  private async commitTxn(entry: InFlight, txn: Txn, applied: () => Promise<boolean>): Promise<void> {
    const res = await commitSurely(this.o.zk, txn, applied);
    if (!res) {
      entry.wuVersion = await this.wuVersionNow(entry.task.work_unit_id);
      return;
    }
    const idx = txn.ops.findIndex((op) => op.path === this.o.paths.workUnit(entry.task.work_unit_id));
    const st = idx >= 0 ? res[idx]?.stat : undefined;
    if (st) entry.wuVersion = st.version;
  }

  /** The unit's task is in neither next_tasks nor active_tasks: its finishing transaction landed. */
  private finished(wu: WorkUnitId): () => Promise<boolean> {
    const { zk, paths, id } = this.o;
    return async () => (await zk.exists(paths.activeTask(id, wu))) === null && (await zk.exists(paths.nextTask(id, wu))) === null;
  }

  /** Removes the unit's task directory as it stands: next_tasks/<wu> before intake, else active_tasks/<wu>. */
  private removeTask(txn: Txn, entry: InFlight): void {
    const { paths, id } = this.o;
    const { task } = entry;
    if (!entry.intaken) removeEntries(txn, paths.nextTask(id, task.work_unit_id), nextTaskEntries(task));
    else removeEntries(txn, paths.activeTask(id, task.work_unit_id), activeTaskEntries(task, entry.durable));
  }

  /**
   * One step's completion, one transaction (the seed's rule, and what lets an operator or the
   * visualizer watch a unit step by step): steps_left/<s> → steps_completed/<s>/time_to_completion,
   * and the unit's progress. The unit's first commit also moves its task from next_tasks to
   * active_tasks and sets it RUNNING: the intake costs no transaction of its own.
   */
  private async commitSteps(entry: InFlight, completed: CompletedStep[]): Promise<void> {
    const { zk, paths, id } = this.o;
    const wuId = entry.task.work_unit_id;
    const base = paths.activeTask(id, wuId);
    const fresh = completed.slice(entry.durable.length);
    const txn = zk.txn();
    if (!entry.intaken) {
      removeEntries(txn, paths.nextTask(id, wuId), nextTaskEntries(entry.task));
      createEntries(txn, base, activeTaskEntries(entry.task, completed));
    } else {
      for (const step of fresh) {
        txn
          .remove(`${base}/steps_left/${step.name}`)
          .create(`${base}/steps_completed/${step.name}`)
          .create(`${base}/steps_completed/${step.name}/time_to_completion`, step.time_to_completion_ms);
      }
    }
    txn.set(paths.workUnit(wuId), this.progress(entry, completed, { state: 'RUNNING' }), entry.wuVersion);
    const last = fresh[fresh.length - 1]!;
    const commit = this.commitTxn(entry, txn, async () => (await zk.exists(`${base}/steps_completed/${last.name}`)) !== null);
    await (!entry.intaken && this.watcher ? this.watcher.own(commit) : commit);
    entry.intaken = true;
    entry.durable = completed;
  }

  /**
   * The last step's commit finishes the unit in the same transaction: the active task goes, the
   * VM's managing/ entry and server record change, the unit SUCCEEDS, the shard inbox forgets it.
   */
  private async commitSuccess(entry: InFlight, completed: CompletedStep[]): Promise<void> {
    const { zk, paths, id } = this.o;
    const { task } = entry;
    const vm = task.server_id;
    const now = Date.now();
    for (;;) {
      const txn = zk.txn();
      this.removeTask(txn, entry);
      const server = await zk.get<ServerRecord>(paths.server(vm));
      if (task.kind === 'delete') {
        const m = this.managed.get(vm);
        if (m) removeEntries(txn, paths.managed(id, vm), managedEntries(m));
        const free = await zk.get<Consumes>(paths.selfFree(id));
        if (!free?.value) throw new Error('self/free is missing');
        if (m) txn.set(paths.selfFree(id), addConsumes(free.value, m.consumes), free.stat.version);
        if (server) txn.remove(paths.server(vm));
      } else {
        const prev = this.managed.get(vm);
        const status = nextStatus(prev?.status ?? 'BUILDING', ACTION_DONE[task.kind]!);
        const rec: ManagedRecord = prev
          ? { ...prev, status }
          : { server_id: vm, name: task.name, kind: 'vm', birthed_on: now, consumes: task.consumes, status };
        if (prev) txn.set(paths.managed(id, vm), rec, -1).set(`${paths.managed(id, vm)}/status`, status, -1);
        else createEntries(txn, paths.managed(id, vm), managedEntries(rec));
        if (server?.value) {
          txn.set(paths.server(vm), { ...server.value, status, compute_id: id, task: null }, server.stat.version);
        }
      }
      txn.set(
        paths.workUnit(task.work_unit_id),
        this.progress(entry, completed, { state: 'SUCCEEDED', finished_at: now }),
        entry.wuVersion,
      );
      txn.remove(paths.inboxEntry(task.shard, task.work_unit_id));
      try {
        await this.commitTxn(entry, txn, this.finished(task.work_unit_id));
      } catch (e) {
        // self/free or the server record moved under us (a claim, an API read-modify): try again.
        if (isZkError(e, 'BAD_VERSION') && e.path !== paths.workUnit(task.work_unit_id)) continue;
        throw e;
      }
      if (task.kind === 'delete') this.managed.delete(vm);
      else {
        const prev = this.managed.get(vm);
        const status = nextStatus(prev?.status ?? 'BUILDING', ACTION_DONE[task.kind]!);
        this.managed.set(vm, prev ? { ...prev, status } : { server_id: vm, name: task.name, kind: 'vm', birthed_on: now, consumes: task.consumes, status });
      }
      return;
    }
  }

  /** A failed unit: a failed build is undone and its capacity released; the server shows the error. */
  private async commitFailure(
    entry: InFlight,
    completed: CompletedStep[],
    failure: { step: StepName; code: string; message: string },
  ): Promise<void> {
    const { zk, paths, id, hv } = this.o;
    const { task } = entry;
    const vm = task.server_id;
    const now = Date.now();
    const error = { code: failure.code, message: `step ${failure.step} failed: ${failure.message}` };
    if (task.kind === 'build') await ensureUndefined(hv, vm, this.o.guest).catch(() => {});
    for (;;) {
      const txn = zk.txn();
      // Walk what is there: a step whose commit landed just before the failure is not in `completed`.
      for (const p of (await zk.walk(paths.activeTask(id, task.work_unit_id))).reverse()) txn.remove(p);
      for (const p of (await zk.walk(paths.nextTask(id, task.work_unit_id))).reverse()) txn.remove(p);
      if (task.kind === 'build') {
        const free = await zk.get<Consumes>(paths.selfFree(id));
        if (!free?.value) throw new Error('self/free is missing');
        txn.set(paths.selfFree(id), addConsumes(free.value, task.consumes), free.stat.version);
      }
      const server = await zk.get<ServerRecord>(paths.server(vm));
      if (server?.value) {
        const status: VmStatus =
          task.kind === 'build' || task.kind === 'delete' ? 'ERROR' : (this.managed.get(vm)?.status ?? server.value.status);
        txn.set(
          paths.server(vm),
          { ...server.value, status, compute_id: task.kind === 'build' ? null : id, task: null, last_error: error },
          server.stat.version,
        );
      }
      txn.set(
        paths.workUnit(task.work_unit_id),
        this.progress(entry, completed, { state: 'FAILED', error, finished_at: now }),
        entry.wuVersion,
      );
      txn.remove(paths.inboxEntry(task.shard, task.work_unit_id));
      try {
        await this.commitTxn(entry, txn, this.finished(task.work_unit_id));
        return;
      } catch (e) {
        if (isZkError(e, 'BAD_VERSION') && e.path !== paths.workUnit(task.work_unit_id)) continue;
        if (isZkError(e, 'BAD_VERSION')) return this.abandon(entry);
        throw e;
      }
    }
  }

  /**
   * The unit moved on without us (an orc gave this compute up for lost and retried it elsewhere):
   * drop our copy of the task and give back what it held here. The unit's record is not ours.
   */
  private async abandon(entry: InFlight): Promise<void> {
    const { zk, paths, id, log } = this.o;
    const { task } = entry;
    log.warn('work unit was reassigned while it ran here; abandoning our copy', { wu: task.work_unit_id });
    if (task.kind === 'build' && !this.managed.has(task.server_id)) await ensureUndefined(this.o.hv, task.server_id, this.o.guest).catch(() => {});
    await this.dropTask(task, async (txn) => {
      for (const p of (await zk.walk(paths.activeTask(id, task.work_unit_id))).reverse()) txn.remove(p);
      for (const p of (await zk.walk(paths.nextTask(id, task.work_unit_id))).reverse()) txn.remove(p);
    });
  }

  private hvTimer: NodeJS.Timeout | undefined;
  /**
   * self/hypervisor: what libvirt itself reports (domains by state), so operators and tests can
   * check that libvirt and managing/ agree. Debounced: at most one write per hypervisorReportMs.
   */
  private schedulePublishHypervisor(): void {
    if (this.hvTimer || this.stopped) return;
    this.hvTimer = setTimeout(() => {
      this.hvTimer = undefined;
      this.publishHypervisor().catch((err) => this.o.log.warn('could not publish self/hypervisor', { err }));
    }, this.o.hypervisorReportMs ?? 200);
  }

  private async publishHypervisor(): Promise<void> {
    const { zk, paths, id, hv } = this.o;
    const domains = (await hv.list()).filter((d) => vmIdOfDomain(d.name) !== null);
    const byState: Record<string, number> = {};
    for (const d of domains) byState[d.state] = (byState[d.state] ?? 0) + 1;
    const value = { uri: hv.uri, domains: domains.length, by_state: byState, at: Date.now() };
    const p = `${paths.self(id)}/hypervisor`;
    if (!(await zk.createIfAbsent(p, value))) await zk.set(p, value, -1);
  }

  /** For tests and `quark zk`: what this compute believes it manages. */
  managedIds(): ServerId[] {
    return [...this.managed.keys()];
  }
}

export { domainName };
