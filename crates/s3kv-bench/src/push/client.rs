//! The benchmark's own WebSocket client for AppSync Events' protocol: the handshake, masked text frames out,
//! unmasked frames in, and nothing else, so that 10,000 of them cost little beside the server on the same cores. A
//! module of its own, apart from the measurement in `push.rs`, so that each file stays under ~600 lines.

use s3kv::push::{Token, Topic};
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

use super::{API_KEY, PREFIX};

pub(super) type Socket = BufReader<TcpStream>;

/// Connects as a browser does (the credentials in a `header-` subprotocol), then `connection_init` and the
/// subscriptions: the prefix topic as `p`, and the key topic `push/kNNN` as `k` when given.
pub(super) async fn open(host: &str, key: Option<usize>) -> Result<Socket, String> {
    let stream = TcpStream::connect(host)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    stream.set_nodelay(true).map_err(|e| e.to_string())?;
    let mut socket = BufReader::with_capacity(2048, stream);
    let token = |topic| {
        Token {
            api_key: Some(API_KEY.to_owned()),
            topic,
        }
        .encode()
    };
    let header = base64url(
        json!({ "host": host, "Authorization": token(None) })
            .to_string()
            .as_bytes(),
    );
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\
         Sec-WebSocket-Protocol: aws-appsync-event-ws, header-{header}\r\n\r\n",
        path = "/event/realtime"
    );
    let io = |e: std::io::Error| e.to_string();
    socket.write_all(request.as_bytes()).await.map_err(io)?;
    let mut status = String::new();
    socket.read_line(&mut status).await.map_err(io)?;
    if !status.starts_with("HTTP/1.1 101") {
        return Err(format!("the upgrade answered {status:?}"));
    }
    let mut protocol = false;
    loop {
        let mut line = String::new();
        socket.read_line(&mut line).await.map_err(io)?;
        if line.trim().is_empty() {
            break;
        }
        protocol |=
            line.to_ascii_lowercase().trim() == "sec-websocket-protocol: aws-appsync-event-ws";
    }
    if !protocol {
        return Err("the upgrade did not choose aws-appsync-event-ws".to_owned());
    }
    exchange(
        &mut socket,
        json!({ "type": "connection_init" }),
        "connection_ack",
    )
    .await?;
    let mut topics = vec![("p", Topic::prefix(PREFIX).expect("a prefix topic"))];
    if let Some(k) = key {
        let item = s3kv::key::ItemKey::parse(&format!("{PREFIX}k{k:03}")).expect("a key");
        topics.push(("k", Topic::Key(item)));
    }
    for (id, topic) in topics {
        let message = json!({ "type": "subscribe", "id": id, "channel": topic.channel(),
            "authorization": { "host": host, "Authorization": token(Some(topic)) } });
        exchange(&mut socket, message, "subscribe_success").await?;
    }
    Ok(socket)
}

/// Sends one message and checks the type of its answer.
async fn exchange(socket: &mut Socket, message: Value, want: &str) -> Result<(), String> {
    let io = |e: std::io::Error| e.to_string();
    socket
        .write_all(&text_frame(&message.to_string()))
        .await
        .map_err(io)?;
    let (_, payload) = read_frame(socket).await.map_err(io)?;
    let answer: Value = serde_json::from_slice(&payload).map_err(|e| e.to_string())?;
    if answer["type"] != want {
        return Err(format!("{message} answered {answer}"));
    }
    Ok(())
}

/// One unfragmented frame: its opcode and payload (unmasked if the server masked it, which it must not).
pub(super) async fn read_frame(socket: &mut Socket) -> std::io::Result<(u8, Vec<u8>)> {
    let mut head = [0u8; 2];
    socket.read_exact(&mut head).await?;
    let (fin, opcode, masked) = (head[0] & 0x80 != 0, head[0] & 0x0f, head[1] & 0x80 != 0);
    let len = match head[1] & 0x7f {
        126 => {
            let mut b = [0u8; 2];
            socket.read_exact(&mut b).await?;
            u16::from_be_bytes(b) as usize
        }
        127 => {
            let mut b = [0u8; 8];
            socket.read_exact(&mut b).await?;
            u64::from_be_bytes(b) as usize
        }
        n => n as usize,
    };
    let mut mask = [0u8; 4];
    if masked {
        socket.read_exact(&mut mask).await?;
    }
    let mut payload = vec![0u8; len];
    socket.read_exact(&mut payload).await?;
    if masked {
        payload
            .iter_mut()
            .enumerate()
            .for_each(|(i, b)| *b ^= mask[i % 4]);
    }
    if !fin {
        return Err(std::io::Error::other("a fragmented frame"));
    }
    Ok((opcode, payload))
}

/// A client's text frame (clients mask theirs).
fn text_frame(text: &str) -> Vec<u8> {
    const MASK: [u8; 4] = [0x5a, 0x3c, 0x99, 0x17];
    let payload = text.as_bytes();
    let mut frame = vec![0x81];
    match payload.len() {
        n if n < 126 => frame.push(0x80 | n as u8),
        n if n <= u16::MAX as usize => {
            frame.push(0x80 | 126);
            frame.extend((n as u16).to_be_bytes());
        }
        n => {
            frame.push(0x80 | 127);
            frame.extend((n as u64).to_be_bytes());
        }
    }
    frame.extend(MASK);
    frame.extend(payload.iter().enumerate().map(|(i, b)| b ^ MASK[i % 4]));
    frame
}

/// Base64url without padding (the `header-` subprotocol).
fn base64url(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, b)| n | (*b as u32) << (16 - 8 * i));
        for i in 0..=chunk.len() {
            out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
        }
    }
    out
}
