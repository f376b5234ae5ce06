import type { FastifyPluginAsync } from 'fastify';
import * as S from '../schemas/index.js';
import type { ApiStore } from '../store.js';
import type { Operator } from '../operator.js';
import type { ComputeId } from '../../common/ids.js';

// The cluster's internals and the operator's calls on them: admin only.
export const clusterRoutes: FastifyPluginAsync<{ store: ApiStore; operator: Operator }> = async (app, { store, operator }) => {
  const config = { access: 'admin' } as const;
  app.get('/computes', { schema: { response: { 200: { type: 'array', items: S.compute } } }, config }, async () => store.listComputes());
  app.get('/orcs', { schema: { response: { 200: { type: 'array', items: S.orcMember } } }, config }, async () => store.listOrcs());
  app.get('/shards', { schema: { response: { 200: S.shardOwners } }, config }, async () => store.shardOwners());

  type ById = { Params: { id: ComputeId } };
  const byId = { params: S.computeIdParams };
  // A compute that is down has its LOST VMs rebuilt elsewhere (409 while it is alive).
  app.post<ById>('/computes/:id/evacuate', { schema: { ...byId, response: { 200: S.evacuation, '4xx': S.errorBody, '5xx': S.errorBody } }, config }, async (req) =>
    operator.evacuate(req.params.id, req.id),
  );
  // Placement passes a cordoned compute over; its VMs run on, and actions on them still reach it.
  for (const [verb, on] of [['cordon', true], ['uncordon', false]] as const) {
    app.post<ById>(`/computes/:id/${verb}`, { schema: { ...byId, response: { 200: S.compute, '4xx': S.errorBody } }, config }, async (req) => {
      await operator.cordon(req.params.id, on);
      // A compute whose records cannot be read is still cordoned: its view is then only that.
      return (await store.computeView(req.params.id)) ?? { id: req.params.id, cordoned: on };
    });
  }
};
