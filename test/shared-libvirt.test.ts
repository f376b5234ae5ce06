// Two computes on one libvirt (issue 10): each domain carries its compute's id in its metadata,
// and a compute's reconcile at start removes only unmanaged domains carrying its own id. Before,
// it removed every quark-* domain it did not manage: a second compute on the same URI wiped the
// first one's VMs. Real ZooKeeper, real libvirt test driver (shared by everything in this process).
import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Compute } from '../ts/compute/compute.js';
import { domainName } from '../ts/compute/steps.js';
import { Hypervisor } from '../ts/native/libvirt.js';
import { Zk } from '../ts/zk/client.js';
import { Paths } from '../ts/zk/paths.js';
import { readConfig } from '../ts/zk/config.js';
import { createLogger } from '../ts/common/log.js';
import { asComputeId, type ServerId } from '../ts/common/ids.js';
import { uniqueRoot, zkConnect } from './support/index.js';

const paths = new Paths(uniqueRoot('shared-libvirt'));
const capacity = { vcpus: 8, ram_mb: 8192, disk_gb: 100, bandwidth_mbps: 1000, zone: 'default', labels: [], libvirt_uri: 'test:///default' };
let zk: Zk;
let hv: Hypervisor;
const made: string[] = [];

beforeAll(async () => {
  zk = await Zk.connect(zkConnect());
  await readConfig(zk, paths, { shards: 4 });
  hv = await Hypervisor.open('test:///default');
});
afterAll(async () => {
  for (const name of made) {
    const d = await hv.info(name).catch(() => null);
    if (d && d.state !== 'shutoff') await hv.destroy(name);
    if (d) await hv.undefine(name);
  }
  await hv.close();
  await zk.removeTree(paths.root);
  await zk.close();
});

async function domain(owner?: string): Promise<string> {
  const vm = randomUUID();
  const name = domainName(vm as ServerId);
  made.push(name);
  await hv.define({ name, uuid: vm, vcpus: 1, ram_mb: 128, disk_gb: 1, ...(owner ? { owner } : {}) });
  await hv.start(name);
  return name;
}

describe('reconcile on a shared libvirt', () => {
  it("removes only the unmanaged domains carrying its own id; another compute's and unowned ones stay", async () => {
    const mine = await domain('shared-b');
    const theirs = await domain('shared-a');
    const unowned = await domain();
    const log = createLogger({ test: 'shared-libvirt' }, 'error');
    const b = new Compute({ id: asComputeId('shared-b'), zk, paths, hv, capacity: { ...capacity, libvirt_uri: hv.uri }, log });
    await b.start();
    try {
      const names = new Set((await hv.list()).map((d) => d.name));
      expect(names.has(mine)).toBe(false);
      expect(names.has(theirs)).toBe(true);
      expect(names.has(unowned)).toBe(true);
      expect((await hv.info(theirs)).state).toBe('running');
    } finally {
      await b.stop();
    }
  });
});
