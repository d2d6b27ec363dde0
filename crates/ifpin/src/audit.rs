//! Every TCP/UDP socket of the host, its bound interface and its owners, checked against a
//! [`Policy`](crate::Policy).
//!
//! [`snapshot`] reads, per network namespace, the kernel's socket table ([`crate::sockdiag`])
//! and the namespace's interface names (on a thread that entered it, since an index only
//! means something inside its namespace), and, once for all namespaces, which processes hold
//! which socket (`/proc/*/fd`, see [`owners`]). [`Audit::check`] then applies the policy's
//! three rules, resolving each plane's interface in each namespace:
//!
//! - [`Rule::UnpinnedPlaneTraffic`]: a connected socket ([`Role::Connected`](crate::sockdiag::Role::Connected): TCP with a
//!   peer, in any state but `LISTEN`; connected UDP) whose peer belongs to a plane and which
//!   is not pinned to the plane's interface: it relies on the routing table.
//! - [`Rule::UnpinnedPlaneListener`]: a TCP listener or unconnected UDP socket
//!   ([`Role::Listening`](crate::sockdiag::Role::Listening)) on a plane's port that is not pinned to the plane's interface: it
//!   can be reached through other interfaces. (Sockets bound to a loopback address cannot,
//!   and are left out.)
//! - [`Rule::PinnedOffPlane`]: a connected socket pinned to a plane's interface whose peer is
//!   outside every plane of that interface: a misconfiguration.
//!
//! A TCP socket that was only `bind()`ed (state `CLOSE`, no peer: [`Role::Bound`](crate::sockdiag::Role::Bound)) neither
//! sends nor can be reached: it is listed, and no rule applies to it. IPv4-mapped IPv6
//! addresses (`::ffff:10.99.0.1`) are compared as the IPv4 address they carry, local and
//! remote alike (a listener on `::ffff:127.0.0.1` is a loopback listener); the policy turns
//! mapped prefixes into IPv4 prefixes when it is loaded (see [`crate::policy`]).
//!
//! A daemon can audit itself at start-up:
//!
//! ```no_run
//! let policy = ifpin::Policy::load("/etc/ifpin/policy.toml")?;
//! let audit = ifpin::audit::snapshot(&ifpin::audit::AuditOptions::default())?;
//! let me = std::process::id();
//! for violation in audit.check(&policy).violations {
//!     let socket = &audit.sockets()[violation.socket];
//!     if socket.pids.contains(&me) {
//!         eprintln!("{}: {}", violation.rule, violation.reason);
//!     }
//! }
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

pub mod netns;
pub mod owners;
mod rules;

pub use rules::{Check, Rule, Violation};

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use crate::interface::{IfIndex, InterfaceSpec};
use crate::level::Level;
use crate::sockdiag::{self, DiagSocket, SockDiagError};

pub use netns::Namespace;
pub use owners::{Pid, Process};

/// What to read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuditOptions {
    /// Every network namespace of the host, not only the caller's.
    pub all_netns: bool,
    /// Find the processes holding each socket (one pass over `/proc/*/fd`).
    pub owners: bool,
    /// With `all_netns`: also look at every thread of multi-threaded processes, for namespaces
    /// only one thread is in (`/proc/PID/task/TID/ns/net`). On by default; turned off only to
    /// measure what it costs.
    pub netns_from_threads: bool,
    /// With `all_netns`: also find namespaces that no process or thread is in, kept alive only
    /// by a socket (a TCP/UDP socket in some process's fd table that no namespace's dump
    /// returned is asked for its namespace). This reads every process's fd table even without
    /// `owners`. On by default; turned off only to measure what it costs.
    pub netns_from_sockets: bool,
}

impl Default for AuditOptions {
    fn default() -> Self {
        AuditOptions {
            all_netns: false,
            owners: true,
            netns_from_threads: true,
            netns_from_sockets: true,
        }
    }
}

/// One audited network namespace and its interfaces.
#[derive(Clone, Debug)]
pub struct NamespaceSnapshot {
    /// The namespace.
    pub namespace: Namespace,
    /// How its sockets are labelled (its name, or `net:[INODE]`).
    pub label: String,
    /// Its interfaces when it was read, by index.
    pub interfaces: BTreeMap<IfIndex, String>,
}

impl NamespaceSnapshot {
    /// The name of interface `index` in this namespace.
    pub fn interface_name(&self, index: IfIndex) -> Option<&str> {
        self.interfaces.get(&index).map(String::as_str)
    }

    /// The index `spec` names in this namespace, if such an interface exists.
    pub fn resolve(&self, spec: &InterfaceSpec) -> Option<IfIndex> {
        match spec {
            InterfaceSpec::Index(index) => self.interfaces.contains_key(index).then_some(*index),
            InterfaceSpec::Name(name) => self
                .interfaces
                .iter()
                .find(|(_, n)| n.as_str() == name.as_str())
                .map(|(index, _)| *index),
        }
    }
}

/// A socket that runs under `ifpin exec`: its owner lives in an `ifpin` cgroup.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ExecRun {
    /// The owner's cgroup v2 path (`/ifpin/<run>`, or below it).
    pub cgroup: String,
    /// The guarantee level of the run, as the BPF programs attached to its cgroup tell it;
    /// `None` when they cannot be read (querying them needs `CAP_NET_ADMIN`/root) or none is
    /// attached.
    pub level: Option<Level>,
}

/// One audited socket.
#[derive(Clone, Debug)]
pub struct Socket {
    /// What the kernel reports.
    pub diag: DiagSocket,
    /// Index of its namespace in [`Audit::namespaces`].
    pub netns: usize,
    /// The name of the interface it is pinned to, in its namespace (`None` when unpinned, or
    /// when the index names no interface any more).
    pub interface_name: Option<String>,
    /// The processes holding it, by pid.
    pub pids: Vec<Pid>,
    /// Set when an owner runs under `ifpin exec`.
    pub exec: Option<ExecRun>,
}

/// How complete the owner information is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case", tag = "owners")]
pub enum OwnerCoverage {
    /// Every process's fd table was read.
    Complete,
    /// A holder may be missing: some processes' fd tables could not be read.
    Partial {
        /// How many processes could not be read.
        unreadable: usize,
        /// Why, in words.
        reason: &'static str,
    },
    /// Owners were not looked up.
    NotRead,
}

/// A namespace the audit knows of but could not read.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct UnseenNamespace {
    /// Its label (`net:[INODE]` or its name).
    pub netns: String,
    /// How it was found (`process 42`, `thread 43 of process 42`, `socket fd 3 of process 42`).
    pub found: String,
    /// Why it could not be read.
    pub reason: String,
}

/// How complete the namespace coverage is (`--all-netns`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct NetnsCoverage {
    /// How many namespaces were audited.
    pub audited: usize,
    /// Namespaces found but not read, and why.
    pub not_entered: Vec<UnseenNamespace>,
    /// Processes whose namespace could not be looked at (other users' processes, without
    /// root): their namespaces may be missing.
    pub unreadable_processes: usize,
    /// TCP/UDP sockets no dump returned whose namespace could not be found (copying the
    /// descriptor was refused): their namespaces may be missing.
    pub unresolved_sockets: usize,
    /// Why the first of them could not be traced.
    pub unresolved_reason: Option<String>,
}

impl NetnsCoverage {
    /// Whether every namespace that holds a socket was audited, as far as can be known.
    pub fn is_complete(&self) -> bool {
        self.not_entered.is_empty()
            && self.unreadable_processes == 0
            && self.unresolved_sockets == 0
    }
}

/// Everything [`snapshot`] read.
#[derive(Clone, Debug)]
pub struct Audit {
    namespaces: Vec<NamespaceSnapshot>,
    sockets: Vec<Socket>,
    processes: BTreeMap<Pid, Process>,
    owners: OwnerCoverage,
    netns: NetnsCoverage,
    warnings: Vec<String>,
}

/// Errors taking a snapshot.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    /// Reading the socket table failed.
    #[error("cannot list the sockets of network namespace {netns}")]
    Sockets {
        /// The namespace's label.
        netns: String,
        /// Why.
        #[source]
        source: SockDiagError,
    },
    /// Listing the interfaces of a namespace failed.
    #[error("cannot list the interfaces of network namespace {netns}")]
    Interfaces {
        /// The namespace's label.
        netns: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// Finding the namespaces, or reading `/proc`, failed.
    #[error("cannot read {what}")]
    Proc {
        /// What was being read.
        what: &'static str,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// Entering the caller's own namespace failed.
    #[error(transparent)]
    Netns(#[from] netns::NetnsError),
}

/// Reads every TCP/UDP socket of the caller's network namespace (or of all of them), with
/// bound interfaces, names and owners.
///
/// Namespaces that cannot be entered (no `CAP_SYS_ADMIN`) are skipped, and named, in
/// [`Audit::netns`] and a warning; without root, other users' processes cannot be read and
/// [`Audit::owners`] says so.
pub fn snapshot(options: &AuditOptions) -> Result<Audit, AuditError> {
    let proc_error = |source| AuditError::Proc {
        what: "the network namespaces (/proc/*/ns/net, /proc/*/task/*/ns/net, /run/netns)",
        source,
    };
    let from_sockets = options.all_netns && options.netns_from_sockets;
    let scan_fds = options.owners || from_sockets;
    let mut warnings = Vec::new();
    let mut coverage = NetnsCoverage::default();
    // The fd tables are read on other threads while this one lists the namespaces and
    // dumps each of them.
    let (discovery, mut tables, owner_index) = std::thread::scope(|scope| {
        let owners = scan_fds.then(|| scope.spawn(owners::OwnerIndex::scan));
        let discovery = if options.all_netns {
            netns::discover(options.netns_from_threads).map_err(proc_error)?
        } else {
            netns::Discovery {
                namespaces: vec![netns::current().map_err(proc_error)?],
                unreadable: Vec::new(),
            }
        };
        coverage.unreadable_processes = discovery.unreadable.len();
        let mut tables = Vec::with_capacity(discovery.namespaces.len());
        for ns in &discovery.namespaces {
            read_or_count(ns, &mut tables, &mut coverage)?;
        }
        let owner_index = match owners {
            Some(handle) => Some(
                handle
                    .join()
                    .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
                    .map_err(|source| AuditError::Proc {
                        what: "the open files of processes (/proc/*/fd)",
                        source,
                    })?,
            ),
            None => None,
        };
        Ok::<_, AuditError>((discovery, tables, owner_index))
    })?;
    if let (true, Some(index)) = (from_sockets, &owner_index) {
        find_socket_namespaces(index, &discovery.namespaces, &mut tables, &mut coverage)?;
    }
    coverage.audited = tables.len();
    netns_warnings(&coverage, &mut warnings);
    let owner_index = owner_index.filter(|_| options.owners);

    let owners = match &owner_index {
        None => OwnerCoverage::NotRead,
        Some(index) if index.unreadable.is_empty() => OwnerCoverage::Complete,
        Some(index) => {
            warnings.push(format!(
                "the open files of {} processes could not be read (run as root to see every \
                 owner): their sockets show no owning process",
                index.unreadable.len()
            ));
            OwnerCoverage::Partial {
                unreadable: index.unreadable.len(),
                reason: "the open files of some processes could not be read (other users' \
                         processes, without root)",
            }
        }
    };

    let total = tables.iter().map(|t| t.sockets.len()).sum();
    let mut sockets = Vec::with_capacity(total);
    let mut snapshots = Vec::with_capacity(tables.len());
    let mut owning = BTreeSet::new();
    for (netns, table) in tables.into_iter().enumerate() {
        let NamespaceTable {
            namespace,
            label,
            interfaces,
            sockets: diags,
        } = table;
        for diag in diags {
            let interface_name = diag
                .bound_interface
                .and_then(|index| interfaces.get(&index).cloned());
            let pids: Vec<Pid> = match (&owner_index, diag.inode) {
                (Some(index), inode) if inode != 0 => index.owners(inode).collect(),
                _ => Vec::new(),
            };
            owning.extend(pids.iter().copied());
            sockets.push(Socket {
                diag,
                netns,
                interface_name,
                pids,
                exec: None,
            });
        }
        snapshots.push(NamespaceSnapshot {
            namespace,
            label,
            interfaces,
        });
    }
    let processes: BTreeMap<Pid, Process> = owning
        .into_iter()
        .map(|pid| (pid, Process::read(pid)))
        .collect();
    let mut levels = BTreeMap::new();
    let runs: BTreeMap<Pid, ExecRun> = processes
        .values()
        .filter_map(|p| Some((p.pid, exec_run(p, &mut levels)?)))
        .collect();
    if !runs.is_empty() {
        for socket in &mut sockets {
            socket.exec = socket.pids.iter().find_map(|pid| runs.get(pid).cloned());
        }
    }
    Ok(Audit {
        namespaces: snapshots,
        sockets,
        processes,
        owners,
        netns: coverage,
        warnings,
    })
}

/// Reads `ns` into `tables`, or records in `coverage` why it could not be read. Only a
/// failure in the caller's own namespace is an error.
fn read_or_count(
    ns: &Namespace,
    tables: &mut Vec<NamespaceTable>,
    coverage: &mut NetnsCoverage,
) -> Result<(), AuditError> {
    match read_namespace(ns) {
        Ok(table) => tables.push(table),
        Err(err) if ns.current => return Err(err),
        // Deleted (or its last process exited) since it was listed: nothing to audit.
        Err(AuditError::Netns(netns::NetnsError::Open { source, .. }))
            if source.kind() == std::io::ErrorKind::NotFound => {}
        Err(err) => {
            let reason = match &err {
                AuditError::Netns(netns::NetnsError::Enter { source, .. })
                    if source.raw_os_error() == Some(libc::EPERM) =>
                {
                    "setns needs CAP_SYS_ADMIN; run as root".to_owned()
                }
                other => chain(other),
            };
            coverage.not_entered.push(UnseenNamespace {
                netns: ns.label(),
                found: found_text(ns.found),
                reason,
            });
        }
    }
    Ok(())
}

fn found_text(found: netns::Found) -> String {
    match found {
        netns::Found::Current => "the audit's own".to_owned(),
        netns::Found::Named => "named".to_owned(),
        netns::Found::Process { pid } => format!("process {pid}"),
        netns::Found::Thread { pid, tid } => format!("thread {tid} of process {pid}"),
        netns::Found::Socket { pid, fd } => format!("socket fd {fd} of process {pid}"),
    }
}

/// The protocol names (`system.sockprotoname`) of the sockets `sock_diag` dumps here.
const DUMPED_PROTOCOLS: [&[u8]; 4] = [b"TCP", b"UDP", b"TCPv6", b"UDPv6"];

/// Finds namespaces that no process or thread is in: a TCP/UDP socket in some fd table that
/// no dump returned lives in a namespace not audited yet (or was opened, or never bound,
/// since). Each such socket is asked for its namespace; a new namespace is read at once, so
/// the rest of its sockets are accounted for without asking again.
fn find_socket_namespaces(
    index: &owners::OwnerIndex,
    known: &[Namespace],
    tables: &mut Vec<NamespaceTable>,
    coverage: &mut NetnsCoverage,
) -> Result<(), AuditError> {
    let mut dumped: std::collections::HashSet<u64> = tables
        .iter()
        .flat_map(|t| t.sockets.iter().map(|s| s.inode))
        .collect();
    let mut known: std::collections::HashSet<u64> = known.iter().map(|ns| ns.inode).collect();
    let mut name = [0u8; 16];
    for (inode, holder) in index.sockets() {
        if dumped.contains(&inode) {
            continue;
        }
        // Most sockets no dump returns are UNIX or netlink sockets: ask the protocol first.
        let path = format!(
            "/proc/{}/task/{}/fd/{}\0",
            holder.pid, holder.tid, holder.fd
        );
        let Ok(path) = std::ffi::CStr::from_bytes_with_nul(path.as_bytes()) else {
            continue;
        };
        let Ok(len) =
            crate::sys::netns::getxattr(path, crate::sys::netns::SOCKPROTONAME, &mut name)
        else {
            continue;
        };
        let proto = name[..len].strip_suffix(b"\0").unwrap_or(&name[..len]);
        if !DUMPED_PROTOCOLS.contains(&proto) {
            continue;
        }
        match netns::from_socket(holder.pid, holder.tid, holder.fd) {
            Ok(ns) => {
                if !known.insert(ns.inode) {
                    continue;
                }
                let before = tables.len();
                read_or_count(&ns, tables, coverage)?;
                if let Some(table) = tables.get(before) {
                    dumped.extend(table.sockets.iter().map(|s| s.inode));
                }
            }
            Err(netns::SocketNsError::Gone) => {}
            Err(err) => {
                coverage.unresolved_sockets += 1;
                coverage
                    .unresolved_reason
                    .get_or_insert_with(|| chain(&err));
            }
        }
    }
    Ok(())
}

/// The warnings that say which namespaces were not audited.
fn netns_warnings(coverage: &NetnsCoverage, warnings: &mut Vec<String>) {
    if !coverage.not_entered.is_empty() {
        let labels: Vec<String> = coverage
            .not_entered
            .iter()
            .map(|u| format!("{} ({}: {})", u.netns, u.found, u.reason))
            .collect();
        let labels: Vec<&str> = labels.iter().map(String::as_str).collect();
        warnings.push(format!(
            "{} network namespace{} could not be entered, so {} sockets were not audited: {}",
            labels.len(),
            if labels.len() == 1 { "" } else { "s" },
            if labels.len() == 1 { "its" } else { "their" },
            list_some(&labels, 5)
        ));
    }
    if coverage.unreadable_processes > 0 {
        warnings.push(format!(
            "the network namespace of {} processes could not be read (other users' processes; \
             run as root): namespaces only they are in were not audited",
            coverage.unreadable_processes
        ));
    }
    if coverage.unresolved_sockets > 0 {
        warnings.push(format!(
            "{} TCP/UDP socket{} held by processes could not be traced to a network namespace \
             ({}; run as root): the namespaces they belong to may not be audited",
            coverage.unresolved_sockets,
            if coverage.unresolved_sockets == 1 {
                ""
            } else {
                "s"
            },
            coverage
                .unresolved_reason
                .as_deref()
                .unwrap_or("pidfd_getfd refused"),
        ));
    }
}

/// What one namespace holds, read from inside it.
struct NamespaceTable {
    namespace: Namespace,
    label: String,
    interfaces: BTreeMap<IfIndex, String>,
    sockets: Vec<DiagSocket>,
}

/// Reads a namespace's sockets and interface names on a thread inside it: an `idiag_if`
/// index only means something in its own namespace.
fn read_namespace(ns: &Namespace) -> Result<NamespaceTable, AuditError> {
    let label = ns.label();
    let (sockets, interfaces) = netns::run_in(ns, || (sockdiag::dump_all(), interfaces_here()))?;
    let sockets = sockets.map_err(|source| AuditError::Sockets {
        netns: label.clone(),
        source,
    })?;
    let interfaces = interfaces.map_err(|source| AuditError::Interfaces {
        netns: label.clone(),
        source,
    })?;
    Ok(NamespaceTable {
        namespace: ns.clone(),
        label,
        interfaces,
        sockets,
    })
}

/// Every interface of the calling thread's namespace, by index (`if_nameindex(3)`).
fn interfaces_here() -> std::io::Result<BTreeMap<IfIndex, String>> {
    let list = nix::net::if_::if_nameindex()?;
    Ok(list
        .iter()
        .filter_map(|i| {
            Some((
                IfIndex::new(i.index())?,
                i.name().to_string_lossy().into_owned(),
            ))
        })
        .collect())
}

/// The `ifpin exec` run a process belongs to: `ifpin exec` puts each run in its own cgroup
/// under a directory named `ifpin` ([`crate::confine::PARENT_DIR`]). The level is told by the
/// BPF programs attached to that run's cgroup (`BPF_PROG_QUERY`, which needs privileges):
/// a setsockopt guard means sealed, an egress filter enforced, any other program pinned.
/// `levels` caches the answer per run.
fn exec_run(process: &Process, levels: &mut BTreeMap<String, Option<Level>>) -> Option<ExecRun> {
    let cgroup = process.cgroup.as_deref()?;
    let run = run_cgroup(cgroup)?;
    let level = *levels
        .entry(run.to_owned())
        .or_insert_with(|| level_of_run(run));
    Some(ExecRun {
        cgroup: cgroup.to_owned(),
        level,
    })
}

/// The run's own cgroup (`.../ifpin/<run>`) in a process's cgroup path, which may be deeper.
fn run_cgroup(cgroup: &str) -> Option<&str> {
    let parent = format!("/{}/", crate::confine::PARENT_DIR);
    let start = if cgroup.starts_with(&parent[1..]) {
        0
    } else {
        cgroup.find(&parent)? + 1
    };
    let after = start + parent.len() - 1;
    let run_len = cgroup[after..].find('/').unwrap_or(cgroup.len() - after);
    (run_len > 0).then(|| &cgroup[..after + run_len])
}

/// The level a run enforces, as its cgroup's name records it.
fn level_of_run(run: &str) -> Option<Level> {
    let name = run.rsplit('/').next()?;
    crate::confine::RunName::parse(name)?.level
}

/// `a, b, c`, or `a, b, c and 4 more` when there are more than `max`.
fn list_some(items: &[&str], max: usize) -> String {
    if items.len() <= max {
        return items.join(", ");
    }
    format!("{} and {} more", items[..max].join(", "), items.len() - max)
}

fn chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

impl Audit {
    /// Builds an audit from sockets already read, for tests and tools that obtain socket
    /// tables another way. Sockets refer to `namespaces` by index.
    pub fn from_parts(
        namespaces: Vec<NamespaceSnapshot>,
        sockets: Vec<Socket>,
        processes: Vec<Process>,
    ) -> Audit {
        Audit {
            namespaces,
            sockets,
            processes: processes.into_iter().map(|p| (p.pid, p)).collect(),
            owners: OwnerCoverage::NotRead,
            netns: NetnsCoverage::default(),
            warnings: Vec::new(),
        }
    }

    /// Every socket read.
    pub fn sockets(&self) -> &[Socket] {
        &self.sockets
    }

    /// The namespaces audited; the caller's own first.
    pub fn namespaces(&self) -> &[NamespaceSnapshot] {
        &self.namespaces
    }

    /// The namespace of `socket`.
    pub fn namespace_of(&self, socket: &Socket) -> &NamespaceSnapshot {
        &self.namespaces[socket.netns]
    }

    /// A process that holds an audited socket.
    pub fn process(&self, pid: Pid) -> Option<&Process> {
        self.processes.get(&pid)
    }

    /// How complete the owner information is.
    pub fn owners(&self) -> OwnerCoverage {
        self.owners
    }

    /// Which namespaces were audited, and which could not be.
    pub fn netns(&self) -> &NetnsCoverage {
        &self.netns
    }

    /// What the snapshot could not read, in words.
    pub fn warnings(&self) -> &[String] {
        &self.warnings
    }
}

#[cfg(test)]
mod tests;
