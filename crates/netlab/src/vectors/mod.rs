//! Override vectors: how code that owns a socket bound to one interface can still make it send
//! through another one.
//!
//! `SO_BINDTODEVICE`/`SO_BINDTOIFINDEX` pin honest code. `kernel-facts.md` lists, under "Ways a
//! BTD-bound socket still leaks", what dishonest (or merely careless) code can do with a bound
//! socket: `IP_PKTINFO` naming another interface, a link-local scope id, a link-local `bind()`
//! that silently rebinds the socket, raw and `AF_PACKET` sockets, and so on. It also lists the
//! attempts the kernel refuses (`EINVAL`, `EPERM`) and some that do not leak at all.
//!
//! Each [`Vector`] is one such attempt, written as a plain function of a socket that is already
//! bound to the pinned interface and a [`Target`] naming the *other* interface and the
//! destinations to aim at. How it goes:
//! 1. open a socket of the vector's [`SocketKind`] ([`SocketKind::open`]);
//! 2. pin it to the pinned interface (with the `ifpin` library, or [`pin_to_index`] here);
//! 3. call [`Vector::attempt`]: it does exactly what the vector says and returns what the kernel
//!    answered ([`Attempt`]), and which interface the socket is bound to afterwards.
//!
//! Whether anything left through the other interface is not decided here: that is counted on the
//! wire by a frame counter in the peer's namespace (see `netlab::cases`). [`VectorInfo::documented`]
//! says what `kernel-facts.md` recorded, only so a measurement can be compared with it.
//!
//! [`Privilege`] says what a vector needs; [`with_privilege`] runs code on a thread whose
//! effective capabilities are cut down to that, so "unprivileged code can do this" is measured
//! rather than assumed.

mod sys;

use std::fmt;
use std::io;
use std::io::IoSlice;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddrV4, SocketAddrV6};
use std::num::NonZeroU32;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::time::Duration;

use nix::sys::socket::{ControlMessage, MsgFlags, SockaddrIn, SockaddrIn6, sendmsg};
use serde::Serialize;
use socket2::{Domain, Protocol, SockAddr, SockRef, Socket, Type};

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
        }
    }
}

impl fmt::Display for Privilege {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::None => "unprivileged",
            Self::NetRaw => "CAP_NET_RAW",
            Self::NetAdmin => "CAP_NET_ADMIN",
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

/// What `kernel-facts.md` recorded for a vector (not used to decide anything: only to compare).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case", tag = "kind", content = "errno")]
pub enum Documented {
    /// Seen leaving through the other interface.
    Leaks,
    /// Refused by the kernel with this errno, nothing sent through the other interface.
    Refused(&'static str),
    /// Accepted, but nothing left through the other interface.
    Contained,
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

/// One way to try to make a pinned socket send through another interface.
///
/// The list follows `kernel-facts.md`: first the vectors recorded as leaking, then the attempts
/// recorded as refused, then controls recorded as not leaking.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(into = "&'static str")]
pub enum Vector {
    /// IPv4 UDP `sendmsg` with an `IP_PKTINFO` cmsg whose `ipi_ifindex` names the other interface.
    Udp4Pktinfo,
    /// The same on a connected UDP socket.
    Udp4PktinfoConnected,
    /// The same to the broadcast address `255.255.255.255` (`SO_BROADCAST` set).
    Udp4PktinfoBroadcast,
    /// The same to an IPv4 multicast group.
    Udp4PktinfoMulticast,
    /// An ICMP "ping" datagram socket, echo request with `IP_PKTINFO` naming the other interface.
    Ping4Pktinfo,
    /// A dual-stack AF_INET6 UDP socket to `::ffff:a.b.c.d` with `IPV6_PKTINFO`.
    V4MappedIpv6Pktinfo,
    /// A dual-stack AF_INET6 UDP socket to `::ffff:a.b.c.d` with `IP_PKTINFO`.
    V4MappedIpPktinfo,
    /// IPv6 UDP `sendto` to the far end's link-local address with `sin6_scope_id` = other.
    V6ScopeLinkLocal,
    /// IPv6 UDP `sendto` to `ff02::1` with `sin6_scope_id` = other.
    V6ScopeMulticast,
    /// IPv6 TCP `bind()` to this host's `fe80::…%other`, then `connect()` to the control address.
    V6BindLinkLocal,
    /// Raw IPv4 ICMP echo with an `IP_PKTINFO` cmsg naming the other interface.
    Raw4Pktinfo,
    /// Raw ICMPv6 echo to the far end's link-local address with scope = other.
    Raw6ScopeLinkLocal,
    /// An `AF_PACKET` socket bound to the pinned interface, sending on the other one.
    PacketBtd,
    /// `SO_BINDTODEVICE` to the other interface with `CAP_NET_RAW`, then a plain send.
    RebindPrivileged,
    /// `SO_BINDTODEVICE` to the other interface without privilege, then a plain send.
    RebindUnprivileged,
    /// IPv6 UDP `sendmsg` with an `IPV6_PKTINFO` cmsg naming the other interface.
    Udp6Pktinfo,
    /// The sticky `IPV6_PKTINFO` socket option naming the other interface, then a plain send.
    Udp6PktinfoSticky,
    /// `IP_UNICAST_IF` = other, then a plain send.
    IpUnicastIf,
    /// `IPV6_UNICAST_IF` = other, then a plain send.
    Ipv6UnicastIf,
    /// `IP_MULTICAST_IF` (`ip_mreqn` with the other index), then a send to a multicast group.
    IpMulticastIf,
    /// `IPV6_MULTICAST_IF` = other, then a send to a multicast group.
    Ipv6MulticastIf,
    /// IPv6 `connect()` to the far end's `fe80::…%other`, then a send.
    V6ConnectScope,
    /// `SO_DONTROUTE`, then a plain send to the control address.
    SoDontroute,
    /// `SO_MARK` = [`VECTOR_MARK`] (`CAP_NET_ADMIN`), then a plain send.
    SoMark,
    /// A send to `255.255.255.255` without any cmsg.
    Broadcast,
    /// Raw IPv4 ICMP echo to the control address without any cmsg.
    Raw4NoCmsg,
}

/// What is known about a vector, independent of any measurement.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct VectorInfo {
    /// Short stable id, e.g. `udp4-pktinfo`.
    pub id: &'static str,
    /// One line saying what the vector does.
    pub title: &'static str,
    /// The socket it needs.
    pub socket: SocketKind,
    /// The privilege it is tried with.
    pub privilege: Privilege,
    /// How its frames look.
    pub signature: Signature,
    /// What `kernel-facts.md` recorded.
    pub documented: Documented,
    /// The `kernel-facts.md` row or sentence it comes from.
    pub kernel_facts: &'static str,
}

/// The `kernel-facts.md` table the leaking vectors come from.
pub const LEAKS_TABLE: &str = "Ways a BTD-bound socket still leaks";
const REFUSED_LINE: &str = "Rejected with EINVAL once BTD is set";
const NOT_LEAKING_LINE: &str = "Not leaking";
const PRIVILEGES: &str = "Privileges: changing an existing binding needs CAP_NET_RAW";

impl Vector {
    /// Every vector, in `kernel-facts.md` order.
    pub const ALL: [Vector; 26] = [
        Self::Udp4Pktinfo,
        Self::Udp4PktinfoConnected,
        Self::Udp4PktinfoBroadcast,
        Self::Udp4PktinfoMulticast,
        Self::Ping4Pktinfo,
        Self::V4MappedIpv6Pktinfo,
        Self::V4MappedIpPktinfo,
        Self::V6ScopeLinkLocal,
        Self::V6ScopeMulticast,
        Self::V6BindLinkLocal,
        Self::Raw4Pktinfo,
        Self::Raw6ScopeLinkLocal,
        Self::PacketBtd,
        Self::RebindPrivileged,
        Self::RebindUnprivileged,
        Self::Udp6Pktinfo,
        Self::Udp6PktinfoSticky,
        Self::IpUnicastIf,
        Self::Ipv6UnicastIf,
        Self::IpMulticastIf,
        Self::Ipv6MulticastIf,
        Self::V6ConnectScope,
        Self::SoDontroute,
        Self::SoMark,
        Self::Broadcast,
        Self::Raw4NoCmsg,
    ];

    /// Looks a vector up by its id.
    pub fn from_id(id: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|v| v.info().id == id)
    }

    /// The vector's id.
    pub fn id(self) -> &'static str {
        self.info().id
    }

    /// What is known about the vector.
    pub fn info(self) -> VectorInfo {
        use Documented::{Contained, Leaks, Refused};
        use Signature as S;
        use SocketKind as K;
        let (id, title, socket, privilege, signature, documented, kernel_facts) = match self {
            Self::Udp4Pktinfo => (
                "udp4-pktinfo",
                "UDP/IPv4 sendmsg with IP_PKTINFO ipi_ifindex = front",
                K::Udp4,
                Privilege::None,
                S::Udp,
                Leaks,
                LEAKS_TABLE,
            ),
            Self::Udp4PktinfoConnected => (
                "udp4-pktinfo-connected",
                "connected UDP/IPv4 socket, sendmsg with IP_PKTINFO = front",
                K::Udp4,
                Privilege::None,
                S::Udp,
                Leaks,
                LEAKS_TABLE,
            ),
            Self::Udp4PktinfoBroadcast => (
                "udp4-pktinfo-broadcast",
                "UDP/IPv4 to 255.255.255.255 with IP_PKTINFO = front",
                K::Udp4,
                Privilege::None,
                S::Udp,
                Leaks,
                LEAKS_TABLE,
            ),
            Self::Udp4PktinfoMulticast => (
                "udp4-pktinfo-multicast",
                "UDP/IPv4 to 239.255.70.1 with IP_PKTINFO = front",
                K::Udp4,
                Privilege::None,
                S::Udp,
                Leaks,
                LEAKS_TABLE,
            ),
            Self::Ping4Pktinfo => (
                "ping4-pktinfo",
                "ICMP ping socket, echo request with IP_PKTINFO = front",
                K::Ping4,
                Privilege::None,
                S::IcmpEcho,
                Leaks,
                LEAKS_TABLE,
            ),
            Self::V4MappedIpv6Pktinfo => (
                "v4mapped-ipv6-pktinfo",
                "AF_INET6 UDP to ::ffff:v4 with IPV6_PKTINFO = front",
                K::Udp6,
                Privilege::None,
                S::Udp,
                Leaks,
                LEAKS_TABLE,
            ),
            Self::V4MappedIpPktinfo => (
                "v4mapped-ip-pktinfo",
                "AF_INET6 UDP to ::ffff:v4 with IP_PKTINFO = front",
                K::Udp6,
                Privilege::None,
                S::Udp,
                Leaks,
                LEAKS_TABLE,
            ),
            Self::V6ScopeLinkLocal => (
                "v6-scope-linklocal",
                "UDP/IPv6 sendto fe80::peer with sin6_scope_id = front",
                K::Udp6,
                Privilege::None,
                S::Udp,
                Leaks,
                LEAKS_TABLE,
            ),
            Self::V6ScopeMulticast => (
                "v6-scope-multicast",
                "UDP/IPv6 sendto ff02::1 with sin6_scope_id = front",
                K::Udp6,
                Privilege::None,
                S::Udp,
                Leaks,
                LEAKS_TABLE,
            ),
            Self::V6BindLinkLocal => (
                "v6-bind-linklocal",
                "TCP/IPv6 bind() to fe80::own%front, then connect() to the control address",
                K::Tcp6,
                Privilege::None,
                S::Tcp,
                Leaks,
                LEAKS_TABLE,
            ),
            Self::Raw4Pktinfo => (
                "raw4-pktinfo",
                "raw IPv4 ICMP echo with IP_PKTINFO = front",
                K::Raw4Icmp,
                Privilege::NetRaw,
                S::IcmpEcho,
                Leaks,
                LEAKS_TABLE,
            ),
            Self::Raw6ScopeLinkLocal => (
                "raw6-scope-linklocal",
                "raw ICMPv6 echo to fe80::peer with scope = front",
                K::Raw6Icmp,
                Privilege::NetRaw,
                S::Icmpv6Echo,
                Leaks,
                LEAKS_TABLE,
            ),
            Self::PacketBtd => (
                "packet-btd",
                "AF_PACKET socket bound to the pinned interface, sendto front",
                K::Packet,
                Privilege::NetRaw,
                S::EtherType,
                Leaks,
                LEAKS_TABLE,
            ),
            Self::RebindPrivileged => (
                "rebind-btd-netraw",
                "SO_BINDTODEVICE front with CAP_NET_RAW, then send",
                K::Udp4,
                Privilege::NetRaw,
                S::Udp,
                Leaks,
                PRIVILEGES,
            ),
            Self::RebindUnprivileged => (
                "rebind-btd-unpriv",
                "SO_BINDTODEVICE front without privilege, then send",
                K::Udp4,
                Privilege::None,
                S::Udp,
                Refused("EPERM"),
                PRIVILEGES,
            ),
            Self::Udp6Pktinfo => (
                "udp6-pktinfo",
                "UDP/IPv6 sendmsg with IPV6_PKTINFO = front",
                K::Udp6,
                Privilege::None,
                S::Udp,
                Refused("EINVAL"),
                REFUSED_LINE,
            ),
            Self::Udp6PktinfoSticky => (
                "udp6-pktinfo-sticky",
                "sticky IPV6_PKTINFO = front, then send",
                K::Udp6,
                Privilege::None,
                S::Udp,
                Refused("EINVAL"),
                REFUSED_LINE,
            ),
            Self::IpUnicastIf => (
                "ip-unicast-if",
                "IP_UNICAST_IF = front, then send",
                K::Udp4,
                Privilege::None,
                S::Udp,
                Refused("EINVAL"),
                REFUSED_LINE,
            ),
            Self::Ipv6UnicastIf => (
                "ipv6-unicast-if",
                "IPV6_UNICAST_IF = front, then send",
                K::Udp6,
                Privilege::None,
                S::Udp,
                Refused("EINVAL"),
                REFUSED_LINE,
            ),
            Self::IpMulticastIf => (
                "ip-multicast-if",
                "IP_MULTICAST_IF = front, then send to 239.255.70.1",
                K::Udp4,
                Privilege::None,
                S::Udp,
                Refused("EINVAL"),
                REFUSED_LINE,
            ),
            Self::Ipv6MulticastIf => (
                "ipv6-multicast-if",
                "IPV6_MULTICAST_IF = front, then send to ff05::4242:1",
                K::Udp6,
                Privilege::None,
                S::Udp,
                Refused("EINVAL"),
                REFUSED_LINE,
            ),
            Self::V6ConnectScope => (
                "v6-connect-scope",
                "UDP/IPv6 connect() to fe80::peer%front, then send",
                K::Udp6,
                Privilege::None,
                S::Udp,
                Refused("EINVAL"),
                REFUSED_LINE,
            ),
            Self::SoDontroute => (
                "so-dontroute",
                "SO_DONTROUTE, then send to the control address",
                K::Udp4,
                Privilege::None,
                S::Udp,
                Contained,
                NOT_LEAKING_LINE,
            ),
            Self::SoMark => (
                "so-mark",
                "SO_MARK routed out of front by a fwmark rule, then send",
                K::Udp4,
                Privilege::NetAdmin,
                S::Udp,
                Contained,
                NOT_LEAKING_LINE,
            ),
            Self::Broadcast => (
                "broadcast",
                "UDP/IPv4 to 255.255.255.255, no cmsg",
                K::Udp4,
                Privilege::None,
                S::Udp,
                Contained,
                NOT_LEAKING_LINE,
            ),
            Self::Raw4NoCmsg => (
                "raw4-no-cmsg",
                "raw IPv4 ICMP echo to the control address, no cmsg",
                K::Raw4Icmp,
                Privilege::NetRaw,
                S::IcmpEcho,
                Contained,
                NOT_LEAKING_LINE,
            ),
        };
        VectorInfo {
            id,
            title,
            socket,
            privilege,
            signature,
            documented,
            kernel_facts,
        }
    }

    /// Tries the vector on `socket`, which must be a socket of [`VectorInfo::socket`] kind,
    /// already bound to the pinned interface. Returns what the kernel answered.
    ///
    /// Errors are for set-up steps that are not part of the vector (none of the kernel's
    /// answers to the vector itself is an error).
    pub fn attempt(self, socket: BorrowedFd<'_>, target: &Target) -> Result<Attempt, VectorError> {
        let answer = self.run(socket, target)?;
        let bound_after = bound_index(socket).map_err(|source| VectorError {
            vector: self.id(),
            step: "getsockopt(SO_BINDTOIFINDEX)",
            source,
        })?;
        Ok(Attempt {
            answer,
            bound_after,
        })
    }

    fn run(self, fd: BorrowedFd<'_>, t: &Target) -> Result<Answer, VectorError> {
        let socket = SockRef::from(&fd);
        let other = t.other_index.get();
        let v4 = SocketAddrV4::new(t.v4, t.port);
        let v6 = SocketAddrV6::new(t.v6, t.port, 0, 0);
        let setup = |step: &'static str| {
            move |source: io::Error| VectorError {
                vector: self.id(),
                step,
                source,
            }
        };
        let mut steps = Steps::default();
        match self {
            Self::Udp4Pktinfo => {
                steps.call("sendmsg(IP_PKTINFO)", || send_pktinfo4(fd, Some(v4), other));
            }
            Self::Udp4PktinfoConnected => {
                steps.call("connect", || socket.connect(&v4.into()));
                steps.call("sendmsg(IP_PKTINFO)", || send_pktinfo4(fd, None, other));
            }
            Self::Udp4PktinfoBroadcast => {
                socket.set_broadcast(true).map_err(setup("SO_BROADCAST"))?;
                let to = SocketAddrV4::new(Ipv4Addr::BROADCAST, t.port);
                steps.call("sendmsg(IP_PKTINFO)", || send_pktinfo4(fd, Some(to), other));
            }
            Self::Udp4PktinfoMulticast => {
                let to = SocketAddrV4::new(MULTICAST_V4, t.port);
                steps.call("sendmsg(IP_PKTINFO)", || send_pktinfo4(fd, Some(to), other));
            }
            Self::Ping4Pktinfo => {
                let echo = icmp_echo(false);
                let to = SocketAddrV4::new(t.v4, 0);
                steps.call("sendmsg(IP_PKTINFO)", || {
                    send_with_pktinfo4(fd, &echo, Some(to), other)
                });
            }
            Self::V4MappedIpv6Pktinfo => {
                let to = SocketAddrV6::new(t.v4.to_ipv6_mapped(), t.port, 0, 0);
                steps.call("sendmsg(IPV6_PKTINFO)", || {
                    send_pktinfo6(fd, Some(to), other)
                });
            }
            Self::V4MappedIpPktinfo => {
                let to = SockaddrIn6::from(SocketAddrV6::new(t.v4.to_ipv6_mapped(), t.port, 0, 0));
                let info = in_pktinfo(other);
                steps.call("sendmsg(IP_PKTINFO)", || {
                    sendmsg(
                        fd.as_raw_fd(),
                        &[IoSlice::new(PAYLOAD)],
                        &[ControlMessage::Ipv4PacketInfo(&info)],
                        MsgFlags::empty(),
                        Some(&to),
                    )
                    .map(drop)
                    .map_err(io::Error::from)
                });
            }
            Self::V6ScopeLinkLocal => {
                let to = SocketAddrV6::new(t.other_peer_link_local, t.port, 0, other);
                steps.call("sendto", || socket.send_to(PAYLOAD, &to.into()).map(drop));
            }
            Self::V6ScopeMulticast => {
                let to =
                    SocketAddrV6::new(Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1), t.port, 0, other);
                steps.call("sendto", || socket.send_to(PAYLOAD, &to.into()).map(drop));
            }
            Self::V6BindLinkLocal => {
                let own = SocketAddrV6::new(t.other_link_local, 0, 0, other);
                steps.call("bind", || socket.bind(&own.into()));
                steps.call("connect", || {
                    socket.connect_timeout(&SockAddr::from(v6), CONNECT_TIMEOUT)
                });
            }
            Self::Raw4Pktinfo => {
                let echo = icmp_echo(true);
                let to = SocketAddrV4::new(t.v4, 0);
                steps.call("sendmsg(IP_PKTINFO)", || {
                    send_with_pktinfo4(fd, &echo, Some(to), other)
                });
            }
            Self::Raw6ScopeLinkLocal => {
                let echo = icmpv6_echo();
                let to = SocketAddrV6::new(t.other_peer_link_local, 0, 0, other);
                steps.call("sendto", || socket.send_to(&echo, &to.into()).map(drop));
            }
            Self::PacketBtd => {
                let mut frame = PAYLOAD.to_vec();
                frame.resize(46, 0);
                steps.call("sendto(sockaddr_ll)", || {
                    sys::packet_send_to(fd, &frame, other, VECTOR_ETHERTYPE, [0xff; 6]).map(drop)
                });
            }
            Self::RebindPrivileged | Self::RebindUnprivileged => {
                steps.call("setsockopt(SO_BINDTODEVICE)", || {
                    socket.bind_device(Some(t.other_name.as_bytes()))
                });
                steps.call("sendto", || socket.send_to(PAYLOAD, &v4.into()).map(drop));
            }
            Self::Udp6Pktinfo => {
                steps.call("sendmsg(IPV6_PKTINFO)", || {
                    send_pktinfo6(fd, Some(v6), other)
                });
            }
            Self::Udp6PktinfoSticky => {
                let info = in6_pktinfo(Ipv6Addr::UNSPECIFIED, other);
                steps.call("setsockopt(IPV6_PKTINFO)", || {
                    sys::setsockopt(fd, libc::IPPROTO_IPV6, libc::IPV6_PKTINFO, &info)
                });
                steps.call("sendto", || socket.send_to(PAYLOAD, &v6.into()).map(drop));
            }
            Self::IpUnicastIf => {
                // IP_UNICAST_IF takes the index in network byte order (ip(7)).
                let index = index_c_int(other).map_err(setup("index"))?.to_be();
                steps.call("setsockopt(IP_UNICAST_IF)", || {
                    sys::setsockopt(fd, libc::IPPROTO_IP, libc::IP_UNICAST_IF, &index)
                });
                steps.call("sendto", || socket.send_to(PAYLOAD, &v4.into()).map(drop));
            }
            Self::Ipv6UnicastIf => {
                // IPV6_UNICAST_IF, like IP_UNICAST_IF, takes network byte order (ipv6(7)).
                let index = index_c_int(other).map_err(setup("index"))?.to_be();
                steps.call("setsockopt(IPV6_UNICAST_IF)", || {
                    sys::setsockopt(fd, libc::IPPROTO_IPV6, libc::IPV6_UNICAST_IF, &index)
                });
                steps.call("sendto", || socket.send_to(PAYLOAD, &v6.into()).map(drop));
            }
            Self::IpMulticastIf => {
                let request = libc::ip_mreqn {
                    imr_multiaddr: libc::in_addr { s_addr: 0 },
                    imr_address: libc::in_addr { s_addr: 0 },
                    imr_ifindex: index_c_int(other).map_err(setup("index"))?,
                };
                steps.call("setsockopt(IP_MULTICAST_IF)", || {
                    sys::setsockopt(fd, libc::IPPROTO_IP, libc::IP_MULTICAST_IF, &request)
                });
                let to = SocketAddrV4::new(MULTICAST_V4, t.port);
                steps.call("sendto", || socket.send_to(PAYLOAD, &to.into()).map(drop));
            }
            Self::Ipv6MulticastIf => {
                steps.call("setsockopt(IPV6_MULTICAST_IF)", || {
                    socket.set_multicast_if_v6(other)
                });
                let to = SocketAddrV6::new(MULTICAST_V6, t.port, 0, 0);
                steps.call("sendto", || socket.send_to(PAYLOAD, &to.into()).map(drop));
            }
            Self::V6ConnectScope => {
                let to = SocketAddrV6::new(t.other_peer_link_local, t.port, 0, other);
                steps.call("connect", || socket.connect(&to.into()));
                steps.call("send", || socket.send(PAYLOAD).map(drop));
            }
            Self::SoDontroute => {
                sys::setsockopt(fd, libc::SOL_SOCKET, libc::SO_DONTROUTE, &1)
                    .map_err(setup("SO_DONTROUTE"))?;
                steps.call("sendto", || socket.send_to(PAYLOAD, &v4.into()).map(drop));
            }
            Self::SoMark => {
                steps.call("setsockopt(SO_MARK)", || socket.set_mark(VECTOR_MARK));
                steps.call("sendto", || socket.send_to(PAYLOAD, &v4.into()).map(drop));
            }
            Self::Broadcast => {
                socket.set_broadcast(true).map_err(setup("SO_BROADCAST"))?;
                let to = SocketAddrV4::new(Ipv4Addr::BROADCAST, t.port);
                steps.call("sendto", || socket.send_to(PAYLOAD, &to.into()).map(drop));
            }
            Self::Raw4NoCmsg => {
                let echo = icmp_echo(true);
                let to = SocketAddrV4::new(t.v4, 0);
                steps.call("sendto", || socket.send_to(&echo, &to.into()).map(drop));
            }
        }
        Ok(steps.answer)
    }
}

impl From<Vector> for &'static str {
    fn from(vector: Vector) -> Self {
        vector.id()
    }
}

impl fmt::Display for Vector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.id())
    }
}

/// Runs a vector's calls in order until the first one the kernel refuses.
struct Steps {
    answer: Answer,
}

impl Default for Steps {
    fn default() -> Self {
        Self {
            answer: Answer::Accepted,
        }
    }
}

impl Steps {
    fn call(&mut self, call: &'static str, f: impl FnOnce() -> io::Result<()>) {
        if self.answer != Answer::Accepted {
            return;
        }
        if let Err(err) = f() {
            self.answer = Answer::Refused {
                call,
                errno: Errno::from_io(&err),
            };
        }
    }
}

fn index_c_int(index: u32) -> io::Result<libc::c_int> {
    libc::c_int::try_from(index).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))
}

fn in_pktinfo(ifindex: u32) -> libc::in_pktinfo {
    libc::in_pktinfo {
        ipi_ifindex: ifindex as libc::c_int,
        ipi_spec_dst: libc::in_addr { s_addr: 0 },
        ipi_addr: libc::in_addr { s_addr: 0 },
    }
}

fn in6_pktinfo(source: Ipv6Addr, ifindex: u32) -> libc::in6_pktinfo {
    libc::in6_pktinfo {
        ipi6_addr: libc::in6_addr {
            s6_addr: source.octets(),
        },
        ipi6_ifindex: ifindex,
    }
}

fn send_pktinfo4(fd: BorrowedFd<'_>, to: Option<SocketAddrV4>, ifindex: u32) -> io::Result<()> {
    send_with_pktinfo4(fd, PAYLOAD, to, ifindex)
}

fn send_with_pktinfo4(
    fd: BorrowedFd<'_>,
    payload: &[u8],
    to: Option<SocketAddrV4>,
    ifindex: u32,
) -> io::Result<()> {
    let info = in_pktinfo(ifindex);
    let to = to.map(SockaddrIn::from);
    sendmsg(
        fd.as_raw_fd(),
        &[IoSlice::new(payload)],
        &[ControlMessage::Ipv4PacketInfo(&info)],
        MsgFlags::empty(),
        to.as_ref(),
    )
    .map(drop)
    .map_err(io::Error::from)
}

/// `sendmsg` with an `IPV6_PKTINFO` cmsg naming `ifindex` and no source address. For a
/// v4-mapped destination the kernel hands the cmsg to the IPv4 code, which only takes a
/// v4-mapped source (`::ffff:0.0.0.0`, i.e. "any"); `::` would be refused with `EINVAL`.
fn send_pktinfo6(fd: BorrowedFd<'_>, to: Option<SocketAddrV6>, ifindex: u32) -> io::Result<()> {
    let source = match to {
        Some(to) if to.ip().to_ipv4_mapped().is_some() => Ipv4Addr::UNSPECIFIED.to_ipv6_mapped(),
        _ => Ipv6Addr::UNSPECIFIED,
    };
    let info = in6_pktinfo(source, ifindex);
    let to = to.map(SockaddrIn6::from);
    sendmsg(
        fd.as_raw_fd(),
        &[IoSlice::new(PAYLOAD)],
        &[ControlMessage::Ipv6PacketInfo(&info)],
        MsgFlags::empty(),
        to.as_ref(),
    )
    .map(drop)
    .map_err(io::Error::from)
}

/// An ICMP echo request: type 8, code 0, identifier 0x1f1, sequence 1, then [`PAYLOAD`].
/// Raw sockets need the checksum (`with_checksum`); ping sockets fill it (and the id) in.
fn icmp_echo(with_checksum: bool) -> Vec<u8> {
    let mut packet = vec![8, 0, 0, 0, 0x01, 0xf1, 0, 1];
    packet.extend_from_slice(PAYLOAD);
    if with_checksum {
        let sum = internet_checksum(&packet);
        packet[2..4].copy_from_slice(&sum.to_be_bytes());
    }
    packet
}

/// An ICMPv6 echo request (type 128); the kernel computes ICMPv6 checksums on raw sockets.
fn icmpv6_echo() -> Vec<u8> {
    let mut packet = vec![128, 0, 0, 0, 0x01, 0xf1, 0, 1];
    packet.extend_from_slice(PAYLOAD);
    packet
}

/// The RFC 1071 one's-complement checksum.
fn internet_checksum(data: &[u8]) -> u16 {
    let mut sum: u32 = data
        .chunks(2)
        .map(|pair| u32::from(u16::from_be_bytes([pair[0], *pair.get(1).unwrap_or(&0)])))
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_unique_and_round_trip() {
        let mut ids: Vec<_> = Vector::ALL.iter().map(|v| v.id()).collect();
        for vector in Vector::ALL {
            assert_eq!(Vector::from_id(vector.id()), Some(vector));
        }
        ids.sort_unstable();
        ids.dedup();
        assert_eq!(ids.len(), Vector::ALL.len());
    }

    #[test]
    fn checksum_of_a_known_echo_request_verifies() {
        let packet = icmp_echo(true);
        // A packet carrying its own checksum sums to zero.
        assert_eq!(internet_checksum(&packet), 0);
        assert_ne!(&packet[2..4], &[0, 0]);
    }

    #[test]
    fn errno_names_are_symbolic() {
        assert_eq!(Errno(libc::EINVAL).name(), "EINVAL");
        assert_eq!(Errno(libc::EPERM).to_string(), "EPERM");
    }
}
