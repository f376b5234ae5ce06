// Where a command's settings come from, for a process run by systemd on a host as much as for one
// typed at a terminal. First found wins:
//   1. the flag (--tls-cert FILE);
//   2. the environment: QUARK_<FLAG> for the flags every process shares (QUARK_ZK, QUARK_ROOT,
//      QUARK_SESSION_TIMEOUT_MS), QUARK_<COMMAND>_<FLAG> for the others (QUARK_API_TLS_CERT,
//      QUARK_COMPUTE_ID, QUARK_ZK_SERVER_ENSEMBLE): upper case, dashes and spaces as underscores;
//   3. the settings file, --config FILE or $QUARK_CONFIG: a JSON object whose plain keys apply to
//      every command and whose object-valued keys are sections for one command each ("api",
//      "orc", "compute", "zk-server"), a section's keys winning over the plain ones:
//        {"zk": "10.0.0.1:2181,10.0.0.2:2181,10.0.0.3:2181", "session-timeout-ms": 4000,
//         "api": {"host": "10.0.0.5", "port": 8443, "tls-cert": "/etc/quark/api.pem", …}}
//   4. the built-in default.
// A key in a command's section that the command does not take is refused (a typo must not pass
// silently); plain keys are only used by the commands that take them.
import { readFileSync } from 'node:fs';
import type { Command } from 'commander';

/** Flags whose environment variable carries no command name. */
export const SHARED_FLAGS = new Set(['zk', 'root', 'session-timeout-ms']);

export type SettingValue = string | number | boolean;
export interface SettingsFile {
  path: string;
  common: Record<string, SettingValue>;
  sections: Record<string, Record<string, SettingValue>>;
}

export class SettingsError extends Error {}

/** A command's name as sections and variables spell it: 'api', 'zk-server'. */
export function commandKey(cmd: Command): string {
  const names: string[] = [];
  for (let c: Command | null = cmd; c?.parent; c = c.parent) names.unshift(c.name());
  return names.join('-');
}

/** The environment variable for a flag of a command. */
export function envName(command: string, flag: string): string {
  const name = SHARED_FLAGS.has(flag) ? flag : `${command}-${flag}`;
  return `QUARK_${name.toUpperCase().replace(/[^A-Z0-9]+/g, '_')}`;
}

const isValue = (v: unknown): v is SettingValue => typeof v === 'string' || typeof v === 'boolean' || (typeof v === 'number' && Number.isFinite(v));

/** Parses a settings file's text; throws SettingsError naming the file and the bad key. */
export function parseSettings(path: string, text: string): SettingsFile {
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (e) {
    throw new SettingsError(`${path}: not JSON (${(e as Error).message})`);
  }
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) throw new SettingsError(`${path}: expected a JSON object`);
  const out: SettingsFile = { path, common: {}, sections: {} };
  for (const [k, v] of Object.entries(raw)) {
    if (isValue(v)) out.common[k] = v;
    else if (typeof v === 'object' && v !== null && !Array.isArray(v)) {
      const section: Record<string, SettingValue> = {};
      for (const [sk, sv] of Object.entries(v)) {
        if (!isValue(sv)) throw new SettingsError(`${path}: ${k}.${sk} must be a string, a number or a boolean`);
        section[sk] = sv;
      }
      out.sections[k] = section;
    } else throw new SettingsError(`${path}: ${k} must be a string, a number, a boolean or a section object`);
  }
  return out;
}

export function loadSettings(path: string): SettingsFile {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (e) {
    throw new SettingsError(`cannot read the settings file ${path}: ${(e as Error).message}`);
  }
  return parseSettings(path, text);
}

/**
 * Fills every option of `cmd` the command line left unset (or at its default) from the
 * environment, then the settings file (`--config`, else $QUARK_CONFIG). Commander records where
 * each value came from ('env', 'config'), so a later reader can tell.
 */
export function applySettings(cmd: Command, env: NodeJS.ProcessEnv = process.env, load: (path: string) => SettingsFile = loadSettings): void {
  const key = commandKey(cmd);
  const given = cmd.getOptionValue('config') as string | undefined;
  const path = given ?? env.QUARK_CONFIG;
  const file = path ? load(path) : undefined;
  const section = file?.sections[key] ?? {};
  const longs = new Map<string, string>();
  for (const opt of cmd.options) {
    const long = opt.long?.replace(/^--/, '');
    if (long && !opt.negate) longs.set(long, opt.attributeName());
  }
  for (const k of Object.keys(section)) {
    if (!longs.has(k)) throw new SettingsError(`${file!.path}: section "${key}" sets ${k}, which quark ${key.replace(/-/g, ' ')} does not take`);
  }
  for (const [long, attr] of longs) {
    if (long === 'config') continue;
    const source = cmd.getOptionValueSource(attr);
    if (source !== undefined && source !== 'default') continue;
    const fromEnv = env[envName(key, long)];
    if (fromEnv !== undefined && fromEnv !== '') {
      cmd.setOptionValueWithSource(attr, boolOption(cmd, attr) ? fromEnv !== 'false' && fromEnv !== '0' : fromEnv, 'env');
      continue;
    }
    const fromFile = section[long] ?? file?.common[long];
    if (fromFile !== undefined) cmd.setOptionValueWithSource(attr, boolOption(cmd, attr) ? fromFile === true || fromFile === 'true' : String(fromFile), 'config');
  }
}

function boolOption(cmd: Command, attr: string): boolean {
  const opt = cmd.options.find((o) => o.attributeName() === attr);
  return !!opt && !opt.required && !opt.optional;
}
