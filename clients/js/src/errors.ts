/**
 * Why a read fell back. `get` never throws, so every failure becomes one of these, handed to `onError` and put in
 * the detailed result: callers branch on `kind`, never on message text.
 */
export type ErrorKind =
  /** A key, prefix or option the API would refuse: no request was made. */
  | "invalid_argument"
  /** `fetch` itself failed: refused, DNS, TLS, CORS, offline. */
  | "network"
  /** No answer within `timeoutMs`. */
  | "timeout"
  /** The API answered 5xx or 429: it is there but cannot answer now. */
  | "unavailable"
  /** A 200 that is not the JSON the API sends (a captive portal, a proxy's error page). */
  | "bad_response"
  /** Any other status: 400, 403 (the key may not read it), 409 (a stored document the API will not serve), ... */
  | "http"
  /** The stored value is not of the default's type (`boolean`, `number` or `string` defaults only). */
  | "type_mismatch"
  /** Something this client cannot do with its options, e.g. listing without an API key. */
  | "unsupported"
  /** The snapshot could not be loaded, or is not an s3kv snapshot. */
  | "snapshot";

/** Kinds after which the last value known is worth serving: the API could not be asked, not that it said no. */
const UNREACHABLE: ReadonlySet<ErrorKind> = new Set<ErrorKind>(["network", "timeout", "unavailable", "bad_response"]);

export class S3kvError extends Error {
  override readonly name = "S3kvError";
  /** The HTTP status, when there was an answer. */
  readonly status: number | undefined;
  /** The API's `error` code (`forbidden`, `invalid_key`, ...), when its answer carried one. */
  readonly code: string | undefined;
  /** The item key or prefix the failure is about. */
  readonly key: string | undefined;

  constructor(
    readonly kind: ErrorKind,
    message: string,
    details: { status?: number; code?: string; key?: string; cause?: unknown } = {},
  ) {
    super(message);
    this.status = details.status;
    this.code = details.code;
    this.key = details.key;
    if (details.cause !== undefined) (this as { cause?: unknown }).cause = details.cause;
  }

  /** The API could not be asked or could not answer: a cached or snapshot value stands in, marked stale. */
  get unreachable(): boolean {
    return UNREACHABLE.has(this.kind);
  }
}

/** Anything thrown, as an `S3kvError` of `kind` (an `S3kvError` stays as it is). */
export function asError(error: unknown, kind: ErrorKind, key?: string): S3kvError {
  if (error instanceof S3kvError) return error;
  const message = error instanceof Error ? error.message : String(error);
  return new S3kvError(kind, message, { cause: error, ...(key === undefined ? {} : { key }) });
}
