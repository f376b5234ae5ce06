// Real libvirt through the native addon, on the built-in test driver: no mocks.
// All connections to test:///default in one process share its state, so every domain here
// has a name unique to this run; the driver's own predefined domain "test" is ignored.
import { randomUUID } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { createServer, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Hypervisor, LibvirtError, toLibvirtError, type DomainSpec, type GuestSpec } from './libvirt.js';

const run = `ts-${process.pid}-${Date.now().toString(36)}`;
const spec = (suffix: string, extra: Partial<DomainSpec> = {}): DomainSpec => ({
  name: `${run}-${suffix}`,
  vcpus: 2,
  ram_mb: 256,
  disk_gb: 10,
  ...extra,
});

async function rejection(p: Promise<unknown>): Promise<LibvirtError> {
  try {
    await p;
  } catch (err) {
    expect(err).toBeInstanceOf(LibvirtError);
    return err as LibvirtError;
  }
  throw new Error('expected the call to reject');
}

describe('Hypervisor on test:///default', () => {
  let hv: Hypervisor;

  beforeAll(async () => {
    hv = await Hypervisor.open();
  });

  afterAll(async () => {
    for (const d of await hv.list()) {
      if (!d.name.startsWith(run)) continue;
      if (d.state !== 'shutoff') await hv.destroy(d.name);
      await hv.undefine(d.name);
    }
    await hv.close();
  });

  it('opens the default URI', () => {
    expect(hv.uri).toBe('test:///default');
  });

  it('defines, starts, reboots, shuts down, destroys and undefines a domain', async () => {
    const uuid = randomUUID();
    const s = spec('life', { uuid });
    const defined = await hv.define(s);
    expect(defined).toEqual({
      name: s.name,
      uuid,
      state: 'shutoff',
      vcpus: 2,
      memory_kib: 256 * 1024,
      persistent: true,
    });

    await hv.start(s.name);
    expect((await hv.info(s.name)).state).toBe('running');
    await hv.reboot(s.name);
    expect((await hv.info(s.name)).state).toBe('running');
    await hv.shutdown(s.name);
    expect((await hv.info(s.name)).state).toBe('shutoff');

    await hv.start(s.name);
    await hv.destroy(s.name);
    expect((await hv.info(s.name)).state).toBe('shutoff');

    await hv.undefine(s.name);
    expect((await rejection(hv.info(s.name))).code).toBe('NO_DOMAIN');
  });

  it('gives NO_DOMAIN, with libvirt\'s number, for a domain that does not exist', async () => {
    const err = await rejection(hv.info(`${run}-missing`));
    expect(err.code).toBe('NO_DOMAIN');
    expect(err.libvirtCode).toBe(42); // VIR_ERR_NO_DOMAIN
    expect(err.message).toBe(`NO_DOMAIN: no domain named '${run}-missing'`);
    // The addon's own error already carries the code, before the TypeScript conversion.
    expect((err.cause as { code?: string }).code).toBe('NO_DOMAIN');
    for (const call of [hv.start, hv.shutdown, hv.destroy, hv.reboot, hv.undefine]) {
      expect((await rejection(call.call(hv, `${run}-missing`))).code).toBe('NO_DOMAIN');
    }
  });

  it('refuses to start a running domain with OPERATION_INVALID', async () => {
    const s = spec('twice');
    await hv.define(s);
    await hv.start(s.name);
    const err = await rejection(hv.start(s.name));
    expect(err.code).toBe('OPERATION_INVALID');
    expect(typeof err.libvirtCode).toBe('number');
    await hv.destroy(s.name);
    expect((await rejection(hv.destroy(s.name))).code).toBe('OPERATION_INVALID');
    expect((await rejection(hv.shutdown(s.name))).code).toBe('OPERATION_INVALID');
    await hv.undefine(s.name);
  });

  it('lists defined domains, active and inactive', async () => {
    const on = spec('list-on');
    const off = spec('list-off');
    await hv.define(on);
    await hv.define(off);
    await hv.start(on.name);
    const byName = new Map((await hv.list()).map((d) => [d.name, d]));
    expect(byName.get(on.name)?.state).toBe('running');
    expect(byName.get(off.name)?.state).toBe('shutoff');
    expect(byName.get(off.name)?.persistent).toBe(true);
  });

  it('redefines the same name and uuid, and refuses a clash with DOMAIN_EXISTS', async () => {
    const uuid = randomUUID();
    const s = spec('again', { uuid });
    await hv.define(s);
    expect((await hv.define({ ...s, vcpus: 4 })).vcpus).toBe(4);
    expect((await rejection(hv.define({ ...s, uuid: randomUUID() }))).code).toBe('DOMAIN_EXISTS');
    expect((await rejection(hv.define({ ...s, name: `${run}-again-2` }))).code).toBe('DOMAIN_EXISTS');
  });

  it('keeps odd names intact (the XML is escaped)', async () => {
    const s = spec(`<odd> & 'quoted' "name"`);
    expect((await hv.define(s)).name).toBe(s.name);
    expect((await hv.info(s.name)).name).toBe(s.name);
  });

  it('rejects a malformed spec with INVALID_ARG', async () => {
    const bad: DomainSpec[] = [
      spec('zero-cpu', { vcpus: 0 }),
      spec('frac-ram', { ram_mb: 1.5 }),
      spec('neg-disk', { disk_gb: -1 }),
      spec('bad-uuid', { uuid: 'nope' }),
      { ...spec('x'), name: '' },
      { ...spec('x'), vcpus: 'two' as unknown as number },
    ];
    for (const s of bad) {
      const err = await rejection(hv.define(s));
      expect(err.code, JSON.stringify(s)).toBe('INVALID_ARG');
    }
  });

  it('runs many calls at once on one connection', async () => {
    const names = Array.from({ length: 16 }, (_, i) => `${run}-many-${i}`);
    await Promise.all(names.map((name) => hv.define({ ...spec('x'), name })));
    await Promise.all(names.map((name) => hv.start(name)));
    const infos = await Promise.all(names.map((name) => hv.info(name)));
    expect(infos.every((d) => d.state === 'running')).toBe(true);
  });

  it('reports the test driver as its kind, and the host it simulates', async () => {
    expect(hv.kind).toBe('test');
    expect(hv.runsGuests).toBe(false);
    const host = await hv.hostInfo();
    expect(host.cpus).toBeGreaterThan(0);
    expect(host.memory_kib).toBeGreaterThan(0);
  });

  it('keeps the owner in the domain metadata and reads it back in info and list', async () => {
    const s = spec('owned', { owner: 'compute-7' });
    await hv.define(s);
    await hv.define(spec('unowned'));
    expect((await hv.info(s.name)).owner).toBe('compute-7');
    expect((await hv.info(`${run}-unowned`)).owner).toBeUndefined();
    expect((await hv.list()).find((d) => d.name === s.name)?.owner).toBe('compute-7');
  });

  it('accepts a guest spec (the test driver runs no guest) and rejects a malformed one', async () => {
    const guest: GuestSpec = {
      accel: 'tcg',
      cpu: 'default',
      disk_path: '/pool/x.qcow2',
      disk_format: 'qcow2',
      console_log: '/console/x.log',
      nic: { kind: 'user', isolated: true, forwards: [{ host_port: 18080, guest_port: 80 }] },
      bandwidth_mbps: 0,
    };
    expect((await hv.define(spec('guest', { guest }))).state).toBe('shutoff');
    const bad = [
      { ...guest, accel: 'hvf' },
      { ...guest, cpu: 'max' },
      { ...guest, disk_path: 'relative.qcow2' },
      { ...guest, nic: { kind: 'user', isolated: true, forwards: [{ host_port: 70000, guest_port: 80 }] } },
      { ...guest, nic: { kind: 'bridge' } },
    ];
    for (const g of bad) {
      const err = await rejection(hv.define(spec('bad-guest', { guest: g as never })));
      expect(err.code, JSON.stringify(g)).toBe('INVALID_ARG');
    }
  });

  it('makes a pool and overlay volumes in it, each call idempotent', async () => {
    const pool = `${run}-pool`;
    await hv.ensurePool(pool, `/${pool}`);
    await hv.ensurePool(pool, `/${pool}`);
    const v = await hv.createOverlay(pool, 'vm.qcow2', 2 ** 30, `/${pool}/base.qcow2`, 'qcow2');
    expect(v).toMatchObject({ name: 'vm.qcow2', capacity_bytes: 2 ** 30 });
    expect((await hv.createOverlay(pool, 'vm.qcow2', 2 ** 30, `/${pool}/base.qcow2`, 'qcow2')).path).toBe(v.path);
    expect((await hv.listVolumes(pool)).map((x) => x.name)).toContain('vm.qcow2');
    expect(await hv.deleteVolume(pool, 'vm.qcow2')).toBe(true);
    expect(await hv.deleteVolume(pool, 'vm.qcow2')).toBe(false);
    expect((await rejection(hv.listVolumes(`${run}-no-pool`))).code).toBe('NO_POOL');
  });

  it('fails every call on a closed connection with CLOSED', async () => {
    const other = await Hypervisor.open('test:///default');
    await other.close();
    await other.close();
    expect((await rejection(other.list())).code).toBe('CLOSED');
    expect((await hv.list()).length).toBeGreaterThan(0);
  });
});

describe('Hypervisor.open', () => {
  it('gives CONNECT_FAILED for a URI libvirt cannot open', async () => {
    const err = await rejection(Hypervisor.open('nosuchdriver:///nowhere'));
    expect(err.code).toBe('CONNECT_FAILED');
    expect(typeof err.libvirtCode).toBe('number');
  });
});

describe('call bounds', () => {
  it('fails a call to a daemon that never answers with TIMEOUT', async () => {
    // A real fault: a socket that accepts libvirt's connection and then says nothing.
    const dir = await mkdtemp(join(tmpdir(), 'quark-mute-'));
    const path = join(dir, 'libvirt-sock');
    const held: Socket[] = [];
    const mute = createServer((sock) => void held.push(sock));
    await new Promise<void>((r) => mute.listen(path, r));
    try {
      const started = Date.now();
      const err = await rejection(Hypervisor.open(`qemu+unix:///system?socket=${path}`, { callTimeoutMs: 300 }));
      expect(err.code).toBe('TIMEOUT');
      expect(err.message).toMatch(/^TIMEOUT: opening qemu\+unix.* did not answer within 300 ms/);
      expect(Date.now() - started).toBeLessThan(5000);
    } finally {
      // The abandoned open sees the socket close and gives its thread back.
      for (const s of held) s.destroy();
      await new Promise((r) => mute.close(r));
      await rm(dir, { recursive: true, force: true });
    }
  });
});

describe('toLibvirtError', () => {
  it('keeps known codes and maps everything else to INTERNAL', () => {
    expect(toLibvirtError(Object.assign(new Error('x'), { code: 'NO_DOMAIN' })).code).toBe('NO_DOMAIN');
    expect(toLibvirtError(Object.assign(new Error('x'), { code: 'NumberExpected' })).code).toBe(
      'INVALID_ARG',
    );
    expect(toLibvirtError(new Error('boom')).code).toBe('INTERNAL');
    expect(toLibvirtError('boom').message).toBe('boom');
  });
});
