// A cached `get`, against baselines measured in the same run: a Map lookup, the same lookup awaited (the floor for
// any Promise-returning read), and Promise.resolve of it. The client's fetch answers in-process and is counted: the
// timed loops must make no request at all. Usage: `npm run bench` (builds first), or `node bench/get.mjs [N]`.
import { createClient } from "../dist/index.js";

const N = Number(process.argv[2] ?? 2_000_000);
const RUNS = 7;

let requests = 0;
const fetch = async () => {
  requests++;
  return new Response('{"enabled": true, "percent": 10}', { status: 200, headers: { etag: '"e1"' } });
};
const client = createClient({ endpoint: "http://s3kv.invalid", apiKey: "bench-key-0123456789", fetch, maxAgeMs: Infinity });
const fallback = { enabled: false, percent: 0 };
await client.get("flags/checkout", fallback); // the one request: fills the cache
// With the default maxAgeMs (1000): each read looks at the clock, and one a second revalidates (an in-process 304).
let revalidations = 0;
const defaults = createClient({
  endpoint: "http://s3kv.invalid", apiKey: "bench-key-0123456789",
  fetch: async (_url, init) => {
    const tag = new Headers(init?.headers).get("if-none-match");
    if (tag === null) return fetch();
    revalidations++;
    return new Response(null, { status: 304, headers: { etag: tag } });
  },
});
await defaults.get("flags/checkout", fallback);
const map = new Map([["flags/checkout", { enabled: true, percent: 10 }]]);

const cases = {
  "Map.get (sync)": async () => { let n = 0; for (let i = 0; i < N; i++) n += map.get("flags/checkout").percent; return n; },
  "await Map.get": async () => { let n = 0; for (let i = 0; i < N; i++) n += (await map.get("flags/checkout")).percent; return n; },
  "await Promise.resolve(Map.get)": async () => {
    let n = 0;
    for (let i = 0; i < N; i++) n += (await Promise.resolve(map.get("flags/checkout"))).percent;
    return n;
  },
  "await client.get (cached)": async () => {
    let n = 0;
    for (let i = 0; i < N; i++) n += (await client.get("flags/checkout", fallback)).percent;
    return n;
  },
  "await client.get (cached, default maxAgeMs 1000)": async () => {
    let n = 0;
    for (let i = 0; i < N; i++) n += (await defaults.get("flags/checkout", fallback)).percent;
    return n;
  },
  "await client.getDetailed (cached)": async () => {
    let n = 0;
    for (let i = 0; i < N; i++) n += (await client.getDetailed("flags/checkout", fallback)).value.percent;
    return n;
  },
};

const results = {};
for (const [name, run] of Object.entries(cases)) await run(); // warm up every case before timing any
for (let r = 0; r < RUNS; r++) {
  // Interleaved, so drift (CPU frequency, other load) touches every case alike.
  for (const [name, run] of Object.entries(cases)) {
    const start = process.hrtime.bigint();
    const sum = await run();
    const ns = Number(process.hrtime.bigint() - start) / N;
    if (sum !== 10 * N) throw new Error(`${name}: wrong values (${sum})`);
    (results[name] ??= []).push(ns);
  }
}
if (requests !== 2) throw new Error(`the cached reads made ${requests - 2} requests`);

const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const base = median(results["await Map.get"]);
console.log(`node ${process.version}, ${N.toLocaleString("en")} reads x ${RUNS} runs, median ns per read`);
console.log(`requests: 1 fill per client; the maxAgeMs 1000 client revalidated ${revalidations} times (304s, in-process)`);
console.log("| read | median ns | min ns | max ns | vs await Map.get |");
console.log("| --- | ---: | ---: | ---: | ---: |");
for (const [name, xs] of Object.entries(results)) {
  const m = median(xs);
  console.log(`| ${name} | ${m.toFixed(1)} | ${Math.min(...xs).toFixed(1)} | ${Math.max(...xs).toFixed(1)} | ${(m / base).toFixed(2)}x |`);
}
