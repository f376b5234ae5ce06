// The local cluster's life outside `quark up` itself: where its state is (.quark/), whether it runs
// (`quark status`), stopping it (`quark down`), and the probe `up` and `status` share to say what
// the cluster has and lacks (api, orcs, computes, shards owned).
import { existsSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { defaultToken } from '../auth/local.js';
import { table } from '../auth/cli.js';
import { apiUrl } from './client.js';

/** Where `quark up` keeps everything: ZooKeeper's data, logs, the token, images, computes' state. */
export const quarkHome = (): string => resolve('.quark');

/** What `quark up` writes while it runs, so `status` and `down` find it. */
export interface UpState {
  pid: number;
  api: string;
  zk: string;
  detached: boolean;
  started_at: string;
  orcs: number;
  computes: number;
}

export const upStateFile = (home = quarkHome()): string => join(home, 'up.json');

export function isRunning(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** The running `quark up` of this directory, or undefined (no file, or its process is gone). */
export function runningUp(home = quarkHome()): UpState | undefined {
  const f = upStateFile(home);
  if (!existsSync(f)) return undefined;
  try {
    const s = JSON.parse(readFileSync(f, 'utf8')) as UpState;
    return Number.isInteger(s.pid) && isRunning(s.pid) ? s : undefined;
  } catch {
    return undefined;
  }
}

export function writeUpState(s: UpState, home = quarkHome()): void {
  writeFileSync(upStateFile(home), `${JSON.stringify(s, null, 2)}\n`);
}

export function clearUpState(pid: number, home = quarkHome()): void {
  const f = upStateFile(home);
  try {
    if ((JSON.parse(readFileSync(f, 'utf8')) as UpState).pid === pid) rmSync(f, { force: true });
  } catch {
    /* already gone */
  }
}

/** What survives --fresh: the built images (minutes to build again, and no state of any cluster). */
export const KEPT_BY_FRESH = ['images'];

/** Empties .quark/ but its image cache; returns what was removed. */
export function wipeState(home = quarkHome()): string[] {
  if (!existsSync(home)) return [];
  const removed: string[] = [];
  for (const name of readdirSync(home)) {
    if (KEPT_BY_FRESH.includes(name)) continue;
    rmSync(join(home, name), { recursive: true, force: true });
    removed.push(name);
  }
  return removed;
}

// ---- the probe ------------------------------------------------------------------------------------

export interface ClusterProbe {
  api: boolean;
  /** Why the API is not ready, when it is not. */
  apiProblem?: string;
  orcs?: number;
  computes?: { alive: number; total: number };
  shards?: { owned: number; total: number };
  servers?: number;
}

async function get<T>(api: string, path: string, token: string | undefined): Promise<T> {
  const res = await fetch(`${api}${path}`, { headers: token ? { authorization: `Bearer ${token}` } : {}, signal: AbortSignal.timeout(3000) });
  if (!res.ok) throw new Error(`${path} answered ${res.status}`);
  return (await res.json()) as T;
}

/** One look at the cluster through its API (admin reads); what could not be read is left out. */
export async function probeCluster(api: string, token: string | undefined): Promise<ClusterProbe> {
  try {
    const h = await fetch(`${api}/healthz`, { signal: AbortSignal.timeout(3000) });
    if (h.status !== 200) return { api: false, apiProblem: `healthz ${h.status}` };
  } catch (e) {
    return { api: false, apiProblem: (e as Error & { cause?: Error }).cause?.message ?? (e as Error).message };
  }
  const p: ClusterProbe = { api: true };
  const [orcs, computes, shards, servers] = await Promise.allSettled([
    get<unknown[]>(api, '/v1/orcs', token),
    get<Array<{ alive?: boolean }>>(api, '/v1/computes', token),
    get<Record<string, string | null>>(api, '/v1/shards', token),
    get<unknown[]>(api, '/v1/servers', token),
  ]);
  if (orcs.status === 'fulfilled') p.orcs = orcs.value.length;
  if (computes.status === 'fulfilled') p.computes = { alive: computes.value.filter((c) => c.alive).length, total: computes.value.length };
  if (shards.status === 'fulfilled') {
    const owners = Object.values(shards.value);
    p.shards = { owned: owners.filter((o) => o !== null).length, total: owners.length };
  }
  if (servers.status === 'fulfilled') p.servers = servers.value.length;
  return p;
}

/** Ready for `up`: the API answers, the orcs and computes asked for are there, every shard is owned. */
export function isReady(p: ClusterProbe, want: { orcs: number; computes: number }): boolean {
  return p.api && (p.orcs ?? 0) >= want.orcs && (p.computes?.alive ?? 0) >= want.computes && !!p.shards && p.shards.total > 0 && p.shards.owned === p.shards.total;
}

/** What `up` still waits for, in one line: "api ✓  orcs 1/2  computes 0/3 alive  shards 0/16 owned". */
export function waitingLine(p: ClusterProbe, want: { orcs: number; computes: number }): string {
  if (!p.api) return `waiting for the api (${p.apiProblem ?? 'not answering'})`;
  const parts = [
    'api ✓',
    `orcs ${p.orcs ?? '?'}/${want.orcs}`,
    `computes ${p.computes?.alive ?? '?'}/${want.computes} alive`,
    `shards ${p.shards ? `${p.shards.owned}/${p.shards.total}` : '?'} owned`,
  ];
  return `waiting for: ${parts.join('  ')}`;
}

// ---- status and down -----------------------------------------------------------------------------------

export async function status(o: { url?: string; output: 'table' | 'json' }): Promise<number> {
  const up = runningUp();
  const api = o.url ? apiUrl(o.url) : (up?.api ?? apiUrl());
  const probe = await probeCluster(api, defaultToken());
  const running = up !== undefined || probe.api;
  if (o.output === 'json') {
    process.stdout.write(`${JSON.stringify({ running, url: api, up: up ?? null, ...probe }, null, 2)}\n`);
    return running && probe.api ? 0 : 1;
  }
  const rows: string[][] = [];
  if (up) rows.push(['quark up', `pid ${up.pid}, ${up.detached ? 'detached' : 'in a terminal'}, since ${up.started_at}`]);
  else rows.push(['quark up', existsSync(upStateFile()) ? 'not running (its last run did not stop cleanly)' : 'not running here']);
  rows.push(['api', probe.api ? `${api} answering` : `${api} not answering (${probe.apiProblem ?? 'no answer'})`]);
  if (probe.api) {
    rows.push(['orcs', probe.orcs === undefined ? '? (needs an admin token)' : String(probe.orcs)]);
    rows.push(['computes', probe.computes ? `${probe.computes.alive} alive of ${probe.computes.total}` : '?']);
    rows.push(['shards', probe.shards ? `${probe.shards.owned} of ${probe.shards.total} owned` : '?']);
    rows.push(['servers', probe.servers === undefined ? '?' : String(probe.servers)]);
  }
  if (up) rows.push(['zookeeper', up.zk]);
  rows.push(['state', `${quarkHome()} (quark up --fresh starts from empty; quark down stops it)`]);
  process.stdout.write(table(rows));
  return running && probe.api ? 0 : 1;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Stops the running `quark up` (SIGTERM: it stops its processes, then ZooKeeper) and waits for it. */
export async function down(o: { timeoutMs: number }): Promise<number> {
  const up = runningUp();
  if (!up) {
    process.stdout.write('no cluster is running here (nothing to stop)\n');
    return 0;
  }
  process.stdout.write(`stopping the cluster (quark up, pid ${up.pid})…\n`);
  process.kill(up.pid, 'SIGTERM');
  const deadline = Date.now() + o.timeoutMs;
  while (isRunning(up.pid) && Date.now() < deadline) await sleep(100);
  if (isRunning(up.pid)) {
    // Its children die with it: each runs under a watchdog that kills it once its launcher is gone.
    process.stdout.write(`it did not stop within ${o.timeoutMs / 1000} s; killing it\n`);
    process.kill(up.pid, 'SIGKILL');
    while (isRunning(up.pid)) await sleep(100);
  }
  clearUpState(up.pid);
  process.stdout.write('stopped.\n');
  return 0;
}
