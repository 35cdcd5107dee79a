//! moto's S3 server on a reserved port.

use std::process::Command;
use std::time::Duration;

use crate::process::{ChildServer, StartError};

/// moto imports all of its services before it binds: seconds on a busy machine.
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// A `moto_server` child (`S3KV_MOTO_SERVER`, or on PATH), stopped when dropped.
pub struct Moto {
    server: Option<ChildServer>,
    pub port: u16,
}

impl Moto {
    /// Panics with moto's output if it cannot start.
    pub fn start() -> Self {
        Self::try_start().unwrap_or_else(|e| panic!("{e}"))
    }

    /// moto binds port 0, so the kernel hands it a port atomically, and says which one it got (werkzeug logs
    /// ` * Running on http://127.0.0.1:PORT` once the socket listens); no other process can be on that port.
    pub fn try_start() -> Result<Self, StartError> {
        let program = crate::program("S3KV_MOTO_SERVER", "moto_server")?;
        let mut command = Command::new(program);
        command.args(["-H", "127.0.0.1", "-p", "0"]);
        let mut server = ChildServer::spawn("moto_server", command)?;
        let port = server.wait_ready(START_TIMEOUT, |server| {
            let port = announced_port(&server.output()).ok_or("no \"Running on\" line yet")?;
            list_buckets(port).map(|()| port)
        })?;
        Ok(Self {
            server: Some(server),
            port,
        })
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Kills the server.
    pub fn stop(&mut self) {
        self.server = None;
    }

    pub fn output(&self) -> String {
        self.server
            .as_ref()
            .map(ChildServer::output)
            .unwrap_or_default()
    }
}

/// The port in werkzeug's ` * Running on http://127.0.0.1:PORT` line (ANSI colours around it or not).
fn announced_port(output: &str) -> Option<u16> {
    let (_, after) = output.split_once("Running on http://127.0.0.1:")?;
    let digits: String = after.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

/// Ready means S3 answers: `GET /` (ListBuckets) is 200 with a `ListAllMyBucketsResult`.
fn list_buckets(port: u16) -> Result<(), String> {
    let answer = crate::http::get(port, "/")?;
    if answer.starts_with("HTTP/1.1 200") && answer.contains("ListAllMyBucketsResult") {
        Ok(())
    } else {
        Err(format!(
            "GET / answered {:?}",
            answer.chars().take(200).collect::<String>()
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::announced_port;

    #[test]
    fn the_announced_port_is_read_with_or_without_colours() {
        let plain = " * Running on http://127.0.0.1:41235\nPress CTRL+C to quit";
        let coloured = "WARNING: dev server\n * Running on http://127.0.0.1:39001\x1b[0m\n";
        assert_eq!(announced_port(plain), Some(41235));
        assert_eq!(announced_port(coloured), Some(39001));
        assert_eq!(announced_port(" * Serving Flask app"), None);
    }
}
