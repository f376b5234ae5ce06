import type { FastifyPluginAsync } from 'fastify';
import * as S from '../schemas/index.js';
import type { ApiStore } from '../store.js';

// The cluster's internals: admin only.
export const clusterRoutes: FastifyPluginAsync<{ store: ApiStore }> = async (app, { store }) => {
  const config = { access: 'admin' } as const;
  app.get('/computes', { schema: { response: { 200: { type: 'array', items: S.compute } } }, config }, async () => store.listComputes());
  app.get('/orcs', { config }, async () => store.listOrcs());
  app.get('/shards', { config }, async () => store.shardOwners());
};
