//! `ifpin exec`.

use std::process::ExitCode;

/// Arguments of `ifpin exec`.
#[derive(clap::Args, Debug)]
pub struct Args {}

/// Runs `ifpin exec`.
pub fn run(_args: Args) -> anyhow::Result<ExitCode> {
    anyhow::bail!("ifpin exec is not built yet")
}
