// A diff on the page: one line per row, marked and coloured, with words for screen readers (colour alone says
// nothing to them) and long unchanged runs folded so the change is on screen.

import { diffLines } from "./diff.js";
import { h } from "./dom.js";

const CONTEXT = 3;

/** `before` → `after`, labelled: lines only in `before` are `-`, lines only in `after` are `+`. */
export function diffView(before: string, after: string, beforeLabel: string, afterLabel: string): HTMLElement {
  const lines = diffLines(before, after);
  const legend = h(
    "p",
    { class: "legend" },
    h("span", { class: "del" }, `− ${beforeLabel}`),
    " ",
    h("span", { class: "add" }, `+ ${afterLabel}`),
  );
  if (lines === null) {
    return h("div", { class: "diff" }, legend, h("p", {}, "Too large to compare line by line here."));
  }
  if (lines.every((line) => line.op === "same")) {
    return h("div", { class: "diff", "data-same": "true" }, legend, h("p", { class: "same-note" }, "No difference."));
  }
  const near = lines.map((_, i) =>
    lines.slice(Math.max(0, i - CONTEXT), i + CONTEXT + 1).some((line) => line.op !== "same"),
  );
  const rows: HTMLElement[] = [];
  let skipped = 0;
  const flush = (): void => {
    if (skipped > 0) rows.push(h("div", { class: "fold" }, `… ${skipped} unchanged line${skipped === 1 ? "" : "s"}`));
    skipped = 0;
  };
  lines.forEach((line, i) => {
    if (line.op === "same" && !near[i]) {
      skipped++;
      return;
    }
    flush();
    const mark = line.op === "add" ? "+" : line.op === "del" ? "−" : " ";
    const spoken = line.op === "add" ? `${afterLabel}: ` : line.op === "del" ? `${beforeLabel}: ` : "";
    rows.push(
      h(
        "div",
        { class: `line ${line.op}` },
        h("span", { class: "mark", "aria-hidden": "true" }, mark),
        h("span", { class: "sr" }, spoken),
        line.text,
      ),
    );
  });
  flush();
  return h("div", { class: "diff" }, legend, h("pre", { class: "lines" }, rows));
}
