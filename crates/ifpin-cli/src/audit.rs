//! `ifpin audit`: every TCP/UDP socket, its bound interface and owner, checked against a policy.
//!
//! Parse the arguments and the policy first (a bad policy is exit 2 before anything is read),
//! then take the library's snapshot, check it, filter it, and print a table or JSON. All the
//! reading and the rules live in `ifpin::audit`.

use std::io::{self, BufWriter, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, bail};
use ifpin::audit::owners::{ProcessStatus, process_status};
use ifpin::audit::{Audit, AuditOptions, ExecRun, NetnsCoverage, OwnerCoverage, Socket, Violation};
use ifpin::{InterfaceSpec, Policy};
use serde::Serialize;

use crate::exit;
use crate::text::{Escaped, Padded};

/// Arguments of `ifpin audit`.
#[derive(clap::Args, Debug)]
#[command(
    about = "List every TCP/UDP socket with its bound interface and owner; check it against a policy",
    after_help = "Run `ifpin audit --help` for the policy format and the rules.",
    after_long_help = LONG_HELP
)]
pub struct Args {
    /// Check the sockets against this policy file (TOML).
    #[arg(long, value_name = "FILE")]
    policy: Option<PathBuf>,

    /// Audit every network namespace of the host (named ones, those of running processes
    /// and threads, and those only a socket holds), labelling each socket with its namespace.
    /// Needs root.
    #[arg(long)]
    all_netns: bool,

    /// Show only sockets pinned to this interface (name, or index as 7 or #7).
    #[arg(short, long, value_name = "IFACE")]
    interface: Option<String>,

    /// Show only sockets held by this process.
    #[arg(long, value_name = "PID")]
    pid: Option<u32>,

    /// Show only sockets that break the policy (needs --policy).
    #[arg(long, requires = "policy")]
    violations: bool,

    /// Do not look up owning processes (faster on hosts with very many sockets).
    #[arg(long)]
    no_owners: bool,

    /// Print JSON: {"sockets": [...], "violations": [...], "warnings": [...], "owners": ...,
    /// "netns": {...}, "policy": ...}.
    #[arg(long)]
    pub(crate) json: bool,
}

const LONG_HELP: &str = r#"Lists every TCP and UDP socket (IPv4 and IPv6, listeners included) with the
interface it is pinned to (SO_BINDTODEVICE / SO_BINDTOIFINDEX, or none), its owner uid, the
processes holding it, and whether it runs under `ifpin exec`.

With --policy, the sockets are checked against the control planes written in a TOML file:

    [[plane]]
    name = "backplane"
    interface = "ctl0"                       # name or index
    prefixes = ["10.99.0.0/16", "fd99::/16"] # what lives behind this interface
    ports = [7500, 7501]                     # services reachable only through it

Rules (each violation names its rule):
    unpinned-plane-traffic   a connected socket to a plane's address, not pinned to the
                             plane's interface: it relies on the routing table
    unpinned-plane-listener  a listener (or unconnected UDP socket) on a plane's port, not
                             pinned: it can be reached through other interfaces
    pinned-off-plane         a socket pinned to a plane's interface talking to an address
                             outside the plane: a misconfiguration
Link-local peers scoped to a plane's interface belong to that plane. A TCP socket that was only
bound (state close, no peer; "role": "bound" in JSON) sends nothing and cannot be reached: no
rule applies to it. IPv4-mapped addresses (::ffff:a.b.c.d) are compared as IPv4, local ones
included (a listener on ::ffff:127.0.0.1 is a loopback listener); a policy prefix
::ffff:a.b.c.d/N (N >= 96) is read as a.b.c.d/(N-96). An interface the policy names but this
host lacks is a warning (it may be a line card not inserted yet).

The policy must be a regular file of at most 16 MiB (a FIFO, a device or a directory is refused
at once) in UTF-8; every error in it names file:line:column.

--all-netns finds namespaces through named mounts (/run/netns), every process and every thread
(/proc/PID/task/TID/ns/net), and sockets: a TCP/UDP socket in some process's open files that no
namespace listed is traced to its namespace (pidfd_getfd + SIOCGSKNS), so a namespace kept
alive only by a socket is audited too. Namespaces that cannot be entered, processes whose
namespace cannot be read and sockets that cannot be traced are counted and named (warnings,
and "netns" in JSON).

Without root, sockets of other users' processes show no owner and other network namespaces
cannot be entered; the audit says so. -i NAME must name an interface that exists here (in some
audited namespace with --all-netns); -i 7 or -i '#7' selects sockets pinned to index 7 even if
no interface has it any more. --pid of a process that does not exist or has exited is an error.
Text output shows control and invisible characters in names as escapes (\n, \e, \u{202e});
JSON carries them as they are. When the reader of the output goes away (ifpin audit | head),
the audit ends quietly with its own exit status.

Exit status: 0 no violation, 1 at least one violation shown, 2 usage or system error (a policy
error names file:line:column).

Examples:
    ifpin audit
    ifpin audit --policy /etc/ifpin/policy.toml --violations
    ifpin audit --all-netns --json | jq '.violations'
    ifpin audit --pid 1234 -i ctl0"#;

/// Loads a policy for any subcommand: a file that cannot be read says so; one that was read
/// but is wrong says where, and to fix it.
pub fn load_policy(path: &std::path::Path) -> anyhow::Result<Policy> {
    match Policy::load(path) {
        Ok(policy) => Ok(policy),
        Err(err) if err.is_content() => {
            Err(anyhow::Error::new(err)
                .context("the policy file is not valid; fix it and run again"))
        }
        Err(err) => Err(err.into()),
    }
}

/// What `-i` selects: a name, or an index (`7` or `#7`), which need not exist any more.
fn parse_interface_filter(text: &str) -> anyhow::Result<InterfaceSpec> {
    let digits = text.strip_prefix('#').unwrap_or(text);
    if text.starts_with('#') && (digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit())) {
        bail!("--interface {text}: after # comes an interface index, such as #7");
    }
    digits
        .parse::<InterfaceSpec>()
        .with_context(|| format!("--interface takes an interface name or index, not {text:?}"))
}

/// Runs `ifpin audit`.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    // Parse and resolve everything the user wrote before reading the host.
    let policy = args.policy.as_deref().map(load_policy).transpose()?;
    let interface = args
        .interface
        .as_deref()
        .map(parse_interface_filter)
        .transpose()?;
    // In this namespace alone a name must exist: a typo would otherwise show an empty,
    // reassuring table. Across namespaces (--all-netns) it may live in any of them (checked
    // once they are read). An index need not exist: sockets may still be pinned to an index
    // whose interface is gone.
    if let (Some(spec @ InterfaceSpec::Name(_)), false) = (&interface, args.all_netns) {
        spec.resolve().with_context(|| {
            format!(
                "--interface {}: no such interface here (use --all-netns to match it in every network namespace)",
                Escaped(&spec.to_string())
            )
        })?;
    }
    if let Some(pid) = args.pid {
        match process_status(pid) {
            ProcessStatus::Alive => {}
            ProcessStatus::Missing => bail!("--pid {pid}: no such process"),
            ProcessStatus::Zombie => bail!(
                "--pid {pid}: the process has exited (a zombie waiting for its parent): it holds no socket"
            ),
        }
        if let Err(err) = std::fs::read_dir(format!("/proc/{pid}/fd")) {
            if err.kind() == io::ErrorKind::PermissionDenied {
                bail!(
                    "--pid {pid}: the open files of this process cannot be read (another user's process; run as root)"
                );
            }
        }
    }

    let audit = ifpin::audit::snapshot(&AuditOptions {
        all_netns: args.all_netns,
        owners: !args.no_owners || args.pid.is_some(),
        ..AuditOptions::default()
    })
    .context("cannot audit the sockets of this host")?;
    if let Some(spec) = &interface {
        check_interface_matches(&audit, spec, args.all_netns)?;
    }
    let check = policy.as_ref().map(|p| audit.check(p)).unwrap_or_default();

    let mut violating = vec![false; audit.sockets().len()];
    for violation in &check.violations {
        violating[violation.socket] = true;
    }
    let shown = |i: usize, socket: &Socket| {
        interface.as_ref().is_none_or(|spec| match spec {
            InterfaceSpec::Name(name) => socket.interface_name.as_deref() == Some(name.as_str()),
            InterfaceSpec::Index(index) => socket.diag.bound_interface == Some(*index),
        }) && args.pid.is_none_or(|pid| socket.pids.contains(&pid))
            && (!args.violations || violating[i])
    };
    let sockets: Vec<usize> = audit
        .sockets()
        .iter()
        .enumerate()
        .filter(|&(i, s)| shown(i, s))
        .map(|(i, _)| i)
        .collect();
    let violations: Vec<&Violation> = check
        .violations
        .iter()
        .filter(|v| shown(v.socket, &audit.sockets()[v.socket]))
        .collect();
    let mut warnings: Vec<&str> = audit.warnings().iter().map(String::as_str).collect();
    warnings.extend(check.warnings.iter().map(String::as_str));
    // The status is the audit's, whatever happens to the output: decided before writing.
    let status = ExitCode::from(if violations.is_empty() {
        exit::OK
    } else {
        exit::FOUND
    });

    let stdout = io::stdout();
    let mut out = BufWriter::with_capacity(1 << 16, stdout.lock());
    let written: io::Result<()> = if args.json {
        let report = Report {
            sockets: sockets.iter().map(|&i| view(&audit, i)).collect(),
            violations: violations
                .iter()
                .map(|v| ViolationView {
                    rule: v.rule.as_str(),
                    plane: &v.plane,
                    reason: &v.reason,
                    socket: view(&audit, v.socket),
                })
                .collect(),
            warnings: &warnings,
            owners: audit.owners(),
            netns: audit.netns(),
            policy: policy.as_ref().map(|p| p.path().display().to_string()),
        };
        serde_json::to_writer_pretty(&mut out, &report)
            .map_err(io::Error::from)
            .and_then(|()| writeln!(out))
            .and_then(|()| out.flush())
    } else {
        for warning in &warnings {
            exit::warn(warning);
        }
        print_table(
            &mut out,
            &audit,
            &sockets,
            &violations,
            policy.as_ref(),
            args.all_netns,
        )
        .and_then(|()| out.flush())
    };
    match written {
        Ok(()) => Ok(status),
        // The reader went away (`ifpin audit | head -1`): nothing more to say to it.
        Err(err) if err.kind() == io::ErrorKind::BrokenPipe => {
            // The buffer still holds what could not be written; dropping it must not retry.
            std::mem::forget(out);
            Ok(status)
        }
        Err(err) => Err(anyhow::Error::new(err).context("cannot write the report")),
    }
}

/// `-i` must select something: a name some audited namespace has, or an index that exists or
/// that some socket is still pinned to.
fn check_interface_matches(
    audit: &Audit,
    spec: &InterfaceSpec,
    all_netns: bool,
) -> anyhow::Result<()> {
    let namespaces = audit.namespaces().len();
    match spec {
        InterfaceSpec::Name(name) => {
            let known = audit
                .namespaces()
                .iter()
                .any(|ns| ns.interfaces.values().any(|n| n == name.as_str()))
                || audit
                    .sockets()
                    .iter()
                    .any(|s| s.interface_name.as_deref() == Some(name.as_str()));
            if !known {
                bail!(
                    "--interface {}: no such interface in any of the {namespaces} network namespace{} audited",
                    Escaped(name.as_str()),
                    if namespaces == 1 { "" } else { "s" }
                );
            }
        }
        InterfaceSpec::Index(index) => {
            let known = audit
                .namespaces()
                .iter()
                .any(|ns| ns.interfaces.contains_key(index))
                || audit
                    .sockets()
                    .iter()
                    .any(|s| s.diag.bound_interface == Some(*index));
            if !known {
                bail!(
                    "--interface {index}: no interface has index {index}{} and no socket is pinned to it",
                    if all_netns {
                        " in any network namespace"
                    } else {
                        " here"
                    }
                );
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn address_widths_match_what_is_printed() {
        for text in [
            "0.0.0.0:0",
            "255.255.255.255:65535",
            "10.99.7.2:7600",
            "127.0.0.1:80",
            "[::]:0",
            "[fe80::1%3]:7500",
            "[fd99:7::2]:443",
        ] {
            let addr: std::net::SocketAddr = text.parse().unwrap();
            assert_eq!(addr_len(addr), addr.to_string().len(), "{text}");
        }
    }
}

#[derive(Serialize)]
struct Report<'a> {
    sockets: Vec<SocketView<'a>>,
    violations: Vec<ViolationView<'a>>,
    warnings: &'a [&'a str],
    #[serde(flatten)]
    owners: OwnerCoverage,
    netns: &'a NetnsCoverage,
    policy: Option<String>,
}

#[derive(Serialize)]
struct ViolationView<'a> {
    rule: &'static str,
    plane: &'a str,
    reason: &'a str,
    #[serde(flatten)]
    socket: SocketView<'a>,
}

#[derive(Serialize)]
struct SocketView<'a> {
    protocol: &'static str,
    state: &'static str,
    role: &'static str,
    local: Addr,
    remote: Addr,
    interface: Option<&'a str>,
    interface_index: Option<u32>,
    netns: &'a str,
    uid: u32,
    inode: u64,
    processes: Vec<ProcessView<'a>>,
    exec: Option<&'a ExecRun>,
}

#[derive(Serialize)]
struct ProcessView<'a> {
    pid: u32,
    command: &'a str,
}

/// A socket address serialized as Rust's `SocketAddr` displays it.
struct Addr(std::net::SocketAddr);

impl Serialize for Addr {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&self.0)
    }
}

fn view(audit: &Audit, index: usize) -> SocketView<'_> {
    let socket = &audit.sockets()[index];
    let diag = &socket.diag;
    SocketView {
        protocol: diag.protocol.as_str(),
        state: diag.state.name(diag.protocol),
        role: diag.role().as_str(),
        local: Addr(diag.local),
        remote: Addr(diag.remote),
        interface: socket.interface_name.as_deref(),
        interface_index: diag.bound_interface.map(|i| i.get()),
        netns: &audit.namespace_of(socket).label,
        uid: diag.uid,
        inode: diag.inode,
        processes: socket
            .pids
            .iter()
            .map(|&pid| ProcessView {
                pid,
                command: audit.process(pid).map_or("", |p| p.command.as_str()),
            })
            .collect(),
        exec: socket.exec.as_ref(),
    }
}

/// How wide `addr` prints: computed for IPv4 (most sockets, and this runs once per row),
/// counted from `Display` for IPv6.
fn addr_len(addr: std::net::SocketAddr) -> usize {
    fn digits(n: u32) -> usize {
        match n {
            0..=9 => 1,
            10..=99 => 2,
            100..=999 => 3,
            1000..=9999 => 4,
            _ => 5,
        }
    }
    match addr {
        std::net::SocketAddr::V4(v4) => {
            let ip: usize = v4.ip().octets().iter().map(|&o| digits(o.into())).sum();
            ip + 3 + 1 + digits(v4.port().into())
        }
        v6 => crate::text::display_width(v6),
    }
}

fn print_table(
    out: &mut impl Write,
    audit: &Audit,
    sockets: &[usize],
    violations: &[&Violation],
    policy: Option<&Policy>,
    all_netns: bool,
) -> io::Result<()> {
    let all = audit.sockets();
    let rows = sockets.iter().map(|&i| &all[i]);
    let addr_width = |f: fn(&Socket) -> std::net::SocketAddr| {
        rows.clone()
            .map(|s| addr_len(f(s)))
            .max()
            .unwrap_or(0)
            .max(6)
    };
    let local_w = addr_width(|s| s.diag.local);
    let remote_w = addr_width(|s| s.diag.remote);
    let iface_w = rows
        .clone()
        .map(|s| Escaped(&iface_text(s)).width())
        .max()
        .unwrap_or(0)
        .max(5);
    let netns_w = if all_netns {
        audit
            .namespaces()
            .iter()
            .map(|ns| Escaped(&ns.label).width())
            .max()
            .unwrap_or(0)
            .max(5)
    } else {
        0
    };

    if let Some(policy) = policy {
        writeln!(
            out,
            "{} violation{} of {}",
            violations.len(),
            if violations.len() == 1 { "" } else { "s" },
            Escaped(&policy.path().display().to_string())
        )?;
        for violation in violations {
            let socket = &all[violation.socket];
            let d = &socket.diag;
            write!(
                out,
                "  {} [{}] {} {} {} -> {}, ",
                violation.rule,
                Escaped(&violation.plane),
                d.protocol,
                d.state.name(d.protocol),
                d.local,
                d.remote,
            )?;
            match iface_text(socket) {
                name if d.bound_interface.is_some() => write!(out, "pinned to {}", Escaped(&name))?,
                _ => write!(out, "unpinned")?,
            }
            if all_netns {
                write!(
                    out,
                    ", netns {}",
                    Escaped(&audit.namespace_of(socket).label)
                )?;
            }
            if socket.pids.is_empty() {
                write!(out, ", no owning process found")?;
            } else {
                write!(out, ", held by ")?;
                write_owners(out, audit, socket)?;
            }
            writeln!(out, "\n      {}", Escaped(&violation.reason))?;
        }
        writeln!(out)?;
    }

    if all_netns {
        write!(out, "{:<netns_w$} ", "NETNS")?;
    }
    writeln!(
        out,
        "{:<5} {:<12} {:<local_w$} {:<remote_w$} {:<iface_w$} {:>6} PROCESS",
        "PROTO", "STATE", "LOCAL", "REMOTE", "IFACE", "UID"
    )?;
    for socket in rows {
        let d = &socket.diag;
        if all_netns {
            write!(
                out,
                "{} ",
                Padded(&audit.namespace_of(socket).label, netns_w)
            )?;
        }
        write!(
            out,
            "{:<5} {:<12} {:<local_w$} {:<remote_w$} {} {:>6} ",
            d.protocol.as_str(),
            d.state.name(d.protocol),
            d.local,
            d.remote,
            Padded(&iface_text(socket), iface_w),
            d.uid,
        )?;
        write_owners(out, audit, socket)?;
        if let Some(run) = &socket.exec {
            write!(out, " [ifpin exec")?;
            if let Some(level) = run.level {
                write!(out, " {level}")?;
            }
            write!(out, " {}]", Escaped(&run.cgroup))?;
        }
        writeln!(out)?;
    }
    if let OwnerCoverage::Partial { unreadable, .. } = audit.owners() {
        writeln!(
            out,
            "\nowners may be missing: the open files of {unreadable} processes could not be read \
             (run as root)"
        )?;
    }
    let netns = audit.netns();
    if !netns.is_complete() {
        writeln!(
            out,
            "\nnetwork namespaces may be missing: {} not entered, {} processes whose namespace \
             could not be read, {} sockets not traced to a namespace (see the warnings)",
            netns.not_entered.len(),
            netns.unreadable_processes,
            netns.unresolved_sockets
        )?;
    }
    Ok(())
}

fn iface_text(socket: &Socket) -> std::borrow::Cow<'_, str> {
    match (&socket.interface_name, socket.diag.bound_interface) {
        (Some(name), _) => name.as_str().into(),
        (None, Some(index)) => format!("#{index}").into(),
        (None, None) => "-".into(),
    }
}

fn write_owners(out: &mut impl Write, audit: &Audit, socket: &Socket) -> io::Result<()> {
    if socket.pids.is_empty() {
        return write!(out, "-");
    }
    for (n, &pid) in socket.pids.iter().enumerate() {
        if n > 0 {
            write!(out, ",")?;
        }
        match audit.process(pid) {
            Some(p) if !p.command.is_empty() => write!(out, "{pid}/{}", Escaped(&p.command))?,
            _ => write!(out, "{pid}")?,
        }
    }
    Ok(())
}
