import type { FastifyPluginAsync } from 'fastify';
import type { Readable } from 'node:stream';
import * as S from '../schemas/index.js';
import { ApiError } from '../errors.js';
import { scopeOf } from '../../auth/policy.js';
import { presentImage, type ImageStore } from '../../images/store.js';
import { IMAGE_KEY_HEADER } from '../../images/model.js';

const idParams = S.idParams;

/**
 * Images are per project, like servers: a member uploads and removes its project's, a reader
 * reads them, another project's are 404. The file route is the computes': no token, the image's
 * fetch key in a header (a build's request carries it), 404 without it.
 */
export const imageRoutes: FastifyPluginAsync<{ images: ImageStore }> = async (app, { images }) => {
  // The body is the image itself: handed to the route as a stream, never buffered. This parser
  // lives in this plugin's scope only; everything else stays JSON.
  app.addContentTypeParser('application/octet-stream', (_req, payload, done) => done(null, payload));

  app.post<{ Querystring: { name: string; format: string } }>(
    '/images',
    { schema: { querystring: S.uploadImageQuery, response: { 201: S.image, '4xx': S.errorBody, '5xx': S.errorBody } }, config: { access: 'write' } },
    async (req, reply) => {
      const body = req.body as Readable | undefined;
      if (typeof body?.pipe !== 'function') {
        throw new ApiError('UNSUPPORTED_MEDIA_TYPE', 'send the image itself as the body, content-type application/octet-stream');
      }
      // An image belongs to the uploader's own project, an admin's included (as a boot counts against it).
      const record = await images.upload(req.principal!.project, req.query.name, req.query.format, body);
      return reply.status(201).send(presentImage(record));
    },
  );

  app.get('/images', { schema: { response: { 200: { type: 'array', items: S.image } } }, config: { access: 'read' } }, async (req) =>
    (await images.list(scopeOf(req.principal!))).map(presentImage),
  );

  app.get<{ Params: { id: string } }>(
    '/images/:id',
    { schema: { params: idParams, response: { 200: S.image, '4xx': S.errorBody } }, config: { access: 'read' } },
    async (req) => presentImage(await images.get(req.params.id, scopeOf(req.principal!))),
  );

  // What computes fetch on first use; they check the sha256 themselves.
  app.get<{ Params: { id: string } }>('/images/:id/file', { schema: { params: idParams }, config: { access: 'public' } }, async (req, reply) => {
    const key = req.headers[IMAGE_KEY_HEADER];
    const { record, path, size } = await images.file(req.params.id, typeof key === 'string' ? key : undefined);
    return reply
      .header('content-type', 'application/octet-stream')
      .header('content-length', String(size))
      .header('x-image-sha256', record.sha256)
      .send(images.stream(path));
  });

  app.delete<{ Params: { id: string } }>(
    '/images/:id',
    { schema: { params: idParams, response: { '4xx': S.errorBody } }, config: { access: 'write' } },
    async (req, reply) => {
      await images.remove(req.params.id, scopeOf(req.principal!));
      return reply.status(204).send();
    },
  );
};
