// Errors as the OpenAI API returns them: {"error": {"message", "type", "param", "code"}} with the status code
// its clients act on. A PeregrineError from the engine names what was wrong with the request (400); anything
// else is Peregrine's fault (500), and fails only the request it happened in.
import { PeregrineError } from '../errors.js';

export type ApiErrorType = 'invalid_request_error' | 'authentication_error' | 'not_found_error' | 'rate_limit_error' | 'server_error' | 'service_unavailable';

export class ApiError extends Error {
  constructor(readonly status: number, message: string, readonly type: ApiErrorType = 'invalid_request_error',
    readonly param: string | null = null, readonly code: string | null = null) {
    super(message);
  }

  body(): { error: { message: string; type: string; param: string | null; code: string | null } } {
    return { error: { message: this.message, type: this.type, param: this.param, code: this.code } };
  }
}

export const badRequest = (message: string, param: string | null = null, code: string | null = null): ApiError => new ApiError(400, message, 'invalid_request_error', param, code);

/** The engine's errors: what a request asked for that cannot be done is a 400; the model's own faults are 500s. */
export function toApiError(err: unknown): ApiError {
  if (err instanceof ApiError) return err;
  if (err instanceof PeregrineError) {
    switch (err.code) {
      case 'bad-request':
      case 'bad-argument':
        return badRequest(err.message, null, err.code);
      case 'out-of-memory':
        return new ApiError(503, err.message, 'service_unavailable', null, err.code);
      default:
        return new ApiError(500, err.message, 'server_error', null, err.code);
    }
  }
  // fastify's own errors: schema validation, body size and content type
  const e = err as { statusCode?: number; validation?: unknown; message?: string; code?: string };
  if (e && typeof e.statusCode === 'number' && e.statusCode >= 400 && e.statusCode < 500) {
    return new ApiError(e.statusCode, e.message ?? 'bad request', 'invalid_request_error', null, e.code ?? null);
  }
  return new ApiError(500, `internal error: ${(err as Error)?.message ?? String(err)}`, 'server_error');
}
