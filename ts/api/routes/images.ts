import type { FastifyPluginAsync } from 'fastify';
import type { Readable } from 'node:stream';
import * as S from '../schemas/index.js';
import { ApiError } from '../errors.js';
import { presentImage, type ImageStore } from '../../images/store.js';

const idParams = S.idParams;

export const imageRoutes: FastifyPluginAsync<{ images: ImageStore }> = async (app, { images }) => {
  // The body is the image itself: handed to the route as a stream, never buffered. This parser
  // lives in this plugin's scope only; everything else stays JSON.
  app.addContentTypeParser('application/octet-stream', (_req, payload, done) => done(null, payload));

  app.post<{ Querystring: { name: string; format: string } }>(
    '/images',
    { schema: { querystring: S.uploadImageQuery, response: { 201: S.image, '4xx': S.errorBody } } },
    async (req, reply) => {
      const body = req.body as Readable | undefined;
      if (typeof body?.pipe !== 'function') {
        throw new ApiError('UNSUPPORTED_MEDIA_TYPE', 'send the image itself as the body, content-type application/octet-stream');
      }
      const record = await images.upload(req.query.name, req.query.format, body);
      return reply.status(201).send(presentImage(record));
    },
  );

  app.get('/images', { schema: { response: { 200: { type: 'array', items: S.image } } } }, async () =>
    (await images.list()).map(presentImage),
  );

  app.get<{ Params: { id: string } }>(
    '/images/:id',
    { schema: { params: idParams, response: { 200: S.image, '4xx': S.errorBody } } },
    async (req) => presentImage(await images.get(req.params.id)),
  );

  // What computes fetch on first use; they check the sha256 themselves.
  app.get<{ Params: { id: string } }>('/images/:id/file', { schema: { params: idParams } }, async (req, reply) => {
    const { record, path, size } = await images.file(req.params.id);
    return reply
      .header('content-type', 'application/octet-stream')
      .header('content-length', String(size))
      .header('x-image-sha256', record.sha256)
      .send(images.stream(path));
  });

  app.delete<{ Params: { id: string } }>(
    '/images/:id',
    { schema: { params: idParams, response: { '4xx': S.errorBody } } },
    async (req, reply) => {
      await images.remove(req.params.id);
      return reply.status(204).send();
    },
  );
};
