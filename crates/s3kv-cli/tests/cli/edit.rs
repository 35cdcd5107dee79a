//! `edit`: written back only what nobody changed meanwhile.

use crate::harness::{editor, Local};

/// A stack holding `cfg/app` = `{"v": 1}`.
async fn one_item(name: &str) -> Local {
    let local = Local::start(name).await;
    local
        .s3kv_with(&["put", "cfg/app"], Some(r#"{"v": 1}"#), &[])
        .await
        .ok();
    local.settle().await;
    local
}

#[tokio::test(flavor = "multi_thread")]
async fn edit_writes_the_edited_value_back() {
    let local = one_item("edit").await;

    // A plain edit: written back.
    let bump = editor(&local.dir, "bump.sh", r#"printf '{"v": 2}' > "$1""#);
    local
        .s3kv_with(&["edit", "cfg/app"], None, &[("EDITOR", &bump)])
        .await
        .ok();
    local.settle().await;
    assert_eq!(
        local.s3kv(&["get", "cfg/app"]).await.ok().stdout,
        "{\"v\": 2}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn edit_is_refused_with_exit_4_when_someone_wrote_meanwhile_and_theirs_stays() {
    let local = one_item("edit-race").await;
    // Someone writes while the editor is open: the edit is refused (exit 4), and theirs stays.
    let binary = env!("CARGO_BIN_EXE_s3kv");
    let racing = editor(
        &local.dir,
        "race.sh",
        &format!(
            "printf '{{\"v\": \"mine\"}}' > \"$1\"\necho '{{\"v\": \"theirs\"}}' | {binary} put cfg/app -"
        ),
    );
    let raced = local
        .s3kv_with(&["edit", "cfg/app"], None, &[("EDITOR", &racing)])
        .await
        .fails(4, "changed while you were editing");
    assert!(
        raced.stderr.contains("theirs"),
        "it shows the current version: {}",
        raced.stderr
    );
    local.settle().await;
    assert_eq!(
        local.s3kv(&["get", "cfg/app"]).await.ok().stdout,
        "{\"v\": \"theirs\"}\n"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_edit_that_breaks_the_json_or_changes_nothing_writes_nothing() {
    let local = one_item("edit-nothing").await;
    // An edit that breaks the JSON writes nothing; one that changes nothing writes nothing either.
    let broken = editor(&local.dir, "broken.sh", r#"printf '{"v": ' > "$1""#);
    local
        .s3kv_with(&["edit", "cfg/app"], None, &[("EDITOR", &broken)])
        .await
        .fails(2, "not valid JSON");
    let nothing = editor(&local.dir, "nothing.sh", "true");
    let unchanged = local
        .s3kv_with(&["edit", "cfg/app"], None, &[("EDITOR", &nothing)])
        .await
        .ok();
    assert!(
        unchanged.stderr.contains("no change"),
        "{}",
        unchanged.stderr
    );
    let history = local
        .s3kv(&["history", "cfg/app", "--output", "json"])
        .await
        .ok()
        .json();
    assert_eq!(
        history.as_array().unwrap().len(),
        1,
        "the put alone: {history}"
    );
}
