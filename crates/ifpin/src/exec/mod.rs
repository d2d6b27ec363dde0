//! Running a whole program, and everything it starts, confined to one interface.
//!
//! This is the library side of `ifpin exec`. The steps, each failing with its own error:
//! 1. **resolve**: the program ([`Program::resolve`]: "command not found" before anything is
//!    created), the privileges ([`check_privileges`]: which capabilities are missing);
//! 2. **watch**: open the netlink [`LinkWatch`](crate::linkwatch::LinkWatch) *before* the
//!    interface is checked one last time, so no change can slip between the two;
//!    Sockets of the caller that the program would inherit are dealt with here too
//!    (`inherited`): cgroup BPF programs hold a socket by the cgroup that *created* it, so an
//!    `AF_INET`, `AF_INET6` or `AF_PACKET` socket created outside and passed down (an
//!    inheritable fd 3 and above, from ifpin's own parent or socket activation) would not be
//!    held, even at `sealed`. Such sockets are marked close-on-exec (the program never gets
//!    them; the report lists them as withheld); such a socket as stdin, stdout or stderr
//!    (inetd-style) is refused ([`ExecError::InheritedStdioSocket`]);
//! 3. **confine**: a fresh cgroup with the level's BPF programs
//!    ([`Confinement`](crate::confine::Confinement));
//! 4. **start**: the child writes itself into the cgroup's `cgroup.procs` between `fork` and
//!    `execve`; at `sealed` it then takes a mount namespace where the cgroup hierarchy is
//!    read-only (root inside could otherwise write itself into another cgroup's
//!    `cgroup.procs` and leave), and drops `CAP_NET_RAW`, `CAP_NET_ADMIN`, `CAP_SYS_ADMIN`,
//!    `CAP_BPF` and `CAP_SYS_PTRACE` from every set, bounding set included
//!    ([`supervise::Started`]);
//! 5. **supervise**: forward signals, follow the interface (at `sealed`: close the filter when
//!    it goes away or its index changes hands, reopen it when the name returns), and wait until
//!    the cgroup is empty, double-forked daemons included;
//! 6. **close**: read the counters, detach the programs, remove the cgroup; report.
//!
//! If ifpin itself is killed, nothing is detached: the programs stay attached to the cgroup
//! and the program stays confined (fail closed). The next run, or `ifpin exec --cleanup`,
//! removes cgroups whose supervisor is gone.

mod inherited;
mod program;
mod report;
mod run;
pub mod seal;
pub mod supervise;

use std::io;
use std::path::PathBuf;

use caps::{CapSet, Capability};

pub use crate::confine::StaleCleanup;
pub use program::Program;
pub use report::{ExitSummary, Report};
pub use run::{ExecOptions, Outcome, cleanup_stale, run};
pub use supervise::{FORWARDED_SIGNALS, ForwardedSignal, SignalForwarding, exit_code};

use crate::confine::ConfineError;
use crate::interface::InterfaceError;
use crate::level::Level;
use crate::linkwatch::LinkWatchError;

/// Errors of `exec`, each naming the step that failed.
#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    /// The caller lacks capabilities the level needs.
    #[error(
        "missing privilege for level {level}: the effective set lacks {} (run as root, or grant them with `setpriv`/`capsh`)",
        missing.join(", ")
    )]
    MissingPrivilege {
        /// The level asked for.
        level: Level,
        /// The capabilities missing, by name.
        missing: Vec<String>,
    },
    /// The capabilities of the calling thread could not be read.
    #[error("cannot read this process's capabilities")]
    Caps(#[source] caps::errors::CapsError),
    /// The program to run was not found or is not executable.
    #[error("cannot run {command:?}: {reason}")]
    CommandNotFound {
        /// The command as given.
        command: String,
        /// Why it cannot be run.
        reason: String,
    },
    /// The interface could not be resolved or checked.
    #[error(transparent)]
    Interface(#[from] InterfaceError),
    /// The interface changed between resolving it and starting the program.
    #[error(
        "interface {interface} changed while the program was being started ({change}); try again"
    )]
    InterfaceChanged {
        /// The interface as resolved.
        interface: String,
        /// What changed.
        change: String,
    },
    /// The confinement (cgroup, BPF programs, maps) failed.
    #[error(transparent)]
    Confine(#[from] ConfineError),
    /// A cgroup file could not be opened, read or written.
    #[error("cgroup file {}", path.display())]
    Cgroup {
        /// The file.
        path: PathBuf,
        /// What the kernel said.
        #[source]
        source: io::Error,
    },
    /// The program could not be started (after it was found: `fork`, a step of the child's
    /// set-up, or `execve` failed).
    #[error("starting {program} failed while {step}")]
    Spawn {
        /// The program.
        program: String,
        /// The step that failed.
        step: &'static str,
        /// What failed.
        #[source]
        source: io::Error,
    },
    /// A system call of the supervisor failed.
    #[error(transparent)]
    Sys(#[from] crate::error::SyscallError),
    /// Stdin, stdout or stderr is an inet or packet socket created outside the confinement.
    #[error(
        "fd {fd} (stdin, stdout or stderr) is an {family} socket created outside the confinement: \
         cgroup filters hold a socket by the cgroup that created it, so the program's packets on \
         it would not be held, and ifpin refuses to run. Give the program other stdio (a pipe, a \
         file, /dev/null) and let it open its own sockets under ifpin exec, or run ifpin exec \
         inside the service's own start-up instead of handing it an inherited socket (inetd, \
         socket activation)"
    )]
    InheritedStdioSocket {
        /// The descriptor, 0, 1 or 2.
        fd: i32,
        /// Its address family (`AF_INET`, `AF_INET6`, `AF_PACKET`).
        family: &'static str,
    },
    /// A `--keep-cap` name is unknown or would break the seal.
    #[error("--keep-cap {name}: {reason}")]
    BadCapability {
        /// The name as given.
        name: String,
        /// Why it is refused.
        reason: String,
    },
    /// A `--user` or `--group` cannot be resolved.
    #[error("--{what} {name}: {reason}")]
    BadAccount {
        /// `user` or `group`.
        what: String,
        /// The name as given.
        name: String,
        /// Why.
        reason: String,
    },
    /// A 32-bit program at sealed, where 32-bit system calls are refused.
    #[error(
        "{} is a 32-bit program; at level sealed every 32-bit system call is refused (the kernel's \
         socket-option guard sees only native calls): run a 64-bit build, or use --level enforced",
        program.display()
    )]
    ForeignAbi {
        /// The program's file.
        program: PathBuf,
    },
    /// The kernel lacks a layer the sealed level needs.
    #[error("level sealed needs {layer}, which this kernel lacks: {need}; or use --level enforced")]
    SealUnsupported {
        /// The layer.
        layer: String,
        /// What provides it.
        need: String,
    },
    /// The link watch failed.
    #[error(transparent)]
    LinkWatch(#[from] LinkWatchError),
}

impl ExecError {
    /// A cgroup file operation that failed, as the cgroup layer reported it.
    pub(crate) fn from_cgroup(err: crate::cgroup::CgroupError) -> ExecError {
        match err {
            crate::cgroup::CgroupError::Io { path, source, .. } => {
                ExecError::Cgroup { path, source }
            }
            other => ExecError::Confine(other.into()),
        }
    }
}

/// Checks that the calling thread has the effective capabilities `level` needs: what the
/// confinement engine needs to load and attach its programs
/// ([`confine::missing_capabilities`](crate::confine::missing_capabilities): `CAP_BPF` or
/// `CAP_SYS_ADMIN`, and `CAP_NET_ADMIN`), and at `sealed` `CAP_SETPCAP` to drop capabilities
/// from the program's bounding set and `CAP_SYS_ADMIN` for its own mount and cgroup
/// namespaces.
pub fn check_privileges(level: Level) -> Result<(), ExecError> {
    let has = |cap| caps::has_cap(None, CapSet::Effective, cap).map_err(ExecError::Caps);
    let mut missing: Vec<String> = crate::confine::missing_capabilities()
        .into_iter()
        .map(str::to_owned)
        .collect();
    if level == Level::Sealed {
        for cap in [Capability::CAP_SETPCAP, Capability::CAP_SYS_ADMIN] {
            if !has(cap)? && !missing.contains(&cap.to_string()) {
                missing.push(cap.to_string());
            }
        }
    }
    if missing.is_empty() {
        Ok(())
    } else {
        Err(ExecError::MissingPrivilege { level, missing })
    }
}
