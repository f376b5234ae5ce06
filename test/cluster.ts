// A real local cluster for integration tests: the api, orcs and computes as separate processes
// against the suite's ZooKeeper, under a root of their own.
import { Zk } from '../ts/zk/client.js';
import { Paths } from '../ts/zk/paths.js';
import { freePort } from '../ts/zk/server.js';
import { uniqueRoot, waitFor, zkConnect, type Child, type ProcessGroup } from './support/index.js';
import { mintToken } from '../ts/auth/tokens.js';
import { AuthPaths } from '../ts/auth/layout.js';
import { asProjectId } from '../ts/auth/policy.js';

export interface TestCluster {
  api: string;
  /** An admin token of this cluster; http() sends it to `api` unless told otherwise. */
  token: string;
  root: string;
  zk: Zk;
  paths: Paths;
  computes: Map<string, Child>;
  orcs: Map<string, Child>;
  apiProc: Child;
  startCompute(id: string, extra?: string[]): Child;
  startOrc(id: string): Child;
  close(): Promise<void>;
}

export interface ClusterSpec {
  computes: number;
  orcs: number;
  /** Extra flags for every compute, e.g. capacities. */
  computeArgs?: string[];
  /** Extra flags for every orc. */
  orcArgs?: string[];
  sessionTimeoutMs?: number;
  zk?: string;
}

/** Each running test cluster's API and its admin token. */
const adminTokens = new Map<string, string>();
/** For a test that starts its own api: http() sends `token` to it (null: no more). */
export function useTokenFor(api: string, token: string | null): void {
  if (token === null) adminTokens.delete(api);
  else adminTokens.set(api, token);
}
const tokenFor = (url: string): Record<string, string> => {
  for (const [api, token] of adminTokens) if (url.startsWith(`${api}/`)) return { authorization: `Bearer ${token}` };
  return {};
};

export async function http<T = any>(url: string, init?: { method?: string; body?: unknown; headers?: Record<string, string> }) {
  const res = await fetch(url, {
    method: init?.method ?? 'GET',
    headers: { ...tokenFor(url), ...(init?.body !== undefined ? { 'content-type': 'application/json' } : {}), ...(init?.headers ?? {}) },
    body: init?.body !== undefined ? JSON.stringify(init.body) : undefined,
  });
  const text = await res.text();
  return { status: res.status, body: (text ? JSON.parse(text) : undefined) as T };
}

export async function startCluster(group: ProcessGroup, spec: ClusterSpec): Promise<TestCluster> {
  const root = uniqueRoot('e2e');
  const zkConn = spec.zk ?? zkConnect();
  const port = await freePort();
  const common = ['--zk', zkConn, '--root', root, '--session-timeout-ms', String(spec.sessionTimeoutMs ?? 2000)];
  const zk = await Zk.connect(zkConn);
  const paths = new Paths(root);
  const computes = new Map<string, Child>();
  const orcs = new Map<string, Child>();
  const startCompute = (id: string, extra: string[] = []): Child => {
    const c = group.spawnQuark(['compute', '--id', id, ...(spec.computeArgs ?? []), ...extra, ...common], { label: id });
    computes.set(id, c);
    return c;
  };
  const startOrc = (id: string): Child => {
    const c = group.spawnQuark(['orc', '--id', id, ...(spec.orcArgs ?? []), ...common], { label: id });
    orcs.set(id, c);
    return c;
  };
  const { secret: token } = await mintToken(zk, new AuthPaths(paths), { project: asProjectId('admin'), role: 'admin', name: 'test cluster' });
  const apiProc = group.spawnQuark(['api', '--port', String(port), ...common], { label: 'api' });
  const api = `http://127.0.0.1:${port}`;
  adminTokens.set(api, token);
  for (let i = 1; i <= spec.computes; i++) startCompute(`compute-${i}`);
  for (let i = 1; i <= spec.orcs; i++) startOrc(`orc-${i}`);
  await waitFor(
    async () => {
      const cs = await http<Array<{ alive: boolean }>>(`${api}/v1/computes`);
      const shards = await http<Record<string, string | null>>(`${api}/v1/shards`);
      return cs.body.filter((c) => c.alive).length === spec.computes && Object.values(shards.body).every((o) => o !== null);
    },
    { what: 'every compute alive and every shard owned', timeoutMs: 60_000, intervalMs: 200 },
  );
  return {
    api,
    token,
    root,
    zk,
    paths,
    computes,
    orcs,
    apiProc,
    startCompute,
    startOrc,
    close: async () => {
      adminTokens.delete(api);
      await group.stopAll();
      await zk.removeTree(root).catch(() => {});
      await zk.close();
    },
  };
}

export interface WorkUnitView {
  id: string;
  kind: string;
  state: string;
  server_id: string;
  compute_id: string | null;
  steps_completed: Array<{ name: string; time_to_completion_ms: number }>;
  steps_left: string[];
  error?: { code: string; message: string; rejected?: Record<string, number> };
}

export async function waitForUnit(api: string, id: string, timeoutMs = 60_000): Promise<WorkUnitView> {
  return waitFor(
    async () => {
      const r = await http<WorkUnitView>(`${api}/v1/work-units/${id}`);
      return r.body.state === 'SUCCEEDED' || r.body.state === 'FAILED' ? r.body : undefined;
    },
    { what: `work unit ${id} to finish`, timeoutMs, intervalMs: 100 },
  );
}
