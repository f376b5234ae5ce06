// Reconcile, after a (re)start: libvirt and ZooKeeper are made to agree. VMs recorded in managing/
// are redefined (the libvirt test driver, like a crashed host, forgets them), quark domains nobody
// manages are removed, unfinished work units resume, and self/free is recomputed from what is held.
import { isZkError } from '../zk/errors.js';
import type { ServerId, WorkUnitId } from '../common/ids.js';
import { addConsumes, ZERO, type Consumes } from '../common/model.js';
import { checkManaged, checkServer, checkTask, checkWorkUnit, readRecord } from '../lifecycle/records.js';
import { dropCorruptTask } from './intake.js';
import { stepsOf, type StepName } from '../actors/kinds.js';
import type { CompletedStep } from '../actors/work-unit.js';
import { serverOn } from '../lifecycle/index.js';
import { applyOps } from '../lifecycle/ops.js';
import { ensureDefined, ensureRunning, ensureUndefined, vmIdOfDomain } from './steps.js';
import { forgetActiveTask, forgetManaged } from './commits.js';
import { freeOf, type ComputeContext, type ManagedVms } from './context.js';
import type { Runner } from './runner.js';

export async function reconcile(c: ComputeContext, managed: ManagedVms, runner: Runner): Promise<void> {
  const { zk, paths, id, hv, log } = c;
  /** VMs whose records are malformed: neither managed nor destroyed, only logged (an operator's call). */
  const untouched = new Set<string>();
  for (const vm of (await zk.children(paths.managing(id))) ?? []) {
    const rec = await readRecord(zk, paths.managed(id, vm as ServerId), checkManaged);
    if (rec.state === 'absent') continue;
    const server = await readRecord(zk, paths.server(vm as ServerId), checkServer);
    if (rec.state === 'corrupt' || server.state === 'corrupt') {
      const problem = rec.state === 'corrupt' ? `managing/${vm}: ${rec.problem}` : `server ${vm}: ${(server as { problem: string }).problem}`;
      log.error('a managed VM has a malformed record; left as it is', { vm, problem });
      untouched.add(vm);
      continue;
    }
    if (server.state === 'absent' || server.value.compute_id !== id) {
      // The orc gave this VM up (LOST and rebuilt elsewhere, or deleted): drop our copy.
      log.warn('dropping a VM this compute no longer owns', { vm });
      await ensureUndefined(hv, vm as ServerId, c.guest);
      await applyOps(zk.txn(), forgetManaged(paths, id, vm as ServerId, rec.value)).commit();
      continue;
    }
    managed.set(vm as ServerId, rec.value);
    // We were given up for dead but came back with the VM: it is ours again, as recorded.
    const found = serverOn(server.value, { type: 'found_again', compute: id, recorded: rec.value.status });
    if (found.ok) {
      log.info('VM found again after its compute was lost', { vm, status: rec.value.status });
      await zk.set(paths.server(vm as ServerId), found.next, server.version);
    }
    await ensureDefined(hv, vm as ServerId, rec.value.consumes, id);
    if (rec.value.status === 'ACTIVE') await ensureRunning(hv, vm as ServerId);
  }
  const active = (await zk.children(paths.activeTasks(id))) ?? [];
  const queued = (await zk.children(paths.nextTasks(id))) ?? [];
  for (const dom of await hv.list()) {
    const vm = vmIdOfDomain(dom.name);
    // Only domains this compute defined: another compute may share the libvirt.
    if (vm && dom.owner === id && !managed.has(vm as ServerId) && !untouched.has(vm) && !(await hasTaskFor(c, active, queued, vm))) {
      log.warn('removing a libvirt domain nobody manages', { domain: dom.name });
      await ensureUndefined(hv, vm as ServerId, c.guest);
    }
  }
  for (const wu of active) await resumeActive(c, managed, runner, wu as WorkUnitId);
  await recomputeFree(c);
}

/** Whether a task in active_tasks, or one in next_tasks (its first steps may have run), is for `vm`. */
async function hasTaskFor(c: ComputeContext, active: string[], queued: string[], vm: string): Promise<boolean> {
  const { zk, paths, id } = c;
  for (const [dir, wus] of [[paths.activeTasks(id), active], [paths.nextTasks(id), queued]] as const) {
    for (const wu of wus) {
      const t = await readRecord(zk, `${dir}/${wu}`, checkTask);
      if (t.state === 'ok' && t.value.server_id === vm) return true;
    }
  }
  return false;
}

/** An active unit resumes from the steps its znodes record; one that is no longer ours is dropped. */
async function resumeActive(c: ComputeContext, managed: ManagedVms, runner: Runner, wuId: WorkUnitId): Promise<void> {
  const { zk, paths, id, log } = c;
  const base = paths.activeTask(id, wuId);
  const t = await readRecord(zk, base, checkTask);
  if (t.state === 'absent') return;
  if (t.state === 'corrupt') return dropCorruptTask(c, runner, paths.activeTasks(id), wuId, t.problem, 'RUNNING');
  const completed: CompletedStep[] = [];
  for (const s of (await zk.children(`${base}/steps_completed`)) ?? []) {
    const ttc = await zk.get<number>(`${base}/steps_completed/${s}/time_to_completion`).catch(() => null); // unreadable: the step still counts
    completed.push({ name: s as StepName, time_to_completion_ms: typeof ttc?.value === 'number' ? ttc.value : 0, completed_at: ttc?.stat.mtime ?? 0 });
  }
  const order = stepsOf(t.value.kind);
  completed.sort((a, b) => order.indexOf(a.name) - order.indexOf(b.name));
  // A malformed unit is not ours to resume (its orc fails it): the task is dropped.
  const stored = await readRecord(zk, paths.workUnit(wuId), checkWorkUnit);
  const wu = stored.state === 'ok' ? { value: stored.value, stat: { version: stored.version } } : null;
  if (!wu?.value || wu.value.compute_id !== id || wu.value.state !== 'RUNNING') {
    log.warn('dropping an active task that is no longer ours', { wu: wuId, state: wu?.value?.state ?? stored.state });
    if (t.value.kind === 'build' && !managed.has(t.value.server_id)) await ensureUndefined(c.hv, t.value.server_id, c.guest);
    await applyOps(zk.txn(), forgetActiveTask(paths, id, t.value, completed)).commit();
    return;
  }
  log.info('resuming work unit', { wu: wuId, completed: completed.map((x) => x.name) });
  runner.run(t.value, wu.value, wu.stat.version, completed, true);
}

/** free = capacity − what next_tasks, active_tasks and managing hold; versioned against claims. */
export async function recomputeFree(c: ComputeContext): Promise<Consumes> {
  const { zk, paths, id } = c;
  for (;;) {
    const cur = await zk.get<Consumes>(paths.selfFree(id));
    if (!cur) throw new Error('self/free is missing');
    let used = ZERO;
    for (const dir of [paths.nextTasks(id), paths.activeTasks(id)]) {
      for (const wu of (await zk.children(dir)) ?? []) {
        // A malformed record counts for nothing: it is dropped (task) or left alone (VM), logged either way.
        const t = await readRecord(zk, `${dir}/${wu}`, checkTask);
        if (t.state === 'ok' && t.value.kind === 'build') used = addConsumes(used, t.value.consumes);
      }
    }
    for (const vm of (await zk.children(paths.managing(id))) ?? []) {
      const m = await readRecord(zk, paths.managed(id, vm as ServerId), checkManaged);
      if (m.state === 'ok') used = addConsumes(used, m.value.consumes);
    }
    const free = freeOf(c.capacity, used);
    try {
      await zk.set(paths.selfFree(id), free, cur.stat.version);
      return free;
    } catch (e) {
      if (!isZkError(e, 'BAD_VERSION')) throw e; // an orc claimed meanwhile: count again
    }
  }
}
