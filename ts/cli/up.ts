// `quark up`: a whole local cluster for a newcomer. ZooKeeper (data under .quark/), one api, N orcs
// and M computes on the libvirt test driver, each a real process; then a demo VM is booted.
// Ctrl-C stops everything, children first, ZooKeeper last.
import { spawn, type ChildProcess } from 'node:child_process';
import { createWriteStream, mkdirSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { freePort, startZooKeeper, type RunningZooKeeper } from '../zk/server.js';
import { authHeaders, ensureLocalAdminToken } from '../auth/local.js';

export interface UpOptions {
  orcs: number;
  computes: number;
  apiPort: number;
  zkPort: number;
  demo: boolean;
  root: string;
  sessionTimeoutMs: number;
  /** test: libvirt's test driver; qemu: real guests (ts/dev/qemu-up.ts). */
  hypervisor?: 'test' | 'qemu';
}

const MAIN = fileURLToPath(new URL('./main.js', import.meta.url));

function portFree(port: number): Promise<boolean> {
  return new Promise((res) => {
    const s = net.createServer();
    s.once('error', () => res(false));
    s.listen(port, '127.0.0.1', () => s.close(() => res(true)));
  });
}

const say = (s: string): void => void process.stdout.write(`${s}\n`);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function http<T>(url: string, init?: RequestInit): Promise<{ status: number; body: T }> {
  const res = await fetch(url, { ...init, headers: { 'content-type': 'application/json', ...authHeaders(), ...(init?.headers ?? {}) } });
  return { status: res.status, body: (await res.json()) as T };
}

export async function up(o: UpOptions): Promise<void> {
  const home = resolve('.quark');
  const logs = join(home, 'logs');
  mkdirSync(logs, { recursive: true });
  if (!(await portFree(o.apiPort))) throw new Error(`port ${o.apiPort} is in use; pick another with --port`);
  let zkPort = o.zkPort;
  if (!(await portFree(zkPort))) {
    zkPort = await freePort();
    say(`port ${o.zkPort} is in use; ZooKeeper will listen on ${zkPort}`);
  }

  const children = new Map<string, ChildProcess>();
  let zk: RunningZooKeeper | undefined;
  let stopping = false;
  const stopAll = async (code: number): Promise<void> => {
    if (stopping) return;
    stopping = true;
    say('\nstopping the cluster…');
    const exits = [...children.values()].map(
      (c) => new Promise<void>((r) => (c.exitCode !== null || c.signalCode !== null ? r() : c.once('exit', () => r()))),
    );
    for (const c of children.values()) c.kill('SIGTERM');
    const timer = setTimeout(() => {
      for (const c of children.values()) c.kill('SIGKILL');
    }, 5000);
    await Promise.all(exits);
    clearTimeout(timer);
    await zk?.stop();
    say('stopped.');
    process.exit(code);
  };
  process.on('SIGINT', () => void stopAll(0));
  process.on('SIGTERM', () => void stopAll(0));

  const qemu = o.hypervisor === 'qemu' ? await (await import('../dev/qemu-up.js')).prepareQemu({ home, say }) : undefined;

  say(`starting ZooKeeper on 127.0.0.1:${zkPort} (data in .quark/zk)…`);
  zk = await startZooKeeper({ dataDir: join(home, 'zk'), clientPort: zkPort });
  const api = `http://127.0.0.1:${o.apiPort}`;
  writeFileSync(join(home, 'cluster.json'), JSON.stringify({ zk: zk.connectionString, api, root: o.root }, null, 2));
  const admin = await ensureLocalAdminToken({ zk: zk.connectionString, root: o.root, home });
  process.env.QUARK_TOKEN = admin.token; // this cluster's, over any stale one in the caller's shell
  say(`${admin.created ? 'created an' : 'reusing the'} admin token in .quark/token (mode 0600; the CLI and the examples below read it)`);

  const common = ['--zk', zk.connectionString, '--root', o.root, '--session-timeout-ms', String(o.sessionTimeoutMs)];
  const launch = (name: string, args: string[]): void => {
    const out = createWriteStream(join(logs, `${name}.log`), { flags: 'a' });
    const child = spawn(process.execPath, [MAIN, ...args, ...common], { stdio: ['ignore', 'pipe', 'pipe'] });
    child.stdout!.pipe(out);
    child.stderr!.pipe(out);
    children.set(name, child);
    child.once('exit', (code, signal) => {
      if (!stopping) say(`!! ${name} exited (${signal ?? code}); see .quark/logs/${name}.log`);
    });
  };

  launch('api', ['api', '--port', String(o.apiPort)]);
  for (let i = 1; i <= o.orcs; i++) launch(`orc-${i}`, ['orc', '--id', `orc-${i}`]);
  for (let i = 1; i <= o.computes; i++) launch(`compute-${i}`, ['compute', '--id', `compute-${i}`, ...(qemu?.computeArgs(i) ?? [])]);

  // Ready when the API answers, every compute is alive and every shard has an owner. A qemu
  // compute probes its accelerator first, once per host.
  const deadline = Date.now() + (qemu ? 180_000 : 60_000);
  for (;;) {
    try {
      const health = await http<{ ok: boolean }>(`${api}/healthz`);
      const computes = await http<Array<{ alive: boolean }>>(`${api}/v1/computes`);
      const shards = await http<Record<string, string | null>>(`${api}/v1/shards`);
      const alive = computes.body.filter((c) => c.alive).length;
      const unowned = Object.values(shards.body).filter((x) => !x).length;
      if (health.status === 200 && alive >= o.computes && unowned === 0) break;
    } catch {
      /* not up yet */
    }
    if (Date.now() > deadline) {
      say(`the cluster did not come up within ${qemu ? 180 : 60} s; see .quark/logs/`);
      return stopAll(1);
    }
    await sleep(250);
  }
  say(`cluster up: api ${api}, ${o.orcs} orcs, ${o.computes} computes (${qemu?.describe ?? 'libvirt test:///default'}), ZooKeeper ${zk.connectionString}`);

  if (o.demo) await (qemu ? qemu.demo(api) : demo(api));

  say(`
Where to look:
  ${api}/ui                 the visualizer (it asks once for the token: cat .quark/token)
  export QUARK_TOKEN=$(cat .quark/token); auth="authorization: Bearer $QUARK_TOKEN"
  curl -s -H "$auth" ${api}/v1/computes
  curl -s -H "$auth" ${api}/v1/servers
  curl -s -H "$auth" -XPOST ${api}/v1/servers -H 'content-type: application/json' \\
       -d '{"name":"web-1","flavor":{"vcpus":2,"ram_mb":2048,"disk_gb":20}}'
  curl -s -H "$auth" ${api}/v1/work-units/<work_unit_id>
  npx quark token create --project demo --role member     # a token for someone else
  npx quark zk tree /quark/computes        # the ZooKeeper directories, decoded
  logs: .quark/logs/*.log
Ctrl-C stops everything.`);
}

async function demo(api: string): Promise<void> {
  const created = await http<{ work_unit_id: string; server_id: string }>(`${api}/v1/servers`, {
    method: 'POST',
    body: JSON.stringify({ name: 'hello-quark', flavor: { vcpus: 1, ram_mb: 512, disk_gb: 10 } }),
  });
  if (created.status !== 202) {
    say(`demo boot was refused: ${JSON.stringify(created.body)}`);
    return;
  }
  say(`booting demo VM hello-quark: server ${created.body.server_id}, work unit ${created.body.work_unit_id}`);
  const deadline = Date.now() + 60_000;
  for (;;) {
    const wu = await http<{ state: string; compute_id: string | null; steps_completed: Array<{ name: string; time_to_completion_ms: number }>; error?: { code: string; message: string } }>(
      `${api}/v1/work-units/${created.body.work_unit_id}`,
    );
    if (wu.body.state === 'SUCCEEDED' || wu.body.state === 'FAILED' || Date.now() > deadline) {
      const steps = wu.body.steps_completed.map((s) => `${s.name} ${s.time_to_completion_ms} ms`).join(', ');
      say(`demo work unit ${wu.body.state} on ${wu.body.compute_id ?? '-'}: ${steps}${wu.body.error ? ` — ${wu.body.error.code}: ${wu.body.error.message}` : ''}`);
      const server = await http<{ status: string }>(`${api}/v1/servers/${created.body.server_id}`);
      say(`server hello-quark is ${server.body.status}`);
      return;
    }
    await sleep(100);
  }
}
