// JSON as text, never through numbers: JSON.parse would round 12345678901234567890 and drop duplicate members, so
// a value shown, edited and saved back through it could change without anyone typing a thing. The API stores
// bytes; the console re-indents the tokens and slices member texts, and leaves every literal as it was written.
const WHITESPACE = new Set([" ", "\t", "\n", "\r"]);
function tokens(text) {
    const out = [];
    let i = 0;
    while (i < text.length) {
        const c = text.charAt(i);
        if (WHITESPACE.has(c)) {
            i++;
        }
        else if ("{}[],:".includes(c)) {
            out.push({ kind: "punct", text: c });
            i++;
        }
        else if (c === '"') {
            let j = i + 1;
            while (j < text.length && text.charAt(j) !== '"')
                j += text.charAt(j) === "\\" ? 2 : 1;
            if (j >= text.length)
                throw new SyntaxError("unterminated string");
            out.push({ kind: "literal", text: text.slice(i, j + 1) });
            i = j + 1;
        }
        else {
            let j = i;
            while (j < text.length && !WHITESPACE.has(text.charAt(j)) && !"{}[],:".includes(text.charAt(j)))
                j++;
            out.push({ kind: "literal", text: text.slice(i, j) });
            i = j;
        }
    }
    return out;
}
/** `text` (valid JSON) indented by two spaces, every string and number exactly as written; `text` itself when it
 * cannot be tokenized (the caller shows what the server holds either way). */
export function pretty(text) {
    let list;
    try {
        list = tokens(text);
    }
    catch {
        return text;
    }
    let out = "";
    let depth = 0;
    const newline = () => "\n" + "  ".repeat(depth);
    for (let i = 0; i < list.length; i++) {
        const token = list[i];
        if (token === undefined)
            break;
        const next = list[i + 1];
        if (token.kind === "literal") {
            out += token.text;
            continue;
        }
        switch (token.text) {
            case "{":
            case "[": {
                const close = token.text === "{" ? "}" : "]";
                if (next !== undefined && next.kind === "punct" && next.text === close) {
                    out += token.text + close;
                    i++;
                }
                else {
                    depth++;
                    out += token.text + newline();
                }
                break;
            }
            case "}":
            case "]":
                depth = Math.max(0, depth - 1);
                out += newline() + token.text;
                break;
            case ",":
                out += "," + newline();
                break;
            case ":":
                out += ": ";
                break;
        }
    }
    return out;
}
/** Parses `text` (which JSON.parse must accept first) into [`Raw`]. */
export function parseRaw(text) {
    JSON.parse(text);
    let i = 0;
    const skip = () => {
        while (i < text.length && WHITESPACE.has(text.charAt(i)))
            i++;
    };
    const stringEnd = (start) => {
        let j = start + 1;
        while (j < text.length && text.charAt(j) !== '"')
            j += text.charAt(j) === "\\" ? 2 : 1;
        return j + 1;
    };
    const value = () => {
        skip();
        const start = i;
        const c = text.charAt(i);
        if (c === "{") {
            i++;
            const members = [];
            skip();
            if (text.charAt(i) === "}") {
                i++;
                return { kind: "object", start, end: i, members };
            }
            for (;;) {
                skip();
                const keyEnd = stringEnd(i);
                const key = JSON.parse(text.slice(i, keyEnd));
                i = keyEnd;
                skip();
                i++; // ':'
                members.push([key, value()]);
                skip();
                if (text.charAt(i++) === "}")
                    return { kind: "object", start, end: i, members };
            }
        }
        if (c === "[") {
            i++;
            const items = [];
            skip();
            if (text.charAt(i) === "]") {
                i++;
                return { kind: "array", start, end: i, items };
            }
            for (;;) {
                items.push(value());
                skip();
                if (text.charAt(i++) === "]")
                    return { kind: "array", start, end: i, items };
            }
        }
        if (c === '"') {
            i = stringEnd(i);
        }
        else {
            while (i < text.length && !WHITESPACE.has(text.charAt(i)) && !"{}[],:".includes(text.charAt(i)))
                i++;
        }
        return { kind: "scalar", start, end: i };
    };
    return value();
}
/** The members of a JSON object as [key, value text] pairs, each value sliced from `text` byte for byte. Throws
 * on anything but an object. */
export function members(text) {
    const raw = parseRaw(text);
    if (raw.kind !== "object")
        throw new SyntaxError('an export is one JSON object, {"key": value, ...}');
    return raw.members.map(([key, node]) => [key, text.slice(node.start, node.end)]);
}
/** A member of an object node, by name (the last one, as JSON.parse keeps). */
export function member(node, name) {
    if (node.kind !== "object")
        return undefined;
    let found;
    for (const [key, value] of node.members)
        if (key === name)
            found = value;
    return found;
}
/** Where JSON.parse stops on `text`, as a message for people; null when it parses. */
export function syntaxError(text) {
    try {
        JSON.parse(text);
        return null;
    }
    catch (error) {
        return error instanceof Error ? error.message : String(error);
    }
}
