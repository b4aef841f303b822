/**
 * Every error shoal reports, with a stable code. The code is the contract: clients match on it,
 * the README lists it, and a test keeps the two in step. Add codes; never rename or reuse one.
 */

export const ERRORS = {
  SHOAL_BAD_CONFIG: { status: 400, exit: 2, message: 'invalid configuration' },
  SHOAL_NO_SECRET: { status: 400, exit: 2, message: 'no cluster secret given' },
  SHOAL_BAD_USAGE: { status: 400, exit: 2, message: 'bad command-line usage' },
  SHOAL_DATA_DIR: { status: 500, exit: 1, message: 'the data directory cannot be used' },
  SHOAL_PORT_IN_USE: { status: 500, exit: 1, message: 'a port is already in use' },
  SHOAL_BAD_REQUEST: { status: 400, exit: 1, message: 'the request is invalid' },
  SHOAL_UNAUTHORIZED: { status: 401, exit: 1, message: 'a valid API key is required' },
  SHOAL_FORBIDDEN: { status: 403, exit: 1, message: 'the API key may not do this' },
  SHOAL_NOT_FOUND: { status: 404, exit: 1, message: 'no such resource' },
  SHOAL_CONFLICT: { status: 409, exit: 1, message: 'the request conflicts with the current state' },
  SHOAL_TOO_LARGE: { status: 413, exit: 1, message: 'the request body is too large' },
  SHOAL_RATE_LIMITED: { status: 429, exit: 1, message: 'too many requests' },
  SHOAL_TOO_MANY_CLIENTS: { status: 503, exit: 1, message: 'too many event-stream clients' },
  SHOAL_OVERLOADED: { status: 503, exit: 1, message: 'the server is overloaded; retry shortly' },
  SHOAL_OWNER_UNREACHABLE: { status: 503, exit: 1, message: 'the owner of the node is unreachable' },
  SHOAL_UNREACHABLE: { status: 503, exit: 1, message: 'the shoal peer cannot be reached' },
  SHOAL_INTERNAL: { status: 500, exit: 1, message: 'internal error' },
} as const satisfies Record<string, { status: number; exit: 1 | 2; message: string }>;

export type ErrorCode = keyof typeof ERRORS;

export class ShoalError extends Error {
  readonly code: ErrorCode;

  constructor(code: ErrorCode, message: string = ERRORS[code].message, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'ShoalError';
    this.code = code;
  }

  /** The HTTP status this error is answered with. */
  get status(): number {
    return ERRORS[this.code].status;
  }

  /** The process exit code for the CLI: 2 for bad usage or config, 1 for runtime failures. */
  get exitCode(): 1 | 2 {
    return ERRORS[this.code].exit;
  }

  toJSON(): { error: { code: ErrorCode; message: string } } {
    return { error: { code: this.code, message: this.message } };
  }
}

export function isShoalError(err: unknown): err is ShoalError {
  return err instanceof ShoalError;
}
