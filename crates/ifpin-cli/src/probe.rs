//! `ifpin probe`.

use std::process::ExitCode;

/// Arguments of `ifpin probe`.
#[derive(clap::Args, Debug)]
pub struct Args {}

/// Runs `ifpin probe`.
pub fn run(_args: Args) -> anyhow::Result<ExitCode> {
    anyhow::bail!("ifpin probe is not built yet")
}
