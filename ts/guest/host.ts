// What a compute on QEMU needs beyond the test driver: a storage pool with the image cache, each
// VM's overlay and NoCloud seed, its console file, the accelerator the host really runs, and the
// domain's devices. One per compute process; the step effects call it (ts/compute/steps.ts).
import { mkdir, rm } from 'node:fs/promises';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { join, resolve } from 'node:path';
import type { Logger } from '../common/log.js';
import type { BuildRequest, Consumes } from '../common/model.js';
import type { Accel, CpuMode, Hypervisor, Nic } from '../native/libvirt.js';
import { StepError } from '../actors/work-unit.js';
import { tailFile } from './console.js';
import { ImageCache } from './image-cache.js';
import { probeWithCache, type ProbeResult } from './probe.js';
import { MAX_USER_DATA_BYTES, writeSeed } from './seed.js';

/** How a compute wires its guests' network interface (`quark compute --guest-network`). */
export type GuestNetwork =
  | { kind: 'isolated' }
  | { kind: 'nat' }
  | { kind: 'none' }
  | { kind: 'network'; name: string }
  | { kind: 'bridge'; name: string };

export function parseGuestNetwork(s: string): GuestNetwork {
  if (s === 'isolated' || s === 'nat' || s === 'none') return { kind: s };
  const m = /^(network|bridge):(.+)$/.exec(s);
  if (m) return { kind: m[1] as 'network' | 'bridge', name: m[2]! };
  throw new Error(`--guest-network must be isolated, nat, none, network:NAME or bridge:NAME, got ${JSON.stringify(s)}`);
}

export interface GuestHostOptions {
  hv: Hypervisor;
  computeId: string;
  /** Pool, console logs and the probe's answer live here. */
  stateDir: string;
  network: GuestNetwork;
  /** auto: probe (the answer is kept in stateDir while the host stays the same). */
  accel: 'auto' | Accel;
  cpu?: CpuMode;
  /** A qcow2 whose init prints the boot marker: what the probe boots. Needed for auto. */
  probeImage?: () => Promise<string>;
  /** Where the probe's answer is kept (default <stateDir>/accel-probe.json). */
  probeCache?: string;
  log: Logger;
  /** The console server's port on `consoleHost` (0: any free one). */
  consolePort?: number;
  consoleHost?: string;
  /** Cached image bases no VM uses are removed once idle this long (default 1 h). */
  imageIdleMs?: number;
}

export class GuestHost {
  readonly pool: string;
  readonly poolDir: string;
  readonly consoleDir: string;
  readonly images: ImageCache;
  accel: Accel = 'tcg';
  cpu: CpuMode = 'default';
  probe: ProbeResult | null = null;
  consoleUrl = '';
  private server: http.Server | undefined;
  private sweeper: NodeJS.Timeout | undefined;

  private constructor(private readonly o: GuestHostOptions) {
    const state = resolve(o.stateDir);
    this.pool = `quark-${o.computeId}`;
    this.poolDir = join(state, 'pool');
    this.consoleDir = join(state, 'console');
    this.images = new ImageCache(this.poolDir);
  }

  /** Sets up the pool and directories, settles the accelerator, and serves the consoles. */
  static async open(o: GuestHostOptions): Promise<GuestHost> {
    if (!o.hv.runsGuests) throw new Error(`${o.hv.uri} runs no real guests; GuestHost is for qemu:// connections`);
    const g = new GuestHost(o);
    await mkdir(g.poolDir, { recursive: true });
    await mkdir(g.consoleDir, { recursive: true });
    await o.hv.ensurePool(g.pool, g.poolDir);
    await g.settleAccel();
    await g.serveConsoles(o.consoleHost ?? '127.0.0.1', o.consolePort ?? 0);
    g.sweepImagesEvery(Math.min(o.imageIdleMs ?? 3_600_000, 600_000));
    return g;
  }

  async close(): Promise<void> {
    clearInterval(this.sweeper);
    await new Promise<void>((r) => (this.server ? this.server.close(() => r()) : r()));
  }

  /** Removes, now and then, cached bases no overlay in the pool uses any more. */
  private sweepImagesEvery(ms: number): void {
    const idle = this.o.imageIdleMs ?? 3_600_000;
    this.sweeper = setInterval(() => {
      this.images.sweep(idle).then(
        (removed) => removed.length > 0 && this.o.log.info('removed unused image bases', { removed }),
        (err) => this.o.log.warn('image cache sweep failed', { err }),
      );
    }, ms);
    this.sweeper.unref();
  }

  // ---- accelerator ----------------------------------------------------------------------------

  private async settleAccel(): Promise<void> {
    const { o } = this;
    if (o.accel !== 'auto') {
      this.accel = o.accel;
      this.cpu = o.cpu ?? 'default';
      return;
    }
    if (!o.probeImage) throw new Error('--accel auto needs an image to probe with');
    const image = o.probeImage;
    const cacheFile = o.probeCache ?? join(resolve(o.stateDir), 'accel-probe.json');
    o.log.info('settling which accelerator runs a guest here', { cache: cacheFile });
    const { result, cached } = await probeWithCache({
      hv: o.hv,
      pool: this.pool,
      poolDir: this.poolDir,
      consoleDir: this.consoleDir,
      image: await image(),
      tag: o.computeId,
      cacheFile,
    });
    o.log.info(cached ? 'accelerator from an earlier probe of this host' : 'accelerator probed', {
      accel: result.accel,
      cpu: result.cpu,
      boot_ms: result.boot_ms,
      ...(cached ? {} : { attempts: result.attempts }),
    });
    this.set(result);
  }

  private set(r: ProbeResult): void {
    this.probe = r;
    this.accel = r.accel;
    this.cpu = r.cpu;
  }

  // ---- per VM ---------------------------------------------------------------------------------

  overlayName = (vm: string): string => `quark-${vm}.qcow2`;
  seedPath = (vm: string): string => join(this.poolDir, `quark-${vm}-seed.img`);
  consolePath = (vm: string): string => join(this.consoleDir, `quark-${vm}.log`);

  /** allocate_storage: the image's base in the cache, the VM's overlay on it, and its seed. */
  async prepareStorage(vm: string, req: BuildRequest | undefined, c: Consumes): Promise<void> {
    if (!req?.image) throw new StepError('IMAGE_REQUIRED', `compute ${this.o.computeId} runs real guests: a build here needs an image`);
    const userData = req.user_data ? Buffer.from(req.user_data, 'base64') : undefined;
    if (userData && userData.length > MAX_USER_DATA_BYTES) {
      throw new StepError('USER_DATA_TOO_LARGE', `user data is ${userData.length} bytes decoded; at most ${MAX_USER_DATA_BYTES}`);
    }
    let base;
    try {
      base = await this.images.ensure(req.image);
    } catch (e) {
      throw new StepError('IMAGE_FETCH_FAILED', (e as Error).message);
    }
    const capacity = Math.max(c.disk_gb * 2 ** 30, base.virtualBytes);
    await this.o.hv.createOverlay(this.pool, this.overlayName(vm), capacity, base.path, base.format);
    await writeSeed(this.seedPath(vm), { instanceId: vm, hostname: req.name, ...(userData ? { userData } : {}) });
  }

  /** define: the domain with its disk, seed, console file, NIC and the probed CPU. */
  async define(name: string, vm: string, req: BuildRequest | undefined, c: Consumes): Promise<void> {
    await this.o.hv.define({
      name,
      uuid: vm,
      vcpus: c.vcpus,
      ram_mb: c.ram_mb,
      disk_gb: c.disk_gb,
      owner: this.o.computeId,
      guest: {
        accel: this.accel,
        cpu: this.cpu,
        disk_path: join(this.poolDir, this.overlayName(vm)),
        disk_format: 'qcow2',
        seed_path: this.seedPath(vm),
        console_log: this.consolePath(vm),
        nic: this.nicFor(req),
        bandwidth_mbps: c.bandwidth_mbps,
      },
    });
  }

  private nicFor(req: BuildRequest | undefined): Nic {
    const net = this.o.network;
    const forwards = (req?.ports ?? []).map((p) => ({ host_port: p.host_port, guest_port: p.guest_port }));
    switch (net.kind) {
      case 'isolated':
      case 'nat':
        return { kind: 'user', isolated: net.kind === 'isolated', forwards };
      case 'none':
        return { kind: 'none' };
      case 'network':
      case 'bridge':
        return { kind: net.kind, name: net.name };
    }
  }

  /** undefine's second half: the overlay, the seed and the console file go. Idempotent. */
  async removeStorage(vm: string): Promise<void> {
    await this.o.hv.deleteVolume(this.pool, this.overlayName(vm));
    await rm(this.seedPath(vm), { force: true });
    await rm(this.consolePath(vm), { force: true });
  }

  // ---- consoles -------------------------------------------------------------------------------

  /** The last `lines` lines of the VM's serial console. */
  console(vm: string, lines: number): Promise<string> {
    return tailFile(this.consolePath(vm), lines);
  }

  /**
   * GET /console/<vm>?lines=N on the compute, text/plain: the API asks here for
   * GET /v1/servers/:id/console, since the console file lives on the compute's host.
   */
  private async serveConsoles(host: string, port: number): Promise<void> {
    this.server = http.createServer((req, res) => {
      const url = new URL(req.url ?? '/', 'http://x');
      const m = /^\/console\/([0-9a-f-]{36})$/.exec(url.pathname);
      const lines = Number(url.searchParams.get('lines') ?? '100');
      if (req.method !== 'GET' || !m || !Number.isInteger(lines) || lines < 1) {
        res.writeHead(404, { 'content-type': 'text/plain' }).end('GET /console/<server id>?lines=N\n');
        return;
      }
      this.console(m[1]!, Math.min(lines, 10_000)).then(
        (text) => res.writeHead(200, { 'content-type': 'text/plain; charset=utf-8' }).end(text),
        (err: Error) => res.writeHead(500, { 'content-type': 'text/plain' }).end(`${err.message}\n`),
      );
    });
    await new Promise<void>((r, j) => {
      this.server!.once('error', j);
      this.server!.listen(port, host, () => r());
    });
    const addr = this.server.address() as AddressInfo;
    this.consoleUrl = `http://${host.includes(':') ? `[${host}]` : host}:${addr.port}`;
  }
}
