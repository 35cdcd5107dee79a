//! Listing and batch get through the reader's handler, against moto and Valkey.

use crate::common;

use std::collections::HashMap;

use common::{Response, Stack};
use http::Method;
use s3kv::api;
use s3kv::ports::Etag;

async fn list(stack: &Stack, query: &[(&str, &str)]) -> Response {
    let mut request = common::request(Method::GET, "", None);
    request.resource = Some(s3kv::routes::LIST.into());
    request.path = Some("/items".into());
    request.path_parameters.clear();
    let query: HashMap<String, Vec<String>> = query
        .iter()
        .map(|(k, v)| (k.to_string(), vec![v.to_string()]))
        .collect();
    request.query_string_parameters = query.into();
    api::handle_read(&stack.reader, &stack.access, &request, common::deadline(10))
        .await
        .into()
}

async fn batch_get(stack: &Stack, body: &str) -> Response {
    let mut request = common::request(Method::POST, "", Some(body));
    request.resource = Some(s3kv::routes::BATCH_GET.into());
    request.path = Some("/batch-get".into());
    request.path_parameters.clear();
    api::handle_read(&stack.reader, &stack.access, &request, common::deadline(10))
        .await
        .into()
}

fn error(response: &Response) -> (i64, String) {
    let code = response.json()["error"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    (response.status, code)
}

#[tokio::test]
async fn listing_pages_through_exactly_the_items_under_a_prefix() {
    let stack = Stack::start().await;
    let mut written = HashMap::new();
    for key in (0..12).map(|i| format!("flags/{i:02}")).chain([
        "flags/with space".into(),
        "flagship".into(),
        "other".into(),
    ]) {
        let body = format!("{{\"key\":{key:?}}}");
        let put = stack.put(&key, &body).await;
        assert_eq!(put.status, 201);
        written.insert(key, (put.header("etag").unwrap().to_owned(), body.len()));
    }
    // Objects in the bucket that are not items never show up.
    stack.s3.upload("items/flags/readme.txt", b"hi").await;
    stack.s3.upload("items/flags/a//b.json", b"{}").await;

    let (mut seen, mut cursor, mut pages) = (Vec::new(), None::<String>, 0);
    loop {
        let mut query = vec![("prefix", "flags/"), ("limit", "5")];
        if let Some(c) = &cursor {
            query.push(("cursor", c));
        }
        let page = list(&stack, &query).await;
        assert_eq!(page.status, 200, "{}", page.body);
        let json = page.json();
        pages += 1;
        for item in json["items"].as_array().unwrap() {
            let key = item["key"].as_str().unwrap().to_owned();
            let (etag, size) = &written[&key];
            assert_eq!(
                Etag::new(etag).as_str(),
                item["etag"].as_str().unwrap(),
                "{key}"
            );
            assert_eq!(item["size"].as_u64(), Some(*size as u64), "{key}");
            let modified = item["lastModified"].as_str().expect("lastModified");
            assert!(
                modified.ends_with('Z') && modified.contains('T'),
                "{modified}"
            );
            seen.push(key);
        }
        match json["cursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => break,
        }
        assert!(pages < 10, "the cursor never ends");
    }
    let mut expected: Vec<String> = written
        .keys()
        .filter(|k| k.starts_with("flags/"))
        .cloned()
        .collect();
    expected.sort();
    assert_eq!(seen, expected, "every item once, in key order");
    assert!(
        pages >= 3,
        "limit 5 over 13 items needs 3 pages, got {pages}"
    );

    for impossible in ["/flags", "flags//"] {
        let none = list(&stack, &[("prefix", impossible)]).await.json();
        assert_eq!(none["items"], serde_json::json!([]), "{impossible}");
    }
    let all = list(&stack, &[]).await.json();
    assert_eq!(all["items"].as_array().unwrap().len(), written.len());
    assert_eq!(all["cursor"], serde_json::Value::Null);

    for (name, value) in [
        ("limit", "0"),
        ("limit", "1001"),
        ("limit", "ten"),
        ("cursor", "not base64!"),
        ("prefix", "a\u{1}"),
        ("prefix", "\u{FFFE}"),
        ("cursor", "GX0u7I-a"), // base64url of a token with a control character
    ] {
        let response = list(&stack, &[(name, value)]).await;
        assert_eq!(
            error(&response),
            (400, "invalid_query".into()),
            "{name}={value}"
        );
    }
}

#[tokio::test]
async fn batch_get_answers_each_key_in_order_from_the_cache_and_s3() {
    let mut stack = Stack::start().await;
    for (key, body) in [("a", "{\"n\":1}"), ("b", "[1,2]"), ("c", "\"text\"")] {
        let put = stack.put(key, body).await;
        let record = stack.created(
            &stack.object_key(key),
            &Etag::new(put.header("etag").unwrap()),
        );
        stack.sync(vec![record]).await.unwrap();
    }
    // Written but not synced yet: read through to S3.
    assert_eq!(stack.put("fresh", "true").await.status, 201);

    let response = batch_get(&stack, r#"{"keys":["b","missing","fresh","a","b","c"]}"#).await;
    assert_eq!(response.status, 200, "{}", response.body);
    let items = response.json()["items"].as_array().unwrap().clone();
    let summary: Vec<(String, bool, Option<String>)> = items
        .iter()
        .map(|i| {
            (
                i["key"].as_str().unwrap().to_owned(),
                i["found"].as_bool().unwrap(),
                i["cache"].as_str().map(str::to_owned),
            )
        })
        .collect();
    let hit = || Some("HIT".to_owned());
    assert_eq!(
        summary,
        vec![
            ("b".into(), true, hit()),
            ("missing".into(), false, None),
            ("fresh".into(), true, Some("MISS".into())),
            ("a".into(), true, hit()),
            ("b".into(), true, hit()),
            ("c".into(), true, hit()),
        ]
    );
    let values: Vec<&serde_json::Value> = items.iter().map(|i| &i["value"]).collect();
    assert_eq!(values[0], &serde_json::json!([1, 2]));
    assert_eq!(values[2], &serde_json::json!(true));
    assert_eq!(values[3], &serde_json::json!({"n": 1}));
    assert_eq!(values[5], &serde_json::json!("text"));
    assert_eq!(
        items[3]["etag"].as_str(),
        Some(Etag::new(stack.get("a").await.header("etag").unwrap()).as_str())
    );

    // The miss filled the cache like a single read would.
    let again = batch_get(&stack, r#"{"keys":["fresh"]}"#).await.json();
    assert_eq!(again["items"][0]["cache"], "HIT");

    // Valkey down: every key is read from S3, and the answer is the same.
    stack.valkey.stop();
    let bypass = batch_get(&stack, r#"{"keys":["a","missing"]}"#).await;
    assert_eq!(bypass.status, 200, "{}", bypass.body);
    let bypass = bypass.json();
    assert_eq!(bypass["items"][0]["cache"], "BYPASS");
    assert_eq!(bypass["items"][0]["value"], serde_json::json!({"n": 1}));
    assert_eq!(bypass["items"][1]["found"], false);
    stack.s3.stop();
}

#[tokio::test]
async fn malformed_batch_requests_get_clear_errors() {
    let stack = Stack::start().await;
    let too_many = format!(
        "{{\"keys\":[{}]}}",
        (0..101)
            .map(|i| format!("\"k{i}\""))
            .collect::<Vec<_>>()
            .join(",")
    );
    let cases: Vec<(&str, String, &str)> = vec![
        ("not JSON", "{keys".into(), "invalid_json"),
        ("empty body", "".into(), "empty_body"),
        ("no keys field", "{}".into(), "invalid_body"),
        (
            "unknown field",
            r#"{"keys":["a"],"x":1}"#.into(),
            "invalid_body",
        ),
        ("keys not strings", r#"{"keys":[1]}"#.into(), "invalid_body"),
        ("no keys", r#"{"keys":[]}"#.into(), "invalid_body"),
        ("101 keys", too_many, "invalid_body"),
        (
            "a key breaking the rules",
            r#"{"keys":["ok","a//b"]}"#.into(),
            "invalid_key",
        ),
    ];
    for (name, body, code) in cases {
        let response = batch_get(&stack, &body).await;
        assert_eq!(
            error(&response),
            (400, code.into()),
            "{name}: {}",
            response.body
        );
    }
    let response = batch_get(&stack, r#"{"keys":["ok","a//b"]}"#).await;
    assert!(
        response.json()["message"]
            .as_str()
            .unwrap()
            .contains("keys[1]"),
        "the message names the bad key: {}",
        response.body
    );
    let mut get = common::request(Method::GET, "", None);
    get.resource = Some(s3kv::routes::BATCH_GET.into());
    let response: Response =
        api::handle_read(&stack.reader, &stack.access, &get, common::deadline(5))
            .await
            .into();
    assert_eq!(
        (response.status, response.header("allow")),
        (405, Some("POST"))
    );
}
