//! `s3kv console` in a real browser (Debian's Chromium, driven over WebDriver: [`webdriver`]) against s3kv-local, and
//! s3kv-local's own `/console/` ([`local`]): editing and saving, a conflicting save shown as a diff and not written,
//! a schema violation shown before saving, history with two versions compared, restore, and a read key's greyed-out
//! controls. `guard` checks, without a browser, what keeps other web pages from using the console's server.
//!
//! With `S3KV_CONSOLE_SCREENSHOTS=docs/src/images` the browser tests save the screenshots the book shows
//! (docs/src/console.md).

mod guard;
mod local;
mod webdriver;

use serde_json::json;
use tokio::io::AsyncBufReadExt;

use crate::harness::{Local, KEY, READ_KEY};
use webdriver::Browser;

pub(crate) const ITEM: &str = "flags/checkout";
const SCHEMA: &str = r#"{"type": "object", "required": ["enabled"], "additionalProperties": false,
  "properties": {"enabled": {"type": "boolean"}, "rollout": {"type": "integer", "minimum": 0, "maximum": 100}}}"#;

/// A running `s3kv console`: its URL (with the token), stopped when dropped.
pub(crate) struct Console {
    _child: tokio::process::Child,
    url: String,
}

impl Console {
    pub(crate) async fn start(local: &Local, key: &str) -> Self {
        let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_s3kv"))
            .arg("console")
            .current_dir(&local.dir)
            .env("S3KV_ENDPOINT", local.endpoint())
            .env("S3KV_API_KEY", key)
            .env("S3KV_CONFIG_DIR", local.dir.join("config"))
            .env_remove("S3KV_PROFILE")
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("run s3kv console");
        let stdout = child.stdout.take().unwrap();
        let mut lines = tokio::io::BufReader::new(stdout).lines();
        let url = lines
            .next_line()
            .await
            .expect("s3kv console's output")
            .expect("s3kv console prints its URL");
        assert!(
            url.starts_with("http://127.0.0.1:") && url.contains("/console/#token="),
            "{url}"
        );
        Self { _child: child, url }
    }

    /// `http://127.0.0.1:PORT`.
    pub(crate) fn origin(&self) -> &str {
        let after_scheme = "http://".len();
        let end = self.url[after_scheme..]
            .find('/')
            .map_or(self.url.len(), |i| i + after_scheme);
        &self.url[..end]
    }

    pub(crate) fn token(&self) -> &str {
        self.url.rsplit("#token=").next().unwrap_or_default()
    }
}

pub(crate) fn http() -> reqwest::Client {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    reqwest::Client::builder().no_proxy().build().unwrap()
}

/// The item as S3 holds it now (a consistent read), or None.
async fn stored(local: &Local, key: &str) -> Option<String> {
    let answer = http()
        .get(format!("{}/items/{key}?consistent=true", local.endpoint()))
        .header("x-api-key", KEY)
        .send()
        .await
        .unwrap();
    if answer.status() == 404 {
        return None;
    }
    assert_eq!(answer.status(), 200);
    Some(answer.text().await.unwrap())
}

async fn put_schema(local: &Local) {
    let answer = http()
        .put(format!("{}/schemas/flags%2F", local.endpoint()))
        .header("x-api-key", KEY)
        .body(SCHEMA)
        .send()
        .await
        .unwrap();
    assert!(answer.status().is_success(), "{}", answer.status());
}

/// Types `text` into the editor, waits until it validates, saves, and waits until `saved` (a script condition)
/// holds.
async fn type_and_save(browser: &Browser, text: &str, saved: &str) {
    browser.replace_text("#editor", text).await;
    browser
        .wait(
            "document.getElementById('validation').className === 'valid'",
            "the edit to validate",
        )
        .await;
    browser.click("#save").await;
    browser.wait(saved, "the save to show").await;
}

/// Opens `key` from the tree: its folder first, then the item, until its value is shown.
async fn open_item(browser: &Browser, key: &str, shows: &str) {
    let (folder, _) = key.rsplit_once('/').expect("a key in a folder");
    browser
        .wait(
            &format!("document.querySelector('[data-prefix=\"{folder}/\"]')"),
            "the tree to list the folder",
        )
        .await;
    let open = browser
        .run(
            &format!("return document.querySelector('[data-prefix=\"{folder}/\"]').getAttribute('aria-expanded');"),
            json!([]),
        )
        .await;
    if open != "true" {
        browser
            .click(&format!("[data-prefix=\"{folder}/\"] > .label"))
            .await;
    }
    browser
        .click(&format!("[data-key=\"{key}\"] > .label"))
        .await;
    browser
        .wait(
            &format!(
                "document.getElementById('item-key').textContent === {} && document.getElementById('value').textContent.includes({})",
                json!(key),
                json!(shows)
            ),
            &format!("{key} to show {shows}"),
        )
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn console_edits_validates_conflicts_diffs_history_and_restores() {
    let local = Local::start("console-edit").await;
    put_schema(&local).await;
    local.put(ITEM, r#"{"enabled": true, "rollout": 10}"#).await;
    // Neighbours, so the tree (and the screenshots) look like a store in use.
    for (key, value) in [
        ("flags/search-v2", r#"{"enabled": false}"#),
        ("flags/maintenance", r#"{"enabled": false}"#),
        ("config/site", r#"{"title": "Example", "theme": "dark"}"#),
    ] {
        local.put(key, value).await;
    }
    local.settle().await;
    let console = Console::start(&local, KEY).await;
    let browser = Browser::start("edit").await;
    {
        browser.goto(&console.url).await;
        browser
            .wait(
                "document.getElementById('role').dataset.role === 'write'",
                "the key to be known as a write key",
            )
            .await;
        open_item(&browser, ITEM, "\"rollout\": 10").await;
        assert_eq!(
            browser
                .run("return document.getElementById('key-form').hidden && getComputedStyle(document.getElementById('key-form')).display;", json!([]))
                .await,
            "none",
            "no key is asked for: the local server holds it"
        );
        assert!(browser.text("#meta-etag").await.starts_with('"'));
        assert!(
            browser.text("#meta-writer").await.contains("key="),
            "the writer is shown"
        );
        browser.screenshot("console-item.png").await;

        // A value that breaks the prefix's schema is shown as you type, and cannot be saved.
        browser.click("#tab-edit").await;
        browser
            .replace_text("#editor", r#"{"enabled": "yes", "rollout": 150}"#)
            .await;
        browser
            .wait(
                "document.querySelectorAll('#violations li').length === 2",
                "both schema violations to be listed",
            )
            .await;
        let validation = browser.text("#validation").await;
        assert!(validation.contains("Breaks schema flags/"), "{validation}");
        assert!(
            validation.contains("150 is greater than the maximum of 100"),
            "{validation}"
        );
        assert_eq!(
            browser
                .run(
                    "return document.getElementById('save').disabled;",
                    json!([])
                )
                .await,
            true,
            "Save is disabled while the value breaks the schema"
        );
        browser.screenshot("console-schema-violation.png").await;
        assert_eq!(
            stored(&local, ITEM).await.as_deref(),
            Some(r#"{"enabled": true, "rollout": 10}"#)
        );

        // A valid edit is saved, exactly as typed.
        type_and_save(&browser, r#"{"enabled": false, "rollout": 20}"#, "!document.getElementById('panel-value').hidden && document.getElementById('value').textContent.includes('\"rollout\": 20')").await;
        assert_eq!(
            stored(&local, ITEM).await.as_deref(),
            Some(r#"{"enabled": false, "rollout": 20}"#)
        );

        // Someone else writes while an edit is open: the save is refused, the diff shown, their value kept.
        browser.click("#tab-edit").await;
        browser
            .replace_text("#editor", r#"{"enabled": true, "rollout": 30}"#)
            .await;
        local
            .put(ITEM, r#"{"enabled": false, "rollout": 99}"#)
            .await;
        local.settle().await;
        // Live updates tell the editor its item changed underneath, without touching the edit.
        browser
            .wait(
                "!document.getElementById('stale').hidden",
                "the live update to say the item changed",
            )
            .await;
        browser
            .wait(
                "document.getElementById('validation').className === 'valid'",
                "the edit to validate",
            )
            .await;
        browser.click("#save").await;
        browser
            .wait(
                "!document.getElementById('conflict').hidden",
                "the conflict to be shown",
            )
            .await;
        let lines = browser
            .run(
                "return [...document.querySelectorAll('#conflict-diff .line')].map(l => l.className + ' ' + l.textContent);",
                json!([]),
            )
            .await;
        let lines: Vec<String> = serde_json::from_value(lines).unwrap();
        assert!(
            lines
                .iter()
                .any(|l| l.starts_with("line del") && l.contains("\"rollout\": 99")),
            "{lines:?}"
        );
        assert!(
            lines
                .iter()
                .any(|l| l.starts_with("line add") && l.contains("\"rollout\": 30")),
            "{lines:?}"
        );
        assert_eq!(
            stored(&local, ITEM).await.as_deref(),
            Some(r#"{"enabled": false, "rollout": 99}"#),
            "the conflicting save wrote nothing"
        );
        browser.screenshot("console-conflict.png").await;

        // History: three versions; the newest two compared by default, then the oldest against the newest.
        browser.click("#conflict-discard").await;
        browser
            .wait(
                "document.getElementById('value').textContent.includes('\"rollout\": 99')",
                "their value to load",
            )
            .await;
        browser.click("#tab-history").await;
        browser
            .wait(
                "document.querySelectorAll('#history li.version').length === 3",
                "three versions",
            )
            .await;
        browser
            .wait(
                "document.querySelector('#history-diff .line.del')?.textContent.includes('\"rollout\": 20') && document.querySelector('#history-diff .line.add')?.textContent.includes('\"rollout\": 99')",
                "the newest two versions' diff",
            )
            .await;
        browser
            .click("#history li.version[data-index=\"2\"] input.pick-a")
            .await;
        browser
            .wait(
                "[...document.querySelectorAll('#history-diff .line.del')].some(l => l.textContent.includes('\"rollout\": 10'))",
                "the oldest version against the newest",
            )
            .await;
        browser
            .run(
                "document.getElementById('history-diff').scrollIntoView({block: 'end'});",
                json!([]),
            )
            .await;
        browser.screenshot("console-history.png").await;
        // Dark when the system is.
        browser.color_scheme("dark").await;
        assert_eq!(
            browser
                .run(
                    "return getComputedStyle(document.body).backgroundColor;",
                    json!([])
                )
                .await,
            "rgb(21, 24, 30)"
        );
        browser.screenshot("console-history-dark.png").await;
        browser.color_scheme("light").await;

        // Restore the first version: it is the item again, byte for byte.
        browser
            .click("#history li.version[data-index=\"2\"] button.restore")
            .await;
        browser
            .wait(
                "document.getElementById('confirm').open",
                "the confirmation",
            )
            .await;
        browser.click("#confirm-ok").await;
        browser
            .wait(
                "document.getElementById('value').textContent.includes('\"rollout\": 10')",
                "the restored value",
            )
            .await;
        assert_eq!(
            stored(&local, ITEM).await.as_deref(),
            Some(r#"{"enabled": true, "rollout": 10}"#)
        );

        // Delete (confirmed), then undelete from the history.
        browser.click("#delete").await;
        browser
            .wait(
                "document.getElementById('confirm').open",
                "the delete's confirmation",
            )
            .await;
        browser.click("#confirm-ok").await;
        browser
            .wait(
                "document.querySelector('#history li.version[data-index=\"0\"]')?.classList.contains('deleted')",
                "the delete to show in the history",
            )
            .await;
        assert_eq!(stored(&local, ITEM).await, None);
        assert_eq!(
            browser
                .text("#history li.version[data-index=\"1\"] button.restore")
                .await,
            "Undelete"
        );
        browser
            .click("#history li.version[data-index=\"1\"] button.restore")
            .await;
        browser
            .wait(
                "document.getElementById('confirm').open",
                "the undelete's confirmation",
            )
            .await;
        browser.click("#confirm-ok").await;
        browser
            .wait(
                "document.getElementById('meta-etag') && document.getElementById('value').textContent.includes('\"rollout\": 10')",
                "the undeleted value",
            )
            .await;
        assert_eq!(
            stored(&local, ITEM).await.as_deref(),
            Some(r#"{"enabled": true, "rollout": 10}"#)
        );
    }
    println!("the page's log: {}", browser.log().await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_key_sees_every_edit_control_greyed_out() {
    let local = Local::start("console-read").await;
    local.put(ITEM, r#"{"enabled": true}"#).await;
    // A number JavaScript would round: shown exactly as stored.
    local
        .put(ITEM, r#"{"enabled": false, "id": 12345678901234567890}"#)
        .await;
    local.settle().await;
    let console = Console::start(&local, READ_KEY).await;
    let browser = Browser::start("read").await;
    browser.goto(&console.url).await;
    browser
        .wait(
            "document.getElementById('role').dataset.role === 'read'",
            "the key to be known as a read key",
        )
        .await;
    open_item(&browser, ITEM, "\"id\": 12345678901234567890").await;
    // A new item appears in the tree by itself (live updates).
    local.put("flags/new-one", "{}").await;
    browser
        .wait(
            "document.querySelector('[data-key=\"flags/new-one\"]')",
            "the new item to appear in the tree",
        )
        .await;
    browser.click("#tab-history").await;
    browser
        .wait(
            "document.querySelectorAll('#history li.version').length === 2",
            "two versions",
        )
        .await;
    browser.click("#tab-edit").await;
    let controls = browser
        .run(
            "const ids = ['save', 'delete', 'new', 'import', 'revert']; \
             const out = {}; for (const id of ids) out[id] = document.getElementById(id).disabled; \
             out.editor = document.getElementById('editor').readOnly; \
             out.restore = [...document.querySelectorAll('#history button.restore')].map(b => b.disabled); \
             out.saveTitle = document.getElementById('save').title; return out;",
            json!([]),
        )
        .await;
    assert_eq!(
        controls,
        json!({"save": true, "delete": true, "new": true, "import": true, "revert": true, "editor": true,
               "restore": [true], "saveTitle": "This API key may only read"}),
        "every write control is greyed out, saying why"
    );
    browser.screenshot("console-read-key.png").await;

    // The keyboard alone: search, down into the tree, down to the key, Enter opens it.
    const ARROW_DOWN: &str = "\u{E015}";
    const ENTER: &str = "\u{E007}";
    browser.send_keys("#search", "new-one").await;
    browser.send_keys("#search", ARROW_DOWN).await;
    browser
        .wait(
            "document.activeElement?.dataset.prefix === 'flags/'",
            "the tree's first row to have the focus",
        )
        .await;
    browser
        .send_keys("#tree [tabindex=\"0\"]", ARROW_DOWN)
        .await;
    browser
        .wait(
            "document.activeElement?.dataset.key === 'flags/new-one'",
            "the key's row to have the focus",
        )
        .await;
    browser.send_keys("#tree [tabindex=\"0\"]", ENTER).await;
    browser
        .wait(
            "document.getElementById('item-key').textContent === 'flags/new-one'",
            "Enter to open the item",
        )
        .await;
}
