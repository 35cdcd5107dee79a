//! Logging: JSON lines on stdout, which CloudWatch Logs indexes field by field.

use tracing_subscriber::EnvFilter;

/// Installs the JSON subscriber once; the level comes from `RUST_LOG` (default `info`).
pub fn init() {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .json()
        .with_env_filter(filter)
        .with_target(false)
        .with_current_span(false)
        .without_time()
        .try_init();
}
