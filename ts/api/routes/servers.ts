import type { FastifyPluginAsync } from 'fastify';
import type { ServerId } from '../../common/ids.js';
import type { ServerAction } from '../../actors/kinds.js';
import { scopeOf } from '../../auth/policy.js';
import * as S from '../schemas/index.js';
import type { ApiStore, CreateServer } from '../store.js';
import { ApiError } from '../errors.js';
import type { Listings, ServerQuery } from '../listing.js';
import { pageLimit, sendPage } from './paging.js';

const accepted = { 202: S.workUnitAccepted, '4xx': S.errorBody, '5xx': S.errorBody };

/** Base64 user data a boot may carry on top of the API's body limit. */
const USER_DATA_ROOM = 64 * 1024;
/** The API's body limit unless told otherwise. */
export const DEFAULT_BODY_LIMIT_BYTES = 16 * 1024;

export const serverRoutes: FastifyPluginAsync<{ store: ApiStore; listings: Listings; bodyLimitBytes?: number }> = async (app, { store, listings, bodyLimitBytes = DEFAULT_BODY_LIMIT_BYTES }) => {
  app.post<{ Body: CreateServer }>(
    '/servers',
    {
      schema: { body: S.createServerBody, response: accepted },
      config: { access: 'write' },
      // The API's limit holds for everything but the user data, which has its own (64 KiB).
      bodyLimit: bodyLimitBytes + USER_DATA_ROOM + 1024,
      preValidation: async (req) => {
        const body = req.body as Partial<CreateServer> | undefined;
        const size = Number(req.headers['content-length'] ?? Buffer.byteLength(JSON.stringify(body ?? {})));
        const userData = typeof body?.user_data === 'string' ? body.user_data.length : 0;
        if (size - userData > bodyLimitBytes) {
          throw new ApiError('PAYLOAD_TOO_LARGE', `a boot request may be at most ${bodyLimitBytes} bytes besides its user data`);
        }
      },
    },
    async (req, reply) => {
      const key = req.headers['idempotency-key'];
      if (Array.isArray(key) || (key !== undefined && (key.length < 1 || key.length > 255))) {
        throw new ApiError('BAD_REQUEST', 'Idempotency-Key must be one header of 1 to 255 characters');
      }
      // A boot counts against the caller's own project, an admin's included.
      const accepted = await store.createServer(req.body, req.principal!.project, key, req.id);
      req.workUnitId = accepted.work_unit_id;
      return reply.status(202).send(accepted);
    },
  );

  // Oldest first, a page at a time (ts/api/listing.ts): X-Next-Marker names the next page.
  app.get<{ Querystring: Omit<ServerQuery, 'limit'> & { limit?: string } }>(
    '/servers',
    { schema: { querystring: S.listServersQuery, response: { 200: { type: 'array', items: S.server }, '4xx': S.errorBody } }, config: { access: 'read' } },
    async (req, reply) => {
      const page = await listings.listServers({ ...req.query, limit: pageLimit(req.query.limit, 1000) }, scopeOf(req.principal!));
      return sendPage(req, reply, page);
    },
  );

  app.get<{ Params: { id: ServerId } }>(
    '/servers/:id',
    { schema: { params: S.idParams, response: { 200: S.server, '4xx': S.errorBody } }, config: { access: 'read' } },
    async (req) => store.getServer(req.params.id, scopeOf(req.principal!)),
  );

  app.post<{ Params: { id: ServerId }; Body: { action: ServerAction } }>(
    '/servers/:id/actions',
    { schema: { params: S.idParams, body: S.actionBody, response: accepted }, config: { access: 'write' } },
    async (req, reply) => {
      const { work_unit_id } = await store.act(req.params.id, req.body.action, scopeOf(req.principal!), req.id);
      req.workUnitId = work_unit_id;
      return reply.status(202).send({ work_unit_id });
    },
  );

  app.delete<{ Params: { id: ServerId } }>(
    '/servers/:id',
    { schema: { params: S.idParams, response: accepted }, config: { access: 'write' } },
    async (req, reply) => {
      const { work_unit_id } = await store.act(req.params.id, 'delete', scopeOf(req.principal!), req.id);
      req.workUnitId = work_unit_id;
      return reply.status(202).send({ work_unit_id });
    },
  );
};
