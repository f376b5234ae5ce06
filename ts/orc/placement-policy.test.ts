// The placement policy as configuration, against the real ZooKeeper: every orc follows a change
// of /quark/config at once (no restart), a zone's override applies to requests naming the zone,
// and a policy that does not parse (written around the CLI) changes nothing.
import { describe, expect, it } from 'vitest';
import { Zk } from '../zk/client.js';
import { Paths } from '../zk/paths.js';
import { readConfig, updateConfig } from '../zk/config.js';
import { createLogger } from '../common/log.js';
import type { ClusterConfig, ComputeCapacity, Consumes } from '../common/model.js';
import type { ComputeId } from '../common/ids.js';
import { withPlacementPolicy } from '../common/placement-policy.js';
import { Orc } from './orc.js';
import { ClusterWatch } from './cluster.js';
import { NativeClusterView } from './placement/native.js';
import { TwinClusterView } from './placement/twin.js';
import type { ClusterView, PlacementRequest } from './placement/types.js';
import { uniqueRoot, useZkSession, waitFor, zkConnect } from '../../test/support/index.js';

const FULL: Consumes = { vcpus: 64, ram_mb: 262_144, disk_gb: 2000, bandwidth_mbps: 10_000 };
const HALF: Consumes = { vcpus: 32, ram_mb: 131_072, disk_gb: 1000, bandwidth_mbps: 5000 };
const need: Consumes = { vcpus: 1, ram_mb: 1024, disk_gb: 10, bandwidth_mbps: 10 };
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** The file's admin session; what a test registers with `cleanup` goes after the file. */
const session = useZkSession();

/** A cluster of two alive computes in zone z1, one empty and one half used. */
async function world(): Promise<Paths> {
  const paths = new Paths(uniqueRoot('policy'));
  await readConfig(session.zk, paths, { shards: 2, overcommit: { vcpus: 1, ram_mb: 1, disk_gb: 1, bandwidth_mbps: 1 } });
  for (const [id, free] of [['empty', FULL], ['half', HALF]] as const) {
    const c = id as ComputeId;
    const cap: ComputeCapacity = { ...FULL, zone: 'z1', labels: [], libvirt_uri: 'test:///default' };
    await session.zk.mkdirp(paths.self(c));
    await session.zk.create(paths.selfCapacity(c), cap);
    await session.zk.create(paths.selfFree(c), free);
    await session.zk.create(paths.alive(c), { pid: 0, host: 'test', started_at: 0 }, 'ephemeral');
  }
  session.cleanup(() => session.zk.removeTree(paths.root));
  return paths;
}

const pickOf = (v: ClusterView, r: PlacementRequest): string | undefined => {
  const p = v.place(r);
  return p.ok ? p.computeId : undefined;
};
const plain: PlacementRequest = { id: 'wu-1', need };
const inZ1: PlacementRequest = { id: 'wu-2', need, zone: 'z1' };

describe('placement policy from /quark/config', () => {
  it('two orcs (native and twin views) follow a change of the cluster policy and of a zone override at once', async () => {
    const paths = await world();
    const views: ClusterView[] = [new NativeClusterView(), new TwinClusterView()];
    const log = createLogger({ test: 'policy' }, 'error');
    for (const [i, view] of views.entries()) {
      const zk = await Zk.connect(zkConnect());
      const orc = new Orc({ zk, paths, log, view, id: `orc-${i}` });
      session.cleanup(async () => {
        await orc.stop();
        await zk.close();
      });
      await orc.start();
    }
    for (const v of views) {
      expect(v.policy).toEqual({ policy: 'spread', byZone: {} });
      expect(pickOf(v, plain)).toBe('empty');
    }

    await updateConfig(session.zk, paths, (c) => withPlacementPolicy(c, 'pack'));
    await waitFor(() => views.every((v) => v.policy.policy === 'pack'), { what: 'both orcs to follow pack' });
    for (const v of views) expect([pickOf(v, plain), pickOf(v, inZ1)]).toEqual(['half', 'half']);

    await updateConfig(session.zk, paths, (c) => withPlacementPolicy(c, 'spread', 'z1'));
    await waitFor(() => views.every((v) => v.policy.byZone.z1 === 'spread'), { what: 'both orcs to follow the z1 override' });
    // The override is for requests naming z1; a request naming no zone follows the cluster's pack.
    for (const v of views) expect([pickOf(v, plain), pickOf(v, inZ1)]).toEqual(['half', 'empty']);

    await updateConfig(session.zk, paths, (c) => withPlacementPolicy(c, 'inherit', 'z1'));
    await waitFor(() => views.every((v) => !('z1' in v.policy.byZone)), { what: 'both orcs to drop the override' });
    for (const v of views) expect(pickOf(v, inZ1)).toBe('half');
  });

  it('a policy that does not parse changes nothing and is logged; the next valid one applies', async () => {
    const paths = await world();
    const lines: string[] = [];
    const log = createLogger({ test: 'policy' }, 'warn', (l) => lines.push(l));
    const zk = await Zk.connect(zkConnect());
    const view = new TwinClusterView();
    const w = new ClusterWatch(zk, paths, view, log);
    const seen: unknown[] = [];
    w.on('policy', (s) => seen.push(s));
    session.cleanup(async () => {
      w.stop();
      await zk.close();
    });
    w.start();
    await w.ready;
    await updateConfig(session.zk, paths, (c) => withPlacementPolicy(c, 'pack'));
    await waitFor(() => view.policy.policy === 'pack', { what: 'pack' });

    const cur = (await session.zk.get<ClusterConfig>(paths.config))!;
    await session.zk.set(paths.config, { ...cur.value, placement_policy: 'binpack' }, cur.stat.version);
    await waitFor(() => lines.some((l) => l.includes('placement policy ignored') && l.includes('binpack')), { what: 'the bad policy to be logged' });
    expect(view.policy).toEqual({ policy: 'pack', byZone: {} });
    await expect(updateConfig(session.zk, paths, (c) => withPlacementPolicy(c, 'dense', 'z1'))).rejects.toThrow(/must be one of spread, pack/);

    await updateConfig(session.zk, paths, (c) => withPlacementPolicy(c, 'spread'));
    await waitFor(() => view.policy.policy === 'spread', { what: 'spread' });
    await sleep(100);
    expect(seen).toEqual([
      { policy: 'pack', byZone: {} },
      { policy: 'spread', byZone: {} },
    ]);
  });
});
