// `quark up`: a whole local cluster for a newcomer. ZooKeeper (data under .quark/), one api, N orcs
// and M computes on the libvirt test driver, each a real process started by the cluster launcher
// (ts/dev/cluster.ts) and supervised like systemd's Restart=on-failure; then a demo VM is booted.
// Ctrl-C stops everything, children first, ZooKeeper last.
import { mkdirSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { join, resolve } from 'node:path';
import { DEFAULT_SUPERVISION, Launcher, QuarkCluster } from '../dev/cluster.js';
import { freePort } from '../dev/zookeeper.js';
import { authHeaders, ensureLocalAdminToken } from '../auth/local.js';
import { CREDENTIALS_ENV, credentialFiles, writeCredentialsDir } from '../zk/acl.js';
import { Zk } from '../zk/client.js';
import { Paths } from '../zk/paths.js';
import { AclSetupError, readConfig } from '../zk/config.js';
import { secureRoot } from '../zk/acl-secure.js';
import { LOCAL_CREDENTIALS_DIR } from './zk-credentials.js';

export interface UpOptions {
  orcs: number;
  computes: number;
  apiPort: number;
  zkPort: number;
  demo: boolean;
  root: string;
  sessionTimeoutMs: number;
  /** ZooKeeper ACLs per role (default on): credentials in .quark/zk-credentials/. */
  zkAcl?: boolean;
  /** test: libvirt's test driver; qemu: real guests (ts/dev/qemu-up.ts). */
  hypervisor?: 'test' | 'qemu';
}

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

  // A child that dies unexpectedly is started again (with backoff, logged here), and given up
  // after so many failures in a row; its log says why.
  const launcher = new Launcher({ supervision: DEFAULT_SUPERVISION, graceMs: 5000, say });
  let stopping = false;
  const stopAll = async (code: number): Promise<void> => {
    if (stopping) return;
    stopping = true;
    say('\nstopping the cluster…');
    await launcher.stopAll();
    say('stopped.');
    process.exit(code);
  };
  process.on('SIGINT', () => void stopAll(0));
  process.on('SIGTERM', () => void stopAll(0));

  const qemu = o.hypervisor === 'qemu' ? await (await import('../dev/qemu-up.js')).prepareQemu({ home, say }) : undefined;

  say(`starting ZooKeeper on 127.0.0.1:${zkPort} (data in .quark/zk)…`);
  const zk = await launcher.startZooKeeper({ dataDir: join(home, 'zk'), clientPort: zkPort });
  const credentials = o.zkAcl === false ? null : resolve(LOCAL_CREDENTIALS_DIR);
  if (credentials) {
    const { created } = writeCredentialsDir(credentials);
    // This process acts as the admin: it sets the root up and makes the admin token.
    process.env[CREDENTIALS_ENV] = credentialFiles(credentials).admin;
    say(`${created ? 'made' : 'reusing'} the ZooKeeper credentials in .quark/zk-credentials/ (mode 0600: one file per role; every process gets its own)`);
    await setUpRoot(zk.connectionString, o.root);
  } else {
    process.env[CREDENTIALS_ENV] = '';
  }
  const admin = await ensureLocalAdminToken({ zk: zk.connectionString, root: o.root, home });
  process.env.QUARK_TOKEN = admin.token; // this cluster's, over any stale one in the caller's shell
  say(`${admin.created ? 'created an' : 'reusing the'} admin token in .quark/token (mode 0600; the CLI and the examples below read it)`);
  const cluster = new QuarkCluster(launcher, {
    token: admin.token,
    credentials,
    zk: zk.connectionString,
    root: o.root,
    sessionTimeoutMs: o.sessionTimeoutMs,
    apiPort: o.apiPort,
    logDir: logs,
  });
  const api = cluster.api;
  writeFileSync(join(home, 'cluster.json'), JSON.stringify({ zk: zk.connectionString, api, root: o.root }, null, 2));
  cluster.startApi();
  for (let i = 1; i <= o.orcs; i++) cluster.startOrc(`orc-${i}`);
  for (let i = 1; i <= o.computes; i++) cluster.startCompute(`compute-${i}`, qemu?.computeArgs(i) ?? []);

  // Ready when the API answers, every compute is alive and every shard has an owner. A qemu
  // compute probes its accelerator first, once per host.
  const readyS = qemu ? 180 : 60;
  try {
    await cluster.ready({ computes: o.computes, timeoutMs: readyS * 1000, intervalMs: 250 });
  } catch {
    say(`the cluster did not come up within ${readyS} s; see .quark/logs/`);
    return stopAll(1);
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

/**
 * Puts the root under ZooKeeper ACLs as the admin. A cluster an older `quark up` left in .quark/zk
 * without ACLs is migrated (quark zk secure), saying so: it is this machine's own.
 */
async function setUpRoot(connectionString: string, root: string): Promise<void> {
  const zk = await Zk.connect(connectionString, { connectTimeoutMs: 15_000 });
  try {
    const paths = new Paths(root);
    try {
      await readConfig(zk, paths);
    } catch (e) {
      if (!(e instanceof AclSetupError && e.code === 'ZK_ROOT_WITHOUT_ACLS')) throw e;
      say(`${root} in .quark/zk was made without ZooKeeper ACLs: putting them on (quark zk secure)…`);
      const r = await secureRoot(zk, paths);
      say(`ACLs set on ${r.nodes} nodes`);
    }
  } finally {
    await zk.close();
  }
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
