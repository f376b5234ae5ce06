// Builds the fastify instance (no listening here: server.ts listens, tests use app.inject()).
import Fastify, { type FastifyInstance } from 'fastify';
import type { Zk } from '../zk/client.js';
import type { Paths } from '../zk/paths.js';
import type { ClusterConfig } from '../common/model.js';
import type { Logger } from '../common/log.js';
import { toErrorBody } from './errors.js';
import { ApiStore } from './store.js';
import { serverRoutes } from './routes/servers.js';
import { workUnitRoutes } from './routes/work-units.js';
import { clusterRoutes } from './routes/cluster.js';
import { uiRoutes } from './routes/ui.js';
import { imageRoutes } from './routes/images.js';
import { consoleRoutes } from './routes/console.js';
import { ImageStore, type ImageStoreOptions } from '../images/store.js';

export interface AppOptions {
  zk: Zk;
  paths: Paths;
  config: ClusterConfig;
  log?: Logger;
  bodyLimitBytes?: number;
  /** Where uploaded images are kept, and the URL computes fetch them at; without it, no uploads. */
  images?: ImageStoreOptions;
}

export async function buildApp(o: AppOptions): Promise<FastifyInstance> {
  const bodyLimitBytes = o.bodyLimitBytes ?? 16 * 1024;
  const app = Fastify({
    logger: false,
    bodyLimit: bodyLimitBytes,
    ajv: {
      // Unknown fields and wrong types are errors, not silently dropped or coerced.
      customOptions: { removeAdditional: false, coerceTypes: false, useDefaults: false, allErrors: false },
    },
  });
  const images = new ImageStore(o.zk, o.paths, o.images);
  await images.init();
  const store = new ApiStore(o.zk, o.paths, o.config, images);
  // JSON only: anything else is 415, not a string that fails validation later.
  app.removeContentTypeParser('text/plain');

  app.setErrorHandler((err, req, reply) => {
    const { status, body } = toErrorBody(err);
    if (status >= 500) o.log?.error('request failed', { method: req.method, url: req.url, err });
    void reply.status(status).send(body);
  });
  app.setNotFoundHandler((req, reply) => {
    void reply.status(404).send({ error: { code: 'NOT_FOUND', message: `no route ${req.method} ${req.url.split('?')[0]}` } });
  });
  app.addHook('onResponse', (req, reply, done) => {
    o.log?.debug('request', { method: req.method, url: req.url, status: reply.statusCode, ms: Math.round(reply.elapsedTime) });
    done();
  });

  app.get('/healthz', async (_req, reply) => {
    if (!o.zk.connected) return reply.status(503).send({ ok: false, zookeeper: o.zk.state ?? 'CONNECTING' });
    return { ok: true, zookeeper: o.zk.state };
  });

  await app.register(serverRoutes, { prefix: '/v1', store, bodyLimitBytes });
  await app.register(workUnitRoutes, { prefix: '/v1', store });
  await app.register(clusterRoutes, { prefix: '/v1', store });
  await app.register(imageRoutes, { prefix: '/v1', images });
  await app.register(consoleRoutes, { prefix: '/v1', zk: o.zk, paths: o.paths });
  await app.register(uiRoutes, { zk: o.zk, paths: o.paths, log: o.log });
  return app;
}
