//! The reaper Lambda, on an EventBridge schedule (any payload): deletes the objects of expired items. From a shell
//! with the functions' environment, `cargo run --bin reaper` runs once and prints the report as JSON.

use std::time::{Duration, Instant};

use lambda_runtime::{run, service_fn, Error, LambdaEvent};
use s3kv::adapters::{s3::S3Store, valkey::ValkeyCache};
use s3kv::metrics::{self, Metrics};
use s3kv::{config::Config, reap::Reaper, retry::deadline_from_epoch_millis, telemetry};

#[tokio::main]
async fn main() -> Result<(), Error> {
    telemetry::init();
    let config = Config::from_env()?;
    let cache = ValkeyCache::from_config(&config, config.sync_cache_timeout).await?;
    cache.connect(Duration::from_secs(2)).await;
    let reaper = &Reaper::new(S3Store::from_config(&config).await, cache, &config);
    if std::env::var_os("AWS_LAMBDA_RUNTIME_API").is_none() {
        let report = reaper
            .run(Instant::now() + Duration::from_secs(300))
            .await?;
        println!("{}", serde_json::to_string(&report)?);
        return Ok(());
    }
    let metrics = &Metrics::from_config(&config);
    run(service_fn(
        move |event: LambdaEvent<serde_json::Value>| async move {
            let result = reaper
                .run(deadline_from_epoch_millis(event.context.deadline))
                .await;
            let (report, failed) = match &result {
                Ok(report) => (Some(report), false),
                Err(error) => (error.report(), true),
            };
            metrics.emit(
                "reaper",
                &metrics::for_reap(report.unwrap_or(&Default::default()), failed),
            );
            let report = result?;
            tracing::info!(?report, "reaped");
            Ok::<_, Error>(report)
        },
    ))
    .await
}
