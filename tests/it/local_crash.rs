//! `s3kv-local` as a process of its own, killed with SIGKILL mid-burst and started again: no torn object, no lost
//! or stale acknowledged write, no deleted item back, the cache equal to the bucket, and its valkey-server gone
//! with it on every exit path (#31).
//!
//! The process is this test binary run again ([`child`], which starts the stack when `S3KV_CRASH_CHILD_DIR` is
//! set and prints its addresses), so the test needs no other build.

use std::collections::{BTreeMap, HashMap};
use std::io::BufRead;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::ChecksumMode;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use s3kv::config::Config;
use s3kv_local::{LocalStack, Options};

const CHILD_DIR: &str = "S3KV_CRASH_CHILD_DIR";
const CHILD_VALKEY: &str = "S3KV_CRASH_CHILD_VALKEY";
const KEY: &str = "crash-test-key-0123456789";
const ROUNDS: usize = 4;
const API_WRITERS: usize = 20;
const UPLOADERS: usize = 3;
/// Keys per writer: each writer owns its keys, so the writes to one key are in order.
const KEYS_PER_WRITER: usize = 3;

/// The stack in this process, for a parent test: starts when [`CHILD_DIR`] is set, says where it listens, and
/// runs until a signal stops it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "the s3kv-local process of the crash tests; they start it"]
async fn child() {
    let Some(dir) = std::env::var_os(CHILD_DIR) else {
        return;
    };
    let options = Options {
        api_key: Some(KEY.into()),
        valkey_url: std::env::var(CHILD_VALKEY).ok(),
        ..Options::loopback(PathBuf::from(dir))
    };
    match LocalStack::start(options).await {
        Ok(stack) => {
            println!(
                "READY {} {} {}",
                stack.api_addr,
                stack.s3_addr,
                stack.valkey_pid().unwrap_or(0)
            );
            s3kv_local::stop_requested().await;
            stack.shutdown().await;
            println!("STOPPED");
        }
        Err(error) => {
            println!("FAILED {error}");
            std::process::exit(3);
        }
    }
}

/// A running child stack.
struct Running {
    process: std::process::Child,
    api: SocketAddr,
    s3: aws_sdk_s3::Client,
    valkey_pid: Option<u32>,
}

async fn start_child(dir: &Path, valkey_url: Option<&str>) -> Running {
    let mut command = std::process::Command::new(std::env::current_exe().unwrap());
    command
        .args([
            "--exact",
            "local_crash::child",
            "--include-ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_DIR, dir)
        .env_remove(CHILD_VALKEY)
        .stdin(Stdio::null())
        .stdout(Stdio::piped());
    if let Some(url) = valkey_url {
        command.env(CHILD_VALKEY, url);
    }
    let mut process = command.spawn().expect("start the child stack");
    let stdout = process.stdout.take().unwrap();
    // The first line that says how the start went; a start that hangs shows as this test's timeout.
    let line = tokio::task::spawn_blocking(move || {
        let mut lines = std::io::BufReader::new(stdout).lines();
        loop {
            // libtest prints `test local_crash::child ... ` before the test's own output, on the same line.
            match lines.next() {
                Some(Ok(line)) if line.contains("READY ") || line.contains("FAILED ") => {
                    // Keep draining, so the child never blocks on a full pipe.
                    std::thread::spawn(move || lines.for_each(drop));
                    let at = line.find("READY ").or(line.find("FAILED ")).unwrap_or(0);
                    return line[at..].to_owned();
                }
                Some(Ok(_)) => {}
                _ => return "FAILED: the child exited".to_owned(),
            }
        }
    })
    .await
    .unwrap();
    let fields: Vec<&str> = line.split_whitespace().collect();
    let ["READY", api, s3, valkey_pid] = fields[..] else {
        let _ = process.kill();
        panic!("the stack did not start: {line}");
    };
    let config = Config::from_lookup(|k| (k == "S3KV_BUCKET").then(|| "s3kv".to_owned())).unwrap();
    let s3_addr: SocketAddr = s3.parse().unwrap();
    Running {
        process,
        api: api.parse().unwrap(),
        s3: s3kv_local::s3_client(s3_addr, &config),
        valkey_pid: valkey_pid.parse().ok().filter(|&pid| pid != 0),
    }
}

impl Running {
    fn kill(&mut self) {
        let _ = self.process.kill();
        let _ = self.process.wait();
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.kill();
    }
}

type Http = Client<hyper_util::client::legacy::connect::HttpConnector, Full<Bytes>>;

/// `(status, body)` of one API request, or `None` when no answer came (the stack was killed).
async fn api(
    http: &Http,
    addr: SocketAddr,
    method: &str,
    key: &str,
    body: Option<String>,
) -> Option<(u16, String)> {
    let request = http::Request::builder()
        .method(method)
        .uri(format!("http://{addr}/items/{key}"))
        .header("x-api-key", KEY)
        .body(Full::new(Bytes::from(body.unwrap_or_default())))
        .unwrap();
    let response = http.request(request).await.ok()?;
    let status = response.status().as_u16();
    let body = response.into_body().collect().await.ok()?.to_bytes();
    Some((status, String::from_utf8_lossy(&body).into_owned()))
}

/// What each key may hold: the last acknowledged state (`None`: deleted) and the states of writes that were in
/// flight when the stack was killed, which may or may not have happened.
#[derive(Default)]
struct Model {
    keys: BTreeMap<String, (Option<String>, Vec<Option<String>>)>,
}

impl Model {
    fn attempt(&mut self, key: &str, state: Option<String>) {
        self.keys
            .entry(key.to_owned())
            .or_insert((None, Vec::new()))
            .1
            .push(state);
    }

    fn acked(&mut self, key: &str, state: Option<String>) {
        self.keys.insert(key.to_owned(), (state, Vec::new()));
    }
}

/// One writer's burst until the stack stops answering: PUTs, and every fourth operation a DELETE, of its own keys,
/// through the API (`upload: false`) or straight to the bucket.
async fn burst(
    running: (SocketAddr, aws_sdk_s3::Client),
    name: String,
    upload: bool,
    round: usize,
    model: Arc<Mutex<Model>>,
    acked: Arc<AtomicUsize>,
) {
    let (addr, s3) = running;
    let http: Http = Client::builder(TokioExecutor::new()).build_http();
    for op in 0.. {
        let key = format!("crash/{name}/k{}", op % KEYS_PER_WRITER);
        let state = (op % 4 != 3).then(|| format!("{{\"round\":{round},\"op\":{op}}}"));
        model.lock().unwrap().attempt(&key, state.clone());
        let ok = match (upload, &state) {
            (false, Some(body)) => matches!(
                api(&http, addr, "PUT", &key, Some(body.clone())).await,
                Some((200 | 201, _))
            ),
            (false, None) => matches!(
                api(&http, addr, "DELETE", &key, None).await,
                Some((200 | 204 | 404, _))
            ),
            (true, Some(body)) => s3
                .put_object()
                .bucket("s3kv")
                .key(format!("{key}.json"))
                .body(ByteStream::from(body.clone().into_bytes()))
                .send()
                .await
                .is_ok(),
            (true, None) => s3
                .delete_object()
                .bucket("s3kv")
                .key(format!("{key}.json"))
                .send()
                .await
                .is_ok(),
        };
        if !ok {
            return;
        }
        model.lock().unwrap().acked(&key, state);
        acked.fetch_add(1, Ordering::SeqCst);
    }
}

/// Every object reads back whole (checksums checked) under the ETag its listing and HEAD give; every key holds an
/// acknowledged state or one that was in flight, and nothing else is in the bucket; and the API (the cache, after
/// the start-up reconcile) answers exactly what the bucket holds. Then the model holds what was found.
async fn verify(running: &Running, model: &Mutex<Model>, round: usize) {
    let s3 = &running.s3;
    let mut bucket: HashMap<String, String> = HashMap::new();
    let mut token = None;
    loop {
        let page = s3
            .list_objects_v2()
            .bucket("s3kv")
            .prefix("crash/")
            .set_continuation_token(token)
            .send()
            .await
            .expect("list");
        for object in page.contents() {
            let object_key = object.key().unwrap().to_owned();
            let get = s3
                .get_object()
                .bucket("s3kv")
                .key(&object_key)
                .checksum_mode(ChecksumMode::Enabled)
                .send()
                .await
                .unwrap_or_else(|e| panic!("round {round}: GET {object_key}: {e:?}"));
            let etag = get.e_tag().map(str::to_owned);
            let body = get.body.collect().await.unwrap_or_else(|e| {
                panic!("round {round}: {object_key} does not read back whole: {e:?}")
            });
            let body = String::from_utf8(body.to_vec()).unwrap();
            let md5 = format!("\"{}\"", s3kv_local::s3_endpoint::etag_of(body.as_bytes()));
            assert_eq!(
                etag.as_deref(),
                Some(md5.as_str()),
                "round {round}: {object_key}: GET's ETag is not its bytes'"
            );
            assert_eq!(
                object.e_tag(),
                etag.as_deref(),
                "round {round}: {object_key}: listed under another ETag"
            );
            let key = object_key.strip_suffix(".json").unwrap().to_owned();
            bucket.insert(key, body);
        }
        token = page.next_continuation_token().map(str::to_owned);
        if token.is_none() {
            break;
        }
    }
    let http: Http = Client::builder(TokioExecutor::new()).build_http();
    // A copy, so that no lock is held across the requests.
    let expected = model.lock().unwrap_or_else(|e| e.into_inner()).keys.clone();
    for key in bucket.keys() {
        assert!(
            expected.contains_key(key),
            "round {round}: {key} was never written"
        );
    }
    for (key, (acked, maybe)) in expected {
        let found = bucket.get(&key).cloned();
        assert!(
            acked == found || maybe.contains(&found),
            "round {round}: {key} holds {found:?}; acknowledged {acked:?}, in flight {maybe:?}"
        );
        let read = api(&http, running.api, "GET", &key, None)
            .await
            .expect("API answers");
        assert!(
            read.0 == 200 || read.0 == 404,
            "round {round}: GET {key}: {read:?}"
        );
        let served = (read.0 == 200).then_some(read.1);
        assert_eq!(
            served, found,
            "round {round}: the API serves {key} unlike the bucket"
        );
        model
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .acked(&key, found);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_mid_burst_never_tears_an_object_or_loses_a_write() {
    let valkey = testkit::Valkey::start();
    let dir = testkit::temp_dir("crash-loop");
    let model = Arc::new(Mutex::new(Model::default()));
    for round in 0..ROUNDS {
        let mut running = start_child(&dir, Some(&valkey.url())).await;
        verify(&running, &model, round).await;
        let acked = Arc::new(AtomicUsize::new(0));
        let writers: Vec<_> = (0..API_WRITERS + UPLOADERS)
            .map(|w| {
                let upload = w >= API_WRITERS;
                let name = if upload {
                    format!("u{w}")
                } else {
                    format!("w{w}")
                };
                tokio::spawn(burst(
                    (running.api, running.s3.clone()),
                    name,
                    upload,
                    round,
                    model.clone(),
                    acked.clone(),
                ))
            })
            .collect();
        // Killed once this many writes are acknowledged: mid-burst, at a point that differs from round to round.
        let kill_after = 40 + 17 * round;
        while acked.load(Ordering::SeqCst) < kill_after {
            tokio::task::yield_now().await;
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        running.kill();
        for writer in writers {
            writer.await.unwrap();
        }
    }
    let mut running = start_child(&dir, Some(&valkey.url())).await;
    verify(&running, &model, ROUNDS).await;
    running.kill();
    let _ = std::fs::remove_dir_all(&dir);
}

/// Waits until `pid` is gone (or a zombie about to be reaped), for at most a minute; whether it went.
async fn gone(pid: u32) -> bool {
    let dead = || {
        std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .map_or(true, |stat| stat.contains(") Z "))
    };
    for _ in 0..3000 {
        if dead() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    dead()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_private_valkey_server_stops_with_the_stack_on_sigterm_and_sigkill() {
    for signal in ["TERM", "KILL"] {
        let dir = testkit::temp_dir("valkey-orphan");
        let mut running = start_child(&dir, None).await;
        let valkey = running.valkey_pid.expect("a private valkey-server");
        assert!(!gone_now(valkey), "valkey-server {valkey} is not running");
        let status = std::process::Command::new("kill")
            .args([format!("-{signal}"), running.process.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        let exit = tokio::task::block_in_place(|| running.process.wait()).unwrap();
        if signal == "TERM" {
            assert!(exit.success(), "SIGTERM stops the stack cleanly: {exit}");
        }
        assert!(
            gone(valkey).await,
            "valkey-server {valkey} outlived s3kv-local (SIG{signal})"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}

fn gone_now(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).map_or(true, |stat| stat.contains(") Z "))
}
