// Builds the fastify instance (no listening here: server.ts listens, tests use app.inject()).
import { randomUUID } from 'node:crypto';
import Fastify, { type FastifyInstance, type FastifyRequest } from 'fastify';
import type { Zk } from '../zk/client.js';
import type { Paths } from '../zk/paths.js';
import type { ClusterConfig } from '../common/model.js';
import type { Logger } from '../common/log.js';
import { AuthPaths } from '../auth/layout.js';
import { TokenStore } from '../auth/tokens.js';
import { toErrorBody } from './errors.js';
import { ApiStore } from './store.js';
import { installGuard, type GuardOptions } from './guard.js';
import { AuditLog } from './audit.js';
import { Listings } from './listing.js';
import { DEFAULT_BODY_LIMIT_BYTES, serverRoutes } from './routes/servers.js';
import { serverGroupRoutes } from './routes/server-groups.js';
import { workUnitRoutes } from './routes/work-units.js';
import { clusterRoutes } from './routes/cluster.js';
import { uiRoutes } from './routes/ui.js';
import { imageRoutes } from './routes/images.js';
import { consoleRoutes } from './routes/console.js';
import { ImageStore, type ImageStoreOptions } from '../images/store.js';
import { securityRoutes } from './routes/security.js';
import { Operator } from './operator.js';
import { docsArePublic, registerOpenApi } from './openapi.js';
import { metricsRoute } from './metrics.js';

/** The version the API document states. */
export const API_VERSION = '0.1.0';

// A caller's X-Request-Id is kept if it is a plain token of printable ASCII; otherwise one is made.
const REQUEST_ID = /^[\x21-\x7e]{1,128}$/;
const requestIdOf = (req: { headers: FastifyRequest['headers'] }): string => {
  const h = req.headers['x-request-id'];
  return typeof h === 'string' && REQUEST_ID.test(h) ? h : randomUUID();
};

export interface AppOptions {
  zk: Zk;
  paths: Paths;
  config: ClusterConfig;
  log?: Logger;
  bodyLimitBytes?: number;
  /** HTTPS: PEM key and certificate. */
  tls?: { key: Buffer | string; cert: Buffer | string };
  /** Host header values accepted; null or absent: any (server.ts sets the loopback names on a loopback bind). */
  allowedHosts?: ReadonlySet<string> | null;
  /** Per token; null: off. Default 6000 requests a minute. */
  rateLimit?: GuardOptions['rateLimit'];
  /** Load shedding; null: off. Default: 503 once the event loop lags by a second. */
  pressure?: GuardOptions['pressure'];
  /** Longest a request may take to arrive, headers and body (ms; default 30 s). */
  requestTimeoutMs?: number;
  maxStreamsPerToken?: number;
  /** Audit entries kept (the oldest pruned past it). */
  auditMaxEntries?: number;
  /** How long a commit whose outcome a dropped connection hid may wait to settle it (default 10 s). */
  commitSettleMs?: number;
  /** Where uploaded images are kept, and the URL computes fetch them at; without it, no uploads. */
  images?: ImageStoreOptions;
  /** The list indexes' settle window (ts/api/listing.ts SETTLE_MS; 0: read each change at once). */
  listSettleMs?: number;
}

export const DEFAULT_RATE_LIMIT = { max: 6000, windowMs: 60_000 } as const;
export const DEFAULT_PRESSURE = { maxEventLoopDelayMs: 1000, maxHeapUsedBytes: 0, maxEventLoopUtilization: 0, retryAfterS: 5 } as const;

export async function buildApp(o: AppOptions): Promise<FastifyInstance> {
  const bodyLimitBytes = o.bodyLimitBytes ?? DEFAULT_BODY_LIMIT_BYTES;
  const requestTimeout = o.requestTimeoutMs ?? 30_000;
  const server = {
    // Headers must arrive within 10 s, the whole request within requestTimeout; checked this often
    // (Node's default check runs every 30 s, which would let a slow client hold a socket that long).
    headersTimeout: Math.min(10_000, requestTimeout),
    connectionsCheckingInterval: Math.max(100, Math.min(5_000, Math.floor(requestTimeout / 4))),
  };
  const app = Fastify({
    logger: false,
    // req.id: the caller's X-Request-Id or a new one; it is answered back and stored on the unit a call makes.
    requestIdHeader: false,
    genReqId: requestIdOf,
    bodyLimit: bodyLimitBytes,
    // 0 (fastify's default) = forever, which lets a slow client hold a socket.
    requestTimeout,
    // A socket silent this long is closed (event streams send a heartbeat every 15 s).
    connectionTimeout: 60_000,
    ...(o.tls ? { https: { key: o.tls.key, cert: o.tls.cert, ...server } } : { http: server }),
    ajv: {
      // Unknown fields and wrong types are errors, not silently dropped or coerced.
      customOptions: { removeAdditional: false, coerceTypes: false, useDefaults: false, allErrors: false },
    },
  }) as unknown as FastifyInstance;
  const ap = new AuthPaths(o.paths);
  for (const p of ap.skeleton) await o.zk.mkdirp(p);
  const tokens = new TokenStore(o.zk, ap);
  const audit = new AuditLog(o.zk, ap, { maxEntries: o.auditMaxEntries, log: o.log });
  const images = new ImageStore(o.zk, o.paths, o.images);
  await images.init();
  const store = new ApiStore(o.zk, o.paths, o.config, o.log, { settleMs: o.commitSettleMs }, images);
  // JSON only: anything else is 415, not a string that fails validation later.
  app.removeContentTypeParser('text/plain');

  app.setErrorHandler((err, req, reply) => {
    const { status, body } = toErrorBody(err);
    if (status >= 500) o.log?.error('request failed', { method: req.method, url: req.url, err });
    reply.errorCode = body.error.code;
    void reply.status(status).send(body);
  });
  app.setNotFoundHandler((req, reply) => {
    reply.errorCode = 'NOT_FOUND';
    void reply.status(404).send({ error: { code: 'NOT_FOUND', message: `no route ${req.method} ${req.url.split('?')[0]}` } });
  });
  // First of all hooks: even a request the guard refuses answers its id.
  app.decorateRequest('workUnitId', null);
  app.addHook('onRequest', (req, reply, done) => {
    void reply.header('x-request-id', req.id);
    done();
  });
  app.addHook('onResponse', (req, reply, done) => {
    // A call that changes something is an operator's record (info); reads are many (debug).
    const lvl = req.method === 'GET' || req.method === 'HEAD' ? 'debug' : 'info';
    // A call that made a work unit names it: the line ties the request id to the unit.
    const wu = req.workUnitId ? { wu: req.workUnitId } : {};
    o.log?.[lvl]('request', { method: req.method, url: req.url.split('?')[0], status: reply.statusCode, ms: Math.round(reply.elapsedTime), request_id: req.id, ...wu });
    done();
  });

  // Every route and what it needs, for the fuzz test and the docs (HEAD mirrors GET).
  const routeTable: RouteEntry[] = [];
  app.addHook('onRoute', docsArePublic);
  app.addHook('onRoute', (r) => {
    for (const method of [r.method].flat()) {
      if (method !== 'HEAD') routeTable.push({ method, url: r.url, access: r.config?.access ?? 'admin', stream: !!r.config?.stream });
    }
  });
  app.decorate('routeTable', routeTable);

  await installGuard(app, {
    tokens,
    allowedHosts: o.allowedHosts ?? null,
    rateLimit: o.rateLimit === undefined ? DEFAULT_RATE_LIMIT : o.rateLimit,
    pressure: o.pressure === undefined ? DEFAULT_PRESSURE : o.pressure,
    audit,
    log: o.log,
  });

  await registerOpenApi(app, API_VERSION);
  metricsRoute(app, o.zk.connectionString, o.log);

  const health = { type: 'object', properties: { ok: { type: 'boolean' }, zookeeper: { type: 'string', description: 'the API\'s ZooKeeper session state' } } } as const;
  const healthz = { response: { 200: health, 503: { ...health, description: 'no ZooKeeper session: the API cannot answer' } } };
  app.get('/healthz', { schema: healthz, config: { access: 'public' } }, async (_req, reply) => {
    if (!o.zk.connected) return reply.status(503).send({ ok: false, zookeeper: o.zk.state ?? 'CONNECTING' });
    return { ok: true, zookeeper: o.zk.state };
  });

  // The lists' indexes, fed by watches (ts/api/listing.ts).
  const listings = new Listings(o.zk, o.paths, o.log, o.listSettleMs);
  await listings.start();
  await app.register(serverRoutes, { prefix: '/v1', store, listings, bodyLimitBytes });
  await app.register(serverGroupRoutes, { prefix: '/v1', store });
  await app.register(workUnitRoutes, { prefix: '/v1', store, listings });
  await app.register(clusterRoutes, { prefix: '/v1', store, operator: new Operator(o.zk, o.paths, o.config, o.log) });
  await app.register(imageRoutes, { prefix: '/v1', images });
  await app.register(consoleRoutes, { prefix: '/v1', zk: o.zk, paths: o.paths });
  await app.register(securityRoutes, { prefix: '/v1', zk: o.zk, ap, tokens, audit });
  await app.register(uiRoutes, { zk: o.zk, paths: o.paths, log: o.log, tokens, maxStreamsPerToken: o.maxStreamsPerToken });

  // Expired Idempotency-Keys are pruned by the orcs, shard by shard (ts/orc/retention.ts).
  app.addHook('onClose', async () => {
    await listings.stop();
    await audit.flush();
  });
  app.decorate('audit', audit);
  return app;
}

export interface RouteEntry {
  method: string;
  url: string;
  /** What the route declared; a route that declares nothing is admin-only. */
  access: string;
  stream: boolean;
}

declare module 'fastify' {
  interface FastifyRequest {
    /** The work unit this call made, for its log line. */
    workUnitId: string | null;
  }
  interface FastifyInstance {
    /** The audit trail (tests flush it before reading). */
    audit: AuditLog;
    routeTable: readonly RouteEntry[];
  }
}
