//! The one error type of the lab (namespaces, links, counters, containers).
//!
//! Every failure names what was being done (the command line, the syscall, the namespace or
//! interface) and keeps the underlying `io::Error` as its source, so a failing test says
//! which step of building the lab went wrong.

use std::io;

/// Result alias used throughout the lab.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What went wrong while building, using or tearing down a lab.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// An external command (normally `ip`) could not be started.
    #[error("could not start `{command}`: {source}")]
    Spawn {
        /// The command line.
        command: String,
        /// Why it could not be started.
        #[source]
        source: io::Error,
    },
    /// An external command ran and failed.
    #[error("`{command}` failed ({status}): {stderr}")]
    Command {
        /// The command line.
        command: String,
        /// Its exit status, as text.
        status: String,
        /// What it wrote on stderr, trimmed.
        stderr: String,
    },
    /// A system call failed.
    #[error("{call} failed for {context}: {source}")]
    Sys {
        /// The system call (or libc function) that failed.
        call: &'static str,
        /// What it was applied to (namespace, interface, address...).
        context: String,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// A name given to the lab is unusable (unknown host, bad interface name...).
    #[error("invalid {what} `{value}`: {reason}")]
    Invalid {
        /// What kind of value it is ("host", "interface name"...).
        what: &'static str,
        /// The value itself.
        value: String,
        /// Why it is refused and what to do instead.
        reason: String,
    },
    /// A container fixture (netlab's `systemd`, built on this lab) could not build its tree,
    /// boot, or stop.
    #[error("systemd container: {step}: {detail}")]
    Container {
        /// What was being done ("debootstrap", "boot", "shutdown"...).
        step: &'static str,
        /// What went wrong, with the output that shows why.
        detail: String,
    },
    /// A closure run inside a namespace panicked (the panic is re-raised where possible; this
    /// variant is used where it cannot be).
    #[error("thread inside network namespace {namespace} panicked")]
    Panicked {
        /// The namespace name.
        namespace: String,
    },
}

impl Error {
    /// Shorthand for [`Error::Sys`].
    pub fn sys(call: &'static str, context: impl Into<String>, source: io::Error) -> Self {
        Error::Sys {
            call,
            context: context.into(),
            source,
        }
    }
}
