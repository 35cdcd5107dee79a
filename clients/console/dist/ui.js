// What every view shares: the error banner, the status line, the confirm and prompt dialogs, and the key's
// permissions, which decide what is greyed out (never hidden: people should see what a write key could do).
import { ApiError, grantOf, mayWrite } from "./api.js";
import { byId } from "./dom.js";
let permissions = { role: "unknown", prefixes: [] };
const listeners = [];
export function currentPermissions() {
    return permissions;
}
export function setPermissions(next) {
    permissions = next;
    const badge = byId("role");
    badge.textContent =
        next.role === "unknown"
            ? "key: ?"
            : `${next.role} key` + (next.prefixes.length > 0 ? `: ${next.prefixes.join(", ")}` : "");
    badge.dataset["role"] = next.role;
    for (const listener of listeners)
        listener();
}
/** Runs `listener` now and whenever the permissions change. */
export function onPermissions(listener) {
    listeners.push(listener);
    listener();
}
export function canWrite(key) {
    return mayWrite(permissions, key);
}
/** Why a write control is grey, for its tooltip. */
export function whyNot(key) {
    if (permissions.role === "read")
        return "This API key may only read";
    return `This API key may write only under ${permissions.prefixes.join(", ")}, not ${key}`;
}
/** Greys out `button` (or a textarea) when the key may not write `key`, saying why. */
export function gate(element, key, otherwise = false) {
    const allowed = canWrite(key);
    if (element instanceof HTMLTextAreaElement) {
        element.readOnly = !allowed;
    }
    else {
        element.disabled = !allowed || otherwise;
    }
    if (allowed)
        element.removeAttribute("title");
    else
        element.title = whyNot(key);
    element.classList.toggle("forbidden", !allowed);
}
export function showError(error, context) {
    // A refusal teaches what the key may do: grey out the rest rather than fail again.
    const grant = grantOf(error);
    if (grant !== null)
        setPermissions(grant);
    let text;
    if (error instanceof ApiError) {
        text = error.message + (error.status > 0 ? ` (${error.status}${error.code ? " " + error.code : ""})` : "");
    }
    else if (error instanceof Error) {
        text = error.message;
    }
    else {
        text = String(error);
    }
    byId("error-text").textContent = context ? `${context}: ${text}` : text;
    byId("error").hidden = false;
}
export function clearError() {
    byId("error").hidden = true;
}
export function status(text) {
    byId("status").textContent = text;
}
/** A modal question; resolves true for OK. `extra` goes under the question (a list of keys, say). */
export function confirm(question, ok, extra) {
    const dialog = byId("confirm");
    byId("confirm-text").textContent = question;
    byId("confirm-ok").textContent = ok;
    const slot = byId("confirm-extra");
    slot.replaceChildren(...(extra ? [extra] : []));
    return new Promise((resolve) => {
        dialog.addEventListener("close", () => resolve(dialog.returnValue === "ok"), { once: true });
        dialog.returnValue = "";
        dialog.showModal();
        byId("confirm-cancel").focus();
    });
}
/** A modal text prompt; resolves to the text, or null when cancelled. `check` returns a problem to show. */
export function prompt(question, initial, check) {
    const dialog = byId("prompt");
    const input = byId("prompt-input");
    const problem = byId("prompt-problem");
    byId("prompt-text").textContent = question;
    input.value = initial;
    problem.textContent = "";
    return new Promise((resolve) => {
        const form = byId("prompt-form");
        const submit = (event) => {
            const submitter = event.submitter;
            if (submitter?.value === "cancel")
                return;
            const why = check(input.value);
            if (why !== null) {
                event.preventDefault();
                problem.textContent = why;
            }
        };
        form.addEventListener("submit", submit);
        dialog.addEventListener("close", () => {
            form.removeEventListener("submit", submit);
            resolve(dialog.returnValue === "ok" ? input.value : null);
        }, { once: true });
        dialog.returnValue = "";
        dialog.showModal();
        input.focus();
        input.select();
    });
}
/** The key rules people meet most, checked before anything is sent (the API checks them all anyway). */
export function keyProblem(key) {
    if (key === "")
        return "A key cannot be empty";
    if (key.startsWith("/"))
        return "A key cannot start with /";
    if (key.endsWith("/"))
        return "A key cannot end with / (that is a folder)";
    if (key.startsWith(".s3kv/"))
        return "Keys under .s3kv/ are reserved for s3kv itself";
    if (new TextEncoder().encode(key).length > 512)
        return "A key is at most 512 bytes";
    return null;
}
