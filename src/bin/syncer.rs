//! The syncer Lambda: S3 notifications → Valkey. A failed record fails the invocation, so Lambda retries it.

use std::time::Duration;

use lambda_runtime::{run, service_fn, Error, LambdaEvent};
use s3kv::adapters::{s3::S3Store, valkey::ValkeyCache};
use s3kv::metrics::{self, Metrics};
use s3kv::{config::Config, retry::deadline_from_epoch_millis, s3_event, sync::Syncer, telemetry};

// One thread: Lambda sends an environment one event at a time (`run`, not `run_concurrent`), and the handler's
// work is I/O. A multi-threaded runtime starts a worker per core before `main` and hands every wake-up across
// threads: time a cold start waits for (docs/src/benchmarks/cold-starts.md).
#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    let mut startup = telemetry::Startup::begin();
    telemetry::init();
    let config = Config::from_env()?;
    startup.step("logging, config");
    let cache = ValkeyCache::from_config(&config, config.sync_cache_timeout).await?;
    startup.step("Valkey client");
    cache.connect(Duration::from_secs(2)).await;
    startup.step("Valkey connect");
    let store = S3Store::from_config(&config).await;
    startup.step("S3 client");
    let syncer = &Syncer::new(store, cache, &config);
    let metrics = &Metrics::from_config(&config);
    startup.step("syncer, metrics");
    run(service_fn(
        move |event: LambdaEvent<serde_json::Value>| async move {
            let deadline = deadline_from_epoch_millis(event.context.deadline);
            let result = s3_event::handle_json(syncer, event.payload, deadline).await;
            let (report, failed) = match &result {
                Ok(report) => (Some(report), false),
                Err(error) => (error.report(), true),
            };
            metrics.emit(
                "syncer",
                &metrics::for_sync(report.unwrap_or(&Default::default()), failed),
            );
            result.map_err(Error::from)
        },
    ))
    .await
}
