//! `s3kv-local`: the whole s3kv stack on 127.0.0.1, no AWS account needed. See `s3kv-local --help`.

use s3kv::local::{LocalError, LocalStack, Options};

#[tokio::main]
async fn main() -> std::process::ExitCode {
    s3kv::telemetry::init();
    let options = match Options::parse(std::env::args().skip(1), |name| std::env::var(name).ok()) {
        Ok(options) => options,
        Err(LocalError::Usage(text)) => {
            eprintln!("{text}");
            return std::process::ExitCode::from(2);
        }
        Err(error) => {
            eprintln!("s3kv-local: {error}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let stack = match LocalStack::start(options).await {
        Ok(stack) => stack,
        Err(error) => {
            eprintln!("s3kv-local: {error}");
            return std::process::ExitCode::FAILURE;
        }
    };
    println!("{}", stack.banner());
    let _ = tokio::signal::ctrl_c().await;
    println!("stopping...");
    stack.shutdown().await;
    std::process::ExitCode::SUCCESS
}
