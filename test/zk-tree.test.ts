// The operator's view: `quark zk tree` (the CLI, as a process) on a compute while a boot is
// half done shows the seed's directory: active_tasks/<wu>/ with kind, birthed_on, steps_left/,
// steps_completed/<step>/time_to_completion and consumes/, with decoded values.
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { http, startCluster, waitForUnit, type TestCluster, type WorkUnitView } from './cluster.js';
import { quarkBin, useProcessGroup, waitFor, zkConnect } from './support/index.js';
import type { ComputeId } from '../ts/common/ids.js';

const run = promisify(execFile);
const group = useProcessGroup();
let c: TestCluster;

beforeAll(async () => {
  // Each step waits 1.5 s: the CLI process must start and walk the tree before the boot ends, even
  // on a loaded machine (at 700 ms, two cores under load sometimes saw the unit leave mid-walk).
  c = await startCluster(group, { computes: 1, orcs: 1, computeArgs: ['--step-delay-ms', '1500'] });
}, 120_000);

afterAll(async () => {
  await c?.close();
});

async function zkTree(path: string): Promise<string> {
  // execFile's timeout kills the process if it hangs; it normally exits on its own.
  const { stdout } = await run(process.execPath, [quarkBin(), 'zk', 'tree', path, '--zk', zkConnect()], { timeout: 20_000 });
  return stdout;
}

describe('quark zk tree', () => {
  it('shows a half-done boot under active_tasks/ exactly as the seed lays it out', async () => {
    const r = await http<{ work_unit_id: string }>(`${c.api}/v1/servers`, {
      method: 'POST',
      body: { name: 'tree-vm', flavor: { vcpus: 1, ram_mb: 512, disk_gb: 5 } },
    });
    expect(r.status).toBe(202);
    const wu = r.body.work_unit_id;
    // Each step waits first: poll until one is done and others are left.
    await waitFor(
      async () => {
        const u = (await http<WorkUnitView>(`${c.api}/v1/work-units/${wu}`)).body;
        return u.steps_completed.length >= 1 && u.steps_left.length >= 1;
      },
      { what: 'the boot to be half done', timeoutMs: 20_000, intervalMs: 50 },
    );
    const out = await zkTree(c.paths.compute('compute-1' as ComputeId));
    const lines = out.split('\n');
    const indexOf = (re: RegExp) => lines.findIndex((l) => re.test(l));
    const unit = indexOf(new RegExp(`^\\s+${wu}/( = .*)?$`));
    expect(unit, out).toBeGreaterThan(indexOf(/^\s+active_tasks\/$/));
    const below = lines.slice(unit + 1).join('\n');
    expect(below).toMatch(/^\s+kind = "build"$/m);
    expect(below).toMatch(/^\s+birthed_on = \d+/m);
    expect(below).toMatch(/^\s+steps_left\/$/m);
    expect(below).toMatch(/^\s+steps_completed\/$/m);
    expect(below).toMatch(/^\s+allocate_vcpu\/$/m);
    expect(below).toMatch(/^\s+time_to_completion = \d+/m);
    expect(below).toMatch(/^\s+consumes\/$/m);
    for (const dir of ['self/', 'network/', 'max_bandwidth', 'capacity', 'free', 'next_tasks', 'managing']) expect(out).toContain(dir);

    expect((await waitForUnit(c.api, wu)).state).toBe('SUCCEEDED');
    const after = await zkTree(c.paths.compute('compute-1' as ComputeId));
    expect(after).not.toContain(`${wu}/`);
    expect(after).toMatch(/status = "ACTIVE"/);
  });

  it('a path that does not exist is an error that says so', async () => {
    await expect(zkTree(`${c.root}/no/such/node`)).rejects.toThrow(/does not exist/);
  });
});
