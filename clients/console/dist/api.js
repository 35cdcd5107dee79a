// The s3kv HTTP API as the console uses it. Two ways to reach it, one code path: through `s3kv console`'s local
// server (`/api/...`, the per-run token in a header, the API key added by the server so it never reaches the
// page), or straight to s3kv-local from its own /console (the key typed in, kept in this module's memory only).
import { member, parseRaw } from "./json.js";
let transport = { base: "", headers: {} };
export function use(next) {
    transport = next;
}
/** A refusal or failure as the API worded it, with the key's role and prefixes when a 403 names them. */
export class ApiError extends Error {
    constructor(status, code, message, body) {
        super(message);
        this.status = status;
        this.code = code;
        this.body = body;
    }
}
/** An item key (or prefix) in a path: each byte outside the unreserved set percent-encoded, `/` kept, as the
 * API and the CLI encode it. */
export function encodePath(key) {
    return key
        .split("/")
        .map((part) => encodeURIComponent(part).replace(/[!'()*]/g, (c) => "%" + c.charCodeAt(0).toString(16).toUpperCase()))
        .join("/");
}
export async function call(method, path, options = {}) {
    const headers = { ...transport.headers };
    if (options.body !== undefined)
        headers["content-type"] = "application/json";
    if (options.ifMatch !== undefined)
        headers["if-match"] = options.ifMatch;
    if (options.ifNoneMatch !== undefined)
        headers["if-none-match"] = options.ifNoneMatch;
    const init = { method, headers, cache: "no-store" };
    if (options.body !== undefined)
        init.body = options.body;
    if (options.signal !== undefined)
        init.signal = options.signal;
    let response;
    try {
        response = await fetch(transport.base + path, init);
    }
    catch (error) {
        if (error instanceof DOMException && error.name === "AbortError")
            throw error;
        throw new ApiError(0, "unreachable", `cannot reach the API (${String(error)})`, {});
    }
    const text = await response.text();
    const answer = { status: response.status, headers: response.headers, text };
    if (response.ok || (options.accept ?? []).includes(response.status))
        return answer;
    throw failure(answer);
}
export function failure(answer) {
    let body = {};
    try {
        const parsed = JSON.parse(answer.text);
        if (parsed !== null && typeof parsed === "object")
            body = parsed;
    }
    catch {
        // not JSON: the status says it
    }
    const code = typeof body["error"] === "string" ? body["error"] : null;
    const message = typeof body["message"] === "string" ? body["message"] : `${answer.status} ${answer.text.slice(0, 200)}`;
    return new ApiError(answer.status, code, message, body);
}
export async function list(prefix = "") {
    const out = [];
    let cursor = null;
    do {
        const query = new URLSearchParams({ prefix, limit: "1000" });
        if (cursor !== null)
            query.set("cursor", cursor);
        const page = JSON.parse((await call("GET", `/items?${query}`)).text);
        out.push(...page.items);
        cursor = page.cursor;
    } while (cursor !== null);
    return out;
}
/** The item from S3 itself (`consistent=true`): the console shows and edits what a write would replace, never a
 * cache entry a moment behind. Null when there is none. */
export async function get(key, version) {
    const query = version === undefined ? "?consistent=true" : `?version=${encodeURIComponent(version)}`;
    const answer = await call("GET", `/items/${encodePath(key)}${query}`, { accept: [404] });
    if (answer.status === 404)
        return null;
    return {
        key,
        text: answer.text,
        etag: answer.headers.get("etag") ?? "",
        writer: answer.headers.get("x-s3kv-writer"),
        lastModified: answer.headers.get("last-modified"),
    };
}
/** `?dryRun=true`: would the API take `text` for `key`? Its schema decides, nothing is written. */
export async function dryRun(key, text, signal) {
    const options = { body: text, accept: [400, 413, 422] };
    if (signal !== undefined)
        options.signal = signal;
    const answer = await call("PUT", `/items/${encodePath(key)}?dryRun=true`, options);
    const body = JSON.parse(answer.text);
    const schema = typeof body["schema"] === "string" ? body["schema"] : null;
    if (answer.status === 200)
        return { valid: true, schema };
    return {
        valid: false,
        schema,
        message: typeof body["message"] === "string" ? body["message"] : answer.text,
        violations: Array.isArray(body["violations"]) ? body["violations"] : [],
    };
}
/** A write that replaces only `ifMatch` (or creates only, with `create`; anything, with null): a 412 is an answer,
 * not an error. */
export async function put(key, text, condition) {
    const options = { body: text, accept: [412] };
    if (condition !== null && "ifMatch" in condition)
        options.ifMatch = condition.ifMatch;
    else if (condition !== null)
        options.ifNoneMatch = "*";
    const answer = await call("PUT", `/items/${encodePath(key)}`, options);
    if (answer.status === 412)
        return { ok: false, status: 412 };
    return { ok: true, etag: answer.headers.get("etag") ?? "" };
}
export async function remove(key, ifMatch) {
    const answer = await call("DELETE", `/items/${encodePath(key)}`, { ifMatch, accept: [412] });
    return answer.status === 412 ? { ok: false, status: 412 } : { ok: true, etag: "" };
}
/** Up to 100 items at once, each value as the exact text the API answered (sliced, never re-serialised). */
export async function batchGet(keys) {
    const text = (await call("POST", "/batch-get", { body: JSON.stringify({ keys }) })).text;
    const items = member(parseRaw(text), "items");
    if (items === undefined || items.kind !== "array")
        throw new ApiError(0, null, "a batch get answered no items", {});
    return items.items.map((item) => {
        const key = member(item, "key");
        const value = member(item, "value");
        return {
            key: key === undefined ? "" : JSON.parse(text.slice(key.start, key.end)),
            value: value === undefined ? null : text.slice(value.start, value.end),
        };
    });
}
export async function versions(key) {
    const out = [];
    let cursor = null;
    // Five pages of 100: far more than S3 keeps by default (NoncurrentVersionsKept, 20), and a bound.
    for (let page = 0; page < 5; page++) {
        const query = new URLSearchParams({ limit: "100" });
        if (cursor !== null)
            query.set("cursor", cursor);
        const body = JSON.parse((await call("GET", `/versions/${encodePath(key)}?${query}`)).text);
        out.push(...body.versions);
        cursor = body.cursor;
        if (cursor === null)
            break;
    }
    return out;
}
export async function restore(key, version, ifMatch) {
    const options = { body: JSON.stringify({ version }), accept: [412] };
    if (ifMatch !== undefined)
        options.ifMatch = ifMatch;
    const answer = await call("POST", `/restore/${encodePath(key)}`, options);
    if (answer.status === 412)
        return { ok: false, status: 412 };
    return { ok: true, etag: answer.headers.get("etag") ?? "" };
}
export async function changes(after, wait, signal) {
    const query = new URLSearchParams();
    if (after !== null)
        query.set("after", after);
    if (wait > 0)
        query.set("wait", String(wait));
    const options = {};
    if (signal !== undefined)
        options.signal = signal;
    return JSON.parse((await call("GET", `/changes?${query}`, options)).text);
}
/** The key's role and prefixes from a 403's body (the API names both), if it names them. */
export function grantOf(error) {
    if (!(error instanceof ApiError) || error.status !== 403)
        return null;
    const role = error.body["role"];
    const prefixes = error.body["prefixes"];
    if (role !== "read" && role !== "write")
        return null;
    return { role, prefixes: Array.isArray(prefixes) ? prefixes.filter((p) => typeof p === "string") : [] };
}
/** What the key may do, learnt without writing: no route says it, but a dry-run write is refused with the key's
 * role and prefixes when it may not write there, and answered (200, or 422 for a schema) when it may. The probe's
 * key sits in a folder of its own so no schema of an item prefix is likely to govern it. */
export async function probe() {
    try {
        await call("PUT", `/items/${encodePath(".s3kv-console/permission-probe")}?dryRun=true`, {
            body: "{}",
            accept: [400, 422],
        });
        return { role: "write", prefixes: [] };
    }
    catch (error) {
        const grant = grantOf(error);
        if (grant !== null)
            return grant;
        throw error;
    }
}
export function mayWrite(permissions, key) {
    if (permissions.role === "read")
        return false;
    if (permissions.role === "unknown" || permissions.prefixes.length === 0)
        return true;
    return permissions.prefixes.some((prefix) => key.startsWith(prefix));
}
/** An ETag as If-Match wants it: listings give it bare, headers quoted. */
export function quoted(etag) {
    return etag.startsWith('"') || etag.startsWith('W/') ? etag : `"${etag}"`;
}
