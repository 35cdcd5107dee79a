// cutValues: values' exact text out of a larger JSON document, whatever their strings hold.
import assert from "node:assert/strict";
import { test } from "node:test";

import { parseSnapshot } from "../dist/index.js";
import { cutValues } from "../dist/raw.js";

test("each value's text is cut out exactly, brackets, quotes and escapes inside strings included", () => {
  const values = [
    '{"a": "}]\\"{[", "b": [1, {"c": "\\\\"}]}',
    "1e400",
    "-0",
    '"\\ud800 \\u00e9 é"',
    "[ ]",
    "{}",
    "null",
    '  {"x" :  [ 1 ,2 ] }  '.trim(),
  ];
  const text = `{"skip": {"value": "not this"}, "items": [${values.map((v, i) => `{"key": "k${i}", "value": ${v}, "after": "]}"}`).join(" ,\n ")}]}`;
  JSON.parse(text); // the walker's precondition
  const cut = [];
  cutValues(
    text,
    (path) => (path.length < 2 ? (path.length === 0 || path[0] === "items" ? "descend" : "skip") : path.length === 2 ? "descend" : path[2] === "value" ? "take" : "skip"),
    (path, raw) => cut.push([path[1], raw]),
  );
  assert.deepEqual(cut, values.map((v, i) => [i, v]));
});

test("a snapshot's values keep their text; its keys may hold anything JSON allows", () => {
  const text = '{"format":"s3kv-snapshot","version":1,"exportedAt":"2026-12-07T00:00:00Z","items":{"a\\"b/c":{"etag":"e","value":[1e400, "x"]},"d":{"value":{"k": -0},"etag":null}}}';
  const snapshot = parseSnapshot(text);
  assert.equal(snapshot.prefix, "");
  assert.deepEqual([...snapshot.items.entries()].map(([k, v]) => [k, v.text, v.etag]), [
    ['a"b/c', '[1e400, "x"]', "e"],
    ["d", '{"k": -0}', null],
  ]);
});
