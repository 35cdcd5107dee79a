//! Real servers on 127.0.0.1 for s3kv's tests, benchmarks and local stack, started so that they cannot flake.
//!
//! * [`ports`] hands out ports below the kernel's ephemeral range, reserved across threads and processes, so no
//!   `bind(0)` or outgoing connection anywhere on the machine can take a port between the moment we pick it and
//!   the moment the child binds it.
//! * [`process::ChildServer`] keeps a child's output in a log file and stops the child when dropped; a start
//!   that fails, and any test that panics while the server runs, show that output.
//! * A server is ready when it answers, not when a TCP connect succeeds: [`valkey`] asks `INFO server` for the
//!   child's own process id and then PINGs, [`moto`] binds port 0, says which port it got, and lists buckets
//!   over HTTP, [`redis_cluster`] asks
//!   `cluster info` over TLS.
//!
//! Nothing here is compiled into a Lambda function: only dev-dependencies and the tooling crates use it.

pub mod http;
pub mod moto;
pub mod ports;
pub mod process;
pub mod recorder;
pub mod redis_cluster;
pub mod resp;
pub mod runtime_api;
pub mod valkey;

pub use moto::Moto;
pub use ports::{free_port, free_port_with_bus};
pub use process::{ChildServer, StartError};
pub use valkey::Valkey;

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};

/// A program from `env` (as `scripts/test` exports it) or from PATH.
pub fn program(env: &str, name: &str) -> Result<String, StartError> {
    if let Some(path) = std::env::var(env).ok().filter(|p| !p.is_empty()) {
        return Ok(path);
    }
    let on_path = std::env::var_os("PATH")
        .map(|paths| std::env::split_paths(&paths).any(|dir| dir.join(name).is_file()))
        .unwrap_or(false);
    if on_path {
        return Ok(name.to_owned());
    }
    Err(StartError::Missing {
        name: name.to_owned(),
        hint: format!("set {env} or put {name} on PATH (scripts/test installs it)"),
    })
}

/// A fresh directory under the system temp dir, unique in this process and across processes.
pub fn temp_dir(label: &str) -> PathBuf {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let dir = std::env::temp_dir().join(format!(
        "s3kv-{label}-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("create {}: {e}", dir.display()));
    dir
}
