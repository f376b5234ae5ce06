// What a boot's accept costs in ZooKeeper now that it carries the project's quota: the API's store
// (quota read, usage counter, charge, Idempotency-Key) against one standalone ZooKeeper, boots
// committed one per transaction (--max-group 1) side by side with boots of one project grouped in
// one transaction (the default, 32), at several numbers in flight. A reference case writes only
// the three nodes an accept wrote before quotas (unit, server, inbox entry) in one transaction
// each. JSON lines on stdout, one per case.
//   npm run bench:admission -- --boots 2000 --inflight 1,16,128
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { Zk } from '../ts/zk/client.js';
import { Paths } from '../ts/zk/paths.js';
import { readConfig } from '../ts/zk/config.js';
import { startZooKeeper } from '../ts/dev/zookeeper.js';
import { ApiStore } from '../ts/api/store.js';
import { asProjectId } from '../ts/auth/policy.js';
import { newServerId, newWorkUnitId } from '../ts/common/ids.js';
import { pool } from './support.js';

const { values } = parseArgs({
  options: {
    boots: { type: 'string', default: '2000' },
    inflight: { type: 'string', default: '1,16,128' },
    projects: { type: 'string', default: '1' },
  },
});
const BOOTS = Number(values.boots);
const INFLIGHT = (values.inflight as string).split(',').map(Number);
const PROJECTS = Number(values.projects);
const flavor = { vcpus: 1, ram_mb: 256, disk_gb: 1 };

const dir = mkdtempSync(join(tmpdir(), 'quark-bench-admission-'));
const server = await startZooKeeper({ dataDir: join(dir, 'zk'), clientPort: 0 });
try {
  const zk = await Zk.connect(server.connectionString);
  for (const inflight of INFLIGHT) {
    for (const variant of ['before-quotas', 'max-group-1', 'max-group-32'] as const) {
      const paths = new Paths(`/bench-${variant}-${inflight}`);
      const config = await readConfig(zk, paths, { shards: 64 });
      const store = new ApiStore(zk, paths, config, undefined, { maxGroup: variant === 'max-group-1' ? 1 : 32 });
      const projects = Array.from({ length: PROJECTS }, (_, i) => asProjectId(`p${i}`));
      // Warm-up: directories, JIT.
      await pool(200, inflight, (i) => store.createServer({ name: `w${i}`, flavor }, projects[i % PROJECTS]!));
      const before = { ...zk.counters };
      const cpu0 = process.cpuUsage();
      const t0 = performance.now();
      if (variant === 'before-quotas') {
        // What an accept wrote before: unit, server, inbox entry, one transaction per boot.
        await pool(BOOTS, inflight, async (i) => {
          const wu = newWorkUnitId();
          const sid = newServerId();
          await zk.txn().create(paths.workUnit(wu), { id: wu, n: i }).create(paths.server(sid), { id: sid, name: `b${i}` }).create(paths.inboxEntry(i % 64, wu)).commit();
        });
      } else {
        await pool(BOOTS, inflight, (i) => store.createServer({ name: `b${i}`, flavor }, projects[i % PROJECTS]!));
      }
      const ms = performance.now() - t0;
      const cpu = process.cpuUsage(cpu0);
      const d = (k: keyof typeof zk.counters) => (zk.counters[k] - before[k]) / BOOTS;
      process.stdout.write(
        `${JSON.stringify({
          case: variant,
          inflight,
          projects: PROJECTS,
          boots: BOOTS,
          boots_per_s: Math.round((BOOTS / ms) * 1000),
          txns_per_boot: +d('txns').toFixed(3),
          writes_per_boot: +d('writes').toFixed(3),
          reads_per_boot: +d('reads').toFixed(3),
          api_cpu_us_per_boot: Math.round((cpu.user + cpu.system) / BOOTS),
        })}\n`,
      );
    }
  }
  await zk.close();
} finally {
  await server.stop();
  rmSync(dir, { recursive: true, force: true });
}
