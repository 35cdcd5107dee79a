//! `s3kv console`: the console (clients/console, a single-page app compiled into this binary) served on
//! 127.0.0.1, with its API calls forwarded to the endpoint with the key, which therefore never reaches the
//! browser: not its storage, not its memory. Nothing is hosted and nothing is opened; the command prints the URL.
//!
//! A local server holding a key is something any web page the person visits could try to use (a form post, a
//! `fetch` from another origin, DNS rebinding). So every API call must carry a token made fresh for this run, which
//! only the printed URL knows (in its fragment, which browsers never send anywhere), in a header other origins
//! cannot set without a CORS preflight, which is refused; and the Host and Origin headers must name this server.
//! The modules: `server` (those checks, the files, the session), `forward` (the calls to the API).

mod forward;
mod server;

#[path = "../../../../clients/console/assets.rs"]
mod assets;

use std::net::SocketAddr;
use std::sync::Arc;

use clap::Args;
use thiserror::Error;

use crate::api::Api;
use crate::output::{Failure, Output};

#[derive(Debug, Args)]
pub struct ConsoleArgs {
    /// The port on 127.0.0.1 to serve the console on (default: a free one)
    #[arg(long, default_value_t = 0)]
    pub port: u16,
}

#[derive(Debug, Error)]
pub enum ConsoleError {
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("no random numbers for the console's token: {0}")]
    Random(String),
}

impl From<ConsoleError> for Failure {
    fn from(error: ConsoleError) -> Self {
        Failure::Other(error.to_string())
    }
}

pub async fn exec(api: &Api, out: Output, args: ConsoleArgs) -> Result<(), Failure> {
    let addr = SocketAddr::from(([127, 0, 0, 1], args.port));
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| ConsoleError::Bind { addr, source })?;
    let bound = listener
        .local_addr()
        .map_err(|source| ConsoleError::Bind { addr, source })?;
    let token = token()?;
    let url = format!("http://{bound}/console/#token={token}");
    let state = Arc::new(server::State {
        port: bound.port(),
        token,
        forward: forward::Forward::new(api.endpoint(), api.api_key().map(str::to_owned)),
        endpoint: api.endpoint().to_owned(),
    });
    crate::output::print(
        out,
        &url,
        serde_json::json!({ "url": url, "endpoint": api.endpoint() }),
    );
    eprintln!(
        "s3kv console: open the URL above in a browser; its calls go to {} with {}. Ctrl-C stops.",
        api.endpoint(),
        if api.api_key().is_some() {
            "this key (the browser never sees it)"
        } else {
            "no API key (set one with --api-key, S3KV_API_KEY or a profile)"
        }
    );
    tokio::select! {
        () = server::serve(listener, state) => Ok(()),
        _ = tokio::signal::ctrl_c() => Ok(()),
    }
}

/// 32 random bytes, hex: what a page must send to use this run's console. From the TLS provider's generator (the
/// operating system's), already in the binary for HTTPS.
fn token() -> Result<String, ConsoleError> {
    let mut bytes = [0u8; 32];
    rustls::crypto::aws_lc_rs::default_provider()
        .secure_random
        .fill(&mut bytes)
        .map_err(|e| ConsoleError::Random(format!("{e:?}")))?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}
