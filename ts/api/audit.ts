// The audit trail: one sequential znode per mutating call (who, project, what, when, result),
// written after the answer went out so it never slows a request, and pruned to the newest
// `maxEntries` (the oldest go first). Names carry the time (audit/e-<ms>-<seq>), so `since` is
// answered from the names alone and only the entries returned are read.
import type { Zk } from '../zk/client.js';
import type { Logger } from '../common/log.js';
import type { AuthPaths } from '../auth/layout.js';

export interface AuditRecord {
  at: number;
  token_id: string | null;
  project: string | null;
  role: string | null;
  method: string;
  /** The route's pattern, e.g. /v1/servers/:id/actions (null: no route matched). */
  route: string | null;
  path: string;
  /** The `:id` the call named, if any. */
  target: string | null;
  status: number;
  /** The error code answered, if any. */
  code: string | null;
}

export const MUTATING = new Set(['POST', 'PUT', 'PATCH', 'DELETE']);

const NAME = /^e-([0-9]{1,15})-([0-9]{10})$/;

export function parseAuditName(name: string): { at: number; seq: number } | null {
  const m = NAME.exec(name);
  return m ? { at: Number(m[1]), seq: Number(m[2]) } : null;
}

/** `since` as given: ISO 8601, or milliseconds since the epoch. */
export function parseSince(s: string | undefined): number | null {
  if (s === undefined || s === '') return 0;
  if (/^[0-9]{1,15}$/.test(s)) return Number(s);
  const t = Date.parse(s);
  return Number.isFinite(t) ? t : null;
}

/** Of the names under audit/, the ones at or after `since`, oldest first, at most `limit`. */
export function selectEntries(names: readonly string[], since: number, limit: number): Array<{ name: string; at: number; seq: number }> {
  const out: Array<{ name: string; at: number; seq: number }> = [];
  for (const name of names) {
    const p = parseAuditName(name);
    if (p && p.at >= since) out.push({ name, ...p });
  }
  return out.sort((a, b) => a.seq - b.seq).slice(0, limit);
}

/** The oldest names past the newest `keep`, to remove. */
export function overflow(names: readonly string[], keep: number): string[] {
  const parsed = names.map((name) => ({ name, p: parseAuditName(name) })).filter((x) => x.p !== null);
  if (parsed.length <= keep) return [];
  parsed.sort((a, b) => a.p!.seq - b.p!.seq);
  return parsed.slice(0, parsed.length - keep).map((x) => x.name);
}

export class AuditLog {
  private writes = 0;
  private pending = new Set<Promise<void>>();
  private pruning: Promise<void> | null = null;

  constructor(
    private readonly zk: Zk,
    private readonly ap: AuthPaths,
    private readonly o: { maxEntries?: number; pruneEvery?: number; log?: Logger } = {},
  ) {}

  /** Records one call; never throws (a failed write is logged). */
  record(r: AuditRecord): void {
    const p = this.zk
      .create(this.ap.auditPrefix(r.at), r, 'sequential')
      .then(() => {
        if (++this.writes % (this.o.pruneEvery ?? 200) === 0) this.prune();
      })
      .catch((err) => this.o.log?.warn('audit write failed', { err, method: r.method, path: r.path, status: r.status }));
    this.pending.add(p);
    void p.finally(() => this.pending.delete(p));
  }

  /** Resolves once every write begun so far (and a prune it started) has ended. */
  async flush(): Promise<void> {
    while (this.pending.size > 0 || this.pruning) {
      await Promise.all([...this.pending]);
      await this.pruning;
    }
  }

  prune(): void {
    if (this.pruning) return;
    this.pruning = (async () => {
      const names = (await this.zk.children(this.ap.audit)) ?? [];
      for (const name of overflow(names, this.o.maxEntries ?? 10_000)) {
        await this.zk.remove(`${this.ap.audit}/${name}`).catch(() => {}); // another API may have removed it
      }
    })()
      .catch((err) => this.o.log?.warn('audit prune failed', { err }))
      .finally(() => (this.pruning = null));
  }

  async read(since: number, limit: number): Promise<Array<AuditRecord & { seq: number }>> {
    const names = (await this.zk.children(this.ap.audit)) ?? [];
    const chosen = selectEntries(names, since, limit);
    const recs = await Promise.all(chosen.map(async (c) => ({ c, v: await this.zk.get<AuditRecord>(`${this.ap.audit}/${c.name}`) })));
    return recs.filter((r) => r.v?.value).map((r) => ({ ...r.v!.value!, seq: r.c.seq }));
  }
}
