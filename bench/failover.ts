// Orc failover, measured: stop one of three orcs (kill -9, then once with SIGTERM) and time
// (a) until every shard is owned by a live orc again and (b) until the first step of a unit in
// one of the stopped orc's shards completes (work that arrived after the kill, so it needs the
// new owner to place it). A new orc joins after each trial. One JSON line per trial on stdout,
// for each session timeout, side by side.
//   npm run bench:failover -- --trials 3 --session-timeouts 2000,4000
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { freePort } from '../ts/dev/zookeeper.js';
import { Launcher, QuarkCluster } from '../ts/dev/cluster.js';
import { shardOf } from '../ts/common/model.js';
import { mintAdminToken } from '../ts/auth/local.js';

const { values } = parseArgs({
  options: {
    trials: { type: 'string', default: '3' },
    'session-timeouts': { type: 'string', default: '2000,4000' },
    'tick-ms': { type: 'string', default: '200' },
    units: { type: 'string', default: '30' },
  },
});
const TRIALS = Number(values.trials);
const UNITS = Number(values.units);
const TICK = Number(values['tick-ms']);
const SHARDS = 64;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const launchers = new Set<Launcher>();
const log = (s: string) => process.stderr.write(`${s}\n`);

/** The admin token of the cluster being measured (set once its ZooKeeper is up). */
const auth: Record<string, string> = {};

async function get<T>(url: string): Promise<T> {
  return (await (await fetch(url, { headers: auth })).json()) as T;
}

async function until<T>(fn: () => Promise<T | undefined | false>, what: string, timeoutMs = 60_000): Promise<T> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    try {
      const v = await fn();
      if (v) return v;
    } catch {
      /* not yet */
    }
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await sleep(10);
  }
}

async function run(sessionMs: number): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), 'quark-failover-'));
  // Unsupervised: the kills are the experiment.
  const launcher = new Launcher();
  launchers.add(launcher);
  const verbose = !!process.env.QUARK_BENCH_VERBOSE;
  const launch = verbose ? { onLine: (line: string, stream: string) => void (stream === 'stderr' && log(line)) } : {};
  try {
    const zk = await launcher.startZooKeeper({ dataDir: join(dir, 'zk'), clientPort: 0, tickTime: TICK });
    const cluster = new QuarkCluster(launcher, { zk: zk.connectionString, sessionTimeoutMs: sessionMs, apiPort: await freePort(), launch });
    const api = cluster.api;
    auth.authorization = `Bearer ${await mintAdminToken(zk.connectionString, '/quark')}`;
    // Polled every 10 ms: no rate limit here.
    cluster.startApi(['--rate-limit', '0']);
    for (let i = 1; i <= 3; i++) cluster.startCompute(`compute-${i}`, ['--vcpus', '256', '--ram-mb', '1048576']);
    let next = 1;
    const live = new Set<string>();
    const startOrc = () => {
      const id = `orc-${next++}`;
      cluster.startOrc(id);
      live.add(id);
    };
    for (let i = 0; i < 3; i++) startOrc();
    // Balanced: every shard held by a live orc, each live orc holding floor or ceil of its share.
    const balanced = async () => {
      const owners = Object.values(await get<Record<string, string | null>>(`${api}/v1/shards`));
      if (owners.length !== SHARDS || !owners.every((o) => o && live.has(o))) return false;
      const lo = Math.floor(SHARDS / live.size);
      const hi = Math.ceil(SHARDS / live.size);
      return [...live].every((id) => {
        const n = owners.filter((o) => o === id).length;
        return n >= lo && n <= hi;
      });
    };
    await until(balanced, 'cluster up and balanced');

    // kill -9 trials (the session must expire), then one SIGTERM (an orc removed on purpose).
    const signals: NodeJS.Signals[] = [...Array.from({ length: TRIALS }, () => 'SIGKILL' as const), 'SIGTERM'];
    for (const [i, signal] of signals.entries()) {
      const t = i + 1;
      const before = await get<Record<string, string | null>>(`${api}/v1/shards`);
      if (process.env.QUARK_BENCH_VERBOSE) log(JSON.stringify({ before, orcs: await get(`${api}/v1/orcs`) }));
      const victim = [...live][0]!;
      const deadShards = new Set(Object.entries(before).filter(([, o]) => o === victim).map(([n]) => Number(n)));
      const killedAt = Date.now();
      cluster.orcs.get(victim)!.signal(signal);
      live.delete(victim);
      // Ownership is polled from the moment of the kill, while new work arrives; work that lands
      // in the dead orc's shards waits for the takeover.
      const reowned = until(
        async () => {
          const s = await get<Record<string, string | null>>(`${api}/v1/shards`);
          return Object.values(s).every((o) => o && live.has(o)) ? Date.now() : undefined;
        },
        'shards re-owned',
      );
      const accepted = await Promise.all(
        Array.from({ length: UNITS }, (_, i) =>
          fetch(`${api}/v1/servers`, {
            method: 'POST',
            headers: { 'content-type': 'application/json', ...auth },
            body: JSON.stringify({ name: `fo-${t}-${i}`, flavor: { vcpus: 1, ram_mb: 128, disk_gb: 1 } }),
          }).then((r) => r.json() as Promise<{ work_unit_id: string }>),
        ),
      );
      const reownedAt = await reowned;
      const inDead = accepted.filter((a) => deadShards.has(shardOf(a.work_unit_id, SHARDS)));
      const firstSteps = await Promise.all(
        inDead.map((a) =>
          until(async () => {
            const wu = await get<{ state: string; steps_completed: Array<{ completed_at: string }> }>(`${api}/v1/work-units/${a.work_unit_id}`);
            return wu.state === 'SUCCEEDED' ? Date.parse(wu.steps_completed[0]!.completed_at) : undefined;
          }, 'unit done'),
        ),
      );
      const firstStep = Math.min(...firstSteps);
      process.stdout.write(
        `${JSON.stringify({
          trial: t,
          signal,
          session_timeout_ms: sessionMs,
          tick_ms: TICK,
          shards_reowned_ms: reownedAt - killedAt,
          first_resumed_step_ms: Number.isFinite(firstStep) ? firstStep - killedAt : null,
          units_in_dead_shards: inDead.length,
        })}\n`,
      );
      startOrc();
      await until(balanced, 'rebalanced after a new orc joined');
    }
  } finally {
    await launcher.killAll();
    launchers.delete(launcher);
    await rm(dir, { recursive: true, force: true });
  }
}

// Ctrl-C: every process this run started is killed (the launcher's exit hook reaps their groups).
process.once('SIGINT', () => {
  for (const l of launchers) void l.killAll();
  process.exit(130);
});

for (const s of String(values['session-timeouts']).split(',').map(Number)) {
  log(`failover with session timeout ${s} ms…`);
  await run(s);
}
