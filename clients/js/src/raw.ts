/**
 * Exact text of values embedded in a larger JSON document (a batch get's answer, a snapshot). s3kv keeps every
 * document byte for byte (`1e400`, 30-digit integers, `-0`, whitespace); `JSON.parse` followed by
 * `JSON.stringify` would not give them back, so the values' text is cut out of the answer instead.
 */

export type PathPart = string | number;

/** What to do with the value at a path: cut its text out, look inside it, or pass over it. */
export type Visit = "take" | "descend" | "skip";

/**
 * Walks `text`, which must already have passed `JSON.parse` (so this walker need not check it), and calls `take`
 * with the exact text of every value `visit` asks for. Only containers on the way to a taken value are walked
 * member by member; everything else is skipped by bracket counting.
 */
export function cutValues(
  text: string,
  visit: (path: readonly PathPart[]) => Visit,
  take: (path: readonly PathPart[], raw: string) => void,
): void {
  let i = 0;
  const path: PathPart[] = [];
  const space = (): void => {
    for (let c = text.charCodeAt(i); c === 32 || c === 9 || c === 10 || c === 13; c = text.charCodeAt(++i));
  };
  /** From an opening quote to just past its closing quote. */
  const string = (): void => {
    for (i++; i < text.length; i++) {
      const c = text.charCodeAt(i);
      if (c === 92) i++;
      else if (c === 34) {
        i++;
        return;
      }
    }
  };
  const skip = (): void => {
    const first = text[i];
    if (first === '"') return string();
    if (first === "{" || first === "[") {
      let depth = 0;
      while (i < text.length) {
        const c = text[i];
        if (c === '"') {
          string();
          continue;
        }
        if (c === "{" || c === "[") depth++;
        else if (c === "}" || c === "]") depth--;
        i++;
        if (depth === 0) return;
      }
      return;
    }
    while (i < text.length && !",}] \t\n\r".includes(text[i] as string)) i++;
  };
  const value = (): void => {
    space();
    const what = visit(path);
    const start = i;
    const first = text[i];
    if (what === "take") {
      skip();
      take(path, text.slice(start, i));
    } else if (what === "skip" || (first !== "{" && first !== "[")) {
      skip();
    } else if (first === "{") {
      i++;
      space();
      if (text[i] === "}") {
        i++;
        return;
      }
      for (;;) {
        space();
        const nameStart = i;
        string();
        const name = JSON.parse(text.slice(nameStart, i)) as string;
        space();
        i++; // ':'
        path.push(name);
        value();
        path.pop();
        space();
        if (text[i++] !== ",") return; // '}'
      }
    } else {
      i++;
      space();
      if (text[i] === "]") {
        i++;
        return;
      }
      for (let index = 0; ; index++) {
        path.push(index);
        value();
        path.pop();
        space();
        if (text[i++] !== ",") return; // ']'
      }
    }
  };
  value();
}
