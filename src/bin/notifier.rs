//! The notifier Lambda: S3 changes (through EventBridge, outside the VPC) → AppSync Events, one publish per
//! channel of the changed key. A retryable failure fails the invocation, so Lambda retries it.

use lambda_runtime::{run, service_fn, Error, LambdaEvent};
use s3kv::adapters::{appsync::AppSyncPublisher, s3::S3Store, signed_http::SignedHttp};
use s3kv::push::{eventbridge, Notified, Notifier};
use s3kv::{config::Config, telemetry};

#[tokio::main]
async fn main() -> Result<(), Error> {
    telemetry::init();
    let config = Config::from_env()?;
    let endpoint = config.require_push_endpoint()?.to_owned();
    let publisher =
        AppSyncPublisher::new(SignedHttp::from_env(config.s3_timeout).await?, &endpoint);
    let notifier = &Notifier::new(S3Store::from_config(&config).await, publisher, &config);
    run(service_fn(
        move |event: LambdaEvent<serde_json::Value>| async move {
            let record = match eventbridge::decode(event.payload) {
                Ok(Some(record)) => record,
                Ok(None) => return Ok::<_, Error>(()),
                // A malformed event never gets better: log it and let it go.
                Err(error) => {
                    tracing::error!(%error, "not an S3 change; skipped");
                    return Ok(());
                }
            };
            match notifier.notify(&record).await {
                Ok(Notified::Published(channels)) => {
                    tracing::info!(key = %record.object_key, sequencer = record.sequencer.as_str(), channels, "published")
                }
                Ok(Notified::Skipped) => {
                    tracing::debug!(key = %record.object_key, "not an item, or superseded")
                }
                Err(error) if error.is_retryable() => return Err(error.into()),
                Err(error) => {
                    tracing::error!(key = %record.object_key, %error, "not published; subscribers catch up from the change feed")
                }
            }
            Ok(())
        },
    ))
    .await
}
