// A line diff of two pretty-printed documents: the longest common subsequence, which for config-sized values
// (hundreds of lines) is instant and gives the minimal diff people expect. Past LIMIT lines each the table would
// be too big for a page, so the console says so instead.
const LIMIT = 3000;
export function diffLines(before, after) {
    const a = before.split("\n");
    const b = after.split("\n");
    if (a.length > LIMIT || b.length > LIMIT)
        return null;
    const n = a.length;
    const m = b.length;
    // lengths[i * (m + 1) + j]: the LCS of a[i..] and b[j..].
    const lengths = new Uint32Array((n + 1) * (m + 1));
    for (let i = n - 1; i >= 0; i--) {
        for (let j = m - 1; j >= 0; j--) {
            lengths[i * (m + 1) + j] =
                a[i] === b[j]
                    ? (lengths[(i + 1) * (m + 1) + j + 1] ?? 0) + 1
                    : Math.max(lengths[(i + 1) * (m + 1) + j] ?? 0, lengths[i * (m + 1) + j + 1] ?? 0);
        }
    }
    const out = [];
    let i = 0;
    let j = 0;
    while (i < n && j < m) {
        if (a[i] === b[j]) {
            out.push({ op: "same", text: a[i] ?? "" });
            i++;
            j++;
        }
        else if ((lengths[(i + 1) * (m + 1) + j] ?? 0) >= (lengths[i * (m + 1) + j + 1] ?? 0)) {
            out.push({ op: "del", text: a[i] ?? "" });
            i++;
        }
        else {
            out.push({ op: "add", text: b[j] ?? "" });
            j++;
        }
    }
    for (; i < n; i++)
        out.push({ op: "del", text: a[i] ?? "" });
    for (; j < m; j++)
        out.push({ op: "add", text: b[j] ?? "" });
    return out;
}
