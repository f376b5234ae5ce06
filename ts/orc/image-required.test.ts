// Builds without an image are not placed on computes that run real guests (capacity
// image_required), against the real ZooKeeper and an orc in this process. The computes are their
// ZooKeeper records only: the units stop at SCHEDULED, which is what placement decides.
// Invariant: a build naming no image is never claimed for an image_required compute, even when
// the policy would rank that compute first; with no other compute it fails NO_VALID_HOST saying
// why. A build that names an image may still go there.
import { randomUUID } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { Zk } from '../zk/client.js';
import { Paths } from '../zk/paths.js';
import { readConfig } from '../zk/config.js';
import { createLogger } from '../common/log.js';
import { shardOf, type BuildRequest, type ComputeCapacity, type Consumes, type WorkUnitRecord } from '../common/model.js';
import type { ComputeId, ServerId, WorkUnitId } from '../common/ids.js';
import { acceptedServer, acceptedUnit } from '../lifecycle/index.js';
import type { ImageRef } from '../images/model.js';
import { Orc } from './orc.js';
import { NativeClusterView } from './placement/native.js';
import { uniqueRoot, useZkSession, waitFor, zkConnect } from '../../test/support/index.js';

const FULL: Consumes = { vcpus: 64, ram_mb: 262_144, disk_gb: 2000, bandwidth_mbps: 10_000 };
const HALF: Consumes = { vcpus: 32, ram_mb: 131_072, disk_gb: 1000, bandwidth_mbps: 5000 };
const flavor = { vcpus: 1, ram_mb: 1024, disk_gb: 10 };
const image: ImageRef = { id: randomUUID(), name: 'tiny', format: 'qcow2', size_bytes: 1, sha256: '0'.repeat(64), url: 'http://127.0.0.1:9/x', fetch_key: 'k' };
const SHARDS = 2;

/** The file's admin session; what a test registers with `cleanup` goes after the file. */
const session = useZkSession();

/** Alive computes as records; `real` runs real guests and is the emptiest, so spread ranks it first. */
async function world(computes: Array<{ id: string; free: Consumes; imageRequired: boolean }>): Promise<Paths> {
  const paths = new Paths(uniqueRoot('image-required'));
  await readConfig(session.zk, paths, { shards: SHARDS, overcommit: { vcpus: 1, ram_mb: 1, disk_gb: 1, bandwidth_mbps: 1 } });
  for (const { id, free, imageRequired } of computes) {
    const c = id as ComputeId;
    const cap: ComputeCapacity = { ...FULL, zone: 'z1', labels: [], libvirt_uri: imageRequired ? 'qemu:///system' : 'test:///default', ...(imageRequired ? { image_required: true } : {}) };
    await session.zk.mkdirp(paths.self(c));
    await session.zk.mkdirp(paths.nextTasks(c));
    await session.zk.create(paths.selfCapacity(c), cap);
    await session.zk.create(paths.selfFree(c), free);
    await session.zk.create(paths.alive(c), { pid: 0, host: 'test', started_at: 0 }, 'ephemeral');
  }
  session.cleanup(() => session.zk.removeTree(paths.root));
  const zk = await Zk.connect(zkConnect());
  const orc = new Orc({ zk, paths, log: createLogger({ test: 'image-required' }, 'error'), view: new NativeClusterView(), id: 'orc-1' });
  session.cleanup(async () => {
    await orc.stop();
    await zk.close();
  });
  await orc.start();
  await waitFor(() => orc.shards.length === SHARDS, { what: 'the orc to own every shard' });
  return paths;
}

/** A build as the API accepts it: unit, server and inbox entry. */
async function build(paths: Paths, withImage: boolean): Promise<WorkUnitId> {
  const wuId = randomUUID() as WorkUnitId;
  const vm = randomUUID() as ServerId;
  const at = Date.now();
  const request: BuildRequest = { name: 'vm', flavor, bandwidth_mbps: 0, ...(withImage ? { image } : {}) };
  const unit = acceptedUnit({ id: wuId, kind: 'build', server_id: vm, shard: shardOf(wuId, SHARDS), at, request });
  const server = acceptedServer({ id: vm, name: 'vm', flavor, labels: [], zone: null, at, unit: wuId });
  await session.zk.txn().create(paths.workUnit(wuId), unit).create(paths.server(vm), server).create(paths.inboxEntry(unit.shard, wuId)).commit();
  return wuId;
}

const decided = (paths: Paths, wu: WorkUnitId) =>
  waitFor(
    async () => {
      const r = (await session.zk.get<WorkUnitRecord>(paths.workUnit(wu)))?.value;
      return r && r.state !== 'PENDING' ? r : undefined;
    },
    { what: `unit ${wu} placed or failed`, timeoutMs: 10_000 },
  );

describe('builds without an image and computes that run real guests', () => {
  it('places a build without an image only where the test driver runs, one with an image also on a real-guest compute', async () => {
    const paths = await world([
      { id: 'real', free: FULL, imageRequired: true },
      { id: 'plain', free: HALF, imageRequired: false },
    ]);
    for (let i = 0; i < 5; i++) {
      const wu = await decided(paths, await build(paths, false));
      expect(wu.state).toBe('SCHEDULED');
      expect(wu.compute_id).toBe('plain');
    }
    // The same policy sends a build with an image to the emptiest compute, the real-guest one.
    const withImage = await decided(paths, await build(paths, true));
    expect(withImage.state).toBe('SCHEDULED');
    expect(withImage.compute_id).toBe('real');
  });

  it('fails a build without an image NO_VALID_HOST, saying why, when only real-guest computes are up', async () => {
    const paths = await world([{ id: 'real', free: FULL, imageRequired: true }]);
    const wu = await decided(paths, await build(paths, false));
    expect(wu.state).toBe('FAILED');
    expect(wu.error?.code).toBe('NO_VALID_HOST');
    expect(wu.error?.message).toMatch(/names no image, and 1 compute\(s\) run real guests/);
    expect(wu.error?.rejected?.excluded).toBe(1);
    expect((await decided(paths, await build(paths, true))).compute_id).toBe('real');
  });
});
