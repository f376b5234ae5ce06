// Packaging: the tarball scripts/pack.sh makes installs into an empty directory with npm
// --offline (its dependencies are bundled: nothing is fetched), and the installed `quark` runs: --help, and a
// compute on libvirt's test driver that registers with the suite's ZooKeeper. The compute's
// process maps the native addon from the installed package (not this checkout's), so the
// prebuilt .node in the tarball is the one that works.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, realpathSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { repoRoot, uniqueRoot, useProcessGroup, waitFor, zkConnect } from './support/index.js';
import { Zk } from '../ts/zk/client.js';
import { Paths } from '../ts/zk/paths.js';
import type { ComputeId } from '../ts/common/ids.js';

const run = promisify(execFile);
const group = useProcessGroup();
const dir = mkdtempSync(join(tmpdir(), 'quark-pack-'));
const app = join(dir, 'app');
let tarball: string;
let bin: string;
let zk: Zk;
const paths = new Paths(uniqueRoot('pack'));

beforeAll(async () => {
  const packed = await run('bash', [join(repoRoot(), 'scripts/pack.sh'), dir], { cwd: repoRoot(), maxBuffer: 16 << 20, timeout: 600_000 });
  tarball = packed.stdout.trim().split('\n').pop()!;
  writeFileSync(join(dir, 'package.json'), '{}');
  await run('mkdir', ['-p', app]);
  writeFileSync(join(app, 'package.json'), JSON.stringify({ name: 'quark-install-check', version: '1.0.0', private: true }));
  await run('npm', ['install', '--offline', '--omit=dev', '--no-audit', '--no-fund', tarball], { cwd: app, maxBuffer: 16 << 20, timeout: 300_000 });
  bin = join(app, 'node_modules', 'quark', 'bin', 'quark.js');
  zk = await Zk.connect(zkConnect());
}, 900_000);

afterAll(async () => {
  await zk?.removeTree(paths.root).catch(() => {});
  await zk?.close();
  rmSync(dir, { recursive: true, force: true });
});

describe('the npm package', () => {
  it('holds the CLI, the visualizer, the systemd units and the prebuilt addon, and no tests', async () => {
    const { stdout } = await run('tar', ['-tzf', tarball], { maxBuffer: 16 << 20 });
    const files = stdout.split('\n');
    for (const f of ['package/bin/quark.js', 'package/dist/ts/cli/main.js', 'package/dist/ui/ui.js', 'package/native/index.linux-x64-gnu.node', 'package/deploy/quark-api.service', 'package/deploy/quark-orc.service', 'package/deploy/quark-compute.service', 'package/docs/deploy.md']) {
      expect(files).toContain(f);
    }
    // Its runtime dependencies travel inside it (bundleDependencies); its own tests, sources and benchmarks do not.
    expect(files).toContain('package/node_modules/fastify/package.json');
    expect(files.filter((f) => (f.startsWith('package/dist/') && f.endsWith('.test.js')) || /^package\/(ts|crates|test|bench|dist\/bench)\//.test(f))).toEqual([]);
  });

  it('installed offline, `quark --help` runs from it', async () => {
    const { stdout } = await run(join(app, 'node_modules', '.bin', 'quark'), ['--help'], { cwd: app, env: { ...process.env, QUARK_NATIVE_PATH: '' } });
    expect(stdout).toMatch(/Usage: quark/);
    expect(stdout).toMatch(/compute/);
  });

  it('installed offline, `quark compute` loads the bundled addon and registers with ZooKeeper', async () => {
    const id = `pkg-${process.pid}` as ComputeId;
    const child = group.spawn([bin, 'compute', '--id', id, '--zk', zkConnect(), '--root', paths.root, '--session-timeout-ms', '2000'], {
      label: 'installed quark compute',
      cwd: app,
      env: { QUARK_NATIVE_PATH: undefined, QUARK_ZK: undefined },
    });
    // Alive first, then its capacity (published right after).
    await waitFor(async () => (await zk.exists(paths.alive(id))) !== null && (await zk.exists(paths.selfCapacity(id))) !== null, {
      what: 'the installed compute to be alive and to publish its capacity',
      timeoutMs: 60_000,
    });
    const addon = realpathSync(join(app, 'node_modules', 'quark', 'native', 'index.linux-x64-gnu.node'));
    // The addon may be loaded a moment after the compute is alive (its first libvirt call).
    const maps = await waitFor(
      () => {
        const m = readFileSync(`/proc/${child.pid}/maps`, 'utf8');
        return m.includes('.node') && m.includes(addon) ? m : undefined;
      },
      { what: 'the installed compute to map the bundled addon', timeoutMs: 30_000 },
    );
    expect(maps).toContain(addon);
    expect(maps).not.toContain(join(repoRoot(), 'native'));
    // What it registered is what a compute on the test driver reports.
    const cap = await zk.get<{ libvirt_uri: string }>(paths.selfCapacity(id));
    expect(cap?.value?.libvirt_uri).toBe('test:///default');
    await group.stop([child]);
  }, 120_000);
});
