// Retention: what ended is kept for a while, then pruned by the orc that owns its shard. Every
// transaction that ends a work unit (or deletes a server) also writes a name into its shard's
// ended/ directory; the name carries when it ended and what it was, so a pass decides what to
// prune from one listing and reads only the records it is about to remove. Both kinds are filed
// under the shard of their server (shardOf(server id)): one listing then holds every finished
// unit of a server, which "at most the last N per server" needs. A unit with no server (failed as
// corrupt before its server could be read) is filed under its own shard.
//   u_<finished_at, 15 digits>_<server id or ->_<work unit id>
//   s_<deleted_at, 15 digits>_<server id>
// Everything here is pure; ts/orc/retention.ts reads, checks and removes.
import type { ServerId, WorkUnitId } from '../common/ids.js';
import { shardOf, type ServerRecord, type WorkUnitRecord } from '../common/model.js';
import type { Paths } from '../zk/paths.js';
import { create, type Op } from './ops.js';

export interface RetentionPolicy {
  /** Finished work units are kept this long after they finished. */
  unitRetentionMs: number;
  /** ...and at most this many per server (the newest); 0: no cap. */
  unitsPerServer: number;
  /** A deleted server's last record is kept this long. */
  deletedRetentionMs: number;
  /** Idempotency keys are kept this long (the API treats older ones as absent anyway). */
  idempotencyTtlMs: number;
}

const DAY = 86_400_000;
export const DEFAULT_RETENTION: RetentionPolicy = {
  unitRetentionMs: 7 * DAY,
  unitsPerServer: 100,
  deletedRetentionMs: 7 * DAY,
  idempotencyTtlMs: DAY,
};

/** A deleted server's record as kept: its last record, DELETED, with when. */
export type DeletedServerRecord = Omit<ServerRecord, 'status'> & { status: 'DELETED'; deleted_at: number; project?: string };

export type Ended =
  | { kind: 'unit'; name: string; at: number; server: ServerId | null; wu: WorkUnitId }
  | { kind: 'server'; name: string; at: number; server: ServerId };

const pad = (ms: number): string => String(Math.max(0, Math.floor(ms))).padStart(15, '0');
const ID = '[A-Za-z0-9-]{1,64}';
const UNIT = new RegExp(`^u_(\\d{15})_(${ID})_(${ID})$`);
const SERVER = new RegExp(`^s_(\\d{15})_(${ID})$`);

export const endedUnitName = (at: number, server: string | null, wu: string): string => `u_${pad(at)}_${server || '-'}_${wu}`;
export const deletedServerName = (at: number, server: string): string => `s_${pad(at)}_${server}`;

/** What a name under ended/ says; null for a name this version did not write (left alone). */
export function parseEnded(name: string): Ended | null {
  let m = UNIT.exec(name);
  if (m) return { kind: 'unit', name, at: Number(m[1]), server: m[2] === '-' ? null : (m[2] as ServerId), wu: m[3] as WorkUnitId };
  m = SERVER.exec(name);
  if (m) return { kind: 'server', name, at: Number(m[1]), server: m[2] as ServerId };
  return null;
}

/** The shard whose ended/ directory files a unit: its server's, or its own when it names none. */
export const unitFiledUnder = (u: Pick<WorkUnitRecord, 'server_id' | 'shard'>, shards: number): number =>
  u.server_id ? shardOf(u.server_id, shards) : u.shard;

/** The op a transaction that ends `unit` (now SUCCEEDED or FAILED, finished_at set) adds. */
export function unitEndedOps(paths: Paths, shards: number, unit: Pick<WorkUnitRecord, 'id' | 'server_id' | 'shard' | 'finished_at' | 'updated_at'>): Op[] {
  const at = unit.finished_at ?? unit.updated_at;
  return [create(paths.endedEntry(unitFiledUnder(unit, shards), endedUnitName(at, unit.server_id || null, unit.id)))];
}

/** The ops a transaction that removes a server's record adds: its last record, kept, and its name in ended/. */
export function serverDeletedOps(paths: Paths, shards: number, server: ServerRecord, at: number): Op[] {
  const kept: DeletedServerRecord = { ...server, status: 'DELETED', task: null, deleted_at: at };
  return [create(paths.deletedServer(server.id), kept), create(paths.endedEntry(shardOf(server.id, shards), deletedServerName(at, server.id)))];
}

/**
 * Of one shard's ended/ names, what to prune now, oldest first, at most `batch`: units finished
 * longer ago than the retention or past their server's newest `unitsPerServer`, and deleted
 * servers kept longer than theirs.
 */
export function selectPrunable(names: readonly string[], policy: RetentionPolicy, now: number, batch: number): Ended[] {
  const parsed = names.map(parseEnded).filter((e): e is Ended => e !== null);
  const out: Ended[] = [];
  const byServer = new Map<string, Extract<Ended, { kind: 'unit' }>[]>();
  for (const e of parsed) {
    if (e.kind === 'server') {
      if (now - e.at >= policy.deletedRetentionMs) out.push(e);
      continue;
    }
    if (now - e.at >= policy.unitRetentionMs) {
      out.push(e);
      continue;
    }
    if (policy.unitsPerServer > 0 && e.server) {
      const list = byServer.get(e.server) ?? [];
      list.push(e);
      byServer.set(e.server, list);
    }
  }
  if (policy.unitsPerServer > 0) {
    for (const list of byServer.values()) {
      if (list.length <= policy.unitsPerServer) continue;
      // Newest first; those past the cap go. Units already out by age were not counted: the
      // newest N still in retention are kept.
      list.sort((a, b) => b.at - a.at || (a.name < b.name ? 1 : -1));
      out.push(...list.slice(policy.unitsPerServer));
    }
  }
  out.sort((a, b) => a.at - b.at || (a.name < b.name ? -1 : 1));
  return out.slice(0, Math.max(0, batch));
}

/** "7d", "24h", "30m", "90s", "500ms", or a bare number of milliseconds → ms (0 allowed: prune at once). */
export function parseDuration(s: string): number {
  const m = /^([0-9]{1,12})(ms|s|m|h|d)?$/.exec(s.trim());
  if (!m) throw new Error(`invalid duration ${JSON.stringify(s)}: a number with ms, s, m, h or d (e.g. 7d)`);
  const unit = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 }[(m[2] ?? 'ms') as 'ms' | 's' | 'm' | 'h' | 'd'];
  return Number(m[1]) * unit;
}
