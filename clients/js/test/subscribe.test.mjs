// subscribe: a change reaches the callback and the cache over push (the WebSocket), and over long-poll when push
// cannot be reached (GET /changes with a key, GET /public/{key}?wait= without one).
import assert from "node:assert/strict";
import { createServer } from "node:net";
import { after, before, test } from "node:test";

import { createClient } from "../dist/index.js";
import { READ_KEY, recordingFetch, startStack, until } from "./stack.mjs";

let stack;
before(async () => { stack = await startStack("subscribe"); });
after(async () => { await stack?.stop(); });

/** A port nothing listens on: push "down". */
async function closedPort() {
  const server = createServer();
  await new Promise((r) => server.listen(0, "127.0.0.1", r));
  const { port } = server.address();
  await new Promise((r) => server.close(r));
  return port;
}

/** Subscribes and resolves once it is following (`live` or `polling`), with the changes and statuses it gets. */
async function follow(client, targets, ready) {
  const changes = [];
  const statuses = [];
  const subscription = client.subscribe(targets, (c) => changes.push(c), { onStatus: (s) => statuses.push(s) });
  await until(() => statuses.some((s) => s.state === ready), `subscription ${ready}: ${JSON.stringify(statuses)}`);
  return { changes, statuses, subscription };
}

test("a change arrives over push, exact, and the cache serves it without asking", { skip: typeof WebSocket === "undefined" && "no WebSocket in this Node (the browser test covers push)" }, async () => {
  const { fetch, requests } = recordingFetch();
  const client = createClient({ endpoint: stack.endpoint, apiKey: READ_KEY, fetch, maxAgeMs: Infinity });
  const { changes, subscription } = await follow(client, ["push/"], "live");
  const text = '{"pushed": 1e400,  "at": "now"}';
  const etag = await stack.put("push/flag", text);
  await until(() => changes.length > 0, "a pushed change");
  assert.deepEqual(changes, [{ key: "push/flag", deleted: false, value: { pushed: Infinity, at: "now" }, text, etag, via: "push" }]);
  const before = requests.length;
  const got = await client.getDetailed("push/flag", null);
  assert.equal(got.text, text);
  assert.equal(got.source, "cache");
  assert.equal(requests.length, before, "the read asked nothing: the push filled the cache");

  await stack.del("push/flag");
  await until(() => changes.length > 1, "the delete pushed");
  assert.deepEqual(changes[1], { key: "push/flag", deleted: true, value: undefined, text: null, etag: null, via: "push" });
  assert.equal((await client.getDetailed("push/flag", "gone")).value, "gone");
  subscription.close();
});

test("with push unreachable, changes arrive by long-polling the change feed", async () => {
  const { fetch, requests } = recordingFetch();
  const client = createClient({
    endpoint: stack.endpoint, apiKey: READ_KEY, fetch, realtime: `ws://127.0.0.1:${await closedPort()}/event/realtime`,
  });
  const { changes, statuses, subscription } = await follow(client, ["poll/", "poll-key"], "polling");
  const text = '{"polled":  true}';
  const etag = await stack.put("poll/flag", text);
  const keyEtag = await stack.put("poll-key", "[1, 2]");
  await until(() => changes.length >= 2, `both changes polled: ${JSON.stringify(changes)}`);
  const byKey = Object.fromEntries(changes.map((c) => [c.key, c]));
  assert.deepEqual(byKey["poll/flag"], { key: "poll/flag", deleted: false, value: { polled: true }, text, etag, via: "read" });
  assert.deepEqual(byKey["poll-key"], { key: "poll-key", deleted: false, value: [1, 2], text: "[1, 2]", etag: keyEtag, via: "read" });
  assert.equal(changes.length, 2);
  assert.ok(requests.some((r) => r.path.startsWith("/changes?") && r.path.includes("wait=25")), "long-polled the feed");
  assert.ok(!statuses.some((s) => s.state === "live"));
  subscription.close();
  client.close();
});

test("without a key, a public item is long-polled with ?wait= and its ETag", async () => {
  await stack.synced("public/notice", await stack.put("public/notice", '"v1"'));
  const { fetch, requests } = recordingFetch();
  const client = createClient({ endpoint: stack.endpoint, fetch, transport: "poll" });
  const { changes, subscription } = await follow(client, "public/notice", "polling");
  // The first answer is the state when following began, not a change: wait until the client holds it.
  await until(() => requests.some((r) => r.ifNoneMatch !== null), "a wait with the ETag");
  const etag = await stack.put("public/notice", '"v2"');
  await until(() => changes.length > 0, "the public change");
  assert.deepEqual(changes, [{ key: "public/notice", deleted: false, value: "v2", text: '"v2"', etag, via: "read" }]);
  assert.ok(requests.every((r) => r.path === "/public/public/notice?wait=25" && r.apiKey === null));
  subscription.close();
});

test("subscribing to nothing, or to a bad key, is a clear error at once", () => {
  const client = createClient({ endpoint: stack.endpoint, apiKey: READ_KEY });
  assert.throws(() => client.subscribe([], () => {}), /needs a key or prefix/);
  assert.throws(() => client.subscribe(["a//b"], () => {}), /empty, '\.' or '\.\.' segments/);
  assert.throws(() => client.subscribe(["ok"]), /onChange is a function/);
});
