// The libvirt effect of each step. Every effect is idempotent: re-running it after a crash finds
// the work already done and succeeds, so a work unit resumed from ZooKeeper never does it twice.
import type { Hypervisor } from '../native/libvirt.js';
import { LibvirtError } from '../native/libvirt.js';
import type { StepName } from '../actors/kinds.js';
import { StepError } from '../actors/work-unit.js';
import type { BuildRequest, Consumes } from '../common/model.js';
import type { ServerId } from '../common/ids.js';
import type { GuestHost } from '../guest/host.js';

export const domainName = (vm: ServerId | string): string => `quark-${vm}`;
export const vmIdOfDomain = (name: string): string | null => (name.startsWith('quark-') ? name.slice(6) : null);

export interface StepContext {
  hv: Hypervisor;
  vm: ServerId;
  consumes: Consumes;
  /** Local admission check for allocate_*: resources this compute has committed, excluding this unit. */
  admit(kind: 'vcpu' | 'storage'): void;
  /** How long a graceful shutdown may take before the domain is forced off. */
  shutdownTimeoutMs: number;
  /** The compute's id, kept in each domain's metadata (reconcile touches only its own). */
  owner?: string;
  /** Real guests (QEMU): storage, seed, devices. Absent on the test driver. */
  guest?: GuestHost;
  /** The build's request: the image, user data and ports a real guest needs. */
  request?: BuildRequest;
  /** How long steps retry while libvirt is unreachable (libvirtd restarting). */
  libvirtRetryMs?: number;
  /** Told of each retry, for the log. */
  onRetry?: (err: unknown, attempt: number) => void;
}

const isCode = (e: unknown, ...codes: string[]): boolean => e instanceof LibvirtError && codes.includes(e.code);

async function stateOf(hv: Hypervisor, name: string) {
  try {
    return (await hv.info(name)).state;
  } catch (e) {
    if (isCode(e, 'NO_DOMAIN')) return null;
    throw e;
  }
}

/**
 * Defining is idempotent in libvirt (the same name and uuid again only rewrites the persistent
 * definition, even of a running domain), so the domain is defined straight away: looking it up
 * first cost a second call, and for a new domain a NO_DOMAIN error, on every boot.
 */
export async function ensureDefined(hv: Hypervisor, vm: ServerId, c: Consumes, owner?: string): Promise<void> {
  const name = domainName(vm);
  if (hv.runsGuests) {
    // A real guest's definition carries its disk and devices, which this call does not know:
    // it only checks the domain is there (libvirt keeps persistent domains across restarts).
    if ((await stateOf(hv, name)) === null) throw new StepError('DOMAIN_MISSING', `domain ${name} is not defined`);
    return;
  }
  try {
    await hv.define({ name, uuid: vm, vcpus: c.vcpus, ram_mb: c.ram_mb, disk_gb: c.disk_gb, ...(owner ? { owner } : {}) });
  } catch (e) {
    // A concurrent or earlier define won; what matters is that the domain exists now.
    if ((await stateOf(hv, name)) === null) throw e;
  }
}

/** Starts the domain; its state is looked up only when starting fails (already running, paused, gone). */
export async function ensureRunning(hv: Hypervisor, vm: ServerId): Promise<void> {
  const name = domainName(vm);
  try {
    await hv.start(name);
  } catch (e) {
    if (!isCode(e, 'OPERATION_INVALID', 'NO_DOMAIN')) throw e;
    const st = await stateOf(hv, name);
    if (st === null) throw new StepError('DOMAIN_MISSING', `domain ${name} is not defined`);
    if (st === 'running') return;
    if (st === 'paused') throw new StepError('DOMAIN_PAUSED', `domain ${name} is paused`);
    throw e;
  }
}

/**
 * The start step, defining the domain again first if libvirt no longer has it. A compute killed
 * between a build's define and start loses the domain with the test driver (it lives in the
 * process), and its reconcile defines only VMs already in managing/ (a build is there once it
 * commits): without this the resumed build would fail DOMAIN_MISSING. The definition comes from
 * the unit's own record (its consumes, and for a real guest its request), as define made it.
 */
async function startDefining(ctx: StepContext): Promise<void> {
  try {
    return await ensureRunning(ctx.hv, ctx.vm);
  } catch (e) {
    if (!(e instanceof StepError && e.code === 'DOMAIN_MISSING')) throw e;
    if (ctx.guest) {
      // A real guest's definition needs its request (image, ports); a start action has none.
      if (!ctx.request) throw e;
      await ctx.guest.define(domainName(ctx.vm), ctx.vm, ctx.request, ctx.consumes);
    } else {
      await ensureDefined(ctx.hv, ctx.vm, ctx.consumes, ctx.owner);
    }
    return ensureRunning(ctx.hv, ctx.vm);
  }
}

export async function ensureStopped(hv: Hypervisor, vm: ServerId, timeoutMs: number): Promise<void> {
  const name = domainName(vm);
  let st = await stateOf(hv, name);
  if (st === null || st === 'shutoff') return;
  try {
    await hv.shutdown(name);
  } catch (e) {
    if (!isCode(e, 'OPERATION_INVALID')) throw e;
  }
  const deadline = Date.now() + timeoutMs;
  while ((st = await stateOf(hv, name)) !== null && st !== 'shutoff' && Date.now() < deadline) {
    await new Promise((r) => setTimeout(r, 100));
  }
  if (st !== null && st !== 'shutoff') {
    try {
      await hv.destroy(name);
    } catch (e) {
      // The guest finished powering off between the last look and the destroy.
      if (!isCode(e, 'OPERATION_INVALID')) throw e;
    }
  }
}

/** No domain, and with `guest`, no overlay, seed or console file either. */
export async function ensureUndefined(hv: Hypervisor, vm: ServerId, guest?: GuestHost): Promise<void> {
  const name = domainName(vm);
  const st = await stateOf(hv, name);
  if (st !== null) {
    if (st !== 'shutoff') {
      try {
        await hv.destroy(name);
      } catch (e) {
        // It stopped meanwhile (a guest that powered itself off).
        if (!isCode(e, 'OPERATION_INVALID')) throw e;
      }
    }
    try {
      await hv.undefine(name);
    } catch (e) {
      if (!isCode(e, 'NO_DOMAIN')) throw e;
    }
  }
  await guest?.removeStorage(vm);
}

const RETRYABLE = ['CONNECT_FAILED', 'TIMEOUT'];

/**
 * Runs an idempotent effect again while libvirt cannot be reached (libvirtd restarting: the
 * connection re-opens on the next call), backing off up to a second, for at most `forMs`.
 */
export async function retryingLibvirt<T>(
  forMs: number,
  effect: () => Promise<T>,
  onRetry?: (err: unknown, attempt: number) => void,
): Promise<T> {
  const deadline = Date.now() + forMs;
  for (let attempt = 1, delay = 100; ; attempt++, delay = Math.min(delay * 2, 1000)) {
    try {
      return await effect();
    } catch (e) {
      if (!isCode(e, ...RETRYABLE) || Date.now() + delay > deadline) throw e;
      onRetry?.(e, attempt);
      await new Promise((r) => setTimeout(r, delay));
    }
  }
}

export async function runStepEffect(step: StepName, ctx: StepContext): Promise<void> {
  return retryingLibvirt(ctx.libvirtRetryMs ?? 60_000, () => stepEffect(step, ctx), ctx.onRetry);
}

async function stepEffect(step: StepName, ctx: StepContext): Promise<void> {
  switch (step) {
    case 'allocate_vcpu':
      return ctx.admit('vcpu');
    case 'allocate_storage':
      ctx.admit('storage');
      return ctx.guest?.prepareStorage(ctx.vm, ctx.request, ctx.consumes);
    case 'define':
      if (ctx.guest) return ctx.guest.define(domainName(ctx.vm), ctx.vm, ctx.request, ctx.consumes);
      return ensureDefined(ctx.hv, ctx.vm, ctx.consumes, ctx.owner);
    case 'start':
      return startDefining(ctx);
    case 'stop':
      return ensureStopped(ctx.hv, ctx.vm, ctx.shutdownTimeoutMs);
    case 'reboot': {
      const st = await stateOf(ctx.hv, domainName(ctx.vm));
      if (st !== 'running') throw new StepError('VM_NOT_RUNNING', `cannot reboot: domain is ${st ?? 'missing'}`);
      return ctx.hv.reboot(domainName(ctx.vm));
    }
    case 'undefine':
      return ensureUndefined(ctx.hv, ctx.vm, ctx.guest);
    case 'release':
      // The capacity goes back in the final commit's transaction, with the managing/ entry.
      return;
  }
}
