// Export and import of a subtree in `s3kv export`'s format (one object, key → value), so a file moves between the
// console and the CLI either way. Values travel as the exact text stored; an import checks every key and value
// first (dry runs: the schemas too) and writes nothing if one is bad, as `s3kv import` does.

import * as api from "./api.js";
import { h } from "./dom.js";
import { members } from "./json.js";
import { canWrite, confirm, keyProblem, prompt, showError, status } from "./ui.js";

export async function exportPrefix(initial: string): Promise<void> {
  const prefix = await prompt("Export every item whose key starts with (empty: everything):", initial, () => null);
  if (prefix === null) return;
  try {
    status(`Exporting ${prefix || "everything"}…`);
    const keys = (await api.list(prefix)).map((item) => item.key);
    const parts: string[] = [];
    for (let i = 0; i < keys.length; i += 100) {
      for (const item of await api.batchGet(keys.slice(i, i + 100))) {
        if (item.value !== null) parts.push(`  ${JSON.stringify(item.key)}: ${item.value}`);
      }
    }
    const text = parts.length === 0 ? "{}\n" : `{\n${parts.join(",\n")}\n}\n`;
    const link = h("a", {
      href: URL.createObjectURL(new Blob([text], { type: "application/json" })),
      download: `s3kv-export${prefix ? "-" + prefix.replace(/[^A-Za-z0-9._-]+/g, "_") : ""}.json`,
    });
    document.body.append(link);
    link.click();
    link.remove();
    status(`Exported ${parts.length} item${parts.length === 1 ? "" : "s"} under ${prefix || "(everything)"}`);
  } catch (error) {
    showError(error, "export");
  }
}

export async function importFile(file: File, written: (key: string) => void): Promise<void> {
  let entries: Array<[string, string]>;
  try {
    entries = members(await file.text());
  } catch (error) {
    showError(error, `${file.name} is not an export`);
    return;
  }
  // `s3kv export --snapshot` files are one object too; imported as an export, their `format`, `version` and
  // `items` members would become items.
  if (entries.some(([key, value]) => key === "format" && value === '"s3kv-snapshot"')) {
    showError(new Error(`${file.name} is a snapshot (s3kv export --snapshot), not an export; nothing imported`));
    return;
  }
  const problems: string[] = [];
  for (const [key] of entries) {
    const problem = keyProblem(key) ?? (canWrite(key) ? null : "this API key may not write it");
    if (problem !== null) problems.push(`${key}: ${problem}`);
  }
  try {
    status(`Checking ${entries.length} items against their schemas…`);
    for (const [key, value] of entries) {
      if (problems.length >= 20) break;
      const check = await api.dryRun(key, value);
      if (!check.valid) {
        const first = check.violations[0];
        problems.push(`${key}: ${first ? `${first.path || "/"} ${first.message}` : check.message}`);
      }
    }
  } catch (error) {
    showError(error, "checking the import");
    return;
  }
  if (problems.length > 0) {
    status("");
    showError(new Error(`nothing imported; ${problems.length} problem(s): ${problems.slice(0, 5).join("; ")}`));
    return;
  }
  const list = h("ul", { class: "keys" }, entries.slice(0, 10).map(([key]) => h("li", {}, key)));
  if (entries.length > 10) list.append(h("li", {}, `… and ${entries.length - 10} more`));
  const ok = await confirm(
    `Write ${entries.length} item${entries.length === 1 ? "" : "s"} from ${file.name}? Existing items are replaced (their old values stay in the history).`,
    "Import",
    list,
  );
  if (!ok) {
    status("");
    return;
  }
  let done = 0;
  try {
    for (const [key, value] of entries) {
      await api.put(key, value, null);
      written(key);
      done++;
      status(`Imported ${done} of ${entries.length}…`);
    }
    status(`Imported ${done} item${done === 1 ? "" : "s"} from ${file.name}`);
  } catch (error) {
    showError(error, `import stopped after ${done} of ${entries.length}`);
  }
}
