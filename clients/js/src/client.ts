/**
 * `createClient`: reads that never throw, an in-memory cache revalidated by ETag, subscriptions that keep that cache
 * current, and a snapshot to stand in while the API cannot be reached. What each read served, and why, is in its
 * detailed result, so an app can show "offline, values from <exportedAt>" instead of guessing.
 */
import { S3kvError, asError } from "./errors.js";
import { Http, etagOf, keyPath, keyProblem, statusError, type Fetch } from "./http.js";
import { subscribe as follow, type Change, type Status, type Subscription } from "./push.js";
import { batchRead, listKeys } from "./listing.js";
import { loadSnapshot, type Snapshot, type SnapshotSource } from "./snapshot.js";

export interface ClientOptions {
  /** The API's base URL: `http://127.0.0.1:3000` (s3kv-local) or `https://<id>.execute-api.<region>.amazonaws.com/prod`. */
  endpoint: string;
  /** The `x-api-key` (a read key is enough). Without one, reads go to `/public/{key}` (the public prefix only). */
  apiKey?: string;
  /** Prepended to every key and prefix this client is given, e.g. `flags/`: empty or ending in `/`. Keys in
   * results are given back without it. */
  prefix?: string;
  /** The last-known-good snapshot, served when the API cannot be reached (see `SnapshotSource`). */
  snapshot?: SnapshotSource;
  /** The `fetch` to use. Default: the global one. */
  fetch?: Fetch;
  /** How long a value read from the API is served from memory before the next read revalidates it
   * (`If-None-Match`, usually answered `304`). Default 1000; 0 revalidates every read; `Infinity` never does
   * (a subscription keeps what it follows current). */
  maxAgeMs?: number;
  /** The longest a request may take (a long-poll's wait comes on top). Default 10000. */
  timeoutMs?: number;
  /** Called with every error a read hands back (also in its detailed result), and snapshot load failures. */
  onError?: (error: S3kvError) => void;
  /** Push: the WebSocket URL (default `ws(s)://<endpoint host>/event/realtime`, s3kv-local's). In AWS,
   * `wss://<id>.appsync-realtime-api.<region>.amazonaws.com/event/realtime`. */
  realtime?: string;
  /** Push: the `host` in its authorization. Default: derived from `realtime` (see the README). */
  httpHost?: string;
  /** Push: the WebSocket class, for Node < 22 (e.g. the `ws` package's). Default: the global one. */
  WebSocket?: typeof WebSocket;
  /** `"poll"` follows changes by long-poll only. Default `"auto"`: push when there is a WebSocket, long-poll
   * while push cannot be reached. */
  transport?: "auto" | "poll";
}

/** Where a read's value came from. */
export type Source =
  /** A `200` (or `404`) from the API just now. */
  | "network"
  /** A `304`: the cached value is still current. */
  | "revalidated"
  /** Memory, without asking (younger than `maxAgeMs`), or, with `stale`, because the API could not be asked. */
  | "cache"
  /** The snapshot, because the API could not be asked and nothing newer was in memory. */
  | "snapshot"
  /** Nothing known: the default. */
  | "default";

export interface Detailed<T> {
  /** The item's value, or the default when there is none (or it is not of the default's type). */
  value: T;
  /** Whether the item exists, as far as the source knows. */
  found: boolean;
  /** The document's exact text as stored; `null` when not found. */
  text: string | null;
  /** Its ETag without quotes; `null` when not found. */
  etag: string | null;
  source: Source;
  /** Served from memory or the snapshot because the API could not be reached: it may have changed since. */
  stale: boolean;
  /** With `source: "snapshot"`: when the snapshot was exported. */
  exportedAt?: string;
  /** Why the API's answer was not used, or why `value` is the default. */
  error?: S3kvError;
}

export interface Item<T> {
  value: T;
  text: string;
  etag: string | null;
}

export interface AllDetailed<T> {
  /** By key (without the client's `prefix`). */
  items: Record<string, Item<T>>;
  source: "network" | "snapshot" | "default";
  stale: boolean;
  exportedAt?: string;
  error?: S3kvError;
}

/** A change as a subscription's callback gets it. */
export interface ItemChange {
  /** The item key, without the client's `prefix`. */
  key: string;
  deleted: boolean;
  /** The new value; `undefined` once deleted. */
  value: unknown;
  /** The document's exact text; `null` once deleted. */
  text: string | null;
  etag: string | null;
  /** `"push"`, or `"read"` when it was read over HTTP (long-poll, catch-up, a document too large to push). */
  via: "push" | "read";
}

export interface SubscribeOptions {
  onStatus?: (status: Status) => void;
}

export interface Client {
  /** The item's value, or `fallback`. Never throws; `getDetailed` says why. */
  get<T>(key: string, fallback: T): Promise<T>;
  getDetailed<T>(key: string, fallback: T): Promise<Detailed<T>>;
  /** Every item under `prefix` (default: all the client's), by key. Never throws; `getAllDetailed` says why. */
  getAll<T = unknown>(prefix?: string): Promise<Record<string, T>>;
  getAllDetailed<T = unknown>(prefix?: string): Promise<AllDetailed<T>>;
  /** Follows keys and prefixes (a target that is empty or ends in `/` is a prefix): each change reaches
   * `onChange`, and the cache. */
  subscribe(targets: string | readonly string[], onChange: (change: ItemChange) => void, options?: SubscribeOptions): Subscription;
  /** The snapshot once loaded; `null` without one, or when it could not be loaded (`onError` has why). */
  readonly snapshot: Promise<Snapshot | null>;
  /** Closes every subscription. Reads still work. */
  close(): void;
}

interface Entry {
  found: boolean;
  etag: string | null;
  text: string | null;
  value: unknown;
  /** When the API last confirmed it (`Date.now()`). */
  at: number;
}

const PRIMITIVES = new Set(["boolean", "number", "string"]);

/** Throws `TypeError` for options no client could work with: a mistake to fix at once, not a read to survive. */
export function createClient(options: ClientOptions): Client {
  return new S3kvClient(options);
}

class S3kvClient implements Client {
  readonly snapshot: Promise<Snapshot | null>;
  private readonly http: Http;
  private readonly prefix: string;
  private readonly maxAge: number;
  private readonly cache = new Map<string, Entry>();
  private readonly inflight = new Map<string, Promise<{ entry: Entry; revalidated: boolean }>>();
  private readonly subscriptions = new Set<Subscription>();

  constructor(private readonly options: ClientOptions) {
    if (typeof options !== "object" || options === null) throw new TypeError("createClient needs options: { endpoint, ... }");
    let endpoint: URL;
    try {
      endpoint = new URL(options.endpoint);
    } catch {
      throw new TypeError(`endpoint is not a URL: ${JSON.stringify(options.endpoint)}`);
    }
    if (endpoint.protocol !== "http:" && endpoint.protocol !== "https:") {
      throw new TypeError(`endpoint is not http(s): ${JSON.stringify(options.endpoint)}`);
    }
    const prefix = options.prefix ?? "";
    if (typeof prefix !== "string" || (prefix !== "" && !prefix.endsWith("/"))) {
      throw new TypeError(`prefix is empty or ends in '/' (got ${JSON.stringify(prefix)})`);
    }
    if (options.apiKey !== undefined && (typeof options.apiKey !== "string" || options.apiKey === "")) {
      throw new TypeError("apiKey is a non-empty string (leave it out for public reads)");
    }
    for (const name of ["maxAgeMs", "timeoutMs"] as const) {
      const value = options[name];
      if (value !== undefined && (typeof value !== "number" || Number.isNaN(value) || value < 0)) {
        throw new TypeError(`${name} is a number >= 0 (got ${String(value)})`);
      }
    }
    this.prefix = prefix;
    this.maxAge = options.maxAgeMs ?? 1000;
    const fetch: Fetch = options.fetch ?? ((input, init) => globalThis.fetch(input, init));
    this.http = new Http({
      endpoint: options.endpoint,
      apiKey: options.apiKey ?? null,
      fetch,
      timeoutMs: options.timeoutMs ?? 10_000,
    });
    this.snapshot = options.snapshot === undefined
      ? Promise.resolve(null)
      : loadSnapshot(options.snapshot, fetch).then(
        (snapshot) => snapshot,
        (error: unknown) => {
          this.report(asError(error, "snapshot"));
          return null;
        },
      );
  }

  // ---- get ----

  get<T>(key: string, fallback: T): Promise<T> {
    // The cached path first, with nothing allocated but the promise: this is the read apps make in a loop. A key
    // in the cache was checked when it went in.
    const entry = typeof key === "string" ? this.cache.get(this.prefix === "" ? key : this.prefix + key) : undefined;
    if (entry !== undefined && this.fresh(entry)) {
      if (!entry.found) return Promise.resolve(fallback);
      const value = entry.value;
      const wanted = typeof fallback;
      if ((wanted !== "boolean" && wanted !== "number" && wanted !== "string") || typeof value === wanted) {
        return Promise.resolve(value as T);
      }
    }
    return this.getDetailed(key, fallback).then((d) => d.value);
  }

  private fresh(entry: Entry): boolean {
    return this.maxAge === Infinity || Date.now() - entry.at < this.maxAge;
  }

  async getDetailed<T>(key: string, fallback: T): Promise<Detailed<T>> {
    const hit = typeof key === "string" ? this.cache.get(this.prefix + key) : undefined;
    if (hit !== undefined && this.fresh(hit)) return this.typed(hit, "cache", false, fallback);
    const problem = keyProblem(key);
    if (problem !== null) {
      return this.fallback(fallback, new S3kvError("invalid_argument", problem, { key: String(key) }));
    }
    const full = this.prefix + key;
    const fullProblem = keyProblem(full);
    if (fullProblem !== null) return this.fallback(fallback, new S3kvError("invalid_argument", fullProblem, { key: full }));
    try {
      const { entry, revalidated } = await this.read(full);
      return this.typed(entry, revalidated ? "revalidated" : "network", false, fallback);
    } catch (thrown) {
      const error = asError(thrown, "network", full);
      if (!error.unreachable) return this.fallback(fallback, error);
      // The API could not be asked: the newest thing known stands in. Memory is this process's own reading, so
      // it is never older than the snapshot's.
      const known = this.cache.get(full);
      if (known !== undefined) return this.typed(known, "cache", true, fallback, error);
      const snapshot = await this.snapshot;
      const item = snapshot?.items.get(full);
      if (snapshot && item) {
        const from: Entry = { found: true, etag: item.etag, text: item.text, value: item.value, at: 0 };
        return this.typed(from, "snapshot", true, fallback, error, snapshot.exportedAt);
      }
      return this.fallback(fallback, error);
    }
  }

  /** One GET per key at a time: concurrent reads of a key share it. */
  private read(full: string): Promise<{ entry: Entry; revalidated: boolean }> {
    let pending = this.inflight.get(full);
    if (pending === undefined) {
      pending = this.fetchItem(full).finally(() => this.inflight.delete(full));
      this.inflight.set(full, pending);
    }
    return pending;
  }

  private async fetchItem(full: string): Promise<{ entry: Entry; revalidated: boolean }> {
    const cached = this.cache.get(full);
    const headers: Record<string, string> = {};
    if (cached?.found && cached.etag !== null) headers["if-none-match"] = `"${cached.etag}"`;
    const path = this.http.apiKey === null ? `/public/${keyPath(full)}` : `/items/${keyPath(full)}`;
    const answer = await this.http.send("GET", path, { headers, key: full });
    const at = Date.now();
    if (answer.status === 304 && cached !== undefined) {
      cached.at = at;
      return { entry: cached, revalidated: true };
    }
    let entry: Entry;
    if (answer.status === 404) {
      // Only the API's own 404 says the item is gone (`not_found`, or `expired`: its expiry has come); any other (a
      // proxy, a wrong endpoint) says nothing about it.
      const code = statusError(answer, "").code;
      if (code !== "not_found" && code !== "expired") {
        throw new S3kvError("bad_response", `GET ${path}: a 404 that is not the API's (is the endpoint right?): ${answer.text.slice(0, 100)}`, {
          key: full, status: 404,
        });
      }
      entry = { found: false, etag: null, text: null, value: undefined, at };
    } else if (answer.status === 200) {
      let value: unknown;
      try {
        value = JSON.parse(answer.text);
      } catch {
        throw new S3kvError("bad_response", `GET ${path}: a 200 that is not JSON: ${answer.text.slice(0, 100)}`, { key: full, status: 200 });
      }
      entry = { found: true, etag: etagOf(answer.headers), text: answer.text, value, at };
    } else {
      throw statusError(answer, `GET ${path}`, full);
    }
    this.cache.set(full, entry);
    return { entry, revalidated: false };
  }

  private typed<T>(
    entry: Entry, source: Source, stale: boolean, fallback: T, error?: S3kvError, exportedAt?: string,
  ): Detailed<T> {
    const extra = { ...(exportedAt === undefined ? {} : { exportedAt }) };
    if (!entry.found) {
      if (error) this.report(error);
      return { value: fallback, found: false, text: null, etag: null, source, stale, ...extra, ...(error ? { error } : {}) };
    }
    if (PRIMITIVES.has(typeof fallback) && typeof entry.value !== typeof fallback) {
      const mismatch = new S3kvError(
        "type_mismatch",
        `the value is ${Array.isArray(entry.value) ? "an array" : entry.value === null ? "null" : `a ${typeof entry.value}`}, the default a ${typeof fallback}`,
      );
      this.report(mismatch);
      return { value: fallback, found: true, text: entry.text, etag: entry.etag, source, stale, ...extra, error: mismatch };
    }
    if (error) this.report(error);
    return {
      value: entry.value as T, found: true, text: entry.text, etag: entry.etag, source, stale, ...extra,
      ...(error ? { error } : {}),
    };
  }

  private fallback<T>(fallback: T, error: S3kvError): Detailed<T> {
    this.report(error);
    return { value: fallback, found: false, text: null, etag: null, source: "default", stale: false, error };
  }

  private report(error: S3kvError): void {
    if (!this.options.onError) return;
    try {
      this.options.onError(error);
    } catch (thrown) {
      // A hook that throws must not turn a read that never throws into one that does.
      setTimeout(() => { throw thrown; });
    }
  }

  // ---- getAll ----

  async getAll<T = unknown>(prefix = ""): Promise<Record<string, T>> {
    const all = await this.getAllDetailed<T>(prefix);
    const values: Record<string, T> = {};
    for (const [key, item] of Object.entries(all.items)) values[key] = item.value;
    return values;
  }

  async getAllDetailed<T = unknown>(prefix = ""): Promise<AllDetailed<T>> {
    if (typeof prefix !== "string") {
      return this.noItems(new S3kvError("invalid_argument", `a prefix is a string (got ${typeof prefix})`));
    }
    const full = this.prefix + prefix;
    if (this.http.apiKey === null) {
      return this.noItems(new S3kvError("unsupported", "getAll lists items, which needs an API key (public reads are one key at a time)", { key: full }));
    }
    try {
      const listed = await listKeys(this.http, full);
      const stale = listed.filter((l) => {
        const entry = this.cache.get(l.key);
        return !(entry?.found && entry.etag === l.etag);
      });
      const at = Date.now();
      for (const read of await batchRead(this.http, stale.map((l) => l.key))) this.cache.set(read.key, { ...read, at });
      const items: Record<string, Item<T>> = {};
      for (const { key } of listed) {
        const entry = this.cache.get(key);
        // Deleted between the listing and the batch get: not in the answer.
        if (entry?.found && entry.text !== null) {
          items[key.slice(this.prefix.length)] = { value: entry.value as T, text: entry.text, etag: entry.etag };
        }
      }
      return { items, source: "network", stale: false };
    } catch (thrown) {
      const error = asError(thrown, "network", full);
      this.report(error);
      const snapshot = error.unreachable ? await this.snapshot : null;
      if (snapshot === null) return { items: {}, source: "default", stale: false, error };
      const items: Record<string, Item<T>> = {};
      for (const [key, item] of snapshot.items) {
        if (key.startsWith(full)) items[key.slice(this.prefix.length)] = { value: item.value as T, text: item.text, etag: item.etag };
      }
      return { items, source: "snapshot", stale: true, exportedAt: snapshot.exportedAt, error };
    }
  }

  private noItems<T>(error: S3kvError): AllDetailed<T> {
    this.report(error);
    return { items: {}, source: "default", stale: false, error };
  }

  // ---- subscribe ----

  subscribe(
    targets: string | readonly string[],
    onChange: (change: ItemChange) => void,
    options: SubscribeOptions = {},
  ): Subscription {
    if (typeof onChange !== "function") throw new TypeError("subscribe(targets, onChange): onChange is a function");
    const list = typeof targets === "string" ? [targets] : targets;
    if (!Array.isArray(list) || list.length === 0) throw new TypeError("subscribe needs a key or prefix, or a list of them");
    const keys: string[] = [];
    const prefixes: string[] = [];
    for (const target of list as readonly unknown[]) {
      if (typeof target !== "string") throw new TypeError(`a key or prefix to follow is a string (got ${typeof target})`);
      const full = this.prefix + target;
      if (full === "" || full.endsWith("/")) prefixes.push(full);
      else {
        const problem = keyProblem(full);
        if (problem !== null) throw new TypeError(problem);
        keys.push(full);
      }
    }
    const o = this.options;
    const subscription = follow({
      api: this.http.endpoint,
      keys,
      prefixes,
      ...(o.apiKey === undefined ? {} : { apiKey: o.apiKey }),
      ...(o.realtime === undefined ? {} : { realtime: o.realtime }),
      ...(o.httpHost === undefined ? {} : { httpHost: o.httpHost }),
      ...(o.WebSocket === undefined ? {} : { WebSocket: o.WebSocket }),
      ...(o.transport === undefined ? {} : { transport: o.transport }),
      ...(o.fetch === undefined ? {} : { fetch: o.fetch }),
      ...(options.onStatus === undefined ? {} : { onStatus: options.onStatus }),
      onChange: (change: Change) => {
        // A change is the newest state known: reads serve it without asking until it is maxAgeMs old.
        this.cache.set(change.key, {
          found: !change.deleted, etag: change.etag, text: change.body, value: change.value, at: Date.now(),
        });
        onChange({
          key: change.key.slice(this.prefix.length), deleted: change.deleted, value: change.value, text: change.body,
          etag: change.etag, via: change.via,
        });
      },
    });
    this.subscriptions.add(subscription);
    return {
      close: () => {
        this.subscriptions.delete(subscription);
        subscription.close();
      },
    };
  }

  close(): void {
    for (const subscription of this.subscriptions) subscription.close();
    this.subscriptions.clear();
  }
}
