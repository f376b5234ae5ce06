// The step runner: one per compute. It starts each work unit's actor (with itself as the actor's
// runner: machines are shared by every compute of a process, runners never are), runs each step's
// libvirt effect, and commits the step's transaction (built whole in commits.ts) before the next
// step starts. A failed unit is undone and recorded; a unit that moved on without us is dropped.
import { createActor, type Actor } from 'xstate';
import { commitSurely, isZkError, type ZkError } from '../zk/errors.js';
import type { ServerId, WorkUnitId } from '../common/ids.js';
import { checkServer, readRecord } from '../lifecycle/records.js';
import { addConsumes, ZERO, type ClusterConfig, type Consumes, type ErrorInfo, type ServerRecord, type TaskRecord, type WorkUnitRecord } from '../common/model.js';
import { overcommitPm, overUse } from '../common/capacity.js';
import { machineOf, StepError, type CompletedStep, type StepInput, type StepRunner, type WorkUnitMachine } from '../actors/work-unit.js';
import { applyOps, removeWalked, type Op, type Read } from '../lifecycle/ops.js';
import { ensureUndefined, runStepEffect } from './steps.js';
import { dropCommit, failureCommit, finishCommit, stepCommit, stepFailure, type UnitOnCompute } from './commits.js';
import type { ComputeContext, ManagedVms } from './context.js';
import { usageRelease } from '../auth/quota.js';
import { groupLeave } from '../lifecycle/groups.js';
import { m, since } from '../common/metrics.js';
import type { Fence } from './fence.js';
import { serverDeletedOps, unitEndedOps } from '../lifecycle/retention.js';

/** How long a step's commit waits for a grant that is missing on a unit still assigned here, and how often it tries. */
export const GRANT_WAIT_MS = 5000;
const GRANT_POLL_MS = 200;

export interface RunnerOptions {
  /** Added before every step's effect: makes work visibly in flight (demos, visualizer, fault tests). */
  stepDelayMs?: number;
  shutdownTimeoutMs?: number;
  /** The cluster's overcommit ratios, once read. */
  overcommit(): ClusterConfig['overcommit'] | undefined;
  /** The cluster's shard count, once read: where a finished unit is filed for retention. */
  shards(): number | undefined;
  /** The first commit removes next_tasks/<wu>: announced to the next_tasks watcher as our own write. */
  ownIntake<T>(commit: Promise<T>): Promise<T>;
  /** A unit ended (libvirt's picture may have changed). */
  unitEnded(): void;
  /** Lets a step's effect begin only while the session can be trusted (fence.ts). */
  fence: Fence;
}

interface InFlight {
  task: TaskRecord;
  /** False while the task is still in next_tasks: the first commit moves it to active_tasks. */
  intaken: boolean;
  /** The unit's completed steps that are durable in active_tasks. */
  durable: CompletedStep[];
  /** The work unit as this compute last wrote it, and that znode version. */
  wu: WorkUnitRecord;
  wuVersion: number;
  actor: Actor<WorkUnitMachine>;
  done: Promise<void>;
}

/** How long a step took, as its time_to_completion records it: whole ms, and never 0 for a step that ran. */
export const stepDuration = (startedMs: number, endedMs: number): number => Math.max(1, Math.round(endedMs - startedMs));

const read = <T>(r: { value?: T | null; stat: { version: number } } | null): Read<T> | null => (r?.value ? { value: r.value, version: r.stat.version } : null);

/** The unit's task is in neither next_tasks nor active_tasks: its finishing transaction landed. */
export function taskGone(c: ComputeContext, wu: WorkUnitId): () => Promise<boolean> {
  const { zk, paths, id } = c;
  return async () => (await zk.exists(paths.activeTask(id, wu))) === null && (await zk.exists(paths.nextTask(id, wu))) === null;
}

/**
 * Drops a task this compute will not finish: one transaction, the znodes `removals` lists go and
 * what a build's claim took from self/free comes back. Tried again if a claim moved self/free.
 */
export async function dropTask(c: ComputeContext, task: TaskRecord, removals: () => Op[] | Promise<Op[]>): Promise<void> {
  const { zk, paths, id } = c;
  for (;;) {
    const gone = await removals();
    const free = task.kind === 'build' ? read(await zk.get<Consumes>(paths.selfFree(id))) : null;
    try {
      await commitSurely(zk, applyOps(zk.txn(), dropCommit(paths, id, task, gone, free)), taskGone(c, task.work_unit_id));
      return;
    } catch (e) {
      if (!isZkError(e, 'BAD_VERSION')) throw e;
    }
  }
}

/** What a walk finds under the unit's task directories now, children first. */
async function presentTaskNodes(c: ComputeContext, wu: WorkUnitId): Promise<{ active: string[]; next: string[] }> {
  return { active: await c.zk.walk(c.paths.activeTask(c.id, wu)), next: await c.zk.walk(c.paths.nextTask(c.id, wu)) };
}

export class Runner implements StepRunner {
  private readonly inflight = new Map<WorkUnitId, InFlight>();
  /** libvirt effects under way: a stopped runner's are awaited before a new session reconciles. */
  private readonly effects = new Set<Promise<unknown>>();
  private stopped = false;

  constructor(
    private readonly c: ComputeContext,
    private readonly managed: ManagedVms,
    private readonly o: RunnerOptions,
  ) {}

  has(wu: WorkUnitId): boolean {
    return this.inflight.has(wu);
  }

  get size(): number {
    return this.inflight.size;
  }

  /** The units running now, each with the promise of its end. */
  running(): Array<{ wu: WorkUnitId; done: Promise<void> }> {
    return [...this.inflight.values()].map((f) => ({ wu: f.task.work_unit_id, done: f.done }));
  }

  /**
   * Drops the units in flight: their actors stop, no step of theirs begins again (the fence is
   * closed by the caller), and what they record is left to the cluster (an orc retries or fails
   * them once this compute's session is gone). Resolves once the libvirt effects already under
   * way have ended (at most `boundMs`), so a new session's reconcile never races one of them.
   */
  async stop(boundMs = (this.o.shutdownTimeoutMs ?? 30_000) + 5000): Promise<void> {
    this.stopped = true;
    for (const f of this.inflight.values()) f.actor.stop();
    if (this.effects.size === 0) return;
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([Promise.allSettled([...this.effects]), new Promise((r) => (timer = setTimeout(r, boundMs)))]);
    clearTimeout(timer);
  }

  /** Whether units here may still act: not once stopped or fenced. */
  private get dropped(): boolean {
    return this.stopped || this.o.fence.fenced;
  }

  /** Runs a libvirt effect once the fence lets it begin, and keeps it known until it ends. */
  private async effect<T>(fn: () => Promise<T>): Promise<T> {
    await this.o.fence.pass();
    if (this.stopped) throw new StepError('NOT_IN_FLIGHT', 'the compute stopped');
    const p = fn();
    this.effects.add(p);
    try {
      return await p;
    } finally {
      this.effects.delete(p);
    }
  }

  /** Starts a unit's actor from the steps already durable (`completed`); it runs to its end. */
  run(task: TaskRecord, wu: WorkUnitRecord, wuVersion: number, completed: CompletedStep[], intaken: boolean): void {
    // The request id the API stored on the unit rides on every line about it (X-Request-Id).
    const log = this.c.log.child({ wu: task.work_unit_id, kind: task.kind, vm: task.server_id, ...(wu.request_id ? { request_id: wu.request_id } : {}) });
    log.debug('work unit running', { resumed_steps: completed.length });
    const actor = createActor(machineOf(task.kind), { input: { workUnitId: task.work_unit_id, completed, runner: this } });
    let finish!: () => void;
    const done = new Promise<void>((r) => (finish = r));
    const entry: InFlight = { task, intaken, durable: completed, wu, wuVersion, actor, done };
    this.inflight.set(task.work_unit_id, entry);
    actor.subscribe({
      next: (snap) => {
        if (snap.status !== 'done') return;
        const end = async () => {
          // A dropped unit's outcome is the cluster's to decide: nothing is recorded or undone here.
          if (this.dropped) return;
          if (snap.value === 'FAILED' && snap.context.failure) {
            log.warn('work unit failed', { failure: snap.context.failure });
            const error = stepFailure(snap.context.failure);
            await this.commitFailure(entry, snap.context.completed, error);
            m.unitsFailed.inc({ kind: task.kind, code: error.code });
          } else if (snap.value === 'SUCCEEDED') {
            m.unitsSucceeded.inc({ kind: task.kind });
            log.info('work unit succeeded', { steps: snap.context.completed.length });
          }
        };
        end()
          .catch((err) => log.error('could not record the outcome', { err }))
          .finally(() => {
            this.inflight.delete(task.work_unit_id);
            this.o.unitEnded();
            finish();
          });
      },
      error: (err) => log.error('work-unit actor crashed', { err }),
    });
    actor.start();
  }

  /**
   * Fails a unit of this compute without running it (its task record is malformed, so its steps
   * cannot be trusted): the task's znodes go, a build's claim (`task`, rebuilt from the unit) is
   * given back and undone in libvirt, and the unit and its server show `error`.
   */
  async failWithoutRunning(task: TaskRecord, wu: WorkUnitRecord, wuVersion: number, error: ErrorInfo): Promise<void> {
    const entry: InFlight = { task, intaken: false, durable: [], wu, wuVersion, actor: undefined as never, done: Promise.resolve() };
    await this.commitFailure(entry, wu.steps_completed, error);
  }

  /** Called by the unit's actor for each step: the libvirt effect, then the step's transaction. */
  async runStep(input: StepInput): Promise<CompletedStep> {
    const entry = this.inflight.get(input.workUnitId as WorkUnitId);
    if (!entry) throw new StepError('NOT_IN_FLIGHT', `work unit ${input.workUnitId} is not in flight`);
    const { task } = entry;
    const started = performance.now();
    // Node's timers may fire up to a millisecond early by performance.now(): wait out the rest.
    for (let left = this.o.stepDelayMs ?? 0; left > 0; left = (this.o.stepDelayMs ?? 0) - (performance.now() - started)) {
      await new Promise((r) => setTimeout(r, Math.ceil(left)));
    }
    // No step begins while the session is in doubt (SUSPENDED) and none once it is lost.
    await this.effect(() =>
      runStepEffect(input.step, {
        hv: this.c.hv,
        vm: task.server_id,
        consumes: task.consumes,
        admit: (what) => this.admit(task, what),
        shutdownTimeoutMs: this.o.shutdownTimeoutMs ?? 30_000,
        owner: this.c.id,
        guest: this.c.guest,
        request: entry.wu.request,
        onRetry: (err, attempt) => this.c.log.warn('libvirt unreachable; retrying the step', { wu: task.work_unit_id, step: input.step, attempt, err }),
      }),
    );
    const step: CompletedStep = { name: input.step, time_to_completion_ms: stepDuration(started, performance.now()), completed_at: Date.now() };
    m.stepDuration.observe({ kind: task.kind, step: input.step }, since(started));
    if (input.last) await this.commitSuccess(entry, [...input.completed, step]);
    else await this.commitSteps(entry, [...input.completed, step]);
    return step;
  }

  /** The compute's own admission check (Nova's compute-side claim): what it runs must fit. */
  private admit(task: TaskRecord, what: 'vcpu' | 'storage'): void {
    let used = ZERO;
    for (const m of this.managed.values()) used = addConsumes(used, m.consumes);
    for (const f of this.inflight.values()) if (f.task.kind === 'build') used = addConsumes(used, f.task.consumes);
    const over = overUse(used, this.c.capacity, overcommitPm(this.o.overcommit()), what === 'vcpu' ? ['vcpus', 'ram_mb'] : ['disk_gb']);
    if (over.length > 0) {
      throw new StepError('NO_CAPACITY', `compute ${this.c.id} would exceed its ${over.map((o) => o.resource).join(', ')} (${over.map((o) => `${o.used} > ${o.limit}`).join(', ')})`);
    }
    void task;
  }

  /** The server record, if it reads right: a malformed one is logged and left as it is (treated as gone). */
  private async readServer(vm: ServerId): Promise<Read<ServerRecord> | null> {
    const r = await readRecord(this.c.zk, this.c.paths.server(vm), checkServer);
    if (r.state === 'corrupt') this.c.log.error('server record is malformed; left as it is', { vm, problem: r.problem });
    return r.state === 'ok' ? { value: r.value, version: r.version } : null;
  }

  private at(entry: InFlight): UnitOnCompute {
    return { compute: this.c.id, task: entry.task, intaken: entry.intaken, durable: entry.durable, unit: { value: entry.wu, version: entry.wuVersion } };
  }

  /**
   * Commits a unit's transaction; `applied` tells, after a dropped connection, whether it landed.
   * NO_AUTH on the unit's record or its server's while the unit still names this compute, at the
   * version this compute holds, is a grant that is not there (yet): a lost claim's late grant took it, and that
   * claim's orc gives it back (ts/orc/grant.ts). It is waited for, up to GRANT_WAIT_MS; a unit
   * that moved on, or a grant that never comes, ends as before (abandoned, or failed).
   */
  private async commitTxn(entry: InFlight, ops: readonly Op[], applied: () => Promise<boolean>): Promise<void> {
    const { zk, paths } = this.c;
    const wuPath = paths.workUnit(entry.task.work_unit_id);
    for (let waited = 0; ; waited += GRANT_POLL_MS) {
      let res: Awaited<ReturnType<typeof commitSurely>>;
      try {
        res = await commitSurely(zk, applyOps(zk.txn(), ops), applied);
      } catch (e) {
        const ungranted = isZkError(e, 'NO_AUTH') && (e.path === wuPath || e.path === paths.server(entry.task.server_id));
        if (!ungranted || waited >= GRANT_WAIT_MS || this.dropped) throw e;
        const cur = await zk.get<WorkUnitRecord>(wuPath).catch(() => null);
        if (cur?.value?.compute_id !== this.c.id || cur.stat.version !== entry.wuVersion) throw e;
        if (waited === 0) this.c.log.warn('not granted on the work unit or its server; waiting for the grant', { wu: entry.task.work_unit_id, path: (e as ZkError).path });
        await new Promise((r) => setTimeout(r, GRANT_POLL_MS));
        continue;
      }
      if (!res) {
        const cur = await zk.exists(wuPath);
        if (!cur) throw new Error(`work unit ${entry.task.work_unit_id} vanished`);
        entry.wuVersion = cur.version;
        return;
      }
      const st = res[ops.findIndex((op) => op.path === wuPath)]?.stat;
      if (st) entry.wuVersion = st.version;
      return;
    }
  }

  private async commitSteps(entry: InFlight, completed: CompletedStep[]): Promise<void> {
    const { zk, paths, id } = this.c;
    const c = stepCommit(paths, this.at(entry), completed, Date.now());
    const last = completed[completed.length - 1]!;
    const landed = async () => (await zk.exists(`${paths.activeTask(id, entry.task.work_unit_id)}/steps_completed/${last.name}`)) !== null;
    const commit = this.commitTxn(entry, c.ops, landed);
    await (entry.intaken ? commit : this.o.ownIntake(commit));
    entry.wu = c.unit;
    entry.intaken = true;
    entry.durable = completed;
  }

  private async commitSuccess(entry: InFlight, completed: CompletedStep[]): Promise<void> {
    const { zk, paths, id } = this.c;
    const { task } = entry;
    const vm = task.server_id;
    const now = Date.now();
    for (;;) {
      const server = await this.readServer(vm);
      const free = task.kind === 'delete' ? read(await zk.get<Consumes>(paths.selfFree(id))) : null;
      if (task.kind === 'delete' && !free) throw new Error('self/free is missing');
      const c = finishCommit(paths, this.at(entry), completed, now, { server, managed: this.managed.get(vm), free });
      if (task.kind === 'delete') c.ops.push(...(await usageRelease(zk, paths, vm))); // the project's quota usage (ts/auth/quota.ts)
      if (task.kind === 'delete') c.ops.push(...(await groupLeave(zk, paths, server?.value))); // and its server group (ts/lifecycle/groups.ts)
      // Filed for retention (ts/lifecycle/retention.ts): the unit, and a deleted server's last record.
      c.ops.push(...unitEndedOps(paths, this.shards(), c.unit));
      if (task.kind === 'delete' && server) c.ops.push(...serverDeletedOps(paths, this.shards(), server.value, now));
      try {
        await this.commitTxn(entry, c.ops, taskGone(this.c, task.work_unit_id));
      } catch (e) {
        // self/free or the server record moved under us (a claim, an API read-modify): try again.
        if (isZkError(e, 'BAD_VERSION') && e.path !== paths.workUnit(task.work_unit_id)) continue;
        throw e;
      }
      entry.wu = c.unit;
      if (c.managed) this.managed.set(vm, c.managed);
      else this.managed.delete(vm);
      return;
    }
  }

  private shards(): number {
    const n = this.o.shards();
    // The config is read before the first task is taken in: a unit cannot end before it.
    if (n === undefined) throw new Error('the cluster config has not been read yet');
    return n;
  }

  /** A failed unit: a failed build is undone and its capacity released; the server shows the error. */
  private async commitFailure(entry: InFlight, completed: readonly CompletedStep[], error: ErrorInfo): Promise<void> {
    const { zk, paths, id, hv } = this.c;
    const { task } = entry;
    const vm = task.server_id;
    const now = Date.now();
    if (task.kind === 'build') await this.effect(() => ensureUndefined(hv, vm, this.c.guest)).catch(() => {});
    for (;;) {
      // Walk what is there: a step whose commit landed just before the failure is not in `completed`.
      const present = await presentTaskNodes(this.c, task.work_unit_id);
      const free = task.kind === 'build' ? read(await zk.get<Consumes>(paths.selfFree(id))) : null;
      if (task.kind === 'build' && !free) throw new Error('self/free is missing');
      const server = await this.readServer(vm);
      const c = failureCommit(paths, this.at(entry), completed, error, now, { ...present, server, free, managedStatus: this.managed.get(vm)?.status });
      if (task.kind === 'build') c.ops.push(...(await usageRelease(zk, paths, vm))); // the project's quota usage (ts/auth/quota.ts)
      if (task.kind === 'build') c.ops.push(...(await groupLeave(zk, paths, server?.value))); // and its server group (ts/lifecycle/groups.ts)
      c.ops.push(...unitEndedOps(paths, this.shards(), c.unit)); // filed for retention (ts/lifecycle/retention.ts)
      try {
        await this.commitTxn(entry, c.ops, taskGone(this.c, task.work_unit_id));
        entry.wu = c.unit;
        return;
      } catch (e) {
        if (isZkError(e, 'BAD_VERSION') && e.path !== paths.workUnit(task.work_unit_id)) continue;
        if (isZkError(e, 'BAD_VERSION')) return this.abandon(entry);
        // Not granted on the unit (ZooKeeper ACLs): an orc's claim gave it to another compute since.
        if (isZkError(e, 'NO_AUTH') && e.path === paths.workUnit(task.work_unit_id)) return this.abandon(entry);
        throw e;
      }
    }
  }

  /**
   * The unit moved on without us (an orc gave this compute up for lost and retried it elsewhere):
   * drop our copy of the task and give back what it held here. The unit's record is not ours.
   */
  private async abandon(entry: InFlight): Promise<void> {
    const { task } = entry;
    this.c.log.warn('work unit was reassigned while it ran here; abandoning our copy', { wu: task.work_unit_id });
    if (task.kind === 'build' && !this.managed.has(task.server_id)) await this.effect(() => ensureUndefined(this.c.hv, task.server_id, this.c.guest)).catch(() => {});
    await dropTask(this.c, task, async () => {
      const { active, next } = await presentTaskNodes(this.c, task.work_unit_id);
      return [...removeWalked(active), ...removeWalked(next)];
    });
  }
}
