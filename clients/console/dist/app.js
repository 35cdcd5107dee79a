// The console's entry point. Served at /console/ by `s3kv console` (the page's URL carries the per-run token in
// its fragment, `#token=...`, never sent to any server in a Referer or a log; API calls go to /api/ with it and
// the local server adds the key) and by s3kv-local (no token: the page asks for a key and keeps it in memory, so
// a reload forgets it).
import * as api from "./api.js";
import { byId } from "./dom.js";
import { ItemView } from "./item.js";
import { follow } from "./live.js";
import { Tree } from "./tree.js";
import { exportPrefix, importFile } from "./transfer.js";
import { clearError, currentPermissions, keyProblem, onPermissions, prompt, setPermissions, showError, status } from "./ui.js";
const TOKEN_HEADER = "x-s3kv-console-token";
function tokenFromFragment() {
    const match = /(?:^#|&)token=([^&]+)/.exec(location.hash);
    return match?.[1] === undefined ? null : decodeURIComponent(match[1]);
}
async function connect() {
    const token = tokenFromFragment();
    if (token !== null) {
        api.use({ base: "api", headers: { [TOKEN_HEADER]: token } });
        try {
            const session = await fetch("session", { headers: { [TOKEN_HEADER]: token }, cache: "no-store" });
            if (!session.ok)
                throw new Error(`${session.status}: ${await session.text()}`);
            const body = (await session.json());
            byId("endpoint").textContent = body.endpoint ?? "";
        }
        catch (error) {
            showError(error, "this page's link is not the one `s3kv console` printed (restart it and open the new link)");
            return;
        }
        await start();
        return;
    }
    // On s3kv-local: ask for a key; it lives in this page's memory only.
    byId("endpoint").textContent = location.origin;
    const form = byId("key-form");
    form.hidden = false;
    byId("api-key").focus();
    form.addEventListener("submit", (event) => {
        event.preventDefault();
        const input = byId("api-key");
        const key = input.value.trim();
        if (key === "")
            return;
        api.use({ base: "..", headers: { "x-api-key": key } });
        input.value = "";
        form.hidden = true;
        void start();
    });
}
async function start() {
    clearError();
    try {
        setPermissions(await api.probe());
    }
    catch (error) {
        if (error instanceof api.ApiError && error.status === 403) {
            showError(error, "the API refused this key");
            const form = document.getElementById("key-form");
            if (form !== null && tokenFromFragment() === null)
                form.hidden = false;
            return;
        }
        // Unknown: everything stays enabled, and the first refusal greys out the rest.
        showError(error, "could not learn what this key may do");
    }
    byId("app").hidden = false;
    const item = new ItemView((key, exists) => {
        if (exists)
            tree.add(key);
        else
            tree.delete(key);
        tree.select(key);
    });
    const tree = new Tree(byId("tree"), (key) => void item.open(key));
    const open = (key, creating = false) => {
        clearError();
        tree.select(key);
        void item.open(key, creating);
    };
    const search = byId("search");
    search.addEventListener("input", () => tree.setFilter(search.value));
    search.addEventListener("keydown", (event) => {
        if (event.key === "Escape") {
            search.value = "";
            tree.setFilter("");
            tree.focus();
        }
        else if (event.key === "ArrowDown" || event.key === "Enter") {
            event.preventDefault();
            tree.focus();
        }
    });
    const newItem = async () => {
        const key = await prompt("Key of the new item:", tree.selectedFolder, (value) => keyProblem(value) ?? (tree.has(value) ? "An item with this key exists; pick it on the left" : null));
        if (key !== null)
            open(key, true);
    };
    byId("new").addEventListener("click", () => void newItem());
    byId("export").addEventListener("click", () => void exportPrefix(tree.selectedFolder));
    const file = byId("import-file");
    byId("import").addEventListener("click", () => file.click());
    file.addEventListener("change", () => {
        const picked = file.files?.[0];
        file.value = "";
        if (picked !== undefined)
            void importFile(picked, (key) => tree.add(key));
    });
    onPermissions(() => {
        // Creating and importing are writes somewhere: grey only for a key that may write nowhere (a key limited to
        // prefixes writes under them, and each key it tries is checked).
        const readOnly = currentPermissions().role === "read";
        for (const id of ["new", "import"]) {
            const button = byId(id);
            button.disabled = readOnly;
            button.classList.toggle("forbidden", readOnly);
            if (readOnly)
                button.title = "This API key may only read";
            else
                button.removeAttribute("title");
        }
    });
    document.addEventListener("keydown", (event) => {
        const target = event.target;
        if (target.closest("input, textarea, dialog") || event.ctrlKey || event.metaKey || event.altKey)
            return;
        const tabs = { v: "value", e: "edit", h: "history" };
        if (event.key === "/") {
            event.preventDefault();
            search.focus();
        }
        else if (event.key === "n") {
            event.preventDefault();
            if (!byId("new").disabled)
                void newItem();
        }
        else if (event.key === "?") {
            byId("help").showModal();
        }
        else if (tabs[event.key] !== undefined && item.key !== null) {
            const tab = tabs[event.key] ?? "value";
            item.show(tab);
            if (tab === "edit")
                byId("editor").focus();
            else
                byId(`tab-${tab}`).focus();
        }
    });
    const live = byId("live");
    void follow(async () => {
        tree.setKeys((await api.list()).map((listed) => listed.key));
    }, (changes) => {
        for (const change of changes) {
            if (change.deleted)
                tree.delete(change.key);
            else
                tree.add(change.key);
            void item.external(change.key);
        }
    }, (state, detail) => {
        live.textContent = state === "live" ? "● live" : state === "off" ? "not live" : "reconnecting…";
        live.dataset["state"] = state;
        live.title = detail;
    });
    status("");
}
byId("error-close").addEventListener("click", clearError);
byId("help-button").addEventListener("click", () => byId("help").showModal());
void connect().catch((error) => showError(error));
// For tests and people alike: a visible sign the page's code ran at all.
document.documentElement.dataset["ready"] = "true";
