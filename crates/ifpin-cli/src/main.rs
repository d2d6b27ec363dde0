//! The `ifpin` command: a thin layer over the `ifpin` library and `ifpin-demo`.
//!
//! Arguments are parsed here, each subcommand lives in its own module and turns its
//! arguments into resolved settings before acting. No kernel logic lives in this crate.
//!
//! Exit codes: `0` ok, `1` a violation or leak found (or "not reachable" for `probe`),
//! `2` a usage or system error. `exec` passes the program's own status through.

mod audit;
mod demo;
mod duration;
mod exec;
mod exit;
mod guard;
mod probe;
mod text;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Keep traffic on one network interface, and prove it.
///
/// `bind()` to an interface's address does not choose the interface: the kernel routes by
/// destination. ifpin pins sockets and whole programs to one interface at a guarantee level
/// (pinned, enforced, sealed), reports which level holds, and fails closed.
#[derive(Parser, Debug)]
#[command(
    name = "ifpin",
    version,
    propagate_version = true,
    max_term_width = 100
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Build a throwaway virtual chassis and show, live, what leaks and what pinning stops.
    Demo(demo::Args),
    /// Connect or send over a socket pinned to one interface, and say what happened.
    Probe(probe::Args),
    /// Run a program, and everything it starts, confined to one interface.
    Exec(exec::Args),
    /// List every TCP/UDP socket with its bound interface and owner; check it against a policy.
    Audit(audit::Args),
    /// Internal: one vector of `ifpin demo`'s levels section, run as the confined program.
    #[command(name = "demo-vector", hide = true)]
    DemoVector(demo::VectorArgs),
    /// Hold this network namespace to the policy, name who tried, export metrics.
    Guard(guard::Args),
}

impl Command {
    /// How the command's errors are printed (see [`exit`]).
    fn error_format(&self) -> exit::ErrorFormat {
        use exit::{ErrorFormat, Stream};
        match self {
            Command::Demo(args) if args.json => ErrorFormat::Json(Stream::Stdout),
            Command::Probe(args) if args.json => ErrorFormat::Json(Stream::Stdout),
            Command::Audit(args) if args.json => ErrorFormat::Json(Stream::Stdout),
            Command::Exec(args) if args.json => ErrorFormat::Json(Stream::Stderr),
            Command::Guard(args) if args.json => ErrorFormat::Json(Stream::Stdout),
            _ => ErrorFormat::Text,
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let format = cli.command.error_format();
    let result = match cli.command {
        Command::Demo(args) => demo::run(args),
        Command::Probe(args) => probe::run(args),
        Command::Exec(args) => exec::run(args),
        Command::Audit(args) => audit::run(args),
        Command::DemoVector(args) => demo::run_vector(args),
        Command::Guard(args) => guard::run(args),
    };
    exit::finish(result, format)
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory as _;

    #[test]
    fn the_demo_vector_subcommand_is_hidden_and_named_as_the_demo_starts_it() {
        let cli = super::Cli::command();
        let sub = cli
            .find_subcommand(super::demo::VECTOR_SUBCOMMAND)
            .expect("the subcommand the demo runs");
        assert!(sub.is_hide_set());
        let help = super::Cli::command().render_help().to_string();
        assert!(!help.contains("demo-vector"), "{help}");
    }
}
