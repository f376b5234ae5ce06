// The user CLI against a real cluster (ZooKeeper, api, orc and computes on libvirt's test driver,
// each a process): `server create --wait` followed to the unit's real end through its event
// stream, with the exit code that end gives (0 SUCCEEDED, 3 FAILED, 4 timed out); list, show,
// act, delete; -o json in the API's own shapes; images; the operator's reads.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { useProcessGroup, zkConnect } from './support/index.js';
import { http, startCluster, type TestCluster } from './cluster.js';

const group = useProcessGroup();
let c: TestCluster;
let cwd: string;
// Each step waits this long first, so a build (4 steps) takes at least 4 × STEP_MS.
const STEP_MS = 300;

beforeAll(async () => {
  cwd = mkdtempSync(join(tmpdir(), 'quark-cli-user-')); // no .quark/ here: nothing is picked up by accident
  c = await startCluster(group, { computes: 2, orcs: 1, computeArgs: ['--step-delay-ms', String(STEP_MS)], apiArgs: ['--images-dir', join(cwd, 'images')] });
}, 90_000);
afterAll(async () => {
  await c?.close();
  rmSync(cwd, { recursive: true, force: true });
});

/** Runs `quark <args>` to its end against the test cluster; its exit code and output. */
async function quark(args: string[], env: Record<string, string | undefined> = {}): Promise<{ code: number | null; out: string; err: string }> {
  const child = group.spawnQuark(args, { cwd, env: { QUARK_TOKEN: c.token, QUARK_URL: c.api, QUARK_API: undefined, ...env } });
  const exit = await child.exited;
  return { code: exit.code, out: child.stdout(), err: child.stderr() };
}

interface Server {
  id: string;
  name: string;
  status: string;
  compute_id: string | null;
  flavor: { vcpus: number; ram_mb: number; disk_gb: number };
}

describe('quark server create --wait', () => {
  it('follows a build step by step to SUCCEEDED and exits 0; the server is ACTIVE', async () => {
    const r = await quark(['server', 'create', 'web-1', '--vcpus', '2', '--ram-mb', '1024', '--wait']);
    expect(r.code, r.err).toBe(0);
    // Not a terminal: one line per event, each step as the compute commits it, in order.
    const steps = ['allocate_vcpu', 'allocate_storage', 'define', 'start'];
    const at = steps.map((s) => r.out.search(new RegExp(`^  ✓ ${s}  \\d+(\\.\\d)? m?s$`, 'm')));
    expect(at.every((i) => i >= 0), r.out).toBe(true);
    expect([...at].sort((a, b) => a - b)).toEqual(at);
    expect(r.out).toMatch(/^build SUCCEEDED in [\d.]+ m?s$/m);
    const id = /server ([0-9a-f-]{36})/.exec(r.out)![1]!;
    const s = await http<Server>(`${c.api}/v1/servers/${id}`);
    expect(s.body).toMatchObject({ name: 'web-1', status: 'ACTIVE', flavor: { vcpus: 2, ram_mb: 1024, disk_gb: 10 } });
  });

  it('a build no compute can hold ends FAILED: exit 3 and the reason', async () => {
    const r = await quark(['server', 'create', 'too-big', '--vcpus', '1024', '--wait']);
    expect(r.code, r.out + r.err).toBe(3);
    expect(r.out).toMatch(/build FAILED.*NO_VALID_HOST/);
  });

  it('a wait shorter than the build exits 4 and says how to go on; unit watch then sees it to its end', async () => {
    const r = await quark(['server', 'create', 'slow-1', '--wait', '--timeout', String((STEP_MS * 2) / 1000), '-o', 'json']);
    expect(r.code, r.err).toBe(4);
    const body = JSON.parse(r.out) as { work_unit_id: string; server_id: string; outcome: string; unit: { state: string } | null };
    expect(body.outcome).toBe('timeout');
    expect(['PENDING', 'SCHEDULED', 'RUNNING']).toContain(body.unit?.state ?? 'PENDING');
    const w = await quark(['unit', 'watch', body.work_unit_id, '-o', 'json']);
    expect(w.code, w.err).toBe(0);
    // -o json: one JSON line per change, the last one the unit's end.
    const lines = w.out.trim().split('\n').map((l) => JSON.parse(l) as { id: string; state: string; steps_completed: unknown[] });
    expect(lines.every((u) => u.id === body.work_unit_id)).toBe(true);
    expect(lines.at(-1)).toMatchObject({ state: 'SUCCEEDED' });
    expect(lines.at(-1)!.steps_completed).toHaveLength(4);
  });

  it('without --wait prints the ids at once and exits 0', async () => {
    const r = await quark(['server', 'create', 'quick-1', '-o', 'json']);
    expect(r.code, r.err).toBe(0);
    const body = JSON.parse(r.out) as Record<string, string>;
    expect(Object.keys(body).sort()).toEqual(['server_id', 'work_unit_id']);
    expect((await http(`${c.api}/v1/work-units/${body.work_unit_id}`)).status).toBe(200);
  });
});

describe('quark server list|show|stop|start|delete', () => {
  it('list -o json is the API list; the table has a row per server', async () => {
    const j = await quark(['server', 'list', '-o', 'json']);
    expect(j.code, j.err).toBe(0);
    const listed = JSON.parse(j.out) as Server[];
    const api = (await http<Server[]>(`${c.api}/v1/servers`)).body;
    expect(listed.map((s) => s.id).sort()).toEqual(api.map((s) => s.id).sort());
    for (const s of listed) expect(Object.keys(s)).toEqual(expect.arrayContaining(['id', 'name', 'status', 'compute_id', 'flavor', 'project', 'created_at']));
    const t = await quark(['server', 'list', '--status', 'ACTIVE']);
    expect(t.code, t.err).toBe(0);
    expect(t.out.split('\n')[0]).toMatch(/^ID +NAME +STATUS +COMPUTE +VCPUS +RAM_MB +DISK_GB/);
    const web = listed.find((s) => s.name === 'web-1')!;
    expect(t.out).toMatch(new RegExp(`^${web.id} +web-1 +ACTIVE +${web.compute_id} +2 +1024 +10 `, 'm'));
    expect(t.out).not.toMatch(/too-big/); // ERROR, not ACTIVE
    // The API's filters: by name prefix and by compute.
    const byName = JSON.parse((await quark(['server', 'list', '--name-prefix', 'web-', '-o', 'json'])).out) as Server[];
    expect(byName.map((s) => s.id).sort()).toEqual(listed.filter((s) => s.name.startsWith('web-')).map((s) => s.id).sort());
    const byCompute = JSON.parse((await quark(['server', 'list', '--compute', web.compute_id!, '-o', 'json'])).out) as Server[];
    expect(byCompute.length).toBeGreaterThan(0);
    expect(byCompute.every((s) => s.compute_id === web.compute_id)).toBe(true);
    expect(byCompute.map((s) => s.id).sort()).toEqual(listed.filter((s) => s.compute_id === web.compute_id).map((s) => s.id).sort());
  });

  it('show by name, stop and start with --wait, delete with --wait; then it is gone (exit 1, 404)', async () => {
    const shown = await quark(['server', 'show', 'web-1', '-o', 'json']);
    expect(shown.code, shown.err).toBe(0);
    const s = JSON.parse(shown.out) as Server;
    expect(s).toEqual((await http<Server>(`${c.api}/v1/servers/${s.id}`)).body);
    const table = await quark(['server', 'show', s.id]);
    expect(table.out).toMatch(/^status +ACTIVE$/m);

    const stop = await quark(['server', 'stop', 'web-1', '--wait']);
    expect(stop.code, stop.out + stop.err).toBe(0);
    expect(stop.out).toMatch(/^stop SUCCEEDED/m);
    expect((await http<Server>(`${c.api}/v1/servers/${s.id}`)).body.status).toBe('STOPPED');
    expect((await quark(['server', 'start', s.id, '--wait'])).code).toBe(0);
    expect((await http<Server>(`${c.api}/v1/servers/${s.id}`)).body.status).toBe('ACTIVE');

    const del = await quark(['server', 'delete', 'web-1', '--wait', '-o', 'json']);
    expect(del.code, del.err).toBe(0);
    expect(JSON.parse(del.out)).toMatchObject({ server_id: s.id, outcome: 'SUCCEEDED', unit: { kind: 'delete', state: 'SUCCEEDED', server_id: s.id } });
    expect((await http(`${c.api}/v1/servers/${s.id}`)).status).toBe(404);
    const gone = await quark(['server', 'show', s.id]);
    expect(gone.code).toBe(1);
    expect(gone.err).toMatch(/404 NOT_FOUND/);
    const byName = await quark(['server', 'delete', 'web-1']);
    expect(byName.code).toBe(1);
    expect(byName.err).toMatch(/no server named "web-1"/);
  });

  it('an action the server cannot take is refused by the API: exit 1 with the code', async () => {
    const made = JSON.parse((await quark(['server', 'create', 'active-1', '--wait', '-o', 'json'])).out) as { server_id: string };
    // A stopped VM cannot reboot.
    expect((await quark(['server', 'stop', made.server_id, '--wait'])).code).toBe(0);
    const r = await quark(['server', 'reboot', made.server_id]);
    expect(r.code).toBe(1);
    expect(r.err).toMatch(/409 ACTION_NOT_ALLOWED/);
    // libvirt's test driver runs no guest, so there is no console to read.
    const con = await quark(['server', 'console', made.server_id]);
    expect(con.code).toBe(1);
    expect(con.err).toMatch(/409 NO_CONSOLE .*test driver/);
  });
});

describe('quark unit, image, compute, orc, shard', () => {
  it('unit show -o json is the API unit; the table lists its steps', async () => {
    const made = JSON.parse((await quark(['server', 'create', 'unit-1', '--wait', '-o', 'json'])).out) as { work_unit_id: string };
    const j = await quark(['unit', 'show', made.work_unit_id, '-o', 'json']);
    expect(JSON.parse(j.out)).toEqual((await http(`${c.api}/v1/work-units/${made.work_unit_id}`)).body);
    const t = await quark(['unit', 'show', made.work_unit_id]);
    expect(t.out).toMatch(/^state +SUCCEEDED$/m);
    for (const step of ['allocate_vcpu', 'allocate_storage', 'define', 'start']) expect(t.out).toMatch(new RegExp(`^${step} +done +\\d+ ms$`, 'm'));
  });

  it('image upload, list and delete', async () => {
    const file = join(cwd, 'disk.raw');
    writeFileSync(file, Buffer.alloc(64 * 1024, 7));
    const up = await quark(['image', 'upload', file, '--name', 'cli-disk', '-o', 'json']);
    expect(up.code, up.err).toBe(0);
    const img = JSON.parse(up.out) as { id: string; name: string; format: string; size_bytes: number };
    expect(img).toMatchObject({ name: 'cli-disk', format: 'raw', size_bytes: 64 * 1024 });
    const list = await quark(['image', 'list']);
    expect(list.out).toMatch(new RegExp(`^${img.id} +cli-disk +raw +64 KiB `, 'm'));
    expect((await quark(['image', 'delete', 'cli-disk'])).code).toBe(0);
    expect(JSON.parse((await quark(['image', 'list', '-o', 'json'])).out)).toEqual([]);
  });

  it('compute list, orc list and shard list show the cluster as the API does', async () => {
    const computes = JSON.parse((await quark(['compute', 'list', '-o', 'json'])).out) as Array<{ id: string; alive: boolean }>;
    expect(computes.map((x) => [x.id, x.alive])).toEqual([
      ['compute-1', true],
      ['compute-2', true],
    ]);
    expect((await quark(['compute', 'list'])).out).toMatch(/^compute-1 +yes +no +default +\d+\/16 +\d+\/32768 /m);
    const orcs = await quark(['orc', 'list']);
    expect(orcs.out).toMatch(/^orc-1 +\S+ +\d+ +\S+ +\d+ +0-\d+$/m);
    const owners = JSON.parse((await quark(['shard', 'list', '-o', 'json'])).out) as Record<string, string | null>;
    expect(owners).toEqual((await http(`${c.api}/v1/shards`)).body);
    expect(Object.values(owners).every((o) => o === 'orc-1')).toBe(true);
  });
});

describe('bad input and an unreachable API', () => {
  it('bad arguments exit 2 and send nothing', async () => {
    const before = (await http<Server[]>(`${c.api}/v1/servers`)).body.length;
    for (const args of [
      ['server', 'create'],
      ['server', 'create', 'x', '--port', '80'],
      ['server', 'create', 'x', '--vcpus', 'two'],
      ['server', 'list', '-o', 'yaml'],
      ['server', 'create', 'x', '--wait', '--timeout', '-1'],
      ['server', 'frobnicate', 'x'],
    ]) {
      const r = await quark(args);
      expect(r.code, `${args.join(' ')}: ${r.err}`).toBe(2);
      expect(r.err, args.join(' ')).toMatch(/^quark: /);
    }
    expect((await http<Server[]>(`${c.api}/v1/servers`)).body.length).toBe(before);
  });

  it('no token: exit 1 and where to put one', async () => {
    const r = await quark(['server', 'list'], { QUARK_TOKEN: undefined });
    expect(r.code).toBe(1);
    expect(r.err).toMatch(/^quark: no token: set QUARK_TOKEN or put one in .*\.quark\/token/);
  });

  it('no API at --url: exit 1 and a message that says so', async () => {
    const r = await quark(['server', 'list', '--url', 'http://127.0.0.1:1']);
    expect(r.code).toBe(1);
    expect(r.err).toMatch(/cannot reach the API at http:\/\/127\.0\.0\.1:1/);
  });
});

describe('a wait across an api restart', () => {
  // Invariant: `--wait` reports the unit's real end and each step exactly once, even when the API
  // it is streaming from is killed (kill -9) mid-build and a new one comes up on the same port.
  it('the api killed -9 mid-build and started again: the wait ends SUCCEEDED, exit 0, every step once', async () => {
    const waiter = group.spawnQuark(['server', 'create', 'survivor', '--wait', '--timeout', '60'], { cwd, env: { QUARK_TOKEN: c.token, QUARK_URL: c.api, QUARK_API: undefined } });
    await waiter.waitForOutput(/✓ allocate_vcpu/, { timeoutMs: 20_000 });
    c.apiProc.signal('SIGKILL');
    await c.apiProc.exited;
    const port = new URL(c.api).port;
    group.spawnQuark(['api', '--port', port, '--zk', zkConnect(), '--root', c.root, '--images-dir', join(cwd, 'images')], { label: 'api (again)' });
    const exit = await waiter.exited;
    expect(exit.code, waiter.output()).toBe(0);
    for (const step of ['allocate_vcpu', 'allocate_storage', 'define', 'start']) {
      expect(waiter.stdout().match(new RegExp(`✓ ${step} `, 'g')), step).toHaveLength(1);
    }
    expect(waiter.stdout()).toMatch(/^build SUCCEEDED/m);
    const id = /server ([0-9a-f-]{36})/.exec(waiter.stdout())![1]!;
    expect((await http<Server>(`${c.api}/v1/servers/${id}`)).body.status).toBe('ACTIVE');
  });
});
