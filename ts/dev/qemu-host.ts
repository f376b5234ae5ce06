// libvirtd and virtlogd on a machine without systemd: find them running, or start them and
// remember their pids, so whoever started them (a test, `quark up`) stops exactly those.
// scripts/ensure-qemu.sh installs the packages and records the daemons it starts in
// STATE_DIR; those count as Quark's own too (a test may restart them).
import { execFile, spawn } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { promisify } from 'node:util';
import { Hypervisor } from '../native/libvirt.js';

const run = promisify(execFile);

export const SYSTEM_URI = 'qemu:///system';
/** Where scripts/ensure-qemu.sh records the pids of the daemons it started. */
export const STATE_DIR = process.env.QUARK_QEMU_STATE ?? '/run/quark-qemu';

export type DaemonName = 'virtlogd' | 'libvirtd';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** The pid of the running daemon, from its pid file, if that pid is alive and is that daemon. */
export function runningPid(name: DaemonName): number | null {
  try {
    const pid = Number(readFileSync(`/run/${name}.pid`, 'utf8').trim());
    if (!Number.isInteger(pid) || pid <= 0) return null;
    const cmdline = readFileSync(`/proc/${pid}/cmdline`, 'utf8');
    return cmdline.includes(name) ? pid : null;
  } catch {
    return null;
  }
}

function recordedByScript(name: DaemonName): number | null {
  try {
    return Number(readFileSync(`${STATE_DIR}/${name}.pid`, 'utf8').trim()) || null;
  } catch {
    return null;
  }
}

/** Why this machine cannot run real guests through libvirtd, or null if it can try. */
export function qemuUnavailable(): string | null {
  if (process.getuid?.() !== 0) return 'real guests need root (libvirtd, virtlogd and qemu:///system)';
  const missing = ['/usr/sbin/libvirtd', '/usr/sbin/virtlogd', '/usr/bin/qemu-system-x86_64', '/usr/bin/qemu-img', '/usr/bin/mcopy', '/usr/sbin/mkfs.vfat', '/usr/bin/syslinux']
    .filter((p) => !existsSync(p));
  if (missing.length > 0) return `missing ${missing.join(', ')}: run scripts/ensure-qemu.sh`;
  return null;
}

async function waitUntil(what: string, timeoutMs: number, ok: () => boolean | Promise<boolean>): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (await ok()) return;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(100);
  }
}

/** Whether libvirtd answers on qemu:///system. */
export async function libvirtdAnswers(): Promise<boolean> {
  try {
    const hv = await Hypervisor.open(SYSTEM_URI, { callTimeoutMs: 5000 });
    await hv.close();
    return true;
  } catch {
    return false;
  }
}

async function startDaemon(name: DaemonName): Promise<number> {
  // -d forks into the background; the parent exits once the daemon is set up.
  await new Promise<void>((resolve, reject) => {
    const p = spawn(name, ['-d'], { stdio: 'ignore' });
    p.once('error', reject);
    p.once('exit', (code) => (code === 0 ? resolve() : reject(new Error(`${name} -d exited with ${code}`))));
  });
  let pid: number | null = null;
  await waitUntil(`${name}'s pid file`, 20_000, () => (pid = runningPid(name)) !== null);
  if (name === 'libvirtd') await waitUntil('libvirtd to answer on qemu:///system', 60_000, libvirtdAnswers);
  return pid!;
}

async function stopPid(pid: number, timeoutMs = 15_000): Promise<void> {
  try {
    process.kill(pid, 'SIGTERM');
  } catch {
    return;
  }
  const gone = () => !existsSync(`/proc/${pid}`);
  try {
    await waitUntil(`pid ${pid} to exit`, timeoutMs, gone);
  } catch {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      /* gone meanwhile */
    }
  }
}

export class QemuHost {
  /** The daemons this object started (by pid); stop() ends exactly these. */
  readonly started = new Map<DaemonName, number>();

  private constructor(private readonly log: (line: string) => void) {}

  /** Starts virtlogd and libvirtd where they are not running; waits until libvirtd answers. */
  static async ensure(o: { log?: (line: string) => void } = {}): Promise<QemuHost> {
    const host = new QemuHost(o.log ?? (() => {}));
    for (const name of ['virtlogd', 'libvirtd'] as const) {
      if (runningPid(name) !== null) continue;
      const pid = await startDaemon(name);
      host.started.set(name, pid);
      host.log(`started ${name} (pid ${pid})`);
    }
    await waitUntil('libvirtd to answer on qemu:///system', 60_000, libvirtdAnswers);
    return host;
  }

  /** Whether this process may restart libvirtd: it started it, or scripts/ensure-qemu.sh did. */
  ownsLibvirtd(): boolean {
    const pid = runningPid('libvirtd');
    return pid !== null && (this.started.get('libvirtd') === pid || recordedByScript('libvirtd') === pid);
  }

  /**
   * Stops libvirtd (SIGTERM, by pid), waits `downMs`, and starts it again. Running guests keep
   * running: libvirtd finds its QEMU processes again at start. Only for a libvirtd that is ours.
   */
  async restartLibvirtd(downMs = 0): Promise<{ oldPid: number; newPid: number }> {
    const oldPid = runningPid('libvirtd');
    if (oldPid === null) throw new Error('libvirtd is not running');
    if (!this.ownsLibvirtd()) throw new Error(`libvirtd (pid ${oldPid}) was not started by Quark; not restarting it`);
    const byScript = recordedByScript('libvirtd') === oldPid;
    await stopPid(oldPid);
    if (downMs > 0) await sleep(downMs);
    const newPid = await startDaemon('libvirtd');
    if (byScript) writeFileSync(`${STATE_DIR}/libvirtd.pid`, `${newPid}\n`);
    else this.started.set('libvirtd', newPid);
    this.log(`restarted libvirtd (pid ${oldPid} -> ${newPid})`);
    return { oldPid, newPid };
  }

  /** Stops the daemons this object started, libvirtd first (it holds virtlogd's connections). */
  async stop(): Promise<void> {
    for (const name of ['libvirtd', 'virtlogd'] as const) {
      const pid = this.started.get(name);
      if (pid === undefined) continue;
      if (runningPid(name) === pid) {
        await stopPid(pid);
        this.log(`stopped ${name} (pid ${pid})`);
      }
      this.started.delete(name);
    }
  }
}

/** `virsh` for the odd look a test wants to take the way an operator would. */
export async function virsh(...args: string[]): Promise<string> {
  const { stdout } = await run('virsh', ['-c', SYSTEM_URI, ...args]);
  return stdout;
}
