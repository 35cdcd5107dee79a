/**
 * s3kv push: every change to the items you follow, over AppSync Events' WebSocket protocol (AWS, or s3kv-local on
 * its own address), caught up over HTTP after a reconnect, and long-polled when push is unavailable. The protocol is
 * specified in src/push/mod.rs; this module is documented in clients/js/README.md ("Push, directly"). `createClient`
 * builds its subscriptions on it; it also stands alone (`s3kv-client/push`).
 */

type WebSocketLike = typeof WebSocket;
type FetchLike = (input: string, init?: RequestInit) => Promise<Response>;

/** A change as `onChange` receives it. */
export interface Change {
  key: string;
  /** The item's ETag (no quotes); `null` once it is deleted. */
  etag: string | null;
  deleted: boolean;
  /** The change's S3 sequencer; `null` when the state was read over HTTP (catch-up, long-poll, a large document). */
  sequencer: string | null;
  /** The document's size in bytes (0 once deleted). */
  size: number;
  /** The document's exact text, as stored; `null` once deleted. */
  body: string | null;
  /** `JSON.parse(body)`, for convenience; `undefined` once deleted. */
  value: unknown;
  /** How it arrived: pushed, or read over HTTP. */
  via: "push" | "read";
}

export type Status =
  | { state: "connecting" }
  /** Subscribed over the WebSocket and caught up. */
  | { state: "live" }
  | { state: "reconnecting"; attempt: number; delayMs: number; reason: string }
  /** Push is unavailable: following the change feed with `GET /changes?wait=` until it is back. */
  | { state: "polling"; reason: string }
  /** A key or prefix this subscription may not follow; the others go on. */
  | { state: "refused"; key?: string; prefix?: string; errorType: string; message: string }
  | { state: "error"; message: string }
  | { state: "closed" };

export interface Options {
  /** The HTTP API's base URL, e.g. `http://127.0.0.1:3000` or `https://<id>.execute-api.<region>.amazonaws.com/prod`. */
  api: string;
  /** The WebSocket URL. Default: the API's origin with `ws(s):` and path `/event/realtime` (s3kv-local). */
  realtime?: string;
  /** The `host` of the handshake and subscribe authorization. Default: the realtime URL's host, with
   * `appsync-realtime-api` replaced by `appsync-api` (AppSync's HTTP endpoint). */
  httpHost?: string;
  /** The `x-api-key` (a read key or better). Without one only the public prefix can be followed, and there is no
   * catch-up of prefixes and no long-poll fallback (the change feed needs a key). */
  apiKey?: string;
  keys?: string[];
  /** Prefixes to follow: empty (everything) or ending in `/`. */
  prefixes?: string[];
  onChange(change: Change): void;
  onStatus?(status: Status): void;
  /** WebSocket attempts in a row that fail before `connection_ack` before long-polling. Default 3. */
  pollAfterFailures?: number;
  /** Longest pause between reconnect attempts. Default 5000. */
  maxBackoffMs?: number;
  /** `"poll"` never opens a WebSocket: long-poll only. Default `"auto"`: push, long-polling while it is down. */
  transport?: "auto" | "poll";
  /** The WebSocket class. Default: the global one, looked up at each connect; without one (Node < 22 without
   * `--experimental-websocket`) the subscription long-polls. */
  WebSocket?: WebSocketLike;
  /** The `fetch` for catch-up, re-reads and long-polls. Default: the global one. */
  fetch?: FetchLike;
}

export interface Subscription {
  close(): void;
}

/** S3's sequencer order (src/sequencer.rs): right-pad the shorter with `0`, compare as strings. */
export function compareSequencers(a: string, b: string): number {
  const width = Math.max(a.length, b.length);
  const x = a.toUpperCase().padEnd(width, "0");
  const y = b.toUpperCase().padEnd(width, "0");
  return x < y ? -1 : x > y ? 1 : 0;
}

/** The AppSync channel of a key (`k`) or prefix (`p`): the first 16 bytes of SHA-256, in lowercase hex. */
export async function channelOf(kind: "k" | "p", name: string): Promise<string> {
  let subtle = globalThis.crypto?.subtle;
  const node = (globalThis as { process?: { versions?: { node?: string } } }).process?.versions?.node;
  if (!subtle && typeof node === "string") {
    // Node 18 has Web Crypto, but not as a global; the name is a variable so bundlers for browsers leave it alone.
    const module = "node:crypto";
    subtle = ((await import(/* @vite-ignore */ /* webpackIgnore: true */ module)) as { webcrypto: Crypto }).webcrypto.subtle;
  }
  if (!subtle) throw new Error("s3kv push needs crypto.subtle (a secure context: https or localhost)");
  const digest = new Uint8Array(await subtle.digest("SHA-256", new TextEncoder().encode(name)));
  const hex = Array.from(digest.slice(0, 16), (b) => b.toString(16).padStart(2, "0")).join("");
  return `/s3kv/${kind}/${hex}`;
}

/** Base64url without padding, of the UTF-8 of `text`. */
function b64url(text: string): string {
  let binary = "";
  for (const byte of new TextEncoder().encode(text)) binary += String.fromCharCode(byte);
  return btoa(binary).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}

/** A token (src/push.rs): `s3kv1.<b64url(JSON)>`. */
function token(apiKey: string | null, topic?: { key: string } | { prefix: string }): string {
  return "s3kv1." + b64url(JSON.stringify({ k: apiKey, ...topic }));
}

/** A key's path: every segment percent-encoded (keys have no empty, `.` or `..` segments). */
const keyPath = (key: string): string => key.split("/").map(encodeURIComponent).join("/");

/** How long a WebSocket may take to be acknowledged before it counts as a failed attempt. */
const CONNECT_TIMEOUT_MS = 10_000;

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

interface WireChange {
  key: string;
  etag: string | null;
  deleted: boolean;
  sequencer: string;
  size: number;
  body?: string;
}

interface Topic {
  kind: "key" | "prefix";
  name: string;
  channel: string;
  refused: boolean;
  subscribed: boolean;
  /** The change feed's cursor: taken when first subscribed, advanced by each catch-up or poll. */
  cursor: string | undefined;
  /** Serialises what uses the cursor. */
  lock: Promise<void>;
  poll: AbortController | null;
  polling: boolean;
}

/** What this client knows of one key. */
interface KeyState {
  /** The greatest pushed sequencer seen (nothing older is delivered). */
  seq: string | null;
  /** The ETag of that push. */
  pushEtag: string | null | undefined;
  /** The state delivered last (`undefined`: none yet; `null`: deleted). */
  etag: string | null | undefined;
  /** Whether `etag` is the state of the push with sequencer `seq` (else it was read, and its order is unknown). */
  anchored: boolean;
  /** Pushes accepted: a read that saw this change under it is not known to be newer, and is made again. */
  pushes: number;
  reading: Promise<void> | null;
  again: boolean;
}

class HttpError extends Error {
  constructor(readonly status: number, readonly body: string) {
    super(`HTTP ${status}: ${body.slice(0, 200)}`);
  }
}

class Client implements Subscription {
  private readonly api: string;
  private readonly realtime: string;
  private readonly host: string;
  private readonly apiKey: string | null;
  private readonly topics: Topic[];
  private readonly states = new Map<string, KeyState>();
  private readonly pollAfter: number;
  private readonly maxBackoff: number;
  private closed = false;
  private ws: WebSocket | null = null;
  private gen = 0;
  private failures = 0;
  private attempt = 0;
  private polling = false;
  private connectedOnce = false;
  private timer: ReturnType<typeof setTimeout> | undefined;
  private kaTimer: ReturnType<typeof setTimeout> | undefined;
  private kaTimeout = 300_000;
  private readonly fetch: FetchLike;

  constructor(private readonly options: Options) {
    this.api = options.api.replace(/\/+$/, "");
    const api = new URL(this.api);
    this.realtime =
      options.realtime ?? `${api.protocol === "https:" ? "wss:" : "ws:"}//${api.host}/event/realtime`;
    this.host = options.httpHost ?? new URL(this.realtime).host.replace("appsync-realtime-api", "appsync-api");
    this.apiKey = options.apiKey ?? null;
    this.pollAfter = options.pollAfterFailures ?? 3;
    this.maxBackoff = options.maxBackoffMs ?? 5000;
    this.fetch = options.fetch ?? ((input, init) => globalThis.fetch(input, init));
    const topic = (kind: "key" | "prefix", name: string): Topic => ({
      kind, name, channel: "", refused: false, subscribed: false, cursor: undefined, lock: Promise.resolve(), poll: null,
      polling: false,
    });
    for (const prefix of options.prefixes ?? []) {
      if (prefix !== "" && !prefix.endsWith("/")) throw new TypeError(`a prefix to follow is empty or ends in '/' (got ${JSON.stringify(prefix)})`);
    }
    for (const key of options.keys ?? []) if (key === "") throw new TypeError("an item key is not empty");
    this.topics = [
      ...(options.keys ?? []).map((k) => topic("key", k)),
      ...(options.prefixes ?? []).map((p) => topic("prefix", p)),
    ];
    void this.start();
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    clearTimeout(this.timer);
    clearTimeout(this.kaTimer);
    this.ws?.close();
    this.ws = null;
    for (const t of this.topics) t.poll?.abort();
    this.status({ state: "closed" });
  }

  private status(status: Status): void {
    try {
      this.options.onStatus?.(status);
    } catch (error) {
      setTimeout(() => { throw error; });
    }
  }

  private async start(): Promise<void> {
    this.status({ state: "connecting" });
    const socket = this.options.WebSocket ?? globalThis.WebSocket;
    const pollOnly = this.options.transport === "poll" || typeof socket !== "function";
    // Channels are for the WebSocket only: long-polling needs no hashing (nor crypto.subtle, absent in Node 18).
    if (!pollOnly) {
      try {
        for (const t of this.topics) t.channel = await channelOf(t.kind === "key" ? "k" : "p", t.name);
      } catch (error) {
        this.status({ state: "error", message: String(error) });
        return;
      }
    }
    // The cursor first: what changes from here on is caught up after any disconnect.
    if (this.apiKey !== null) {
      await Promise.all(this.topics.map((t) => this.locked(t, () => this.takeCursor(t)).catch(() => undefined)));
    }
    if (pollOnly) {
      this.polling = true;
      this.status({ state: "polling", reason: this.options.transport === "poll" ? "transport: poll" : "no WebSocket here" });
      for (const t of this.topics) void this.poll(t);
      return;
    }
    this.connect();
  }

  // ---- The WebSocket ----

  private connect(): void {
    if (this.closed) return;
    const gen = ++this.gen;
    const header = b64url(JSON.stringify({ host: this.host, Authorization: token(this.apiKey) }));
    let ws: WebSocket;
    try {
      // Looked up now, not at import: a page (or a test) may replace the global later.
      const Socket = this.options.WebSocket ?? globalThis.WebSocket;
      ws = new Socket(this.realtime, ["aws-appsync-event-ws", `header-${header}`]);
    } catch (error) {
      this.dropped(gen, false, String(error));
      return;
    }
    this.ws = ws;
    let acked = false;
    ws.onopen = () => ws.send(JSON.stringify({ type: "connection_init" }));
    ws.onmessage = (event) => {
      if (gen !== this.gen || typeof event.data !== "string") return;
      let message: Record<string, unknown>;
      try {
        message = JSON.parse(event.data) as Record<string, unknown>;
      } catch {
        return;
      }
      if (message.type === "connection_ack") acked = true;
      this.message(gen, ws, message);
    };
    ws.onclose = (event) => {
      if (gen === this.gen) this.dropped(gen, acked, `closed (${event.code}${event.reason ? ` ${event.reason}` : ""})`);
    };
    // Node's WebSocket (undici, Node 20) reports a refused connection with `error` alone and never closes: an
    // error counts as the drop (a `close` after it finds a newer generation and is ignored).
    ws.onerror = () => {
      if (gen !== this.gen) return;
      this.dropped(gen, acked, "WebSocket error");
      try {
        ws.close();
      } catch {
        // never opened: nothing to close
      }
    };
    // A socket that neither opens nor fails (a black-holed address) would leave the client connecting forever.
    clearTimeout(this.kaTimer);
    this.kaTimer = setTimeout(() => {
      if (gen !== this.gen || acked) return;
      this.dropped(gen, false, `no connection_ack within ${CONNECT_TIMEOUT_MS} ms`);
      ws.close();
    }, CONNECT_TIMEOUT_MS);
  }

  private message(gen: number, ws: WebSocket, message: Record<string, unknown>): void {
    const topic = typeof message.id === "string" ? this.topics[Number(message.id.split("-")[1])] : undefined;
    switch (message.type) {
      case "connection_ack": {
        this.failures = 0;
        const timeout = typeof message.connectionTimeoutMs === "number" ? message.connectionTimeoutMs : 300_000;
        this.keepAlive(ws, timeout);
        this.topics.forEach((t, i) => {
          if (t.refused) return;
          const named = t.kind === "key" ? { key: t.name } : { prefix: t.name };
          ws.send(JSON.stringify({
            type: "subscribe",
            id: `s-${i}-${gen}`,
            channel: t.channel,
            authorization: { host: this.host, Authorization: token(this.apiKey, named) },
          }));
        });
        this.maybeSubscribed(gen);
        return;
      }
      case "ka":
        this.keepAlive(ws, undefined);
        return;
      case "subscribe_success":
        if (topic) topic.subscribed = true;
        this.maybeSubscribed(gen);
        return;
      case "subscribe_error": {
        if (!topic) return;
        const error = (Array.isArray(message.errors) ? message.errors[0] : undefined) as
          | { errorType?: string; message?: string } | undefined;
        const errorType = error?.errorType ?? "UnauthorizedException";
        if (errorType === "UnauthorizedException" || errorType === "BadRequestException") {
          this.refuse(topic, errorType, error?.message ?? "subscription refused");
          this.maybeSubscribed(gen);
        } else {
          // Anything else (throttling, an authorizer failure) may pass: try again on a new connection.
          ws.close();
          this.dropped(gen, true, `subscribe ${topic.name}: ${errorType} ${error?.message ?? ""}`);
        }
        return;
      }
      case "data": {
        if (!topic || topic.refused) return;
        try {
          const event = typeof message.event === "string" ? JSON.parse(message.event) : message.event;
          const ours = topic.kind === "key" ? event?.key === topic.name : String(event?.key).startsWith(topic.name);
          if (ours && typeof event.sequencer === "string") this.pushed(event as WireChange);
        } catch {
          // not a change: ignore
        }
        return;
      }
      case "connection_error":
      case "error":
        ws.close();
        this.dropped(gen, false, `error: ${JSON.stringify(message.errors ?? message)}`);
        return;
    }
  }

  /** Closes the socket when no `ka` comes within the server's `connectionTimeoutMs`. */
  private keepAlive(ws: WebSocket, timeout: number | undefined): void {
    const ms = timeout ?? this.kaTimeout;
    this.kaTimeout = ms;
    clearTimeout(this.kaTimer);
    this.kaTimer = setTimeout(() => {
      ws.close();
      this.dropped(this.gen, true, `no keep-alive within ${ms} ms`);
    }, ms);
  }

  private refuse(t: Topic, errorType: string, message: string): void {
    if (t.refused) return;
    t.refused = true;
    t.poll?.abort();
    this.status({ state: "refused", ...(t.kind === "key" ? { key: t.name } : { prefix: t.name }), errorType, message });
  }

  /** Every topic subscribed (or refused): stop polling, catch up, then live. */
  private maybeSubscribed(gen: number): void {
    if (gen !== this.gen || !this.topics.every((t) => t.subscribed || t.refused)) return;
    const reconnected = this.connectedOnce;
    this.connectedOnce = true;
    this.attempt = 0;
    if (this.polling) {
      this.polling = false;
      for (const t of this.topics) t.poll?.abort();
    }
    void Promise.all(this.topics.map((t) => this.catchUp(t, gen, reconnected))).then(() => {
      if (gen === this.gen && !this.closed) this.status({ state: "live" });
    });
  }

  private dropped(gen: number, acked: boolean, reason: string): void {
    if (gen !== this.gen || this.closed) return;
    this.gen++; // whatever the old socket still says is ignored
    this.ws = null;
    clearTimeout(this.kaTimer);
    for (const t of this.topics) t.subscribed = false;
    if (!acked) this.failures++;
    if (!this.polling && this.failures >= this.pollAfter) {
      this.polling = true;
      this.status({ state: "polling", reason });
      for (const t of this.topics) void this.poll(t);
    }
    const delayMs = Math.round(Math.min(this.maxBackoff, 250 * 2 ** this.attempt) * (0.5 + Math.random() / 2));
    this.attempt = Math.min(this.attempt + 1, 30);
    this.status({ state: "reconnecting", attempt: this.attempt, delayMs, reason });
    clearTimeout(this.timer);
    this.timer = setTimeout(() => this.connect(), delayMs);
  }

  // ---- Ordering ----

  private state(key: string): KeyState {
    let s = this.states.get(key);
    if (!s) {
      s = { seq: null, pushEtag: undefined, etag: undefined, anchored: false, pushes: 0, reading: null, again: false };
      this.states.set(key, s);
    }
    return s;
  }

  private pushed(change: WireChange): void {
    const s = this.state(change.key);
    if (s.seq !== null && compareSequencers(change.sequencer, s.seq) <= 0) return; // a repeat, or older
    const etag = change.deleted ? null : change.etag;
    const body = change.deleted ? null : change.body;
    s.seq = change.sequencer;
    s.pushEtag = etag;
    s.pushes++;
    if (etag === s.etag) {
      // Nothing new to deliver; a state that was read is now known to be this push's.
      s.anchored = true;
      return;
    }
    if (body === undefined || !(s.anchored || s.etag === undefined)) {
      // Too large to carry, or what was delivered came from a read, which pushes are not ordered against: read
      // it now (a read that starts after this push arrived is at least as new as it).
      void this.reread(change.key).catch(() => undefined);
      return;
    }
    s.etag = etag;
    s.anchored = true;
    this.deliver({
      key: change.key, etag, deleted: change.deleted, sequencer: change.sequencer,
      size: body === null ? 0 : change.size, body, value: undefined, via: "push",
    });
  }

  /** Reads a key over HTTP until no push arrived during the read (then the read is at least as new as any). */
  private reread(key: string): Promise<void> {
    const s = this.state(key);
    if (s.reading) {
      s.again = true;
      return s.reading;
    }
    s.reading = (async () => {
      for (let tries = 0; tries < 10 && !this.closed; tries++) {
        s.again = false;
        const pushes = s.pushes;
        const got = await this.read(key);
        if (s.pushes !== pushes || s.again) continue;
        s.anchored = got.etag === s.pushEtag;
        if (got.etag === s.etag) return;
        s.etag = got.etag;
        this.deliver({
          key, etag: got.etag, deleted: got.body === null, sequencer: s.anchored ? s.seq : null,
          size: got.body === null ? 0 : new TextEncoder().encode(got.body).length, body: got.body, value: undefined,
          via: "read",
        });
        return;
      }
    })().finally(() => { s.reading = null; });
    return s.reading;
  }

  private deliver(change: Change): void {
    if (this.closed) return;
    if (change.body !== null) {
      try {
        change.value = JSON.parse(change.body);
      } catch {
        change.value = undefined;
      }
    }
    try {
      this.options.onChange(change);
    } catch (error) {
      setTimeout(() => { throw error; });
    }
  }

  // ---- HTTP: reads, the change feed ----

  private async get(path: string, signal?: AbortSignal): Promise<Response> {
    const headers: Record<string, string> = {};
    if (this.apiKey !== null) headers["x-api-key"] = this.apiKey;
    return this.fetch(this.api + path, { headers, cache: "no-store", ...(signal ? { signal } : {}) });
  }

  private async json(response: Response): Promise<Record<string, unknown>> {
    const text = await response.text();
    if (!response.ok) throw new HttpError(response.status, text);
    return JSON.parse(text) as Record<string, unknown>;
  }

  private async read(key: string): Promise<{ etag: string | null; body: string | null }> {
    const response = this.apiKey === null
      ? await this.get(`/public/${keyPath(key)}`)
      : await this.get(`/items/${keyPath(key)}?consistent=true`);
    if (response.status === 404) return { etag: null, body: null };
    const body = await response.text();
    if (!response.ok) throw new HttpError(response.status, body);
    const etag = (response.headers.get("etag") ?? "").replace(/^W\//, "").replace(/"/g, "");
    return { etag, body };
  }

  private locked<T>(t: Topic, run: () => Promise<T>): Promise<T> {
    const result = t.lock.then(run, run);
    t.lock = result.then(() => undefined, () => undefined);
    return result;
  }

  private feedPath(t: Topic, after: string | undefined, wait: number): string {
    const query = new URLSearchParams({ prefix: t.name, wait: String(wait), limit: "1000" });
    if (after !== undefined) query.set("after", after);
    return `/changes?${query}`;
  }

  private async takeCursor(t: Topic): Promise<void> {
    const page = await this.json(await this.get(this.feedPath(t, undefined, 0)));
    t.cursor = String(page.cursor);
  }

  /** One answer of the feed: re-reads what changed, then advances the cursor. `false` when it had nothing. */
  private async feedPage(t: Topic, wait: number, signal?: AbortSignal): Promise<boolean> {
    const response = await this.get(this.feedPath(t, t.cursor, wait), signal);
    if (response.status === 410) {
      // The feed no longer reaches back to the cursor: take its restart point, then read everything followed.
      const expired = JSON.parse(await response.text()) as { cursor: string };
      t.cursor = expired.cursor;
      await this.relist(t);
      return true;
    }
    if (response.status === 403) {
      this.refuse(t, "Forbidden", await response.text());
      return false;
    }
    const page = (await this.json(response)) as { changes: { key: string; etag: string | null }[]; cursor: string };
    await Promise.all(page.changes
      .filter((c) => t.kind === "prefix" || c.key === t.name)
      .filter((c) => {
        const s = this.states.get(c.key);
        return s === undefined || s.etag !== c.etag || s.reading !== null;
      })
      .map((c) => this.reread(c.key)));
    const moved = page.cursor !== t.cursor;
    t.cursor = page.cursor;
    return page.changes.length > 0 || moved;
  }

  /** After a 410: re-read the key, or every listed item whose ETag is not the one delivered (and those gone). */
  private async relist(t: Topic): Promise<void> {
    if (t.kind === "key") return this.reread(t.name);
    const listed = new Set<string>();
    const stale: string[] = [];
    let cursor = "";
    do {
      const query = new URLSearchParams({ prefix: t.name, limit: "1000", cursor });
      const page = (await this.json(await this.get(`/items?${query}`))) as {
        items: { key: string; etag: string }[]; cursor: string | null;
      };
      for (const item of page.items) {
        listed.add(item.key);
        if (this.states.get(item.key)?.etag !== item.etag) stale.push(item.key);
      }
      cursor = page.cursor ?? "";
    } while (cursor !== "");
    for (const [key, s] of this.states) {
      if (key.startsWith(t.name) && !listed.has(key) && s.etag !== null) stale.push(key);
    }
    await Promise.all(stale.map((key) => this.reread(key)));
  }

  /** After (re)subscribing: what changed while the socket was down, from the cursor. */
  private async catchUp(t: Topic, gen: number, reconnected: boolean): Promise<void> {
    for (let attempt = 0; !t.refused && !this.closed && gen === this.gen; attempt++) {
      try {
        if (this.apiKey === null) {
          // No change feed without a key: re-read followed keys (public ones, through the cache).
          if (reconnected && t.kind === "key") await this.reread(t.name);
          return;
        }
        await this.locked(t, async () => {
          if (t.cursor === undefined) {
            await this.takeCursor(t);
            if (reconnected && t.kind === "key") await this.reread(t.name);
            return;
          }
          for (let pages = 0; pages < 100 && !t.refused && (await this.feedPage(t, 0)); pages++);
        });
        return;
      } catch (error) {
        this.status({ state: "error", message: `catching up ${t.name}: ${String(error)}` });
        await sleep(Math.min(this.maxBackoff, 250 * 2 ** attempt));
      }
    }
  }

  /** Long-polls the feed for one topic while push is unavailable. */
  private async poll(t: Topic): Promise<void> {
    if (this.apiKey === null) {
      if (t.kind === "key") return this.pollPublic(t);
      this.status({ state: "error", message: `no long-poll of a prefix without an API key (${t.name})` });
      return;
    }
    if (t.polling) return;
    t.polling = true;
    for (let attempt = 0; this.polling && !this.closed && !t.refused;) {
      const controller = new AbortController();
      try {
        await this.locked(t, async () => {
          if (!this.polling || this.closed) return;
          t.poll = controller;
          if (t.cursor === undefined) await this.takeCursor(t);
          else await this.feedPage(t, 25, controller.signal);
        });
        attempt = 0;
      } catch (error) {
        if (controller.signal.aborted) break;
        this.status({ state: "error", message: `polling ${t.name}: ${String(error)}` });
        await sleep(Math.min(this.maxBackoff, 250 * 2 ** attempt++));
      } finally {
        if (t.poll === controller) t.poll = null;
      }
    }
    t.polling = false;
  }

  /**
   * Without a key there is no change feed, but a public item may be waited on: `GET /public/{key}?wait=25` with the
   * ETag last delivered answers when it changes. A missing item answers at once, so that case sleeps in between.
   */
  private async pollPublic(t: Topic): Promise<void> {
    if (t.polling) return;
    t.polling = true;
    for (let attempt = 0; this.polling && !this.closed && !t.refused;) {
      const controller = new AbortController();
      t.poll = controller;
      try {
        const s = this.state(t.name);
        const headers: Record<string, string> = {};
        if (typeof s.etag === "string") headers["if-none-match"] = `"${s.etag}"`;
        const response = await this.fetch(`${this.api}/public/${keyPath(t.name)}?wait=25`, {
          headers, cache: "no-store", signal: controller.signal,
        });
        const body = await response.text();
        if (response.status === 403) {
          this.refuse(t, "Forbidden", body);
          break;
        }
        if (response.status !== 304 && response.status !== 200 && response.status !== 404) {
          throw new HttpError(response.status, body);
        }
        attempt = 0;
        if (response.status === 304) continue;
        const etag = response.status === 404 ? null : (response.headers.get("etag") ?? "").replace(/^W\//, "").replace(/"/g, "");
        if (s.etag === undefined) {
          // The first answer is the state when following began, not a change (as with push and the feed).
          s.etag = etag;
        } else if (etag !== s.etag) {
          s.etag = etag;
          s.anchored = false;
          this.deliver({
            key: t.name, etag, deleted: etag === null, sequencer: null,
            size: etag === null ? 0 : new TextEncoder().encode(body).length, body: etag === null ? null : body,
            value: undefined, via: "read",
          });
        }
        if (response.status === 404) await sleep(this.maxBackoff);
      } catch (error) {
        if (controller.signal.aborted) break;
        this.status({ state: "error", message: `polling ${t.name}: ${String(error)}` });
        await sleep(Math.min(this.maxBackoff, 250 * 2 ** attempt++));
      } finally {
        if (t.poll === controller) t.poll = null;
      }
    }
    t.polling = false;
  }
}

/** Follows `keys` and `prefixes`: each change reaches `onChange` once, never an older state after a newer one. */
export function subscribe(options: Options): Subscription {
  return new Client(options);
}
