//! Reconcile: makes the cache match the bucket. As a Lambda (on an EventBridge schedule, any payload) or, from a
//! shell with the functions' environment, once: `cargo run --bin reconcile` prints the report as JSON.

use std::time::{Duration, Instant};

use lambda_runtime::{run, service_fn, Error, LambdaEvent};
use s3kv::adapters::{s3::S3Store, valkey::ValkeyCache};
use s3kv::{config::Config, reconcile::Reconciler, retry::deadline_from_epoch_millis, telemetry};

#[tokio::main]
async fn main() -> Result<(), Error> {
    telemetry::init();
    let config = Config::from_env()?;
    let cache = ValkeyCache::from_config(&config, config.sync_cache_timeout).await?;
    cache.connect(Duration::from_secs(2)).await;
    let reconciler = &Reconciler::new(S3Store::from_config(&config).await, cache, &config);
    if std::env::var_os("AWS_LAMBDA_RUNTIME_API").is_none() {
        let report = reconciler
            .run(Instant::now() + Duration::from_secs(3600))
            .await?;
        println!("{}", serde_json::to_string(&report)?);
        return Ok(());
    }
    run(service_fn(
        move |event: LambdaEvent<serde_json::Value>| async move {
            Ok::<_, Error>(
                reconciler
                    .run(deadline_from_epoch_millis(event.context.deadline))
                    .await?,
            )
        },
    ))
    .await
}
