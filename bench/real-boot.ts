// Real guests booted through Quark against the same guests started directly through libvirt, in
// the same run, on the same host. stdout: one JSON line per round; progress on stderr.
//   npm run bench:real-boot -- --vms 20 --concurrency 10 [--rounds 1]
// Bare: the guest is prepared as Quark prepares it (overlay on the cached image, NoCloud seed,
// the same domain XML and accelerator), then timed from libvirt's start call to its init's marker
// on the serial console. Quark: timed from POST /v1/servers to the unit's SUCCEEDED
// (post_to_active, polled every 50 ms) and to the same marker (post_to_guest_ready); the console
// files are polled every 20 ms in both. overhead_ms = post_to_guest_ready p50 - bare p50: what
// Quark adds (API, ZooKeeper, placement, the steps' own work: image cache, overlay, seed, define).
// One api, one orc and one compute (qemu:///system) as processes, ZooKeeper standalone; every
// domain either side made is destroyed at the end, also on failure or Ctrl-C.
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes, randomUUID } from 'node:crypto';
import { createWriteStream, mkdtempSync, rmSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { freePort, startZooKeeper, type RunningZooKeeper } from '../ts/dev/zookeeper.js';
import { Hypervisor } from '../ts/native/libvirt.js';
import { createLogger } from '../ts/common/log.js';
import { QemuHost, qemuUnavailable, virsh } from '../ts/dev/qemu-host.js';
import { buildTinyImage, repoRoot } from '../ts/dev/tiny-image.js';
import { registerTiny } from '../ts/dev/qemu-up.js';
import { probeWithCache } from '../ts/guest/probe.js';
import { GuestHost } from '../ts/guest/host.js';
import { MARKERS, waitForMarker } from '../ts/guest/console.js';
import { imageRef, type ImageRecord } from '../ts/images/model.js';
import { mintAdminToken } from '../ts/auth/local.js';
import { Zk } from '../ts/zk/client.js';
import { ImagePaths } from '../ts/images/store.js';
import { Paths } from '../ts/zk/paths.js';
import type { BuildRequest } from '../ts/common/model.js';
import { percentile, pool } from './support.js';

const MAIN = fileURLToPath(new URL('../dist/ts/cli/main.js', import.meta.url));
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const say = (s: string) => process.stderr.write(`[bench:real-boot] ${s}\n`);
const emit = (o: Record<string, unknown>) => process.stdout.write(JSON.stringify(o) + '\n');

const FLAVOR = { vcpus: 1, ram_mb: 128, disk_gb: 1 };

/** The p-th percentile of `values` to the millisecond; null if there are none. */
function pct(values: number[], p: number): number | null {
  const v = percentile([...values].sort((a, b) => a - b), p);
  return v === undefined ? null : Math.round(v);
}

/** Every call carries the bench cluster's admin token (QUARK_TOKEN, set once it is minted). */
async function json<T>(url: string, init?: RequestInit): Promise<{ status: number; body: T }> {
  const res = await fetch(url, { ...init, headers: { authorization: `Bearer ${process.env.QUARK_TOKEN}`, ...(init?.headers as Record<string, string> | undefined) } });
  const text = await res.text();
  return { status: res.status, body: (text ? JSON.parse(text) : undefined) as T };
}

interface Proc {
  name: string;
  p: ChildProcess;
}

async function stopAll(procs: Proc[]): Promise<void> {
  await Promise.all(
    procs.map(async ({ p }) => {
      if (p.exitCode !== null || p.signalCode !== null) return;
      p.kill('SIGTERM');
      const timer = setTimeout(() => p.kill('SIGKILL'), 20_000);
      await new Promise((r) => p.once('exit', r));
      clearTimeout(timer);
    }),
  );
}

async function main(): Promise<void> {
  const { values: v } = parseArgs({
    options: {
      vms: { type: 'string', default: '10' },
      concurrency: { type: 'string', default: '5' },
      rounds: { type: 'string', default: '1' },
      'timeout-s': { type: 'string', default: '300' },
      keep: { type: 'boolean', default: false },
    },
  });
  const vms = Number(v.vms);
  const concurrency = Number(v.concurrency);
  const rounds = Number(v.rounds);
  const timeoutMs = Number(v['timeout-s']) * 1000;
  const unavailable = qemuUnavailable();
  if (unavailable) throw new Error(`cannot run real guests here: ${unavailable}`);

  const run = randomBytes(3).toString('hex');
  const computeId = `bench-${run}`;
  const bareId = `bench-${run}-bare`;
  const dir = mkdtempSync(join(tmpdir(), 'quark-real-boot-'));
  const procs: Proc[] = [];
  let zk: RunningZooKeeper | undefined;
  let hv: Hypervisor | undefined;
  let bare: GuestHost | undefined;
  const host = await QemuHost.ensure({ log: say });
  const cleanup = async () => {
    if (hv) {
      for (const d of await hv.list().catch(() => [])) {
        if (d.owner !== computeId && d.owner !== bareId) continue;
        if (d.state !== 'shutoff') await hv.destroy(d.name).catch(() => {});
        await hv.undefine(d.name).catch(() => {});
      }
    }
    await stopAll(procs);
    await bare?.close();
    for (const id of [computeId, bareId]) {
      await virsh('pool-destroy', `quark-${id}`).catch(() => {});
      await virsh('pool-undefine', `quark-${id}`).catch(() => {});
    }
    await hv?.close().catch(() => {});
    await zk?.stop().catch(() => {});
    await host.stop();
    if (!v.keep) rmSync(dir, { recursive: true, force: true });
  };
  let interrupted = false;
  process.once('SIGINT', () => {
    interrupted = true;
    say('interrupted: cleaning up');
    void cleanup().finally(() => process.exit(130));
  });

  try {
    hv = await Hypervisor.open('qemu:///system');
    const image = await buildTinyImage({ log: say });
    const probeCache = join(repoRoot(), '.quark', 'accel-probe.json');
    const probePool = `quark-${computeId}-probe`;
    await hv.ensurePool(probePool, join(dir, 'probe'));
    const { result: probe } = await probeWithCache({ hv, pool: probePool, poolDir: join(dir, 'probe'), consoleDir: dir, image: image.qcow2, tag: computeId, cacheFile: probeCache }).finally(async () => {
      await virsh('pool-destroy', probePool).catch(() => {});
      await virsh('pool-undefine', probePool).catch(() => {});
    });
    say(`accelerator ${probe.accel}/${probe.cpu}`);

    zk = await startZooKeeper({ dataDir: join(dir, 'zk'), clientPort: 0 });
    const port = await freePort();
    const api = `http://127.0.0.1:${port}`;
    const common = ['--zk', zk.connectionString, '--root', '/bench', '--session-timeout-ms', '4000'];
    // The API wants a token; registerTiny reads it from QUARK_TOKEN too.
    process.env.QUARK_TOKEN = await mintAdminToken(zk.connectionString, '/bench');
    const launch = (name: string, args: string[]) => {
      const out = createWriteStream(join(dir, `${name}.log`));
      const p = spawn(process.execPath, [MAIN, ...args, ...common], { stdio: ['ignore', 'pipe', 'pipe'] });
      p.stdout!.pipe(out);
      p.stderr!.pipe(out);
      procs.push({ name, p });
    };
    const stateDir = join(dir, computeId);
    launch('api', ['api', '--port', String(port), '--images-dir', join(dir, 'images')]);
    launch('orc', ['orc', '--id', 'orc-1']);
    launch('compute', [
      'compute', '--id', computeId, '--libvirt-uri', 'qemu:///system', '--state-dir', stateDir,
      '--probe-image', image.qcow2, '--probe-cache', probeCache,
      // Room for every guest: the bench measures boots, not admission.
      '--vcpus', String(Math.max(64, vms)), '--ram-mb', String(Math.max(8192, vms * 256)),
    ]);
    for (const deadline = Date.now() + 120_000; ; ) {
      try {
        const cs = await json<Array<{ alive: boolean }>>(`${api}/v1/computes`);
        const shards = await json<Record<string, string | null>>(`${api}/v1/shards`);
        if (cs.body.filter((c) => c.alive).length === 1 && Object.values(shards.body).every(Boolean)) break;
      } catch {
        /* not up yet */
      }
      if (Date.now() > deadline) throw new Error(`the cluster did not come up; logs in ${dir}`);
      await sleep(250);
    }
    const tiny = await registerTiny(api, image);
    // The bare side fetches the image as a compute does: with its fetch key, which only ZooKeeper holds.
    const recZk = await Zk.connect(zk.connectionString);
    const rec = await recZk.get<ImageRecord>(new ImagePaths(new Paths('/bench')).image(tiny.id)).finally(() => recZk.close());
    if (!rec?.value) throw new Error(`image ${tiny.id} has no record in ZooKeeper`);
    const ref = imageRef(rec.value);
    bare = await GuestHost.open({
      hv,
      computeId: bareId,
      stateDir: join(dir, bareId),
      network: { kind: 'isolated' },
      accel: probe.accel,
      cpu: probe.cpu,
      log: createLogger({ proc: 'bench-bare' }, 'warn'),
    });

    for (let round = 1; round <= rounds && !interrupted; round++) {
      // Bare: prepared first (untimed), then started C at a time.
      const bareReady: number[] = [];
      let bareFailures = 0;
      const bareVms = Array.from({ length: vms }, () => randomUUID());
      const req: BuildRequest = { name: 'bare', flavor: FLAVOR, bandwidth_mbps: 0, image: ref };
      const consumes = { ...FLAVOR, bandwidth_mbps: 0 };
      await pool(vms, concurrency, async (i) => {
        const vm = bareVms[i]!;
        await bare!.prepareStorage(vm, req, consumes);
        await bare!.define(`quarkbench-${vm}`, vm, req, consumes);
      });
      say(`round ${round}: bare, ${vms} guests, ${concurrency} at a time`);
      await pool(vms, concurrency, async (i) => {
        const vm = bareVms[i]!;
        const t0 = performance.now();
        try {
          await hv!.start(`quarkbench-${vm}`);
          await waitForMarker(bare!.consolePath(vm), MARKERS.up, { timeoutMs, intervalMs: 20 });
          bareReady.push(performance.now() - t0);
        } catch (e) {
          bareFailures++;
          say(`bare guest ${vm} failed: ${(e as Error).message.split('\n')[0]}`);
        }
      });
      await pool(vms, concurrency, async (i) => {
        const vm = bareVms[i]!;
        await hv!.destroy(`quarkbench-${vm}`).catch(() => {});
        await hv!.undefine(`quarkbench-${vm}`).catch(() => {});
        await bare!.removeStorage(vm);
      });

      // Quark: C requests in flight until N are done.
      say(`round ${round}: through Quark, ${vms} guests, ${concurrency} at a time`);
      const toActive: number[] = [];
      const toReady: number[] = [];
      const servers: string[] = [];
      let failures = 0;
      const started = performance.now();
      await pool(vms, concurrency, async (i) => {
        const t0 = performance.now();
        const res = await json<{ work_unit_id: string; server_id: string }>(`${api}/v1/servers`, {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body: JSON.stringify({ name: `bench-${round}-${i}`, flavor: FLAVOR, image: 'tiny' }),
        });
        if (res.status !== 202) {
          failures++;
          say(`POST refused: ${res.status} ${JSON.stringify(res.body)}`);
          return;
        }
        servers.push(res.body.server_id);
        const consoleLog = join(stateDir, 'console', `quark-${res.body.server_id}.log`);
        const ready = waitForMarker(consoleLog, MARKERS.up, { timeoutMs, intervalMs: 20 }).then(() => performance.now() - t0);
        ready.catch(() => {});
        for (;;) {
          const wu = await json<{ state: string; error?: unknown }>(`${api}/v1/work-units/${res.body.work_unit_id}`);
          if (wu.body.state === 'SUCCEEDED') {
            toActive.push(performance.now() - t0);
            break;
          }
          if (wu.body.state === 'FAILED' || performance.now() - t0 > timeoutMs) {
            failures++;
            say(`boot ${res.body.server_id} ${wu.body.state}: ${JSON.stringify(wu.body.error)}`);
            return;
          }
          await sleep(50);
        }
        try {
          toReady.push(await ready);
        } catch (e) {
          failures++;
          say(`guest ${res.body.server_id} never reached userspace: ${(e as Error).message.split('\n')[0]}`);
        }
      });
      const wallS = (performance.now() - started) / 1000;
      await pool(servers.length, concurrency, async (i) => {
        const del = await json<{ work_unit_id: string }>(`${api}/v1/servers/${servers[i]}`, { method: 'DELETE' });
        for (let t = 0; del.status === 202 && t < 1200; t++) {
          const wu = await json<{ state: string }>(`${api}/v1/work-units/${del.body.work_unit_id}`);
          if (wu.body.state === 'SUCCEEDED' || wu.body.state === 'FAILED') break;
          await sleep(100);
        }
      });

      const bareP50 = pct(bareReady, 50);
      const readyP50 = pct(toReady, 50);
      emit({
        vms,
        concurrency,
        accel: probe.accel,
        cpu: probe.cpu,
        round,
        post_to_active_p50_ms: pct(toActive, 50),
        post_to_guest_ready_p50_ms: readyP50,
        post_to_guest_ready_p99_ms: pct(toReady, 99),
        bare_start_to_ready_p50_ms: bareP50,
        bare_start_to_ready_p99_ms: pct(bareReady, 99),
        overhead_ms: readyP50 !== null && bareP50 !== null ? readyP50 - bareP50 : null,
        failures,
        bare_failures: bareFailures,
        quark_wall_s: Math.round(wallS * 10) / 10,
        load_avg_1m: Number((await readFile('/proc/loadavg', 'utf8')).split(' ')[0]),
      });
    }
  } finally {
    if (!interrupted) await cleanup();
  }
}

main().then(
  () => process.exit(0),
  (err) => {
    say(`failed: ${(err as Error).stack ?? String(err)}`);
    process.exit(1);
  },
);
