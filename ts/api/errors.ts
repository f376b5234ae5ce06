// One error catalogue: every error the API returns has a code, a status and a message, and goes
// out as {"error":{"code","message", …details}}.
export const ERRORS = {
  BAD_REQUEST: 400,
  TOKEN_MISSING: 401,
  TOKEN_MALFORMED: 401,
  TOKEN_INVALID: 401,
  TOKEN_EXPIRED: 401,
  TOKEN_REVOKED: 401,
  FORBIDDEN: 403,
  QUOTA_EXCEEDED: 403,
  NOT_FOUND: 404,
  CONFLICT: 409,
  SERVER_BUSY: 409,
  ACTION_NOT_ALLOWED: 409,
  GROUP_IN_USE: 409,
  IMAGE_IN_USE: 409,
  NO_CONSOLE: 409,
  PAYLOAD_TOO_LARGE: 413,
  UNSUPPORTED_MEDIA_TYPE: 415,
  MISDIRECTED_REQUEST: 421,
  IDEMPOTENCY_KEY_REUSED: 422,
  RATE_LIMITED: 429,
  TOO_MANY_STREAMS: 429,
  INTERNAL: 500,
  // A record in ZooKeeper is malformed (ts/lifecycle/records.ts): an operator must repair or remove it.
  CORRUPT_RECORD: 500,
  UNAVAILABLE: 503,
  OVERLOADED: 503,
  OUTCOME_UNKNOWN: 503,
} as const;

export type ApiErrorCode = keyof typeof ERRORS;

export class ApiError extends Error {
  readonly statusCode: number;
  constructor(
    readonly code: ApiErrorCode,
    message: string,
    /** Extra fields of the error object (the numbers of a QUOTA_EXCEEDED, the ids of an OUTCOME_UNKNOWN). */
    readonly details?: Record<string, unknown>,
  ) {
    super(message);
    this.statusCode = ERRORS[code];
  }
}

export const notFound = (what: string, id: string): ApiError => new ApiError('NOT_FOUND', `${what} ${id} does not exist`);

export interface ErrorBody {
  error: { code: string; message: string; [detail: string]: unknown };
}

/** Maps any error (ours, fastify's, ZooKeeper's) to a status and body. */
export function toErrorBody(err: unknown): { status: number; body: ErrorBody } {
  if (err instanceof ApiError) {
    return { status: err.statusCode, body: { error: { ...(err.details ?? {}), code: err.code, message: err.message } } };
  }
  const e = err as { statusCode?: number; code?: string; message?: string; validation?: unknown; validationContext?: string };
  if (e?.validation) {
    return { status: 400, body: { error: { code: 'BAD_REQUEST', message: e.message ?? 'invalid request' } } };
  }
  const status = typeof e?.statusCode === 'number' ? e.statusCode : 500;
  if (status === 413) return { status, body: { error: { code: 'PAYLOAD_TOO_LARGE', message: e.message ?? 'body too large' } } };
  if (status === 415) return { status, body: { error: { code: 'UNSUPPORTED_MEDIA_TYPE', message: e.message ?? 'unsupported media type' } } };
  if (status === 408) return { status, body: { error: { code: 'BAD_REQUEST', message: 'the request took too long to arrive' } } };
  if (status >= 400 && status < 500) return { status, body: { error: { code: 'BAD_REQUEST', message: e.message ?? 'bad request' } } };
  if (e?.code === 'CONNECTION_LOSS' || e?.code === 'SESSION_EXPIRED' || e?.code === 'OPERATION_TIMEOUT') {
    return { status: 503, body: { error: { code: 'UNAVAILABLE', message: 'the coordination service is unreachable; retry' } } };
  }
  return { status: 500, body: { error: { code: 'INTERNAL', message: 'internal error' } } };
}
