//! Push through s3kv-local, with a plain WebSocket client speaking AppSync Events' protocol (src/push.rs): what a
//! subscriber receives for an API write, a manual upload and a delete, values byte for byte, and that every
//! subscribe keeps the HTTP API's roles. The browser client has its own test (push_browser).

use std::time::Duration;

use base64::Engine;
use futures::{SinkExt, StreamExt};
use http::Method;
use s3kv::key::ItemKey;
use s3kv::push::{Change, Token, Topic};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;

use crate::common::TestStack;

const READ_KEY: &str = "push-read-key-0123456789";
const WRITE_KEY: &str = "push-write-key-0123456789";
const FLAGS_KEY: &str = "push-flags-only-key-01234";

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn start(name: &str) -> TestStack {
    TestStack::start(name, |o| {
        let spec = |value: &str, prefixes: &[&str]| s3kv_local::KeySpec {
            value: value.into(),
            prefixes: prefixes.iter().map(|p| (*p).to_owned()).collect(),
        };
        o.read_keys = vec![spec(READ_KEY, &[]), spec(FLAGS_KEY, &["flags/"])];
        o.write_keys = vec![spec(WRITE_KEY, &[])];
        o.public_prefix = Some("public/".into());
    })
    .await
}

fn token(api_key: Option<&str>, topic: Option<Topic>) -> String {
    Token {
        api_key: api_key.map(str::to_owned),
        topic,
    }
    .encode()
}

/// Connects as a browser would: the credentials in a `header-` subprotocol, then `connection_init`.
async fn connect(api: &TestStack, api_key: Option<&str>) -> Result<Socket, String> {
    let host = api.stack.api_addr.to_string();
    let header = json!({ "host": host, "Authorization": token(api_key, None) }).to_string();
    let header = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(header);
    let mut request = api.stack.push_url().into_client_request().unwrap();
    request.headers_mut().insert(
        "sec-websocket-protocol",
        format!("aws-appsync-event-ws, header-{header}")
            .parse()
            .unwrap(),
    );
    let (mut socket, response) = tokio_tungstenite::connect_async(request)
        .await
        .map_err(|e| e.to_string())?;
    assert_eq!(
        response.headers()["sec-websocket-protocol"],
        "aws-appsync-event-ws"
    );
    send(&mut socket, json!({ "type": "connection_init" })).await;
    let ack = next(&mut socket).await;
    match ack["type"].as_str() {
        Some("connection_ack") => {
            assert_eq!(ack["connectionTimeoutMs"], 300_000);
            Ok(socket)
        }
        _ => Err(ack.to_string()),
    }
}

async fn send(socket: &mut Socket, message: Value) {
    socket
        .send(Message::text(message.to_string()))
        .await
        .expect("send");
}

/// The next message, skipping keep-alives; fails the test after 10 s.
async fn next(socket: &mut Socket) -> Value {
    loop {
        let message = tokio::time::timeout(Duration::from_secs(10), socket.next())
            .await
            .expect("a message within 10 s")
            .expect("the connection is open")
            .expect("a frame");
        if let Message::Text(text) = message {
            let value: Value = serde_json::from_str(text.as_str()).unwrap();
            if value["type"] != "ka" {
                return value;
            }
        }
    }
}

async fn subscribe(socket: &mut Socket, id: &str, api_key: Option<&str>, topic: Topic) -> Value {
    let channel = topic.channel();
    let authorization = json!({ "host": "local", "Authorization": token(api_key, Some(topic)) });
    send(socket, json!({ "type": "subscribe", "id": id, "channel": channel, "authorization": authorization })).await;
    next(socket).await
}

/// The next change delivered on `socket`, with the subscription id it came on.
async fn change(socket: &mut Socket) -> (String, Change) {
    let data = next(socket).await;
    assert_eq!(data["type"], "data", "{data}");
    let event = data["event"].as_str().expect("event is a JSON string");
    (
        data["id"].as_str().unwrap().to_owned(),
        serde_json::from_str(event).unwrap(),
    )
}

fn key(k: &str) -> ItemKey {
    ItemKey::parse(k).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscriber_sees_api_writes_uploads_and_deletes_with_exact_values() {
    let api = start("push").await;
    let mut socket = connect(&api, Some(READ_KEY))
        .await
        .expect("a read key connects");
    let ok = subscribe(
        &mut socket,
        "flags",
        Some(READ_KEY),
        Topic::prefix("flags/").unwrap(),
    )
    .await;
    assert_eq!(ok, json!({ "type": "subscribe_success", "id": "flags" }));
    let ok = subscribe(
        &mut socket,
        "one",
        Some(READ_KEY),
        Topic::Key(key("config/app")),
    )
    .await;
    assert_eq!(ok["type"], "subscribe_success");

    let doc = r#"{"enabled": true, "n": 1e400}"#;
    let put = api
        .send(
            Method::PUT,
            "/items/flags%2Fmaintenance",
            Some(WRITE_KEY),
            &[],
            Some(doc),
        )
        .await;
    assert_eq!(put.status, 201, "{}", put.body);
    let (id, pushed) = change(&mut socket).await;
    assert_eq!(id, "flags");
    assert_eq!(
        (pushed.key.as_str(), pushed.deleted),
        ("flags/maintenance", false)
    );
    assert_eq!(
        pushed.body.as_deref(),
        Some(doc),
        "the value, byte for byte"
    );
    assert_eq!(
        pushed.etag.as_deref(),
        put.header("etag").map(|e| e.trim_matches('"'))
    );

    api.upload("config/app", "[1, 2]").await;
    let (id, pushed) = change(&mut socket).await;
    assert_eq!(
        (id.as_str(), pushed.key.as_str(), pushed.body.as_deref()),
        ("one", "config/app", Some("[1, 2]"))
    );

    let first = pushed.sequencer.clone();
    let delete = api
        .send(
            Method::DELETE,
            "/items/config%2Fapp",
            Some(WRITE_KEY),
            &[],
            None,
        )
        .await;
    assert_eq!(delete.status, 204);
    let (_, pushed) = change(&mut socket).await;
    assert_eq!(
        (pushed.key.as_str(), pushed.deleted, pushed.etag),
        ("config/app", true, None)
    );
    assert!(
        s3kv::sequencer::Sequencer::parse(&pushed.sequencer).unwrap()
            > s3kv::sequencer::Sequencer::parse(&first).unwrap()
    );

    // Nothing else arrived: a write outside both topics is not delivered, and unsubscribing stops a topic.
    send(&mut socket, json!({ "type": "unsubscribe", "id": "flags" })).await;
    assert_eq!(
        next(&mut socket).await,
        json!({ "type": "unsubscribe_success", "id": "flags" })
    );
    api.send(
        Method::PUT,
        "/items/other%2Fx",
        Some(WRITE_KEY),
        &[],
        Some("{}"),
    )
    .await;
    api.send(
        Method::PUT,
        "/items/flags%2Fmaintenance",
        Some(WRITE_KEY),
        &[],
        Some("{}"),
    )
    .await;
    api.send(
        Method::PUT,
        "/items/config%2Fapp",
        Some(WRITE_KEY),
        &[],
        Some("3"),
    )
    .await;
    let (id, pushed) = change(&mut socket).await;
    assert_eq!((id.as_str(), pushed.key.as_str()), ("one", "config/app"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_subscribe_keeps_the_roles_of_the_http_api() {
    let api = start("push-roles").await;
    // A key the API does not know cannot connect; no key connects (public topics only).
    let unknown = connect(&api, Some("not-a-key-of-this-stack"))
        .await
        .unwrap_err();
    assert!(
        unknown.contains("connection_error") && unknown.contains("UnauthorizedException"),
        "{unknown}"
    );
    let mut socket = connect(&api, Some(FLAGS_KEY)).await.unwrap();
    let refused = |answer: &Value| {
        answer["type"] == "subscribe_error"
            && answer["errors"][0]["errorType"] == "UnauthorizedException"
    };
    let everything = subscribe(
        &mut socket,
        "all",
        Some(FLAGS_KEY),
        Topic::prefix("").unwrap(),
    )
    .await;
    assert!(refused(&everything), "{everything}");
    let config = subscribe(
        &mut socket,
        "config",
        Some(FLAGS_KEY),
        Topic::Key(key("config/app")),
    )
    .await;
    assert!(refused(&config), "{config}");
    let flags = subscribe(
        &mut socket,
        "flags",
        Some(FLAGS_KEY),
        Topic::prefix("flags/").unwrap(),
    )
    .await;
    assert_eq!(flags["type"], "subscribe_success", "{flags}");
    // A token for flags/ on another topic's channel is refused: the topic must be the channel's.
    let mut forged = json!({ "type": "subscribe", "id": "forged", "channel": Topic::prefix("").unwrap().channel(),
        "authorization": { "Authorization": token(Some(FLAGS_KEY), Some(Topic::prefix("flags/").unwrap())) } });
    send(&mut socket, forged.take()).await;
    let answer = next(&mut socket).await;
    assert!(refused(&answer), "{answer}");

    let mut anonymous = connect(&api, None).await.unwrap();
    let public = subscribe(
        &mut anonymous,
        "banner",
        None,
        Topic::Key(key("public/banner")),
    )
    .await;
    assert_eq!(public["type"], "subscribe_success", "{public}");
    let private = subscribe(
        &mut anonymous,
        "flags",
        None,
        Topic::prefix("flags/").unwrap(),
    )
    .await;
    assert!(refused(&private), "{private}");

    // What each receives: the flags key only flags/, the anonymous one only its public key.
    for (path, body) in [
        ("config%2Fapp", "1"),
        ("flags%2Fa", "2"),
        ("public%2Fbanner", "3"),
    ] {
        let put = api
            .send(
                Method::PUT,
                &format!("/items/{path}"),
                Some(WRITE_KEY),
                &[],
                Some(body),
            )
            .await;
        assert_eq!(put.status, 201);
    }
    assert_eq!(change(&mut socket).await.1.key, "flags/a");
    assert_eq!(change(&mut anonymous).await.1.key, "public/banner");
    api.settle().await;
    // Nothing more is queued for either.
    for socket in [&mut socket, &mut anonymous] {
        send(socket, json!({ "type": "unsubscribe", "id": "nothing" })).await;
        assert_eq!(next(socket).await["type"], "unsubscribe_error");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropped_connections_close_and_a_new_one_subscribes_again() {
    let api = start("push-drop").await;
    let mut socket = connect(&api, Some(READ_KEY)).await.unwrap();
    assert_eq!(
        subscribe(&mut socket, "a", Some(READ_KEY), Topic::prefix("").unwrap()).await["type"],
        "subscribe_success"
    );
    assert_eq!(api.stack.push.connections(), 1);
    api.stack.drop_push_connections();
    let ended = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match socket.next().await {
                None | Some(Err(_)) | Some(Ok(Message::Close(_))) => return,
                _ => {}
            }
        }
    })
    .await;
    assert!(ended.is_ok(), "the dropped connection ends");
    let mut again = connect(&api, Some(READ_KEY)).await.unwrap();
    assert_eq!(
        subscribe(&mut again, "a", Some(READ_KEY), Topic::prefix("").unwrap()).await["type"],
        "subscribe_success"
    );
    api.send(Method::PUT, "/items/k", Some(WRITE_KEY), &[], Some("{}"))
        .await;
    assert_eq!(change(&mut again).await.1.key, "k");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_public_reads_a_connection_needs_a_key_as_in_aws() {
    let api = TestStack::start("push-no-public", |o| {
        o.read_keys = vec![s3kv_local::KeySpec {
            value: READ_KEY.into(),
            prefixes: Vec::new(),
        }];
    })
    .await;
    let refused = connect(&api, None).await.unwrap_err();
    assert!(
        refused.contains("connection_error") && refused.contains("UnauthorizedException"),
        "{refused}"
    );
    assert!(connect(&api, Some(READ_KEY)).await.is_ok());
}
