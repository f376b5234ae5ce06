// Property: orcs claiming concurrently (each its own ZooKeeper session and cluster view) never
// over-commit a compute, and self/free always equals capacity minus what was claimed.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { Zk } from '../zk/client.js';
import { Paths } from '../zk/paths.js';
import { createLogger } from '../common/log.js';
import { addConsumes, ZERO, type ComputeCapacity, type Consumes } from '../common/model.js';
import type { ComputeId } from '../common/ids.js';
import { ClusterWatch } from './cluster.js';
import { claimCapacity } from './claim.js';
import { TwinClusterView } from './placement/twin.js';
import { uniqueRoot, waitFor, zkConnect } from '../../test/support/index.js';

const log = createLogger({ test: 'claim' }, 'error');
let sessions: Zk[] = [];

beforeAll(async () => {
  sessions = await Promise.all(Array.from({ length: 4 }, () => Zk.connect(zkConnect())));
});
afterAll(async () => {
  await Promise.all(sessions.map((s) => s.close()));
});

async function publishCompute(zk: Zk, paths: Paths, id: ComputeId, vcpus: number, ram: number): Promise<void> {
  const cap: ComputeCapacity = { vcpus, ram_mb: ram, disk_gb: 100, bandwidth_mbps: 0, zone: 'z', labels: [], libvirt_uri: 'test:///default' };
  await zk.mkdirp(paths.self(id));
  await zk.mkdirp(paths.nextTasks(id));
  await zk.create(paths.selfCapacity(id), cap);
  await zk.create(paths.selfFree(id), { vcpus, ram_mb: ram, disk_gb: 100, bandwidth_mbps: 0 });
  await zk.create(paths.alive(id), { pid: 0, host: 'test', started_at: 0 }, 'ephemeral');
}

describe('concurrent claims', () => {
  it('property: never exceed any compute capacity; free = capacity − claims', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.array(fc.record({ vcpus: fc.integer({ min: 1, max: 8 }), ram: fc.integer({ min: 512, max: 8192 }) }), { minLength: 1, maxLength: 3 }),
        fc.array(fc.array(fc.record({ vcpus: fc.integer({ min: 1, max: 4 }), ram: fc.integer({ min: 128, max: 2048 }) }), { maxLength: 8 }), {
          minLength: 2,
          maxLength: 4,
        }),
        async (computes, perOrc) => {
          const paths = new Paths(uniqueRoot('claim'));
          const admin = sessions[0]!;
          await admin.mkdirp(paths.computes);
          const ids = computes.map((_, i) => `c${i}` as ComputeId);
          await Promise.all(computes.map((c, i) => publishCompute(admin, paths, ids[i]!, c.vcpus, c.ram)));
          const watches = perOrc.map((_, i) => {
            const w = new ClusterWatch(sessions[i % sessions.length]!, paths, new TwinClusterView(), log);
            w.start();
            return w;
          });
          await Promise.all(watches.map((w) => waitFor(() => w.computes.size === ids.length, { what: 'views to fill' })));
          let seq = 0;
          const refused: Consumes[] = [];
          let exhausted = 0;
          await Promise.all(
            perOrc.map(async (needs, o) => {
              const w = watches[o]!;
              const zk = sessions[o % sessions.length]!;
              for (const n of needs) {
                const need: Consumes = { vcpus: n.vcpus, ram_mb: n.ram, disk_gb: 0, bandwidth_mbps: 0 };
                const tag = `t${o}-${seq++}`;
                let settled = false;
                for (let attempt = 0; attempt < 50 && !settled; attempt++) {
                  const p = w.view.place({ id: tag, need });
                  if (!p.ok) {
                    refused.push(need);
                    settled = true;
                    break;
                  }
                  const target = p.computeId as ComputeId;
                  const out = await claimCapacity(zk, paths, w, target, need, (txn) => txn.create(paths.nextTask(target, tag as never), need));
                  settled = out === 'claimed';
                }
                if (!settled) exhausted++;
              }
            }),
          );
          for (const w of watches) w.stop();
          for (const [i, id] of ids.entries()) {
            const tasks = (await admin.children(paths.nextTasks(id))) ?? [];
            let used = ZERO;
            for (const t of tasks) used = addConsumes(used, (await admin.get<Consumes>(paths.nextTask(id, t as never)))!.value!);
            expect(used.vcpus).toBeLessThanOrEqual(computes[i]!.vcpus);
            expect(used.ram_mb).toBeLessThanOrEqual(computes[i]!.ram);
            const free = (await admin.get<Consumes>(paths.selfFree(id)))!.value!;
            expect(free).toEqual({ vcpus: computes[i]!.vcpus - used.vcpus, ram_mb: computes[i]!.ram - used.ram_mb, disk_gb: 100, bandwidth_mbps: 0 });
          }
          // Nothing is ever released here, so a refused request must still fit nowhere.
          expect(exhausted).toBe(0);
          for (const need of refused) {
            for (const id of ids) {
              const free = (await admin.get<Consumes>(paths.selfFree(id)))!.value!;
              expect(free.vcpus >= need.vcpus && free.ram_mb >= need.ram_mb).toBe(false);
            }
          }
          await admin.removeTree(paths.root);
        },
      ),
      { numRuns: 25 },
    );
  }, 120_000);
});
