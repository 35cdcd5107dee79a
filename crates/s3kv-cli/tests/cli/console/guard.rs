//! What keeps other web pages from using `s3kv console`'s server, checked over plain HTTP (no browser): the
//! requests a hostile page or a DNS-rebound name would make are refused, and both servers serve exactly the built
//! files.

use super::{http, Console, ITEM};
use crate::harness::{Local, KEY};

/// The local server's guards, without a browser: what another web page (or a DNS-rebound name) would send is
/// refused, the app's files are the built ones, and the key never appears in anything the page can read.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn other_pages_cannot_use_the_console_server() {
    let local = Local::start("console-guard").await;
    local.put(ITEM, r#"{"enabled": true}"#).await;
    local.settle().await;
    let console = Console::start(&local, KEY).await;
    let client = http();
    let api = format!("{}/console/api/items/{ITEM}", console.origin());
    let send = |url: String, headers: Vec<(&'static str, String)>| {
        let mut request = client.get(url);
        for (name, value) in headers {
            request = request.header(name, value);
        }
        request.send()
    };
    let token = || ("x-s3kv-console-token", console.token().to_owned());

    let ok = send(api.clone(), vec![token()]).await.unwrap();
    assert_eq!(ok.status(), 200);
    assert_eq!(ok.text().await.unwrap(), r#"{"enabled": true}"#);

    for (what, headers) in [
        ("no token", vec![]),
        (
            "a wrong token",
            vec![("x-s3kv-console-token", "0".repeat(64))],
        ),
        (
            "another site's origin",
            vec![token(), ("origin", "https://evil.example".to_owned())],
        ),
        (
            "a cross-site fetch",
            vec![token(), ("sec-fetch-site", "cross-site".to_owned())],
        ),
        (
            "a DNS-rebound host",
            vec![token(), ("host", "evil.example".to_owned())],
        ),
    ] {
        let refused = send(api.clone(), headers).await.unwrap();
        assert_eq!(refused.status(), 403, "{what}");
        let body = refused.text().await.unwrap();
        assert!(!body.contains("enabled"), "{what}: {body}");
    }
    // The preflight another origin's fetch would need is refused, and no answer allows other origins.
    let preflight = client
        .request(reqwest::Method::OPTIONS, &api)
        .header("origin", "https://evil.example")
        .header("access-control-request-method", "GET")
        .header("access-control-request-headers", "x-s3kv-console-token")
        .send()
        .await
        .unwrap();
    assert_eq!(preflight.status(), 403);
    assert!(preflight
        .headers()
        .get("access-control-allow-origin")
        .is_none());
    // Only the API's routes are forwarded with the key.
    let public = send(
        format!("{}/console/api/public/{ITEM}", console.origin()),
        vec![token()],
    )
    .await
    .unwrap();
    assert_eq!(public.status(), 403);

    // Every built file is served, byte for byte, by both servers, with the page's security headers; the key is
    // in none of them.
    let dist = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../clients/console/dist");
    let mut names: Vec<String> = std::fs::read_dir(&dist)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert!(names.contains(&"app.js".to_owned()), "{names:?}");
    for origin in [console.origin().to_owned(), local.endpoint()] {
        for name in &names {
            let answer = send(format!("{origin}/console/{name}"), vec![])
                .await
                .unwrap();
            assert_eq!(
                answer.status(),
                200,
                "{origin}/console/{name}: is it listed in clients/console/assets.rs?"
            );
            assert!(answer.headers()["content-security-policy"]
                .to_str()
                .unwrap()
                .contains("frame-ancestors 'none'"));
            let body = answer.text().await.unwrap();
            assert_eq!(
                body,
                std::fs::read_to_string(dist.join(name)).unwrap(),
                "{name}"
            );
            assert!(!body.contains(KEY));
        }
        let page = send(format!("{origin}/console/"), vec![]).await.unwrap();
        assert_eq!(page.status(), 200);
        assert!(page
            .text()
            .await
            .unwrap()
            .contains("<title>s3kv console</title>"));
    }
}
