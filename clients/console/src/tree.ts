// The key tree: keys split on `/` into folders, folders opened and closed by click or arrow keys (the WAI-ARIA
// tree pattern, one tab stop, arrows inside), narrowed by the search box. It is rebuilt from a sorted key set
// on every change: a few thousand keys render in milliseconds, and one code path cannot drift.

import { h } from "./dom.js";

interface Folder {
  prefix: string;
  folders: Map<string, Folder>;
  keys: string[];
}

export class Tree {
  private readonly keys = new Set<string>();
  private readonly expanded = new Set<string>();
  private filter = "";
  /** The item open on the right, highlighted here. */
  private selected: string | null = null;
  /** The row that has the tab stop: a key, or a folder's prefix. */
  private focusId: string | null = null;
  /** The folder last picked, for export's default prefix. */
  selectedFolder = "";

  constructor(
    private readonly root: HTMLElement,
    private readonly open: (key: string) => void,
  ) {
    root.addEventListener("keydown", (event) => this.key(event));
  }

  setKeys(keys: Iterable<string>): void {
    this.keys.clear();
    for (const key of keys) this.keys.add(key);
    this.render();
  }

  add(key: string): void {
    if (this.keys.has(key)) return;
    this.keys.add(key);
    this.render();
  }

  delete(key: string): void {
    if (this.keys.delete(key)) this.render();
  }

  has(key: string): boolean {
    return this.keys.has(key);
  }

  all(): string[] {
    return [...this.keys].sort();
  }

  setFilter(text: string): void {
    this.filter = text.toLowerCase();
    this.render();
  }

  select(key: string | null): void {
    this.selected = key;
    if (key !== null) {
      // Open the folders down to it, so the open item is always visible.
      const parts = key.split("/");
      for (let i = 1; i < parts.length; i++) this.expanded.add(parts.slice(0, i).join("/") + "/");
      this.focusId = key;
    }
    this.render();
  }

  focus(): void {
    const row = this.root.querySelector<HTMLElement>('[tabindex="0"]');
    row?.focus();
  }

  private build(): Folder {
    const root: Folder = { prefix: "", folders: new Map(), keys: [] };
    for (const key of [...this.keys].sort()) {
      if (this.filter !== "" && !key.toLowerCase().includes(this.filter)) continue;
      const parts = key.split("/");
      let folder = root;
      for (let i = 0; i < parts.length - 1; i++) {
        const name = parts[i] ?? "";
        let next = folder.folders.get(name);
        if (next === undefined) {
          next = { prefix: folder.prefix + name + "/", folders: new Map(), keys: [] };
          folder.folders.set(name, next);
        }
        folder = next;
      }
      folder.keys.push(key);
    }
    return root;
  }

  render(): void {
    const root = this.build();
    const rows: HTMLElement[] = [];
    const searching = this.filter !== "";
    const walk = (folder: Folder, depth: number): HTMLElement[] => {
      const children: HTMLElement[] = [];
      for (const [name, sub] of folder.folders) {
        const open = searching || this.expanded.has(sub.prefix);
        const row = h(
          "li",
          {
            role: "treeitem",
            "aria-expanded": String(open),
            "aria-level": depth,
            "data-prefix": sub.prefix,
            class: "folder" + (this.selectedFolder === sub.prefix ? " picked" : ""),
          },
          h("span", { class: "label" }, h("span", { class: "twisty", "aria-hidden": "true" }, open ? "▾" : "▸"), name + "/"),
        );
        row.addEventListener("click", (event) => {
          event.stopPropagation();
          this.toggle(sub.prefix);
        });
        rows.push(row);
        if (open) row.append(h("ul", { role: "group" }, walk(sub, depth + 1)));
        children.push(row);
      }
      for (const key of folder.keys) {
        const name = key.slice(folder.prefix.length);
        const row = h(
          "li",
          {
            role: "treeitem",
            "aria-level": depth,
            "aria-selected": String(key === this.selected),
            "data-key": key,
            class: "leaf",
          },
          h("span", { class: "label" }, name),
        );
        row.addEventListener("click", (event) => {
          event.stopPropagation();
          this.focusId = key;
          this.open(key);
        });
        rows.push(row);
        children.push(row);
      }
      return children;
    };
    const top = walk(root, 1);
    if (top.length === 0) {
      top.push(h("li", { class: "none" }, this.keys.size === 0 ? "No items yet" : "No key matches"));
    }
    const hadFocus = this.root.contains(document.activeElement);
    this.root.replaceChildren(...top);
    // One tab stop: the focused row if still shown, else the first.
    const ids = rows.map((row) => row.dataset["key"] ?? row.dataset["prefix"] ?? "");
    const index = Math.max(0, this.focusId === null ? 0 : ids.indexOf(this.focusId));
    rows.forEach((row, i) => (row.tabIndex = i === index ? 0 : -1));
    if (hadFocus) rows[index]?.focus();
  }

  private toggle(prefix: string): void {
    if (this.expanded.has(prefix)) this.expanded.delete(prefix);
    else this.expanded.add(prefix);
    this.focusId = prefix;
    this.selectedFolder = prefix;
    this.render();
  }

  private visible(): HTMLElement[] {
    return [...this.root.querySelectorAll<HTMLElement>('[role="treeitem"]')];
  }

  private key(event: KeyboardEvent): void {
    const rows = this.visible();
    const current = document.activeElement as HTMLElement | null;
    const index = current === null ? -1 : rows.indexOf(current);
    if (index < 0) return;
    const row = rows[index];
    if (row === undefined) return;
    const prefix = row.dataset["prefix"];
    const key = row.dataset["key"];
    const move = (to: number): void => {
      const target = rows[Math.min(rows.length - 1, Math.max(0, to))];
      if (target === undefined) return;
      rows.forEach((r) => (r.tabIndex = -1));
      target.tabIndex = 0;
      target.focus();
      this.focusId = target.dataset["key"] ?? target.dataset["prefix"] ?? null;
    };
    switch (event.key) {
      case "ArrowDown":
        move(index + 1);
        break;
      case "ArrowUp":
        move(index - 1);
        break;
      case "Home":
        move(0);
        break;
      case "End":
        move(rows.length - 1);
        break;
      case "ArrowRight":
        if (prefix !== undefined && row.getAttribute("aria-expanded") === "false") this.toggle(prefix);
        else if (prefix !== undefined) move(index + 1);
        break;
      case "ArrowLeft":
        if (prefix !== undefined && row.getAttribute("aria-expanded") === "true" && this.filter === "") {
          this.toggle(prefix);
        } else {
          const parent = row.parentElement?.closest<HTMLElement>('[role="treeitem"]');
          if (parent) move(rows.indexOf(parent));
        }
        break;
      case "Enter":
      case " ":
        if (prefix !== undefined) this.toggle(prefix);
        else if (key !== undefined) this.open(key);
        break;
      default:
        return;
    }
    event.preventDefault();
  }
}
