// The typed libvirt API the rest of Quark uses. Every call runs in the native addon as an
// async task off the event loop; every failure arrives as a LibvirtError with a stable code.
import { nativeExport } from './load.js';
import type { Hypervisor as NativeHypervisor, NativeDomainInfo } from './addon.js';

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
}

export interface DomainInfo {
  name: string;
  uuid: string;
  state: DomainState;
  vcpus: number;
  /** Configured (maximum) memory in KiB. */
  memory_kib: number;
  persistent: boolean;
}

/** The codes the addon gives its errors (crates/quark-native/src/error.rs). */
export type LibvirtErrorCode =
  | 'NO_DOMAIN'
  | 'DOMAIN_EXISTS'
  | 'OPERATION_INVALID'
  | 'CONNECT_FAILED'
  | 'CLOSED'
  | 'INVALID_ARG'
  | 'UNSUPPORTED'
  | 'INTERNAL';

const ERROR_CODES: ReadonlySet<string> = new Set<LibvirtErrorCode>([
  'NO_DOMAIN',
  'DOMAIN_EXISTS',
  'OPERATION_INVALID',
  'CONNECT_FAILED',
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

async function call<T>(fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (err) {
    throw toLibvirtError(err);
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
  };
}

/** One libvirt connection. Safe to share: the addon serialises nothing, libvirt is thread-safe. */
export class Hypervisor {
  readonly uri: string;
  readonly #native: NativeHypervisor;

  private constructor(native: NativeHypervisor) {
    this.#native = native;
    this.uri = native.uri;
  }

  static async open(uri: string = DEFAULT_LIBVIRT_URI): Promise<Hypervisor> {
    const native = await call(() => nativeExport('Hypervisor').open(uri));
    return new Hypervisor(native);
  }

  /** Defines the domain persistently; the same name and uuid again updates it (idempotent). */
  async define(spec: DomainSpec): Promise<DomainInfo> {
    const { name, uuid, vcpus, ram_mb, disk_gb } = spec;
    const raw = await call(() => this.#native.define({ name, uuid, vcpus, ram_mb, disk_gb }));
    return toDomainInfo(raw);
  }

  start(name: string): Promise<void> {
    return call(() => this.#native.start(name));
  }

  /** Asks the guest to power off; resolves once asked, not once off. */
  shutdown(name: string): Promise<void> {
    return call(() => this.#native.shutdown(name));
  }

  /** Forces the domain off at once. */
  destroy(name: string): Promise<void> {
    return call(() => this.#native.destroy(name));
  }

  reboot(name: string): Promise<void> {
    return call(() => this.#native.reboot(name));
  }

  /** Removes the definition (a running domain keeps running as a transient one). */
  undefine(name: string): Promise<void> {
    return call(() => this.#native.undefine(name));
  }

  /** Every domain, active and inactive. */
  async list(): Promise<DomainInfo[]> {
    const raw = await call(() => this.#native.list());
    return raw.map(toDomainInfo);
  }

  async info(name: string): Promise<DomainInfo> {
    return toDomainInfo(await call(() => this.#native.info(name)));
  }

  /** Later calls reject with code CLOSED. Closing twice is fine. */
  close(): Promise<void> {
    return call(() => this.#native.close());
  }
}
