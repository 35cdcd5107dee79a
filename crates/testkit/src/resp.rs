//! Just enough RESP over a plain TCP connection to ask a Valkey/Redis server whether it is up and who it is.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::time::Duration;

/// One reply, as the readiness probes need it.
#[derive(Debug, PartialEq, Eq)]
pub enum Reply {
    Simple(String),
    Error(String),
    Integer(i64),
    Bulk(Option<String>),
}

/// Sends one command to 127.0.0.1:`port` and reads one reply; any failure is described in the `Err`.
pub fn command(port: u16, args: &[&str]) -> Result<Reply, String> {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let stream = TcpStream::connect_timeout(&addr, Duration::from_millis(500))
        .map_err(|e| format!("connect: {e}"))?;
    stream
        .set_read_timeout(Some(Duration::from_secs(2)))
        .map_err(|e| e.to_string())?;
    let mut request = format!("*{}\r\n", args.len());
    for arg in args {
        request.push_str(&format!("${}\r\n{arg}\r\n", arg.len()));
    }
    (&stream)
        .write_all(request.as_bytes())
        .map_err(|e| format!("write: {e}"))?;
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    reader
        .read_line(&mut line)
        .map_err(|e| format!("read: {e}"))?;
    let line = line.trim_end();
    let (kind, rest) = line.split_at(line.len().min(1));
    match kind {
        "+" => Ok(Reply::Simple(rest.to_owned())),
        "-" => Ok(Reply::Error(rest.to_owned())),
        ":" => rest
            .parse()
            .map(Reply::Integer)
            .map_err(|_| format!("bad integer reply {line:?}")),
        "$" => {
            let len: i64 = rest
                .parse()
                .map_err(|_| format!("bad bulk reply {line:?}"))?;
            if len < 0 {
                return Ok(Reply::Bulk(None));
            }
            let mut body = vec![0; len as usize + 2];
            reader
                .read_exact(&mut body)
                .map_err(|e| format!("read: {e}"))?;
            body.truncate(len as usize);
            Ok(Reply::Bulk(Some(
                String::from_utf8_lossy(&body).into_owned(),
            )))
        }
        "" => Err("connection closed without a reply".to_owned()),
        _ => Err(format!("not a RESP reply: {line:?}")),
    }
}

/// Ready means: `INFO server` names `pid` as its process (so the answer comes from our child, not from whatever
/// else might listen there), and `PING` answers `PONG` (not `LOADING`, as a restarted persistent server does while
/// it reads its append-only file).
pub fn ready(port: u16, pid: u32) -> Result<(), String> {
    let info = match command(port, &["INFO", "server"])? {
        Reply::Bulk(Some(info)) => info,
        other => return Err(format!("INFO server answered {other:?}")),
    };
    let answered_by = info
        .lines()
        .find_map(|l| l.strip_prefix("process_id:"))
        .map(str::trim)
        .unwrap_or("?");
    if answered_by != pid.to_string() {
        return Err(format!(
            "port {port} is answered by process {answered_by}, not by our child {pid}"
        ));
    }
    match command(port, &["PING"])? {
        Reply::Simple(pong) if pong == "PONG" => Ok(()),
        other => Err(format!("PING answered {other:?}")),
    }
}
