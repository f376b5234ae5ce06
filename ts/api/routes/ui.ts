// The visualizer: /ui pages (one static shell; the bundled script draws each page), their assets
// from dist/ui (built by scripts/build-ui.mjs; nothing is fetched from anywhere else), the
// work-unit list, and the server-sent-event feeds the pages update from.
import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { FastifyPluginAsync, FastifyReply } from 'fastify';
import type { Zk } from '../../zk/client.js';
import type { Paths } from '../../zk/paths.js';
import type { Logger } from '../../common/log.js';
import type { ServerId, WorkUnitId } from '../../common/ids.js';
import type { WorkUnitRecord, ServerRecord } from '../../common/model.js';
import * as S from '../schemas/index.js';
import { ApiError, notFound } from '../errors.js';
import { FanOutWatch } from '../../zk/recipes/fan-out.js';
import { openEventStream, streamServer, streamWorkUnit, type EventStream } from '../ui-feed.js';
import { canSee, scopeOf, type Principal } from '../../auth/policy.js';
import type { TokenStore } from '../../auth/tokens.js';

export interface UiRoutesOptions {
  zk: Zk;
  paths: Paths;
  log?: Logger;
  /** Where the built assets are; default dist/ui of this package. */
  assetsDir?: string;
  /** Open event streams one token may hold at once (default 32). */
  maxStreamsPerToken?: number;
  /** Told when a token's record changes: that token's open streams are ended (a revoke cuts them). */
  tokens?: TokenStore;
}

/** dist/ui of the package this file belongs to, whether it runs compiled (dist/ts/…) or from source. */
export function defaultAssetsDir(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 8; i++) {
    if (existsSync(join(dir, 'package.json'))) return join(dir, 'dist', 'ui');
    const up = dirname(dir);
    if (up === dir) break;
    dir = up;
  }
  return join(process.cwd(), 'dist', 'ui');
}

const CSP = [
  "default-src 'self'",
  "script-src 'self'",
  "style-src 'self'",
  "img-src 'self' data:",
  "connect-src 'self'",
  "object-src 'none'",
  "base-uri 'none'",
  "form-action 'self'",
  "frame-ancestors 'none'",
].join('; ');

const SHELL = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Quark</title>
<link rel="icon" href="data:,">
<link rel="stylesheet" href="/ui/assets/ui.css">
<script type="module" src="/ui/assets/ui.js"></script>
</head>
<body>
<noscript>The Quark visualizer needs JavaScript.</noscript>
<div id="app"></div>
</body>
</html>
`;

const TYPES: Record<string, string> = {
  js: 'text/javascript; charset=utf-8',
  css: 'text/css; charset=utf-8',
  map: 'application/json; charset=utf-8',
  txt: 'text/plain; charset=utf-8',
};
// Only names esbuild writes: no slashes, no dot-dot, so nothing outside the assets folder is reachable.
const ASSET = /^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*\.(js|css|map|txt)$/;
// Chunks carry a content hash in their name, so a browser may keep them.
const HASHED = /^chunk-[A-Za-z0-9]+\.js(\.map)?$/;

export const uiRoutes: FastifyPluginAsync<UiRoutesOptions> = async (app, o) => {
  const assetsDir = o.assetsDir ?? defaultAssetsDir();
  const hub = new FanOutWatch(o.zk, o.log);
  const streams = new Set<EventStream>();
  const byToken = new Map<string, Set<EventStream>>();
  const maxPerToken = o.maxStreamsPerToken ?? 32;
  const unwatchTokens = o.tokens?.onChange((id) => {
    for (const s of [...(byToken.get(id) ?? [])]) s.end();
  });

  /** Opens a stream for `p`, counted against its token; refused past the cap. */
  const openFor = (p: Principal, reply: FastifyReply): EventStream => {
    const mine = byToken.get(p.tokenId) ?? new Set<EventStream>();
    if (mine.size >= maxPerToken) {
      throw new ApiError('TOO_MANY_STREAMS', `this token already holds ${mine.size} open event streams (at most ${maxPerToken}); close one first`);
    }
    reply.hijack();
    const s = openEventStream(reply.raw, streams);
    mine.add(s);
    byToken.set(p.tokenId, mine);
    s.onClose(() => {
      mine.delete(s);
      if (mine.size === 0 && byToken.get(p.tokenId) === mine) byToken.delete(p.tokenId);
    });
    return s;
  };

  // Open streams would keep close() waiting forever: end them first, then forget every watch.
  app.addHook('preClose', (done) => {
    unwatchTokens?.();
    for (const s of [...streams]) s.end();
    hub.close();
    done();
  });

  const shell = async (_req: unknown, reply: FastifyReply) => {
    if (!existsSync(join(assetsDir, 'ui.js'))) {
      return reply
        .status(503)
        .type('text/plain; charset=utf-8')
        .send('The visualizer is not built: run `npm run build:ui` (it is part of `npm run build:ts`).\n');
    }
    return reply
      .header('content-security-policy', CSP)
      .header('x-content-type-options', 'nosniff')
      .header('cache-control', 'no-cache')
      .type('text/html; charset=utf-8')
      .send(SHELL);
  };
  // The shell and its assets hold no data: public. Every call they make for data carries the token.
  const open = { config: { access: 'public' } } as const;
  app.get('/ui', open, shell);
  app.get('/ui/', open, shell);
  app.get('/ui/cluster', open, shell);
  app.get('/ui/work-units/:id', open, shell);
  app.get('/ui/servers/:id', open, shell);

  app.get<{ Params: { name: string } }>('/ui/assets/:name', open, async (req, reply) => {
    const { name } = req.params;
    if (!ASSET.test(name)) throw notFound('asset', name);
    let body: Buffer;
    try {
      body = await readFile(join(assetsDir, name));
    } catch {
      throw notFound('asset', name);
    }
    return reply
      .header('x-content-type-options', 'nosniff')
      .header('cache-control', HASHED.test(name) ? 'public, max-age=31536000, immutable' : 'no-cache')
      .type(TYPES[name.slice(name.lastIndexOf('.') + 1)] ?? 'application/octet-stream')
      .send(body);
  });

  // EventSource cannot send headers: these two also take a stream ticket (?ticket=, GET /v1/stream-ticket).
  const streamRoute = { schema: { params: S.idParams }, config: { access: 'read', stream: true } } as const;
  app.get<{ Params: { id: WorkUnitId } }>('/v1/work-units/:id/events', streamRoute, async (req, reply) => {
    const w = await o.zk.get<WorkUnitRecord & { project?: string }>(o.paths.workUnit(req.params.id));
    if (!w?.value || !canSee(scopeOf(req.principal!), w.value.project)) throw notFound('work unit', req.params.id);
    streamWorkUnit(hub, o.paths, req.params.id, openFor(req.principal!, reply));
  });

  // A server's units are its project's, so seeing the server is seeing them.
  app.get<{ Params: { id: ServerId } }>('/v1/servers/:id/events', streamRoute, async (req, reply) => {
    const s = await o.zk.get<ServerRecord & { project?: string }>(o.paths.server(req.params.id));
    if (!s?.value || !canSee(scopeOf(req.principal!), s.value.project)) throw notFound('server', req.params.id);
    streamServer(hub, o.paths, req.params.id, openFor(req.principal!, reply));
  });

  // How many pages are watching and what that holds in ZooKeeper (operators; the leak test).
  app.get('/v1/ui/feed', { schema: { response: { 200: S.feedStats } }, config: { access: 'admin' } }, async () => ({ streams: streams.size, tokens: byToken.size, ...hub.stats() }));
};
