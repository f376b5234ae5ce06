// Every transaction a compute commits for a work unit, built whole as a list of ops by pure
// functions: a step's completion (with the intake on the first), the finish, the failure, and
// dropping a task. The runner reads what they need (server, self/free), hands the list to
// ZooKeeper, and retries on a version conflict; what each costs is tested here, op by op.
import type { ComputeId, ServerId, WorkUnitId } from '../common/ids.js';
import { addConsumes, type Consumes, type ErrorInfo, type ManagedRecord, type ServerRecord, type StepDone, type TaskRecord, type WorkUnitRecord } from '../common/model.js';
import type { VmStatus } from '../common/vocabulary.js';
import type { Paths } from '../zk/paths.js';
import { activeTaskEntries, managedEntries, nextTaskEntries } from '../zk/layout.js';
import { create, createEntries, remove, removeEntries, removeWalked, set, type Op, type Read } from '../lifecycle/ops.js';
import { must, serverOn, statusAfterSuccess, unitOn } from '../lifecycle/index.js';
import { VM_INITIAL_STATUS } from '../actors/vm.js';

/** A unit's task on its compute: where it stands, and the unit as this compute last wrote it. */
export interface UnitOnCompute {
  compute: ComputeId;
  task: TaskRecord;
  /** False while the task is still in next_tasks: the first commit moves it to active_tasks. */
  intaken: boolean;
  /** The completed steps that are durable in active_tasks. */
  durable: readonly StepDone[];
  unit: Read<WorkUnitRecord>;
}

export interface Commit {
  ops: Op[];
  /** The unit record the transaction writes. */
  unit: WorkUnitRecord;
}

const unitId = (u: UnitOnCompute): WorkUnitId => u.task.work_unit_id;

/** Removes the unit's task directory as it stands: next_tasks/<wu> before the intake, else active_tasks/<wu>. */
function removeTask(paths: Paths, u: UnitOnCompute): Op[] {
  return u.intaken
    ? removeEntries(paths.activeTask(u.compute, unitId(u)), activeTaskEntries(u.task, u.durable))
    : removeEntries(paths.nextTask(u.compute, unitId(u)), nextTaskEntries(u.task));
}

/** What a build's claim took from self/free, given back. */
const giveBack = (paths: Paths, compute: ComputeId, free: Read<Consumes>, c: Consumes): Op => set(paths.selfFree(compute), addConsumes(free.value, c), free.version);

/**
 * One step's completion, one transaction (the seed's rule): steps_left/<s> → steps_completed/<s>/
 * time_to_completion, and the unit's progress. The unit's first commit also moves its task from
 * next_tasks to active_tasks and sets it RUNNING: the intake costs no transaction of its own.
 */
export function stepCommit(paths: Paths, u: UnitOnCompute, completed: readonly StepDone[], at: number): Commit {
  const base = paths.activeTask(u.compute, unitId(u));
  const ops: Op[] = [];
  if (!u.intaken) {
    ops.push(...removeEntries(paths.nextTask(u.compute, unitId(u)), nextTaskEntries(u.task)));
    ops.push(...createEntries(base, activeTaskEntries(u.task, completed)));
  } else {
    for (const step of completed.slice(u.durable.length)) {
      ops.push(
        remove(`${base}/steps_left/${step.name}`),
        create(`${base}/steps_completed/${step.name}`),
        create(`${base}/steps_completed/${step.name}/time_to_completion`, step.time_to_completion_ms),
      );
    }
  }
  const unit = must(unitOn(u.unit.value, { type: 'steps_committed', completed, at }));
  ops.push(set(paths.workUnit(unitId(u)), unit, u.unit.version));
  return { ops, unit };
}

export interface FinishReads {
  /** The server record and its version, or null if it is gone. */
  server: Read<ServerRecord> | null;
  /** What this compute records for the VM (managing/<vm>), if it manages it already. */
  managed: ManagedRecord | undefined;
  /** self/free: a delete gives back what the VM held. */
  free: Read<Consumes> | null;
}

/**
 * The last step's commit finishes the unit in the same transaction: the task goes, the VM's
 * managing/ entry and server record follow the VM machine (or go, for a delete), the unit
 * SUCCEEDS, the shard inbox forgets it. `managed` is what managing/<vm> holds after it.
 */
export function finishCommit(paths: Paths, u: UnitOnCompute, completed: readonly StepDone[], at: number, r: FinishReads): Commit & { managed: ManagedRecord | null } {
  const { task, compute } = u;
  const vm = task.server_id;
  const ops = removeTask(paths, u);
  let managed: ManagedRecord | null = null;
  if (task.kind === 'delete') {
    const m = r.managed;
    if (m) {
      if (!r.free) throw new Error('self/free is missing');
      ops.push(...removeEntries(paths.managed(compute, vm), managedEntries(m)), giveBack(paths, compute, r.free, m.consumes));
    }
    if (r.server) ops.push(remove(paths.server(vm)));
  } else {
    const prev = r.managed;
    const from = prev?.status ?? VM_INITIAL_STATUS;
    const status = statusAfterSuccess(task.kind, from);
    managed = prev ? { ...prev, status } : { server_id: vm, name: task.name, kind: 'vm', birthed_on: at, consumes: task.consumes, status };
    if (prev) ops.push(set(paths.managed(compute, vm), managed, -1), set(`${paths.managed(compute, vm)}/status`, status, -1));
    else ops.push(...createEntries(paths.managed(compute, vm), managedEntries(managed)));
    const shown = r.server && serverOn(r.server.value, { type: 'unit_succeeded', unit: task.work_unit_id, kind: task.kind, compute, from });
    if (r.server && shown?.ok && shown.next) ops.push(set(paths.server(vm), shown.next, r.server.version));
  }
  const unit = must(unitOn(u.unit.value, { type: 'succeeded', completed, at }));
  ops.push(set(paths.workUnit(task.work_unit_id), unit, u.unit.version), remove(paths.inboxEntry(task.shard, task.work_unit_id)));
  return { ops, unit, managed };
}

export interface FailureReads {
  /** What a walk found under active_tasks/<wu> and next_tasks/<wu>, parents first. */
  active: readonly string[];
  next: readonly string[];
  server: Read<ServerRecord> | null;
  /** self/free: a failed build gives back what its claim took. */
  free: Read<Consumes> | null;
  /** What this compute records for the VM, if it manages it: a failed action leaves it so. */
  managedStatus?: VmStatus;
}

/**
 * A failed unit: its task goes (whatever is there: a step whose commit landed just before the
 * failure is not in `completed`), a build's capacity comes back, the server shows the error
 * while the unit is its task, the unit FAILS and the inbox forgets it.
 */
export function failureCommit(paths: Paths, u: UnitOnCompute, completed: readonly StepDone[], error: ErrorInfo, at: number, r: FailureReads): Commit {
  const { task, compute } = u;
  const ops = [...removeWalked(r.active), ...removeWalked(r.next)];
  if (task.kind === 'build') {
    if (!r.free) throw new Error('self/free is missing');
    ops.push(giveBack(paths, compute, r.free, task.consumes));
  }
  if (r.server) {
    const shown = serverOn(r.server.value, { type: 'unit_failed', unit: task.work_unit_id, kind: task.kind, error, from: r.managedStatus });
    if (shown.ok) ops.push(set(paths.server(task.server_id), shown.next, r.server.version));
  }
  const unit = must(unitOn(u.unit.value, { type: 'failed', error, completed, at }));
  ops.push(set(paths.workUnit(task.work_unit_id), unit, u.unit.version), remove(paths.inboxEntry(task.shard, task.work_unit_id)));
  return { ops, unit };
}

/** The failure a step's error becomes on the unit and its server. */
export const stepFailure = (f: { step: string; code: string; message: string }): ErrorInfo => ({ code: f.code, message: `step ${f.step} failed: ${f.message}` });

/**
 * Dropping a task this compute will not finish (never taken in, or reassigned while it ran): its
 * znodes go and what a build's claim took from self/free comes back. The unit is not ours to write.
 */
export function dropCommit(paths: Paths, compute: ComputeId, task: TaskRecord, removals: readonly Op[], free: Read<Consumes> | null): Op[] {
  const ops = [...removals];
  if (task.kind === 'build' && free) ops.push(giveBack(paths, compute, free, task.consumes));
  return ops;
}

/** A task still in next_tasks, exactly as the claim created it. */
export const nextTaskRemovals = (paths: Paths, compute: ComputeId, task: TaskRecord): Op[] =>
  removeEntries(paths.nextTask(compute, task.work_unit_id), nextTaskEntries(task));

/** An active task whose unit moved on while this compute was down: forgotten (reconcile recounts self/free). */
export const forgetActiveTask = (paths: Paths, compute: ComputeId, task: TaskRecord, completed: readonly StepDone[]): Op[] =>
  removeEntries(paths.activeTask(compute, task.work_unit_id), activeTaskEntries(task, completed));

/** A VM the cluster gave up on (rebuilt elsewhere, or deleted) while this compute was away. */
export const forgetManaged = (paths: Paths, compute: ComputeId, vm: ServerId, m: ManagedRecord): Op[] => removeEntries(paths.managed(compute, vm), managedEntries(m));
