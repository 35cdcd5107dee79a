//! `completions SHELL`: a completion script generated from the same clap definition as the parser.

use clap::Args;

use crate::output::Failure;
use crate::Cli;

#[derive(Debug, Args)]
pub struct CompletionsArgs {
    shell: clap_complete::Shell,
}

pub(super) fn exec(args: &CompletionsArgs) -> Result<(), Failure> {
    let mut command = <Cli as clap::CommandFactory>::command();
    clap_complete::generate(args.shell, &mut command, "s3kv", &mut std::io::stdout());
    Ok(())
}
