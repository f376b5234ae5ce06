// Loads Quark's native addon (`crates/quark-native`, built by `npm run build:native` into
// `<repo>/native/`). Loading is lazy: importing a module that uses the addon never throws,
// only the first call that needs it does, with a message that says how to build it.
//
// Its types are the ones napi-rs generates from the Rust faces (`--dts index.d.ts`), kept in
// git as ./addon.d.ts so that typechecking needs no Rust build; ./addon-types.test.ts fails
// when a build generates anything else (refresh it with `npm run native:types`).
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

/** The addon's exports, as napi-rs declares them. */
export type NativeAddon = typeof import('./addon.js');

/** Set to a `.node` file to load that one instead of searching `<repo>/native/`. */
export const NATIVE_PATH_ENV = 'QUARK_NATIVE_PATH';

export class NativeAddonMissingError extends Error {
  readonly code = 'NATIVE_ADDON_MISSING';
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'NativeAddonMissingError';
  }
}

let cached: NativeAddon | undefined;

/** Loads the addon once per process and returns its exports. */
export function loadNative(): NativeAddon {
  cached ??= loadFrom(addonPath());
  return cached;
}

/** One export of the addon; throws if a stale build lacks it. */
export function nativeExport<K extends keyof NativeAddon>(name: K): NativeAddon[K] {
  const addon = loadNative();
  const value = addon[name] as NativeAddon[K] | undefined;
  if (value === undefined) {
    throw new NativeAddonMissingError(
      `the native addon has no export '${name}'; it is probably stale: run \`npm run build:native\``,
    );
  }
  return value;
}

/** The `.node` file `loadNative` would load. */
export function addonPath(): string {
  const override = process.env[NATIVE_PATH_ENV];
  if (override) return override;
  const root = repoRoot();
  const dir = join(root, 'native');
  for (const file of candidateFileNames()) {
    const path = join(dir, file);
    if (existsSync(path)) return path;
  }
  throw new NativeAddonMissingError(
    `Quark's native addon is not built: none of ${candidateFileNames().join(', ')} is in ${dir}. ` +
      'Run `npm run build:native` (needs cargo, pkg-config and libvirt-dev).',
  );
}

function loadFrom(path: string): NativeAddon {
  const require = createRequire(import.meta.url);
  try {
    return require(path) as NativeAddon;
  } catch (err) {
    throw new NativeAddonMissingError(
      `could not load the native addon ${path}: ${(err as Error).message}. ` +
        'Rebuild it with `npm run build:native`.',
      { cause: err },
    );
  }
}

// This file runs as ts/native/load.ts (vitest, tsx) and as dist/ts/native/load.js (compiled):
// walk up to the first directory holding package.json rather than count levels.
function repoRoot(): string {
  const start = dirname(fileURLToPath(import.meta.url));
  let dir = start;
  for (;;) {
    if (existsSync(join(dir, 'package.json'))) return dir;
    const parent = dirname(dir);
    if (parent === dir) {
      throw new NativeAddonMissingError(`could not find Quark's repository root above ${start}`);
    }
    dir = parent;
  }
}

// napi-rs names the file after the platform: index.linux-x64-gnu.node, index.darwin-arm64.node, ...
function candidateFileNames(): string[] {
  const { platform, arch } = process;
  const names: string[] = [];
  if (platform === 'linux') {
    const libcs = isMusl() ? ['musl', 'gnu'] : ['gnu', 'musl'];
    for (const libc of libcs) names.push(`index.linux-${arch}-${libc}.node`);
  } else if (platform === 'win32') {
    names.push(`index.win32-${arch}-msvc.node`);
  } else {
    names.push(`index.${platform}-${arch}.node`);
  }
  names.push('index.node');
  return names;
}

function isMusl(): boolean {
  const report = process.report?.getReport() as { header?: { glibcVersionRuntime?: string } } | undefined;
  return !report?.header?.glibcVersionRuntime;
}
