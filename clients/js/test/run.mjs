// `npm test`: node's test runner over test/*.test.mjs. On Node 20 and 21 the WebSocket global needs
// --experimental-websocket (Node 22 has it by default); with neither, push tests say they are skipped.
import { spawn } from "node:child_process";
import { readdirSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const dir = dirname(fileURLToPath(import.meta.url));
const files = process.argv.slice(2).length > 0
  ? process.argv.slice(2)
  : readdirSync(dir).filter((f) => f.endsWith(".test.mjs")).sort().map((f) => join(dir, f));
const flags = typeof WebSocket === "undefined" && process.allowedNodeEnvironmentFlags.has("--experimental-websocket")
  ? ["--experimental-websocket"]
  : [];
const child = spawn(process.execPath, [...flags, "--test", ...files], { stdio: "inherit" });
child.on("exit", (code, signal) => process.exit(code ?? (signal ? 1 : 0)));
