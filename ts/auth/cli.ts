// `quark token …` and `quark project …`: calls to the API with the caller's token (QUARK_TOKEN or
// .quark/token), except `token create --bootstrap`, which writes the first admin token straight into
// ZooKeeper for a cluster that has none yet.
import { existsSync, readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { AuthPaths } from './layout.js';
import { asProjectId, isRole } from './policy.js';
import { defaultToken, tokenFile } from './token-file.js';
import { mintToken, parseTtl } from './tokens.js';
import { RESOURCES, type Quota } from './quota.js';
import { CliError } from '../cli/errors.js';

export { CliError };

/** The API to call: --api, else $QUARK_API, else what `quark up` wrote, else the default port. */
export function defaultApi(): string {
  if (process.env.QUARK_API) return process.env.QUARK_API;
  const f = resolve('.quark/cluster.json');
  if (existsSync(f)) {
    try {
      const api = (JSON.parse(readFileSync(f, 'utf8')) as { api?: string }).api;
      if (api) return api;
    } catch {
      /* fall through */
    }
  }
  return 'http://127.0.0.1:8080';
}

/** One call to the API with the caller's token; a refusal becomes a CliError naming its status and code. */
export async function call<T>(api: string, method: string, path: string, body?: unknown): Promise<T> {
  const token = defaultToken();
  if (!token) throw new CliError(`no token: set QUARK_TOKEN or put one in ${tokenFile()} (quark up writes one)`);
  const res = await fetch(`${api.replace(/\/$/, '')}${path}`, {
    method,
    headers: { authorization: `Bearer ${token}`, ...(body !== undefined ? { 'content-type': 'application/json' } : {}) },
    body: body !== undefined ? JSON.stringify(body) : undefined,
  });
  const text = await res.text();
  const parsed = text ? (JSON.parse(text) as unknown) : undefined;
  if (!res.ok) {
    const e = (parsed as { error?: { code?: string; message?: string } } | undefined)?.error;
    throw new CliError(`${method} ${path}: ${res.status} ${e?.code ?? ''} ${e?.message ?? text}`.trim());
  }
  return parsed as T;
}

export const table = (rows: string[][]): string => {
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => (r[i] ?? '').length)));
  return rows.map((r) => r.map((c, i) => c.padEnd(widths[i]!)).join('  ').trimEnd()).join('\n') + '\n';
};

export interface TokenCreateArgs {
  project: string;
  role: string;
  ttl?: string;
  name?: string;
  bootstrap?: { zk: string; root: string };
}

export async function tokenCreate(api: string, a: TokenCreateArgs): Promise<string> {
  const project = asProjectId(a.project);
  if (!isRole(a.role)) throw new CliError('--role must be admin, member or reader');
  const ttlMs = a.ttl ? parseTtl(a.ttl) : null;
  let id: string;
  let token: string;
  let expires: string | null;
  if (a.bootstrap) {
    // Loaded here only: every other command of the CLI talks to the API, not to ZooKeeper.
    const { Zk } = await import('../zk/client.js');
    const { readConfig } = await import('../zk/config.js');
    const { Paths } = await import('../zk/paths.js');
    const zk = await Zk.connect(a.bootstrap.zk, { connectTimeoutMs: 15_000 });
    try {
      // The first admin step of a cluster started by hand (one process per host, no `quark up`):
      // it sets a fresh root up as every process would (the skeleton, the config), and with the
      // admin's credentials under ACLs (ts/zk/config.ts), which no other role may do. Without
      // it the api, orcs and computes of a fresh root under ACLs stop with ZK_ROOT_NOT_INITIALISED.
      await readConfig(zk, new Paths(a.bootstrap.root));
      const { record, secret } = await mintToken(zk, new AuthPaths({ root: a.bootstrap.root }), { project, role: a.role, ttlMs, name: a.name ?? null });
      ({ id, token } = { id: record.id, token: secret });
      expires = record.expires_at === null ? null : new Date(record.expires_at).toISOString();
    } finally {
      await zk.close();
    }
  } else {
    const r = await call<{ id: string; token: string; expires_at: string | null }>(api, 'POST', '/v1/tokens', {
      project,
      role: a.role,
      ...(ttlMs ? { ttl_seconds: Math.ceil(ttlMs / 1000) } : {}),
      ...(a.name ? { name: a.name } : {}),
    });
    ({ id, token, expires_at: expires } = r);
  }
  return `id       ${id}\nproject  ${project}\nrole     ${a.role}\nexpires  ${expires ?? 'never'}\ntoken    ${token}\n\nThe token is shown this once; Quark keeps only its sha256.\n`;
}

interface TokenRow {
  id: string;
  project: string;
  role: string;
  status: string;
  name: string | null;
  created_at: string;
  expires_at: string | null;
}

export async function tokenList(api: string): Promise<string> {
  const rows = await call<TokenRow[]>(api, 'GET', '/v1/tokens');
  return table([
    ['ID', 'PROJECT', 'ROLE', 'STATUS', 'CREATED', 'EXPIRES', 'NAME'],
    ...rows.map((r) => [r.id, r.project, r.role, r.status, r.created_at, r.expires_at ?? 'never', r.name ?? '']),
  ]);
}

export async function tokenRevoke(api: string, id: string): Promise<string> {
  const r = await call<TokenRow>(api, 'DELETE', `/v1/tokens/${encodeURIComponent(id)}`);
  return `token ${r.id} (${r.project}, ${r.role}) is ${r.status}\n`;
}

/** --instances 10 --vcpus 20 …; "none" lifts a limit. */
export function quotaFromFlags(flags: Record<string, string | undefined>): Quota {
  const q: Quota = {};
  for (const r of RESOURCES) {
    const v = flags[r.replace('_', '-')];
    if (v === undefined) continue;
    if (v === 'none') q[r] = null;
    else if (/^[0-9]{1,10}$/.test(v)) q[r] = Number(v);
    else throw new CliError(`--${r.replace('_', '-')} must be a whole number or "none", got ${JSON.stringify(v)}`);
  }
  return q;
}

const showCounts = (label: string, c: Partial<Record<string, number | null>>): string =>
  `${label.padEnd(8)} ${RESOURCES.map((r) => `${r}=${c[r] ?? (label === 'quota' ? 'unlimited' : 0)}`).join(' ')}\n`;

export async function projectQuotaSet(api: string, project: string, q: Quota): Promise<string> {
  // A PUT replaces the whole quota: start from the one in force so unnamed limits stay as they were.
  const cur = await call<{ quota: Quota }>(api, 'GET', `/v1/projects/${encodeURIComponent(asProjectId(project))}/quota`);
  const r = await call<{ quota: Quota }>(api, 'PUT', `/v1/projects/${encodeURIComponent(project)}/quota`, { ...cur.quota, ...q });
  return showCounts('quota', r.quota);
}

export async function projectQuotaShow(api: string, project: string): Promise<string> {
  const r = await call<{ quota: Quota }>(api, 'GET', `/v1/projects/${encodeURIComponent(asProjectId(project))}/quota`);
  return showCounts('quota', r.quota);
}

export async function projectUsage(api: string, project: string): Promise<string> {
  const r = await call<{ usage: Record<string, number>; quota: Quota }>(api, 'GET', `/v1/projects/${encodeURIComponent(asProjectId(project))}/usage`);
  return showCounts('usage', r.usage) + showCounts('quota', r.quota);
}
