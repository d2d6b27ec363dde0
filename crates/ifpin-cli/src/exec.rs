//! `ifpin exec`: run a program, and everything it starts, confined to one interface.
//!
//! Parse (clap), resolve (the interface, from `-i` or from a policy plane; the program), act
//! (`ifpin::exec::run`), report. The report goes to stderr, so the program's own stdout stays
//! usable in pipes: as text, or with `--json` as one JSON object on one line; `--report FILE`
//! also writes the JSON object to FILE. ifpin exits with the program's status.

use std::ffi::OsString;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::builder::TypedValueParser;
use ifpin::exec::{self, ExecOptions, Program, SignalForwarding};
use ifpin::{Interface, Level};

/// Arguments of `ifpin exec`.
#[derive(clap::Args, Debug)]
#[command(
    after_help = "Examples:\n  \
ifpin exec -i ctl0 -- curl http://10.0.0.2/\n  \
ifpin exec -i ctl0 --level enforced --json -- ./daemon --foreground\n  \
ifpin exec --policy chassis.toml --plane control -- python3 agent.py\n  \
ifpin exec --cleanup\n\n\
See --help for the levels, the report and the exit status.",
    after_long_help = "Runs the program, and everything it starts (static binaries, children, daemons \
that double-fork), so that no IP packet of theirs leaves or enters through any interface but \
one, whatever they do with their sockets.\n\n\
Levels (each adds to the one before):\n  \
pinned    every IPv4/IPv6 socket the program creates is bound to the interface (honest code stays on it)\n  \
enforced  a cgroup BPF filter drops every packet leaving or arriving through another interface, and counts it\n  \
sealed    (default) holds against a hostile program, root included: it cannot unpin or steer its sockets \
(setsockopt guard), loses every capability (keep one with --keep-cap), runs with no_new_privs in its own \
mount and cgroup namespaces (no cgroup hierarchy outside its own, kernel tunables read-only, systemd and \
D-Bus sockets masked), cannot ptrace or signal anything outside (Landlock), and cannot use clone3, new \
user namespaces, io_uring, bpf() or 32-bit system calls (seccomp)\n\n\
At enforced and sealed the filter also refuses multicast memberships on other interfaces, and closes the \
moment the interface disappears or its index changes hands, reopening when an interface of that name \
returns.\n\n\
Loopback is closed unless --allow-loopback: a socket pinned to an interface cannot reach 127.0.0.1.\n\n\
Report: on stderr when the program's cgroup is empty (the program's stdout stays yours): the level held, \
the interface, packets blocked per direction, refused setsockopt calls, link events, forwarded signals; \
one JSON line with --json, and also to FILE with --report FILE.\n\n\
Exit status: the program's own, or 128+N if signal N killed it; 2 if ifpin could not start it (missing \
privilege, no cgroup v2 or cgroup BPF, unknown interface, command not found), and then nothing is left \
behind; also 2 if stdin, stdout or stderr is an inet or packet socket (created outside, it \
could not be held). Inet and packet sockets inherited as fd 3 and above are withheld: the program \
does not receive them, and the report lists them. ifpin forwards SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGUSR1 and SIGUSR2 to the program and waits \
until every process it started has exited. If ifpin is killed, the program stays confined; the next \
run, or `ifpin exec --cleanup`, removes what is left once its processes are gone.\n\n\
Examples:\n  \
ifpin exec -i ctl0 -- curl http://10.0.0.2/\n  \
ifpin exec -i ctl0 --level enforced --json -- ./daemon --foreground\n  \
ifpin exec --policy chassis.toml --plane control -- python3 agent.py\n  \
ifpin exec --cleanup"
)]
pub struct Args {
    /// The interface to confine the program to: a name (`ctl0`) or an index (`3`).
    #[arg(
        short = 'i',
        long = "interface",
        value_name = "IFACE",
        required_unless_present_any = ["policy", "cleanup"],
        conflicts_with = "policy"
    )]
    interface: Option<String>,

    /// A policy file (TOML): take the interface of the plane named by --plane.
    #[arg(long, value_name = "FILE", requires = "plane")]
    policy: Option<PathBuf>,

    /// The control plane of --policy whose interface to use.
    #[arg(long, value_name = "NAME", requires = "policy")]
    plane: Option<String>,

    /// The guarantee level (see the list above).
    #[arg(
        long,
        value_name = "LEVEL",
        default_value = "sealed",
        value_parser = clap::builder::PossibleValuesParser::new(Level::ALL.map(Level::as_str))
            .map(|name: String| name.parse::<Level>().expect("one of Level::ALL"))
    )]
    level: Level,

    /// Let loopback (127.0.0.0/8, ::1, the host's own addresses) keep working.
    #[arg(long)]
    allow_loopback: bool,

    /// At level sealed, keep this capability (repeatable), e.g. CAP_NET_BIND_SERVICE for a
    /// daemon on port 179. Every other one is dropped; those that would break the seal
    /// (CAP_NET_RAW, CAP_NET_ADMIN, CAP_SYS_ADMIN, CAP_BPF, CAP_SYS_PTRACE, ...) are refused.
    #[arg(long = "keep-cap", value_name = "CAP")]
    keep_cap: Vec<String>,

    /// Run the program as this user (a name or a uid), with its groups.
    #[arg(long, value_name = "USER")]
    user: Option<String>,

    /// Run the program with this primary group (a name or a gid).
    #[arg(long, value_name = "GROUP")]
    group: Option<String>,

    /// Print the report (or the error) on stderr as one JSON object on one line instead of text.
    #[arg(long)]
    pub(crate) json: bool,

    /// Also write the report, as JSON, to FILE.
    #[arg(long, value_name = "FILE")]
    report: Option<PathBuf>,

    /// Remove the cgroups (and detach the programs) left by runs whose ifpin was killed, then exit.
    #[arg(long, conflicts_with_all = ["interface", "policy", "command"])]
    cleanup: bool,

    /// The program to run and its arguments (put `--` before it).
    #[arg(
        value_name = "CMD",
        trailing_var_arg = true,
        required_unless_present = "cleanup"
    )]
    command: Vec<OsString>,
}

/// Runs `ifpin exec`. With `--json`, an error is one JSON object on stderr (see
/// [`crate::exit`]).
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    run_inner(args)
}

fn run_inner(args: Args) -> anyhow::Result<ExitCode> {
    // Before anything else (and before any thread): the forwarded signals must reach the
    // signalfd, not kill ifpin.
    let signals = SignalForwarding::new().context("cannot set up signal forwarding")?;
    if args.cleanup {
        return cleanup(args.json);
    }

    // Resolve.
    let level = args.level;
    let interface = resolve_interface(&args)?;
    let (name, rest) = args
        .command
        .split_first()
        .context("no command given: put the program to run after `--`")?;
    let program = Program::resolve(name, rest.to_vec())?;
    let keep_caps = args
        .keep_cap
        .iter()
        .map(|name| exec::seal::parse_capability(name))
        .collect::<Result<Vec<_>, _>>()?;
    exec::seal::check_keep(&keep_caps)?;
    let identity = exec::seal::resolve_identity(args.user.as_deref(), args.group.as_deref())?;
    let mut options = ExecOptions::new(interface, level);
    options.confine.allow_loopback = args.allow_loopback;
    options.keep_caps = keep_caps;
    options.identity = identity;

    // Act.
    let outcome = exec::run(&options, &program, Some(&signals))?;

    // Report.
    let json = serde_json::to_string(&outcome.report).context("cannot serialize the report")?;
    if let Some(path) = &args.report {
        std::fs::write(path, format!("{json}\n"))
            .with_context(|| format!("cannot write the report to {}", path.display()))?;
    }
    if args.json {
        eprintln!("{json}");
    } else {
        eprint!("{}", outcome.report);
    }
    Ok(ExitCode::from(outcome.exit_code()))
}

fn resolve_interface(args: &Args) -> anyhow::Result<Interface> {
    if let Some(spec) = &args.interface {
        return Ok(Interface::resolve(spec)?);
    }
    let (Some(path), Some(plane_name)) = (&args.policy, &args.plane) else {
        bail!("give the interface with -i IFACE, or --policy FILE --plane NAME");
    };
    let policy = crate::audit::load_policy(path)?;
    let plane = policy.plane(plane_name).with_context(|| {
        let names: Vec<&str> = policy.planes().iter().map(|p| p.name.as_str()).collect();
        format!(
            "{}: no plane {plane_name:?} (planes in the file: {})",
            path.display(),
            names.join(", ")
        )
    })?;
    plane.interface.resolve().with_context(|| {
        format!(
            "{}:{}:{}: plane {:?} names interface {}, which this host does not have",
            path.display(),
            plane.interface_at.line,
            plane.interface_at.column,
            plane.name,
            plane.interface
        )
    })
}

fn cleanup(json: bool) -> anyhow::Result<ExitCode> {
    let cleanup = exec::cleanup_stale()?;
    if json {
        let paths = |list: &[PathBuf]| -> Vec<String> {
            list.iter().map(|p| p.display().to_string()).collect()
        };
        crate::exit::print_line(
            &serde_json::json!({
                "removed": paths(&cleanup.removed),
                "left_populated": paths(&cleanup.left_populated),
                "failed": cleanup.failed,
            })
            .to_string(),
        )?;
        return Ok(ExitCode::SUCCESS);
    }
    if cleanup.removed.is_empty() && cleanup.left_populated.is_empty() && cleanup.failed.is_empty()
    {
        eprintln!("ifpin exec --cleanup: nothing left behind by earlier runs");
    }
    for path in &cleanup.removed {
        eprintln!("ifpin exec --cleanup: removed {}", path.display());
    }
    for path in &cleanup.left_populated {
        eprintln!(
            "ifpin exec --cleanup: {} still has processes; left confined (run --cleanup again once they exit)",
            path.display()
        );
    }
    for failure in &cleanup.failed {
        eprintln!(
            "ifpin exec --cleanup: cannot remove {}: {}; it stays (programs attached), and later \
             runs are not affected",
            failure.path.display(),
            failure.reason
        );
    }
    Ok(ExitCode::SUCCESS)
}
