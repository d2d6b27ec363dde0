//! `ifpin demo`: builds a throwaway virtual chassis and shows, live, what leaks and what
//! pinning and each guarantee level stop.
//!
//! Everything the demo does is the `ifpin-demo` library (the chassis, the cases, the vector
//! catalogue, the levels run through `ifpin exec`); this module only checks the privilege, runs
//! the cases and prints them ([`render`]) or writes JSON. [`run_vector`] is the hidden
//! `ifpin demo-vector` the levels section runs as the confined program.

mod render;

use std::ffi::OsString;
use std::process::ExitCode;

use anyhow::Context as _;
use ifpin_demo::cases::{self, CaseError, ChildCommand, DemoLab, LibraryPinning};

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
  kernel findings    every override vector of docs/kernel.md against a pinned socket, as it
                     behaves on this kernel: why the enforced level exists
  levels             the override vectors that got out, and the escapes of a hostile root
                     program (another cgroup, kernel knobs, a borrowed socket, multicast joins,
                     the error queue, 32-bit calls, a nested cgroup, killing the supervisor),
                     each run as `ifpin exec -i ctl0 --level LEVEL` at pinned, enforced and
                     sealed: what each guarantee level holds
  lifecycle          ctl0 deleted and its index taken by a device to the front

Each measurement is compared with the answer docs/kernel.md documents; a difference is marked
[differs from the documented answer].

Needs root (network namespaces, cgroup BPF). Takes about ten seconds and leaves nothing
behind, also when interrupted with Ctrl-C.

Exit status: 0 when every promise held (pinned sockets leaked nothing, front ingress refused)
and every negative control leaked; 1 otherwise; 2 when it cannot run (not root). The kernel
findings and the levels section never change the exit status.";

/// Arguments of `ifpin demo` (see [`ABOUT`] for what it does).
#[derive(clap::Args, Debug)]
#[command(after_help = ABOUT)]
pub struct Args {
    /// Print one JSON document (kernel, cases with frame counts and verdicts, levels, summary)
    /// instead of the table.
    #[arg(long)]
    pub json: bool,
}

/// Arguments of the hidden `ifpin demo-vector`: one vector of the demo's levels section, run
/// as the program of `ifpin exec` inside the virtual chassis.
#[derive(clap::Args, Debug)]
pub struct VectorArgs {
    /// The vector's id (or `hold-socket`, the process outside).
    pub vector: String,
    /// The vector's arguments (`--key value`...).
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub args: Vec<OsString>,
}

/// The hidden subcommand's name, as [`ChildCommand::vector_args`] gives it.
pub const VECTOR_SUBCOMMAND: &str = "demo-vector";

/// Runs `ifpin demo`.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    if let Some(reason) = ifpin_demo::privilege_problem() {
        anyhow::bail!(
            "ifpin demo needs root: it builds network namespaces and veth links ({reason}). \
             Run it as root, e.g. `sudo ifpin demo`"
        );
    }
    cases::handle_interrupts().context("setting up Ctrl-C handling")?;
    if !args.json {
        render::Table::intro();
    }
    let child = ChildCommand {
        program: std::env::current_exe().context("finding the ifpin executable")?,
        vector_args: vec![VECTOR_SUBCOMMAND.to_owned()],
    };
    let lab = DemoLab::new().map_err(interrupted_or)?;
    let mut table = render::Table::default();
    let report = lab
        .run_with_levels(&cases::plan(), &LibraryPinning, &child, &mut |progress| {
            if !args.json {
                table.progress(progress);
            }
        })
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

/// Runs the hidden `ifpin demo-vector`: the vector's answer is one JSON line on stdout.
pub fn run_vector(args: VectorArgs) -> anyhow::Result<ExitCode> {
    let rest = args
        .args
        .into_iter()
        .map(|a| {
            a.into_string()
                .map_err(|a| anyhow::anyhow!("argument {a:?} is not UTF-8"))
        })
        .collect::<anyhow::Result<Vec<String>>>()?;
    cases::levels::run_child(&args.vector, rest, &LibraryPinning, &mut std::io::stdout())
        .map_err(|e| anyhow::anyhow!("demo-vector {}: {e}", args.vector))?;
    Ok(ExitCode::SUCCESS)
}

fn interrupted_or(err: CaseError) -> anyhow::Error {
    match err {
        CaseError::Interrupted => anyhow::anyhow!("interrupted: the virtual chassis was removed"),
        other => anyhow::Error::new(other).context("running the demo"),
    }
}
