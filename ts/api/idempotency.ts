// Idempotency-Key: per project (the key's znode name hashes the project with it), remembered for
// 24 h, and matched on the canonical body (object keys sorted), so {"a":1,"b":2} and {"b":2,"a":1}
// are the same request. Expired keys are treated as absent; the orcs prune them (ts/orc/retention.ts).
import { createHash } from 'node:crypto';
import { isZkError } from '../zk/errors.js';
import type { Zk } from '../zk/client.js';
import type { Paths } from '../zk/paths.js';
import type { ProjectId } from '../auth/policy.js';

export const IDEMPOTENCY_TTL_MS = 24 * 3_600_000;

/** JSON with every object's keys in order: one text for one value, whatever order it was written in. */
export function canonicalJson(v: unknown): string {
  if (v === null || typeof v !== 'object') return JSON.stringify(v) ?? 'null';
  if (Array.isArray(v)) return `[${v.map(canonicalJson).join(',')}]`;
  const o = v as Record<string, unknown>;
  const keys = Object.keys(o)
    .filter((k) => o[k] !== undefined)
    .sort();
  return `{${keys.map((k) => `${JSON.stringify(k)}:${canonicalJson(o[k])}`).join(',')}}`;
}

export const fingerprintOf = (body: unknown): string => createHash('sha256').update(canonicalJson(body)).digest('hex');

/** The znode a key lives at: sha256 of project, route and key, so no two projects ever share one. */
export function keyPath(paths: Paths, project: ProjectId, route: string, key: string): string {
  return paths.idempotencyKey(createHash('sha256').update(`${project}\n${route}\n${key}`).digest('hex'));
}

export interface IdempotencyRecord<A> {
  fingerprint: string;
  answer: A;
  project: ProjectId;
  created_at: number;
}

export const expired = (r: { created_at?: unknown }, now: number, ttlMs = IDEMPOTENCY_TTL_MS): boolean =>
  typeof r.created_at !== 'number' || now - r.created_at >= ttlMs;

/**
 * Removes keys past their TTL, a bounded number per pass (reading each costs one round trip).
 * Every API runs it; two removing the same key is harmless.
 */
export async function pruneIdempotencyKeys(
  zk: Zk,
  paths: Paths,
  o: { now?: number; ttlMs?: number; maxPerPass?: number } = {},
): Promise<{ scanned: number; removed: number }> {
  const now = o.now ?? Date.now();
  const names = (await zk.children(paths.idempotency)) ?? [];
  let removed = 0;
  const todo = names.slice(0, o.maxPerPass ?? 5000);
  for (let i = 0; i < todo.length; i += 64) {
    await Promise.all(
      todo.slice(i, i + 64).map(async (name) => {
        const p = `${paths.idempotency}/${name}`;
        const rec = await zk.get<{ created_at?: number }>(p).catch(() => null);
        if (!rec || !expired(rec.value ?? {}, now, o.ttlMs)) return;
        try {
          await zk.remove(p, rec.stat.version);
          removed++;
        } catch (e) {
          if (!isZkError(e, 'NO_NODE') && !isZkError(e, 'BAD_VERSION')) throw e;
        }
      }),
    );
  }
  return { scanned: todo.length, removed };
}
