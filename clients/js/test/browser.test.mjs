// The client in a real browser: Debian's headless Chromium (no driver: the page reports to this test's server)
// loads a page from its own origin that imports the built client and checks get, the 304 revalidation, a push
// subscription, keyless public reads and a snapshot fetched relative to the page, against this test's s3kv-local.
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { existsSync } from "node:fs";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { createServer } from "node:http";
import { createServer as createNetServer } from "node:net";
import { tmpdir } from "node:os";
import { join, normalize } from "node:path";
import { after, before, test } from "node:test";

import { CLIENT_DIR, READ_KEY, WRITE_KEY, startStack } from "./stack.mjs";

const CHROMIUM = process.env.S3KV_CHROMIUM ?? "/usr/bin/chromium";
const SNAPSHOT_VALUE = '{"from":  "the snapshot", "n": 1e400}';

let stack;
before(async () => { stack = await startStack("browser"); });
after(async () => { await stack?.stop(); });

async function closedPort() {
  const server = createNetServer();
  await new Promise((r) => server.listen(0, "127.0.0.1", r));
  const { port } = server.address();
  await new Promise((r) => server.close(r));
  return port;
}

test("the client works in headless Chromium: get, 304, push, public reads, a snapshot", async () => {
  assert.ok(existsSync(CHROMIUM), `${CHROMIUM} is missing: apt-get install chromium (scripts/test does)`);
  const config = {
    endpoint: stack.endpoint,
    readKey: READ_KEY,
    writeKey: WRITE_KEY,
    deadEndpoint: `http://127.0.0.1:${await closedPort()}`,
    snapshotValue: SNAPSHOT_VALUE,
  };
  const snapshot = `{"format": "s3kv-snapshot", "version": 1, "exportedAt": "2026-12-01T00:00:00Z", "prefix": "snap/",
  "items": {"snap/x": {"etag": "e1", "value": ${SNAPSHOT_VALUE}}}}`;
  const page = await readFile(join(CLIENT_DIR, "test/browser.html"));
  const logs = [];
  let settle;
  const result = new Promise((r) => { settle = r; });
  const server = createServer(async (req, res) => {
    const body = await new Promise((r) => { let b = ""; req.on("data", (c) => { b += c; }); req.on("end", () => r(b)); });
    const path = new URL(req.url, "http://x").pathname;
    const send = (status, type, content) => { res.writeHead(status, { "content-type": type }); res.end(content); };
    if (req.method === "POST" && path === "/result") { settle(JSON.parse(body)); return send(200, "text/plain", "ok"); }
    if (req.method === "POST" && path === "/log") { logs.push(body); return send(200, "text/plain", "ok"); }
    if (path === "/") return send(200, "text/html; charset=utf-8", page);
    if (path === "/config") return send(200, "application/json", JSON.stringify(config));
    if (path === "/snapshot.json") return send(200, "application/json", snapshot);
    const file = normalize(path).replace(/^\/+/, "");
    if (file.startsWith("dist/") && file.endsWith(".js") && existsSync(join(CLIENT_DIR, file))) {
      return send(200, "text/javascript; charset=utf-8", await readFile(join(CLIENT_DIR, file)));
    }
    send(404, "text/plain", "not here");
  });
  await new Promise((r) => server.listen(0, "127.0.0.1", r));
  const profile = await mkdtemp(join(tmpdir(), "s3kv-js-chromium-"));
  const chromium = spawn(CHROMIUM, [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-background-networking",
    "--disable-component-update", "--no-first-run", "--disable-sync", "--no-proxy-server", `--user-data-dir=${profile}`,
    `http://127.0.0.1:${server.address().port}/`,
  ], { stdio: ["ignore", "ignore", "pipe"], detached: true });
  let stderr = "";
  chromium.stderr.setEncoding("utf8").on("data", (c) => { stderr = (stderr + c).slice(-4000); });
  const exited = new Promise((r) => chromium.once("exit", r));
  try {
    const outcome = await Promise.race([
      result,
      exited.then((code) => ({ exited: code })),
      new Promise((r) => setTimeout(() => r({ timedOut: true }), 180_000).unref()),
    ]);
    assert.ok(outcome.checks, `no result from the page: ${JSON.stringify(outcome)}\npage errors: ${logs.join("\n")}\nchromium: ${stderr}`);
    const failed = outcome.checks.filter((c) => !c.ok);
    assert.deepEqual(failed, [], `in ${outcome.userAgent}; page errors: ${logs.join("\n")}`);
    assert.deepEqual(outcome.checks.map((c) => c.name), [
      "a miss is the default",
      "a revalidation is a 304 and keeps the exact text",
      "the browser sent If-None-Match and saw the 304",
      "a change arrives over push, exact",
      "a keyless client reads the public prefix",
      "a keyless client gets the default outside it",
      "unreachable, a snapshot fetched relative to the page is served stale and exact",
    ]);
  } finally {
    // Asked first, so the browser reaps its own helpers; then its process group (started here, and only it).
    chromium.kill("SIGTERM");
    await Promise.race([exited, new Promise((r) => setTimeout(r, 10_000).unref())]);
    try { process.kill(-chromium.pid, "SIGKILL"); } catch { /* all gone */ }
    await exited;
    server.close();
    await rm(profile, { recursive: true, force: true });
  }
});
