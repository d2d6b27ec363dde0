//! `ifpin demo`.

use std::process::ExitCode;

/// Arguments of `ifpin demo`.
#[derive(clap::Args, Debug)]
pub struct Args {}

/// Runs `ifpin demo`.
pub fn run(_args: Args) -> anyhow::Result<ExitCode> {
    anyhow::bail!("ifpin demo is not built yet")
}
