// The token on this machine: `quark up` makes an admin token and keeps it in .quark/token (mode
// 0600); the CLI and the README's curl examples read it from there. QUARK_TOKEN overrides it.
import { existsSync, readFileSync } from 'node:fs';
import { Zk } from '../zk/client.js';
import type { Credentials } from '../zk/acl.js';
import { AuthPaths } from './layout.js';
import { asProjectId } from './policy.js';
import { AuthFailure, mintToken, TokenStore } from './tokens.js';

import { saveToken, tokenFile } from './token-file.js';

export { authHeaders, defaultToken, saveToken, tokenFile } from './token-file.js';

/**
 * For `quark up`: the admin token in `home`/token if this cluster knows it and it is still usable,
 * else a new admin token (project "admin"), saved there. Returns the token and whether it is new.
 */
export async function ensureLocalAdminToken(o: { zk: string; root: string; home?: string }): Promise<{ token: string; created: boolean }> {
  const file = tokenFile(o.home);
  const zk = await Zk.connect(o.zk, { connectTimeoutMs: 15_000 });
  try {
    const ap = new AuthPaths({ root: o.root });
    const have = existsSync(file) ? readFileSync(file, 'utf8').trim() : '';
    if (have) {
      try {
        const p = await new TokenStore(zk, ap).verify(have);
        if (p.role === 'admin') return { token: have, created: false };
      } catch (e) {
        if (!(e instanceof AuthFailure)) throw e;
      }
    }
    const { secret } = await mintToken(zk, ap, { project: asProjectId('admin'), role: 'admin', name: 'quark up' });
    saveToken(secret, file);
    return { token: secret, created: true };
  } finally {
    await zk.close();
  }
}

/**
 * An admin token made straight in ZooKeeper, for tools that start their own cluster (benchmarks).
 * `credentials`: the session's ZooKeeper credentials (a root under ACLs needs the admin's; null:
 * none); omitted, QUARK_ZK_CREDENTIALS's.
 */
export async function mintAdminToken(zkConnect: string, root: string, project = 'admin', credentials?: Credentials | null): Promise<string> {
  const zk = await Zk.connect(zkConnect, { connectTimeoutMs: 15_000, ...(credentials === undefined ? {} : { credentials }) });
  try {
    return (await mintToken(zk, new AuthPaths({ root }), { project: asProjectId(project), role: 'admin', name: 'bench' })).secret;
  } finally {
    await zk.close();
  }
}
