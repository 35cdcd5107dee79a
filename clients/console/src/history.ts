// An item's history: every version newest first (who, when, how big), any two of them compared, and any one
// made current again (restore), which also undeletes. Versions are read once each and kept: they never change.

import * as api from "./api.js";
import { diffView } from "./diffview.js";
import { byId, h, size, time } from "./dom.js";
import { pretty } from "./json.js";
import { canWrite, confirm, gate, showError, status } from "./ui.js";

const texts = new Map<string, string>();

async function versionText(key: string, version: string): Promise<string> {
  const cacheKey = `${key}\u0000${version}`;
  const known = texts.get(cacheKey);
  if (known !== undefined) return known;
  const item = await api.get(key, version);
  const text = item === null ? "" : pretty(item.text);
  texts.set(cacheKey, text);
  return text;
}

export class History {
  private key = "";
  private list: api.Version[] = [];
  private a: string | null = null;
  private b: string | null = null;

  constructor(private readonly restored: () => void) {}

  async show(key: string): Promise<void> {
    this.key = key;
    const list = byId("history");
    list.replaceChildren(h("li", { class: "loading" }, "Loading history…"));
    byId("history-diff").replaceChildren();
    try {
      this.list = await api.versions(key);
    } catch (error) {
      list.replaceChildren();
      showError(error, `history of ${key}`);
      return;
    }
    if (this.key !== key) return;
    const readable = this.list.filter((v) => !v.deleted);
    this.b = readable[0]?.version ?? null;
    this.a = readable[1]?.version ?? null;
    this.render();
    await this.compare();
  }

  private render(): void {
    const deletedNow = this.list[0]?.deleted ?? true;
    const rows = this.list.map((version, index) => {
      const restore = h(
        "button",
        { class: "restore", type: "button", "data-version": version.version },
        deletedNow ? "Undelete" : "Restore",
      );
      gate(restore, this.key, version.current || version.deleted);
      restore.addEventListener("click", () => void this.restore(version));
      const pick = (side: "a" | "b"): HTMLInputElement => {
        const input = h("input", {
          type: "radio",
          name: `diff-${side}`,
          class: `pick-${side}`,
          value: version.version,
          "aria-label": `compare ${side === "a" ? "from" : "to"} the version of ${time(version.lastModified)}`,
          disabled: version.deleted,
          checked: (side === "a" ? this.a : this.b) === version.version,
        });
        input.addEventListener("change", () => {
          if (side === "a") this.a = version.version;
          else this.b = version.version;
          void this.compare();
        });
        return input;
      };
      return h(
        "li",
        { class: "version" + (version.deleted ? " deleted" : ""), "data-version": version.version, "data-index": index },
        h("span", { class: "picks" }, pick("a"), pick("b")),
        h("time", { datetime: version.lastModified }, time(version.lastModified)),
        h("span", { class: "writer" }, version.deleted ? "deleted" : (version.writer ?? "unknown writer")),
        h("span", { class: "size" }, version.deleted ? "" : size(version.size)),
        version.current ? h("span", { class: "badge" }, "current") : null,
        version.current || version.deleted ? null : restore,
      );
    });
    const head = h(
      "li",
      { class: "head", "aria-hidden": "true" },
      h("span", { class: "picks" }, h("span", {}, "A"), h("span", {}, "B")),
      h("span", {}, "Written"),
      h("span", {}, "By"),
      h("span", { class: "size" }, "Size"),
    );
    const list = byId("history");
    list.replaceChildren(...(rows.length > 0 ? [head, ...rows] : [h("li", {}, "No versions.")]));
  }

  private async compare(): Promise<void> {
    const slot = byId("history-diff");
    const [a, b] = [this.a, this.b];
    if (a === null || b === null) {
      slot.replaceChildren(h("p", {}, "Pick two versions (A and B) to compare."));
      return;
    }
    const key = this.key;
    try {
      const [before, after] = await Promise.all([versionText(key, a), versionText(key, b)]);
      if (this.key !== key || this.a !== a || this.b !== b) return;
      const when = (id: string): string => time(this.list.find((v) => v.version === id)?.lastModified);
      slot.replaceChildren(
        h("h3", {}, `Changes from ${when(a)} (A) to ${when(b)} (B)`),
        diffView(before, after, `A ${when(a)}`, `B ${when(b)}`),
      );
    } catch (error) {
      showError(error, "comparing versions");
    }
  }

  private async restore(version: api.Version): Promise<void> {
    if (!canWrite(this.key)) return;
    const current = this.list[0];
    const ok = await confirm(
      `Make the version of ${time(version.lastModified)} the current value of ${this.key}? The current value stays in the history.`,
      current?.deleted ? "Undelete" : "Restore",
    );
    if (!ok) return;
    try {
      // Only over the version shown as current: a write that slipped in meanwhile is not replaced unseen.
      const ifMatch = current !== undefined && !current.deleted && current.etag !== null ? api.quoted(current.etag) : undefined;
      const done = await api.restore(this.key, version.version, ifMatch);
      if (!done.ok) {
        showError(new Error(`${this.key} changed since the history was read; look again before restoring`));
        await this.show(this.key);
        return;
      }
      status(`Restored ${this.key} to the version of ${time(version.lastModified)}`);
      this.restored();
    } catch (error) {
      showError(error, `restoring ${this.key}`);
    }
  }
}
