// Which accelerator and CPU model this host can really run a guest with. A guest must reach
// userspace (its init's marker on the console) to count: on a host that is itself a VM, KVM can
// be advertised and still abort QEMU (an MSR it cannot set) or hang the guest in early boot.
// Each KVM candidate and TCG are tried at once; KVM wins if any candidate gets there in time.
import { createHash } from 'node:crypto';
import { mkdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import { dirname, join } from 'node:path';
import type { Accel, CpuMode, Hypervisor } from '../native/libvirt.js';
import { MARKERS, waitForMarker } from './console.js';

export interface ProbeAttempt {
  accel: Accel;
  cpu: CpuMode;
  ok: boolean;
  /** From start to the marker (ok), or to giving up. */
  ms: number;
  error?: string;
}

export interface ProbeResult {
  accel: Accel;
  cpu: CpuMode;
  /** The winner's start-to-userspace time. */
  boot_ms: number;
  attempts: ProbeAttempt[];
  probed_at: number;
}

export interface ProbeOptions {
  hv: Hypervisor;
  pool: string;
  poolDir: string;
  consoleDir: string;
  /** A qcow2 image whose init prints MARKERS.up (the tiny image). */
  image: string;
  /** Names the probe's domains and volumes apart from other computes' probes. */
  tag: string;
  kvmTimeoutMs?: number;
  tcgTimeoutMs?: number;
}

/** KVM CPU models in order of preference: the host's own CPU is fastest, the default the most portable. */
export const KVM_CANDIDATES: readonly CpuMode[] = ['host-passthrough', 'host-model', 'default'];

export class NoAcceleratorError extends Error {
  readonly code = 'NO_ACCELERATOR';
}

async function attempt(o: ProbeOptions, accel: Accel, cpu: CpuMode, timeoutMs: number): Promise<ProbeAttempt> {
  const { hv } = o;
  // Not "quark-<id>": reconcile treats those as VMs.
  const name = `quarkprobe-${o.tag}-${accel}-${cpu}`;
  const vol = `${name}.qcow2`;
  const consoleLog = join(o.consoleDir, `${name}.log`);
  const started = Date.now();
  try {
    await cleanup(o, name, vol, consoleLog);
    const disk = await hv.createOverlay(o.pool, vol, 1 << 30, o.image, 'qcow2');
    await hv.define({
      name,
      vcpus: 1,
      ram_mb: 128,
      disk_gb: 1,
      owner: o.tag,
      guest: { accel, cpu, disk_path: disk.path, disk_format: 'qcow2', console_log: consoleLog, nic: { kind: 'none' }, bandwidth_mbps: 0 },
    });
    const t0 = Date.now();
    await hv.start(name);
    await waitForMarker(consoleLog, MARKERS.up, { timeoutMs, intervalMs: 50 });
    return { accel, cpu, ok: true, ms: Date.now() - t0 };
  } catch (e) {
    return { accel, cpu, ok: false, ms: Date.now() - started, error: (e as Error).message.split('\n')[0]! };
  } finally {
    await cleanup(o, name, vol, consoleLog).catch(() => {});
  }
}

async function cleanup(o: ProbeOptions, name: string, vol: string, consoleLog: string): Promise<void> {
  const { hv } = o;
  const dom = await hv.info(name).catch(() => null);
  if (dom) {
    if (dom.state !== 'shutoff') await hv.destroy(name).catch(() => {});
    await hv.undefine(name);
  }
  await hv.deleteVolume(o.pool, vol);
  await rm(consoleLog, { force: true });
}

/** Probes the host; throws NoAcceleratorError when neither KVM nor TCG runs the image. */
export async function probeAccel(o: ProbeOptions): Promise<ProbeResult> {
  const kvmTimeout = o.kvmTimeoutMs ?? 20_000;
  const tcgTimeout = o.tcgTimeoutMs ?? 120_000;
  // The capabilities list a kvm domain type only where /dev/kvm is usable.
  const kvm = o.hv.kind === 'kvm' ? KVM_CANDIDATES.map((cpu) => attempt(o, 'kvm', cpu, kvmTimeout)) : [];
  const tcg = attempt(o, 'tcg', 'default', tcgTimeout);
  const kvmResults = await Promise.all(kvm);
  const tcgResult = await tcg;
  const attempts = [...kvmResults, tcgResult];
  const winner = kvmResults.find((a) => a.ok) ?? (tcgResult.ok ? tcgResult : undefined);
  if (!winner) {
    throw new NoAcceleratorError(
      `no guest reached userspace on ${o.hv.uri}: ${attempts.map((a) => `${a.accel}/${a.cpu}: ${a.error}`).join('; ')}`,
    );
  }
  return { accel: winner.accel, cpu: winner.cpu, boot_ms: winner.ms, attempts, probed_at: Date.now() };
}

/** What makes an earlier probe's answer still true: the same libvirt, host kernel and CPU. */
export function probeKey(hv: Pick<Hypervisor, 'uri' | 'kind'>): string {
  return createHash('sha256')
    .update(JSON.stringify([hv.uri, hv.kind, os.release(), os.cpus()[0]?.model ?? '', process.arch]))
    .digest('hex');
}

/**
 * The probe's answer kept in `cacheFile` for as long as the host stays the same (one probe per
 * machine, however many computes and test runs), else a new probe, kept there.
 */
export async function probeWithCache(o: ProbeOptions & { cacheFile: string }): Promise<{ result: ProbeResult; cached: boolean }> {
  const key = probeKey(o.hv);
  try {
    const kept = JSON.parse(await readFile(o.cacheFile, 'utf8')) as { key: string; result: ProbeResult };
    if (kept.key === key && kept.result?.accel) return { result: kept.result, cached: true };
  } catch {
    /* no earlier probe */
  }
  const result = await probeAccel(o);
  await mkdir(dirname(o.cacheFile), { recursive: true });
  const tmp = `${o.cacheFile}.${process.pid}`;
  await writeFile(tmp, JSON.stringify({ key, result }, null, 2));
  await rename(tmp, o.cacheFile);
  return { result, cached: false };
}
