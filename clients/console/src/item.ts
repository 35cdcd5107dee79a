// One item: its value (pretty-printed, with ETag, writer and time), the editor, and the history tab. The editor
// checks as you type (JSON locally, then the prefix's schema with a dry run), saves only over the version it was
// opened on (If-Match), and when someone wrote in between shows yours against theirs and writes nothing.

import * as api from "./api.js";
import { diffView } from "./diffview.js";
import { byId, h, time } from "./dom.js";
import { History } from "./history.js";
import { pretty, syntaxError } from "./json.js";
import { canWrite, confirm, gate, onPermissions, showError, status, whyNot } from "./ui.js";

export type Tab = "value" | "edit" | "history";

export class ItemView {
  key: string | null = null;
  /** What the editor started from: the stored item, or null when creating (or the item is deleted). */
  private base: api.Item | null = null;
  private creating = false;
  private checking: AbortController | null = null;
  private checkTimer: number | undefined;
  private valid = false;
  private tab: Tab = "value";
  private readonly history: History;
  private readonly editor = byId<HTMLTextAreaElement>("editor");

  constructor(private readonly changed: (key: string, exists: boolean) => void) {
    this.history = new History(() => void this.reload("value"));
    this.editor.addEventListener("input", () => this.edited());
    this.editor.addEventListener("keydown", (event) => {
      if ((event.ctrlKey || event.metaKey) && event.key === "s") {
        event.preventDefault();
        void this.save();
      }
    });
    byId("save").addEventListener("click", () => void this.save());
    byId("revert").addEventListener("click", () => this.revert());
    byId("delete").addEventListener("click", () => void this.remove());
    byId("conflict-rebase").addEventListener("click", () => this.rebase());
    byId("conflict-discard").addEventListener("click", () => void this.reload("edit"));
    for (const tab of ["value", "edit", "history"] as const) {
      byId(`tab-${tab}`).addEventListener("click", () => this.show(tab));
    }
    byId("tablist").addEventListener("keydown", (event) => {
      const order: Tab[] = ["value", "edit", "history"];
      const at = order.indexOf(this.tab);
      const to = event.key === "ArrowRight" ? at + 1 : event.key === "ArrowLeft" ? at - 1 : null;
      if (to === null) return;
      const next = order[(to + order.length) % order.length] ?? "value";
      this.show(next);
      byId(`tab-${next}`).focus();
      event.preventDefault();
    });
    onPermissions(() => this.gateAll());
  }

  /** Opens `key`; `creating` starts an editor on `{}` that only creates. */
  async open(key: string, creating = false): Promise<void> {
    if (this.dirty() && key !== this.key) {
      const leave = await confirm(`Discard your unsaved edit of ${this.key}?`, "Discard");
      if (!leave) return;
    }
    this.key = key;
    this.creating = creating;
    status("");
    byId("empty").hidden = true;
    byId("item").hidden = false;
    byId("item-key").textContent = key;
    if (creating) {
      this.base = null;
      this.renderMeta();
      byId("value").textContent = "(new item, not saved yet)";
      this.editor.value = "{\n  \n}";
      this.hideConflict();
      this.show("edit");
      this.edited();
      this.editor.focus();
      return;
    }
    await this.reload(this.tab === "history" ? "history" : "value");
  }

  /** Reads the item again from S3 and shows `tab`; the editor starts over from what is stored. */
  async reload(tab: Tab = this.tab): Promise<void> {
    const key = this.key;
    if (key === null) return;
    let item: api.Item | null;
    try {
      item = await api.get(key);
    } catch (error) {
      showError(error, `reading ${key}`);
      return;
    }
    if (this.key !== key) return;
    this.base = item;
    this.creating = false;
    this.renderMeta();
    byId("value").textContent = item === null ? "This item is deleted (or was never written). Its history may bring it back." : pretty(item.text);
    this.editor.value = item === null ? "" : pretty(item.text);
    this.hideConflict();
    byId("stale").hidden = true;
    this.changed(key, item !== null);
    this.show(tab);
    this.edited();
  }

  show(tab: Tab): void {
    this.tab = tab;
    for (const name of ["value", "edit", "history"] as const) {
      const selected = name === tab;
      byId(`tab-${name}`).setAttribute("aria-selected", String(selected));
      byId(`tab-${name}`).tabIndex = selected ? 0 : -1;
      byId(`panel-${name}`).hidden = !selected;
    }
    if (tab === "history" && this.key !== null && !this.creating) void this.history.show(this.key);
  }

  /** A change to `key` from someone else (live updates): shown at once unless the editor holds unsaved work. */
  async external(key: string): Promise<void> {
    if (key !== this.key || this.creating) return;
    const stored = await api.get(key).catch(() => undefined);
    if (stored === undefined || this.key !== key) return;
    if (stored?.etag === this.base?.etag) return;
    if (this.dirty()) {
      byId("stale").hidden = false;
    } else {
      await this.reload();
      status(`${key} was changed by someone else; showing the new value`);
    }
  }

  private dirty(): boolean {
    if (this.key === null) return false;
    if (this.creating) return true;
    return this.editor.value !== (this.base === null ? "" : pretty(this.base.text));
  }

  private renderMeta(): void {
    const item = this.base;
    const rows: Array<[string, string, string]> = item === null
      ? [["State", this.creating ? "new" : "deleted", "meta-state"]]
      : [
          ["ETag", item.etag, "meta-etag"],
          ["Written by", item.writer ?? "unknown", "meta-writer"],
          ["Last modified", time(item.lastModified), "meta-modified"],
          ["Size", `${new TextEncoder().encode(item.text).length} bytes`, "meta-size"],
        ];
    byId("item-meta").replaceChildren(...rows.flatMap(([name, value, id]) => [h("dt", {}, name), h("dd", { id }, value)]));
    this.gateAll();
  }

  private gateAll(): void {
    const key = this.key ?? "";
    gate(this.editor, key);
    gate(byId<HTMLButtonElement>("delete"), key, this.base === null);
    gate(byId<HTMLButtonElement>("revert"), key);
    gate(byId<HTMLButtonElement>("conflict-rebase"), key);
    this.gateSave();
    for (const button of document.querySelectorAll<HTMLButtonElement>("#history button.restore")) {
      gate(button, key, button.closest(".version")?.classList.contains("deleted") ?? false);
    }
  }

  private gateSave(): void {
    gate(byId<HTMLButtonElement>("save"), this.key ?? "", !this.valid || !this.dirty());
  }

  /** As you type: JSON first (instant, here), then the schema (a dry run, a moment after typing stops). */
  private edited(): void {
    const box = byId("validation");
    this.checking?.abort();
    window.clearTimeout(this.checkTimer);
    const text = this.editor.value;
    const key = this.key;
    const problem = syntaxError(text);
    if (key === null) return;
    if (problem !== null) {
      this.valid = false;
      box.className = "invalid";
      box.replaceChildren(h("strong", {}, "Not valid JSON: "), problem);
      this.gateSave();
      return;
    }
    if (!canWrite(key)) {
      this.valid = false;
      box.className = "readonly";
      box.textContent = `${whyNot(key)}: the editor is read-only.`;
      this.gateSave();
      return;
    }
    this.valid = true;
    box.className = "pending";
    box.textContent = "Checking against the schema…";
    this.gateSave();
    this.checkTimer = window.setTimeout(() => {
      const controller = new AbortController();
      this.checking = controller;
      api
        .dryRun(key, text, controller.signal)
        .then((check) => {
          if (controller.signal.aborted || this.key !== key) return;
          this.valid = check.valid;
          this.renderCheck(check);
          this.gateSave();
        })
        .catch((error: unknown) => {
          if (error instanceof DOMException && error.name === "AbortError") return;
          box.className = "";
          box.textContent = "";
          showError(error, "checking the value");
        });
    }, 250);
  }

  private renderCheck(check: api.Check): void {
    const box = byId("validation");
    const schema = check.schema === null ? "no schema governs this key" : `schema ${check.schema}`;
    if (check.valid) {
      box.className = "valid";
      box.textContent = `Valid (${schema})`;
      return;
    }
    box.className = "invalid";
    box.replaceChildren(h("strong", {}, check.violations.length > 0 ? `Breaks ${schema}:` : check.message));
    if (check.violations.length > 0) {
      box.append(
        h("ul", { id: "violations" }, check.violations.map((v) => h("li", {}, h("code", {}, v.path || "/"), " ", v.message))),
      );
    }
  }

  private revert(): void {
    this.editor.value = this.base === null ? (this.creating ? "{\n  \n}" : "") : pretty(this.base.text);
    this.hideConflict();
    this.edited();
  }

  async save(): Promise<void> {
    const key = this.key;
    if (key === null || !canWrite(key) || !this.valid || !this.dirty()) return;
    const text = this.editor.value;
    const condition: { ifMatch: string } | { create: true } =
      this.base === null ? { create: true } : { ifMatch: this.base.etag };
    try {
      const saved = await api.put(key, text, condition);
      if (!saved.ok) {
        await this.conflict(key, text);
        return;
      }
      status(`Saved ${key}`);
      await this.reload("value");
    } catch (error) {
      if (error instanceof api.ApiError && error.status === 422) {
        const body = error.body;
        this.valid = false;
        this.renderCheck({
          valid: false,
          schema: typeof body["schema"] === "string" ? body["schema"] : null,
          message: error.message,
          violations: Array.isArray(body["violations"]) ? (body["violations"] as api.Violation[]) : [],
        });
        this.gateSave();
        return;
      }
      showError(error, `saving ${key}`);
    }
  }

  /** Someone wrote first: nothing was written; show theirs against yours and let the person choose. */
  private async conflict(key: string, yours: string): Promise<void> {
    let theirs: api.Item | null;
    try {
      theirs = await api.get(key);
    } catch (error) {
      showError(error, `reading ${key} after a conflict`);
      return;
    }
    this.pendingTheirs = theirs;
    const who = theirs === null ? "deleted it" : `wrote it (${theirs.writer ?? "unknown writer"}, ${time(theirs.lastModified)})`;
    byId("conflict-text").textContent =
      `Someone ${who} after you opened it, so nothing was written. Your edit is still in the editor: ` +
      "compare, then keep editing on top of their version, or discard yours.";
    // Both pretty-printed, so the diff shows what differs rather than how each was laid out.
    byId("conflict-diff").replaceChildren(
      diffView(theirs === null ? "" : pretty(theirs.text), pretty(yours), "theirs (stored now)", "yours (not saved)"),
    );
    byId("conflict").hidden = false;
    byId("conflict-rebase").focus();
  }

  private pendingTheirs: api.Item | null = null;

  /** Keeps your text and makes their version the one a save replaces: the next save is a deliberate overwrite. */
  private rebase(): void {
    this.base = this.pendingTheirs;
    this.creating = false;
    this.renderMeta();
    if (this.base !== null) byId("value").textContent = pretty(this.base.text);
    this.hideConflict();
    this.edited();
    status("Your edit now applies on top of their version; save when ready");
  }

  private hideConflict(): void {
    byId("conflict").hidden = true;
    byId("conflict-diff").replaceChildren();
  }

  private async remove(): Promise<void> {
    const key = this.key;
    const base = this.base;
    if (key === null || base === null || !canWrite(key)) return;
    const ok = await confirm(`Delete ${key}? Its versions stay in the history, where Undelete brings it back.`, "Delete");
    if (!ok) return;
    try {
      const done = await api.remove(key, base.etag);
      if (!done.ok) {
        showError(new Error(`${key} changed since you opened it; nothing was deleted. Look at it again first.`));
        await this.reload();
        return;
      }
      status(`Deleted ${key}`);
      await this.reload("history");
    } catch (error) {
      showError(error, `deleting ${key}`);
    }
  }
}
