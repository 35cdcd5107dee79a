//! `configure`: an endpoint and its API key saved as a profile (see [`crate::profile`]).

use clap::Args;
use serde_json::json;

use crate::output::{print, Failure};
use crate::{profile, Cli};

#[derive(Debug, Args)]
pub struct ConfigureArgs {
    /// The API's base URL
    endpoint: String,
}

/// The key is read from stdin, never from a flag or the environment: a flag shows in `ps` and the shell's
/// history, and an exported S3KV_API_KEY (the quick start's) must not become another profile's key unnoticed.
pub(super) async fn exec(cli: &Cli, args: &ConfigureArgs) -> Result<(), Failure> {
    let endpoint = args.endpoint.as_str();
    super::check_endpoint(endpoint)?;
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
    };
    let path = profile::save(&cli.profile, saved).map_err(Failure::Other)?;
    print(
        cli.output,
        &format!("profile {} saved in {}", cli.profile, path.display()),
        json!({ "profile": cli.profile, "path": path }),
    );
    Ok(())
}
