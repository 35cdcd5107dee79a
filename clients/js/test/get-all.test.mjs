// getAll: every item under a prefix with its exact text, refreshed with one listing and a batch get of only what
// changed, relative to the client's prefix; without a key it says it cannot list.
import assert from "node:assert/strict";
import { after, before, test } from "node:test";

import { createClient } from "../dist/index.js";
import { READ_KEY, recordingFetch, startStack } from "./stack.mjs";

let stack;
before(async () => { stack = await startStack("get-all"); });
after(async () => { await stack?.stop(); });

test("getAll reads every item under a prefix, then re-reads only what changed", async () => {
  const written = {};
  for (let n = 0; n < 150; n++) {
    const key = `all/item-${String(n).padStart(3, "0")}`;
    written[key] = n === 7 ? '{"n": 7, "big": 1e400}' : `{"n": ${n}}`;
    await stack.synced(key, await stack.put(key, written[key]));
  }
  await stack.synced("elsewhere", await stack.put("elsewhere", "1"));

  const { fetch, requests } = recordingFetch();
  const client = createClient({ endpoint: stack.endpoint, apiKey: READ_KEY, fetch });
  const all = await client.getAllDetailed("all/");
  assert.equal(all.source, "network");
  assert.deepEqual(Object.keys(all.items).sort(), Object.keys(written).sort());
  for (const [key, text] of Object.entries(written)) assert.equal(all.items[key].text, text, key);
  assert.deepEqual(all.items["all/item-007"].value, { n: 7, big: Infinity });
  assert.deepEqual(requests.map((r) => [r.method, r.path.split("?")[0]]), [
    ["GET", "/items"], ["POST", "/batch-get"], ["POST", "/batch-get"],
  ]);

  // What getAll read is cached: a get of one of them asks nothing.
  assert.deepEqual(await client.get("all/item-001", null), { n: 1 });
  assert.equal(requests.length, 3);

  // One change: the listing shows its new ETag, and only it is read again.
  await stack.synced("all/item-042", await stack.put("all/item-042", '{"n": "changed"}'));
  requests.length = 0;
  const values = await client.getAll("all/");
  assert.deepEqual(values["all/item-042"], { n: "changed" });
  assert.equal(Object.keys(values).length, 150);
  const batch = requests.filter((r) => r.method === "POST");
  assert.equal(batch.length, 1);
  assert.deepEqual(requests.map((r) => r.method), ["GET", "POST"]);
});

test("getAll with the client's prefix gives keys without it", async () => {
  await stack.synced("team/a/x", await stack.put("team/a/x", '"x"'));
  await stack.synced("team/a/y/z", await stack.put("team/a/y/z", '"z"'));
  const client = createClient({ endpoint: stack.endpoint, apiKey: READ_KEY, prefix: "team/a/" });
  assert.deepEqual(await client.getAll(), { x: "x", "y/z": "z" });
  assert.deepEqual(await client.getAll("y/"), { "y/z": "z" });
  assert.deepEqual(await client.getAll("nothing/"), {});
});

test("an item the batch get says expired is left out, not kept at its last value", async () => {
  await stack.synced("soon/a", await stack.put("soon/a?ttl=3600", '"a"'));
  await stack.synced("soon/b", await stack.put("soon/b", '"b"'));
  // The API's batch answer for an item whose expiry has come (before the reaper deletes it).
  let expired = false;
  const fetch = async (url, init) => {
    if (!expired || !String(url).endsWith("/batch-get")) return globalThis.fetch(url, init);
    const { keys } = JSON.parse(init.body);
    const items = keys.map((key) => (key === "soon/a" ? { key, found: false, error: "expired" } : { key, found: false }));
    return new Response(JSON.stringify({ items }), { status: 200, headers: { "content-type": "application/json" } });
  };
  const client = createClient({ endpoint: stack.endpoint, apiKey: READ_KEY, fetch });
  assert.deepEqual(await client.getAll("soon/"), { "soon/a": "a", "soon/b": "b" });
  // Rewritten (so the listing's ETag differs and it is read again), and by then expired.
  await stack.synced("soon/a", await stack.put("soon/a?ttl=3600", '"a2"'));
  expired = true;
  assert.deepEqual(await client.getAll("soon/"), { "soon/b": "b" });
});

test("getAll without an API key is empty and says why", async () => {
  const client = createClient({ endpoint: stack.endpoint });
  const all = await client.getAllDetailed("public/");
  assert.deepEqual(all.items, {});
  assert.equal(all.error?.kind, "unsupported");
});
