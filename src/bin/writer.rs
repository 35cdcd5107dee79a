//! The writer Lambda: `PUT`/`POST`/`DELETE /items/{key}` → S3.

use aws_lambda_events::apigw::ApiGatewayProxyRequest;
use lambda_runtime::{run, service_fn, Error, LambdaEvent};
use s3kv::{
    access::Access, adapters::s3::S3Store, api, config::Config, retry::deadline_from_epoch_millis,
    telemetry, write::Writer,
};

// One thread: Lambda sends an environment one event at a time (`run`, not `run_concurrent`), and the handler's
// work is I/O. A multi-threaded runtime starts a worker per core before `main` and hands every wake-up across
// threads: time a cold start waits for (docs/src/benchmarks/cold-starts.md).
#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    let mut startup = telemetry::Startup::begin();
    telemetry::init();
    let config = Config::from_env()?;
    startup.step("logging, config");
    let store = S3Store::from_config(&config).await;
    startup.step("S3 client");
    let writer = &Writer::new(store, &config);
    let cors = &api::Cors::from_config(&config);
    let access = &Access::from_config(&config);
    startup.step("writer, CORS, grants");
    run(service_fn(
        move |event: LambdaEvent<ApiGatewayProxyRequest>| async move {
            let deadline = deadline_from_epoch_millis(event.context.deadline);
            Ok::<_, Error>(
                cors.apply(api::handle_write(writer, access, &event.payload, deadline).await),
            )
        },
    ))
    .await
}
