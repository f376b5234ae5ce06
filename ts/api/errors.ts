// One error catalogue: every error the API returns has a code, a status and a message, and goes
// out as {"error":{"code","message"}}.
export const ERRORS = {
  BAD_REQUEST: 400,
  NOT_FOUND: 404,
  CONFLICT: 409,
  SERVER_BUSY: 409,
  ACTION_NOT_ALLOWED: 409,
  IMAGE_IN_USE: 409,
  NO_CONSOLE: 409,
  IDEMPOTENCY_KEY_REUSED: 422,
  PAYLOAD_TOO_LARGE: 413,
  UNSUPPORTED_MEDIA_TYPE: 415,
  UNAVAILABLE: 503,
  INTERNAL: 500,
} as const;

export type ApiErrorCode = keyof typeof ERRORS;

export class ApiError extends Error {
  readonly statusCode: number;
  constructor(
    readonly code: ApiErrorCode,
    message: string,
  ) {
    super(message);
    this.statusCode = ERRORS[code];
  }
}

export const notFound = (what: string, id: string): ApiError => new ApiError('NOT_FOUND', `${what} ${id} does not exist`);

export interface ErrorBody {
  error: { code: string; message: string };
}

/** Maps any error (ours, fastify's, ZooKeeper's) to a status and body. */
export function toErrorBody(err: unknown): { status: number; body: ErrorBody } {
  if (err instanceof ApiError) return { status: err.statusCode, body: { error: { code: err.code, message: err.message } } };
  const e = err as { statusCode?: number; code?: string; message?: string; validation?: unknown; validationContext?: string };
  if (e?.validation) {
    return { status: 400, body: { error: { code: 'BAD_REQUEST', message: e.message ?? 'invalid request' } } };
  }
  const status = typeof e?.statusCode === 'number' ? e.statusCode : 500;
  if (status === 413) return { status, body: { error: { code: 'PAYLOAD_TOO_LARGE', message: e.message ?? 'body too large' } } };
  if (status === 415) return { status, body: { error: { code: 'UNSUPPORTED_MEDIA_TYPE', message: e.message ?? 'unsupported media type' } } };
  if (status >= 400 && status < 500) return { status, body: { error: { code: 'BAD_REQUEST', message: e.message ?? 'bad request' } } };
  if (e?.code === 'CONNECTION_LOSS' || e?.code === 'SESSION_EXPIRED' || e?.code === 'OPERATION_TIMEOUT') {
    return { status: 503, body: { error: { code: 'UNAVAILABLE', message: 'the coordination service is unreachable; retry' } } };
  }
  return { status: 500, body: { error: { code: 'INTERNAL', message: 'internal error' } } };
}
