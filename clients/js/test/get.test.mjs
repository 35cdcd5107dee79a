// get: a default on a miss, values exactly as stored, an ETag-revalidated cache (checked on the requests actually
// made), keyless public reads, and bad input answered with the default and a reason, never a throw.
import assert from "node:assert/strict";
import { after, before, test } from "node:test";

import { createClient } from "../dist/index.js";
import { READ_KEY, recordingFetch, startStack } from "./stack.mjs";

let stack;
before(async () => { stack = await startStack("get"); });
after(async () => { await stack?.stop(); });

test("a missing item is the default, with no error: the API said it is not there", async () => {
  const { fetch, requests } = recordingFetch();
  const client = createClient({ endpoint: stack.endpoint, apiKey: READ_KEY, fetch });
  assert.equal(await client.get("get/missing", "fallback"), "fallback");
  const detailed = await client.getDetailed("get/missing-too", 7);
  assert.deepEqual(
    { value: detailed.value, found: detailed.found, source: detailed.source, stale: detailed.stale, error: detailed.error },
    { value: 7, found: false, source: "network", stale: false, error: undefined },
  );
  assert.deepEqual(requests.map((r) => [r.path, r.status, r.apiKey]), [
    ["/items/get/missing", 404, READ_KEY],
    ["/items/get/missing-too", 404, READ_KEY],
  ]);
});

test("values come back exactly as written: the text byte for byte, the value parsed from it", async () => {
  const text = '{"n": 1e400, "big": 123456789012345678901234567890, "z": -0,  "s" : "\\u00e9"}';
  const etag = await stack.put("get/exact", text);
  await stack.synced("get/exact", etag);
  const client = createClient({ endpoint: stack.endpoint, apiKey: READ_KEY });
  const got = await client.getDetailed("get/exact", {});
  assert.equal(got.text, text);
  assert.equal(got.etag, etag);
  assert.equal(got.source, "network");
  assert.deepEqual(got.value, JSON.parse(text));
});

test("a cached get asks nothing until maxAgeMs, then revalidates with If-None-Match and gets 304", async () => {
  const etag = await stack.put("get/cached", '{"on": true}');
  await stack.synced("get/cached", etag);

  // Never stale: after the first read, reads are answered from memory alone.
  const forever = recordingFetch();
  const memory = createClient({ endpoint: stack.endpoint, apiKey: READ_KEY, fetch: forever.fetch, maxAgeMs: Infinity });
  for (let i = 0; i < 100; i++) assert.deepEqual(await memory.get("get/cached", {}), { on: true });
  assert.equal((await memory.getDetailed("get/cached", {})).source, "cache");
  assert.equal(forever.requests.length, 1, "one request for 101 reads");

  // Always revalidated: every read asks with the ETag it holds, and a 304 keeps the cached value.
  const { fetch, requests } = recordingFetch();
  const client = createClient({ endpoint: stack.endpoint, apiKey: READ_KEY, fetch, maxAgeMs: 0 });
  assert.equal((await client.getDetailed("get/cached", {})).source, "network");
  const again = await client.getDetailed("get/cached", {});
  assert.equal(again.source, "revalidated");
  assert.deepEqual(again.value, { on: true });
  assert.deepEqual(requests.map((r) => [r.ifNoneMatch, r.status]), [[null, 200], [`"${etag}"`, 304]]);

  // Changed elsewhere: the revalidation answers 200 with the new value.
  const next = await stack.put("get/cached", '{"on": false}');
  await stack.synced("get/cached", next);
  const changed = await client.getDetailed("get/cached", {});
  assert.equal(changed.source, "network");
  assert.deepEqual(changed.value, { on: false });
  assert.equal(changed.etag, next);
  assert.deepEqual(requests.at(-1), { method: "GET", path: "/items/get/cached", ifNoneMatch: `"${etag}"`, apiKey: READ_KEY, status: 200 });
});

test("concurrent reads of one key share one request", async () => {
  const { fetch, requests } = recordingFetch();
  const client = createClient({ endpoint: stack.endpoint, apiKey: READ_KEY, fetch, maxAgeMs: 0 });
  const values = await Promise.all(Array.from({ length: 10 }, () => client.get("get/cached", null)));
  assert.equal(values.length, 10);
  assert.equal(requests.length, 1);
});

test("without an API key, reads go to /public/{key}: public items are read, others are the default", async () => {
  const etag = await stack.put("public/banner", '"hello"');
  await stack.synced("public/banner", etag);
  const { fetch: recorded, requests } = recordingFetch();
  const errors = [];
  const client = createClient({ endpoint: stack.endpoint, fetch: recorded, maxAgeMs: 0, onError: (e) => errors.push(e) });
  assert.equal(await client.get("public/banner", "none"), "hello");
  assert.equal((await client.getDetailed("public/banner", "none")).source, "revalidated");
  // Exists, but not under the public prefix.
  const refused = await client.getDetailed("get/exact", "none");
  assert.equal(refused.value, "none");
  assert.equal(refused.error?.kind, "http");
  assert.equal(refused.error?.unreachable, false);
  assert.deepEqual(errors, [refused.error]);
  assert.deepEqual(requests.map((r) => [r.path, r.apiKey]), [
    ["/public/public/banner", null], ["/public/public/banner", null], ["/public/get/exact", null],
  ]);
});

test("bad input is the default with a reason, never a throw, and asks nothing", async () => {
  const { fetch, requests } = recordingFetch();
  const errors = [];
  const client = createClient({
    endpoint: stack.endpoint, apiKey: READ_KEY, fetch, onError: (e) => errors.push(e.kind),
  });
  for (const key of ["", "/lead", "a//b", "a/../b", "a/", 42, null, "x".repeat(513)]) {
    const got = await client.getDetailed(key, "d");
    assert.equal(got.value, "d", String(key));
    assert.equal(got.error?.kind, "invalid_argument", String(key));
  }
  assert.equal(requests.length, 0);
  assert.deepEqual(errors, Array(8).fill("invalid_argument"));
  assert.throws(() => createClient({ endpoint: "not a url" }), /endpoint is not a URL/);
  assert.throws(() => createClient({ endpoint: stack.endpoint, prefix: "flags" }), /prefix is empty or ends in '\/'/);
});

test("a value of another type than a primitive default is the default, with type_mismatch", async () => {
  const etag = await stack.put("get/object", '{"enabled": true}');
  await stack.synced("get/object", etag);
  const client = createClient({ endpoint: stack.endpoint, apiKey: READ_KEY });
  assert.equal(await client.get("get/object", false), false);
  const detailed = await client.getDetailed("get/object", false);
  assert.equal(detailed.error?.kind, "type_mismatch");
  assert.equal(detailed.text, '{"enabled": true}');
  assert.deepEqual(await client.get("get/object", {}), { enabled: true });
});

test("the client's prefix is prepended to keys", async () => {
  const etag = await stack.put("app/one/flag", "true");
  await stack.synced("app/one/flag", etag);
  const { fetch, requests } = recordingFetch();
  const client = createClient({ endpoint: stack.endpoint, apiKey: READ_KEY, prefix: "app/one/", fetch });
  assert.equal(await client.get("flag", false), true);
  assert.equal(requests[0].path, "/items/app/one/flag");
});

test("a 404 that is not the API's (a proxy, a wrong endpoint) is an outage, not a miss", async () => {
  const etag = await stack.put("get/proxied", '"real"');
  await stack.synced("get/proxied", etag);
  let proxy = false;
  const fetch = (url, init) => (proxy ? Promise.resolve(new Response("", { status: 404 })) : globalThis.fetch(url, init));
  const client = createClient({ endpoint: stack.endpoint, apiKey: READ_KEY, fetch, maxAgeMs: 0 });
  assert.equal(await client.get("get/proxied", "default"), "real");
  proxy = true;
  const got = await client.getDetailed("get/proxied", "default");
  assert.deepEqual([got.value, got.source, got.stale, got.error?.kind], ["real", "cache", true, "bad_response"]);
  // The API's own 404 is a miss.
  proxy = false;
  assert.deepEqual((await client.getDetailed("get/never-written", "default")).error, undefined);
});

test("an expired item (the API's 404 expired) is a miss like a deleted one, not an outage", async () => {
  const etag = await stack.put("get/expiring?ttl=3600", '"soon"');
  await stack.synced("get/expiring", etag);
  // The API's answer once the expiry has come (s3kv-local's reaper would soon turn it into a plain not_found).
  let expired = false;
  const answer = { error: "expired", message: 'item "get/expiring" expired at 2026-12-31T18:00:00Z' };
  const fetch = (url, init) =>
    expired
      ? Promise.resolve(new Response(JSON.stringify(answer), { status: 404, headers: { "content-type": "application/json" } }))
      : globalThis.fetch(url, init);
  const client = createClient({ endpoint: stack.endpoint, apiKey: READ_KEY, fetch, maxAgeMs: 0 });
  assert.equal(await client.get("get/expiring", "default"), "soon");
  expired = true;
  const got = await client.getDetailed("get/expiring", "default");
  assert.deepEqual([got.value, got.found, got.stale, got.error], ["default", false, false, undefined]);
});
