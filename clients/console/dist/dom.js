// The one DOM helper: elements built from data, text always as text (a key or a value is never parsed as HTML).
export function h(tag, attributes = {}, ...children) {
    const element = document.createElement(tag);
    for (const [name, value] of Object.entries(attributes)) {
        if (value === undefined || value === false)
            continue;
        if (typeof value === "function") {
            element.addEventListener(name.replace(/^on/, ""), value);
        }
        else if (value === true) {
            element.setAttribute(name, "");
        }
        else {
            element.setAttribute(name, String(value));
        }
    }
    for (const child of children.flat()) {
        if (child === null || child === undefined || child === false)
            continue;
        element.append(child);
    }
    return element;
}
export function byId(id) {
    const element = document.getElementById(id);
    if (element === null)
        throw new Error(`the page has no #${id}`);
    return element;
}
/** "3 minutes ago"-style times would change under a screenshot and a test; an ISO-like local time does not. */
export function time(iso) {
    if (!iso)
        return "";
    const date = new Date(iso);
    if (Number.isNaN(date.getTime()))
        return iso;
    const pad = (n) => String(n).padStart(2, "0");
    return (`${date.getFullYear()}-${pad(date.getMonth() + 1)}-${pad(date.getDate())} ` +
        `${pad(date.getHours())}:${pad(date.getMinutes())}:${pad(date.getSeconds())}`);
}
export function size(bytes) {
    if (bytes < 1024)
        return `${bytes} B`;
    if (bytes < 1024 * 1024)
        return `${(bytes / 1024).toFixed(1)} KiB`;
    return `${(bytes / 1024 / 1024).toFixed(1)} MiB`;
}
