/**
 * The last-known-good snapshot: what `s3kv export --snapshot FILE` writes, loaded once at start and served when the
 * API cannot be reached, so an app that ships one never falls back to hard-coded defaults for values it knew.
 *
 * Format (version 1): `{"format": "s3kv-snapshot", "version": 1, "exportedAt": "<RFC 3339 UTC>", "prefix": "...",
 * "items": {"<item key>": {"etag": "<etag>", "value": <the document, byte for byte>}}}`.
 */
import { S3kvError } from "./errors.js";
import type { Fetch } from "./http.js";
import { cutValues } from "./raw.js";

/** A snapshot as loaded: each item's exact text and parsed value. */
export interface Snapshot {
  /** When the snapshot was exported (RFC 3339, UTC): how stale a value from it may be. */
  exportedAt: string;
  /** The prefix it was exported from (`""`: everything the exporting key could read). */
  prefix: string;
  items: ReadonlyMap<string, SnapshotItem>;
}

export interface SnapshotItem {
  etag: string | null;
  /** The document's exact text when the snapshot was given as text (a file, a URL, a string); otherwise
   * `JSON.stringify(value)`, since an already-parsed object has lost it. */
  text: string;
  value: unknown;
}

/** The file's JSON, e.g. from `import snapshot from "./snapshot.json" with { type: "json" }`. */
export interface SnapshotDocument {
  format: "s3kv-snapshot";
  version: 1;
  exportedAt: string;
  prefix?: string;
  items: Record<string, { etag: string | null; value: unknown }>;
}

/**
 * Where a snapshot comes from: the parsed document; its text (a string starting with `{`, e.g. a bundler's `?raw`
 * import, which keeps values byte for byte); an `http(s):` URL, fetched without the API key; in Node a `file:` URL
 * or a path; in a browser a path, fetched relative to the page.
 */
export type SnapshotSource = SnapshotDocument | string | URL;

const fail = (message: string): S3kvError => new S3kvError("snapshot", message);

function checked(doc: unknown, where: string): { exportedAt: string; prefix: string; items: Record<string, unknown> } {
  if (typeof doc !== "object" || doc === null || Array.isArray(doc)) throw fail(`${where}: not an s3kv snapshot (not a JSON object)`);
  const d = doc as Record<string, unknown>;
  if (d.format !== "s3kv-snapshot") throw fail(`${where}: not an s3kv snapshot (no "format": "s3kv-snapshot"; make one with s3kv export --snapshot FILE)`);
  if (d.version !== 1) throw fail(`${where}: snapshot version ${JSON.stringify(d.version)} is not one this client reads (1)`);
  if (typeof d.exportedAt !== "string") throw fail(`${where}: "exportedAt" is not a string`);
  if (d.prefix !== undefined && typeof d.prefix !== "string") throw fail(`${where}: "prefix" is not a string`);
  if (typeof d.items !== "object" || d.items === null || Array.isArray(d.items)) throw fail(`${where}: "items" is not an object`);
  for (const [key, item] of Object.entries(d.items as Record<string, unknown>)) {
    const it = item as { etag?: unknown; value?: unknown } | null;
    if (typeof it !== "object" || it === null || !("value" in it)) throw fail(`${where}: item ${JSON.stringify(key)} has no "value"`);
    if (it.etag !== null && typeof it.etag !== "string") throw fail(`${where}: item ${JSON.stringify(key)}'s "etag" is not a string`);
  }
  return { exportedAt: d.exportedAt, prefix: (d.prefix as string | undefined) ?? "", items: d.items as Record<string, unknown> };
}

/** A snapshot from its text, each value's text cut out of it exactly. */
export function parseSnapshot(text: string, where = "snapshot"): Snapshot {
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch (error) {
    throw fail(`${where}: not JSON (${error instanceof Error ? error.message : String(error)})`);
  }
  const { exportedAt, prefix, items } = checked(doc, where);
  const texts = new Map<string, string>();
  cutValues(
    text,
    (path) => {
      if (path.length === 0) return "descend";
      if (path[0] !== "items") return "skip";
      if (path.length < 3) return "descend";
      return path[2] === "value" ? "take" : "skip";
    },
    (path, raw) => texts.set(path[1] as string, raw),
  );
  const loaded = new Map<string, SnapshotItem>();
  for (const [key, item] of Object.entries(items)) {
    const { etag, value } = item as { etag: string | null; value: unknown };
    loaded.set(key, { etag, value, text: texts.get(key) ?? JSON.stringify(value) });
  }
  return { exportedAt, prefix, items: loaded };
}

/** A snapshot from its parsed document (values' text re-serialised: see `SnapshotItem.text`). */
export function snapshotFromDocument(doc: unknown, where = "snapshot"): Snapshot {
  const { exportedAt, prefix, items } = checked(doc, where);
  const loaded = new Map<string, SnapshotItem>();
  for (const [key, item] of Object.entries(items)) {
    const { etag, value } = item as { etag: string | null; value: unknown };
    loaded.set(key, { etag, value, text: JSON.stringify(value) });
  }
  return { exportedAt, prefix, items: loaded };
}

const isNode = (): boolean =>
  typeof (globalThis as { process?: { versions?: { node?: string } } }).process?.versions?.node === "string";

/** Node's `readFile`, imported only when a path is given, through a name bundlers leave alone. */
async function readFile(path: string | URL): Promise<string> {
  const name = "node:fs/promises";
  const fs = (await import(/* @vite-ignore */ /* webpackIgnore: true */ name)) as {
    readFile(path: string | URL, encoding: "utf8"): Promise<string>;
  };
  return fs.readFile(path, "utf8");
}

export async function loadSnapshot(source: SnapshotSource, fetch: Fetch): Promise<Snapshot> {
  if (typeof source === "string" && source.trimStart().startsWith("{")) return parseSnapshot(source);
  if (typeof source !== "string" && !(source instanceof URL)) return snapshotFromDocument(source);
  const where = String(source);
  let url: URL | null = null;
  if (source instanceof URL) url = source;
  else if (/^(https?|file):/i.test(source)) {
    try {
      url = new URL(source);
    } catch {
      throw fail(`${where}: not a URL`);
    }
  }
  let text: string;
  try {
    if (url !== null && url.protocol === "file:") {
      if (!isNode()) throw fail(`${where}: file: URLs are read in Node only`);
      text = await readFile(url);
    } else if (url === null && isNode()) {
      text = await readFile(source as string);
    } else {
      const response = await fetch(url === null ? (source as string) : url.href, { cache: "no-store" });
      text = await response.text();
      if (!response.ok) throw fail(`${where}: HTTP ${response.status}`);
    }
  } catch (error) {
    if (error instanceof S3kvError) throw error;
    throw new S3kvError("snapshot", `${where}: ${error instanceof Error ? error.message : String(error)}`, { cause: error });
  }
  return parseSnapshot(text, where);
}
