//! End to end through a running `s3kv-local` stack: real HTTP to the API, the real S3 protocol to its endpoint
//! (aws-sdk-s3, and the aws CLI when installed), notifications delivered to the syncer, reads from Valkey.

use crate::common;
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart, Delete, ObjectIdentifier};
use common::{Reply, TestStack};
use s3kv::percent;
use s3kv_local::Options;

const KEY: &str = "test-key";

/// The shared stack with one full-access key, and the requests these tests make with it.
pub(super) struct Local(TestStack);

impl std::ops::Deref for Local {
    type Target = TestStack;
    fn deref(&self) -> &TestStack {
        &self.0
    }
}

impl Local {
    pub(super) async fn start(name: &str) -> Self {
        Self(TestStack::start(name, |o| o.api_key = Some(KEY.into())).await)
    }

    async fn request(
        &self,
        method: &str,
        key: &str,
        api_key: Option<&str>,
        body: Option<&str>,
    ) -> Reply {
        let path = format!("/items/{}", percent::encode_path(key));
        self.call(
            method,
            &path,
            &api_key
                .map(|k| ("x-api-key", k))
                .into_iter()
                .collect::<Vec<_>>(),
            body,
        )
        .await
    }

    /// Any request to the API: `path` may carry a query string.
    async fn call(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<&str>,
    ) -> Reply {
        let method = http::Method::from_bytes(method.as_bytes()).unwrap();
        self.send(method, path, None, headers, body).await
    }

    async fn restart(self, while_down: impl FnOnce(&mut Options)) -> Self {
        Self(self.0.restart(while_down).await)
    }

    async fn put(&self, key: &str, body: &str) -> Reply {
        self.request("PUT", key, Some(KEY), Some(body)).await
    }

    pub(super) async fn get(&self, key: &str) -> Reply {
        self.request("GET", key, Some(KEY), None).await
    }
}

#[tokio::test]
async fn manual_uploads_and_api_writes_with_awkward_keys_round_trip() {
    let local = Local::start("keys").await;

    local
        .upload_object("manual/upload.json", b"{\"by\":\"hand\"}")
        .await;
    for key in [
        "with space",
        "plus+sign",
        "per%cent",
        "ünï/cødé ✓",
        "a+b %2B c",
    ] {
        let body = serde_json::json!({ "key": key }).to_string();
        assert_eq!(local.put(key, &body).await.status, 201, "{key}");
        local.settle().await;
        let read = local.get(key).await;
        assert_eq!(
            (read.status, read.header("x-cache"), read.body.as_str()),
            (200, Some("HIT"), body.as_str()),
            "{key}"
        );
        let stored = local
            .s3()
            .get_object()
            .bucket("s3kv")
            .key(format!("{key}.json"))
            .send()
            .await;
        assert!(stored.is_ok(), "{key} is stored under its decoded name");
    }
    local.settle().await;
    let read = local.get("manual/upload").await;
    assert_eq!(
        (read.status, read.header("x-cache"), read.body.as_str()),
        (200, Some("HIT"), "{\"by\":\"hand\"}")
    );
}

#[tokio::test]
async fn multipart_copy_and_delete_objects_propagate() {
    let local = Local::start("s3ops").await;
    let s3 = local.s3();

    // A 5.6 MB JSON document in two parts (S3's minimum part size is 5 MiB), still small enough for a Lambda
    // response (6 MB; bigger items get 502 response_too_large, see bad_input).
    let document = serde_json::json!({ "rows": vec!["x".repeat(10_000); 560] }).to_string();
    assert!(document.len() > 5 * 1024 * 1024 + 100_000);
    let (first, second) = document.as_bytes().split_at(5 * 1024 * 1024);
    let upload = s3
        .create_multipart_upload()
        .bucket("s3kv")
        .key("big.json")
        .send()
        .await
        .unwrap();
    let id = upload.upload_id().unwrap();
    let mut parts = Vec::new();
    for (number, chunk) in [(1, first), (2, second)] {
        let part = s3
            .upload_part()
            .bucket("s3kv")
            .key("big.json")
            .upload_id(id)
            .part_number(number)
            .body(ByteStream::from(chunk.to_vec()))
            .send()
            .await
            .unwrap();
        parts.push(
            CompletedPart::builder()
                .part_number(number)
                .set_e_tag(part.e_tag().map(str::to_owned))
                .build(),
        );
    }
    let completed = CompletedMultipartUpload::builder()
        .set_parts(Some(parts))
        .build();
    s3.complete_multipart_upload()
        .bucket("s3kv")
        .key("big.json")
        .upload_id(id)
        .multipart_upload(completed)
        .send()
        .await
        .unwrap();

    local
        .upload_object("source.json", b"{\"copied\":true}")
        .await;
    s3.copy_object()
        .bucket("s3kv")
        .key("copy.json")
        .copy_source("s3kv/source.json")
        .send()
        .await
        .unwrap();
    for key in ["d1", "d2", "d3"] {
        local.upload_object(&format!("{key}.json"), b"1").await;
    }
    local.settle().await;
    assert_eq!(local.get("d2").await.status, 200);

    let big = local.get("big").await;
    assert_eq!((big.status, big.header("x-cache")), (200, Some("HIT")));
    assert!(
        big.body == document,
        "the multipart document is served whole"
    );
    let copy = local.get("copy").await;
    assert_eq!(
        (copy.status, copy.header("x-cache"), copy.body.as_str()),
        (200, Some("HIT"), "{\"copied\":true}")
    );

    let ids: Vec<ObjectIdentifier> = ["d1", "d2", "d3"]
        .iter()
        .map(|k| {
            ObjectIdentifier::builder()
                .key(format!("{k}.json"))
                .build()
                .unwrap()
        })
        .collect();
    let delete = Delete::builder().set_objects(Some(ids)).build().unwrap();
    s3.delete_objects()
        .bucket("s3kv")
        .delete(delete)
        .send()
        .await
        .unwrap();
    local.settle().await;
    for key in ["d1", "d2", "d3"] {
        let read = local.get(key).await;
        assert_eq!(
            (read.status, read.header("x-cache")),
            (404, Some("HIT")),
            "{key}: the tombstone answers"
        );
    }
}

#[tokio::test]
async fn a_wrong_or_missing_api_key_is_forbidden() {
    let local = Local::start("auth").await;
    for api_key in [None, Some("wrong"), Some("")] {
        for method in ["GET", "PUT", "DELETE"] {
            let reply = local.request(method, "k", api_key, Some("{}")).await;
            assert_eq!(reply.status, 403, "{method} with {api_key:?}");
        }
    }
    let listed = local
        .s3()
        .list_objects_v2()
        .bucket("s3kv")
        .send()
        .await
        .unwrap();
    assert_eq!(
        listed.key_count(),
        Some(0),
        "nothing was written without the key"
    );
}

#[tokio::test]
async fn two_hundred_concurrent_writes_leave_the_cache_equal_to_s3() {
    let local = std::sync::Arc::new(Local::start("concurrent").await);
    let keys = ["hot/a", "hot/b", "hot/c", "hot/d"];
    let writes = (0..200).map(|i| {
        let local = local.clone();
        tokio::spawn(async move {
            let key = keys[i % keys.len()];
            let reply = local.put(key, &format!("{{\"write\":{i}}}")).await;
            assert!(matches!(reply.status, 200 | 201), "{reply:?}");
        })
    });
    futures::future::try_join_all(writes).await.unwrap();
    local.settle().await;
    for key in keys {
        let object = local
            .s3()
            .get_object()
            .bucket("s3kv")
            .key(format!("{key}.json"))
            .send()
            .await
            .unwrap();
        let in_s3 = String::from_utf8(object.body.collect().await.unwrap().to_vec()).unwrap();
        let read = local.get(key).await;
        assert_eq!(
            (read.header("x-cache"), read.body.as_str()),
            (Some("HIT"), in_s3.as_str()),
            "{key}"
        );
    }
}

#[tokio::test]
async fn a_restart_keeps_the_data_and_never_serves_stale_items() {
    /// What the restarted stack serves: the kept item from its cache, the removed one not at all.
    async fn matches_the_bucket(local: &Local, valkey: &str) {
        local.settle().await;
        let kept = local.get("kept").await;
        assert_eq!(
            (kept.status, kept.header("x-cache"), kept.body.as_str()),
            (200, Some("HIT"), "{\"v\":1}"),
            "{valkey}"
        );
        assert_eq!(
            local.get("removed-while-down").await.status,
            404,
            "{valkey}"
        );
    }

    let local = Local::start("restart").await;
    assert_eq!(local.put("kept", "{\"v\":1}").await.status, 201);
    assert_eq!(
        local.put("removed-while-down", "{\"v\":1}").await.status,
        201
    );
    local.settle().await;
    assert_eq!(
        local.get("removed-while-down").await.header("x-cache"),
        Some("HIT")
    );
    // While the stack is down, someone removes an object from the data directory by hand.
    let removed = local.dir.join("data/s3kv/removed-while-down.json");
    let local = local
        .restart(|_| std::fs::remove_file(&removed).unwrap())
        .await;
    // The same Valkey (which still caches the removed item), then a fresh, private one.
    matches_the_bucket(&local, "the same valkey").await;
    let local = local.restart(|o| o.valkey_url = None).await;
    matches_the_bucket(&local, "a private valkey").await;
}

#[tokio::test]
async fn compare_and_swap_lets_exactly_one_of_many_racing_writers_win() {
    let local = Local::start("cas").await;
    let created = local
        .call(
            "PUT",
            "/items/counter",
            &[("x-api-key", "test-key"), ("if-none-match", "*")],
            Some("0"),
        )
        .await;
    assert_eq!(created.status, 201, "{}", created.body);
    let v0 = created.header("etag").unwrap().to_owned();

    // Twenty clients read version 0 and all try to swap it for their own value at once.
    let attempts = (1..=20).map(|i| {
        let (local, v0) = (&local, v0.clone());
        async move {
            let body = i.to_string();
            let headers = [("x-api-key", "test-key"), ("if-match", v0.as_str())];
            (
                i,
                local
                    .call("PUT", "/items/counter", &headers, Some(&body))
                    .await,
            )
        }
    });
    let results = futures::future::join_all(attempts).await;
    let winners: Vec<_> = results.iter().filter(|(_, r)| r.status == 200).collect();
    assert_eq!(winners.len(), 1, "{results:?}");
    for (_, reply) in results.iter().filter(|(_, r)| r.status != 200) {
        assert!(matches!(reply.status, 409 | 412), "{reply:?}");
    }
    let (winner, _) = winners[0];
    local.settle().await;
    let read = local.get("counter").await;
    assert_eq!(
        (read.status, read.body.as_str()),
        (200, winner.to_string().as_str())
    );
    let strong = local
        .call(
            "GET",
            "/items/counter?consistent=true",
            &[("x-api-key", "test-key")],
            None,
        )
        .await;
    assert_eq!(
        (strong.body.as_str(), strong.header("x-cache")),
        (read.body.as_str(), Some("BYPASS"))
    );
    let unchanged = local
        .call(
            "GET",
            "/items/counter",
            &[
                ("x-api-key", "test-key"),
                ("if-none-match", read.header("etag").unwrap()),
            ],
            None,
        )
        .await;
    assert_eq!((unchanged.status, unchanged.body.as_str()), (304, ""));
}

#[tokio::test]
async fn browsers_get_cors_headers_and_preflights_need_no_api_key() {
    let local = Local::start("cors").await;
    let preflight = local
        .call(
            "OPTIONS",
            "/items/flag",
            &[
                ("origin", "http://localhost:5173"),
                ("access-control-request-method", "PUT"),
            ],
            None,
        )
        .await;
    assert_eq!(preflight.status, 204, "{preflight:?}");
    assert_eq!(preflight.header("access-control-allow-origin"), Some("*"));
    assert_eq!(
        preflight.header("access-control-allow-methods"),
        Some(s3kv::api::CORS_ALLOW_METHODS)
    );
    let allowed = preflight
        .header("access-control-allow-headers")
        .unwrap()
        .to_ascii_lowercase();
    for header in ["x-api-key", "if-match", "if-none-match", "content-type"] {
        assert!(
            allowed.split(',').any(|h| h == header),
            "{header} not in {allowed}"
        );
    }
    // Every answer carries the origin and exposes the headers a client reads, errors included.
    let put = local.put("flag", "true").await;
    let forbidden = local.request("GET", "flag", None, None).await;
    let missing = local.get("nothing").await;
    for reply in [&put, &forbidden, &missing] {
        assert_eq!(
            reply.header("access-control-allow-origin"),
            Some("*"),
            "{reply:?}"
        );
    }
    assert_eq!(
        (put.status, forbidden.status, missing.status),
        (201, 403, 404)
    );
    let exposed = put
        .header("access-control-expose-headers")
        .unwrap()
        .to_ascii_lowercase();
    assert!(
        exposed.contains("etag") && exposed.contains("x-cache"),
        "{exposed}"
    );
}

#[tokio::test]
async fn listing_and_batch_get_are_routed_like_api_gateway() {
    let local = Local::start("routes").await;
    for key in ["cfg/a", "cfg/b c", "other"] {
        assert_eq!(local.put(key, "{}").await.status, 201);
    }
    local.settle().await;
    let key = [("x-api-key", "test-key")];
    let listed = local
        .call("GET", "/items?prefix=cfg%2F&limit=1", &key, None)
        .await;
    assert_eq!(listed.status, 200, "{listed:?}");
    let page: serde_json::Value = serde_json::from_str(&listed.body).unwrap();
    assert_eq!(page["items"][0]["key"], "cfg/a");
    // Listed ETags are the ones reads return (s3s-fs lists without them; the endpoint fills them in).
    let read = local.get("cfg/a").await;
    assert_eq!(
        page["items"][0]["etag"]
            .as_str()
            .map(|t| format!("\"{t}\""))
            .as_deref(),
        read.header("etag")
    );
    let cursor = page["cursor"].as_str().expect("a second page");
    let next = local
        .call(
            "GET",
            &format!("/items?prefix=cfg/&limit=1&cursor={cursor}"),
            &key,
            None,
        )
        .await;
    let page: serde_json::Value = serde_json::from_str(&next.body).unwrap();
    assert_eq!(page["items"][0]["key"], "cfg/b c", "{next:?}");

    let batch = local
        .call(
            "POST",
            "/batch-get",
            &key,
            Some(r#"{"keys":["cfg/b c","nope"]}"#),
        )
        .await;
    assert_eq!(batch.status, 200, "{batch:?}");
    let batch: serde_json::Value = serde_json::from_str(&batch.body).unwrap();
    assert_eq!(
        (&batch["items"][0]["cache"], &batch["items"][1]["found"]),
        (&serde_json::json!("HIT"), &serde_json::json!(false))
    );
    // Keys the local file store cannot hold are refused up front, not after 27 s of retries.
    let long = "k".repeat(200);
    let refused = local.put(&long, "{}").await;
    assert_eq!(refused.status, 400, "{refused:?}");
    assert!(refused.body.contains("invalid_key"), "{}", refused.body);
    let upload = local
        .s3()
        .put_object()
        .bucket("s3kv")
        .key(format!("{long}.json"))
        .body(ByteStream::from_static(b"{}"))
        .send()
        .await;
    let status = upload
        .unwrap_err()
        .raw_response()
        .map(|r| r.status().as_u16());
    assert_eq!(status, Some(400));
    // The API key is required on the new routes too, and methods without an integration are refused.
    assert_eq!(local.call("GET", "/items", &[], None).await.status, 403);
    assert_eq!(local.call("DELETE", "/items", &key, None).await.status, 403);
    assert_eq!(
        local.call("GET", "/batch-get", &key, None).await.status,
        403
    );
}
