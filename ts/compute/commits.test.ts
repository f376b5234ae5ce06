// The compute's transactions, as the builders make them: what each costs (the per-boot figures of
// docs/architecture.md), which znodes each touches and with which version checks. The last part
// commits a whole boot's transactions to the real ZooKeeper, one after the other, and reads the tree.
import { describe, expect, it } from 'vitest';
import { isZkError } from '../zk/errors.js';
import type { Zk } from '../zk/client.js';
import { Paths } from '../zk/paths.js';
import { managedEntries } from '../zk/layout.js';
import type { ComputeId, ServerId, WorkUnitId } from '../common/ids.js';
import type { Consumes, ManagedRecord, ServerRecord, StepDone, TaskRecord, WorkUnitRecord } from '../common/model.js';
import { KINDS, type StepName, type WorkKind } from '../common/vocabulary.js';
import { acceptedServer, acceptedUnit, must, unitOn } from '../lifecycle/index.js';
import { applyOps, type Op } from '../lifecycle/ops.js';
import { useZkRoot, uniqueRoot } from '../../test/support/index.js';
import { dropCommit, failureCommit, finishCommit, nextTaskRemovals, stepCommit, stepFailure, type UnitOnCompute } from './commits.js';

const C = 'compute-1' as ComputeId;
const VM = 'vm-1' as ServerId;
const WU = 'wu-1' as WorkUnitId;
const need: Consumes = { vcpus: 2, ram_mb: 2048, disk_gb: 20, bandwidth_mbps: 10 };
const free: Consumes = { vcpus: 14, ram_mb: 63488, disk_gb: 980, bandwidth_mbps: 990 };

/** A unit of `kind` as the orc's claim leaves it (SCHEDULED at unit version 1), and its task. */
function claimed(kind: WorkKind) {
  const unit = must(unitOn(acceptedUnit({ id: WU, kind, server_id: VM, shard: 5, at: 1 }), { type: 'claimed', compute: C, at: 2 }));
  const task: TaskRecord = {
    work_unit_id: WU,
    kind,
    server_id: VM,
    shard: 5,
    consumes: kind === 'build' ? need : { vcpus: 0, ram_mb: 0, disk_gb: 0, bandwidth_mbps: 0 },
    name: 'web',
    attempt: 1,
    birthed_on: 2,
    unit: { record: unit, version: 1 },
  };
  return { unit, task };
}
const steps = (kind: WorkKind, n: number): StepDone[] =>
  KINDS[kind].slice(0, n).map((name: StepName, i) => ({ name, time_to_completion_ms: 3 + i, completed_at: 10 + i }));
const count = (ops: readonly Op[], type: Op['type'], under = ''): number => ops.filter((o) => o.type === type && o.path.startsWith(under)).length;

/** Runs a build through the builders as the compute does, each commit's unit feeding the next. */
function buildCommits(paths: Paths, server: { value: ServerRecord; version: number }) {
  const { unit, task } = claimed('build');
  let at: UnitOnCompute = { compute: C, task, intaken: false, durable: [], unit: { value: unit, version: 1 } };
  const commits: Op[][] = [];
  for (let n = 1; n < KINDS.build.length; n++) {
    const c = stepCommit(paths, at, steps('build', n), 100 + n);
    commits.push(c.ops);
    at = { ...at, intaken: true, durable: steps('build', n), unit: { value: c.unit, version: at.unit.version + 1 } };
  }
  const fin = finishCommit(paths, at, steps('build', 4), 200, { server, managed: undefined, free: null });
  commits.push(fin.ops);
  return { commits, fin, task };
}

describe('a boot, transaction by transaction (pure)', () => {
  const paths = new Paths('/q');
  const server = { value: acceptedServer({ id: VM, name: 'web', flavor: need, labels: [], zone: null, at: 1, unit: WU }), version: 0 };
  const { commits, fin, task } = buildCommits(paths, server);
  const activeDir = paths.activeTask(C, WU);

  it('costs the compute 4 transactions of 23, 4, 4 and 29 ops', () => {
    expect(commits.map((c) => c.length)).toEqual([23, 4, 4, 29]);
  });

  it('the first step moves the task: 7 removes of next_tasks/, 15 creates of active_tasks/, the unit RUNNING at the claim’s version', () => {
    const [first] = commits;
    expect(count(first!, 'remove', paths.nextTask(C, WU))).toBe(7);
    expect(count(first!, 'create', activeDir)).toBe(15);
    // Children go before their parent, and come after it.
    const removed = first!.filter((o) => o.type === 'remove').map((o) => o.path);
    expect(removed.at(-1)).toBe(paths.nextTask(C, WU));
    expect(first!.find((o) => o.type === 'create')?.path).toBe(activeDir);
    expect(first!.at(-1)).toMatchObject({ type: 'set', path: paths.workUnit(WU), version: 1, value: { state: 'RUNNING', steps_left: ['allocate_storage', 'define', 'start'] } });
    // The claim's copy of the unit stays out of active_tasks.
    expect(first!.find((o) => o.path === activeDir)).toMatchObject({ type: 'create', value: { work_unit_id: WU } });
    expect((first!.find((o) => o.path === activeDir) as { value: TaskRecord }).value.unit).toBeUndefined();
  });

  it('a later step: steps_left/<s> goes, steps_completed/<s>/time_to_completion comes, the unit at the version its last commit left', () => {
    expect(commits[1]).toEqual([
      { type: 'remove', path: `${activeDir}/steps_left/allocate_storage`, version: -1 },
      { type: 'create', path: `${activeDir}/steps_completed/allocate_storage` },
      { type: 'create', path: `${activeDir}/steps_completed/allocate_storage/time_to_completion`, value: 4 },
      expect.objectContaining({ type: 'set', path: paths.workUnit(WU), version: 2 }),
    ]);
    expect(commits[2]!.at(-1)).toMatchObject({ version: 3 });
  });

  it('the finish removes every active_tasks znode, creates managing/, sets server and unit, removes the inbox entry', () => {
    const ops = commits[3]!;
    // Every znode the first three commits left under active_tasks/<wu> is removed, children first.
    const present = new Set<string>();
    for (const c of commits.slice(0, 3)) {
      for (const o of c) {
        if (!o.path.startsWith(activeDir)) continue;
        if (o.type === 'create') present.add(o.path);
        if (o.type === 'remove') present.delete(o.path);
      }
    }
    const removed = ops.filter((o) => o.type === 'remove' && o.path.startsWith(activeDir)).map((o) => o.path);
    expect([...removed].sort()).toEqual([...present].sort());
    expect(removed).toHaveLength(17);
    // Children first: a directory is removed after everything under it.
    removed.forEach((p, i) => expect(removed.slice(0, i).some((q) => p.startsWith(`${q}/`)), p).toBe(false));
    const managedDir = paths.managed(C, VM);
    expect(count(ops, 'create', managedDir)).toBe(managedEntries(fin.managed!).length);
    expect(count(ops, 'create', managedDir)).toBe(9);
    expect(ops.find((o) => o.path === `${managedDir}/status`)).toMatchObject({ type: 'create', value: 'ACTIVE' });
    expect(ops.find((o) => o.path === paths.server(VM))).toMatchObject({ type: 'set', version: 0, value: { status: 'ACTIVE', compute_id: C, task: null } });
    expect(ops.find((o) => o.path === paths.workUnit(WU))).toMatchObject({ type: 'set', version: 4, value: { state: 'SUCCEEDED', steps_left: [], finished_at: 200 } });
    expect(ops.at(-1)).toEqual({ type: 'remove', path: paths.inboxEntry(5, WU), version: -1 });
    expect(fin.managed).toMatchObject({ server_id: VM, status: 'ACTIVE', consumes: need, kind: 'vm', name: task.name });
  });
});

describe('actions, deletes, failures and drops (pure)', () => {
  const paths = new Paths('/q');
  const managed: ManagedRecord = { server_id: VM, name: 'web', kind: 'vm', birthed_on: 1, consumes: need, status: 'ACTIVE' };
  const serverAt = (over: Partial<ServerRecord>) => ({ value: { ...acceptedServer({ id: VM, name: 'web', flavor: need, labels: [], zone: null, at: 1, unit: WU }), compute_id: C, ...over }, version: 7 });

  it('a one-step action is one transaction: intake and finish together; managing/ is updated in place', () => {
    const { unit, task } = claimed('stop');
    const u: UnitOnCompute = { compute: C, task, intaken: false, durable: [], unit: { value: unit, version: 1 } };
    const fin = finishCommit(paths, u, steps('stop', 1), 50, { server: serverAt({ status: 'ACTIVE' }), managed, free: null });
    expect(count(fin.ops, 'remove', paths.nextTask(C, WU))).toBe(7);
    expect(count(fin.ops, 'create')).toBe(0);
    expect(fin.ops.filter((o) => o.path.startsWith(paths.managed(C, VM)))).toEqual([
      { type: 'set', path: paths.managed(C, VM), value: { ...managed, status: 'STOPPED' }, version: -1 },
      { type: 'set', path: `${paths.managed(C, VM)}/status`, value: 'STOPPED', version: -1 },
    ]);
    expect(fin.ops.find((o) => o.path === paths.server(VM))).toMatchObject({ version: 7, value: { status: 'STOPPED', task: null } });
    expect(fin.ops).toHaveLength(7 + 2 + 3);
  });

  it('a delete’s finish removes managing/, gives its capacity back at the read version, removes the server', () => {
    const { unit, task } = claimed('delete');
    const u: UnitOnCompute = { compute: C, task, intaken: true, durable: steps('delete', 2), unit: { value: unit, version: 3 } };
    const fin = finishCommit(paths, u, steps('delete', 3), 60, { server: serverAt({ status: 'DELETING' }), managed, free: { value: free, version: 42 } });
    expect(count(fin.ops, 'remove', paths.managed(C, VM))).toBe(9);
    expect(fin.ops.find((o) => o.path === paths.selfFree(C))).toEqual({
      type: 'set',
      path: paths.selfFree(C),
      value: { vcpus: 16, ram_mb: 65536, disk_gb: 1000, bandwidth_mbps: 1000 },
      version: 42,
    });
    expect(fin.ops.find((o) => o.path === paths.server(VM))).toEqual({ type: 'remove', path: paths.server(VM), version: -1 });
    expect(fin.managed).toBeNull();
    expect(() => finishCommit(paths, u, steps('delete', 3), 60, { server: null, managed, free: null })).toThrow(/self\/free/);
  });

  it('a failed build removes what is there, gives capacity back, shows ERROR without compute, FAILS the unit', () => {
    const { unit, task } = claimed('build');
    const running = must(unitOn(unit, { type: 'steps_committed', completed: steps('build', 1), at: 3 }));
    const u: UnitOnCompute = { compute: C, task, intaken: true, durable: steps('build', 1), unit: { value: running, version: 2 } };
    const base = paths.activeTask(C, WU);
    const walked = [base, `${base}/kind`, `${base}/steps_left`, `${base}/steps_left/define`];
    const error = stepFailure({ step: 'define', code: 'NO_CAPACITY', message: 'too big' });
    const c = failureCommit(paths, u, steps('build', 2), error, 70, { active: walked, next: [], server: serverAt({ compute_id: null }), free: { value: free, version: 9 } });
    expect(c.ops.slice(0, 4).map((o) => [o.type, o.path])).toEqual([...walked].reverse().map((p) => ['remove', p]));
    expect(c.ops.find((o) => o.path === paths.selfFree(C))).toMatchObject({ version: 9, value: { vcpus: 16 } });
    expect(c.ops.find((o) => o.path === paths.server(VM))).toMatchObject({ version: 7, value: { status: 'ERROR', compute_id: null, task: null, last_error: error } });
    expect(c.unit).toMatchObject({ state: 'FAILED', error: { code: 'NO_CAPACITY', message: 'step define failed: too big' }, steps_left: ['define', 'start'] });
    expect(c.ops.find((o) => o.path === paths.workUnit(WU))).toMatchObject({ version: 2 });
    expect(c.ops.at(-1)).toMatchObject({ type: 'remove', path: paths.inboxEntry(5, WU) });
  });

  it('a failed action leaves the VM as the compute records it, and the server alone if another unit holds it', () => {
    const { unit, task } = claimed('reboot');
    const u: UnitOnCompute = { compute: C, task, intaken: false, durable: [], unit: { value: unit, version: 1 } };
    const error = stepFailure({ step: 'reboot', code: 'VM_NOT_RUNNING', message: 'domain is shutoff' });
    const mine = failureCommit(paths, u, [], error, 80, { active: [], next: [paths.nextTask(C, WU)], server: serverAt({ status: 'ACTIVE' }), free: null, managedStatus: 'STOPPED' });
    expect(mine.ops.find((o) => o.path === paths.server(VM))).toMatchObject({ value: { status: 'STOPPED', compute_id: C, task: null } });
    expect(count(mine.ops, 'set', paths.selfFree(C))).toBe(0);
    const theirs = failureCommit(paths, u, [], error, 80, { active: [], next: [], server: serverAt({ task: 'wu-9' as WorkUnitId }), free: null });
    expect(theirs.ops.find((o) => o.path === paths.server(VM))).toBeUndefined();
  });

  it('dropping a task gives back only what a build’s claim took', () => {
    const { task } = claimed('build');
    const ops = dropCommit(paths, C, task, nextTaskRemovals(paths, C, task), { value: free, version: 3 });
    expect(ops).toHaveLength(8);
    expect(ops.at(-1)).toMatchObject({ type: 'set', path: paths.selfFree(C), version: 3, value: { vcpus: 16 } });
    const stop = claimed('stop').task;
    expect(dropCommit(paths, C, stop, nextTaskRemovals(paths, C, stop), { value: free, version: 3 })).toHaveLength(7);
  });
});

describe('a boot committed to ZooKeeper', () => {
  const paths = new Paths(uniqueRoot('commits'));
  let zk: Zk;
  useZkRoot(paths.root, (z) => (zk = z));

  it('each builder’s transaction applies on the tree the one before left; the end state is the seed’s', async () => {
    for (const dir of [paths.nextTasks(C), paths.activeTasks(C), paths.managing(C), paths.workUnits, paths.servers, paths.inbox(5)]) await zk.mkdirp(dir);
    // What the api and the orc's claim leave: the unit (then SCHEDULED), the server, the inbox entry, the task.
    const server = acceptedServer({ id: VM, name: 'web', flavor: need, labels: [], zone: null, at: 1, unit: WU });
    const { unit, task } = claimed('build');
    await zk.create(paths.workUnit(WU), acceptedUnit({ id: WU, kind: 'build', server_id: VM, shard: 5, at: 1 }));
    await zk.set(paths.workUnit(WU), unit, 0);
    await zk.create(paths.server(VM), server);
    await zk.create(paths.inboxEntry(5, WU));
    await applyOps(zk.txn(), nextTaskRemovals(paths, C, task).reverse().map((o) => ({ type: 'create' as const, path: o.path }))).commit();

    const { commits } = buildCommits(paths, { value: server, version: 0 });
    for (const ops of commits) await applyOps(zk.txn(), ops).commit();

    expect(await zk.exists(paths.nextTask(C, WU))).toBeNull();
    expect(await zk.exists(paths.activeTask(C, WU))).toBeNull();
    expect(await zk.exists(paths.inboxEntry(5, WU))).toBeNull();
    expect((await zk.walk(paths.managed(C, VM))).length).toBe(9);
    expect((await zk.get<string>(`${paths.managed(C, VM)}/status`))?.value).toBe('ACTIVE');
    const wu = await zk.get<WorkUnitRecord>(paths.workUnit(WU));
    expect(wu?.stat.version).toBe(5);
    expect(wu?.value).toMatchObject({ state: 'SUCCEEDED', steps_left: [], compute_id: C });
    expect((await zk.get<ServerRecord>(paths.server(VM)))?.value).toMatchObject({ status: 'ACTIVE', compute_id: C, task: null });
  });

  it('a commit built on a unit version that moved fails whole, on the unit', async () => {
    const wu2 = 'wu-2' as WorkUnitId;
    const { unit, task: t } = claimed('build');
    const task = { ...t, work_unit_id: wu2 };
    const mine = { ...unit, id: wu2 };
    await zk.create(paths.workUnit(wu2), mine);
    await zk.set(paths.workUnit(wu2), { ...mine, updated_at: 99 }, 0); // another writer moved it
    await applyOps(zk.txn(), nextTaskRemovals(paths, C, task).reverse().map((o) => ({ type: 'create' as const, path: o.path }))).commit();
    const u: UnitOnCompute = { compute: C, task, intaken: false, durable: [], unit: { value: mine, version: 0 } };
    const err = await applyOps(zk.txn(), stepCommit(paths, u, steps('build', 1), 5).ops).commit().catch((e: unknown) => e);
    expect(isZkError(err, 'BAD_VERSION')).toBe(true);
    expect((err as { path?: string }).path).toBe(paths.workUnit(wu2));
    // Nothing of it applied: the task is still in next_tasks, active_tasks has none.
    expect(await zk.exists(paths.nextTask(C, wu2))).not.toBeNull();
    expect(await zk.exists(paths.activeTask(C, wu2))).toBeNull();
  });
});
