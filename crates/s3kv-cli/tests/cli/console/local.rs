//! s3kv-local's own `/console/` in the browser: the same app as `s3kv console`'s, reached without the CLI, so the
//! key is typed in. A child of `console.rs` (sharing its browser steps) so that each file stays under ~600 lines.

use serde_json::json;

use super::webdriver::Browser;
use super::{open_item, stored, type_and_save, ITEM};
use crate::harness::{Local, KEY};

/// s3kv-local's own /console/: the key typed into the page (kept in its memory), then an edit saved.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3kv_local_serves_the_console_with_a_key_typed_in() {
    let local = Local::start("console-local").await;
    local.put(ITEM, r#"{"enabled": true}"#).await;
    local.settle().await;
    let browser = Browser::start("local").await;
    browser.goto(&format!("{}/console", local.endpoint())).await;
    browser
        .wait(
            "!document.getElementById('key-form').hidden",
            "the key prompt",
        )
        .await;
    browser.replace_text("#api-key", KEY).await;
    browser.click("#key-submit").await;
    browser
        .wait(
            "document.getElementById('role').dataset.role === 'write'",
            "the key to be known as a write key",
        )
        .await;
    open_item(&browser, ITEM, "\"enabled\": true").await;
    browser.click("#tab-edit").await;
    type_and_save(
        &browser,
        r#"{"enabled": false}"#,
        "document.getElementById('value').textContent.includes('\"enabled\": false')",
    )
    .await;
    assert_eq!(
        stored(&local, ITEM).await.as_deref(),
        Some(r#"{"enabled": false}"#)
    );
    let storage = browser
        .run(
            "return localStorage.length + sessionStorage.length + document.cookie.length;",
            json!([]),
        )
        .await;
    assert_eq!(storage, 0, "the key is kept in no browser storage");

    // A new item: its key asked for, then created (If-None-Match: *) from the editor.
    browser.click("#new").await;
    browser
        .wait(
            "document.getElementById('prompt').open",
            "the new item's prompt",
        )
        .await;
    browser.replace_text("#prompt-input", "flags/created").await;
    browser.click("#prompt-ok").await;
    browser
        .wait(
            "!document.getElementById('panel-edit').hidden",
            "the new item's editor",
        )
        .await;
    type_and_save(
        &browser,
        r#"{"enabled": true}"#,
        "document.getElementById('meta-etag')",
    )
    .await;
    assert_eq!(
        stored(&local, "flags/created").await.as_deref(),
        Some(r#"{"enabled": true}"#)
    );

    // Import: checked first, confirmed, then written byte for byte; export gives the same text back.
    let file = local.dir.join("import.json");
    let export = "{\n  \"imported/a\": {\"n\": 1},\n  \"imported/b\": [1, 2.50]\n}\n";
    std::fs::write(&file, export).unwrap();
    browser
        .send_keys("#import-file", &file.display().to_string())
        .await;
    browser
        .wait(
            "document.getElementById('confirm').open",
            "the import's confirmation",
        )
        .await;
    assert!(browser
        .text("#confirm-text")
        .await
        .contains("Write 2 items"));
    browser.click("#confirm-ok").await;
    browser
        .wait(
            "document.getElementById('status').textContent.startsWith('Imported 2 items')",
            "the import to finish",
        )
        .await;
    assert_eq!(
        stored(&local, "imported/b").await.as_deref(),
        Some("[1, 2.50]")
    );
    // The download is caught in the page: its text, rather than a file in a download folder.
    browser
        .run(
            "window.exported = null; const make = URL.createObjectURL; \
             URL.createObjectURL = (blob) => { blob.text().then(t => window.exported = t); return make(blob); }; \
             HTMLAnchorElement.prototype.click = function () {};",
            json!([]),
        )
        .await;
    browser.click("#export").await;
    browser
        .wait(
            "document.getElementById('prompt').open",
            "the export's prompt",
        )
        .await;
    browser.replace_text("#prompt-input", "imported/").await;
    browser.click("#prompt-ok").await;
    browser
        .wait("typeof window.exported === 'string'", "the export")
        .await;
    assert_eq!(
        browser.run("return window.exported;", json!([])).await,
        export
    );
}
