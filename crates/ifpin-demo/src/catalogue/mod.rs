//! The vector catalogue: every way the demo tries to get traffic out of the front port, as
//! tables of data ([`OVERRIDES`], [`ESCAPES`]) plus the small functions that perform each
//! attempt.
//!
//! Two kinds, both written up in `docs/kernel.md` (the test `kernel_doc` checks the tables there
//! against these):
//!
//! - **override vectors** ([`Vector`], [`overrides`]): what code that owns a socket pinned to one
//!   interface can do with it to send through another: `IP_PKTINFO` naming another interface, a
//!   link-local scope id, a link-local `bind()` that silently rebinds the socket, raw and
//!   `AF_PACKET` sockets, and so on, and the attempts the kernel refuses. Each is a function of
//!   a socket already pinned to the pinned interface and a [`Target`] naming the *other*
//!   interface and the destinations to aim at:
//!   1. open a socket of the vector's [`SocketKind`] ([`SocketKind::open`]);
//!   2. pin it (with the `ifpin` library, or [`pin_to_index`] here);
//!   3. call [`Vector::attempt`]: it does exactly what the vector says and returns what the
//!      kernel answered ([`Attempt`]), and which interface the socket is bound to afterwards.
//! - **escape vectors** ([`Escape`], [`escape`]): what a hostile program running as root under
//!   `ifpin exec` does to get out of its confinement as a whole (another cgroup, a borrowed
//!   socket, the kernel sending for it, killing its supervisor...). Each is a function of
//!   [`EscapeArgs`] returning the kernel's answer to every step ([`EscapeReport`]).
//!
//! Whether anything left through the other interface is not decided here: that is counted on
//! the wire by a frame counter in the peer's namespace (see [`crate::cases`]).
//! [`VectorInfo::documented`] and [`EscapeInfo::documented`] say what `docs/kernel.md` records,
//! only so a measurement can be compared with it.
//!
//! [`Privilege`] says what a vector needs; [`with_privilege`] runs code on a thread whose
//! effective capabilities are cut down to that, so "unprivileged code can do this" is measured
//! rather than assumed.

pub mod escape;
pub mod overrides;

pub use escape::{ESCAPES, Escape, EscapeArgs, EscapeInfo, EscapeReport};
pub use overrides::{OVERRIDES, Vector, VectorInfo};

use crate::sys::sockopt as sys;

use std::fmt;
use std::io;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::num::NonZeroU32;
use std::os::fd::{AsFd, OwnedFd};
use std::time::Duration;

use serde::Serialize;
use socket2::{Domain, Protocol, SockRef, Socket, Type};

use crate::frame::{Frame, Transport};

/// The payload every vector sends, so a frame can be recognised by eye in a capture.
pub const PAYLOAD: &[u8] = b"ifpin override vector";

/// The experimental EtherType (IEEE 802 "local experimental 1") used by [`Vector::PacketBtd`].
pub const VECTOR_ETHERTYPE: u16 = 0x88b5;

/// The `SO_MARK` used by [`Vector::SoMark`]. A lab that wants the control to be meaningful routes
/// this mark out of the other interface (`ip rule add fwmark 0x1f1 lookup …`).
pub const VECTOR_MARK: u32 = 0x1f1;

/// The IPv4 multicast group the multicast vectors send to (administratively scoped).
pub const MULTICAST_V4: Ipv4Addr = Ipv4Addr::new(239, 255, 70, 1);

/// The IPv6 multicast group the multicast vectors send to (site-local scope, no scope id needed).
pub const MULTICAST_V6: Ipv6Addr = Ipv6Addr::new(0xff05, 0, 0, 0, 0, 0, 0x4242, 1);

/// How long a vector's TCP connect may take before it is reported as `ETIMEDOUT`.
pub const CONNECT_TIMEOUT: Duration = Duration::from_millis(300);

/// An interface index as the kernel numbers it (`if_nametoindex(3)`), never 0.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(transparent)]
pub struct LinkIndex(NonZeroU32);

impl LinkIndex {
    /// Wraps a kernel interface index; `None` for 0, which names no interface.
    pub fn new(index: u32) -> Option<Self> {
        NonZeroU32::new(index).map(Self)
    }

    /// The raw index.
    pub fn get(self) -> u32 {
        self.0.get()
    }
}

impl fmt::Display for LinkIndex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// What a vector aims at: the interface the socket is *not* pinned to, and destinations.
///
/// The lab must make every destination reachable through the other interface (so a leak is
/// answered and unmistakable) and, for the control plane addresses, through the pinned one too.
#[derive(Debug, Clone)]
pub struct Target {
    /// Index of the other interface (the front panel in the chassis).
    pub other_index: LinkIndex,
    /// Name of the other interface, for `SO_BINDTODEVICE`.
    pub other_name: String,
    /// A control-plane IPv4 address, which the routing table sends out of the other interface.
    pub v4: Ipv4Addr,
    /// A control-plane IPv6 address, which the routing table sends out of the other interface.
    pub v6: Ipv6Addr,
    /// The link-local address of the far end of the other link.
    pub other_peer_link_local: Ipv6Addr,
    /// This host's own link-local address on the other interface.
    pub other_link_local: Ipv6Addr,
    /// The UDP/TCP port to send to. Use a different one per vector to tell frames apart.
    pub port: u16,
}

/// The kind of socket a vector needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum SocketKind {
    /// `socket(AF_INET, SOCK_DGRAM, IPPROTO_UDP)`.
    Udp4,
    /// `socket(AF_INET6, SOCK_DGRAM, IPPROTO_UDP)`, dual-stack (`IPV6_V6ONLY` off).
    Udp6,
    /// `socket(AF_INET6, SOCK_STREAM, IPPROTO_TCP)`.
    Tcp6,
    /// `socket(AF_INET, SOCK_DGRAM, IPPROTO_ICMP)`: the unprivileged "ping" socket
    /// (`net.ipv4.ping_group_range` must include the caller's group).
    Ping4,
    /// `socket(AF_INET, SOCK_RAW, IPPROTO_ICMP)` (`CAP_NET_RAW`).
    Raw4Icmp,
    /// `socket(AF_INET6, SOCK_RAW, IPPROTO_ICMPV6)` (`CAP_NET_RAW`).
    Raw6Icmp,
    /// `socket(AF_PACKET, SOCK_DGRAM, VECTOR_ETHERTYPE)` (`CAP_NET_RAW`).
    Packet,
}

impl SocketKind {
    /// Opens a fresh, unbound socket of this kind (close-on-exec).
    pub fn open(self) -> io::Result<OwnedFd> {
        let socket = match self {
            Self::Udp4 => Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP))?,
            Self::Udp6 => {
                let socket = Socket::new(Domain::IPV6, Type::DGRAM, Some(Protocol::UDP))?;
                socket.set_only_v6(false)?;
                socket
            }
            Self::Tcp6 => Socket::new(Domain::IPV6, Type::STREAM, Some(Protocol::TCP))?,
            Self::Ping4 => Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::ICMPV4))?,
            Self::Raw4Icmp => Socket::new(Domain::IPV4, Type::RAW, Some(Protocol::ICMPV4))?,
            Self::Raw6Icmp => Socket::new(Domain::IPV6, Type::RAW, Some(Protocol::ICMPV6))?,
            Self::Packet => Socket::new(
                Domain::PACKET,
                Type::DGRAM,
                Some(Protocol::from(i32::from(VECTOR_ETHERTYPE.to_be()))),
            )?,
        };
        Ok(socket.into())
    }
}

/// Binds a socket to an interface by index with `SO_BINDTOIFINDEX` and reads the binding back.
///
/// This is the bare kernel mechanism, for tests and the `netlab-vectors` helper; programs use the
/// `ifpin` library, which does the same with typed errors and more checks.
#[doc(alias = "SO_BINDTOIFINDEX")]
pub fn pin_to_index(socket: impl AsFd, index: LinkIndex) -> io::Result<()> {
    let socket = SockRef::from(&socket);
    socket.bind_device_by_index_v4(Some(index.0))?;
    match socket.device_index_v4()? {
        Some(bound) if bound == index.0 => Ok(()),
        other => Err(io::Error::other(format!(
            "SO_BINDTOIFINDEX read back {other:?} after binding to {index}"
        ))),
    }
}

/// The interface a socket is bound to (`getsockopt(SO_BINDTOIFINDEX)`), `None` when unbound.
#[doc(alias = "SO_BINDTOIFINDEX")]
pub fn bound_index(socket: impl AsFd) -> io::Result<Option<LinkIndex>> {
    Ok(SockRef::from(&socket).device_index_v4()?.map(LinkIndex))
}

/// What a vector needs to be tried.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Privilege {
    /// No capability at all.
    None,
    /// `CAP_NET_RAW` only.
    NetRaw,
    /// `CAP_NET_ADMIN` only.
    NetAdmin,
    /// Whatever the process runs with (uid 0 under `ifpin exec`, with the capabilities its
    /// level leaves it): the escape vectors.
    Root,
}

impl Privilege {
    /// The capability bits (linux/capability.h) this privilege keeps effective.
    fn effective_mask(self) -> u64 {
        const CAP_NET_ADMIN: u64 = 12;
        const CAP_NET_RAW: u64 = 13;
        match self {
            Self::None => 0,
            Self::NetRaw => 1 << CAP_NET_RAW,
            Self::NetAdmin => 1 << CAP_NET_ADMIN,
            Self::Root => u64::MAX,
        }
    }
}

impl fmt::Display for Privilege {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::None => "unprivileged",
            Self::NetRaw => "CAP_NET_RAW",
            Self::NetAdmin => "CAP_NET_ADMIN",
            Self::Root => "root",
        })
    }
}

/// Runs `f` on a new thread (in the caller's network namespace) whose effective capabilities
/// are cut down to `privilege`. Capabilities are per thread on Linux, so the caller keeps its own.
///
/// Fails if the capabilities cannot be changed; `f` is then not run.
pub fn with_privilege<T: Send>(
    privilege: Privilege,
    f: impl FnOnce() -> T + Send,
) -> io::Result<T> {
    std::thread::scope(|scope| {
        scope
            .spawn(|| {
                sys::set_thread_effective_caps(privilege.effective_mask())?;
                Ok(f())
            })
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
    })
}

/// What `docs/kernel.md` records the kernel answers to a vector when nothing but the pin holds
/// (not used to decide anything: only to compare): the kernel's answer, and whether anything
/// leaves through the front port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case", tag = "kind", content = "errno")]
pub enum Documented {
    /// Accepted, and it leaves through the other interface.
    Leaks,
    /// Refused by the kernel with this errno, nothing sent through the other interface.
    Refused(&'static str),
    /// Accepted, but nothing left through the other interface.
    Contained,
}

impl Documented {
    /// The kernel's answer, as the tables of `docs/kernel.md` write it: `accepted` or the
    /// errno's name.
    pub fn answer(self) -> &'static str {
        match self {
            Self::Leaks | Self::Contained => "accepted",
            Self::Refused(errno) => errno,
        }
    }

    /// Whether anything leaves through the other interface.
    pub fn leaves_front(self) -> bool {
        self == Self::Leaks
    }
}

/// How the vector's frames look on the wire, so a frame counter can pick them out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Signature {
    /// UDP to [`Target::port`].
    Udp,
    /// TCP to [`Target::port`].
    Tcp,
    /// ICMP echo request.
    IcmpEcho,
    /// ICMPv6 echo request.
    Icmpv6Echo,
    /// An Ethernet frame with [`VECTOR_ETHERTYPE`].
    EtherType,
}

impl Signature {
    /// Whether `frame` is one of the vector's own packets (sent to `port` for UDP/TCP).
    pub fn matches(self, frame: &Frame, port: u16) -> bool {
        match self {
            Self::Udp => {
                matches!(frame.transport(), Some(Transport::Udp { dst_port, .. }) if dst_port == port)
            }
            Self::Tcp => {
                matches!(frame.transport(), Some(Transport::Tcp { dst_port, .. }) if dst_port == port)
            }
            Self::IcmpEcho => {
                matches!(
                    frame.transport(),
                    Some(Transport::Icmp { icmp_type: 8, .. })
                )
            }
            Self::Icmpv6Echo => {
                matches!(
                    frame.transport(),
                    Some(Transport::Icmpv6 { icmp_type: 128, .. })
                )
            }
            Self::EtherType => frame.ethertype == VECTOR_ETHERTYPE,
        }
    }
}

/// An errno, with its symbolic name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Errno(i32);

impl Errno {
    /// The raw number.
    pub fn get(self) -> i32 {
        self.0
    }

    /// The symbolic name (`EINVAL`), or `E<number>` if unknown.
    pub fn name(self) -> String {
        let name = format!("{:?}", nix::errno::Errno::from_raw(self.0));
        if name.starts_with('E') {
            name
        } else {
            format!("E{}", self.0)
        }
    }

    /// The errno of an I/O error (`ETIMEDOUT` for a timeout without one, `EIO` otherwise).
    pub fn from_io_error(err: &io::Error) -> Self {
        Self::from_io(err)
    }

    fn from_io(err: &io::Error) -> Self {
        // Errors built here without an errno (e.g. a timeout) are reported as EIO.
        Self(err.raw_os_error().unwrap_or(match err.kind() {
            io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock => libc::ETIMEDOUT,
            _ => libc::EIO,
        }))
    }
}

impl fmt::Display for Errno {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name())
    }
}

impl Serialize for Errno {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.name())
    }
}

/// The kernel's answer to a vector's calls.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case", tag = "answer")]
pub enum Answer {
    /// Every call succeeded.
    Accepted,
    /// A call failed: which one, and the errno.
    Refused {
        /// The call, e.g. `setsockopt(IP_UNICAST_IF)`.
        call: &'static str,
        /// What the kernel returned.
        errno: Errno,
    },
}

impl fmt::Display for Answer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Accepted => f.write_str("accepted"),
            Self::Refused { call, errno } => write!(f, "{errno} from {call}"),
        }
    }
}

/// The outcome of one [`Vector::attempt`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Attempt {
    /// What the kernel answered.
    #[serde(flatten)]
    pub answer: Answer,
    /// The interface the socket was bound to after the attempt (read with `SO_BINDTOIFINDEX`).
    pub bound_after: Option<LinkIndex>,
}

/// An error that stops a vector before it could be tried (a set-up step, not the kernel's
/// answer to the vector itself).
#[derive(Debug, thiserror::Error)]
#[error("vector {vector}: {step} failed")]
pub struct VectorError {
    /// The vector's id.
    pub vector: &'static str,
    /// The failed step.
    pub step: &'static str,
    /// The underlying error.
    #[source]
    pub source: io::Error,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errno_names_are_symbolic() {
        assert_eq!(Errno(libc::EINVAL).name(), "EINVAL");
        assert_eq!(Errno(libc::EPERM).to_string(), "EPERM");
    }
}
