//! The push authorizer Lambda: AppSync Events asks it about every connect and subscribe; it answers with the
//! HTTP API's rules for the token's key and topic ([`s3kv::push::authorizer`]).

use std::time::Instant;

use lambda_runtime::{run, service_fn, Error, LambdaEvent};
use s3kv::access::Access;
use s3kv::adapters::{apigateway::ApiGatewayKeys, signed_http::SignedHttp};
use s3kv::push::authorizer::{Authorizer, AuthorizerRequest};
use s3kv::{config::Config, telemetry};

#[tokio::main]
async fn main() -> Result<(), Error> {
    telemetry::init();
    let config = Config::from_env()?;
    let keys = ApiGatewayKeys::new(SignedHttp::from_env(config.s3_timeout).await?);
    let authorizer = &Authorizer::new(Access::from_config(&config), keys);
    run(service_fn(
        move |event: LambdaEvent<AuthorizerRequest>| async move {
            let request = event.payload;
            let (answer, decision) = authorizer.handle(&request, Instant::now()).await;
            let context = &request.request_context;
            match &decision {
                Ok(_) => tracing::debug!(operation = %context.operation, channel = ?context.channel, "allowed"),
                Err(why) => tracing::info!(operation = %context.operation, channel = ?context.channel, %why, "refused"),
            }
            Ok::<_, Error>(answer)
        },
    ))
    .await
}
