// /quark/config: cluster-wide settings, written once by whichever process starts first.
import { DEFAULT_CONFIG, type ClusterConfig } from '../common/model.js';
import type { Zk } from './client.js';
import type { Paths } from './paths.js';

/** Creates the persistent skeleton and the config (if absent), and returns the config in force. */
export async function readConfig(zk: Zk, paths: Paths, wanted: Partial<ClusterConfig> = {}): Promise<ClusterConfig> {
  for (const p of paths.skeleton) await zk.mkdirp(p);
  await zk.createIfAbsent(paths.config, { ...DEFAULT_CONFIG, ...wanted });
  const cur = await zk.get<ClusterConfig>(paths.config);
  const cfg = { ...DEFAULT_CONFIG, ...(cur?.value ?? {}) };
  if (!Number.isInteger(cfg.shards) || cfg.shards < 1 || cfg.shards > 4096) {
    throw new Error(`${paths.config}: shards must be an integer in 1..4096, got ${cfg.shards}`);
  }
  for (let n = 0; n < cfg.shards; n++) await zk.mkdirp(paths.inbox(n));
  return cfg;
}
