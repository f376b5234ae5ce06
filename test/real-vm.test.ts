// Real guests through libvirtd (qemu:///system): the api, an orc and two computes as processes,
// the tiny image uploaded through the API, guests booted, stopped, rebooted and deleted through
// it, with their serial consoles as the witness of what happened inside. Needs root and the
// packages scripts/ensure-qemu.sh installs; starts virtlogd/libvirtd if they are not running and
// stops, by pid, only what it started. Skipped, saying why, only where no guest can run.
// Traffic: only to 127.0.0.1 (the API, the computes' consoles, a port forwarded into a guest);
// the guests' network is isolated (QEMU's restrict=on), which the first guest checks itself.
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdtemp, readdir, readFile, rm, stat } from 'node:fs/promises';
import { createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Zk } from '../ts/zk/client.js';
import { Paths } from '../ts/zk/paths.js';
import { freePort } from '../ts/dev/zookeeper.js';
import { Hypervisor } from '../ts/native/libvirt.js';
import { QemuHost, qemuUnavailable, virsh } from '../ts/dev/qemu-host.js';
import { buildTinyImage, repoRoot, type TinyImage } from '../ts/dev/tiny-image.js';
import { NoAcceleratorError, probeWithCache, type ProbeResult } from '../ts/guest/probe.js';
import { countMarker, MARKERS } from '../ts/guest/console.js';
import { uniqueRoot, useProcessGroup, waitFor, zkConnect, type Child } from './support/index.js';
import { http, useAdminToken, waitForUnit, type WorkUnitView } from './cluster.js';
import { mintToken } from '../ts/auth/tokens.js';
import { AuthPaths } from '../ts/auth/layout.js';
import { asProjectId } from '../ts/auth/policy.js';

const unavailable = qemuUnavailable();
const SHUTDOWN_TIMEOUT_S = 25;

if (unavailable) {
  describe('real guests through libvirtd', () => {
    it.skip(`skipped: ${unavailable}`, () => {});
  });
}

describe.skipIf(unavailable !== null)('real guests through libvirtd (qemu:///system)', () => {
  const group = useProcessGroup({ graceMs: 10_000 });
  const run = randomBytes(3).toString('hex');
  const fastId = `rv-${run}-a`;
  const slowId = `rv-${run}-b`;
  const root = uniqueRoot('real-vm');
  const paths = new Paths(root);
  let host: QemuHost;
  let hv: Hypervisor;
  let zk: Zk;
  let image: TinyImage;
  let probe: ProbeResult | undefined;
  let noGuest: string | undefined;
  let dir: string;
  let api = '';
  let computes: Record<string, Child> = {};
  let computeArgs: (id: string) => string[] = () => [];
  let imageId = '';
  const made: string[] = [];
  /** The admin token this file mints; http() sends it, the raw fetches below too. */
  let auth: Record<string, string> = {};

  const consoleOf = async (server: string): Promise<string> => {
    const res = await fetch(`${api}/v1/servers/${server}/console?lines=400`, { headers: auth });
    expect(res.headers.get('content-type')).toMatch(/^text\/plain/);
    return res.text();
  };
  const waitConsole = (server: string, marker: string, count: number, timeoutMs = 120_000) =>
    waitFor(async () => ((await consoleOf(server)).split(marker).length - 1 >= count ? true : undefined), {
      what: `${count}x ${marker} on ${server}'s console`,
      timeoutMs,
      intervalMs: 250,
    });
  const act = async (server: string, action: string): Promise<WorkUnitView> => {
    const res = await http<{ work_unit_id: string }>(`${api}/v1/servers/${server}/actions`, { method: 'POST', body: { action } });
    expect(res.status).toBe(202);
    return waitForUnit(api, res.body.work_unit_id, 180_000);
  };
  const boot = async (body: Record<string, unknown>): Promise<{ server: string; unit: string }> => {
    const res = await http<{ work_unit_id: string; server_id: string }>(`${api}/v1/servers`, { method: 'POST', body });
    expect(res.status, JSON.stringify(res.body)).toBe(202);
    made.push(res.body.server_id);
    return { server: res.body.server_id, unit: res.body.work_unit_id };
  };
  const needGuests = (ctx: { skip: (note?: string) => void }) => {
    if (noGuest) ctx.skip(`skipped: neither KVM nor TCG runs a guest here (${noGuest})`);
  };

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'quark-real-vm-'));
    host = await QemuHost.ensure({ log: (line) => console.log(`[real-vm] ${line}`) });
    hv = await Hypervisor.open('qemu:///system');
    image = await buildTinyImage();
    // One probe per machine, kept where `npm run up -- --hypervisor qemu` keeps it; the computes read it.
    const probeCache = join(repoRoot(), '.quark', 'accel-probe.json');
    const probePool = `quark-probe-${run}`;
    await hv.ensurePool(probePool, join(dir, 'probe-pool'));
    try {
      probe = (await probeWithCache({ hv, pool: probePool, poolDir: join(dir, 'probe-pool'), consoleDir: dir, image: image.qcow2, tag: `rv-${run}`, cacheFile: probeCache })).result;
      console.log(`[real-vm] accelerator: ${probe.accel}/${probe.cpu}`);
    } catch (e) {
      if (!(e instanceof NoAcceleratorError)) throw e;
      noGuest = e.message;
      return;
    } finally {
      await virsh('pool-destroy', probePool).catch(() => {});
      await virsh('pool-undefine', probePool).catch(() => {});
    }

    zk = await Zk.connect(zkConnect());
    const port = await freePort();
    api = `http://127.0.0.1:${port}`;
    const { secret } = await mintToken(zk, new AuthPaths(paths), { project: asProjectId('admin'), role: 'admin', name: 'real-vm test' });
    auth = { authorization: `Bearer ${secret}` };
    useAdminToken(api, secret);
    const common = ['--zk', zkConnect(), '--root', root, '--session-timeout-ms', '3000'];
    group.spawnQuark(['api', '--port', String(port), '--images-dir', join(dir, 'images'), ...common], { label: 'api' });
    group.spawnQuark(['orc', '--id', 'orc-1', '--sweep-ms', '500', ...common], { label: 'orc-1' });
    computeArgs = (id) => [
      'compute', '--id', id,
      '--libvirt-uri', 'qemu:///system',
      '--state-dir', join(dir, id),
      '--probe-image', image.qcow2,
      '--probe-cache', probeCache,
      '--shutdown-timeout-s', String(SHUTDOWN_TIMEOUT_S),
      // Builds land where the test sends them: zone fast, or zone slow whose steps each wait 1.5 s.
      ...(id === slowId ? ['--zone', 'slow', '--step-delay-ms', '1500'] : ['--zone', 'fast']),
      ...common,
    ];
    computes = {
      [fastId]: group.spawnQuark(computeArgs(fastId), { label: fastId }),
      [slowId]: group.spawnQuark(computeArgs(slowId), { label: slowId }),
    };
    await waitFor(
      async () => {
        const cs = await http<Array<{ id: string; alive: boolean }>>(`${api}/v1/computes`);
        const shards = await http<Record<string, string | null>>(`${api}/v1/shards`);
        return cs.body.filter((c) => c.alive).length === 2 && Object.values(shards.body).every((o) => o !== null);
      },
      { what: 'both computes alive and every shard owned', timeoutMs: 120_000, intervalMs: 250 },
    );
  }, 600_000);

  afterAll(async () => {
    // Every domain this file's computes made goes, whatever happened above.
    if (hv) {
      for (const d of await hv.list().catch(() => [])) {
        const ours = d.owner === fastId || d.owner === slowId || d.name.startsWith(`quarkprobe-rv-${run}`);
        if (!ours) continue;
        if (d.state !== 'shutoff') await hv.destroy(d.name).catch(() => {});
        await hv.undefine(d.name).catch(() => {});
      }
    }
    await group.stopAll();
    for (const id of [fastId, slowId]) {
      await virsh('pool-destroy', `quark-${id}`).catch(() => {});
      await virsh('pool-undefine', `quark-${id}`).catch(() => {});
    }
    await hv?.close();
    await zk?.removeTree(root).catch(() => {});
    await zk?.close();
    await host?.stop();
    if (dir) await rm(dir, { recursive: true, force: true });
  }, 120_000);

  it('takes an image upload: streamed to disk with its sha256, listed, names unique, qcow2 checked', async (ctx) => {
    needGuests(ctx);
    const bytes = await readFile(image.qcow2);
    const upload = (name: string, format: string, body: Buffer) =>
      fetch(`${api}/v1/images?name=${name}&format=${format}`, { method: 'POST', headers: { 'content-type': 'application/octet-stream', ...auth }, body: new Uint8Array(body) });
    const res = await upload('tiny', 'qcow2', bytes);
    const created = (await res.json()) as { id: string; name: string; format: string; size_bytes: number; sha256: string; created_at: string };
    expect(res.status, JSON.stringify(created)).toBe(201);
    const { createHash } = await import('node:crypto');
    expect(created).toMatchObject({ name: 'tiny', format: 'qcow2', size_bytes: bytes.length, sha256: createHash('sha256').update(bytes).digest('hex') });
    imageId = created.id;
    expect((await http(`${api}/v1/images/${imageId}`)).body).toEqual(created);
    expect((await http<Array<{ id: string }>>(`${api}/v1/images`)).body.map((i) => i.id)).toContain(imageId);
    // The file is beside the API, whole; ZooKeeper holds only the record.
    expect((await stat(join(dir, 'images', `${imageId}.qcow2`))).size).toBe(bytes.length);
    expect((await upload('tiny', 'raw', Buffer.from('x'))).status).toBe(409);
    expect((await upload('not-qcow2', 'qcow2', Buffer.from('plainly not a disk image'))).status).toBe(400);
    expect((await http(`${api}/v1/images?name=x&format=vmdk`, { method: 'POST' })).status).toBe(400);
  });

  let guest = '';
  let forwarded = 0;
  let outward: Server | undefined;
  let outwardConnections = 0;

  it('boots a guest from the image: its console shows the init marker and the output of its user data', async (ctx) => {
    needGuests(ctx);
    forwarded = await freePort();
    // A listener on the host the guest will try to reach: with an isolated network it must not get there.
    outward = createServer((s) => {
      outwardConnections++;
      s.destroy();
    });
    const outwardPort = await new Promise<number>((r) => outward!.listen(0, '127.0.0.1', () => r((outward!.address() as { port: number }).port)));
    const token = `token-${run}`;
    const userData = [
      '#!/bin/sh',
      `echo "user-data says ${token} on $(hostname)"`,
      `mkdir -p /tmp/www && echo "${token} over tcp" > /tmp/www/index.html && httpd -p 8080 -h /tmp/www && echo "serving on 8080"`,
      // 10.0.2.2 is the host in QEMU's user network; restrict=on must stop this.
      `if nc -w 2 10.0.2.2 ${outwardPort} </dev/null; then echo "outward: reached"; else echo "outward: blocked"; fi`,
    ].join('\n');
    const started = Date.now();
    const { server, unit } = await boot({
      name: 'real-1',
      flavor: { vcpus: 1, ram_mb: 128, disk_gb: 1 },
      zone: 'fast',
      image: 'tiny',
      user_data: Buffer.from(userData).toString('base64'),
      ports: [{ host_port: forwarded, guest_port: 8080 }],
    });
    guest = server;
    const wu = await waitForUnit(api, unit, 180_000);
    expect(wu.state, JSON.stringify(wu.error)).toBe('SUCCEEDED');
    expect(wu.compute_id).toBe(fastId);
    await waitConsole(server, MARKERS.userDataEnd, 1);
    console.log(`[real-vm] POST -> user data done: ${Date.now() - started} ms`);
    const text = await consoleOf(server);
    expect(countMarker(text, MARKERS.up)).toBe(1);
    const ud = text.slice(text.indexOf(MARKERS.userDataBegin), text.indexOf(MARKERS.userDataEnd));
    expect(ud).toContain(`user-data says ${token} on real-1`);
    expect(ud).toContain('outward: blocked');
    expect(text).toMatch(/QUARK_USER_DATA_END rc=0/);
    expect(text).toContain(`instance-id=${server}`);
    // ?lines bounds the answer.
    expect((await (await fetch(`${api}/v1/servers/${server}/console?lines=2`, { headers: auth })).text()).trimEnd().split('\n')).toHaveLength(2);

    // The server, the compute's published accelerator and host-sized capacity, the domain's owner.
    expect((await http(`${api}/v1/servers/${server}`)).body).toMatchObject({ status: 'ACTIVE', image: imageId, ports: [{ host_port: forwarded, guest_port: 8080 }], console: true });
    expect((await zk.get<string>(`${paths.self(fastId as never)}/accel`))?.value).toBe(probe!.accel);
    // Builds without an image are kept off it (the orc reads this).
    expect((await zk.get<{ image_required?: boolean }>(paths.selfCapacity(fastId as never)))?.value?.image_required).toBe(true);
    const hostInfo = await hv.hostInfo();
    const fast = (await http<Array<{ id: string; capacity: { vcpus: number; ram_mb: number } }>>(`${api}/v1/computes`)).body.find((c) => c.id === fastId);
    expect(fast?.capacity).toMatchObject({ vcpus: hostInfo.cpus, ram_mb: Math.floor(hostInfo.memory_kib / 1024) });
    expect((await hv.info(`quark-${server}`)).owner).toBe(fastId);
    const xml = await virsh('dumpxml', `quark-${server}`);
    expect(xml).toContain(`<domain type='${probe!.accel === 'kvm' ? 'kvm' : 'qemu'}'`);
    expect(xml).toContain('restrict=on');
  }, 300_000);

  it('reaches a TCP service inside the guest through a port forwarded on 127.0.0.1; the guest reached nothing', async (ctx) => {
    needGuests(ctx);
    expect(guest).not.toBe('');
    await waitConsole(guest, 'serving on 8080', 1);
    const body = await waitFor(
      async () => {
        const res = await fetch(`http://127.0.0.1:${forwarded}/`, { signal: AbortSignal.timeout(3000) });
        return res.ok ? res.text() : undefined;
      },
      { what: 'the guest httpd through the forward', timeoutMs: 30_000, intervalMs: 250 },
    );
    expect(body).toBe(`token-${run} over tcp\n`);
    expect(outwardConnections).toBe(0);
    outward?.close();
  });

  it('refuses to delete an image a server uses (409)', async (ctx) => {
    needGuests(ctx);
    const res = await http<{ error: { code: string } }>(`${api}/v1/images/${imageId}`, { method: 'DELETE' });
    expect(res.status).toBe(409);
    expect(res.body.error.code).toBe('IMAGE_IN_USE');
  });

  it('stops gracefully: the ACPI power button reaches the guest, which powers itself off', async (ctx) => {
    needGuests(ctx);
    const wu = await act(guest, 'stop');
    expect(wu.state, JSON.stringify(wu.error)).toBe('SUCCEEDED');
    const text = await consoleOf(guest);
    expect(countMarker(text, MARKERS.powerButton)).toBe(1);
    // The kernel's own last words: a destroy would have cut the guest off before them.
    expect(text).toContain('reboot: Power down');
    expect(wu.steps_completed[0]!.time_to_completion_ms).toBeLessThan(SHUTDOWN_TIMEOUT_S * 1000);
    expect((await hv.info(`quark-${guest}`)).state).toBe('shutoff');
    expect((await http(`${api}/v1/servers/${guest}`)).body).toMatchObject({ status: 'STOPPED' });
  }, 120_000);

  it('starts again, and a reboot shows another boot of the same domain', async (ctx) => {
    needGuests(ctx);
    expect((await act(guest, 'start')).state).toBe('SUCCEEDED');
    await waitConsole(guest, MARKERS.up, 2);
    await waitConsole(guest, MARKERS.userDataEnd, 2);
    const wu = await act(guest, 'reboot');
    expect(wu.state, JSON.stringify(wu.error)).toBe('SUCCEEDED');
    await waitConsole(guest, MARKERS.up, 3);
    const text = await consoleOf(guest);
    expect(countMarker(text, MARKERS.powerButton)).toBe(2);
    const bootIds = [...text.matchAll(/QUARK_GUEST_UP uptime=\S+ boot_id=(\S+)/g)].map((m) => m[1]);
    expect(new Set(bootIds).size).toBe(3);
    expect((await http(`${api}/v1/servers/${guest}`)).body).toMatchObject({ status: 'ACTIVE' });
  }, 240_000);

  let slowGuest = '';

  it('finishes a build during which libvirtd was restarted', async (ctx) => {
    needGuests(ctx);
    if (!host.ownsLibvirtd()) ctx.skip('skipped: libvirtd here was not started by Quark (this test or scripts/ensure-qemu.sh); not restarting it');
    const { server, unit } = await boot({ name: 'survivor', flavor: { vcpus: 1, ram_mb: 128, disk_gb: 1 }, zone: 'slow', image: 'tiny' });
    slowGuest = server;
    // Each step waits 1.5 s first: restart while the unit is between its first and last steps.
    await waitFor(
      async () => ((await http<WorkUnitView>(`${api}/v1/work-units/${unit}`)).body.steps_completed.length >= 1 ? true : undefined),
      { what: 'the build to complete its first step', timeoutMs: 120_000, intervalMs: 50 },
    );
    // Down for 2 s: the next step's effect (1.5 s after the first step) meets no libvirtd.
    const { oldPid, newPid } = await host.restartLibvirtd(2000);
    expect(newPid).not.toBe(oldPid);
    const wu = await waitForUnit(api, unit, 180_000);
    expect(wu.state, JSON.stringify(wu.error)).toBe('SUCCEEDED');
    expect(wu.compute_id).toBe(slowId);
    // A step met the dead connection and was run again on a new one.
    // (Lines are JSON; the test reads fields, not their order.)
    const retried = computes[slowId]!.output().split('\n').filter((l) => l.includes('libvirt unreachable; retrying the step'));
    expect(retried.some((l) => l.includes('"code":"CONNECT_FAILED"')), retried.join('\n') || 'no retry line').toBe(true);
    await waitConsole(server, MARKERS.up, 1);
    // Its (empty) user data ran: acpid is up, so the delete below is a quick graceful stop.
    await waitConsole(server, MARKERS.userDataEnd, 1);
    // The test's own connection re-opened by itself, and the guest from before kept running.
    expect((await hv.info(`quark-${guest}`)).state).toBe('running');
    expect((await hv.list()).filter((d) => d.name === `quark-${server}`)).toHaveLength(1);
  }, 300_000);

  it("a compute's restart leaves the other compute's domains on the same libvirt alone", async (ctx) => {
    needGuests(ctx);
    if (slowGuest) {
      // The slow compute gives its guest back first: a compute down past its session loses its VMs.
      const del = await http<{ work_unit_id: string }>(`${api}/v1/servers/${slowGuest}`, { method: 'DELETE' });
      expect((await waitForUnit(api, del.body.work_unit_id, 180_000)).state).toBe('SUCCEEDED');
    }
    // The invariant: reconcile removes only domains carrying its own id. The slow compute, which
    // holds no guest yet, restarts (kill -9) while the fast one's guest runs on the same libvirt.
    await group.kill9(computes[slowId]!.pid);
    computes[slowId] = group.spawnQuark(computeArgs(slowId), { label: `${slowId}-again` });
    await waitFor(
      async () => (await http<Array<{ id: string; alive: boolean }>>(`${api}/v1/computes`)).body.find((c) => c.id === slowId && c.alive),
      { what: 'the slow compute back', timeoutMs: 60_000, intervalMs: 200 },
    );
    await waitFor(async () => computes[slowId]!.output().includes('compute ready'), { what: 'its reconcile to finish', timeoutMs: 60_000 });
    expect((await hv.info(`quark-${guest}`)).state).toBe('running');
    expect((await http(`${api}/v1/servers/${guest}`)).body).toMatchObject({ status: 'ACTIVE', compute_id: fastId });
  }, 120_000);

  it('deletes: no domain, no volume, no seed or console file is left; then the image can go', async (ctx) => {
    needGuests(ctx);
    for (const server of made) {
      const res = await http<{ work_unit_id: string }>(`${api}/v1/servers/${server}`, { method: 'DELETE' });
      if (res.status === 404) continue;
      expect(res.status).toBe(202);
      const wu = await waitForUnit(api, res.body.work_unit_id, 180_000);
      expect(wu.state, JSON.stringify(wu.error)).toBe('SUCCEEDED');
    }
    const names = new Set((await hv.list()).map((d) => d.name));
    for (const server of made) expect(names.has(`quark-${server}`)).toBe(false);
    for (const id of [fastId, slowId]) {
      const vols = (await hv.listVolumes(`quark-${id}`)).map((v) => v.name);
      expect(vols.filter((v) => v.startsWith('quark-'))).toEqual([]);
      const files = [...(await readdir(join(dir, id, 'pool'))), ...(await readdir(join(dir, id, 'console')))];
      expect(files.filter((f) => f.startsWith('quark-'))).toEqual([]);
    }
    const res = await fetch(`${api}/v1/images/${imageId}`, { method: 'DELETE', headers: auth });
    expect(res.status).toBe(204);
    expect(existsSync(join(dir, 'images', `${imageId}.qcow2`))).toBe(false);
    expect((await http(`${api}/v1/images/${imageId}`)).status).toBe(404);
  }, 300_000);
});
