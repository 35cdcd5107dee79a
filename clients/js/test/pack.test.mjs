// `npm pack` makes a package that installs on its own (no dependencies to fetch) and imports: both entry points,
// with their types, and this README.
import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { mkdir, mkdtemp, readdir, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";

import { CLIENT_DIR, run } from "./stack.mjs";

const npm = process.platform === "win32" ? "npm.cmd" : "npm";

test("npm pack yields a package that installs offline and imports", async () => {
  const dir = await mkdtemp(join(tmpdir(), "s3kv-js-pack-"));
  try {
    // --ignore-scripts: dist/ is already built by `npm test` (prepack would rebuild it, racing other tests' reads).
    const packed = await run(npm, ["pack", "--ignore-scripts", "--json", "--pack-destination", dir], { cwd: CLIENT_DIR });
    const [{ filename, files }] = JSON.parse(packed.stdout);
    const names = files.map((f) => f.path).sort();
    for (const name of ["README.md", "package.json", "dist/index.js", "dist/index.d.ts", "dist/push.js", "dist/push.d.ts"]) {
      assert.ok(names.includes(name), `${name} not in the package: ${names.join(", ")}`);
    }
    assert.ok(!names.some((n) => n.startsWith("src/") || n.startsWith("test/")), names.join(", "));

    const app = join(dir, "app");
    await mkdir(app);
    await writeFile(join(app, "package.json"), JSON.stringify({ name: "app", private: true, type: "module" }));
    await run(npm, ["install", "--offline", "--no-audit", "--no-fund", "--ignore-scripts", join(dir, filename)], { cwd: app });
    assert.deepEqual(await readdir(join(app, "node_modules")).then((d) => d.filter((n) => !n.startsWith("."))), ["s3kv-client"]);
    assert.ok(existsSync(join(app, "node_modules/s3kv-client/dist/index.d.ts")));
    await writeFile(join(app, "main.mjs"), `
      import { createClient, S3kvError } from "s3kv-client";
      import { subscribe, compareSequencers } from "s3kv-client/push";
      const client = createClient({ endpoint: "http://127.0.0.1:9", apiKey: "k".repeat(20), timeoutMs: 2000 });
      const got = await client.getDetailed("flags/x", "default");
      console.log(JSON.stringify({
        value: got.value, kind: got.error.kind, isError: got.error instanceof S3kvError,
        subscribe: typeof subscribe, order: compareSequencers("0A", "0B"),
      }));
    `);
    // The types: a strict TypeScript consumer compiles against the installed package alone.
    await writeFile(join(app, "check.ts"), `
      import { createClient, type Detailed, type ItemChange } from "s3kv-client";
      import { subscribe, type Change } from "s3kv-client/push";
      const client = createClient({ endpoint: "http://127.0.0.1:9", prefix: "flags/" });
      const flag: Promise<boolean> = client.get("maintenance", false);
      const detail: Promise<Detailed<{ percent: number }>> = client.getDetailed("checkout", { percent: 0 });
      client.subscribe(["beta/"], (change: ItemChange) => change.text?.length);
      const follow = (change: Change): string | null => change.body;
      void [flag, detail, subscribe, follow];
    `);
    await writeFile(join(app, "tsconfig.json"), JSON.stringify({
      compilerOptions: { strict: true, module: "nodenext", moduleResolution: "nodenext", target: "ES2022", noEmit: true, lib: ["ES2022", "DOM"], types: [] },
      files: ["check.ts"],
    }));
    await run(process.execPath, [join(CLIENT_DIR, "node_modules/typescript/bin/tsc"), "-p", app], { cwd: app });

    const out = await run(process.execPath, ["main.mjs"], { cwd: app });
    assert.deepEqual(JSON.parse(out.stdout), { value: "default", kind: "network", isError: true, subscribe: "function", order: -1 });
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});
