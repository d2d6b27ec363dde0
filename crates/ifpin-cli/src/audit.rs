//! `ifpin audit`.

use std::process::ExitCode;

/// Arguments of `ifpin audit`.
#[derive(clap::Args, Debug)]
pub struct Args {}

/// Runs `ifpin audit`.
pub fn run(_args: Args) -> anyhow::Result<ExitCode> {
    anyhow::bail!("ifpin audit is not built yet")
}
