import type { FastifyPluginAsync } from 'fastify';
import type { WorkUnitId } from '../../common/ids.js';
import { scopeOf } from '../../auth/policy.js';
import * as S from '../schemas/index.js';
import type { ApiStore } from '../store.js';
import type { Listings, UnitQuery } from '../listing.js';
import { pageLimit, sendPage } from './paging.js';

export const workUnitRoutes: FastifyPluginAsync<{ store: ApiStore; listings: Listings }> = async (app, { store, listings }) => {
  // Newest first, a page at a time (ts/api/listing.ts): X-Next-Marker names the next page,
  // X-Total-Count how many match in all.
  app.get<{ Querystring: Omit<UnitQuery, 'limit'> & { limit?: string } }>(
    '/work-units',
    { schema: { querystring: S.listWorkUnitsQuery }, config: { access: 'read' } },
    async (req, reply) => {
      const page = await listings.listUnits({ ...req.query, limit: pageLimit(req.query.limit, 100) }, scopeOf(req.principal!));
      // How many units exist in all is other projects' business: admins only.
      if (req.principal!.role === 'admin') void reply.header('x-scanned-count', String(page.scanned));
      void reply.header('x-total-count', String(page.total));
      return sendPage(req, reply, page);
    },
  );

  app.get<{ Params: { id: WorkUnitId } }>(
    '/work-units/:id',
    { schema: { params: S.idParams, response: { 200: S.workUnit, '4xx': S.errorBody } }, config: { access: 'read' } },
    async (req) => store.getWorkUnit(req.params.id, scopeOf(req.principal!)),
  );
};
