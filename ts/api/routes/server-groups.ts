// Server groups (Nova's): a member acts on its own project's groups, a reader reads them, an admin
// reaches every project's; another project's group is 404.
import type { FastifyPluginAsync } from 'fastify';
import type { GroupId } from '../../common/ids.js';
import { scopeOf } from '../../auth/policy.js';
import * as S from '../schemas/index.js';
import type { ApiStore } from '../store.js';
import type { CreateGroup } from '../groups.js';

const errors = { '4xx': S.errorBody, '5xx': S.errorBody };

export const serverGroupRoutes: FastifyPluginAsync<{ store: ApiStore }> = async (app, { store }) => {
  app.post<{ Body: CreateGroup }>(
    '/server-groups',
    { schema: { body: S.createGroupBody, response: { 201: S.serverGroup, ...errors } }, config: { access: 'write' } },
    // A group belongs to the caller's own project, an admin's included (as a boot does).
    async (req, reply) => reply.status(201).send(await store.groups.create(req.body, req.principal!.project)),
  );

  app.get(
    '/server-groups',
    { schema: { response: { 200: { type: 'array', items: S.serverGroup }, ...errors } }, config: { access: 'read' } },
    async (req) => store.groups.list(scopeOf(req.principal!)),
  );

  app.get<{ Params: { id: GroupId } }>(
    '/server-groups/:id',
    { schema: { params: S.idParams, response: { 200: S.serverGroup, ...errors } }, config: { access: 'read' } },
    async (req) => store.groups.get(req.params.id, scopeOf(req.principal!)),
  );

  app.delete<{ Params: { id: GroupId } }>(
    '/server-groups/:id',
    { schema: { params: S.idParams, response: errors }, config: { access: 'write' } },
    async (req, reply) => {
      await store.groups.delete(req.params.id, scopeOf(req.principal!));
      return reply.status(204).send();
    },
  );
};
