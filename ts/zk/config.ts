// /quark/config: cluster-wide settings, written once by whichever process starts first, and
// changed by `quark config set` (updateConfig).
import { DEFAULT_CONFIG, type ClusterConfig } from '../common/model.js';
import { policySettingOf } from '../common/placement-policy.js';
import { isZkError } from './errors.js';
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
  for (let n = 0; n < cfg.shards; n++) {
    await zk.mkdirp(paths.inbox(n));
    // Every finishing transaction writes here: it exists before any process of this version acts.
    await zk.mkdirp(paths.ended(n));
  }
  return cfg;
}

/**
 * Changes the config in force: `edit` gets the current one and returns the next, whose placement
 * policy must be valid (readConfig does not check it: a bad one must not keep computes from
 * starting; orcs keep the policy they have). Written only over the version read; another writer
 * in between means read and edit again.
 */
export async function updateConfig(zk: Zk, paths: Paths, edit: (cur: ClusterConfig) => ClusterConfig): Promise<ClusterConfig> {
  for (let attempt = 1; ; attempt++) {
    const cur = await zk.get<ClusterConfig>(paths.config);
    if (!cur) throw new Error(`${paths.config} does not exist: no Quark cluster under ${paths.root}`);
    const next = edit({ ...DEFAULT_CONFIG, ...cur.value });
    policySettingOf(next);
    try {
      await zk.set(paths.config, next, cur.stat.version);
      return next;
    } catch (e) {
      if (!isZkError(e, 'BAD_VERSION') || attempt >= 10) throw e;
    }
  }
}
