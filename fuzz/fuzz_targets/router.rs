//! The request router: any API Gateway proxy request (any method, path parameter, body, base64 flag) gets an
//! answer with a status below 500 and a JSON body naming the problem, never a panic; and a write the API accepts
//! is stored byte for byte and read back exactly, and only when the caller's key may write it. S3 is the in-memory store with S3's semantics; the cache is
//! unreachable, so reads take the bypass path.
#![no_main]

use std::collections::HashMap;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use arbitrary::Arbitrary;
use aws_lambda_events::apigw::{ApiGatewayProxyRequest, ApiGatewayProxyResponse};
use aws_lambda_events::encodings::Body;
use base64::Engine;
use http::Method;
use libfuzzer_sys::fuzz_target;
use s3kv::access::Access;
use s3kv::api;
use s3kv::config::Config;
use s3kv::key::ItemKey;
use s3kv::memory::MemoryStore;
use s3kv::ports::{
    Applied, Cache, CacheChange, CacheError, CacheLookup, Cursor, Feed, FeedError, FeedPage, Object,
    Snapshot,
};
use s3kv::read::Reader;
use s3kv::sequencer::Sequencer;
use s3kv::write::Writer;

#[derive(Debug, Arbitrary)]
struct Input {
    method: u8,
    custom_method: String,
    /// 0: /items/{key+}, 1: /items (listing), 2: /batch-get, 3: /public/{key+}, 4: /versions/{key+},
    /// 5: /restore/{key+}, 6: /changes, else: no resource.
    route: u8,
    /// An index into [`KEY_IDS`], or no key.
    key_id: Option<u8>,
    key: Option<String>,
    extra_params: bool,
    body: Option<Vec<u8>>,
    base64: bool,
    mangle_base64: bool,
    headers: Vec<(u8, String)>,
    query: Vec<(u8, String)>,
}

const HEADERS: [&str; 3] = ["if-match", "if-none-match", "content-type"];
const QUERY: [&str; 8] = [
    "dryRun",
    "consistent",
    "prefix",
    "limit",
    "cursor",
    "version",
    "wait",
    "after",
];

/// A full write key, a read key, a write key for `flags/` only, and a key with no grant.
const KEY_IDS: [&str; 4] = ["writer1", "reader1", "flags1", "stranger1"];
const GRANTS: &str = r#"{"writer1": {"role": "write"}, "reader1": {"role": "read"},
    "flags1": {"role": "write", "prefixes": ["flags/"]}}"#;

/// Valkey down: every call fails, as when the cache is unreachable.
struct Down;

fn down<T>() -> Result<T, CacheError> {
    Err(CacheError::Unavailable("down".into()))
}

impl Cache for Down {
    async fn lookup(&self, _: &str) -> Result<CacheLookup, CacheError> {
        down()
    }
    async fn lookup_many(&self, _: &[String]) -> Result<Vec<CacheLookup>, CacheError> {
        down()
    }
    async fn marks_many(&self, _: &[String]) -> Result<Vec<s3kv::ports::Marks>, CacheError> {
        down()
    }
    async fn apply(&self, _: &str, _: &Sequencer, _: &CacheChange) -> Result<Applied, CacheError> {
        down()
    }
    async fn fill(&self, _: &str, _: &Object) -> Result<bool, CacheError> {
        down()
    }
    async fn evict(&self, _: &str) -> Result<(), CacheError> {
        down()
    }
    async fn note(&self, _: &str) -> Result<Option<String>, CacheError> {
        down()
    }
    async fn set_note(&self, _: &str, _: Option<&str>, _: Duration) -> Result<(), CacheError> {
        down()
    }
    async fn keys(&self, _: &str, _: &(dyn Fn(&str) -> bool + Sync)) -> Result<Vec<String>, CacheError> {
        down()
    }
    async fn snapshot(&self, _: &str) -> Result<Option<Snapshot>, CacheError> {
        down()
    }
    async fn remove_if_unchanged(&self, _: &str, _: &Snapshot) -> Result<bool, CacheError> {
        down()
    }
}

/// The change feed answers, and is empty: nothing is synced here. (A feed that is down answers 503, which this
/// target counts as a failure; the integration tests cover that path.)
impl Feed for Down {
    async fn announce(&self, _: &str) -> Result<(), CacheError> {
        Ok(())
    }
    async fn tail(&self) -> Result<Cursor, CacheError> {
        Ok(Cursor::START)
    }
    async fn read(&self, after: Cursor, _: usize) -> Result<FeedPage, FeedError> {
        if after > Cursor::START {
            return Err(FeedError::Expired {
                restart: Cursor::START,
            });
        }
        Ok(FeedPage::default())
    }
    async fn wait(&self, _: Cursor, _: Duration) -> Result<bool, CacheError> {
        Ok(false)
    }
}

struct World {
    runtime: tokio::runtime::Runtime,
    store: MemoryStore,
    writer: Writer<MemoryStore>,
    reader: Reader<MemoryStore, Down>,
    access: Access,
    config: Config,
}

fn world() -> &'static World {
    static WORLD: OnceLock<World> = OnceLock::new();
    WORLD.get_or_init(|| {
        let env = HashMap::from([
            ("S3KV_BUCKET", "b"),
            ("S3KV_PREFIX", "items/"),
            ("S3KV_MAX_BODY_BYTES", "4096"),
            ("S3KV_API_KEYS", GRANTS),
            ("S3KV_PUBLIC_PREFIX", "public/"),
            // Waits end at once: with the cache down, a wait would poll the store for its whole length.
            ("S3KV_MAX_WAIT_SECS", "0"),
        ]);
        let config = Config::from_lookup(|k| env.get(k).map(|v| v.to_string())).unwrap();
        let store = MemoryStore::default();
        World {
            runtime: tokio::runtime::Builder::new_current_thread()
                .enable_time()
                .build()
                .unwrap(),
            writer: Writer::new(store.clone(), &config),
            reader: Reader::new(store.clone(), Down, &config),
            access: Access::from_config(&config),
            store,
            config,
        }
    })
}

fn call(world: &World, request: ApiGatewayProxyRequest) -> ApiGatewayProxyResponse {
    let deadline = Instant::now() + Duration::from_secs(5);
    world.runtime.block_on(async {
        if request.http_method == Method::GET {
            api::handle_read(&world.reader, &world.access, &request, deadline).await
        } else {
            api::handle_write(&world.writer, &world.access, &request, deadline).await
        }
    })
}

fn text(response: &ApiGatewayProxyResponse) -> Option<&str> {
    match &response.body {
        Some(Body::Text(t)) => Some(t),
        _ => None,
    }
}

fuzz_target!(|input: Input| {
    let world = world();
    let method = match input.method % 6 {
        0 => Method::GET,
        1 => Method::PUT,
        2 => Method::POST,
        3 => Method::DELETE,
        4 => Method::PATCH,
        _ => Method::from_bytes(input.custom_method.as_bytes()).unwrap_or(Method::HEAD),
    };
    let mut request = ApiGatewayProxyRequest::default();
    request.http_method = method.clone();
    request.resource = match input.route % 10 {
        0 => Some(s3kv::routes::ITEM.into()),
        1 => Some(s3kv::routes::LIST.into()),
        2 => Some(s3kv::routes::BATCH_GET.into()),
        3 => Some(s3kv::routes::PUBLIC_ITEM.into()),
        4 => Some(s3kv::routes::VERSIONS.into()),
        5 => Some(s3kv::routes::RESTORE.into()),
        6 => Some(s3kv::routes::CHANGES.into()),
        7 => Some(s3kv::routes::SCHEMAS.into()),
        8 => Some(s3kv::routes::SCHEMA.into()),
        _ => None,
    };
    let item_route = input.route % 10 == 0;
    let key_id = input.key_id.map(|i| KEY_IDS[i as usize % KEY_IDS.len()]);
    request.request_context.identity.api_key_id = key_id.map(str::to_owned);
    for (name, value) in &input.headers {
        if let Ok(value) = http::HeaderValue::from_str(value) {
            request
                .headers
                .append(HEADERS[*name as usize % HEADERS.len()], value);
        }
    }
    let query: HashMap<String, Vec<String>> = input
        .query
        .iter()
        .map(|(name, value)| {
            (
                QUERY[*name as usize % QUERY.len()].to_owned(),
                vec![value.clone()],
            )
        })
        .collect();
    let dry_run = query.get("dryRun").is_some_and(|v| v[0] == "true");
    request.query_string_parameters = query.into();
    if let Some(key) = &input.key {
        request.path = Some(format!("/items/{key}"));
        request.path_parameters.insert("key".into(), key.clone());
    }
    if input.extra_params {
        request.path_parameters.insert("other".into(), "x".into());
    }
    let sent_body = input.body.clone();
    request.body = match (&input.body, input.base64) {
        (None, _) => None,
        (Some(bytes), true) => {
            let mut encoded = base64::engine::general_purpose::STANDARD.encode(bytes);
            if input.mangle_base64 {
                encoded.push('*');
            }
            Some(encoded)
        }
        (Some(bytes), false) => Some(String::from_utf8_lossy(bytes).into_owned()),
    };
    request.is_base64_encoded = input.base64;
    let text_body = request.body.clone();

    let response = call(world, request);
    let status = response.status_code;
    assert!(
        (200..500).contains(&status),
        "{method} answered {status}: {:?}",
        response.body
    );
    if status >= 400 {
        let body: serde_json::Value =
            serde_json::from_str(text(&response).expect("an error has a body"))
                .expect("JSON error");
        assert!(
            body["error"].is_string() && body["message"].is_string(),
            "{body}"
        );
    }

    // An accepted write came from a key that may write that item, is stored exactly as sent, and reads back
    // exactly (a dry run stores nothing).
    if item_route
        && !dry_run
        && matches!(method, Method::PUT | Method::POST)
        && (200..300).contains(&status)
    {
        let key = ItemKey::from_path_param(input.key.as_deref().unwrap()).unwrap();
        assert!(
            key_id == Some("writer1")
                || (key_id == Some("flags1") && key.as_str().starts_with("flags/")),
            "{key_id:?} wrote {key:?}"
        );
        let object_key = world.config.key_map().object_key(&key);
        let expected: Vec<u8> = if input.base64 {
            sent_body.unwrap_or_default()
        } else {
            text_body.unwrap_or_default().into_bytes()
        };
        assert_eq!(
            world.store.body(&object_key).as_deref(),
            Some(&expected[..])
        );
        let mut get = ApiGatewayProxyRequest::default();
        get.http_method = Method::GET;
        get.resource = Some(s3kv::routes::ITEM.into());
        get.request_context.identity.api_key_id = Some("reader1".into());
        get.path_parameters
            .insert("key".into(), input.key.clone().unwrap());
        let read = call(world, get);
        assert_eq!(read.status_code, 200);
        assert_eq!(text(&read).map(str::as_bytes), Some(&expected[..]));
    }
});
