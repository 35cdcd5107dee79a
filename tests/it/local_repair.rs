//! The S3 endpoint of `s3kv-local` under its one mutation lock, and on a data directory that an earlier run left
//! damaged (#31): reads are served while a write holds the lock (in `local_lock.rs`, so that each file stays under
//! ~600 lines); objects torn by an older s3kv-local (new bytes under the previous ETag and checksums) are restored
//! or set aside at start, and named in the log; and a change whose journal intent was left behind is rolled back
//! at start.
//!
//! The damaged directories are made from ones the stack itself wrote, so that every file is in the format s3s-fs
//! and the endpoint really use, and then torn by hand as the crash would have left them.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::ChecksumMode;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use s3kv::config::Config;
use s3kv_local::{LocalStack, Options};

const KEY: &str = "repair-test-key-0123456789";
pub(super) const BUCKET: &str = "s3kv";

type Http = Client<hyper_util::client::legacy::connect::HttpConnector, Full<Bytes>>;

/// The stack, in this process, on `data_dir`.
pub(super) struct Local {
    pub(super) stack: LocalStack,
    pub(super) s3: aws_sdk_s3::Client,
    http: Http,
}

impl Local {
    pub(super) async fn start(data_dir: &Path, valkey: &testkit::Valkey) -> Self {
        let options = Options {
            bucket: BUCKET.into(),
            api_key: Some(KEY.into()),
            valkey_url: Some(valkey.url()),
            ..Options::loopback(data_dir.to_owned())
        };
        let stack = LocalStack::start(options)
            .await
            .expect("the local stack starts");
        let config =
            Config::from_lookup(|k| (k == "S3KV_BUCKET").then(|| BUCKET.to_owned())).unwrap();
        Self {
            s3: s3kv_local::s3_client(stack.s3_addr, &config),
            http: Client::builder(TokioExecutor::new()).build_http(),
            stack,
        }
    }

    /// Stops the stack once every change has been synced; the data directory stays.
    pub(super) async fn stop(self) {
        assert!(
            self.stack.backlog.wait_idle(Duration::from_secs(20)).await,
            "notifications not synced within 20 s"
        );
        self.stack.shutdown().await;
    }

    /// `(status, body)` of one API request; `path` is what follows `/items/`.
    pub(super) async fn api(&self, method: &str, path: &str, body: Option<&str>) -> (u16, String) {
        let request = http::Request::builder()
            .method(method)
            .uri(format!("http://{}/items/{path}", self.stack.api_addr))
            .header("x-api-key", KEY)
            .body(Full::new(Bytes::from(body.unwrap_or_default().to_owned())))
            .unwrap();
        let response = self.http.request(request).await.expect("the API answers");
        let status = response.status().as_u16();
        let body = response.into_body().collect().await.unwrap().to_bytes();
        (status, String::from_utf8_lossy(&body).into_owned())
    }

    /// PutObject; the new version's id.
    pub(super) async fn upload(&self, object_key: &str, body: &str) -> String {
        let put = self
            .s3
            .put_object()
            .bucket(BUCKET)
            .key(object_key)
            .body(ByteStream::from(body.as_bytes().to_vec()))
            .send()
            .await
            .unwrap_or_else(|e| panic!("PUT {object_key}: {e:?}"));
        put.version_id().expect("a version id").to_owned()
    }

    /// The object's bytes, read with its checksums checked and its ETag held to its bytes' MD5; `None` when
    /// there is no such object.
    pub(super) async fn read(&self, object_key: &str) -> Option<String> {
        let get = match self
            .s3
            .get_object()
            .bucket(BUCKET)
            .key(object_key)
            .checksum_mode(ChecksumMode::Enabled)
            .send()
            .await
        {
            Ok(get) => get,
            Err(e) if e.as_service_error().is_some_and(|e| e.is_no_such_key()) => return None,
            Err(e) => panic!("GET {object_key}: {e:?}"),
        };
        let etag = get.e_tag().map(str::to_owned);
        let body = get
            .body
            .collect()
            .await
            .unwrap_or_else(|e| panic!("{object_key} does not read back whole: {e:?}"))
            .to_vec();
        let md5 = format!("\"{}\"", s3kv_local::s3_endpoint::etag_of(&body));
        assert_eq!(
            etag.as_deref(),
            Some(md5.as_str()),
            "{object_key}: GET's ETag is not its bytes'"
        );
        Some(String::from_utf8(body).unwrap())
    }

    /// The object keys a listing of the whole bucket names.
    pub(super) async fn listed(&self) -> Vec<String> {
        let page = self
            .s3
            .list_objects_v2()
            .bucket(BUCKET)
            .send()
            .await
            .expect("list");
        page.contents()
            .iter()
            .filter_map(|o| o.key().map(str::to_owned))
            .collect()
    }
}

/// The three files s3s-fs keeps an object in, as the endpoint's journal names them: the bytes, the attributes
/// (`metadata.json`) and the ETag and checksums (`internal.json`).
fn object_files(data_dir: &Path, object_key: &str) -> [(&'static str, PathBuf); 3] {
    let stem = format!(
        ".bucket-{}.object-{}",
        URL_SAFE_NO_PAD.encode(BUCKET),
        URL_SAFE_NO_PAD.encode(object_key)
    );
    [
        ("object", data_dir.join(BUCKET).join(object_key)),
        ("metadata", data_dir.join(format!("{stem}.metadata.json"))),
        ("internal", data_dir.join(format!("{stem}.internal.json"))),
    ]
}

/// Where the endpoint keeps a key's versions.
fn versions_dir(data_dir: &Path, object_key: &str) -> PathBuf {
    data_dir
        .join(".versions")
        .join(BUCKET)
        .join(URL_SAFE_NO_PAD.encode(object_key))
}

/// Tears `object_key` as an s3kv-local before the journal left it when killed between s3s-fs's renames: `bytes`
/// renamed over the object, its `internal.json` (ETag, CRC32) still the previous version's. The bytes are newer
/// than the `internal.json`, as the rename order made them.
fn tear(data_dir: &Path, object_key: &str, bytes: &str) {
    let [(_, object), _, (_, internal)] = object_files(data_dir, object_key);
    let recorded: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&internal).unwrap()).unwrap();
    assert!(
        recorded.get("e_tag").is_some(),
        "s3s-fs's internal.json keeps the ETag as e_tag: {recorded}"
    );
    let partial = object.with_extension("tearing");
    std::fs::write(&partial, bytes).unwrap();
    std::fs::rename(&partial, &object).unwrap();
    let later = std::fs::metadata(&internal).unwrap().modified().unwrap() + Duration::from_secs(5);
    std::fs::File::options()
        .write(true)
        .open(&object)
        .unwrap()
        .set_modified(later)
        .unwrap();
}

/// What the stack logs while it is started in this task: the start-up repairs log before it serves, from code the
/// starting future runs on this thread.
#[derive(Clone, Default)]
struct Log(Arc<Mutex<Vec<u8>>>);

impl Write for Log {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Log {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }

    /// The log lines that name `object_key`.
    fn lines_naming(&self, object_key: &str) -> Vec<String> {
        self.text()
            .lines()
            .filter(|line| {
                line.contains(&format!("key={object_key}"))
                    || line.contains(&format!("key=\"{object_key}\""))
            })
            .map(str::to_owned)
            .collect()
    }
}

/// Starts the stack on `data_dir`, capturing what it logs on this thread while starting.
async fn start_logged(data_dir: &Path, valkey: &testkit::Valkey) -> (Local, Log) {
    let log = Log::default();
    let writer = log.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_ansi(false)
        .with_max_level(tracing::Level::INFO)
        .with_writer(move || writer.clone())
        .finish();
    let guard = tracing::subscriber::set_default(subscriber);
    let local = Local::start(data_dir, valkey).await;
    drop(guard);
    (local, log)
}

pub(super) fn journal_entries(data_dir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(data_dir.join(".journal"))
        .map(|entries| entries.map(|e| e.unwrap().path()).collect())
        .unwrap_or_default()
}

/// A data directory an older s3kv-local (before writes were journaled) left torn by a crash: one object holds new
/// bytes under its previous version's ETag and CRC32, with a version record of the previous bytes; another holds
/// new bytes under an ETag that no version has (written before versions were kept). The stack starts; the first
/// reads back as its last version, the second is moved to `.quarantine/` and served as absent; both are named in
/// the log; every other object is served, by the S3 endpoint and the API.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn objects_torn_by_an_older_s3kv_local_are_repaired_or_set_aside_at_start() {
    let valkey = testkit::Valkey::start();
    let dir = testkit::temp_dir("repair-torn");
    let data_dir = dir.join("data");
    let others: Vec<(String, String)> = (0..5)
        .map(|n| (format!("ok/{n}.json"), format!(r#"{{"ok":{n}}}"#)))
        .collect();

    let local = Local::start(&data_dir, &valkey).await;
    for (key, body) in &others {
        local.upload(key, body).await;
    }
    local.upload("torn/restored.json", r#"{"v":0}"#).await;
    let last = local.upload("torn/restored.json", r#"{"v":1}"#).await;
    local.upload("torn/orphan.json", r#"{"o":1}"#).await;
    local.stop().await;

    tear(
        &data_dir,
        "torn/restored.json",
        r#"{"v":2,"never":"acknowledged"}"#,
    );
    // Written before versions were kept: no version holds its ETag.
    std::fs::remove_dir_all(versions_dir(&data_dir, "torn/orphan.json")).unwrap();
    tear(&data_dir, "torn/orphan.json", r#"{"o":2}"#);

    let (local, log) = start_logged(&data_dir, &valkey).await;

    // The last version, whole, under its own ETag and as that version.
    assert_eq!(
        local.read("torn/restored.json").await.as_deref(),
        Some(r#"{"v":1}"#)
    );
    let head = local
        .s3
        .head_object()
        .bucket(BUCKET)
        .key("torn/restored.json")
        .send()
        .await
        .unwrap();
    assert_eq!(head.version_id(), Some(last.as_str()));
    assert_eq!(
        local.api("GET", "torn/restored", None).await,
        (200, r#"{"v":1}"#.to_owned())
    );
    let restored = log.lines_naming("torn/restored.json");
    assert!(
        restored
            .iter()
            .any(|l| l.contains("torn object") && l.contains(&last)),
        "the repair is not logged with the version restored: {restored:?}\n{}",
        log.text()
    );

    // Set aside, whole, and absent.
    assert_eq!(local.read("torn/orphan.json").await, None);
    assert_eq!(local.api("GET", "torn/orphan", None).await.0, 404);
    let quarantined: Vec<PathBuf> = std::fs::read_dir(data_dir.join(".quarantine"))
        .expect("a .quarantine directory")
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(quarantined.len(), 1, "{quarantined:?}");
    assert_eq!(
        std::fs::read_to_string(quarantined[0].join("object")).unwrap(),
        r#"{"o":2}"#
    );
    assert!(quarantined[0].join("internal.json").is_file());
    let orphan = log.lines_naming("torn/orphan.json");
    assert!(
        orphan
            .iter()
            .any(|l| l.contains("torn object") && l.contains(".quarantine")),
        "the quarantine is not logged: {orphan:?}\n{}",
        log.text()
    );

    // Everything else, as it was.
    for (key, body) in &others {
        assert_eq!(
            local.read(key).await.as_deref(),
            Some(body.as_str()),
            "{key}"
        );
        let item = key.strip_suffix(".json").unwrap();
        assert_eq!(
            local.api("GET", item, None).await,
            (200, body.clone()),
            "{item}"
        );
    }
    let mut expected: Vec<String> = others.iter().map(|(k, _)| k.clone()).collect();
    expected.push("torn/restored.json".into());
    expected.sort();
    assert_eq!(local.listed().await, expected);
    local.stop().await;
    let _ = std::fs::remove_dir_all(&dir);
}

/// Bytes changed behind the endpoint's back (bit rot, a hand edit) without the signs of a torn write: repair does
/// not recognise it, and every read of it fails its checksum, which looks retryable. The stack must still start
/// (reconcile gives the key up after its retry bound instead of retrying until its 300 s deadline), name it in the
/// log, and serve every other key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_object_that_cannot_be_read_is_named_and_the_stack_starts_and_serves_the_rest() {
    let valkey = testkit::Valkey::start();
    let dir = testkit::temp_dir("repair-reads");
    let data_dir = dir.join("data");
    let local = Local::start(&data_dir, &valkey).await;
    local.upload("ok/a.json", r#"{"a":1}"#).await;
    local.upload("rot/b.json", r#"{"b":1}"#).await;
    local.stop().await;
    // Valkey keeps what the first run cached: empty it, so reconcile must read every object at the next start.
    {
        use crate::common::ValkeyClient;
        use fred::prelude::*;
        let client = valkey.client().await;
        let _: () = client.flushall(false).await.unwrap();
    }

    let [(_, object), _, (_, internal)] = object_files(&data_dir, "rot/b.json");
    std::fs::write(&object, r#"{"b":2}"#).unwrap();
    let earlier =
        std::fs::metadata(&internal).unwrap().modified().unwrap() - Duration::from_secs(5);
    std::fs::File::options()
        .write(true)
        .open(&object)
        .unwrap()
        .set_modified(earlier)
        .unwrap();

    // Only against a hang: before the bound, the start waited out reconcile's 300 s deadline.
    let (local, log) =
        tokio::time::timeout(Duration::from_secs(150), start_logged(&data_dir, &valkey))
            .await
            .expect("the stack starts though one object cannot be read");
    assert!(
        log.text().contains("could not be reconciled") && log.text().contains("rot/b.json"),
        "the unreadable object is not named: {}",
        log.text()
    );
    assert_eq!(
        local.api("GET", "ok/a", None).await,
        (200, r#"{"a":1}"#.to_owned())
    );
    assert_eq!(local.listed().await.len(), 2);
    local.stop().await;
    let _ = std::fs::remove_dir_all(&dir);
}

/// Changes a crash interrupted, their journal intents left behind: one replaced an object (its new bytes,
/// attributes, ETag and version record all written, the intent not yet removed), one created a key. At start
/// both are rolled back: the first key reads back as before, its history without the change's version; the
/// second is absent; each is named in the log; the journal is empty; every other object is served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changes_interrupted_mid_way_are_rolled_back_at_start() {
    let valkey = testkit::Valkey::start();
    let dir = testkit::temp_dir("repair-journal");
    let data_dir = dir.join("data");
    let saved = dir.join("saved");
    std::fs::create_dir_all(&saved).unwrap();

    let local = Local::start(&data_dir, &valkey).await;
    local.upload("ok/kept.json", r#"{"kept":true}"#).await;
    let before = local.upload("mid/replaced.json", r#"{"v":1}"#).await;
    // What the journal's links would have kept: the key's three files before the change.
    for (part, path) in object_files(&data_dir, "mid/replaced.json") {
        std::fs::copy(&path, saved.join(part)).unwrap();
    }
    let change = local.upload("mid/replaced.json", r#"{"v":2}"#).await;
    local.upload("mid/created.json", r#"{"new":true}"#).await;
    local.stop().await;

    // The intents, as `Journal::begin` writes them, left behind as by a kill before the commit.
    let replaced = data_dir.join(".journal").join("4242-0");
    std::fs::create_dir_all(&replaced).unwrap();
    for part in ["object", "metadata", "internal"] {
        std::fs::rename(saved.join(part), replaced.join(part)).unwrap();
    }
    let intent = |key: &str, newest: Option<&str>| {
        serde_json::to_vec(&serde_json::json!({
            "bucket": BUCKET,
            "key": key,
            "newest_version": newest,
        }))
        .unwrap()
    };
    std::fs::write(
        replaced.join("intent.json"),
        intent("mid/replaced.json", Some(&before)),
    )
    .unwrap();
    let created = data_dir.join(".journal").join("4242-1");
    std::fs::create_dir_all(&created).unwrap();
    std::fs::write(
        created.join("intent.json"),
        intent("mid/created.json", None),
    )
    .unwrap();

    let (local, log) = start_logged(&data_dir, &valkey).await;

    assert_eq!(
        local.read("mid/replaced.json").await.as_deref(),
        Some(r#"{"v":1}"#)
    );
    assert_eq!(
        local.api("GET", "mid/replaced", None).await,
        (200, r#"{"v":1}"#.to_owned())
    );
    let history = local
        .s3
        .list_object_versions()
        .bucket(BUCKET)
        .prefix("mid/replaced.json")
        .send()
        .await
        .unwrap();
    let ids: Vec<&str> = history
        .versions()
        .iter()
        .filter_map(|v| v.version_id())
        .collect();
    assert_eq!(
        ids,
        [before.as_str()],
        "the rolled-back change's version {change} is kept"
    );

    assert_eq!(local.read("mid/created.json").await, None);
    assert_eq!(local.api("GET", "mid/created", None).await.0, 404);
    assert!(!versions_dir(&data_dir, "mid/created.json")
        .read_dir()
        .is_ok_and(|mut d| d.next().is_some()));

    for key in ["mid/replaced.json", "mid/created.json"] {
        let lines = log.lines_naming(key);
        assert!(
            lines.iter().any(|l| l.contains("rolled back")),
            "{key}: the rollback is not logged: {lines:?}\n{}",
            log.text()
        );
    }
    assert_eq!(journal_entries(&data_dir), Vec::<PathBuf>::new());

    assert_eq!(
        local.read("ok/kept.json").await.as_deref(),
        Some(r#"{"kept":true}"#)
    );
    assert_eq!(
        local.api("GET", "ok/kept", None).await,
        (200, r#"{"kept":true}"#.to_owned())
    );
    assert_eq!(local.listed().await, ["mid/replaced.json", "ok/kept.json"]);
    local.stop().await;
    let _ = std::fs::remove_dir_all(&dir);
}
