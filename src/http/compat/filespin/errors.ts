import type { FastifyError, FastifyReply, FastifyRequest } from 'fastify';
import { Type } from 'typebox';
import { type ErrorCode, isWharfError } from '../../../core/errors.js';
import { refusedForResources } from '../../../core/unavailable.js';
import { logFailure } from '../../plugins/errors.js';
import { settleRefusedBody } from '../../refused-body.js';
import { isRouteMiss } from '../../routing-errors.js';

/**
 * FileSpin's document names its error codes (MISSING_MANDATORY_PARAMETERS, ASSET_ID_EXISTS,
 * INVALID_REQUEST) and statuses but no body; Wharf answers `{"error": CODE, "message": …}`.
 */
export const FileSpinErrorSchema = Type.Object(
  {
    error: Type.String({
      description: 'e.g. MISSING_MANDATORY_PARAMETERS, ASSET_ID_EXISTS, INVALID_REQUEST.',
    }),
    message: Type.String(),
  },
  { description: 'Every FileSpin-API error.' },
);

export const fileSpinErrorResponses = {
  400: FileSpinErrorSchema,
  401: FileSpinErrorSchema,
  403: FileSpinErrorSchema,
  404: FileSpinErrorSchema,
  429: FileSpinErrorSchema,
  500: FileSpinErrorSchema,
};

interface Mapped {
  status: number;
  error: string;
}

/** The core's codes in the document's vocabulary; codes it does not name keep Wharf's. */
const CODES: Partial<Record<ErrorCode, Mapped>> = {
  VALIDATION_FAILED: { status: 400, error: 'INVALID_REQUEST' },
  INVALID_NAME: { status: 400, error: 'INVALID_REQUEST' },
  INVALID_CONTENT_TYPE: { status: 400, error: 'INVALID_REQUEST' },
  INVALID_DIGEST: { status: 400, error: 'INVALID_REQUEST' },
  ID_EXISTS: { status: 400, error: 'ASSET_ID_EXISTS' },
  UNAUTHORIZED: { status: 401, error: 'UNAUTHORIZED' },
  ACCOUNT_DISABLED: { status: 403, error: 'ACCOUNT_DISABLED' },
  QUOTA_EXCEEDED: { status: 403, error: 'UPLOAD_LIMIT_EXCEEDED' },
  FORBIDDEN: { status: 403, error: 'FORBIDDEN' },
  // Scoped keys and upload tokens: the document has no words for these, so Wharf's codes stand.
  TOKEN_EXPIRED: { status: 401, error: 'TOKEN_EXPIRED' },
  SCOPE_DENIED: { status: 403, error: 'SCOPE_DENIED' },
  NAME_PREFIX_DENIED: { status: 403, error: 'NAME_PREFIX_DENIED' },
  NAMESPACE_DENIED: { status: 403, error: 'NAMESPACE_DENIED' },
  CONTENT_TYPE_DENIED: { status: 403, error: 'CONTENT_TYPE_DENIED' },
  TOKEN_FILES_EXHAUSTED: { status: 403, error: 'TOKEN_FILES_EXHAUSTED' },
  TOKEN_BYTES_EXHAUSTED: { status: 403, error: 'TOKEN_BYTES_EXHAUSTED' },
  TOO_MANY_OPEN_UPLOADS: { status: 429, error: 'TOO_MANY_OPEN_UPLOADS' },
  NOT_FOUND: { status: 404, error: 'ASSET_NOT_FOUND' },
  CHECKSUM_MISMATCH: { status: 400, error: 'CHECKSUM_MISMATCH' },
  SIZE_MISMATCH: { status: 400, error: 'SIZE_MISMATCH' },
  // The document lists no 409/410: a register that cannot complete yet is a bad request.
  UPLOAD_INCOMPLETE: { status: 400, error: 'UPLOAD_INCOMPLETE' },
  UPLOAD_EXPIRED: { status: 400, error: 'UPLOAD_EXPIRED' },
  UPLOAD_NOT_PENDING: { status: 400, error: 'INVALID_REQUEST' },
  FILE_TOO_LARGE: { status: 400, error: 'FILE_TOO_LARGE' },
};

/** Schema failures: a mandatory value that is absent (or empty) is the document's own code. */
function validationError(err: FastifyError, request: FastifyRequest): Mapped {
  const first = err.validation?.[0];
  const emptyRequired = first?.keyword === 'minLength' && (first.params as { limit?: number }).limit === 1;
  const noBody = err.validationContext === 'body' && (request.body === undefined || request.body === null);
  if (first?.keyword === 'required' || emptyRequired || noBody) {
    return { status: 400, error: 'MISSING_MANDATORY_PARAMETERS' };
  }
  return { status: 400, error: 'INVALID_REQUEST' };
}

function mapError(failure: FastifyError, request: FastifyRequest): Mapped & { message: string } {
  const err = refusedForResources(failure) as FastifyError;
  // A path or method this API does not have: not an asset this account never got.
  if (isRouteMiss(err)) return { status: 404, error: 'NOT_FOUND', message: err.message };
  if (isWharfError(err)) {
    return { ...(CODES[err.code] ?? { status: err.status, error: err.code }), message: err.message };
  }
  if (err.validation) return { ...validationError(err, request), message: err.message };
  // An empty JSON body carries none of the mandatory parameters.
  if (err.code === 'FST_ERR_CTP_EMPTY_JSON_BODY') {
    return { status: 400, error: 'MISSING_MANDATORY_PARAMETERS', message: err.message };
  }
  const status = err.statusCode;
  if (err instanceof SyntaxError || (typeof status === 'number' && status >= 400 && status < 500)) {
    return { status: 400, error: 'INVALID_REQUEST', message: err.message };
  }
  return { status: 500, error: 'INTERNAL_SERVER_ERROR', message: 'Internal server error.' };
}

export function fileSpinErrorHandler(err: FastifyError, request: FastifyRequest, reply: FastifyReply): void {
  const mapped = mapError(err, request);
  logFailure(request, err, mapped.status);
  settleRefusedBody(request, reply);
  reply.status(mapped.status).send({ error: mapped.error, message: mapped.message });
}
