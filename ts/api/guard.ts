// The API's front door, installed on the root instance before any route: the Host check (DNS
// rebinding), load shedding, the bearer token and the route's access, the per-token rate limit,
// and the audit record of every mutating call. Routes say what they need in `config.access`; a
// route that says nothing is admin-only.
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import rateLimit from '@fastify/rate-limit';
import underPressure from '@fastify/under-pressure';
import type { Logger } from '../common/log.js';
import { decide, type Access, type Principal } from '../auth/policy.js';
import { AuthFailure, type TokenStore } from '../auth/tokens.js';
import { ApiError, toErrorBody } from './errors.js';
import { MUTATING, type AuditLog } from './audit.js';

declare module 'fastify' {
  interface FastifyContextConfig {
    /** What the route needs; absent: admin. */
    access?: Access;
    /** An event stream: a stream ticket in `?ticket=` stands in for the Authorization header. */
    stream?: boolean;
  }
  interface FastifyRequest {
    principal: Principal | null;
  }
  interface FastifyReply {
    /** The error code answered, for the audit record. */
    errorCode: string | null;
  }
}

export interface GuardOptions {
  tokens: TokenStore;
  /** Host header values accepted (lowercase host[:port]); null: any (a non-loopback bind, behind TLS). */
  allowedHosts: ReadonlySet<string> | null;
  /** Requests per token (or per address, before a token is known) per window; null: no limit. */
  rateLimit: { max: number; windowMs: number } | null;
  /** Shed load with 503 past these; null: never. */
  pressure: { maxEventLoopDelayMs: number; maxHeapUsedBytes: number; maxEventLoopUtilization: number; retryAfterS: number; sampleIntervalMs?: number } | null;
  audit: AuditLog | null;
  log?: Logger;
}

/** Host values a loopback bind answers to: localhost, 127.0.0.1 and [::1], with and without the port. */
export function loopbackHosts(port: number, extra: readonly string[] = []): Set<string> {
  const out = new Set<string>();
  for (const h of ['localhost', '127.0.0.1', '[::1]', ...extra.map((e) => e.toLowerCase())]) {
    out.add(h);
    out.add(`${h}:${port}`);
  }
  return out;
}

const isLoopbackAddress = (a: string): boolean => a === 'localhost' || a === '::1' || /^127\.[0-9]+\.[0-9]+\.[0-9]+$/.test(a);
export const isLoopbackBind = (host: string): boolean => isLoopbackAddress(host.replace(/^\[|\]$/g, ''));

function fail(reply: FastifyReply, err: ApiError): FastifyReply {
  const { status, body } = toErrorBody(err);
  reply.errorCode = err.code;
  if (status === 401) void reply.header('www-authenticate', `Bearer realm="quark", error="invalid_token", error_description="${err.code}"`);
  return reply.status(status).send(body);
}

const bearerOf = (h: string | string[] | undefined): string | undefined => (typeof h === 'string' ? /^Bearer +(\S+) *$/i.exec(h)?.[1] : undefined);

/** The principal the request carries, or an AuthFailure. Stream routes also take `?ticket=`. */
async function principalOf(req: FastifyRequest, tokens: TokenStore): Promise<Principal> {
  const header = req.headers.authorization;
  const ticket = (req.query as { ticket?: unknown } | undefined)?.ticket;
  if (req.routeOptions.config.stream && header === undefined && typeof ticket === 'string') return tokens.verifyTicket(ticket);
  if (Array.isArray(header)) throw new AuthFailure('TOKEN_MALFORMED', 'one Authorization header, please');
  return tokens.verifyHeader(header);
}

/** Counts events per key in fixed windows; `max` 0 never blocks. Bounded: the oldest keys go first. */
export class FailureWindow {
  private readonly seen = new Map<string, { count: number; until: number }>();
  constructor(
    private readonly max: number,
    private readonly windowMs: number,
    private readonly maxKeys = 10_000,
  ) {}

  /** Seconds to wait, or 0. */
  blocked(key: string, now = Date.now()): number {
    const e = this.seen.get(key);
    if (!e || this.max === 0) return 0;
    if (e.until <= now) {
      this.seen.delete(key);
      return 0;
    }
    return e.count >= this.max ? Math.ceil((e.until - now) / 1000) : 0;
  }

  note(key: string, now = Date.now()): void {
    if (this.max === 0) return;
    const e = this.seen.get(key);
    if (e && e.until > now) e.count++;
    else {
      if (this.seen.size >= this.maxKeys) this.seen.delete(this.seen.keys().next().value!);
      this.seen.set(key, { count: 1, until: now + this.windowMs });
    }
  }
}

export async function installGuard(app: FastifyInstance, o: GuardOptions): Promise<void> {
  app.decorateRequest('principal', null);
  app.decorateReply('errorCode', null);

  // Before anything else: a page on another origin that rebound its name to 127.0.0.1 sends its own Host.
  if (o.allowedHosts) {
    const allowed = o.allowedHosts;
    const names = () => [...new Set([...allowed].map((h) => h.replace(/:[0-9]+$/, '')))];
    app.addHook('onRequest', async (req, reply) => {
      const host = (req.headers.host ?? '').toLowerCase();
      if (!allowed.has(host)) {
        return fail(reply, new ApiError('MISDIRECTED_REQUEST', `this API answers for ${names().join(', ')} only; got Host ${JSON.stringify(host.slice(0, 200))}`));
      }
    });
  }

  if (o.pressure) {
    const p = o.pressure;
    await app.register(underPressure, {
      maxEventLoopDelay: p.maxEventLoopDelayMs,
      maxHeapUsedBytes: p.maxHeapUsedBytes,
      maxEventLoopUtilization: p.maxEventLoopUtilization,
      retryAfter: p.retryAfterS,
      ...(p.sampleIntervalMs ? { sampleInterval: p.sampleIntervalMs } : {}),
      pressureHandler: (req, reply, type, value) => {
        o.log?.warn('shedding load', { type, value, method: req.method, url: req.url });
        reply.errorCode = 'OVERLOADED';
        void reply
          .header('retry-after', String(p.retryAfterS))
          .status(503)
          .send({ error: { code: 'OVERLOADED', message: `the API is overloaded (${type}); retry in ${p.retryAfterS} s` } });
      },
    });
  }

  // Refused credentials per address: each costs a ZooKeeper read, so a flood of made-up tokens is
  // cut off before it reaches ZooKeeper (the per-token limit below cannot see it: there is no token).
  const refusals = new FailureWindow(o.rateLimit ? Math.max(60, Math.floor(o.rateLimit.max / 10)) : 0, o.rateLimit?.windowMs ?? 60_000);

  app.addHook('onRequest', async (req, reply) => {
    const access: Access = req.is404 ? 'public' : (req.routeOptions.config.access ?? 'admin');
    if (access === 'public') return;
    const wait = refusals.blocked(req.ip);
    // A token this API already holds checked costs nothing: it passes even from a blocked address.
    if (wait > 0 && !o.tokens.holds(bearerOf(req.headers.authorization))) {
      void reply.header('retry-after', String(wait));
      return fail(reply, new ApiError('RATE_LIMITED', `too many refused credentials from this address; retry in ${wait} s`));
    }
    let principal: Principal;
    try {
      principal = await principalOf(req, o.tokens);
    } catch (e) {
      if (e instanceof AuthFailure) {
        refusals.note(req.ip);
        return fail(reply, new ApiError(e.code, e.message));
      }
      throw e;
    }
    req.principal = principal;
    const d = decide(principal, access);
    if (!d.allow) return fail(reply, new ApiError(d.code, d.message));
  });

  if (o.rateLimit) {
    await app.register(rateLimit, {
      global: true,
      max: o.rateLimit.max,
      timeWindow: o.rateLimit.windowMs,
      // Runs after the token check above (root hooks before the routes' own), so the key is the token.
      hook: 'onRequest',
      keyGenerator: (req) => (req.principal ? `token:${req.principal.tokenId}` : `addr:${req.ip}`),
      errorResponseBuilder: (_req, ctx) => new ApiError('RATE_LIMITED', `rate limit of ${ctx.max} requests per window reached; retry in ${ctx.after}`),
    });
  }

  if (o.audit) {
    const audit = o.audit;
    app.addHook('onResponse', (req, reply, done) => {
      if (MUTATING.has(req.method)) {
        const p = req.principal;
        const id = (req.params as { id?: unknown } | undefined)?.id;
        audit.record({
          at: Date.now(),
          token_id: p?.tokenId ?? null,
          project: p?.project ?? null,
          role: p?.role ?? null,
          method: req.method,
          route: req.is404 ? null : (req.routeOptions.url ?? null),
          path: req.url.split('?')[0]!.slice(0, 512),
          target: typeof id === 'string' ? id.slice(0, 128) : null,
          status: reply.statusCode,
          code: reply.errorCode,
        });
      }
      done();
    });
  }
}
