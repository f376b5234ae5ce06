import type { FastifyPluginAsync } from 'fastify';
import type { WorkUnitId } from '../../common/ids.js';
import { scopeOf } from '../../auth/policy.js';
import * as S from '../schemas/index.js';
import type { ApiStore } from '../store.js';

export const workUnitRoutes: FastifyPluginAsync<{ store: ApiStore }> = async (app, { store }) => {
  app.get<{ Params: { id: WorkUnitId } }>(
    '/work-units/:id',
    { schema: { params: S.idParams, response: { 200: S.workUnit, '4xx': S.errorBody } }, config: { access: 'read' } },
    async (req) => store.getWorkUnit(req.params.id, scopeOf(req.principal!)),
  );
};
