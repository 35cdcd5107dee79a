/**
 * Requests to the s3kv HTTP API: one place that knows the base URL, the key header, timeouts, and how an answer's
 * status maps to an error kind, so `get`, `getAll` and subscriptions agree on what "unreachable" means.
 */
import { S3kvError } from "./errors.js";

/** `fetch`'s shape, narrowed to what this client uses, so a test or an app can pass its own. */
export type Fetch = (input: string, init?: RequestInit) => Promise<Response>;

/** An answer, read in full (the API's bodies are small; values are up to a few MB). */
export interface Answer {
  status: number;
  headers: Headers;
  text: string;
}

/** The key rules of docs/src/http-api/keys-and-limits.md, checked here so a bad key is a clear error, not a 400. */
export function keyProblem(key: unknown): string | null {
  if (typeof key !== "string") return `a key is a string (got ${typeof key})`;
  if (key === "") return "a key is not empty";
  if (new TextEncoder().encode(key).length > 512) return "a key is at most 512 bytes of UTF-8";
  if (key.startsWith("/")) return `a key does not start with '/' (got ${JSON.stringify(key)})`;
  // Control characters, and U+FFFE/U+FFFF, which S3's XML listings cannot carry.
  if (/[\u0000-\u001f\u007f\ufffe\uffff]/.test(key)) return `a key has no control characters (got ${JSON.stringify(key)})`;
  if (key.split("/").some((s) => s === "" || s === "." || s === "..")) {
    return `a key has no empty, '.' or '..' segments (got ${JSON.stringify(key)})`;
  }
  if (key.startsWith(".s3kv/")) return "keys under '.s3kv/' are s3kv's own";
  return null;
}

/** A key's path: every segment percent-encoded, so `?`, `#` and `%` in keys survive. */
export const keyPath = (key: string): string => key.split("/").map(encodeURIComponent).join("/");

/** An ETag header's tag without quotes or weakness, as the API's JSON bodies carry it. */
export function etagOf(headers: Headers): string | null {
  const raw = headers.get("etag");
  return raw === null ? null : raw.replace(/^W\//, "").replace(/"/g, "");
}

/** The error an unexpected status stands for, with the API's own `error` code and message when it sent them. */
export function statusError(answer: Answer, what: string, key?: string): S3kvError {
  let code: string | undefined;
  let message = answer.text.slice(0, 300);
  try {
    const body = JSON.parse(answer.text) as { error?: unknown; message?: unknown };
    if (typeof body.error === "string") code = body.error;
    if (typeof body.message === "string") message = body.message;
  } catch {
    // Not the API's JSON (API Gateway's own answers, a proxy): the text is the message.
  }
  const kind = answer.status >= 500 || answer.status === 429 ? "unavailable" : "http";
  return new S3kvError(kind, `${what}: HTTP ${answer.status}${code ? ` ${code}` : ""}${message ? `: ${message}` : ""}`, {
    status: answer.status,
    ...(code === undefined ? {} : { code }),
    ...(key === undefined ? {} : { key }),
  });
}

export interface HttpOptions {
  endpoint: string;
  apiKey: string | null;
  fetch: Fetch;
  timeoutMs: number;
}

export class Http {
  readonly endpoint: string;

  constructor(private readonly options: HttpOptions) {
    this.endpoint = options.endpoint.replace(/\/+$/, "");
  }

  get apiKey(): string | null {
    return this.options.apiKey;
  }

  /**
   * One request, read to the end. Throws `S3kvError` `network` or `timeout` only: every status is an answer, for
   * the caller to judge. `waitSeconds` lengthens the timeout by a long-poll's wait.
   */
  async send(
    method: "GET" | "POST",
    path: string,
    init: { headers?: Record<string, string>; body?: string; waitSeconds?: number; key?: string } = {},
  ): Promise<Answer> {
    const headers: Record<string, string> = { ...init.headers };
    if (this.options.apiKey !== null) headers["x-api-key"] = this.options.apiKey;
    if (init.body !== undefined) headers["content-type"] = "application/json";
    const controller = new AbortController();
    const limit = this.options.timeoutMs + (init.waitSeconds ?? 0) * 1000;
    // setTimeout takes at most 2^31-1 ms and fires at once beyond it: a longer limit (Infinity) means none.
    const timer = limit <= 2_147_483_647 ? setTimeout(() => controller.abort(), limit) : undefined;
    const about = init.key === undefined ? {} : { key: init.key };
    try {
      // no-store: this client revalidates with its own ETags; the browser's cache would answer 304s for it.
      const response = await this.options.fetch(this.endpoint + path, {
        method,
        headers,
        cache: "no-store",
        signal: controller.signal,
        ...(init.body === undefined ? {} : { body: init.body }),
      });
      const text = await response.text();
      return { status: response.status, headers: response.headers, text };
    } catch (error) {
      if (controller.signal.aborted) {
        throw new S3kvError("timeout", `${method} ${path}: no answer within ${limit} ms`, about);
      }
      const cause = (error as { cause?: { code?: unknown } } | null)?.cause?.code;
      const detail = error instanceof Error ? error.message : String(error);
      throw new S3kvError("network", `${method} ${path}: ${detail}${typeof cause === "string" ? ` (${cause})` : ""}`, {
        ...about,
        cause: error,
      });
    } finally {
      clearTimeout(timer);
    }
  }
}
