// `quark zk credentials` and `quark zk secure`: the ZooKeeper credentials of a cluster
// (ts/zk/acl.ts) and the migration of a cluster made without them.
import { existsSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { CREDENTIALS_ENV, credentialFiles, readCredentials, writeCredentialsDir } from '../zk/acl.js';
import { secureRoot } from '../zk/acl-secure.js';
import { Zk } from '../zk/client.js';
import { Paths } from '../zk/paths.js';

/** Where `quark up` keeps them. */
export const LOCAL_CREDENTIALS_DIR = join('.quark', 'zk-credentials');

/**
 * For the operator's tools (zk tree/ls/get, config, token create --bootstrap): the admin's file
 * of `quark up`'s cluster when QUARK_ZK_CREDENTIALS is not set (an empty value means none).
 */
export function useLocalAdminCredentials(): void {
  if (process.env[CREDENTIALS_ENV] !== undefined) return;
  const file = credentialFiles(resolve(LOCAL_CREDENTIALS_DIR)).admin;
  if (existsSync(file)) process.env[CREDENTIALS_ENV] = file;
}

/** Makes the role files in `dir` (kept if there) and one file per compute id. */
export function credentialsCommand(dir: string, computes: readonly string[]): string {
  const { created } = writeCredentialsDir(dir, computes);
  const f = credentialFiles(dir);
  const lines = [
    `${created ? 'made' : 'kept'} the ZooKeeper credentials in ${dir} (mode 0600):`,
    `  ${f.admin}          operators and tools (holds the compute key)`,
    `  ${f.api}            quark api`,
    `  ${f.orc}            quark orc`,
    `  ${f.computeFleet}  quark compute --hollow (derives every compute's own identity)`,
    ...computes.map((id) => `  ${f.compute(id)}  quark compute --id ${id}`),
    `Each process reads its file from ${CREDENTIALS_ENV}=<file>.`,
  ];
  return `${lines.join('\n')}\n`;
}

export async function secureCommand(zkConnect: string, root: string): Promise<string> {
  const zk = await Zk.connect(zkConnect, { connectTimeoutMs: 5000 });
  try {
    const r = await secureRoot(zk, new Paths(root));
    return `${root}: ACLs set on ${r.nodes} nodes (${r.granted} unit and server records granted to their computes); start every process with its credentials now\n`;
  } finally {
    await zk.close();
  }
}

/** Moves a cluster from the current admin's credentials to the set in `newDir` (made by `quark zk credentials --dir`). */
export async function rotateCommand(zkConnect: string, root: string, newDir: string): Promise<string> {
  const next = readCredentials(credentialFiles(newDir).admin);
  const zk = await Zk.connect(zkConnect, { connectTimeoutMs: 5000 });
  try {
    const r = await secureRoot(zk, new Paths(root), next);
    return `${root}: ACLs of ${r.nodes} nodes moved to the credentials in ${newDir} (${r.granted} records granted to their computes); the old files no longer work: start every process with its new file\n`;
  } finally {
    await zk.close();
  }
}
