//! Errors of pinned sockets, told as what happened on the wire.
//!
//! The kernel answers a failed connect or send with an errno; the same `ENETUNREACH` can mean
//! "no route through this interface", "the interface is down" or "the interface is gone".
//! [`PinError::from_io`] looks at the interface when an error happens and names the cause, so a
//! caller (and `ifpin probe`) can say *why* a pinned connection failed. Every variant carries
//! the [`Interface`] the socket is pinned to.

use std::fmt;
use std::io;
use std::net::{Ipv6Addr, SocketAddr};
use std::time::Duration;

use crate::interface::{IfIndex, Interface, InterfaceChange, InterfaceError};

/// The socket operation that failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Op {
    /// `socket(2)`.
    Create,
    /// Setting and checking `SO_BINDTOIFINDEX`.
    Pin,
    /// `bind(2)`.
    Bind,
    /// `listen(2)`.
    Listen,
    /// `connect(2)`.
    Connect,
    /// `accept(2)`.
    Accept,
    /// `send(2)` / `sendto(2)` / `write(2)`.
    Send,
    /// `recv(2)` / `recvfrom(2)` / `read(2)`.
    Recv,
    /// Reading the binding back ([`crate::pin::verify`]).
    Verify,
    /// Setting another socket option (timeouts, non-blocking mode).
    Configure,
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Op::Create => "create the socket",
            Op::Pin => "pin the socket",
            Op::Bind => "bind",
            Op::Listen => "listen",
            Op::Connect => "connect",
            Op::Accept => "accept",
            Op::Send => "send",
            Op::Recv => "receive",
            Op::Verify => "verify the binding",
            Op::Configure => "configure the socket",
        })
    }
}

/// Why an operation on a pinned socket failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PinError {
    /// The interface could not be resolved.
    #[error(transparent)]
    Interface(#[from] InterfaceError),

    /// The kernel found no way to reach the destination through the pinned interface
    /// (`EHOSTUNREACH`, `ENETUNREACH`, `EADDRNOTAVAIL` with the interface up).
    #[error(
        "no route to {} through {interface}: the kernel cannot reach it on that interface \
         (add a route via {}, or check that the peer is on that link)",
        fmt_dest(.destination), interface.name()
    )]
    NoRoute {
        /// The pinned interface.
        interface: Interface,
        /// Where the socket tried to go, if known.
        destination: Option<SocketAddr>,
        /// The kernel's answer.
        #[source]
        source: io::Error,
    },

    /// The pinned interface is administratively down.
    #[error(
        "cannot {op}: {interface} is down (bring it up with `ip link set {} up`)",
        interface.name()
    )]
    InterfaceDown {
        /// The pinned interface.
        interface: Interface,
        /// What failed.
        op: Op,
        /// The kernel's answer, if the failure came from a syscall.
        #[source]
        source: Option<io::Error>,
    },

    /// The pinned interface no longer exists; sockets pinned to it are dead for good.
    #[error(
        "cannot {op}: {interface} no longer exists (open a new socket once the interface is back)"
    )]
    InterfaceGone {
        /// The pinned interface.
        interface: Interface,
        /// What failed.
        op: Op,
    },

    /// The index the socket is pinned to now belongs to a renamed or a different device.
    #[error(
        "cannot {op}: {interface} changed under the socket ({}); close the socket and pin a new one",
        describe_change(.change)
    )]
    InterfaceChanged {
        /// The interface as it was pinned.
        interface: Interface,
        /// What the index is now.
        change: InterfaceChange,
        /// What noticed it.
        op: Op,
    },

    /// The socket is not bound to the pinned interface any more (or never was).
    #[error(
        "after {op}, the socket is bound to {} instead of {interface}; refusing to carry on unpinned",
        fmt_now(.now)
    )]
    BindingChanged {
        /// The interface the socket should be bound to.
        interface: Interface,
        /// The index the socket is bound to now; `None` if it is not bound.
        now: Option<IfIndex>,
        /// The operation after which the binding was read back.
        op: Op,
    },

    /// The kernel refused for lack of privilege (`EPERM`, `EACCES`).
    #[error(
        "permission denied to {op} on {interface} (changing an existing binding needs CAP_NET_RAW)"
    )]
    Permission {
        /// The pinned interface.
        interface: Interface,
        /// What failed.
        op: Op,
        /// The kernel's answer.
        #[source]
        source: io::Error,
    },

    /// The peer answered, through the pinned interface, that nothing listens there.
    #[error(
        "{} refused through {interface} (nothing listens there, or the peer only accepts on another interface)",
        fmt_dest(.destination)
    )]
    Refused {
        /// The pinned interface.
        interface: Interface,
        /// Where the socket tried to go, if known.
        destination: Option<SocketAddr>,
    },

    /// No answer in time.
    #[error("cannot {op}: no answer from {} through {interface} within {after:?}", fmt_dest(.destination))]
    TimedOut {
        /// The pinned interface.
        interface: Interface,
        /// What timed out.
        op: Op,
        /// Where the socket tried to go, if known.
        destination: Option<SocketAddr>,
        /// How long it waited.
        after: Duration,
    },

    /// An IPv6 address carries a scope naming another interface; refused before sending.
    #[error(
        "{address}%{scope} names {}, but the socket is pinned to {interface}: \
         refused before anything was sent (drop the %scope, or use %{})",
        fmt_scope(*.scope, .scope_name), interface.name()
    )]
    ForeignScope {
        /// The pinned interface.
        interface: Interface,
        /// The address as given.
        address: Ipv6Addr,
        /// The scope id as given.
        scope: u32,
        /// The name of the interface the scope names, if there is one.
        scope_name: Option<String>,
    },

    /// Any other failure of a socket call.
    #[error("cannot {op} on a socket pinned to {interface}")]
    Io {
        /// The pinned interface.
        interface: Interface,
        /// What failed.
        op: Op,
        /// The kernel's answer.
        #[source]
        source: io::Error,
    },
}

fn fmt_dest(dest: &Option<SocketAddr>) -> String {
    match dest {
        Some(addr) => addr.to_string(),
        None => "the peer".to_owned(),
    }
}

fn fmt_scope(scope: u32, name: &Option<String>) -> String {
    match name {
        Some(name) => format!("interface {name} (index {scope})"),
        None => format!("interface index {scope}, which does not exist"),
    }
}

fn fmt_now(now: &Option<IfIndex>) -> String {
    match now {
        Some(index) => format!("index {index}"),
        None => "no interface".to_owned(),
    }
}

fn describe_change(change: &InterfaceChange) -> String {
    match change {
        InterfaceChange::Same => "no change".to_owned(),
        InterfaceChange::Renamed { to } => format!("renamed to {to}"),
        InterfaceChange::IndexTakenOver { by, .. } => {
            format!("its index now belongs to another device, {by}")
        }
        InterfaceChange::Gone { .. } => "deleted".to_owned(),
    }
}

/// What the interface looks like when an ambiguous error happens.
#[derive(Debug)]
enum Observed {
    /// It could not be looked at.
    Unknown,
    /// Same name at the same index, administratively up.
    Up,
    /// Same name at the same index, administratively down.
    Down,
    /// Renamed, taken over or gone.
    Changed(InterfaceChange),
}

impl Observed {
    fn of(interface: &Interface) -> Observed {
        match interface.check() {
            Ok(InterfaceChange::Same) => match interface.flags() {
                Ok(flags) if !flags.up => Observed::Down,
                Ok(_) => Observed::Up,
                Err(_) => Observed::Unknown,
            },
            Ok(change) => Observed::Changed(change),
            Err(_) => Observed::Unknown,
        }
    }
}

impl PinError {
    /// Turns a failed socket call on a socket pinned to `interface` into what happened on the
    /// wire, looking at the interface's state now when the errno alone is ambiguous.
    pub fn from_io(
        op: Op,
        interface: &Interface,
        destination: Option<SocketAddr>,
        err: io::Error,
    ) -> PinError {
        Self::classify(op, interface, destination, err, || Observed::of(interface))
    }

    /// [`PinError::from_io`] with the interface's state supplied by `observe` (called only
    /// when the errno is ambiguous).
    fn classify(
        op: Op,
        interface: &Interface,
        destination: Option<SocketAddr>,
        err: io::Error,
        observe: impl FnOnce() -> Observed,
    ) -> PinError {
        let interface = interface.clone();
        let explained = |observed: Observed, interface: Interface| match observed {
            Observed::Unknown | Observed::Up => None,
            Observed::Down => Some(PinError::InterfaceDown {
                interface,
                op,
                source: None,
            }),
            Observed::Changed(InterfaceChange::Gone { .. }) => {
                Some(PinError::InterfaceGone { interface, op })
            }
            Observed::Changed(change) => Some(PinError::InterfaceChanged {
                interface,
                change,
                op,
            }),
        };
        match err.raw_os_error() {
            Some(libc::ECONNREFUSED) => PinError::Refused {
                interface,
                destination,
            },
            Some(libc::EPERM) | Some(libc::EACCES) => PinError::Permission {
                interface,
                op,
                source: err,
            },
            Some(libc::ENETDOWN) => PinError::InterfaceDown {
                interface,
                op,
                source: Some(err),
            },
            Some(libc::ENODEV) | Some(libc::ENXIO) => explained(observe(), interface.clone())
                .unwrap_or(PinError::InterfaceGone { interface, op }),
            Some(libc::EHOSTUNREACH) | Some(libc::ENETUNREACH) | Some(libc::EADDRNOTAVAIL)
                if matches!(op, Op::Connect | Op::Send | Op::Recv) =>
            {
                explained(observe(), interface.clone()).unwrap_or(PinError::NoRoute {
                    interface,
                    destination,
                    source: err,
                })
            }
            _ if err.kind() == io::ErrorKind::TimedOut => PinError::TimedOut {
                interface,
                op,
                destination,
                after: Duration::ZERO,
            },
            _ => PinError::Io {
                interface,
                op,
                source: err,
            },
        }
    }

    /// The pinned interface the error is about, if it got that far.
    pub fn interface(&self) -> Option<&Interface> {
        match self {
            PinError::Interface(_) => None,
            PinError::NoRoute { interface, .. }
            | PinError::InterfaceDown { interface, .. }
            | PinError::InterfaceGone { interface, .. }
            | PinError::InterfaceChanged { interface, .. }
            | PinError::BindingChanged { interface, .. }
            | PinError::Permission { interface, .. }
            | PinError::Refused { interface, .. }
            | PinError::TimedOut { interface, .. }
            | PinError::ForeignScope { interface, .. }
            | PinError::Io { interface, .. } => Some(interface),
        }
    }

    /// Sets how long the operation waited, for [`PinError::TimedOut`].
    pub(crate) fn with_timeout(mut self, timeout: Duration) -> Self {
        if let PinError::TimedOut { after, .. } = &mut self {
            *after = timeout;
        }
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lo() -> Interface {
        Interface::loopback().unwrap()
    }

    fn dest() -> Option<SocketAddr> {
        Some("127.0.0.1:7".parse().unwrap())
    }

    fn map(op: Op, errno: i32) -> PinError {
        PinError::from_io(op, &lo(), dest(), io::Error::from_raw_os_error(errno))
    }

    #[test]
    fn errnos_map_to_what_happened() {
        assert!(matches!(
            map(Op::Connect, libc::ECONNREFUSED),
            PinError::Refused { .. }
        ));
        assert!(matches!(
            map(Op::Connect, libc::EPERM),
            PinError::Permission { .. }
        ));
        assert!(matches!(
            map(Op::Send, libc::ENETDOWN),
            PinError::InterfaceDown { .. }
        ));
        // `lo` exists and is up, so unreachable means no route through it.
        assert!(matches!(
            map(Op::Connect, libc::EHOSTUNREACH),
            PinError::NoRoute { .. }
        ));
        assert!(matches!(
            map(Op::Send, libc::ENETUNREACH),
            PinError::NoRoute { .. }
        ));
        assert!(matches!(
            map(Op::Connect, libc::ETIMEDOUT),
            PinError::TimedOut { .. }
        ));
        // Outside connect/send, an unavailable address is a plain bind error.
        assert!(matches!(
            map(Op::Bind, libc::EADDRNOTAVAIL),
            PinError::Io { .. }
        ));
        assert!(matches!(map(Op::Bind, libc::EINVAL), PinError::Io { .. }));
    }

    fn classify(op: Op, errno: i32, observed: Observed) -> PinError {
        PinError::classify(
            op,
            &lo(),
            dest(),
            io::Error::from_raw_os_error(errno),
            || observed,
        )
    }

    #[test]
    fn the_interface_state_explains_unreachable() {
        let gone = || Observed::Changed(InterfaceChange::Gone { name_now_at: None });
        assert!(matches!(
            classify(Op::Connect, libc::ENETUNREACH, gone()),
            PinError::InterfaceGone { .. }
        ));
        assert!(matches!(
            classify(Op::Send, libc::ENODEV, gone()),
            PinError::InterfaceGone { .. }
        ));
        assert!(matches!(
            classify(Op::Send, libc::ENODEV, Observed::Unknown),
            PinError::InterfaceGone { .. }
        ));
        assert!(matches!(
            classify(Op::Connect, libc::ENETUNREACH, Observed::Down),
            PinError::InterfaceDown { .. }
        ));
        assert!(matches!(
            classify(Op::Connect, libc::EADDRNOTAVAIL, Observed::Up),
            PinError::NoRoute { .. }
        ));
        let renamed = Observed::Changed(InterfaceChange::Renamed { to: "new0".into() });
        match classify(Op::Connect, libc::EHOSTUNREACH, renamed) {
            err @ PinError::InterfaceChanged { .. } => {
                assert!(err.to_string().contains("renamed to new0"), "{err}")
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn messages_name_the_interface_and_the_fix() {
        let msg = map(Op::Connect, libc::EHOSTUNREACH).to_string();
        assert!(msg.contains("lo (index"), "{msg}");
        assert!(msg.contains("127.0.0.1:7"), "{msg}");
        let msg = PinError::ForeignScope {
            interface: lo(),
            address: "fe80::1".parse().unwrap(),
            scope: 9,
            scope_name: Some("eth9".to_owned()),
        }
        .to_string();
        assert!(
            msg.contains("fe80::1%9 names interface eth9 (index 9)"),
            "{msg}"
        );
        assert!(msg.contains("%lo"), "{msg}");
        let msg = PinError::InterfaceDown {
            interface: lo(),
            op: Op::Send,
            source: None,
        }
        .to_string();
        assert!(msg.contains("ip link set lo up"), "{msg}");
    }
}

/// A failed system call: which one, and what the kernel said. The one shape of a syscall
/// failure in this crate; the error enums that wrap it say what was being done.
#[derive(Debug, thiserror::Error)]
#[error("{call} failed")]
pub struct SyscallError {
    /// The call (or `bpf(2)` command) that failed, e.g. `BPF_PROG_ATTACH`, `poll`.
    pub call: &'static str,
    /// The kernel's answer.
    #[source]
    pub source: std::io::Error,
}

impl SyscallError {
    /// `call` failed with `source`.
    pub fn new(call: &'static str, source: impl Into<std::io::Error>) -> SyscallError {
        SyscallError {
            call,
            source: source.into(),
        }
    }

    /// The raw `errno` of the failure, if any.
    pub fn errno(&self) -> Option<i32> {
        self.source.raw_os_error()
    }
}
