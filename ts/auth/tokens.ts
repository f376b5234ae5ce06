// Bearer tokens. A token is `quark.<id>.<secret>`: the id names its znode (tokens/<id>), which holds
// the project, the role and the sha256 of the whole token; the secret itself is printed once and
// never stored. Stream tickets (for EventSource, which cannot send headers) are derived from it.
import { createHash, createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import { isZkError } from '../zk/errors.js';
import type { Zk } from '../zk/client.js';
import type { AuthPaths } from './layout.js';
import { isProjectId, isRole, type Principal, type ProjectId, type Role } from './policy.js';

export interface TokenRecord {
  id: string;
  project: ProjectId;
  role: Role;
  /** sha256 (hex) of the whole token string. */
  hash: string;
  name: string | null;
  created_at: number;
  /** ms since the epoch; null: never. */
  expires_at: number | null;
  revoked_at: number | null;
  /** The token that created this one (null: made directly in ZooKeeper, e.g. by `quark up`). */
  created_by: string | null;
}

/** What `token list` shows: everything but the hash. */
export type TokenView = Omit<TokenRecord, 'hash'> & { status: 'active' | 'expired' | 'revoked' };

export type AuthFailureCode = 'TOKEN_MISSING' | 'TOKEN_MALFORMED' | 'TOKEN_INVALID' | 'TOKEN_EXPIRED' | 'TOKEN_REVOKED';

/** Why a credential was refused; the API answers 401 with this code. */
export class AuthFailure extends Error {
  constructor(
    readonly code: AuthFailureCode,
    message: string,
  ) {
    super(message);
  }
}

const TOKEN = /^quark\.([0-9a-f]{24})\.([A-Za-z0-9_-]{43})$/;
const TICKET = /^qst\.([0-9a-f]{24})\.([0-9]{13})\.([A-Za-z0-9_-]{43})$/;
export const TOKEN_ID = /^[0-9a-f]{24}$/;

export const sha256 = (s: string): string => createHash('sha256').update(s).digest('hex');

/** The id a token string names, or null if it is not shaped like a token. */
export function parseToken(raw: string): { id: string } | null {
  const m = TOKEN.exec(raw);
  return m ? { id: m[1]! } : null;
}

export function newToken(): { id: string; secret: string } {
  const id = randomBytes(12).toString('hex');
  return { id, secret: `quark.${id}.${randomBytes(32).toString('base64url')}` };
}

/** "24h", "30m", "7d", "90s", or a bare number of seconds → ms. */
export function parseTtl(s: string): number {
  const m = /^([0-9]{1,9})([smhd]?)$/.exec(s.trim());
  if (!m) throw new Error(`invalid TTL ${JSON.stringify(s)}: a number with s, m, h or d (e.g. 24h)`);
  const unit = { '': 1000, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 }[m[2] as '' | 's' | 'm' | 'h' | 'd'];
  const ms = Number(m[1]) * unit;
  if (ms <= 0) throw new Error('a TTL must be positive');
  return ms;
}

export function tokenStatus(r: TokenRecord, now = Date.now()): TokenView['status'] {
  if (r.revoked_at !== null) return 'revoked';
  if (r.expires_at !== null && r.expires_at <= now) return 'expired';
  return 'active';
}

export function viewOf(r: TokenRecord, now = Date.now()): TokenView {
  const { hash: _hash, ...rest } = r;
  return { ...rest, status: tokenStatus(r, now) };
}

/** A record as read from ZooKeeper, checked field by field: anything malformed is no token at all. */
function wellFormed(v: unknown, id: string): TokenRecord | null {
  const r = v as Partial<TokenRecord> | undefined;
  if (!r || typeof r !== 'object' || r.id !== id || !isProjectId(r.project) || !isRole(r.role)) return null;
  if (typeof r.hash !== 'string' || !/^[0-9a-f]{64}$/.test(r.hash)) return null;
  if (r.expires_at !== null && typeof r.expires_at !== 'number') return null;
  if (r.revoked_at !== null && typeof r.revoked_at !== 'number') return null;
  return r as TokenRecord;
}

function sameHex(a: string, b: string): boolean {
  const x = Buffer.from(a, 'hex');
  const y = Buffer.from(b, 'hex');
  return x.length === y.length && timingSafeEqual(x, y);
}

export interface MintOptions {
  project: ProjectId;
  role: Role;
  ttlMs?: number | null;
  name?: string | null;
  createdBy?: string | null;
  now?: number;
}

/** Creates a token in ZooKeeper; returns the record and the secret (shown once, never stored). */
export async function mintToken(zk: Zk, ap: AuthPaths, o: MintOptions): Promise<{ record: TokenRecord; secret: string }> {
  const now = o.now ?? Date.now();
  const { id, secret } = newToken();
  const record: TokenRecord = {
    id,
    project: o.project,
    role: o.role,
    hash: sha256(secret),
    name: o.name ?? null,
    created_at: now,
    expires_at: o.ttlMs ? now + o.ttlMs : null,
    revoked_at: null,
    created_by: o.createdBy ?? null,
  };
  await zk.mkdirp(ap.tokens);
  await zk.create(ap.token(id), record);
  return { record, secret };
}

export async function listTokens(zk: Zk, ap: AuthPaths): Promise<TokenRecord[]> {
  const ids = ((await zk.children(ap.tokens)) ?? []).filter((id) => TOKEN_ID.test(id));
  const recs = await Promise.all(ids.map(async (id) => wellFormed((await zk.get(ap.token(id)))?.value, id)));
  return recs.filter((r): r is TokenRecord => r !== null).sort((a, b) => a.created_at - b.created_at || a.id.localeCompare(b.id));
}

/** Marks a token revoked (kept, so a caller is told REVOKED rather than INVALID). False if there is none. */
export async function revokeToken(zk: Zk, ap: AuthPaths, id: string, now = Date.now()): Promise<TokenRecord | null> {
  if (!TOKEN_ID.test(id)) return null;
  for (;;) {
    const cur = await zk.get(ap.token(id));
    const rec = wellFormed(cur?.value, id);
    if (!cur || !rec) return null;
    if (rec.revoked_at !== null) return rec;
    const next = { ...rec, revoked_at: now };
    try {
      await zk.set(ap.token(id), next, cur.stat.version);
      return next;
    } catch (e) {
      if (isZkError(e, 'BAD_VERSION')) continue;
      if (isZkError(e, 'NO_NODE')) return null;
      throw e;
    }
  }
}

/** How long a stream ticket lives: long enough to open a stream; EventSource reconnects need a fresh one after. */
export const TICKET_TTL_MS = 5 * 60_000;

/**
 * Checks bearer tokens and stream tickets against tokens/. Records are cached while a data watch on
 * them is set, so a revoke reaches every API at once (the client sets its watches again after a
 * reconnect; a new session starts a new app, with an empty cache).
 */
export class TokenStore {
  private readonly cache = new Map<string, TokenRecord>();
  /** Reads in flight, so concurrent requests with one new token register one watch, not one each. */
  private readonly loading = new Map<string, Promise<TokenRecord | null>>();
  private readonly listeners = new Set<(id: string) => void>();

  constructor(
    private readonly zk: Zk,
    private readonly ap: AuthPaths,
    private readonly o: { maxEntries?: number } = {},
  ) {}

  /** Called with a token id whenever its record changes (a revoke): open streams of it are ended. */
  onChange(fn: (id: string) => void): () => void {
    this.listeners.add(fn);
    return () => this.listeners.delete(fn);
  }

  private record(id: string): Promise<TokenRecord | null> {
    const hit = this.cache.get(id);
    if (hit) return Promise.resolve(hit);
    let p = this.loading.get(id);
    if (!p) {
      p = this.load(id).finally(() => this.loading.delete(id));
      this.loading.set(id, p);
    }
    return p;
  }

  private async load(id: string): Promise<TokenRecord | null> {
    // A change can arrive with the reply and fire the watch before this resumes: then the record
    // read is already stale and is not cached.
    let fired = false;
    const v = await this.zk.get(this.ap.token(id), () => {
      fired = true;
      this.cache.delete(id);
      for (const fn of this.listeners) fn(id);
    });
    const rec = wellFormed(v?.value, id);
    // Only records that exist are cached: their watch tells when they change. A missing one has no watch.
    if (rec && !fired) {
      if (this.cache.size >= (this.o.maxEntries ?? 10_000)) this.cache.delete(this.cache.keys().next().value!);
      this.cache.set(id, rec);
    }
    return rec;
  }

  private usable(rec: TokenRecord | null, now: number): TokenRecord {
    if (!rec) throw new AuthFailure('TOKEN_INVALID', 'unknown token');
    if (rec.revoked_at !== null) throw new AuthFailure('TOKEN_REVOKED', `token ${rec.id} was revoked`);
    if (rec.expires_at !== null && rec.expires_at <= now) throw new AuthFailure('TOKEN_EXPIRED', `token ${rec.id} expired at ${new Date(rec.expires_at).toISOString()}`);
    return rec;
  }

  /** Is this token's record cached here (so checking it needs no ZooKeeper read)? */
  holds(raw: string | undefined): boolean {
    const t = raw ? parseToken(raw) : null;
    return !!t && this.cache.has(t.id);
  }

  /** The principal an `Authorization` header value names, or an AuthFailure saying why not. */
  async verifyHeader(header: string | undefined, now = Date.now()): Promise<Principal> {
    if (header === undefined || header === '') throw new AuthFailure('TOKEN_MISSING', 'this call needs Authorization: Bearer <token>');
    const m = /^Bearer +(\S+) *$/i.exec(header);
    if (!m) throw new AuthFailure('TOKEN_MALFORMED', 'Authorization must be "Bearer <token>"');
    return this.verify(m[1]!, now);
  }

  async verify(raw: string, now = Date.now()): Promise<Principal> {
    const t = parseToken(raw);
    if (!t) throw new AuthFailure('TOKEN_MALFORMED', 'not a Quark token (quark.<id>.<secret>)');
    const rec = await this.record(t.id);
    if (!rec || !sameHex(rec.hash, sha256(raw))) throw new AuthFailure('TOKEN_INVALID', 'unknown token');
    const ok = this.usable(rec, now);
    return { tokenId: ok.id, project: ok.project, role: ok.role };
  }

  /** A ticket for the event streams: `qst.<id>.<expiry ms>.<hmac>`, keyed by the token's stored hash. */
  async issueTicket(p: Principal, now = Date.now()): Promise<{ ticket: string; expires_at: number }> {
    const rec = this.usable(await this.record(p.tokenId), now);
    const exp = Math.min(now + TICKET_TTL_MS, rec.expires_at ?? Infinity);
    return { ticket: `qst.${rec.id}.${String(exp).padStart(13, '0')}.${ticketMac(rec.hash, rec.id, exp)}`, expires_at: exp };
  }

  async verifyTicket(ticket: string, now = Date.now()): Promise<Principal> {
    const m = TICKET.exec(ticket);
    if (!m) throw new AuthFailure('TOKEN_MALFORMED', 'not a stream ticket');
    const [, id, expText, mac] = m as unknown as [string, string, string, string];
    const exp = Number(expText);
    const rec = await this.record(id);
    if (!rec || !sameBase64(mac, ticketMac(rec.hash, id, exp))) throw new AuthFailure('TOKEN_INVALID', 'unknown stream ticket');
    if (exp <= now) throw new AuthFailure('TOKEN_EXPIRED', 'the stream ticket expired; ask for a new one');
    const ok = this.usable(rec, now);
    return { tokenId: ok.id, project: ok.project, role: ok.role };
  }
}

function ticketMac(hash: string, id: string, exp: number): string {
  return createHmac('sha256', Buffer.from(hash, 'hex')).update(`stream\n${id}\n${exp}`).digest('base64url');
}

function sameBase64(a: string, b: string): boolean {
  const x = Buffer.from(a, 'base64url');
  const y = Buffer.from(b, 'base64url');
  return x.length === y.length && timingSafeEqual(x, y);
}
