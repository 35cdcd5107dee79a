//! `s3kv-local`: the whole s3kv stack on 127.0.0.1, no AWS account needed. See `s3kv-local --help`.

use clap::Parser;
use s3kv_local::{LocalStack, Options};

#[tokio::main]
async fn main() -> std::process::ExitCode {
    s3kv::telemetry::init();
    let options = Options::parse();
    let stack = match LocalStack::start(options).await {
        Ok(stack) => stack,
        Err(error) => {
            eprintln!("s3kv-local: {error}");
            return std::process::ExitCode::FAILURE;
        }
    };
    println!("{}", stack.banner());
    s3kv_local::stop_requested().await;
    println!("stopping...");
    stack.shutdown().await;
    std::process::ExitCode::SUCCESS
}
