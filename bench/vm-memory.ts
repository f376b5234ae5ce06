// Memory per idle VM, with 100,000 managed VMs. JSON lines on stdout, one per representation,
// each measured in a fresh child process (RSS and V8 heap after a full GC, minus the same
// process's baseline before the VMs exist), the last line the summary.
//   npm run bench:vm-memory -- --vms 100000
// Representations:
//   managed   what a compute holds for an idle VM: its ManagedRecord in `managed` (the VM actor at
//             rest: its status is the machine's state, restored with vmSnapshotAt on demand)
//   snapshot  the same plus a persisted XState snapshot of vmMachine per VM
//   actor     a live, started XState actor of vmMachine per VM (what we avoid holding)
import { spawnSync } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { createActor } from 'xstate';
import { vmMachine, vmSnapshotAt, nextStatus } from '../ts/actors/vm.js';
import type { ManagedRecord } from '../ts/common/model.js';
import type { ServerId } from '../ts/common/ids.js';

const { values: v } = parseArgs({ options: { vms: { type: 'string', default: '100000' }, case: { type: 'string' } } });
const N = Number(v.vms);
const KINDS = ['managed', 'snapshot', 'actor'] as const;

function gc(): void {
  const g = (globalThis as { gc?: () => void }).gc;
  if (!g) throw new Error('run with --expose-gc');
  for (let i = 0; i < 3; i++) g();
}

function measure(): { rss: number; heap: number } {
  gc();
  const m = process.memoryUsage();
  return { rss: m.rss, heap: m.heapUsed };
}

/** An idle VM as a compute records it after its build succeeded (compute.ts commitSuccess). */
function managedRecord(i: number): ManagedRecord {
  const status = nextStatus('BUILDING', { type: 'BUILT' });
  return {
    server_id: randomUUID() as ServerId,
    name: `vm-${i}`,
    kind: 'vm',
    birthed_on: Date.now(),
    consumes: { vcpus: 1, ram_mb: 512, disk_gb: 10, bandwidth_mbps: 0 },
    status,
  };
}

function child(kind: (typeof KINDS)[number]): void {
  // Warm the code paths first so their JIT and one-off allocations fall in the baseline.
  const warm = new Map<string, unknown>();
  for (let i = 0; i < 1000; i++) {
    const m = managedRecord(i);
    warm.set(m.server_id, m);
    createActor(vmMachine, { snapshot: vmSnapshotAt('ACTIVE'), input: {} }).start().stop();
    vmMachine.getPersistedSnapshot(vmSnapshotAt('ACTIVE'));
  }
  warm.clear();
  const before = measure();
  const managed = new Map<ServerId, ManagedRecord>();
  const extra: unknown[] = [];
  for (let i = 0; i < N; i++) {
    const m = managedRecord(i);
    managed.set(m.server_id, m);
    if (kind === 'snapshot') extra.push(vmMachine.getPersistedSnapshot(vmSnapshotAt(m.status)));
    if (kind === 'actor') extra.push(createActor(vmMachine, { snapshot: vmSnapshotAt(m.status), input: {} }).start());
  }
  const after = measure();
  process.stdout.write(
    JSON.stringify({
      case: kind,
      vms: N,
      bytes_per_vm_rss: Math.round((after.rss - before.rss) / N),
      bytes_per_vm_heap: Math.round((after.heap - before.heap) / N),
      rss_mb: Math.round(after.rss / 1e5) / 10,
      held: managed.size + extra.length,
    }) + '\n',
  );
}

if (v.case) {
  child(v.case as (typeof KINDS)[number]);
} else {
  const rows: Array<Record<string, number | string>> = [];
  for (const kind of KINDS) {
    const r = spawnSync(process.execPath, [...process.execArgv, fileURLToPath(import.meta.url), '--case', kind, '--vms', String(N)], {
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'inherit'],
      maxBuffer: 1 << 20,
    });
    if (r.status !== 0) throw new Error(`case ${kind} exited ${r.status}`);
    const row = JSON.parse(r.stdout.trim()) as Record<string, number | string>;
    rows.push(row);
    process.stdout.write(JSON.stringify(row) + '\n');
  }
  const idle = rows.find((r) => r.case === 'managed')!;
  process.stdout.write(
    JSON.stringify({
      vms: N,
      bytes_per_idle_vm: idle.bytes_per_vm_rss,
      target_bytes: 2048,
      met: Number(idle.bytes_per_vm_rss) <= 2048,
      representation: 'ManagedRecord in the compute’s map; the VM machine’s state is its status, restored on demand',
      live_actor_bytes_per_vm: rows.find((r) => r.case === 'actor')!.bytes_per_vm_rss,
    }) + '\n',
  );
}
