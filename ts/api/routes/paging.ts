// How a list route answers a page: the items as the body (an array, as before paging), the next
// page's marker in X-Next-Marker and as a Link rel="next" (RFC 8288), both absent on the last page.
import type { FastifyReply, FastifyRequest } from 'fastify';
import { ApiError } from '../errors.js';
import type { Page } from '../listing.js';

export const MAX_PAGE = 1000;

/** `limit` as given (digits), else `otherwise`; 1..MAX_PAGE. */
export function pageLimit(limit: string | undefined, otherwise: number): number {
  const n = limit === undefined ? otherwise : Number(limit);
  if (!Number.isInteger(n) || n < 1 || n > MAX_PAGE) throw new ApiError('BAD_REQUEST', `limit must be between 1 and ${MAX_PAGE}`);
  return n;
}

export function sendPage<V>(req: FastifyRequest, reply: FastifyReply, page: Page<V>): FastifyReply {
  if (page.next !== null) {
    const url = new URL(req.url, 'http://x');
    url.searchParams.set('marker', page.next);
    void reply.header('x-next-marker', page.next).header('link', `<${url.pathname}${url.search}>; rel="next"`);
  }
  return reply.send(page.items);
}
