//! `s3kv`: the command-line client. See `s3kv --help`, and the crate docs for exit codes.

use clap::Parser;
use s3kv_cli::{run, Cli};

#[tokio::main(flavor = "current_thread")]
async fn main() -> std::process::ExitCode {
    // reqwest is built without a TLS provider of its own (see Cargo.toml); an error here means one is set.
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let cli = Cli::parse();
    let out = cli.output;
    match run(cli).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(failure) => std::process::ExitCode::from(failure.report(out)),
    }
}
