import type { FastifyPluginAsync } from 'fastify';
import * as S from '../schemas/index.js';
import type { ApiStore } from '../store.js';

export const clusterRoutes: FastifyPluginAsync<{ store: ApiStore }> = async (app, { store }) => {
  app.get('/computes', { schema: { response: { 200: { type: 'array', items: S.compute } } } }, async () => store.listComputes());
  app.get('/orcs', async () => store.listOrcs());
  app.get('/shards', async () => store.shardOwners());
};
