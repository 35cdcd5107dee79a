//! The reader Lambda: `GET /items/{key}`, `GET /items` and `POST /batch-get`, from Valkey, falling back to S3.
// The handler's future nests deeper than the default limit (128) when the release build computes its layout.
#![recursion_limit = "256"]

use std::time::Duration;

use aws_lambda_events::apigw::ApiGatewayProxyRequest;
use lambda_runtime::{run, service_fn, Error, LambdaEvent};
use s3kv::access::Access;
use s3kv::adapters::{s3::S3Store, valkey::ValkeyCache};
use s3kv::metrics::Metrics;
use s3kv::{api, config::Config, read::Reader, retry::deadline_from_epoch_millis, telemetry};

// One thread: Lambda sends an environment one event at a time (`run`, not `run_concurrent`), and the handler's
// work is I/O. A multi-threaded runtime starts a worker per core before `main` and hands every wake-up across
// threads: time a cold start waits for (docs/src/benchmarks/cold-starts.md).
#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    let mut startup = telemetry::Startup::begin();
    telemetry::init();
    let config = Config::from_env()?;
    startup.step("logging, config");
    let cache = ValkeyCache::from_config(&config, config.cache_timeout).await?;
    startup.step("Valkey client");
    cache.connect(Duration::from_secs(1)).await;
    startup.step("Valkey connect");
    let store = S3Store::from_config(&config).await;
    startup.step("S3 client");
    let reader = &Reader::new(store, cache, &config);
    let cors = &api::Cors::from_config(&config);
    let access = &Access::from_config(&config);
    let metrics = &Metrics::from_config(&config);
    startup.step("reader, CORS, grants, metrics");
    run(service_fn(
        move |event: LambdaEvent<ApiGatewayProxyRequest>| async move {
            let deadline = deadline_from_epoch_millis(event.context.deadline);
            let served = api::serve_read(reader, access, &event.payload, deadline).await;
            metrics.emit_reads(&served.cache);
            Ok::<_, Error>(cors.apply(served.response))
        },
    ))
    .await
}
