// Tokens, project quotas and usage, the audit trail, and what a caller needs to know about itself.
import type { FastifyPluginAsync } from 'fastify';
import type { Zk } from '../../zk/client.js';
import type { AuthPaths } from '../../auth/layout.js';
import { canSee, scopeOf, type Principal, type ProjectId, type Role } from '../../auth/policy.js';
import { listTokens, mintToken, revokeToken, viewOf, type TokenStore, type TokenView } from '../../auth/tokens.js';
import { effectiveUsage, quotaOf, usageOf, type Quota } from '../../auth/quota.js';
import * as S from '../schemas/index.js';
import { ApiError, notFound } from '../errors.js';
import { parseSince, type AuditLog } from '../audit.js';

export interface SecurityRoutesOptions {
  zk: Zk;
  ap: AuthPaths;
  tokens: TokenStore;
  audit: AuditLog;
}

const iso = (ms: number | null): string | null => (ms === null ? null : new Date(ms).toISOString());
const present = (v: TokenView) => ({ ...v, created_at: iso(v.created_at), expires_at: iso(v.expires_at), revoked_at: iso(v.revoked_at) });

export const securityRoutes: FastifyPluginAsync<SecurityRoutesOptions> = async (app, { zk, ap, tokens, audit }) => {
  const read = { access: 'read' } as const;
  const admin = { access: 'admin' } as const;

  app.get('/whoami', { schema: { response: { 200: S.whoami } }, config: read }, async (req) => {
    const p = req.principal!;
    return { token_id: p.tokenId, project: p.project, role: p.role };
  });

  // For EventSource, which cannot send a header: a ticket good for opening event streams, briefly.
  app.get('/stream-ticket', { schema: { response: { 200: S.streamTicket } }, config: read }, async (req) => tokens.issueTicket(req.principal!));

  app.post<{ Body: { project: ProjectId; role: Role; ttl_seconds?: number; name?: string } }>(
    '/tokens',
    { schema: { body: S.createTokenBody, response: { 201: { type: 'object', properties: { ...S.tokenView.properties, token: { type: 'string' } } }, '4xx': S.errorBody } }, config: admin },
    async (req, reply) => {
      const { record, secret } = await mintToken(zk, ap, {
        project: req.body.project,
        role: req.body.role,
        ttlMs: req.body.ttl_seconds ? req.body.ttl_seconds * 1000 : null,
        name: req.body.name ?? null,
        createdBy: req.principal!.tokenId,
      });
      // The only time the secret leaves the API: it is stored as its sha256.
      return reply.status(201).send({ ...present(viewOf(record)), token: secret });
    },
  );

  app.get('/tokens', { schema: { response: { 200: { type: 'array', items: S.tokenView } } }, config: admin }, async () =>
    (await listTokens(zk, ap)).map((r) => present(viewOf(r))),
  );

  app.delete<{ Params: { id: string } }>(
    '/tokens/:id',
    { schema: { params: S.tokenParams, response: { 200: S.tokenView, '4xx': S.errorBody } }, config: admin },
    async (req) => {
      const r = await revokeToken(zk, ap, req.params.id);
      if (!r) throw notFound('token', req.params.id);
      return present(viewOf(r));
    },
  );

  app.put<{ Params: { id: ProjectId }; Body: Quota }>(
    '/projects/:id/quota',
    { schema: { params: S.projectParams, body: S.quotaBody, response: { 200: S.quotaView, '4xx': S.errorBody } }, config: admin },
    async (req) => {
      const project = req.params.id;
      const quota = quotaOf(req.body);
      await zk.mkdirp(ap.project(project));
      for (;;) {
        const cur = await zk.exists(ap.quota(project));
        try {
          if (cur) await zk.set(ap.quota(project), quota, cur.version);
          else await zk.create(ap.quota(project), quota);
          return { project, quota };
        } catch (e) {
          const code = (e as { code?: string }).code;
          if (code !== 'BAD_VERSION' && code !== 'NODE_EXISTS' && code !== 'NO_NODE') throw e;
        }
      }
    },
  );

  const ownProject = (project: ProjectId, principal: Principal) => {
    // Another project's quota or usage is as invisible as its servers.
    if (!canSee(scopeOf(principal), project)) throw notFound('project', project);
  };

  app.get<{ Params: { id: ProjectId } }>(
    '/projects/:id/quota',
    { schema: { params: S.projectParams, response: { 200: S.quotaView, '4xx': S.errorBody } }, config: read },
    async (req) => {
      ownProject(req.params.id, req.principal!);
      return { project: req.params.id, quota: quotaOf((await zk.get(ap.quota(req.params.id)))?.value) };
    },
  );

  app.get<{ Params: { id: ProjectId } }>(
    '/projects/:id/usage',
    { schema: { params: S.projectParams, response: { 200: S.usageView, '4xx': S.errorBody } }, config: read },
    async (req) => {
      ownProject(req.params.id, req.principal!);
      const [usage, released, quota] = await Promise.all([
        zk.get(ap.usage(req.params.id)),
        zk.children(ap.released(req.params.id)),
        zk.get(ap.quota(req.params.id)),
      ]);
      return { project: req.params.id, usage: effectiveUsage(usageOf(usage?.value), released ?? []), quota: quotaOf(quota?.value) };
    },
  );

  app.get<{ Querystring: { since?: string; limit?: string } }>(
    '/audit',
    { schema: { querystring: S.auditQuery, response: { 200: { type: 'array', items: S.auditEntry }, '4xx': S.errorBody } }, config: admin },
    async (req) => {
      const since = parseSince(req.query.since);
      if (since === null) throw new ApiError('BAD_REQUEST', 'since must be an ISO 8601 time or milliseconds since the epoch');
      const limit = req.query.limit === undefined ? 100 : Number(req.query.limit);
      if (limit < 1 || limit > 1000) throw new ApiError('BAD_REQUEST', 'limit must be between 1 and 1000');
      return (await audit.read(since, limit)).map((e) => ({ ...e, at: iso(e.at) }));
    },
  );
};
