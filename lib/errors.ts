/**
 * Every error the portal means to show someone is one of these. `status` picks the HTTP answer,
 * `code` is the stable machine-readable name, `expose` says whether `message` is safe to show a
 * stranger, and `cause` keeps the underlying error for the log. Rendering happens in one place:
 * portal/http/errors.ts.
 */
export class AtriumError extends Error {
  readonly status: number;
  readonly code: string;
  readonly expose: boolean;
  /** Extra fields that are safe to put in a JSON answer or a page (never secrets). */
  readonly details: Record<string, unknown>;

  constructor(
    status: number,
    code: string,
    message: string,
    options: { expose?: boolean; cause?: unknown; details?: Record<string, unknown> } = {},
  ) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = new.target.name;
    this.status = status;
    this.code = code;
    this.expose = options.expose ?? status < 500;
    this.details = options.details ?? {};
  }
}

export class BadRequestError extends AtriumError {
  constructor(message = 'The request was malformed.', options: { cause?: unknown; code?: string } = {}) {
    super(400, options.code ?? 'bad_request', message, options);
  }
}

export class UnauthenticatedError extends AtriumError {
  constructor(message = 'Sign in to continue.', options: { cause?: unknown; code?: string } = {}) {
    super(401, options.code ?? 'unauthenticated', message, options);
  }
}

export class ForbiddenError extends AtriumError {
  constructor(message: string, details: Record<string, unknown> = {}, code = 'forbidden') {
    super(403, code, message, { details });
  }
}

export class NotFoundError extends AtriumError {
  constructor(message = 'There is nothing at this address.') {
    super(404, 'not_found', message);
  }
}

export class PayloadTooLargeError extends AtriumError {
  constructor(message = 'The request body is too large.') {
    super(413, 'payload_too_large', message);
  }
}

export class ConflictError extends AtriumError {
  constructor(message: string, code = 'conflict', details: Record<string, unknown> = {}) {
    super(409, code, message, { details });
  }
}

/** The identity provider or another service the portal depends on did not answer as it should. */
export class UpstreamError extends AtriumError {
  constructor(message: string, options: { cause?: unknown; code?: string; status?: number } = {}) {
    super(options.status ?? 502, options.code ?? 'upstream_error', message, { ...options, expose: true });
  }
}

/**
 * Something the request truly needs (the database, the session store) is not answering right now:
 * nothing was wrong with the request, and trying again shortly may work. A 503 with `Retry-After`.
 */
export class ServiceUnavailableError extends AtriumError {
  /** Seconds a client is asked to wait before trying again. */
  readonly retryAfterSeconds: number;

  constructor(message = 'A service the portal needs is not answering. Try again in a moment.', options: { cause?: unknown; code?: string; retryAfterSeconds?: number } = {}) {
    super(503, options.code ?? 'unavailable', message, { cause: options.cause, expose: true });
    this.retryAfterSeconds = options.retryAfterSeconds ?? 5;
  }

  /** What the renderer sends with the answer (portal/http/errors.ts). */
  get headers(): Record<string, string> {
    return { 'Retry-After': String(this.retryAfterSeconds) };
  }

  /**
   * The embedded provider (oidc-provider) renders errors raised inside it itself and takes their
   * status from `statusCode`: without this its pages would say 500 for a database that is down.
   */
  get statusCode(): number {
    return this.status;
  }
}

/** Start-up configuration problems, all of them at once. */
export class ConfigError extends Error {
  readonly problems: string[];
  constructor(problems: string[]) {
    super(`Atrium cannot start; fix the configuration:\n${problems.map((p) => `  - ${p}`).join('\n')}`);
    this.name = 'ConfigError';
    this.problems = problems;
  }
}
