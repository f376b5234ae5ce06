// `quark compute`'s real-guest options, turned into a GuestHost (or none, on the test driver).
import { resolve, join } from 'node:path';
import type { Logger } from '../common/log.js';
import type { Accel, CpuMode, Hypervisor } from '../native/libvirt.js';
import { GuestHost, parseGuestNetwork } from './host.js';

const CPU_MODES: readonly CpuMode[] = ['host-passthrough', 'host-model', 'default'];

export async function openGuestHost(
  hv: Hypervisor,
  computeId: string,
  v: Record<string, string | boolean | undefined>,
  log: Logger,
): Promise<GuestHost | undefined> {
  if (!hv.runsGuests) return undefined;
  const accel = v.accel as string;
  if (accel !== 'auto' && accel !== 'kvm' && accel !== 'tcg') throw new Error(`--accel must be auto, kvm or tcg, got ${accel}`);
  const cpu = v.cpu as string | undefined;
  if (cpu !== undefined && !CPU_MODES.includes(cpu as CpuMode)) throw new Error(`--cpu must be one of ${CPU_MODES.join(', ')}`);
  const port = Number(v['console-port']);
  if (!Number.isInteger(port) || port < 0 || port > 65535) throw new Error(`--console-port must be a port number, got ${String(v['console-port'])}`);
  const probeImage = v['probe-image'] as string | undefined;
  return GuestHost.open({
    hv,
    computeId,
    stateDir: resolve((v['state-dir'] as string | undefined) ?? join('.quark', 'computes', computeId)),
    network: parseGuestNetwork(v['guest-network'] as string),
    accel: accel as 'auto' | Accel,
    ...(cpu ? { cpu: cpu as CpuMode } : {}),
    probeImage: probeImage
      ? async () => resolve(probeImage)
      : async () => {
          const { buildTinyImage } = await import('../dev/tiny-image.js');
          return (await buildTinyImage({ log: (line) => log.info(line) })).qcow2;
        },
    ...(v['probe-cache'] ? { probeCache: resolve(v['probe-cache'] as string) } : {}),
    log,
    consolePort: port,
    consoleHost: v['console-host'] as string,
  });
}
