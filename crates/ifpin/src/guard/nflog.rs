//! Reading the guard's drops from the kernel: an `nfnetlink_log` (NFLOG) group.
//!
//! The guard's log rules send each dropped packet's first bytes, with the rule's prefix, the
//! interfaces and, for a packet of a local socket, the socket owner's uid and gid, to one
//! NFLOG group. [`LogReader`] binds the group (one reader per group and network namespace)
//! and [`decode`] turns each message into a [`LoggedPacket`]: rule, plane, direction, the
//! interfaces, protocol, addresses and ports. If the reader falls behind, the kernel drops
//! messages and says so (`ENOBUFS`): [`LogReader::read`] counts those overruns, so a loss is
//! never silent.

use std::io;
use std::net::IpAddr;
use std::os::fd::{AsFd, BorrowedFd};

use netlink_sys::{Socket, SocketAddr, protocols::NETLINK_NETFILTER};
use serde::Serialize;

use super::nft::Batch;
use super::nlmsg::{NLMSG_ERROR, messages};
use super::{GuardError, LogRule, parse_log_prefix};

const NFNL_SUBSYS_ULOG: u16 = libc::NFNL_SUBSYS_ULOG as u16;
const NFULNL_MSG_PACKET: u16 = libc::NFULNL_MSG_PACKET as u16;
const NFULNL_MSG_CONFIG: u16 = libc::NFULNL_MSG_CONFIG as u16;
const NFULA_CFG_CMD: u16 = libc::NFULA_CFG_CMD as u16;
const NFULA_CFG_MODE: u16 = libc::NFULA_CFG_MODE as u16;
// The order of `enum nfulnl_attr_config`: NLBUFSIZ comes before TIMEOUT and QTHRESH.
const NFULA_CFG_NLBUFSIZ: u16 = libc::NFULA_CFG_NLBUFSIZ as u16;
const NFULA_CFG_TIMEOUT: u16 = libc::NFULA_CFG_TIMEOUT as u16;
const NFULA_CFG_QTHRESH: u16 = libc::NFULA_CFG_QTHRESH as u16;
const NFULNL_CFG_CMD_BIND: u8 = libc::NFULNL_CFG_CMD_BIND as u8;
const NFULNL_COPY_PACKET: u8 = libc::NFULNL_COPY_PACKET as u8;
const NFULA_PACKET_HDR: u16 = libc::NFULA_PACKET_HDR as u16;
const NFULA_IFINDEX_INDEV: u16 = libc::NFULA_IFINDEX_INDEV as u16;
const NFULA_IFINDEX_OUTDEV: u16 = libc::NFULA_IFINDEX_OUTDEV as u16;
const NFULA_PAYLOAD: u16 = libc::NFULA_PAYLOAD as u16;
const NFULA_PREFIX: u16 = libc::NFULA_PREFIX as u16;
const NFULA_UID: u16 = libc::NFULA_UID as u16;
const NFULA_GID: u16 = libc::NFULA_GID as u16;

/// The receive buffer the reader asks for: room for tens of thousands of log messages, so a
/// flood is absorbed between two reads.
const RECEIVE_BUFFER: usize = 8 << 20;

/// A transport protocol as logged.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Proto {
    /// TCP.
    Tcp,
    /// UDP.
    Udp,
    /// ICMP or ICMPv6.
    Icmp,
    /// Anything else, by number.
    Other(u8),
}

impl Proto {
    /// The protocol's name.
    pub fn name(self) -> String {
        match self {
            Proto::Tcp => "tcp".to_owned(),
            Proto::Udp => "udp".to_owned(),
            Proto::Icmp => "icmp".to_owned(),
            Proto::Other(n) => format!("ip-proto-{n}"),
        }
    }
}

/// One logged (dropped, or in observe mode matched) packet.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LoggedPacket {
    /// The rule that matched.
    pub rule: LogRule,
    /// The plane, by name.
    pub plane: String,
    /// The netfilter hook number it was logged at.
    pub hook: u8,
    /// The interface it arrived through (index).
    pub in_index: Option<u32>,
    /// The interface it was leaving through (index).
    pub out_index: Option<u32>,
    /// The transport protocol.
    pub proto: Proto,
    /// Source address.
    pub src: IpAddr,
    /// Destination address.
    pub dst: IpAddr,
    /// Source port (TCP/UDP), or ICMP type.
    pub sport: u16,
    /// Destination port (TCP/UDP), or ICMP code.
    pub dport: u16,
    /// TCP flags (0 for other protocols).
    pub tcp_flags: u8,
    /// The owner uid of the local socket that sent it, when there is one.
    pub uid: Option<u32>,
    /// Its gid.
    pub gid: Option<u32>,
}

impl LoggedPacket {
    /// A TCP reset or an ICMP error: what the kernel itself sends for closed ports.
    pub fn is_kernel_answer(&self) -> bool {
        match self.proto {
            Proto::Tcp => self.tcp_flags & 0x04 != 0,
            Proto::Icmp => {
                let ty = self.sport as u8;
                if self.src.is_ipv4() {
                    matches!(ty, 3 | 11 | 12)
                } else {
                    ty < 128
                }
            }
            _ => false,
        }
    }
}

/// What one read gave.
#[derive(Debug, Default)]
pub struct LogBatch {
    /// The packets, in the order the kernel logged them.
    pub packets: Vec<LoggedPacket>,
    /// How many times the kernel reported lost messages (`ENOBUFS`) during this read.
    pub overruns: u64,
}

/// A bound NFLOG group.
#[derive(Debug)]
pub struct LogReader {
    socket: Socket,
    buf: Vec<u8>,
    group: u16,
}

impl LogReader {
    /// Binds NFLOG group `group` in the caller's network namespace, copying up to 128 bytes
    /// of each packet. Fails with [`GuardError::LogGroupBusy`] when another process has it.
    pub fn bind(group: u16) -> Result<LogReader, GuardError> {
        let err = |call: &'static str| move |source| GuardError::Netlink { call, source };
        let mut socket =
            Socket::new(NETLINK_NETFILTER).map_err(err("socket(NETLINK_NETFILTER)"))?;
        socket.bind(&SocketAddr::new(0, 0)).map_err(err("bind"))?;
        // Ask for a large buffer, beyond rmem_max when privileged (SO_RCVBUFFORCE).
        if nix::sys::socket::setsockopt(
            &socket,
            nix::sys::socket::sockopt::RcvBufForce,
            &RECEIVE_BUFFER,
        )
        .is_err()
        {
            let _ = socket.set_rx_buf_sz(RECEIVE_BUFFER);
        }
        let mut reader = LogReader {
            socket,
            buf: Vec::with_capacity(256 * 1024),
            group,
        };
        let ty = (NFNL_SUBSYS_ULOG << 8) | NFULNL_MSG_CONFIG;
        let mut b = Batch::new(0);
        let seq = b.begin(
            ty,
            super::nft::NLM_F_REQUEST | super::nft::NLM_F_ACK,
            0,
            group,
        );
        b.attr(NFULA_CFG_CMD, &[NFULNL_CFG_CMD_BIND]);
        b.end();
        b.what.push((seq, format!("bind NFLOG group {group}")));
        let seq = b.begin(
            ty,
            super::nft::NLM_F_REQUEST | super::nft::NLM_F_ACK,
            0,
            group,
        );
        let mut mode = 128u32.to_be_bytes().to_vec();
        mode.extend_from_slice(&[NFULNL_COPY_PACKET, 0]);
        b.attr(NFULA_CFG_MODE, &mode);
        // Flush at least every 100 ms, or when 128 messages are queued, in datagrams of up to
        // 128 KiB (128 messages of at most ~300 bytes fit).
        b.u32be(NFULA_CFG_TIMEOUT, 10);
        b.u32be(NFULA_CFG_QTHRESH, 128);
        b.u32be(NFULA_CFG_NLBUFSIZ, 131_072);
        b.end();
        b.what.push((seq, format!("configure NFLOG group {group}")));
        match reader.configure(&b) {
            // The kernel answers EPERM both to the unprivileged and when another socket has
            // bound the group; a privileged nf_tables request tells them apart.
            Err(e) if e.is_permission() => {
                return Err(match super::installed(super::TABLE) {
                    Ok(_) => GuardError::LogGroupBusy { group },
                    Err(_) => e,
                });
            }
            other => other?,
        }
        reader
            .socket
            .set_non_blocking(true)
            .map_err(err("fcntl(O_NONBLOCK)"))?;
        Ok(reader)
    }

    fn configure(&mut self, batch: &Batch) -> Result<(), GuardError> {
        self.socket
            .send(batch.bytes(), 0)
            .map_err(|source| GuardError::Netlink {
                call: "send (NFLOG config)",
                source,
            })?;
        let mut pending = batch.what.len();
        while pending > 0 {
            self.buf.clear();
            self.socket
                .recv(&mut self.buf, 0)
                .map_err(|source| GuardError::Netlink {
                    call: "recv (NFLOG config answer)",
                    source,
                })?;
            for message in messages(&self.buf) {
                if message.ty != NLMSG_ERROR {
                    continue;
                }
                let (seq, errno) = (message.seq, message.errno().unwrap_or(0));
                pending = pending.saturating_sub(1);
                if errno == libc::EBUSY {
                    return Err(GuardError::LogGroupBusy { group: self.group });
                }
                if errno != 0 {
                    let what = batch
                        .what
                        .iter()
                        .find(|(s, _)| *s == seq)
                        .map_or_else(|| "configure NFLOG".to_owned(), |(_, w)| w.clone());
                    return Err(GuardError::Kernel {
                        what,
                        source: io::Error::from_raw_os_error(errno),
                    });
                }
            }
        }
        Ok(())
    }

    /// The group.
    pub fn group(&self) -> u16 {
        self.group
    }

    /// Reads every message waiting, without blocking; at most `max` packets per call, so one
    /// flood cannot starve the rest of the guard's loop.
    pub fn read(&mut self, max: usize) -> Result<LogBatch, GuardError> {
        let mut batch = LogBatch::default();
        while batch.packets.len() < max {
            self.buf.clear();
            match self.socket.recv(&mut self.buf, 0) {
                Ok(_) => decode_datagram(&self.buf, &mut batch.packets),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if e.raw_os_error() == Some(libc::ENOBUFS) => batch.overruns += 1,
                Err(source) => {
                    return Err(GuardError::Netlink {
                        call: "recv (NFLOG)",
                        source,
                    });
                }
            }
        }
        Ok(batch)
    }
}

impl AsFd for LogReader {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.socket.as_fd()
    }
}

/// Decodes every NFLOG packet message of one datagram into `out`; other messages, and
/// packets without one of the guard's prefixes, are skipped.
pub fn decode_datagram(bytes: &[u8], out: &mut Vec<LoggedPacket>) {
    for message in messages(bytes) {
        if message.ty != (NFNL_SUBSYS_ULOG << 8) | NFULNL_MSG_PACKET {
            continue;
        }
        if let Some(packet) = message.nfnetlink_attributes().and_then(decode) {
            out.push(packet);
        }
    }
}

/// Decodes the attributes of one NFLOG packet message (after the `nfgenmsg` header).
pub fn decode(mut attrs: &[u8]) -> Option<LoggedPacket> {
    let mut hook = 0;
    let mut in_index = None;
    let mut out_index = None;
    let mut payload: &[u8] = &[];
    let mut prefix = "";
    let mut uid = None;
    let mut gid = None;
    while attrs.len() >= 4 {
        let len = u16::from_ne_bytes([attrs[0], attrs[1]]) as usize;
        let ty = u16::from_ne_bytes([attrs[2], attrs[3]]) & 0x3fff;
        if len < 4 || len > attrs.len() {
            break;
        }
        let data = &attrs[4..len];
        let be32 = || {
            data.get(..4)
                .map(|d| u32::from_be_bytes([d[0], d[1], d[2], d[3]]))
        };
        match ty {
            NFULA_PACKET_HDR if data.len() >= 3 => hook = data[2],
            NFULA_IFINDEX_INDEV => in_index = be32(),
            NFULA_IFINDEX_OUTDEV => out_index = be32(),
            NFULA_PAYLOAD => payload = data,
            NFULA_PREFIX => {
                let end = data.iter().position(|&b| b == 0).unwrap_or(data.len());
                prefix = std::str::from_utf8(&data[..end]).unwrap_or("");
            }
            NFULA_UID => uid = be32(),
            NFULA_GID => gid = be32(),
            _ => {}
        }
        attrs = attrs.get((len + 3) & !3..).unwrap_or(&[]);
    }
    let (rule, plane) = parse_log_prefix(prefix)?;
    let headers = parse_ip(payload)?;
    Some(LoggedPacket {
        rule,
        plane: plane.to_owned(),
        hook,
        in_index,
        out_index,
        proto: headers.proto,
        src: headers.src,
        dst: headers.dst,
        sport: headers.sport,
        dport: headers.dport,
        tcp_flags: headers.tcp_flags,
        uid,
        gid,
    })
}

struct Headers {
    proto: Proto,
    src: IpAddr,
    dst: IpAddr,
    sport: u16,
    dport: u16,
    tcp_flags: u8,
}

/// The IP and transport headers of a packet that starts at its IP header.
fn parse_ip(p: &[u8]) -> Option<Headers> {
    let version = p.first()? >> 4;
    let (next, src, dst, transport, first_fragment) = match version {
        4 => {
            let ihl = ((p[0] & 0x0f) as usize) * 4;
            if p.len() < 20 || ihl < 20 {
                return None;
            }
            let src = IpAddr::from(<[u8; 4]>::try_from(&p[12..16]).ok()?);
            let dst = IpAddr::from(<[u8; 4]>::try_from(&p[16..20]).ok()?);
            let frag_offset = u16::from_be_bytes([p[6], p[7]]) & 0x1fff;
            (
                p[9],
                src,
                dst,
                p.get(ihl..).unwrap_or(&[]),
                frag_offset == 0,
            )
        }
        6 => {
            if p.len() < 40 {
                return None;
            }
            let src = IpAddr::from(<[u8; 16]>::try_from(&p[8..24]).ok()?);
            let dst = IpAddr::from(<[u8; 16]>::try_from(&p[24..40]).ok()?);
            let mut next = p[6];
            let mut rest = &p[40..];
            let mut first = true;
            // Hop-by-hop, routing, destination options and fragment headers.
            for _ in 0..8 {
                match next {
                    0 | 43 | 60 if rest.len() >= 8 => {
                        let len = (rest[1] as usize + 1) * 8;
                        next = rest[0];
                        rest = rest.get(len..).unwrap_or(&[]);
                    }
                    44 if rest.len() >= 8 => {
                        first = u16::from_be_bytes([rest[2], rest[3]]) >> 3 == 0;
                        next = rest[0];
                        rest = &rest[8..];
                    }
                    _ => break,
                }
            }
            (next, src, dst, rest, first)
        }
        _ => return None,
    };
    let t = if first_fragment { transport } else { &[][..] };
    let be16 = |o: usize| {
        t.get(o..o + 2)
            .map_or(0, |b| u16::from_be_bytes([b[0], b[1]]))
    };
    let proto = match next {
        6 => Proto::Tcp,
        17 => Proto::Udp,
        1 | 58 => Proto::Icmp,
        n => Proto::Other(n),
    };
    let (sport, dport, tcp_flags) = match proto {
        Proto::Tcp => (be16(0), be16(2), t.get(13).copied().unwrap_or(0)),
        Proto::Udp => (be16(0), be16(2), 0),
        Proto::Icmp => (
            t.first().copied().unwrap_or(0) as u16,
            t.get(1).copied().unwrap_or(0) as u16,
            0,
        ),
        Proto::Other(_) => (0, 0, 0),
    };
    Some(Headers {
        proto,
        src,
        dst,
        sport,
        dport,
        tcp_flags,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attr(ty: u16, data: &[u8]) -> Vec<u8> {
        let mut v = ((4 + data.len()) as u16).to_ne_bytes().to_vec();
        v.extend_from_slice(&ty.to_ne_bytes());
        v.extend_from_slice(data);
        while v.len() % 4 != 0 {
            v.push(0);
        }
        v
    }

    fn tcp_syn_v4() -> Vec<u8> {
        let mut p = vec![0x45, 0, 0, 40, 0, 0, 0x40, 0, 64, 6, 0, 0];
        p.extend_from_slice(&[10, 20, 0, 1, 10, 99, 7, 2]);
        p.extend_from_slice(&[0x9c, 0x40, 0x1d, 0x4c, 0, 0, 0, 1, 0, 0, 0, 0, 0x50, 0x02]);
        p.extend_from_slice(&[0; 6]);
        p
    }

    #[test]
    fn a_logged_syn_decodes() {
        let mut msg = attr(NFULA_PACKET_HDR, &[0x08, 0x00, 4, 0]);
        msg.extend(attr(NFULA_IFINDEX_OUTDEV, &5u32.to_be_bytes()));
        msg.extend(attr(NFULA_PREFIX, b"ifpin egress backplane\0"));
        msg.extend(attr(NFULA_UID, &1000u32.to_be_bytes()));
        msg.extend(attr(NFULA_PAYLOAD, &tcp_syn_v4()));
        let p = decode(&msg).unwrap();
        assert_eq!(p.rule, LogRule::Egress);
        assert_eq!(p.plane, "backplane");
        assert_eq!(p.hook, 4);
        assert_eq!(p.out_index, Some(5));
        assert_eq!(p.proto, Proto::Tcp);
        assert_eq!(p.src, "10.20.0.1".parse::<IpAddr>().unwrap());
        assert_eq!(p.dst, "10.99.7.2".parse::<IpAddr>().unwrap());
        assert_eq!((p.sport, p.dport), (40000, 7500));
        assert_eq!(p.tcp_flags, 2);
        assert_eq!(p.uid, Some(1000));
        assert!(!p.is_kernel_answer());
        // Another program's prefix is not the guard's.
        let mut other = attr(NFULA_PREFIX, b"ulogd\0");
        other.extend(attr(NFULA_PAYLOAD, &tcp_syn_v4()));
        assert!(decode(&other).is_none());
    }

    #[test]
    fn ipv6_with_an_extension_header_decodes() {
        let mut p = vec![0x60, 0, 0, 0, 0, 16, 60, 64];
        p.extend_from_slice(&"fd99:7::2".parse::<std::net::Ipv6Addr>().unwrap().octets());
        p.extend_from_slice(&"fd20::2".parse::<std::net::Ipv6Addr>().unwrap().octets());
        p.extend_from_slice(&[17, 0, 1, 4, 0, 0, 0, 0]); // dest options, next UDP
        p.extend_from_slice(&[0x1d, 0x4c, 0x00, 0x35, 0, 8, 0, 0]);
        let h = parse_ip(&p).unwrap();
        assert_eq!(h.proto, Proto::Udp);
        assert_eq!((h.sport, h.dport), (7500, 53));
        assert!(parse_ip(&[0x45, 0]).is_none());
    }
}
