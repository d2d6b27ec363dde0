//! `ifpin demo`: builds a throwaway virtual chassis and shows, live, what leaks and what
//! pinning stops.
//!
//! The chassis, the cases and their verdicts are `netlab::cases`; the pinned sockets are made by
//! the `ifpin` library ([`pinning::LibraryPinning`]); this module only checks the privilege,
//! runs the cases and prints ([`render`]) or writes JSON.

mod confine;
mod pinning;
mod render;

use std::process::ExitCode;

use anyhow::Context as _;
use netlab::cases::levels::ChildCommand;
use netlab::cases::{self, CaseError, DemoLab, LevelSetup};

use crate::exit;

/// What `ifpin demo` does, shown by `ifpin demo --help`.
const ABOUT: &str = "\
Builds three network namespaces: a host with a control link ctl0 and a front-panel port eth1
whose default route would carry control traffic, and a peer behind each link. Then runs every
case live and counts the frames each one puts on each link:

  negative controls  sockets bind()-ed to ctl0's address only leak out of the front panel
                     (which proves the counters see a leak)
  pinned sockets     TCP/UDP pinned by the ifpin library (IPv4, IPv6, link-local) reach the
                     control peer with nothing on the front link
  ingress            a pinned listener refuses what arrives from the front panel
  kernel findings    every override vector of kernel-facts.md against a pinned socket, as it
                     behaves on this kernel: why the enforced level exists
  levels             the vectors that leaked, run again in a child confined to ctl0 at the
                     enforced and sealed levels: what each guarantee level blocks
  lifecycle          ctl0 deleted and its index taken by a device to the front

Needs root (network namespaces, cgroup BPF). Takes a few seconds and leaves nothing behind,
also when interrupted with Ctrl-C.

Exit status: 0 when every promise held (pinned sockets leaked nothing, front ingress refused)
and every negative control leaked; 1 otherwise; 2 when it cannot run (not root). The kernel
findings and the levels section never change the exit status.";

/// Arguments of `ifpin demo` (see [`ABOUT`] for what it does).
#[derive(clap::Args, Debug)]
#[command(after_help = ABOUT)]
pub struct Args {
    /// Print one JSON document (kernel, cases with frame counts and verdicts, summary) instead
    /// of the table.
    #[arg(long)]
    pub json: bool,

    /// Internal: serve override vectors on stdin/stdout for the levels section (the demo
    /// starts itself this way inside the virtual chassis).
    #[arg(long, hide = true)]
    pub vector_child: bool,
}

/// Runs `ifpin demo`.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    if args.vector_child {
        return Ok(cases::levels::serve_child(&pinning::LibraryPinning));
    }
    if let Some(reason) = netlab::privilege_problem() {
        anyhow::bail!(
            "ifpin demo needs root: it builds network namespaces and veth links ({reason}). \
             Run it as root, e.g. `sudo ifpin demo`"
        );
    }
    cases::handle_interrupts().context("setting up Ctrl-C handling")?;
    if !args.json {
        render::Table::intro();
    }
    let lab = DemoLab::new().map_err(interrupted_or)?;
    let levels = LevelSetup {
        confiner: &confine::LibraryConfiner,
        child: ChildCommand {
            program: std::env::current_exe().context("finding the ifpin executable")?,
            args: vec!["demo".into(), "--vector-child".into()],
        },
    };
    let mut table = render::Table::default();
    let report = lab
        .run_with_levels(
            &cases::plan(),
            &pinning::LibraryPinning,
            &levels,
            &mut |progress| {
                if !args.json {
                    table.progress(progress);
                }
            },
        )
        .map_err(interrupted_or)?;
    drop(lab);
    let code = if report.summary.ok {
        exit::OK
    } else {
        exit::FOUND
    };
    if args.json {
        let mut value = serde_json::to_value(&report).context("serialising the report")?;
        value["exit_code"] = code.into();
        // Not println!: a closed stdout must not panic.
        use std::io::Write as _;
        let _ = writeln!(
            std::io::stdout(),
            "{}",
            serde_json::to_string_pretty(&value)?
        );
    } else {
        render::summary(&report);
    }
    Ok(ExitCode::from(code))
}

fn interrupted_or(err: CaseError) -> anyhow::Error {
    match err {
        CaseError::Interrupted => anyhow::anyhow!("interrupted: the virtual chassis was removed"),
        other => anyhow::Error::new(other).context("running the demo"),
    }
}
