//! The override vectors as a table ([`OVERRIDES`]): one row per vector with its id, what it
//! does, the socket it needs, the privilege it is tried with, how its frames look, what
//! `docs/kernel.md` records the kernel answers, which level closes it, and a small function
//! that performs the attempt on a socket already pinned to the pinned interface.

use std::io::{self, IoSlice};
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddrV4, SocketAddrV6};
use std::os::fd::{AsRawFd, BorrowedFd};

use ifpin::Level;
use nix::sys::socket::{ControlMessage, MsgFlags, SockaddrIn, SockaddrIn6, sendmsg};
use serde::Serialize;
use socket2::{SockAddr, SockRef};

use super::{
    Answer, Attempt, CONNECT_TIMEOUT, Documented, Errno, MULTICAST_V4, MULTICAST_V6, PAYLOAD,
    Privilege, Signature, SocketKind, Target, VECTOR_ETHERTYPE, VECTOR_MARK, VectorError,
    bound_index,
};
use crate::sys::sockopt;

/// Where `docs/kernel.md` records the override vectors.
pub const DOCUMENTED_IN: &str = "docs/kernel.md#override-vectors";

/// One way to try to make a pinned socket send through another interface.
///
/// The order is the table's: first the vectors that leak, then the attempts the kernel
/// refuses, then controls that stay on the pinned interface.
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

/// What an attempt works with: the pinned socket and what to aim at.
pub struct Aim<'a> {
    fd: BorrowedFd<'a>,
    socket: SockRef<'a>,
    target: &'a Target,
    /// The other interface's index.
    other: u32,
    /// The control address over IPv4, at the target port.
    v4: SocketAddrV4,
    /// The control address over IPv6, at the target port.
    v6: SocketAddrV6,
}

/// The calls of one attempt, in order, until the first the kernel refuses.
#[derive(Debug)]
pub struct Steps {
    answer: Answer,
}

impl Steps {
    /// Makes `call` unless an earlier one was refused; a failure is the kernel's answer.
    fn call(&mut self, call: &'static str, f: impl FnOnce() -> io::Result<()>) {
        if self.answer != Answer::Accepted {
            return;
        }
        if let Err(err) = f() {
            self.answer = Answer::Refused {
                call,
                errno: Errno::from_io_error(&err),
            };
        }
    }
}

/// A set-up step that is not part of the vector (its failure is not the kernel's answer).
type Setup = (&'static str, io::Error);

/// Performs one attempt.
pub type AttemptFn = fn(&mut Steps, &Aim<'_>) -> Result<(), Setup>;

/// One row of the table: everything known about a vector before it is measured.
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
    /// What `docs/kernel.md` records the kernel answers, and whether it leaves the front port.
    pub documented: Documented,
    /// Where in the repository that is written ([`DOCUMENTED_IN`]).
    pub documented_in: &'static str,
    /// The weakest level of `ifpin exec` that keeps it off the other interface (`None`: the
    /// kernel already does, at every level).
    pub closed_by: Option<Level>,
    /// Performs the attempt.
    #[serde(skip)]
    pub attempt: AttemptFn,
}

impl std::fmt::Debug for Aim<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Aim").field("target", self.target).finish()
    }
}

#[allow(
    clippy::too_many_arguments,
    reason = "one row of a table, every column named"
)]
const fn row(
    id: &'static str,
    title: &'static str,
    socket: SocketKind,
    privilege: Privilege,
    signature: Signature,
    documented: Documented,
    closed_by: Option<Level>,
    attempt: AttemptFn,
) -> VectorInfo {
    VectorInfo {
        id,
        title,
        socket,
        privilege,
        signature,
        documented,
        documented_in: DOCUMENTED_IN,
        closed_by,
        attempt,
    }
}

use Documented::{Contained, Leaks, Refused};
use Privilege::{NetAdmin, NetRaw, None as Unprivileged};
use Signature as S;
use SocketKind as K;

const ENFORCED: Option<Level> = Some(Level::Enforced);
const SEALED: Option<Level> = Some(Level::Sealed);
const KERNEL: Option<Level> = None;

/// Every override vector, in [`Vector`] order.
#[rustfmt::skip]
pub static OVERRIDES: [VectorInfo; 26] = [
    row("udp4-pktinfo", "UDP/IPv4 sendmsg with IP_PKTINFO ipi_ifindex = front",
        K::Udp4, Unprivileged, S::Udp, Leaks, ENFORCED,
        |s, a| { s.call("sendmsg(IP_PKTINFO)", || send_pktinfo4(a.fd, PAYLOAD, Some(a.v4), a.other)); Ok(()) }),
    row("udp4-pktinfo-connected", "connected UDP/IPv4 socket, sendmsg with IP_PKTINFO = front",
        K::Udp4, Unprivileged, S::Udp, Leaks, ENFORCED,
        |s, a| {
            s.call("connect", || a.socket.connect(&a.v4.into()));
            s.call("sendmsg(IP_PKTINFO)", || send_pktinfo4(a.fd, PAYLOAD, None, a.other));
            Ok(())
        }),
    row("udp4-pktinfo-broadcast", "UDP/IPv4 to 255.255.255.255 with IP_PKTINFO = front",
        K::Udp4, Unprivileged, S::Udp, Leaks, ENFORCED,
        |s, a| {
            a.socket.set_broadcast(true).map_err(|e| ("SO_BROADCAST", e))?;
            let to = SocketAddrV4::new(Ipv4Addr::BROADCAST, a.target.port);
            s.call("sendmsg(IP_PKTINFO)", || send_pktinfo4(a.fd, PAYLOAD, Some(to), a.other));
            Ok(())
        }),
    row("udp4-pktinfo-multicast", "UDP/IPv4 to 239.255.70.1 with IP_PKTINFO = front",
        K::Udp4, Unprivileged, S::Udp, Leaks, ENFORCED,
        |s, a| {
            let to = SocketAddrV4::new(MULTICAST_V4, a.target.port);
            s.call("sendmsg(IP_PKTINFO)", || send_pktinfo4(a.fd, PAYLOAD, Some(to), a.other));
            Ok(())
        }),
    row("ping4-pktinfo", "ICMP ping socket, echo request with IP_PKTINFO = front",
        K::Ping4, Unprivileged, S::IcmpEcho, Leaks, ENFORCED,
        |s, a| {
            let to = SocketAddrV4::new(a.target.v4, 0);
            s.call("sendmsg(IP_PKTINFO)", || send_pktinfo4(a.fd, &icmp_echo(false), Some(to), a.other));
            Ok(())
        }),
    row("v4mapped-ipv6-pktinfo", "AF_INET6 UDP to ::ffff:v4 with IPV6_PKTINFO = front",
        K::Udp6, Unprivileged, S::Udp, Leaks, ENFORCED,
        |s, a| {
            let to = SocketAddrV6::new(a.target.v4.to_ipv6_mapped(), a.target.port, 0, 0);
            s.call("sendmsg(IPV6_PKTINFO)", || send_pktinfo6(a.fd, Some(to), a.other));
            Ok(())
        }),
    row("v4mapped-ip-pktinfo", "AF_INET6 UDP to ::ffff:v4 with IP_PKTINFO = front",
        K::Udp6, Unprivileged, S::Udp, Leaks, ENFORCED,
        |s, a| {
            let to = SocketAddrV6::new(a.target.v4.to_ipv6_mapped(), a.target.port, 0, 0);
            s.call("sendmsg(IP_PKTINFO)", || send_pktinfo4_mapped(a.fd, to, a.other));
            Ok(())
        }),
    row("v6-scope-linklocal", "UDP/IPv6 sendto fe80::peer with sin6_scope_id = front",
        K::Udp6, Unprivileged, S::Udp, Leaks, ENFORCED,
        |s, a| {
            let to = SocketAddrV6::new(a.target.other_peer_link_local, a.target.port, 0, a.other);
            s.call("sendto", || send_to(a, PAYLOAD, to.into()));
            Ok(())
        }),
    row("v6-scope-multicast", "UDP/IPv6 sendto ff02::1 with sin6_scope_id = front",
        K::Udp6, Unprivileged, S::Udp, Leaks, ENFORCED,
        |s, a| {
            let all_nodes = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1);
            let to = SocketAddrV6::new(all_nodes, a.target.port, 0, a.other);
            s.call("sendto", || send_to(a, PAYLOAD, to.into()));
            Ok(())
        }),
    row("v6-bind-linklocal", "TCP/IPv6 bind() to fe80::own%front, then connect() to the control address",
        K::Tcp6, Unprivileged, S::Tcp, Leaks, ENFORCED,
        |s, a| {
            let own = SocketAddrV6::new(a.target.other_link_local, 0, 0, a.other);
            s.call("bind", || a.socket.bind(&own.into()));
            s.call("connect", || a.socket.connect_timeout(&SockAddr::from(a.v6), CONNECT_TIMEOUT));
            Ok(())
        }),
    row("raw4-pktinfo", "raw IPv4 ICMP echo with IP_PKTINFO = front",
        K::Raw4Icmp, NetRaw, S::IcmpEcho, Leaks, ENFORCED,
        |s, a| {
            let to = SocketAddrV4::new(a.target.v4, 0);
            s.call("sendmsg(IP_PKTINFO)", || send_pktinfo4(a.fd, &icmp_echo(true), Some(to), a.other));
            Ok(())
        }),
    row("raw6-scope-linklocal", "raw ICMPv6 echo to fe80::peer with scope = front",
        K::Raw6Icmp, NetRaw, S::Icmpv6Echo, Leaks, ENFORCED,
        |s, a| {
            let to = SocketAddrV6::new(a.target.other_peer_link_local, 0, 0, a.other);
            s.call("sendto", || send_to(a, &icmpv6_echo(), to.into()));
            Ok(())
        }),
    // Not IP: the cgroup filters never see it; sealed takes CAP_NET_RAW away.
    row("packet-btd", "AF_PACKET socket bound to the pinned interface, sendto front",
        K::Packet, NetRaw, S::EtherType, Leaks, SEALED,
        |s, a| {
            let mut frame = PAYLOAD.to_vec();
            frame.resize(46, 0);
            s.call("sendto(sockaddr_ll)", || {
                sockopt::packet_send_to(a.fd, &frame, a.other, VECTOR_ETHERTYPE, [0xff; 6]).map(drop)
            });
            Ok(())
        }),
    row("rebind-btd-netraw", "SO_BINDTODEVICE front with CAP_NET_RAW, then send",
        K::Udp4, NetRaw, S::Udp, Leaks, ENFORCED, rebind),
    row("rebind-btd-unpriv", "SO_BINDTODEVICE front without privilege, then send",
        K::Udp4, Unprivileged, S::Udp, Refused("EPERM"), KERNEL, rebind),
    row("udp6-pktinfo", "UDP/IPv6 sendmsg with IPV6_PKTINFO = front",
        K::Udp6, Unprivileged, S::Udp, Refused("EINVAL"), KERNEL,
        |s, a| { s.call("sendmsg(IPV6_PKTINFO)", || send_pktinfo6(a.fd, Some(a.v6), a.other)); Ok(()) }),
    row("udp6-pktinfo-sticky", "sticky IPV6_PKTINFO = front, then send",
        K::Udp6, Unprivileged, S::Udp, Refused("EINVAL"), KERNEL,
        |s, a| {
            let info = in6_pktinfo(Ipv6Addr::UNSPECIFIED, a.other);
            s.call("setsockopt(IPV6_PKTINFO)", || sockopt::setsockopt(a.fd, libc::IPPROTO_IPV6, libc::IPV6_PKTINFO, &info));
            s.call("sendto", || send_to(a, PAYLOAD, a.v6.into()));
            Ok(())
        }),
    row("ip-unicast-if", "IP_UNICAST_IF = front, then send",
        K::Udp4, Unprivileged, S::Udp, Refused("EINVAL"), KERNEL,
        |s, a| {
            // IP_UNICAST_IF takes the index in network byte order (ip(7)).
            let index = index_c_int(a.other)?.to_be();
            s.call("setsockopt(IP_UNICAST_IF)", || sockopt::setsockopt(a.fd, libc::IPPROTO_IP, libc::IP_UNICAST_IF, &index));
            s.call("sendto", || send_to(a, PAYLOAD, a.v4.into()));
            Ok(())
        }),
    row("ipv6-unicast-if", "IPV6_UNICAST_IF = front, then send",
        K::Udp6, Unprivileged, S::Udp, Refused("EINVAL"), KERNEL,
        |s, a| {
            // IPV6_UNICAST_IF, like IP_UNICAST_IF, takes network byte order (ipv6(7)).
            let index = index_c_int(a.other)?.to_be();
            s.call("setsockopt(IPV6_UNICAST_IF)", || sockopt::setsockopt(a.fd, libc::IPPROTO_IPV6, libc::IPV6_UNICAST_IF, &index));
            s.call("sendto", || send_to(a, PAYLOAD, a.v6.into()));
            Ok(())
        }),
    row("ip-multicast-if", "IP_MULTICAST_IF = front, then send to 239.255.70.1",
        K::Udp4, Unprivileged, S::Udp, Refused("EINVAL"), KERNEL,
        |s, a| {
            let request = libc::ip_mreqn {
                imr_multiaddr: libc::in_addr { s_addr: 0 },
                imr_address: libc::in_addr { s_addr: 0 },
                imr_ifindex: index_c_int(a.other)?,
            };
            s.call("setsockopt(IP_MULTICAST_IF)", || sockopt::setsockopt(a.fd, libc::IPPROTO_IP, libc::IP_MULTICAST_IF, &request));
            s.call("sendto", || send_to(a, PAYLOAD, SocketAddrV4::new(MULTICAST_V4, a.target.port).into()));
            Ok(())
        }),
    row("ipv6-multicast-if", "IPV6_MULTICAST_IF = front, then send to ff05::4242:1",
        K::Udp6, Unprivileged, S::Udp, Refused("EINVAL"), KERNEL,
        |s, a| {
            s.call("setsockopt(IPV6_MULTICAST_IF)", || a.socket.set_multicast_if_v6(a.other));
            s.call("sendto", || send_to(a, PAYLOAD, SocketAddrV6::new(MULTICAST_V6, a.target.port, 0, 0).into()));
            Ok(())
        }),
    row("v6-connect-scope", "UDP/IPv6 connect() to fe80::peer%front, then send",
        K::Udp6, Unprivileged, S::Udp, Refused("EINVAL"), KERNEL,
        |s, a| {
            let to = SocketAddrV6::new(a.target.other_peer_link_local, a.target.port, 0, a.other);
            s.call("connect", || a.socket.connect(&to.into()));
            s.call("send", || a.socket.send(PAYLOAD).map(drop));
            Ok(())
        }),
    row("so-dontroute", "SO_DONTROUTE, then send to the control address",
        K::Udp4, Unprivileged, S::Udp, Contained, KERNEL,
        |s, a| {
            sockopt::setsockopt(a.fd, libc::SOL_SOCKET, libc::SO_DONTROUTE, &1).map_err(|e| ("SO_DONTROUTE", e))?;
            s.call("sendto", || send_to(a, PAYLOAD, a.v4.into()));
            Ok(())
        }),
    row("so-mark", "SO_MARK routed out of front by a fwmark rule, then send",
        K::Udp4, NetAdmin, S::Udp, Contained, KERNEL,
        |s, a| {
            s.call("setsockopt(SO_MARK)", || a.socket.set_mark(VECTOR_MARK));
            s.call("sendto", || send_to(a, PAYLOAD, a.v4.into()));
            Ok(())
        }),
    row("broadcast", "UDP/IPv4 to 255.255.255.255, no cmsg",
        K::Udp4, Unprivileged, S::Udp, Contained, KERNEL,
        |s, a| {
            a.socket.set_broadcast(true).map_err(|e| ("SO_BROADCAST", e))?;
            s.call("sendto", || send_to(a, PAYLOAD, SocketAddrV4::new(Ipv4Addr::BROADCAST, a.target.port).into()));
            Ok(())
        }),
    row("raw4-no-cmsg", "raw IPv4 ICMP echo to the control address, no cmsg",
        K::Raw4Icmp, NetRaw, S::IcmpEcho, Contained, KERNEL,
        |s, a| {
            s.call("sendto", || send_to(a, &icmp_echo(true), SocketAddrV4::new(a.target.v4, 0).into()));
            Ok(())
        }),
];

impl Vector {
    /// Every vector, in table order.
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
        Self::ALL.into_iter().find(|v| v.id() == id)
    }

    /// The vector's id.
    pub fn id(self) -> &'static str {
        self.info().id
    }

    /// The vector's row of [`OVERRIDES`].
    pub fn info(self) -> &'static VectorInfo {
        &OVERRIDES[self as usize]
    }

    /// Tries the vector on `socket`, which must be a socket of [`VectorInfo::socket`] kind,
    /// already bound to the pinned interface. Returns what the kernel answered.
    ///
    /// Errors are for set-up steps that are not part of the vector (none of the kernel's
    /// answers to the vector itself is an error).
    pub fn attempt(self, socket: BorrowedFd<'_>, target: &Target) -> Result<Attempt, VectorError> {
        let aim = Aim {
            fd: socket,
            socket: SockRef::from(&socket),
            target,
            other: target.other_index.get(),
            v4: SocketAddrV4::new(target.v4, target.port),
            v6: SocketAddrV6::new(target.v6, target.port, 0, 0),
        };
        let mut steps = Steps {
            answer: Answer::Accepted,
        };
        let failed = |(step, source): Setup| VectorError {
            vector: self.id(),
            step,
            source,
        };
        (self.info().attempt)(&mut steps, &aim).map_err(failed)?;
        let bound_after = bound_index(socket)
            .map_err(|source| failed(("getsockopt(SO_BINDTOIFINDEX)", source)))?;
        Ok(Attempt {
            answer: steps.answer,
            bound_after,
        })
    }
}

impl From<Vector> for &'static str {
    fn from(vector: Vector) -> Self {
        vector.id()
    }
}

impl std::fmt::Display for Vector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.id())
    }
}

/// `SO_BINDTODEVICE` to the other interface, then a plain send to the control address.
fn rebind(s: &mut Steps, a: &Aim<'_>) -> Result<(), Setup> {
    s.call("setsockopt(SO_BINDTODEVICE)", || {
        a.socket.bind_device(Some(a.target.other_name.as_bytes()))
    });
    s.call("sendto", || send_to(a, PAYLOAD, a.v4.into()));
    Ok(())
}

fn send_to(a: &Aim<'_>, payload: &[u8], to: std::net::SocketAddr) -> io::Result<()> {
    a.socket.send_to(payload, &to.into()).map(drop)
}

fn index_c_int(index: u32) -> Result<libc::c_int, Setup> {
    libc::c_int::try_from(index)
        .map_err(|_| ("index", io::Error::from(io::ErrorKind::InvalidInput)))
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

/// `sendmsg` of `payload` with an `IP_PKTINFO` cmsg naming `ifindex`.
fn send_pktinfo4(
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

/// `sendmsg` on an AF_INET6 socket to a v4-mapped address with an IPv4 `IP_PKTINFO` cmsg.
fn send_pktinfo4_mapped(fd: BorrowedFd<'_>, to: SocketAddrV6, ifindex: u32) -> io::Result<()> {
    let info = in_pktinfo(ifindex);
    let to = SockaddrIn6::from(to);
    sendmsg(
        fd.as_raw_fd(),
        &[IoSlice::new(PAYLOAD)],
        &[ControlMessage::Ipv4PacketInfo(&info)],
        MsgFlags::empty(),
        Some(&to),
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
pub(crate) fn icmp_echo(with_checksum: bool) -> Vec<u8> {
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
pub(crate) fn internet_checksum(data: &[u8]) -> u16 {
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
    fn the_table_is_in_enum_order_and_ids_are_unique() {
        for (i, vector) in Vector::ALL.into_iter().enumerate() {
            assert_eq!(vector as usize, i, "{vector:?}");
            assert_eq!(Vector::from_id(vector.id()), Some(vector));
        }
        let mut ids: Vec<_> = OVERRIDES.iter().map(|v| v.id).collect();
        ids.sort_unstable();
        ids.dedup();
        assert_eq!(ids.len(), OVERRIDES.len());
    }

    #[test]
    fn only_leaking_vectors_need_a_level() {
        for info in &OVERRIDES {
            assert_eq!(
                info.closed_by.is_some(),
                info.documented == Documented::Leaks,
                "{}",
                info.id
            );
        }
    }

    #[test]
    fn checksum_of_a_known_echo_request_verifies() {
        let packet = icmp_echo(true);
        // A packet carrying its own checksum sums to zero.
        assert_eq!(internet_checksum(&packet), 0);
        assert_ne!(&packet[2..4], &[0, 0]);
    }
}
