//! TCP and UDP servers that answer with their host's name.
//!
//! A [`Responder`] runs on a thread that entered a namespace, bound to one address and port.
//! Every TCP connection it accepts gets `<label>\n` (the namespace's [`Netns::label`], e.g.
//! `backplane\n`) and is closed; every UDP datagram is answered with the same text. So a
//! client learns *which side of the chassis* answered (UDP answers come from the address the
//! datagram was sent to, so connected and link-local clients accept them), and [`Responder::hits`] tells the test
//! how many connections/datagrams reached it. Stopped (thread joined, socket closed) on drop.

use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use nix::sys::socket::sockopt;
use socket2::{Domain, Protocol, SockAddr, Socket, Type};

use crate::error::{Error, Result};
use crate::netns::Netns;

/// How often the serving thread wakes up to check whether it must stop.
const POLL: Duration = Duration::from_millis(20);

/// Transport of a [`Responder`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Proto {
    /// TCP: answer each accepted connection.
    Tcp,
    /// UDP: answer each datagram.
    Udp,
}

#[derive(Debug, Default)]
struct Stats {
    hits: AtomicUsize,
    peers: Mutex<Vec<SocketAddr>>,
    stop: AtomicBool,
}

/// A TCP or UDP server in a namespace answering with the namespace's label.
#[derive(Debug)]
pub struct Responder {
    local: SocketAddr,
    proto: Proto,
    stats: Arc<Stats>,
    thread: Option<JoinHandle<()>>,
}

impl Responder {
    /// Starts a TCP responder in `ns` bound to `addr` (port 0 picks a free port; see
    /// [`Responder::local_addr`]). IPv6 sockets are `IPV6_V6ONLY`, so a v4 and a v6
    /// responder can share a port. For a link-local address, set the scope id.
    pub fn tcp(ns: &Netns, addr: SocketAddr) -> Result<Responder> {
        Responder::start(ns, addr, Proto::Tcp, None)
    }

    /// Starts a UDP responder in `ns` bound to `addr` (see [`Responder::tcp`]).
    pub fn udp(ns: &Netns, addr: SocketAddr) -> Result<Responder> {
        Responder::start(ns, addr, Proto::Udp, None)
    }

    /// Starts a responder whose socket is also bound to interface `device`
    /// (`SO_BINDTODEVICE`), or unbound with `None`.
    pub fn start(
        ns: &Netns,
        addr: SocketAddr,
        proto: Proto,
        device: Option<&str>,
    ) -> Result<Responder> {
        let context = format!("{proto:?} responder on {addr} in {}", ns.name());
        let socket = ns
            .run(|| bind_socket(addr, proto, device))?
            .map_err(|(call, e)| Error::sys(call, context.clone(), e))?;
        let local = socket
            .local_addr()
            .ok()
            .and_then(|a| a.as_socket())
            .unwrap_or(addr);
        let reply = format!("{}\n", ns.label()).into_bytes();
        let stats = Arc::new(Stats::default());
        let thread_stats = Arc::clone(&stats);
        let thread = std::thread::Builder::new()
            .name(format!("netlab-{proto:?}-{local}"))
            .spawn(move || match proto {
                Proto::Tcp => serve_tcp(socket, &reply, &thread_stats),
                Proto::Udp => serve_udp(socket, &reply, &thread_stats),
            })
            .map_err(|e| Error::sys("thread spawn", context, e))?;
        Ok(Responder {
            local,
            proto,
            stats,
            thread: Some(thread),
        })
    }

    /// The address and port it is bound to.
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// Its port.
    pub fn port(&self) -> u16 {
        self.local.port()
    }

    /// TCP or UDP.
    pub fn proto(&self) -> Proto {
        self.proto
    }

    /// How many connections (TCP) or datagrams (UDP) it received.
    pub fn hits(&self) -> usize {
        self.stats.hits.load(Ordering::SeqCst)
    }

    /// The client addresses it saw, in order.
    pub fn peers(&self) -> Vec<SocketAddr> {
        self.stats
            .peers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

impl Drop for Responder {
    fn drop(&mut self) {
        self.stats.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn bind_socket(
    addr: SocketAddr,
    proto: Proto,
    device: Option<&str>,
) -> std::result::Result<Socket, (&'static str, std::io::Error)> {
    let (ty, p) = match proto {
        Proto::Tcp => (Type::STREAM, Protocol::TCP),
        Proto::Udp => (Type::DGRAM, Protocol::UDP),
    };
    let socket = Socket::new(Domain::for_address(addr), ty, Some(p)).map_err(|e| ("socket", e))?;
    socket
        .set_reuse_address(true)
        .map_err(|e| ("setsockopt(SO_REUSEADDR)", e))?;
    if addr.is_ipv6() {
        socket
            .set_only_v6(true)
            .map_err(|e| ("setsockopt(IPV6_V6ONLY)", e))?;
    }
    if let Some(dev) = device {
        socket
            .bind_device(Some(dev.as_bytes()))
            .map_err(|e| ("setsockopt(SO_BINDTODEVICE)", e))?;
    }
    socket
        .set_read_timeout(Some(POLL))
        .map_err(|e| ("setsockopt(SO_RCVTIMEO)", e))?;
    socket
        .bind(&SockAddr::from(addr))
        .map_err(|e| ("bind", e))?;
    match proto {
        Proto::Tcp => socket.listen(128).map_err(|e| ("listen", e))?,
        Proto::Udp if addr.is_ipv6() => {
            nix::sys::socket::setsockopt(&socket, sockopt::Ipv6RecvPacketInfo, &true)
                .map_err(|e| ("setsockopt(IPV6_RECVPKTINFO)", e.into()))?;
        }
        Proto::Udp => {
            nix::sys::socket::setsockopt(&socket, sockopt::Ipv4PacketInfo, &true)
                .map_err(|e| ("setsockopt(IP_PKTINFO)", e.into()))?;
        }
    }
    Ok(socket)
}

fn record(stats: &Stats, peer: Option<SocketAddr>) {
    if let Some(p) = peer {
        stats
            .peers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(p);
    }
    stats.hits.fetch_add(1, Ordering::SeqCst);
}

fn serve_tcp(socket: Socket, reply: &[u8], stats: &Stats) {
    let mut closers: Vec<JoinHandle<()>> = Vec::new();
    while !stats.stop.load(Ordering::SeqCst) {
        // accept(2) honours SO_RCVTIMEO on Linux, so this wakes up every POLL.
        let Ok((conn, peer)) = socket.accept() else {
            continue;
        };
        record(stats, peer.as_socket());
        let mut stream = TcpStream::from(conn);
        let _ = stream.set_write_timeout(Some(Duration::from_secs(1)));
        let _ = stream.write_all(reply);
        let _ = stream.shutdown(std::net::Shutdown::Write);
        // Read what the client sent until it closes (bounded), so closing never turns into a
        // RST that could destroy the reply before the client read it.
        let drain = std::thread::Builder::new()
            .name("netlab-tcp-drain".to_owned())
            .spawn(move || drain(stream));
        if let Ok(handle) = drain {
            closers.push(handle);
        }
        closers.retain(|h| !h.is_finished());
    }
    for h in closers {
        let _ = h.join();
    }
}

fn drain(mut stream: TcpStream) {
    use std::io::Read;
    let _ = stream.set_read_timeout(Some(Duration::from_millis(200)));
    let deadline = std::time::Instant::now() + Duration::from_secs(1);
    let mut buf = [0u8; 1024];
    while std::time::Instant::now() < deadline {
        match stream.read(&mut buf) {
            Ok(0) => return,
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(_) => return,
        }
    }
}

fn serve_udp(socket: Socket, reply: &[u8], stats: &Stats) {
    use nix::sys::socket::{ControlMessage, ControlMessageOwned, MsgFlags, SockaddrStorage};
    use std::io::{IoSlice, IoSliceMut};
    use std::os::fd::AsRawFd;

    let fd = socket.as_raw_fd();
    let mut buf = [0u8; 2048];
    while !stats.stop.load(Ordering::SeqCst) {
        let mut cmsg = nix::cmsg_space!(libc::in6_pktinfo);
        let mut iov = [IoSliceMut::new(&mut buf)];
        let Ok(msg) = nix::sys::socket::recvmsg::<SockaddrStorage>(
            fd,
            &mut iov,
            Some(&mut cmsg),
            MsgFlags::empty(),
        ) else {
            continue;
        };
        let Some(peer) = msg.address else { continue };
        let mut info4 = None;
        let mut info6 = None;
        if let Ok(cmsgs) = msg.cmsgs() {
            for c in cmsgs {
                match c {
                    ControlMessageOwned::Ipv4PacketInfo(pi) => info4 = Some(pi),
                    ControlMessageOwned::Ipv6PacketInfo(pi) => info6 = Some(pi),
                    _ => {}
                }
            }
        }
        record(stats, to_socket_addr(&peer));
        // Answer from the address the datagram was sent to (and, for IPv6, through the
        // interface it came in on), so connected clients and link-local peers accept it.
        let iov = [IoSlice::new(reply)];
        // ipi_spec_dst is the local address the datagram reached (the interface address for
        // a broadcast); a multicast destination cannot be a source, so let the kernel choose.
        let reply4 = info4.map(|pi| libc::in_pktinfo {
            ipi_ifindex: 0,
            ipi_spec_dst: pi.ipi_spec_dst,
            ipi_addr: pi.ipi_spec_dst,
        });
        let reply6 = info6.map(|mut pi| {
            if pi.ipi6_addr.s6_addr[0] == 0xff {
                pi.ipi6_addr.s6_addr = [0; 16];
            }
            pi
        });
        let cmsgs: Vec<ControlMessage<'_>> = match (&reply4, &reply6) {
            (Some(pi), _) => vec![ControlMessage::Ipv4PacketInfo(pi)],
            (None, Some(pi)) => vec![ControlMessage::Ipv6PacketInfo(pi)],
            (None, None) => Vec::new(),
        };
        let _ = nix::sys::socket::sendmsg(fd, &iov, &cmsgs, MsgFlags::empty(), Some(&peer));
    }
}

fn to_socket_addr(a: &nix::sys::socket::SockaddrStorage) -> Option<SocketAddr> {
    if let Some(v4) = a.as_sockaddr_in() {
        return Some(SocketAddr::V4(std::net::SocketAddrV4::from(*v4)));
    }
    a.as_sockaddr_in6()
        .map(|v6| SocketAddr::V6(std::net::SocketAddrV6::from(*v6)))
}
