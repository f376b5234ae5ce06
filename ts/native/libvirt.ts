// The typed libvirt API the rest of Quark uses. Every call runs in the native addon as an
// async task off the event loop; every failure arrives as a LibvirtError with a stable code.
// Every call is bounded (TIMEOUT); after libvirtd restarts the addon opens the connection again
// and the call that saw it die fails with CONNECT_FAILED, which callers may retry.
import { nativeExport } from './load.js';
import type { Hypervisor as NativeHypervisor, NativeDomainInfo } from './addon.js';
import { observers } from '../common/observe.js';

/** libvirt's built-in test driver: a real libvirt hypervisor that needs no KVM. */
export const DEFAULT_LIBVIRT_URI = 'test:///default';

export type DomainState =
  | 'nostate'
  | 'running'
  | 'blocked'
  | 'paused'
  | 'shutdown'
  | 'shutoff'
  | 'crashed'
  | 'pmsuspended';

const DOMAIN_STATES: ReadonlySet<string> = new Set<DomainState>([
  'nostate',
  'running',
  'blocked',
  'paused',
  'shutdown',
  'shutoff',
  'crashed',
  'pmsuspended',
]);

export interface DomainSpec {
  name: string;
  /** Canonical 8-4-4-4-12 form; libvirt makes one up when absent. */
  uuid?: string;
  vcpus: number;
  ram_mb: number;
  /** Kept in the domain's Quark metadata; the volume itself is the storage step's work. */
  disk_gb: number;
  /** The compute that owns the domain, kept in its metadata (reconcile touches only its own). */
  owner?: string;
  /** A real guest's devices; ignored by the test driver. */
  guest?: GuestSpec;
}

/** Which accelerator runs a guest: KVM, or QEMU's own translator (TCG). */
export type Accel = 'kvm' | 'tcg';
/** The guest CPU: the host's own, libvirt's model of it, or the hypervisor's default. */
export type CpuMode = 'host-passthrough' | 'host-model' | 'default';

export interface PortForward {
  /** TCP port of the host's 127.0.0.1. */
  host_port: number;
  guest_port: number;
}

/** user: QEMU's user-mode network (isolated: the guest reaches nothing, only the forwards reach it). */
export type Nic =
  | { kind: 'none' }
  | { kind: 'user'; isolated: boolean; forwards: PortForward[] }
  | { kind: 'network'; name: string }
  | { kind: 'bridge'; name: string };

export interface GuestSpec {
  accel: Accel;
  cpu: CpuMode;
  disk_path: string;
  disk_format: 'qcow2' | 'raw';
  /** A raw disk labelled CIDATA (the NoCloud seed), attached read-only. */
  seed_path?: string;
  /** The serial console is appended to this file. */
  console_log: string;
  nic: Nic;
  /** The NIC's <bandwidth> where the backend supports it (0: none). */
  bandwidth_mbps: number;
}

export interface HostInfo {
  cpus: number;
  memory_kib: number;
  model: string;
}

export interface VolumeInfo {
  name: string;
  path: string;
  capacity_bytes: number;
  allocation_bytes: number;
}

/** The driver behind a connection: test, kvm (QEMU with /dev/kvm usable), qemu, or null. */
export type HypervisorKind = 'test' | 'kvm' | 'qemu' | null;

export interface DomainInfo {
  name: string;
  uuid: string;
  state: DomainState;
  vcpus: number;
  /** Configured (maximum) memory in KiB. */
  memory_kib: number;
  persistent: boolean;
  /** The compute id in the domain's Quark metadata, if any. */
  owner?: string;
}

/** The codes the addon gives its errors (crates/quark-native/src/error.rs). */
export type LibvirtErrorCode =
  | 'NO_DOMAIN'
  | 'DOMAIN_EXISTS'
  | 'OPERATION_INVALID'
  | 'CONNECT_FAILED'
  | 'NO_POOL'
  | 'NO_VOLUME'
  | 'CLOSED'
  | 'INVALID_ARG'
  | 'UNSUPPORTED'
  | 'INTERNAL'
  /** Set here, not by the addon: the call did not answer within the connection's bound. */
  | 'TIMEOUT';

const ERROR_CODES: ReadonlySet<string> = new Set<LibvirtErrorCode>([
  'NO_DOMAIN',
  'DOMAIN_EXISTS',
  'OPERATION_INVALID',
  'CONNECT_FAILED',
  'NO_POOL',
  'NO_VOLUME',
  'TIMEOUT',
  'CLOSED',
  'INVALID_ARG',
  'UNSUPPORTED',
  'INTERNAL',
]);

// napi-rs's own codes for an argument of the wrong JS type, thrown before Rust runs.
const NAPI_ARGUMENT_CODES: ReadonlySet<string> = new Set([
  'InvalidArg',
  'ObjectExpected',
  'StringExpected',
  'NameExpected',
  'FunctionExpected',
  'NumberExpected',
  'BooleanExpected',
  'ArrayExpected',
  'BigintExpected',
]);

export class LibvirtError extends Error {
  readonly code: LibvirtErrorCode;
  /** libvirt's virErrorNumber, when libvirt itself raised the error. */
  readonly libvirtCode?: number;

  constructor(
    code: LibvirtErrorCode,
    message: string,
    libvirtCode?: number,
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = 'LibvirtError';
    this.code = code;
    if (libvirtCode !== undefined) this.libvirtCode = libvirtCode;
  }
}

/** The one conversion from whatever the addon threw to a LibvirtError. */
export function toLibvirtError(err: unknown): LibvirtError {
  if (err instanceof LibvirtError) return err;
  const e = err as { code?: unknown; libvirtCode?: unknown; message?: unknown } | null;
  const message = typeof e?.message === 'string' ? e.message : String(err);
  const rawCode = typeof e?.code === 'string' ? e.code : undefined;
  const libvirtCode = typeof e?.libvirtCode === 'number' ? e.libvirtCode : undefined;
  let code: LibvirtErrorCode = 'INTERNAL';
  if (rawCode !== undefined && ERROR_CODES.has(rawCode)) code = rawCode as LibvirtErrorCode;
  else if (rawCode !== undefined && NAPI_ARGUMENT_CODES.has(rawCode)) code = 'INVALID_ARG';
  return new LibvirtError(code, message, libvirtCode, { cause: err });
}

/** How long a call may take before it fails with TIMEOUT, unless the connection says otherwise. */
export const DEFAULT_CALL_TIMEOUT_MS = 60_000;

/**
 * Runs one addon call, bounded by `timeoutMs`. A call that times out keeps its worker thread
 * until libvirt answers (or the keepalive gives the connection up); the caller moves on.
 */
async function call<T>(fn: () => Promise<T>, timeoutMs = 0, what = 'libvirt call'): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  try {
    const work = fn();
    if (timeoutMs <= 0) return await work;
    const late = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new LibvirtError('TIMEOUT', `TIMEOUT: ${what} did not answer within ${timeoutMs} ms`)), timeoutMs);
    });
    // A late failure of the abandoned call must not surface as an unhandled rejection.
    work.catch(() => {});
    return await Promise.race([work, late]);
  } catch (err) {
    throw toLibvirtError(err);
  } finally {
    clearTimeout(timer);
  }
}

function toDomainInfo(raw: NativeDomainInfo): DomainInfo {
  if (!DOMAIN_STATES.has(raw.state)) {
    throw new LibvirtError('INTERNAL', `libvirt reported an unknown domain state '${raw.state}'`);
  }
  return {
    name: raw.name,
    uuid: raw.uuid,
    state: raw.state as DomainState,
    vcpus: raw.vcpus,
    memory_kib: raw.memory_kib,
    persistent: raw.persistent,
    ...(raw.owner ? { owner: raw.owner } : {}),
  };
}

const KINDS: ReadonlySet<string> = new Set(['test', 'kvm', 'qemu']);

export interface OpenOptions {
  /** Bound on every call (default DEFAULT_CALL_TIMEOUT_MS); 0: unbounded. */
  callTimeoutMs?: number;
}

/** One libvirt connection. Safe to share: the addon serialises nothing, libvirt is thread-safe. */
export class Hypervisor {
  readonly uri: string;
  readonly kind: HypervisorKind;
  readonly #native: NativeHypervisor;
  readonly #timeoutMs: number;

  private constructor(native: NativeHypervisor, timeoutMs: number) {
    this.#native = native;
    this.uri = native.uri;
    this.kind = native.kind !== null && KINDS.has(native.kind) ? (native.kind as HypervisorKind) : null;
    this.#timeoutMs = timeoutMs;
  }

  static async open(uri: string = DEFAULT_LIBVIRT_URI, o: OpenOptions = {}): Promise<Hypervisor> {
    const timeoutMs = o.callTimeoutMs ?? DEFAULT_CALL_TIMEOUT_MS;
    const native = await call(() => nativeExport('Hypervisor').open(uri), timeoutMs, `opening ${uri}`);
    return new Hypervisor(native, timeoutMs);
  }

  /** Whether this connection's domains are real guests (QEMU), not the test driver's records. */
  get runsGuests(): boolean {
    return this.kind === 'kvm' || this.kind === 'qemu';
  }

  /** `op` names the call in the metrics; `what` says it with its arguments in errors. */
  async #call<T>(what: string, fn: () => Promise<T>, op = what): Promise<T> {
    const report = observers.libvirtCall;
    if (!report) return call(fn, this.#timeoutMs, what);
    const start = performance.now();
    try {
      const out = await call(fn, this.#timeoutMs, what);
      report(op, (performance.now() - start) / 1000, 'ok');
      return out;
    } catch (e) {
      report(op, (performance.now() - start) / 1000, (e as LibvirtError).code ?? 'OTHER');
      throw e;
    }
  }

  /** Defines the domain persistently; the same name and uuid again updates it (idempotent). */
  async define(spec: DomainSpec): Promise<DomainInfo> {
    const { name, uuid, vcpus, ram_mb, disk_gb, owner, guest } = spec;
    const raw = await this.#call(`define ${name}`, () => this.#native.define({ name, uuid, vcpus, ram_mb, disk_gb, owner, guest }), 'define');
    return toDomainInfo(raw);
  }

  start(name: string): Promise<void> {
    return this.#call(`start ${name}`, () => this.#native.start(name), 'start');
  }

  /** Asks the guest to power off (ACPI on QEMU); resolves once asked, not once off. */
  shutdown(name: string): Promise<void> {
    return this.#call(`shutdown ${name}`, () => this.#native.shutdown(name), 'shutdown');
  }

  /** Forces the domain off at once. */
  destroy(name: string): Promise<void> {
    return this.#call(`destroy ${name}`, () => this.#native.destroy(name), 'destroy');
  }

  /** Asks the guest to reboot (ACPI on QEMU). */
  reboot(name: string): Promise<void> {
    return this.#call(`reboot ${name}`, () => this.#native.reboot(name), 'reboot');
  }

  /** Removes the definition (a running domain keeps running as a transient one). */
  undefine(name: string): Promise<void> {
    return this.#call(`undefine ${name}`, () => this.#native.undefine(name), 'undefine');
  }

  /** Every domain, active and inactive. */
  async list(): Promise<DomainInfo[]> {
    const raw = await this.#call('list', () => this.#native.list());
    return raw.map(toDomainInfo);
  }

  async info(name: string): Promise<DomainInfo> {
    return toDomainInfo(await this.#call(`info ${name}`, () => this.#native.info(name), 'info'));
  }

  /** The host's CPUs and memory as libvirt sees them. */
  hostInfo(): Promise<HostInfo> {
    return this.#call('host info', () => this.#native.hostInfo(), 'host_info');
  }

  /** A directory pool `name` at `path` exists, runs, and starts with libvirtd. */
  ensurePool(name: string, path: string): Promise<void> {
    return this.#call(`ensure pool ${name}`, () => this.#native.ensurePool(name, path), 'ensure_pool');
  }

  /** A qcow2 volume over `backing` (copy on write); an existing one of that name is the answer. */
  createOverlay(pool: string, vol: string, capacityBytes: number, backing: string, backingFormat: 'qcow2' | 'raw'): Promise<VolumeInfo> {
    return this.#call(`create volume ${vol}`, () => this.#native.createOverlay(pool, vol, capacityBytes, backing, backingFormat), 'create_overlay');
  }

  /** Deletes a volume; false when there was none. */
  deleteVolume(pool: string, vol: string): Promise<boolean> {
    return this.#call(`delete volume ${vol}`, () => this.#native.deleteVolume(pool, vol), 'delete_volume');
  }

  /** The pool's volumes, after a refresh (files written beside libvirt count). */
  listVolumes(pool: string): Promise<VolumeInfo[]> {
    return this.#call(`list volumes of ${pool}`, () => this.#native.listVolumes(pool), 'list_volumes');
  }

  /** Later calls reject with code CLOSED. Closing twice is fine. */
  close(): Promise<void> {
    return this.#call('close', () => this.#native.close());
  }
}
