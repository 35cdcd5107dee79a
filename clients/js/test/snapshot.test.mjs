// The last-known-good snapshot: `s3kv export --snapshot` writes it, the client loads it at start (a path, a URL,
// its text, its parsed object) and, once the stack is killed, serves it, marked stale with when it was exported.
import assert from "node:assert/strict";
import { readFile } from "node:fs/promises";
import { createServer } from "node:http";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import { after, before, test } from "node:test";

import { createClient } from "../dist/index.js";
import { READ_KEY, binary, recordingFetch, run, startStack } from "./stack.mjs";

const ODD = '{"n": 1e400, "big": 123456789012345678901234567890,  "z": -0}';
let stack;
let file;
let server;
let url;

before(async () => {
  stack = await startStack("snapshot");
  await stack.synced("snap/odd", await stack.put("snap/odd", ODD));
  await stack.synced("snap/flag", await stack.put("snap/flag", "true"));
  await stack.synced("snap/later", await stack.put("snap/later", '"in the snapshot"'));
  file = join(stack.dir, "snapshot.json");
  await run(binary("s3kv"), ["export", "snap/", "--snapshot", file], {
    env: { ...process.env, S3KV_ENDPOINT: stack.endpoint, S3KV_API_KEY: READ_KEY, S3KV_CONFIG_DIR: join(stack.dir, "config") },
  });
  const text = await readFile(file, "utf8");
  server = createServer((req, res) => {
    res.writeHead(req.url === "/snapshot.json" ? 200 : 404, { "content-type": "application/json" });
    res.end(req.url === "/snapshot.json" ? text : "{}");
  });
  await new Promise((r) => server.listen(0, "127.0.0.1", r));
  url = `http://127.0.0.1:${server.address().port}/snapshot.json`;
});
after(async () => {
  server?.close();
  await stack?.stop();
});

test("with the stack killed, reads serve the snapshot (stale, exact, dated) or what was cached", async () => {
  const errors = [];
  const { fetch, requests } = recordingFetch();
  const client = createClient({
    endpoint: stack.endpoint, apiKey: READ_KEY, snapshot: file, fetch, maxAgeMs: 0, onError: (e) => errors.push(e),
  });
  const loaded = await client.snapshot;
  assert.equal(loaded.items.size, 3);
  assert.match(loaded.exportedAt, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/);

  // While the API answers, the snapshot is not used: a value changed since the export reads as it is now.
  await stack.synced("snap/later", await stack.put("snap/later", '"after the snapshot"'));
  const live = await client.getDetailed("snap/later", "");
  assert.deepEqual([live.value, live.source, live.stale], ["after the snapshot", "network", false]);

  await stack.kill();

  // Read before the outage: memory is newer than the snapshot, and stands in for it.
  const cached = await client.getDetailed("snap/later", "");
  assert.deepEqual([cached.value, cached.source, cached.stale, cached.error?.kind], ["after the snapshot", "cache", true, "network"]);

  // Never read: the snapshot, byte for byte, with its date.
  const odd = await client.getDetailed("snap/odd", null);
  assert.equal(odd.text, ODD);
  assert.deepEqual(odd.value, JSON.parse(ODD));
  assert.deepEqual([odd.source, odd.stale, odd.exportedAt, odd.error?.kind], ["snapshot", true, loaded.exportedAt, "network"]);
  assert.equal(await client.get("snap/flag", false), true);

  // Not in the snapshot: the default, and why.
  const missing = await client.getDetailed("snap/never", "default");
  assert.deepEqual([missing.value, missing.source, missing.found, missing.error?.kind], ["default", "default", false, "network"]);

  const all = await client.getAllDetailed("snap/");
  assert.deepEqual([all.source, all.stale, all.exportedAt], ["snapshot", true, loaded.exportedAt]);
  assert.deepEqual(Object.fromEntries(Object.entries(all.items).map(([k, v]) => [k, v.text])), {
    "snap/flag": "true", "snap/later": '"in the snapshot"', "snap/odd": ODD,
  });

  // Every one of those reads did try the API, and failed.
  assert.ok(requests.slice(-5).every((r) => r.status === "failed"), JSON.stringify(requests.slice(-5)));
  assert.ok(errors.length >= 5 && errors.every((e) => e.kind === "network" && e.unreachable));
});

test("a snapshot loads from a URL, its text, its parsed object, and a file: URL alike", async () => {
  const text = await readFile(file, "utf8");
  const dead = "http://127.0.0.1:9"; // the discard port: nothing answers
  for (const snapshot of [url, text, JSON.parse(text), pathToFileURL(file)]) {
    const client = createClient({ endpoint: dead, apiKey: READ_KEY, snapshot });
    const odd = await client.getDetailed("snap/odd", null);
    assert.equal(odd.source, "snapshot", String(snapshot).slice(0, 40));
    assert.deepEqual(odd.value, JSON.parse(ODD));
    // Only a parsed object has lost the text; from text it is exact.
    assert.equal(odd.text, typeof snapshot === "object" && !(snapshot instanceof URL) ? JSON.stringify(JSON.parse(ODD)) : ODD);
  }
});

test("a snapshot that cannot be loaded is reported, and reads go on without it", async () => {
  for (const [snapshot, says] of [
    [join(stack.dir, "nope.json"), /ENOENT/],
    ['{"items": {}}', /not an s3kv snapshot/],
    ['{"format": "s3kv-snapshot", "version": 2, "exportedAt": "x", "items": {}}', /version 2/],
    ["{not json", /not JSON/],
    [url.replace("snapshot.json", "missing.json"), /HTTP 404/],
  ]) {
    const errors = [];
    const client = createClient({ endpoint: "http://127.0.0.1:9", apiKey: READ_KEY, snapshot, onError: (e) => errors.push(e) });
    assert.equal(await client.snapshot, null);
    assert.equal(errors[0]?.kind, "snapshot");
    assert.match(errors[0].message, says);
    const got = await client.getDetailed("snap/odd", "d");
    assert.deepEqual([got.value, got.source], ["d", "default"]);
  }
});
