/**
 * Many items at once: the listing (S3's truth about which keys exist, with their ETags) and batch gets, whose
 * values arrive inside one JSON answer and are cut out of it so each keeps its exact text.
 */
import { S3kvError } from "./errors.js";
import { statusError, type Http } from "./http.js";
import { cutValues } from "./raw.js";

export interface Listed {
  key: string;
  etag: string | null;
}

/** One item as a batch get answered it. */
export interface BatchRead {
  key: string;
  found: boolean;
  etag: string | null;
  text: string | null;
  value: unknown;
}

/** Every key under `prefix` with its ETag, page by page. */
export async function listKeys(http: Http, prefix: string): Promise<Listed[]> {
  const found: Listed[] = [];
  let cursor: string | null = null;
  do {
    const query = new URLSearchParams({ prefix, limit: "1000" });
    if (cursor !== null) query.set("cursor", cursor);
    const answer = await http.send("GET", `/items?${query}`, { key: prefix });
    if (answer.status !== 200) throw statusError(answer, "GET /items", prefix);
    let page: { items: { key: string; etag?: string | null }[]; cursor: string | null };
    try {
      page = JSON.parse(answer.text) as typeof page;
      if (!Array.isArray(page.items)) throw new Error("no items");
    } catch {
      throw new S3kvError("bad_response", `GET /items: not a listing: ${answer.text.slice(0, 100)}`, { key: prefix });
    }
    for (const item of page.items) found.push({ key: item.key, etag: item.etag ?? null });
    cursor = typeof page.cursor === "string" ? page.cursor : null;
  } while (cursor !== null);
  return found;
}

/**
 * Reads `keys`, 100 per `POST /batch-get` (the API's limit), halving a batch whose answer would pass Lambda's
 * response limit (`502 response_too_large`). Keys the API key may not read are left out.
 */
export async function batchRead(http: Http, keys: readonly string[]): Promise<BatchRead[]> {
  const reads: BatchRead[] = [];
  const pending: string[][] = [];
  for (let i = 0; i < keys.length; i += 100) pending.push(keys.slice(i, i + 100));
  pending.reverse();
  for (let batch = pending.pop(); batch !== undefined; batch = pending.pop()) {
    const answer = await http.send("POST", "/batch-get", { body: JSON.stringify({ keys: batch }) });
    if (answer.status === 502 && batch.length > 1 && answer.text.includes("response_too_large")) {
      const half = Math.ceil(batch.length / 2);
      pending.push(batch.slice(half), batch.slice(0, half));
      continue;
    }
    if (answer.status !== 200) throw statusError(answer, "POST /batch-get");
    let items: { key: string; found: boolean; etag?: string; error?: string; value?: unknown }[];
    try {
      items = (JSON.parse(answer.text) as { items: typeof items }).items;
      if (!Array.isArray(items)) throw new Error("no items");
    } catch {
      throw new S3kvError("bad_response", `POST /batch-get: not a batch answer: ${answer.text.slice(0, 100)}`);
    }
    const texts = new Map<number, string>();
    cutValues(
      answer.text,
      (path) => {
        if (path.length === 0) return "descend";
        if (path[0] !== "items") return "skip";
        if (path.length < 3) return "descend";
        return path[2] === "value" ? "take" : "skip";
      },
      (path, raw) => texts.set(path[1] as number, raw),
    );
    items.forEach((item, i) => {
      // forbidden for this key: nothing known about the item. expired: known to be gone, like found: false alone.
      if (item.error !== undefined && item.error !== "expired") return;
      const text = texts.get(i);
      reads.push(item.found && text !== undefined
        ? { key: item.key, found: true, etag: item.etag ?? null, text, value: item.value }
        : { key: item.key, found: false, etag: null, text: null, value: undefined });
    });
  }
  return reads;
}
