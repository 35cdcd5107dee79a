//! Conditional writes and reads, and strong reads, through the handlers against moto and Valkey: what a client
//! doing compare-and-swap or read-after-write checks.

use crate::common;

use common::{Response, Stack};
use http::Method;
use s3kv::api;
use s3kv::ports::Etag;

/// A request with extra headers and query parameters, through the handler its method routes to.
async fn send(
    stack: &Stack,
    method: Method,
    key: &str,
    body: Option<&str>,
    headers: &[(&'static str, &str)],
    query: &[(&str, &str)],
) -> Response {
    let mut request = common::request(method.clone(), key, body);
    for (name, value) in headers {
        request
            .headers
            .append(*name, http::HeaderValue::from_str(value).unwrap());
    }
    let query: std::collections::HashMap<String, Vec<String>> = query
        .iter()
        .map(|(k, v)| (k.to_string(), vec![v.to_string()]))
        .collect();
    request.query_string_parameters = query.into();
    let deadline = common::deadline(10);
    let response = if method == Method::GET {
        api::handle_read(&stack.reader, &stack.access, &request, deadline).await
    } else {
        api::handle_write(&stack.writer, &stack.access, &request, deadline).await
    };
    response.into()
}

fn etag(response: &Response) -> String {
    response.header("etag").expect("ETag header").to_owned()
}

fn error(response: &Response) -> (i64, String) {
    (
        response.status,
        response.json()["error"]
            .as_str()
            .unwrap_or_default()
            .to_owned(),
    )
}

#[tokio::test]
async fn create_only_and_compare_and_swap_writes() {
    let stack = Stack::start().await;
    let object_key = stack.object_key("flag");
    let none_match = [("if-none-match", "*")];

    let created = send(&stack, Method::PUT, "flag", Some("1"), &none_match, &[]).await;
    assert_eq!(created.status, 201, "{}", created.body);
    let again = send(&stack, Method::PUT, "flag", Some("2"), &none_match, &[]).await;
    assert_eq!(error(&again), (412, "precondition_failed".into()));
    assert!(
        again.json()["message"]
            .as_str()
            .unwrap()
            .contains("If-Match"),
        "the message says what to do: {}",
        again.body
    );
    assert_eq!(stack.s3.body(&object_key).await.as_deref(), Some(&b"1"[..]));

    // Compare-and-swap: only the holder of the current ETag may replace the item.
    let v1 = etag(&created);
    let swapped = send(
        &stack,
        Method::PUT,
        "flag",
        Some("3"),
        &[("if-match", &v1)],
        &[],
    )
    .await;
    assert_eq!(swapped.status, 200, "{}", swapped.body);
    let v2 = etag(&swapped);
    assert_ne!(v1, v2);
    let stale = send(
        &stack,
        Method::POST,
        "flag",
        Some("4"),
        &[("if-match", &v1)],
        &[],
    )
    .await;
    assert_eq!(error(&stale), (412, "precondition_failed".into()));
    assert_eq!(stack.s3.body(&object_key).await.as_deref(), Some(&b"3"[..]));

    // The ETag a read returns is the one a conditional write takes.
    let record = stack.created(&object_key, &Etag::new(&v2));
    stack.sync(vec![record]).await.unwrap();
    let read = stack.get("flag").await;
    assert_eq!((read.status, read.header("x-cache")), (200, Some("HIT")));
    assert_eq!(etag(&read), v2);

    // Conditional deletes: a stale ETag is refused, the current one deletes.
    let refused = send(
        &stack,
        Method::DELETE,
        "flag",
        None,
        &[("if-match", &v1)],
        &[],
    )
    .await;
    assert_eq!(error(&refused), (412, "precondition_failed".into()));
    let busy = send(&stack, Method::DELETE, "flag", None, &none_match, &[]).await;
    assert_eq!(error(&busy), (412, "precondition_failed".into()));
    let deleted = send(
        &stack,
        Method::DELETE,
        "flag",
        None,
        &[("if-match", &v2)],
        &[],
    )
    .await;
    assert_eq!(deleted.status, 204, "{}", deleted.body);
    assert_eq!(stack.s3.body(&object_key).await, None);

    // With nothing there, If-Match cannot hold (412), and create-only works again.
    let missing = send(
        &stack,
        Method::PUT,
        "flag",
        Some("5"),
        &[("if-match", &v2)],
        &[],
    )
    .await;
    assert_eq!(error(&missing), (412, "precondition_failed".into()));
    let missing = send(
        &stack,
        Method::DELETE,
        "flag",
        None,
        &[("if-match", &v2)],
        &[],
    )
    .await;
    assert_eq!(error(&missing), (412, "precondition_failed".into()));
    assert_eq!(stack.s3.body(&object_key).await, None);
    let recreated = send(&stack, Method::PUT, "flag", Some("6"), &none_match, &[]).await;
    assert_eq!(recreated.status, 201);
}

#[tokio::test]
async fn conditions_that_cannot_be_evaluated_are_refused_before_any_write() {
    let stack = Stack::start().await;
    let v1 = etag(&stack.put("k", "1").await);
    let cases: &[(Method, &[(&'static str, &str)])] = &[
        (Method::PUT, &[("if-match", "*")]),
        (Method::PUT, &[("if-match", "\"a\", \"b\"")]),
        (Method::PUT, &[("if-match", "W/\"a\"")]),
        (Method::PUT, &[("if-match", "\"\"")]),
        (Method::PUT, &[("if-match", "\"a\tb\"")]),
        (Method::DELETE, &[("if-match", "a b")]),
        (Method::PUT, &[("if-none-match", "\"a\"")]),
        (Method::PUT, &[("if-match", &v1), ("if-none-match", "*")]),
        (Method::PUT, &[("if-match", &v1), ("if-match", &v1)]),
        (Method::DELETE, &[("if-none-match", "\"a\"")]),
        (Method::GET, &[("if-match", &v1)]),
    ];
    for (method, headers) in cases {
        let response = send(&stack, method.clone(), "k", Some("2"), headers, &[]).await;
        assert_eq!(
            error(&response),
            (400, "invalid_header".into()),
            "{method} {headers:?}: {}",
            response.body
        );
    }
    assert_eq!(
        stack.s3.body(&stack.object_key("k")).await.as_deref(),
        Some(&b"1"[..])
    );
}

#[tokio::test]
async fn if_none_match_reads_answer_304_without_a_body() {
    let stack = Stack::start().await;
    let v1 = etag(&stack.put("k", "{\"v\":1}").await);

    // On a miss (read from S3) and then on a hit, with the tag quoted, weak, in a list, or `*`.
    for round in ["MISS", "HIT"] {
        for value in [
            v1.clone(),
            format!("W/{v1}"),
            format!("\"other\", {v1}"),
            "*".into(),
        ] {
            let response = send(
                &stack,
                Method::GET,
                "k",
                None,
                &[("if-none-match", &value)],
                &[],
            )
            .await;
            assert_eq!(response.status, 304, "{round} {value}: {}", response.body);
            assert_eq!(response.body, "", "{round} {value}");
            assert_eq!(response.header("etag"), Some(v1.as_str()));
        }
        if round == "MISS" {
            let record = stack.created(&stack.object_key("k"), &Etag::new(&v1));
            stack.sync(vec![record]).await.unwrap();
        }
    }
    let changed = send(
        &stack,
        Method::GET,
        "k",
        None,
        &[("if-none-match", "\"stale\"")],
        &[],
    )
    .await;
    assert_eq!((changed.status, changed.body.as_str()), (200, "{\"v\":1}"));
    let missing = send(
        &stack,
        Method::GET,
        "nothing",
        None,
        &[("if-none-match", "*")],
        &[],
    )
    .await;
    assert_eq!(missing.status, 404);
}

#[tokio::test]
async fn consistent_reads_see_a_write_before_the_cache_does() {
    let stack = Stack::start().await;
    let v1 = etag(&stack.put("k", "\"old\"").await);
    stack
        .sync(vec![stack.created(&stack.object_key("k"), &Etag::new(&v1))])
        .await
        .unwrap();
    // A write whose notification has not been synced yet: the cache still answers the old value.
    assert_eq!(stack.put("k", "\"new\"").await.status, 200);
    let cached = stack.get("k").await;
    assert_eq!(
        (cached.body.as_str(), cached.header("x-cache")),
        ("\"old\"", Some("HIT"))
    );

    let strong = send(
        &stack,
        Method::GET,
        "k",
        None,
        &[],
        &[("consistent", "true")],
    )
    .await;
    assert_eq!(
        (
            strong.status,
            strong.body.as_str(),
            strong.header("x-cache")
        ),
        (200, "\"new\"", Some("BYPASS"))
    );
    // It neither reads nor fills the cache: the cache still holds what the syncer put there.
    assert_eq!(stack.get("k").await.body, "\"old\"");
    let weak = send(
        &stack,
        Method::GET,
        "k",
        None,
        &[],
        &[("consistent", "false")],
    )
    .await;
    assert_eq!(weak.body, "\"old\"");
    let bad = send(
        &stack,
        Method::GET,
        "k",
        None,
        &[],
        &[("consistent", "yes")],
    )
    .await;
    assert_eq!(error(&bad), (400, "invalid_query".into()));

    // Strong reads of deleted items are 404 at once, too.
    assert_eq!(stack.delete("k").await.status, 204);
    let gone = send(
        &stack,
        Method::GET,
        "k",
        None,
        &[],
        &[("consistent", "true")],
    )
    .await;
    assert_eq!(gone.status, 404);
}
