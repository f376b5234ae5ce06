// Failover times across hosts (issue 13), on the same topology as test/topology.test.ts: a
// 3-server ZooKeeper ensemble, the API (HTTPS, a token), two orcs and three computes, each on a
// host of its own (network namespaces, ts/dev/topology.ts), and a client host that measures.
// Each case cuts a host's link (its switch port down), measures, heals it and waits until the
// cluster is whole again before the next trial:
//   compute_lost_ms      cut a compute's host → its VM's status reads LOST (through the API)
//   orc_shards_ms        cut an orc's host → every shard owned by the other orc (/v1/shards)
//   zk_leader_boot_ms    cut the ZooKeeper leader's host → the first boot the API accepts (202)
// One JSON line per case: trials, p50, the session timeout, whether ZooKeeper ACLs were on. Needs root.
// The cluster is under ZooKeeper ACLs as `quark up`'s is (--zk-acl off: every process without
// credentials, every node open): credentials in the run's temp dir, the token bootstrap and the
// client agent as admin (the bootstrap sets the root up), each process with its role's file only
// (a compute its own).
//   npm run bench:topology -- --trials 5 --session-timeout-ms 3000
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { Launcher, type LaunchedProcess } from '../ts/dev/cluster.js';
import { certificateFor, HostAgent, startOn, Topology } from '../ts/dev/topology.js';
import { writeCredentialsDir } from '../ts/zk/acl.js';

const { values } = parseArgs({
  options: {
    trials: { type: 'string', default: '5' },
    'session-timeout-ms': { type: 'string', default: '3000' },
    cases: { type: 'string', default: 'compute,orc,zk-leader' },
    'zk-acl': { type: 'string', default: 'on' },
  },
});
if (values['zk-acl'] !== 'on' && values['zk-acl'] !== 'off') throw new Error(`--zk-acl must be on or off, got ${values['zk-acl']}`);
const ZK_ACL = values['zk-acl'] === 'on';
const TRIALS = Number(values.trials);
const SESSION_MS = Number(values['session-timeout-ms']);
const CASES = new Set(values.cases.split(','));
const ZK = ['zk1', 'zk2', 'zk3'];
const COMPUTES = ['c1', 'c2', 'c3'];
const ORCS = ['orc1', 'orc2'];
const flavor = { vcpus: 1, ram_mb: 256, disk_gb: 1 };

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
async function until<T>(what: string, fn: () => Promise<T | undefined | false>, timeoutMs = 60_000, intervalMs = 25): Promise<T> {
  const deadline = performance.now() + timeoutMs;
  let last = '';
  while (performance.now() < deadline) {
    try {
      const v = await fn();
      if (v !== undefined && v !== false) return v;
    } catch (e) {
      last = (e as Error).message;
    }
    await sleep(intervalMs);
  }
  throw new Error(`timed out waiting for ${what}${last ? ` (last error: ${last})` : ''}`);
}
const p50 = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
};

const launcher = new Launcher({ say: (l) => process.stderr.write(`${l}\n`) });
const topo = await Topology.create([...ZK, 'api', ...ORCS, ...COMPUTES, 'client']);
const dir = await mkdtemp(join(tmpdir(), 'quark-bench-topology-'));
try {
  const ensemble = ZK.map((h) => topo.address(h)).join(',');
  const zk = ZK.map((h) => `${topo.address(h)}:2181`).join(',');
  const common = ['--zk', zk, '--session-timeout-ms', String(SESSION_MS)];
  const orcIds = new Map(ORCS.map((h) => [h, `orc-${h.slice(3)}`]));
  const computeIds = new Map(COMPUTES.map((h) => [h, `compute-${h.slice(1)}`]));
  // Each process's file is chosen by startOn from its subcommand; null: none, whatever this
  // process's own environment holds.
  const credentials = ZK_ACL ? join(dir, 'zk-credentials') : null;
  if (credentials) writeCredentialsDir(credentials, [...computeIds.values()]);
  const zks = ZK.map((h, i) =>
    startOn(launcher, topo, h, { name: h, args: ['zk', 'server', '--ensemble', ensemble, '--myid', String(i + 1), '--data-dir', join(dir, h)], credentials: null }),
  );
  await Promise.all(zks.map((z) => z.waitForOutput('ZooKeeper serving', { timeoutMs: 120_000 })));
  // As the admin, the bootstrap also sets the fresh root up (under ACLs) before any other role starts.
  const bootstrap = startOn(launcher, topo, 'client', { name: 'bootstrap', args: ['token', 'create', '--bootstrap', '--project', 'admin', '--role', 'admin', '--zk', zk], credentials });
  await bootstrap.exited;
  const token = /^token\s+(\S+)$/m.exec(bootstrap.stdout())?.[1];
  if (!token) throw new Error(`no token minted:\n${bootstrap.lastLines()}`);
  const apiAddr = topo.address('api');
  const tls = certificateFor(dir, apiAddr);
  const API = `https://${apiAddr}:8443`;
  startOn(launcher, topo, 'api', { name: 'api', args: ['api', '--host', apiAddr, '--port', '8443', '--tls-cert', tls.cert, '--tls-key', tls.key, '--rate-limit', '0', ...common], credentials });
  for (const h of ORCS) startOn(launcher, topo, h, { name: orcIds.get(h)!, args: ['orc', '--id', orcIds.get(h)!, ...common], credentials });
  const computeProcs = new Map<string, LaunchedProcess>();
  for (const h of COMPUTES) computeProcs.set(h, startOn(launcher, topo, h, { name: computeIds.get(h)!, args: ['compute', '--id', computeIds.get(h)!, ...common], credentials }));
  const client = await HostAgent.start(launcher, topo, 'client', { socket: join(dir, 'client.sock'), zk, ca: tls.cert, token, credentials });
  const api = <T = any>(path: string, init: { method?: string; body?: unknown; timeoutMs?: number } = {}) => client.http<T>(`${API}${path}`, init);
  const shards = async () => Object.values((await api<Record<string, string | null>>('/v1/shards')).body);
  const whole = async (): Promise<void> => {
    await until('3 computes alive and every shard owned by the two orcs', async () => {
      const cs = (await api<Array<{ alive: boolean }>>('/v1/computes')).body;
      const owners = await shards();
      return cs.filter((c) => c.alive).length === 3 && owners.every(Boolean) && new Set(owners).size === 2;
    }, 120_000, 200);
  };
  const boot = async (name: string): Promise<{ unit: string; server: string }> => {
    const r = await api('/v1/servers', { method: 'POST', body: { name, flavor } });
    if (r.status !== 202) throw new Error(`boot ${name}: ${r.status} ${JSON.stringify(r.body)}`);
    return { unit: r.body.work_unit_id, server: r.body.server_id };
  };
  const finished = (unit: string) =>
    until(`unit ${unit} to finish`, async () => {
      const u = (await api(`/v1/work-units/${unit}`)).body;
      return u?.state === 'SUCCEEDED' || u?.state === 'FAILED' ? u : undefined;
    }, 60_000, 100);
  const zkMode = async (h: string): Promise<string | undefined> =>
    /^Mode:\s*(\S+)/m.exec(await client.fourLetter(topo.address(h), 2181, 'srvr').catch(() => ''))?.[1];

  await whole();
  const report = (name: string, trials: number[], extra: Record<string, unknown> = {}) =>
    process.stdout.write(`${JSON.stringify({ case: name, session_timeout_ms: SESSION_MS, zk_acl: ZK_ACL, trials: trials.map(Math.round), p50: Math.round(p50(trials)), ...extra })}\n`);

  if (CASES.has('compute')) {
    const trials: number[] = [];
    for (let t = 0; t < TRIALS; t++) {
      const b = await boot(`lost-${t}`);
      const u = await finished(b.unit);
      const host = [...computeIds].find(([, id]) => id === u.compute_id)![0];
      const t0 = performance.now();
      await topo.cut(host);
      await until(`${b.server} LOST`, async () => (await api(`/v1/servers/${b.server}`)).body?.status === 'LOST');
      trials.push(performance.now() - t0);
      process.stderr.write(`compute trial ${t + 1}: ${Math.round(trials.at(-1)!)} ms\n`);
      await topo.heal(host);
      // Not evacuated: back, it keeps the VM (LOST until an operator acts), so only its liveness is awaited.
      await until(`${host} alive again`, async () => {
        const cs = (await api<Array<{ id: string; alive: boolean }>>('/v1/computes')).body;
        return cs.find((c) => c.id === u.compute_id)?.alive;
      }, 60_000, 200);
      await whole();
    }
    report('compute_lost_ms', trials, { what: 'compute host cut → its VM reads LOST' });
  }

  if (CASES.has('orc')) {
    const trials: number[] = [];
    for (let t = 0; t < TRIALS; t++) {
      const host = ORCS[t % 2]!;
      const other = orcIds.get(ORCS[(t + 1) % 2]!)!;
      const t0 = performance.now();
      await topo.cut(host);
      await until('every shard owned by the other orc', async () => (await shards()).every((o) => o === other));
      trials.push(performance.now() - t0);
      process.stderr.write(`orc trial ${t + 1}: ${Math.round(trials.at(-1)!)} ms\n`);
      await topo.heal(host);
      await whole();
    }
    report('orc_shards_ms', trials, { what: 'orc host cut → every shard owned by the other orc' });
  }

  if (CASES.has('zk-leader')) {
    const trials: number[] = [];
    for (let t = 0; t < TRIALS; t++) {
      const leader = await until('one leader', async () => {
        const modes = await Promise.all(ZK.map(zkMode));
        const ls = ZK.filter((_, i) => modes[i] === 'leader');
        return ls.length === 1 && modes.filter((m) => m === 'follower').length === 2 ? ls[0] : undefined;
      }, 60_000, 200);
      const t0 = performance.now();
      await topo.cut(leader);
      let n = 0;
      const accepted = await until('a boot accepted', async () => {
        const r = await api('/v1/servers', { method: 'POST', body: { name: `zk-${t}-${n++}`, flavor }, timeoutMs: 10_000 });
        return r.status === 202 ? r.body.work_unit_id as string : undefined;
      }, 60_000, 25);
      trials.push(performance.now() - t0);
      process.stderr.write(`zk leader trial ${t + 1}: ${Math.round(trials.at(-1)!)} ms\n`);
      await topo.heal(leader);
      await until(`${leader} following again`, async () => (await zkMode(leader)) === 'follower', 60_000, 200);
      await finished(accepted);
      await whole();
    }
    report('zk_leader_boot_ms', trials, { what: 'ZooKeeper leader host cut → first boot accepted' });
  }
} finally {
  await launcher.stopAll();
  await topo.destroy();
  await rm(dir, { recursive: true, force: true });
}
