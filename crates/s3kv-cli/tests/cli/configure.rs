//! `configure` and profiles: what the banner tells a user to export, a saved profile, and where its key may go.

use crate::harness::{Local, KEY};

#[tokio::test(flavor = "multi_thread")]
async fn the_banners_export_line_sets_exactly_what_the_cli_reads() {
    let local = Local::start("banner").await;
    // The banner's export line sets exactly what these runs use.
    let banner = local.stack.banner();
    let export = banner
        .lines()
        .find_map(|l| l.trim_start().strip_prefix("export "))
        .expect("an export line in the banner");
    let expected = format!("S3KV_ENDPOINT={} S3KV_API_KEY={KEY}", local.endpoint());
    assert_eq!(export, expected);
}

#[tokio::test(flavor = "multi_thread")]
async fn configure_saves_a_profile_only_its_owner_may_read() {
    let local = Local::start("configure").await;
    let endpoint = local.endpoint();
    local
        .s3kv_with(
            &["configure", "--profile", "dev", &endpoint],
            Some(KEY),
            &[],
        )
        .await
        .ok();
    let saved = local.dir.join("config/profiles.json");
    let mode = std::fs::metadata(&saved).unwrap().permissions();
    let mode = std::os::unix::fs::PermissionsExt::mode(&mode);
    assert_eq!(mode & 0o777, 0o600, "the profile file holds keys");
}

#[tokio::test(flavor = "multi_thread")]
async fn configure_refuses_an_endpoint_that_is_not_http_and_an_empty_key() {
    let local = Local::start("configure-refused").await;
    let endpoint = local.endpoint();
    local
        .s3kv_with(&["configure", "x"], Some(KEY), &[])
        .await
        .fails(2, "http");
    local
        .s3kv_with(&["configure", &endpoint], Some(""), &[])
        .await
        .fails(2, "no API key");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_profile_is_used_with_nothing_else_set_and_its_key_goes_to_its_endpoint_only() {
    let local = Local::start("profile").await;
    local
        .s3kv_with(&["put", "config/ui"], Some("{}"), &[])
        .await
        .ok();
    local.settle().await;
    let endpoint = local.endpoint();
    local
        .s3kv_with(
            &["configure", "--profile", "dev", &endpoint],
            Some(KEY),
            &[],
        )
        .await
        .ok();
    // A profile's key is not sent to an endpoint given otherwise: the gateway's 403, not the profile's key.
    let mut elsewhere = tokio::process::Command::new(env!("CARGO_BIN_EXE_s3kv"));
    elsewhere
        .args([
            "--profile",
            "dev",
            "--endpoint",
            &format!("http://{}", local.stack.api_addr).replace("127.0.0.1", "localhost"),
            "get",
            "config/ui",
        ])
        .env("S3KV_CONFIG_DIR", local.dir.join("config"))
        .env_remove("S3KV_ENDPOINT")
        .env_remove("S3KV_API_KEY");
    let out = elsewhere.output().await.unwrap();
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("Forbidden"));
    let env = [("S3KV_ENDPOINT", ""), ("S3KV_API_KEY", "")];
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_s3kv"));
    command
        .args(["--profile", "dev", "get", "config/ui"])
        .env("S3KV_CONFIG_DIR", local.dir.join("config"));
    for (name, _) in env {
        command.env_remove(name);
    }
    let out = command.output().await.unwrap();
    assert_eq!(
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).as_ref()
        ),
        (Some(0), "{}"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unknown_profile_is_a_usage_error() {
    let local = Local::start("no-profile").await;
    local
        .s3kv(&["--profile", "nope", "ls"])
        .await
        .fails(2, "no profile");
}

#[tokio::test(flavor = "multi_thread")]
async fn configure_saves_a_push_url_that_watch_uses() {
    let local = Local::start("configure-push").await;
    let endpoint = local.endpoint();
    local
        .s3kv_with(
            &[
                "configure",
                "--push-url",
                "https://x/event/realtime",
                &endpoint,
            ],
            Some(KEY),
            &[],
        )
        .await
        .fails(2, "push URL");
    // The profile's push URL (here one nothing listens on) rather than the one derived from the endpoint.
    local
        .s3kv_with(
            &[
                "configure",
                "--push-url",
                "ws://127.0.0.1:1/event/realtime",
                &endpoint,
            ],
            Some(KEY),
            &[],
        )
        .await
        .ok();
    let mut watch = local.watch(&["flags/x"]);
    let said = watch.said_line().await;
    assert!(
        said.contains("push unavailable") && said.contains("127.0.0.1:1/"),
        "{said}"
    );
    assert_eq!(watch.line().await["deleted"], true);
}
