// Where this machine's token is: QUARK_TOKEN, else .quark/token (mode 0600), which `quark up`
// writes. Kept apart from ./local.ts, which talks to ZooKeeper, so the user CLI loads no client.
import { chmodSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';

export const tokenFile = (home = resolve('.quark')): string => join(home, 'token');

/** Writes the token readable by its owner only (0600), whatever mode an older file had. */
export function saveToken(secret: string, file = tokenFile()): void {
  mkdirSync(dirname(file), { recursive: true, mode: 0o700 });
  writeFileSync(file, `${secret}\n`, { mode: 0o600 });
  chmodSync(file, 0o600);
}

/** QUARK_TOKEN, else the token file, else undefined. */
export function defaultToken(file = tokenFile()): string | undefined {
  const env = process.env.QUARK_TOKEN?.trim();
  if (env) return env;
  if (!existsSync(file)) return undefined;
  return readFileSync(file, 'utf8').trim() || undefined;
}

/** `authorization` for the default token, or nothing. */
export function authHeaders(file = tokenFile()): Record<string, string> {
  const t = defaultToken(file);
  return t ? { authorization: `Bearer ${t}` } : {};
}
