// A real local cluster for integration tests: the api, orcs and computes as separate processes
// (the cluster launcher's QuarkCluster, through the test's ProcessGroup) against the suite's
// ZooKeeper, under a root of their own.
import { Zk } from '../ts/zk/client.js';
import { Paths } from '../ts/zk/paths.js';
import { freePort } from '../ts/dev/zookeeper.js';
import { QuarkCluster } from '../ts/dev/cluster.js';
import { uniqueRoot, waitFor, zkConnect, zkCredentials, type Child, type ProcessGroup } from './support/index.js';
import { readConfig } from '../ts/zk/config.js';
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
  startOrc(id: string, extra?: string[]): Child;
  close(): Promise<void>;
}

export interface ClusterSpec {
  computes: number;
  orcs: number;
  /** Extra flags for every compute, e.g. capacities. */
  computeArgs?: string[];
  /** Extra flags for every orc. */
  orcArgs?: string[];
  /** Extra flags for the api. */
  apiArgs?: string[];
  sessionTimeoutMs?: number;
  zk?: string;
}

/** Each running test cluster's API and its admin token. */
const adminTokens = new Map<string, string>();
const tokenFor = (url: string): Record<string, string> => {
  for (const [api, token] of adminTokens) if (url.startsWith(`${api}/`)) return { authorization: `Bearer ${token}` };
  return {};
};

/** Makes http() send `token` to `api` (a cluster a test starts by itself, not through startCluster). */
export function useAdminToken(api: string, token: string): void {
  adminTokens.set(api, token);
}

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
  // The suite's admin session puts the root under ACLs; each process then runs as its own role.
  const zk = await Zk.connect(zkConn);
  const paths = new Paths(root);
  await readConfig(zk, paths);
  const { secret: token } = await mintToken(zk, new AuthPaths(paths), { project: asProjectId('admin'), role: 'admin', name: 'test cluster' });
  const cluster = new QuarkCluster(group, {
    token,
    credentials: zkCredentials(),
    zk: zkConn,
    root,
    sessionTimeoutMs: spec.sessionTimeoutMs ?? 2000,
    apiPort: await freePort(),
    computeArgs: spec.computeArgs,
    orcArgs: spec.orcArgs,
    apiArgs: spec.apiArgs,
  });
  const api = cluster.api;
  adminTokens.set(api, token);
  const apiProc = cluster.startApi();
  for (let i = 1; i <= spec.computes; i++) cluster.startCompute(`compute-${i}`);
  for (let i = 1; i <= spec.orcs; i++) cluster.startOrc(`orc-${i}`);
  await cluster.ready({ computes: spec.computes, timeoutMs: 60_000 });
  return {
    api,
    token,
    root,
    zk,
    paths,
    computes: cluster.computes,
    orcs: cluster.orcs,
    apiProc,
    startCompute: (id, extra) => cluster.startCompute(id, extra),
    startOrc: (id, extra) => cluster.startOrc(id, extra),
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
