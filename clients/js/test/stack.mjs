// What every test here shares: a real s3kv-local of its own (free ports, its own data directory and valkey-server),
// writes from outside the client, a fetch that records every request the client makes, and waiting for a
// condition (never for a time).
import { spawn } from "node:child_process";
import { existsSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

export const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "../../..");
export const CLIENT_DIR = resolve(ROOT, "clients/js");
export const WRITE_KEY = "js-write-key-0123456789";
export const READ_KEY = "js-read-key-0123456789";
export const PUBLIC_PREFIX = "public/";

/** A binary of this workspace: `S3KV_<NAME>_BIN`, else target/debug (scripts/test builds both first). */
export function binary(name) {
  const env = `S3KV_${name.toUpperCase().replace(/-/g, "_")}_BIN`;
  const path = process.env[env] ?? join(process.env.CARGO_TARGET_DIR ?? join(ROOT, "target"), "debug", name);
  if (!existsSync(path)) {
    throw new Error(`${path} is missing: build it (cargo build -p ${name === "s3kv" ? "s3kv-cli" : name}; scripts/test does), or set ${env}`);
  }
  return path;
}

/** Starts s3kv-local on free ports; resolves once its banner says where it listens. */
export async function startStack(name) {
  const dir = await mkdtemp(join(tmpdir(), `s3kv-js-${name}-`));
  const args = [
    "--api-addr", "127.0.0.1:0", "--s3-addr", "127.0.0.1:0", "--data-dir", join(dir, "data"),
    "--api-key", WRITE_KEY, "--read-key", READ_KEY, "--public-prefix", PUBLIC_PREFIX,
  ];
  // The repository root as working directory: without S3KV_VALKEY_SERVER, s3kv-local finds .venv's valkey-server.
  const child = spawn(binary("s3kv-local"), args, {
    cwd: ROOT,
    env: { ...process.env, RUST_LOG: process.env.RUST_LOG ?? "warn" },
    stdio: ["ignore", "pipe", "pipe"],
  });
  let output = "";
  const exited = new Promise((done) => child.once("exit", (code, signal) => done({ code, signal })));
  const endpoint = await new Promise((found, failed) => {
    const look = (chunk) => {
      output += chunk;
      const api = /API\s+(http:\/\/127\.0\.0\.1:\d+)\/items/.exec(output);
      if (api) found(api[1]);
    };
    child.stdout.setEncoding("utf8").on("data", look);
    child.stderr.setEncoding("utf8").on("data", (chunk) => { output += chunk; });
    exited.then(({ code, signal }) => failed(new Error(`s3kv-local exited (${code ?? signal}) before it was ready:\n${output}`)));
  });
  return {
    endpoint,
    dir,
    get output() { return output; },
    /** Kills it outright (its valkey-server dies with it): the API is simply gone, as in an outage. */
    async kill() {
      if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
      await exited;
    },
    async stop() {
      await this.kill();
      await rm(dir, { recursive: true, force: true });
    },
    /** A write through the API from outside the client under test; resolves to its ETag. */
    async put(key, text) {
      const response = await fetch(`${endpoint}/items/${key}`, {
        method: "PUT", headers: { "x-api-key": WRITE_KEY, "content-type": "application/json" }, body: text,
      });
      const body = await response.text();
      if (!response.ok) throw new Error(`PUT ${key}: ${response.status} ${body}`);
      return JSON.parse(body).etag;
    },
    async del(key) {
      const response = await fetch(`${endpoint}/items/${key}`, { method: "DELETE", headers: { "x-api-key": WRITE_KEY } });
      if (!response.ok && response.status !== 404) throw new Error(`DELETE ${key}: ${response.status}`);
    },
    /** Resolves once a plain read answers this ETag (the cache has synced the write), so a test never races it. */
    async synced(key, etag) {
      await until(async () => {
        const response = await fetch(`${endpoint}/items/${key}`, { headers: { "x-api-key": WRITE_KEY } });
        await response.text();
        return etag === null ? response.status === 404 : response.headers.get("etag") === `"${etag}"`;
      }, `${key} served at ${etag}`);
    },
  };
}

/** Polls `check` until it is true; fails with `what` after a deadline far beyond any healthy run. */
export async function until(check, what, deadlineMs = 60_000) {
  const end = Date.now() + deadlineMs;
  for (;;) {
    if (await check()) return;
    if (Date.now() > end) throw new Error(`gave up waiting: ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** A fetch that records what the client asked and what it got. */
export function recordingFetch() {
  const requests = [];
  const recorded = async (url, init = {}) => {
    const headers = new Headers(init.headers);
    const entry = {
      method: init.method ?? "GET",
      path: new URL(url).pathname + new URL(url).search,
      ifNoneMatch: headers.get("if-none-match"),
      apiKey: headers.get("x-api-key"),
      status: null,
    };
    requests.push(entry);
    try {
      const response = await fetch(url, init);
      entry.status = response.status;
      return response;
    } catch (error) {
      entry.status = "failed";
      throw error;
    }
  };
  return { fetch: recorded, requests };
}

/** Runs a program to its end; rejects with its output when it fails. */
export function run(program, args, options = {}) {
  return new Promise((done, failed) => {
    const child = spawn(program, args, { stdio: ["ignore", "pipe", "pipe"], ...options });
    let stdout = "";
    let stderr = "";
    child.stdout.setEncoding("utf8").on("data", (c) => { stdout += c; });
    child.stderr.setEncoding("utf8").on("data", (c) => { stderr += c; });
    child.on("error", failed);
    child.on("exit", (code) => {
      if (code === 0) done({ stdout, stderr });
      else failed(new Error(`${program} ${args.join(" ")} exited ${code}:\n${stdout}\n${stderr}`));
    });
  });
}
