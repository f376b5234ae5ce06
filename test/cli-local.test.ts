// The local cluster's life through the real binary, in a directory of its own: `quark up --detach`
// returns once the cluster is up (saying what it waited for), `status` reports it, the user
// commands find it with no flag or variable (.quark/cluster.json and .quark/token), `down` stops
// every process, `--fresh` starts from an empty state, `--logs` merges the processes' logs.
// Every `up` started here is stopped by its pid after the file, also when a test fails.
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freePort } from '../ts/dev/zookeeper.js';
import { isAlive, useProcessGroup, waitFor } from './support/index.js';

const group = useProcessGroup();
let cwd: string;
let ports: string[];
let metricsBase: number;
const ups = new Set<number>();
// Nothing from the caller's shell may point the CLI elsewhere.
const env = { QUARK_TOKEN: undefined, QUARK_URL: undefined, QUARK_API: undefined, QUARK_ZK: undefined };

beforeAll(async () => {
  cwd = mkdtempSync(join(tmpdir(), 'quark-cli-local-'));
  ports = ['--port', String(await freePort()), '--zk-port', String(await freePort())];
  metricsBase = await freePortPair();
});

/** A free port whose next port is free too (up --metrics-port takes consecutive ones). */
async function freePortPair(): Promise<number> {
  for (;;) {
    const p = await freePort();
    if (p < 65535 && (await portFree(p + 1))) return p;
  }
}

function portFree(port: number): Promise<boolean> {
  return new Promise((res) => {
    const s = createServer();
    s.once('error', () => res(false));
    s.listen(port, '127.0.0.1', () => s.close(() => res(true)));
  });
}
afterAll(async () => {
  for (const pid of ups) {
    if (!isAlive(pid)) continue;
    process.kill(pid, 'SIGTERM');
    await waitFor(() => !isAlive(pid), { what: `quark up ${pid} to stop`, timeoutMs: 20_000 }).catch(() => process.kill(pid, 'SIGKILL'));
  }
  rmSync(cwd, { recursive: true, force: true });
});

async function quark(args: string[]): Promise<{ code: number | null; out: string; err: string }> {
  const child = group.spawnQuark(args, { cwd, env });
  const exit = await child.exited;
  return { code: exit.code, out: child.stdout(), err: child.stderr() };
}

const upPid = (): number => (JSON.parse(readFileSync(join(cwd, '.quark', 'up.json'), 'utf8')) as { pid: number }).pid;
const small = ['--no-demo', '--orcs', '1', '--computes', '1'];

describe('quark up --detach, status, down, --fresh', () => {
  it('up --detach returns once the cluster is up; status sees it; the CLI finds it alone; down stops it all', async () => {
    const up = await quark(['up', '--detach', ...small, ...ports, '--metrics-port', String(metricsBase)]);
    expect(up.code, up.out + up.err).toBe(0);
    const pid = upPid();
    ups.add(pid);
    expect(isAlive(pid)).toBe(true);
    // It said what it was waiting for before it was up.
    expect(up.out).toMatch(/^waiting for (the api|: )/m);
    expect(up.out.search(/^waiting for/m)).toBeLessThan(up.out.search(/^cluster up: /m));
    expect(up.out).toMatch(/quark down stops it/);

    const st = await quark(['status', '-o', 'json']);
    expect(st.code, st.err).toBe(0);
    expect(JSON.parse(st.out)).toMatchObject({ running: true, api: true, up: { pid, detached: true }, orcs: 1, computes: { alive: 1, total: 1 } });
    const owned = (JSON.parse(st.out) as { shards: { owned: number; total: number } }).shards;
    expect(owned.owned).toBe(owned.total);

    // No --url, no token in the environment: .quark/cluster.json and .quark/token say where and who.
    const made = await quark(['server', 'create', 'local-1', '--wait']);
    expect(made.code, made.out + made.err).toBe(0);
    expect(JSON.parse((await quark(['server', 'list', '-o', 'json'])).out)).toMatchObject([{ name: 'local-1', status: 'ACTIVE' }]);

    // Its processes' logs, merged and readable; -p picks one.
    const logs = await quark(['logs', '-n', '500']);
    expect(logs.code, logs.err).toBe(0);
    expect(logs.out).toMatch(/^orc-1 +\| \d\d:\d\d:\d\d\.\d{3} INFO +shard acquired/m);
    expect(logs.out).toMatch(/^api +\| .*api listening/m);
    const onlyCompute = await quark(['logs', '-p', 'compute-1']);
    expect(onlyCompute.out.trim().split('\n').every((l) => l.startsWith('compute-1 '))).toBe(true);

    // --metrics-port: orc-1 on the base, compute-1 after it, each serving Prometheus text.
    for (const [name, port] of [['orc-1', metricsBase], ['compute-1', metricsBase + 1]] as const) {
      expect(up.out).toContain(`${name} http://127.0.0.1:${port}/metrics`);
      const res = await fetch(`http://127.0.0.1:${port}/metrics`);
      expect(res.status).toBe(200);
      expect(await res.text()).toMatch(/^# TYPE process_cpu_seconds_total counter$/m);
    }

    const again = await quark(['up', '--detach', ...small, ...ports]);
    expect(again.code).toBe(2);
    expect(again.err).toMatch(new RegExp(`already running here \\(quark up, pid ${pid}`));

    const down = await quark(['down']);
    expect(down.code, down.err).toBe(0);
    expect(isAlive(pid)).toBe(false);
    expect(existsSync(join(cwd, '.quark', 'up.json'))).toBe(false);
    const after = await quark(['status']);
    expect(after.code).toBe(1);
    expect(after.out).toMatch(/^quark up +not running here$/m);
    expect((await quark(['down'])).out).toMatch(/nothing to stop/);
  }, 120_000);

  it('up without --fresh keeps the state; with --fresh starts from empty', async () => {
    const kept = await quark(['up', '--detach', ...small, ...ports]);
    expect(kept.code, kept.out + kept.err).toBe(0);
    ups.add(upPid());
    expect(kept.out).toMatch(/reusing the admin token/);
    expect((JSON.parse((await quark(['server', 'list', '-o', 'json'])).out) as unknown[]).length).toBe(1);
    expect((await quark(['down'])).code).toBe(0);

    const fresh = await quark(['up', '--detach', '--fresh', ...small, ...ports]);
    expect(fresh.code, fresh.out + fresh.err).toBe(0);
    ups.add(upPid());
    expect(fresh.out).toMatch(/--fresh: removed \.quark\/\{.*zk.*\}/);
    expect(fresh.out).toMatch(/created an admin token/);
    expect(JSON.parse((await quark(['server', 'list', '-o', 'json'])).out)).toEqual([]);
    expect((await quark(['down'])).code).toBe(0);
  }, 120_000);
});

describe('quark up --logs', () => {
  it("merges every process's log lines, prefixed with its name and readable; Ctrl-C stops it all", async () => {
    const up = group.spawnQuark(['up', '--logs', ...small, ...ports], { cwd, env });
    await up.waitForOutput(/^cluster up: /, { timeoutMs: 60_000 });
    ups.add(upPid());
    for (const name of ['api', 'orc-1', 'compute-1']) {
      await up.waitForOutput(new RegExp(`^${name} +\\| \\d\\d:\\d\\d:\\d\\d\\.\\d{3} (INFO|WARN) +\\S`), { timeoutMs: 10_000 });
    }
    expect(up.stdout()).toMatch(/^orc-1 +\| .* shard acquired +orc=orc-1 shard=\d+$/m);
    // No raw JSON record reaches the screen.
    expect(up.stdout()).not.toMatch(/^\S+ +\| \{"/m);
    up.signal('SIGINT');
    const exit = await up.exited;
    expect(exit.code).toBe(0);
    expect(up.stdout()).toMatch(/^stopped\.$/m);
    expect(existsSync(join(cwd, '.quark', 'up.json'))).toBe(false);
  }, 120_000);
});
