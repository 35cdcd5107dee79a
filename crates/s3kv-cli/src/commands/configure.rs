//! `configure`: an endpoint and its API key (and `watch`'s push endpoint) saved as a profile (see [`crate::profile`]).

use clap::Args;
use serde_json::json;

use crate::output::{print, Failure};
use crate::{profile, Cli};

#[derive(Debug, Args)]
pub struct ConfigureArgs {
    /// The API's base URL
    endpoint: String,
    /// `watch`'s push endpoint: the Event API's realtime URL (wss://ID.appsync-realtime-api.REGION.amazonaws.com/event/realtime);
    /// not needed for s3kv-local, whose push is on the API's own address
    #[arg(long, value_name = "URL")]
    push_url: Option<String>,
    /// The host push credentials name, when not the push URL's (AppSync: appsync-realtime-api read as appsync-api)
    #[arg(long, value_name = "HOST", requires = "push_url")]
    push_host: Option<String>,
}

/// The key is read from stdin, never from a flag or the environment: a flag shows in `ps` and the shell's
/// history, and an exported S3KV_API_KEY (the quick start's) must not become another profile's key unnoticed.
pub(super) async fn exec(cli: &Cli, args: &ConfigureArgs) -> Result<(), Failure> {
    let endpoint = args.endpoint.as_str();
    super::check_endpoint(endpoint)?;
    if let Some(url) = &args.push_url {
        super::watch::check_push_url(url)?;
    }
    if std::io::IsTerminal::is_terminal(&std::io::stdin()) {
        eprint!("API key for {endpoint}: ");
    }
    let mut line = String::new();
    let mut stdin = tokio::io::BufReader::new(tokio::io::stdin());
    tokio::io::AsyncBufReadExt::read_line(&mut stdin, &mut line)
        .await
        .map_err(|e| Failure::Other(format!("reading the key from stdin: {e}")))?;
    let api_key = line.trim();
    if api_key.is_empty() {
        return Err(Failure::Usage(
            "no API key on stdin: echo \"$KEY\" | s3kv configure [--profile NAME] URL".into(),
        ));
    }
    let saved = profile::Profile {
        endpoint: Some(endpoint.to_owned()),
        api_key: Some(api_key.to_owned()),
        push_url: args.push_url.clone(),
        push_host: args.push_host.clone(),
    };
    let path = profile::save(&cli.profile, saved).map_err(Failure::Other)?;
    print(
        cli.output,
        &format!("profile {} saved in {}", cli.profile, path.display()),
        json!({ "profile": cli.profile, "path": path }),
    );
    Ok(())
}
