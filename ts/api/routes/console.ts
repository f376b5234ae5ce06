import type { FastifyPluginAsync } from 'fastify';
import type { ComputeId, ServerId } from '../../common/ids.js';
import type { ServerRecord } from '../../common/model.js';
import type { Zk } from '../../zk/client.js';
import type { Paths } from '../../zk/paths.js';
import * as S from '../schemas/index.js';
import { ApiError, notFound } from '../errors.js';
import { canSee, scopeOf, type ProjectId } from '../../auth/policy.js';

/** Where a compute serves its guests' consoles (written by the compute into self/). */
export const consoleUrlPath = (paths: Paths, compute: ComputeId): string => `${paths.self(compute)}/console`;

/**
 * GET /v1/servers/:id/console?lines=N: the last N lines of the guest's serial console, as text
 * (Nova's os-getConsoleOutput). The file lives on the compute's host; the compute serves it.
 * Read access, like the server itself: another project's server is 404.
 */
export const consoleRoutes: FastifyPluginAsync<{ zk: Zk; paths: Paths }> = async (app, { zk, paths }) => {
  app.get<{ Params: { id: ServerId }; Querystring: { lines?: string } }>(
    '/servers/:id/console',
    { schema: { params: S.idParams, querystring: S.consoleQuery }, config: { access: 'read' } },
    async (req, reply) => {
      const lines = Math.min(Number(req.query.lines ?? '100'), 10_000);
      const server = await zk.get<ServerRecord & { project?: ProjectId }>(paths.server(req.params.id));
      if (!server?.value || !canSee(scopeOf(req.principal!), server.value.project)) throw notFound('server', req.params.id);
      const compute = server.value.compute_id;
      if (!compute) throw new ApiError('NO_CONSOLE', `server ${req.params.id} is on no compute (${server.value.status})`);
      const url = await zk.get<string>(consoleUrlPath(paths, compute));
      if (!url?.value) throw new ApiError('NO_CONSOLE', `compute ${compute} runs no real guests (libvirt's test driver): there is no console`);
      let res: Response;
      try {
        res = await fetch(`${url.value}/console/${req.params.id}?lines=${lines}`, { signal: AbortSignal.timeout(5000) });
      } catch (e) {
        throw new ApiError('UNAVAILABLE', `compute ${compute} does not answer for the console: ${(e as Error).message}`);
      }
      if (!res.ok) throw new ApiError('UNAVAILABLE', `compute ${compute} answered ${res.status} for the console`);
      return reply.header('content-type', 'text/plain; charset=utf-8').send(await res.text());
    },
  );
};
