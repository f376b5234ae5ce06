// `quark config` (the CLI, as a process) against the real ZooKeeper: get and set the placement
// policy, cluster-wide and per zone; bad input is refused with a clear message, exit status 2,
// and leaves the config as it was.
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Zk } from '../zk/client.js';
import { Paths } from '../zk/paths.js';
import { readConfig } from '../zk/config.js';
import type { ClusterConfig } from '../common/model.js';
import { quarkBin, uniqueRoot, zkConnect } from '../../test/support/index.js';

const run = promisify(execFile);
let admin: Zk;
let paths: Paths;

beforeAll(async () => {
  admin = await Zk.connect(zkConnect());
  paths = new Paths(uniqueRoot('config-cli'));
  await readConfig(admin, paths, { shards: 2 });
});
afterAll(async () => {
  await admin.removeTree(paths.root);
  await admin.close();
});

/** Runs `quark config …` on this file's root; the exit code and both streams. */
async function quark(...args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const { stdout, stderr } = await run(process.execPath, [quarkBin(), 'config', ...args, '--zk', zkConnect(), '--root', paths.root], { timeout: 20_000 });
    return { code: 0, stdout, stderr };
  } catch (e) {
    const err = e as { code?: number; stdout?: string; stderr?: string };
    return { code: err.code ?? -1, stdout: err.stdout ?? '', stderr: err.stderr ?? '' };
  }
}

const stored = async (): Promise<ClusterConfig> => (await admin.get<ClusterConfig>(paths.config))!.value!;

describe('quark config', () => {
  it('gets the defaults, sets the cluster policy and a zone override, and drops it again', async () => {
    expect(await quark('get', 'placement-policy')).toMatchObject({ code: 0, stdout: 'spread\n' });
    expect(JSON.parse((await quark('get')).stdout)).toMatchObject({ shards: 2, placement_policy: 'spread', placement_policy_by_zone: {} });

    expect(await quark('set', 'placement-policy', 'pack')).toMatchObject({ code: 0, stdout: 'pack\n' });
    expect(await stored()).toMatchObject({ shards: 2, placement_policy: 'pack', placement_policy_by_zone: {} });

    expect(await quark('set', 'placement-policy', 'spread', '--zone', 'gpu')).toMatchObject({ code: 0, stdout: 'spread\n' });
    expect((await stored()).placement_policy_by_zone).toEqual({ gpu: 'spread' });
    expect((await quark('get', 'placement-policy')).stdout).toBe('pack\nzone gpu: spread\n');
    expect((await quark('get', 'placement-policy', '--zone', 'gpu')).stdout).toBe('spread\n');
    expect((await quark('get', 'placement-policy', '--zone', 'az-1')).stdout).toBe('pack\n');
    expect((await quark('get', 'placement_policy_by_zone')).stdout).toBe('{"gpu":"spread"}\n');

    expect(await quark('set', 'placement-policy', 'inherit', '--zone', 'gpu')).toMatchObject({ code: 0 });
    expect(await stored()).toMatchObject({ placement_policy: 'pack', placement_policy_by_zone: {} });
  });

  it('refuses bad input with exit status 2 and a message, and leaves the config as it was', async () => {
    const before = await stored();
    const cases: Array<[string[], RegExp]> = [
      [['set', 'placement-policy', 'binpack'], /placement-policy must be one of spread, pack, got "binpack"/],
      [['set', 'placement-policy', 'inherit'], /placement-policy must be one of spread, pack, got "inherit"/],
      [['set', 'placement-policy', 'dense', '--zone', 'gpu'], /placement-policy for zone gpu \(or 'inherit'\) must be one of spread, pack/],
      [['set', 'placement-policy', 'pack', '--zone', ''], /--zone must name a zone/],
      [['set', 'shards', '8'], /shards cannot be set here; settable: placement-policy/],
      [['set', 'placement-policy'], /usage: quark config/],
      [['get', 'colour'], /unknown setting colour; known: placement-policy, shards/],
      [['reset'], /usage: quark config/],
    ];
    for (const [args, message] of cases) {
      const r = await quark(...args);
      expect(r.code, args.join(' ')).toBe(2);
      expect(r.stderr, args.join(' ')).toMatch(message);
    }
    expect(await stored()).toEqual(before);
  });

  it('says so when there is no cluster under the root', async () => {
    const r = await run(process.execPath, [quarkBin(), 'config', 'get', '--zk', zkConnect(), '--root', uniqueRoot('none')], { timeout: 20_000 }).catch((e: { code: number; stderr: string }) => e);
    expect(r).toMatchObject({ code: 2 });
    expect((r as { stderr: string }).stderr).toMatch(/config does not exist: no Quark cluster under/);
  });
});
