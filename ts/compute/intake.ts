// Intake: the compute's persistent watch on next_tasks, and the start of each task it finds. The
// task is not moved here: the first step's transaction moves it (next_tasks/<wu> → active_tasks/
// <wu>, the unit RUNNING), which saves a transaction per unit. A crash before then leaves the task
// in next_tasks, and the restarted compute starts it again from its first step.
import { watchChildrenOwned } from '../zk/recipes/watch.js';
import { isZkError } from '../zk/errors.js';
import type { WorkUnitId } from '../common/ids.js';
import { flavorConsumes, ZERO, type TaskRecord, type WorkUnitRecord } from '../common/model.js';
import { checkTask, checkWorkUnit, readRecord } from '../lifecycle/records.js';
import { applyOps, removeWalked } from '../lifecycle/ops.js';
import { nextTaskRemovals } from './commits.js';
import { dropTask, type Runner } from './runner.js';
import { recomputeFree } from './reconcile.js';
import type { ComputeContext } from './context.js';

/** The task a claim or a route makes for a unit, rebuilt from the unit (when the task's own record is malformed). */
export function taskOfUnit(wu: WorkUnitRecord, at: number): TaskRecord {
  return {
    work_unit_id: wu.id,
    kind: wu.kind,
    server_id: wu.server_id,
    shard: wu.shard,
    consumes: wu.kind === 'build' && wu.request ? flavorConsumes(wu.request.flavor, wu.request.bandwidth_mbps) : ZERO,
    name: wu.request?.name ?? '',
    attempt: wu.attempts,
    birthed_on: at,
  };
}

/**
 * A task of this compute whose record is malformed (in next_tasks, or in active_tasks at a
 * restart): its unit, if it is still ours in `state`, fails with CORRUPT_RECORD; otherwise the
 * task's znodes just go and self/free is counted again. Either way it never runs, and never stops
 * the compute from taking other work.
 */
export async function dropCorruptTask(c: ComputeContext, runner: Runner, dir: string, wuId: WorkUnitId, problem: string, state: 'SCHEDULED' | 'RUNNING'): Promise<void> {
  const { zk, paths, id, log } = c;
  log.error('task record is malformed; its unit cannot run here', { wu: wuId, problem });
  const unit = await readRecord(zk, paths.workUnit(wuId), checkWorkUnit);
  if (unit.state === 'ok' && unit.value.compute_id === id && unit.value.state === state) {
    const error = { code: 'CORRUPT_RECORD', message: `its task on compute ${id} is malformed (${problem}); it cannot run` };
    await runner.failWithoutRunning(taskOfUnit(unit.value, Date.now()), unit.value, unit.version, error);
    return;
  }
  await applyOps(zk.txn(), removeWalked(await zk.walk(`${dir}/${wuId}`)))
    .commit()
    .catch((e) => {
      if (!isZkError(e, 'NO_NODE') && !isZkError(e, 'NOT_EMPTY')) throw e;
    });
  await recomputeFree(c);
}

export class Intake {
  private watcher: ReturnType<typeof watchChildrenOwned> | undefined;
  private readonly queue = new Set<WorkUnitId>();
  /** The first listing is what waited for this compute while it was away. */
  private firstListing = true;
  /** Takes no new task: stopped, or draining before a planned stop. */
  private closed = false;

  constructor(
    private readonly c: ComputeContext,
    private readonly runner: Runner,
  ) {}

  /**
   * A persistent watch: a new task costs one listing, and the compute's own intake (the first
   * step's commit removes next_tasks/<wu>) costs none, since it is announced through own().
   */
  start(): void {
    this.watcher = watchChildrenOwned(
      this.c.zk,
      this.c.paths.nextTasks(this.c.id),
      (kids) => {
        const atStart = this.firstListing;
        this.firstListing = false;
        for (const wu of kids ?? []) this.enqueue(wu as WorkUnitId, atStart);
      },
      (err) => this.c.log.error('next_tasks watch failed', { err }),
    );
  }

  close(): void {
    this.closed = true;
    this.watcher?.stop();
    this.watcher = undefined;
  }

  /** A commit that removes next_tasks/<wu>, announced as this compute's own change. */
  own<T>(commit: Promise<T>): Promise<T> {
    return this.watcher ? this.watcher.own(commit) : commit;
  }

  private enqueue(wu: WorkUnitId, foundAtStart: boolean): void {
    if (this.closed || this.runner.has(wu) || this.queue.has(wu)) return;
    this.queue.add(wu);
    this.take(wu, foundAtStart)
      .catch((err) => this.c.log.error('intake failed', { wu, err }))
      .finally(() => this.queue.delete(wu));
  }

  private async take(wuId: WorkUnitId, foundAtStart: boolean): Promise<void> {
    const { zk, paths, id, log } = this.c;
    const next = await readRecord(zk, paths.nextTask(id, wuId), checkTask);
    if (next.state === 'absent') return;
    if (next.state === 'corrupt') return dropCorruptTask(this.c, this.runner, paths.nextTasks(id), wuId, next.problem, 'SCHEDULED');
    const { unit, ...task } = next.value;
    // The claim carries the unit as it wrote it; an older task (or a route without it) is read.
    // So is the unit of a task that waited while this compute was away: the cluster may have
    // ended it without this compute, and an action's first effect comes before any commit that
    // would find that out. It runs only if the unit is still the one its claim wrote.
    // A unit that is absent or malformed is not ours to run (its orc fails a malformed one).
    const stored = !unit || foundAtStart ? await readRecord(zk, paths.workUnit(wuId), checkWorkUnit) : null;
    const read = stored?.state === 'ok' ? { value: stored.value, stat: { version: stored.version } } : null;
    const wu = stored ? read : unit ? { value: unit.record, stat: { version: unit.version } } : null;
    const moved = read !== null && unit !== undefined && read.stat.version !== unit.version;
    if (!wu?.value || moved || wu.value.compute_id !== id || wu.value.state !== 'SCHEDULED') {
      log.warn('discarding a task that is no longer ours', { wu: wuId, state: wu?.value?.state ?? stored?.state, moved });
      // Never taken in: removed as the claim made it, and what its claim took comes back.
      await dropTask(this.c, task, () => nextTaskRemovals(paths, id, task));
      return;
    }
    if (this.closed || this.runner.has(wuId)) return;
    this.runner.run(task, wu.value, wu.stat.version, [], false);
  }
}
