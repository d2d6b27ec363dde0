//! Decoding of captured Ethernet frames, without any system call.
//!
//! [`Frame::decode`] turns the bytes an `AF_PACKET` socket returned (plus the socket's
//! `sll_pkttype`) into a [`Frame`]: direction, MAC addresses, ethertype and one
//! [`Payload`]: ARP, IPv4 or IPv6 (extension headers skipped) with the transport protocol,
//! ports and ICMP type. Frames that cannot be decoded are kept as [`Payload::Other`] or
//! [`Payload::Truncated`] rather than dropped, so a counter never hides traffic.
//!
//! [`Frame::is_noise`] tells background chatter (MLD, router solicitations, DAD, IGMP) from
//! traffic a test caused; a neighbour solicitation or ARP request *for a destination* is
//! never noise.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Ethertype of IPv4.
pub const ETHERTYPE_IPV4: u16 = 0x0800;
/// Ethertype of ARP.
pub const ETHERTYPE_ARP: u16 = 0x0806;
/// Ethertype of IPv6.
pub const ETHERTYPE_IPV6: u16 = 0x86dd;

/// IP protocol number of ICMP.
pub const PROTO_ICMP: u8 = 1;
/// IP protocol number of IGMP.
pub const PROTO_IGMP: u8 = 2;
/// IP protocol number of TCP.
pub const PROTO_TCP: u8 = 6;
/// IP protocol number of UDP.
pub const PROTO_UDP: u8 = 17;
/// IP protocol number of ICMPv6.
pub const PROTO_ICMPV6: u8 = 58;

/// ICMPv6 router solicitation.
pub const ICMPV6_ROUTER_SOLICIT: u8 = 133;
/// ICMPv6 router advertisement.
pub const ICMPV6_ROUTER_ADVERT: u8 = 134;
/// ICMPv6 neighbour solicitation.
pub const ICMPV6_NEIGHBOR_SOLICIT: u8 = 135;
/// ICMPv6 neighbour advertisement.
pub const ICMPV6_NEIGHBOR_ADVERT: u8 = 136;

/// Which way a frame crossed the capturing interface, from `sll_pkttype`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
pub enum Direction {
    /// Received by the capturing interface from the far end of the link
    /// (`PACKET_HOST`, `PACKET_BROADCAST`, `PACKET_MULTICAST`, `PACKET_OTHERHOST`).
    Incoming,
    /// Sent by the capturing interface's own namespace (`PACKET_OUTGOING`).
    Outgoing,
}

impl Direction {
    /// Maps `sll_pkttype` to a direction.
    pub fn from_pkttype(pkttype: u8) -> Direction {
        if pkttype == libc::PACKET_OUTGOING {
            Direction::Outgoing
        } else {
            Direction::Incoming
        }
    }
}

/// An ARP packet (Ethernet/IPv4 only).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Arp {
    /// 1 = request, 2 = reply.
    pub op: u16,
    /// Sender protocol address.
    pub sender_ip: Ipv4Addr,
    /// Target protocol address (the address being resolved, for a request).
    pub target_ip: Ipv4Addr,
}

/// The transport part of an IP packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub enum Transport {
    /// TCP with its ports and flags byte (`0x02` SYN, `0x10` ACK, `0x04` RST...).
    Tcp {
        /// Source port.
        src_port: u16,
        /// Destination port.
        dst_port: u16,
        /// The flags byte.
        flags: u8,
    },
    /// UDP with its ports.
    Udp {
        /// Source port.
        src_port: u16,
        /// Destination port.
        dst_port: u16,
    },
    /// ICMP (v4) type and code.
    Icmp {
        /// ICMP type (8 echo request, 0 echo reply, 3 unreachable...).
        icmp_type: u8,
        /// ICMP code.
        code: u8,
    },
    /// ICMPv6 type and code, plus the target address of neighbour solicitations and
    /// advertisements.
    Icmpv6 {
        /// ICMPv6 type (128 echo request, 135 neighbour solicitation...).
        icmp_type: u8,
        /// ICMPv6 code.
        code: u8,
        /// Target address of an NS/NA.
        nd_target: Option<Ipv6Addr>,
    },
    /// Any other protocol, or a header too short to decode.
    Other,
}

/// What a frame carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub enum Payload {
    /// An ARP packet.
    Arp(Arp),
    /// An IPv4 or IPv6 packet.
    Ip {
        /// Source address.
        src: IpAddr,
        /// Destination address.
        dst: IpAddr,
        /// Transport protocol number (after IPv6 extension headers).
        proto: u8,
        /// Decoded transport header.
        transport: Transport,
    },
    /// A frame too short for the header its ethertype announces.
    Truncated,
    /// Any other ethertype.
    Other,
}

/// One captured Ethernet frame, decoded.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Frame {
    /// Which way it crossed the capturing interface.
    pub direction: Direction,
    /// Raw `sll_pkttype`.
    pub pkttype: u8,
    /// Destination MAC address.
    pub dst_mac: [u8; 6],
    /// Source MAC address.
    pub src_mac: [u8; 6],
    /// Ethertype (after one 802.1Q tag, if any).
    pub ethertype: u16,
    /// Length of the frame on the wire.
    pub len: usize,
    /// The decoded contents.
    pub payload: Payload,
}

impl Frame {
    /// Decodes `bytes` (a whole Ethernet frame as an `AF_PACKET`/`SOCK_RAW` socket returns
    /// it), captured with `sll_pkttype` = `pkttype`. `wire_len` is the frame's real length
    /// (it may exceed `bytes.len()` when the capture buffer truncated it).
    pub fn decode(bytes: &[u8], pkttype: u8, wire_len: usize) -> Frame {
        let mut frame = Frame {
            direction: Direction::from_pkttype(pkttype),
            pkttype,
            dst_mac: [0; 6],
            src_mac: [0; 6],
            ethertype: 0,
            len: wire_len,
            payload: Payload::Truncated,
        };
        if bytes.len() < 14 {
            return frame;
        }
        frame.dst_mac.copy_from_slice(&bytes[0..6]);
        frame.src_mac.copy_from_slice(&bytes[6..12]);
        let mut ethertype = be16(bytes, 12);
        let mut rest = &bytes[14..];
        if ethertype == 0x8100 {
            if rest.len() < 4 {
                frame.ethertype = ethertype;
                return frame;
            }
            ethertype = be16(rest, 2);
            rest = &rest[4..];
        }
        frame.ethertype = ethertype;
        frame.payload = match ethertype {
            ETHERTYPE_ARP => decode_arp(rest),
            ETHERTYPE_IPV4 => decode_ipv4(rest),
            ETHERTYPE_IPV6 => decode_ipv6(rest),
            _ => Payload::Other,
        };
        frame
    }

    /// Source IP address (IP packets) or ARP sender address.
    pub fn src_ip(&self) -> Option<IpAddr> {
        match self.payload {
            Payload::Ip { src, .. } => Some(src),
            Payload::Arp(arp) => Some(IpAddr::V4(arp.sender_ip)),
            _ => None,
        }
    }

    /// Destination IP address (IP packets) or ARP target address.
    pub fn dst_ip(&self) -> Option<IpAddr> {
        match self.payload {
            Payload::Ip { dst, .. } => Some(dst),
            Payload::Arp(arp) => Some(IpAddr::V4(arp.target_ip)),
            _ => None,
        }
    }

    /// Transport protocol number of an IP packet.
    pub fn proto(&self) -> Option<u8> {
        match self.payload {
            Payload::Ip { proto, .. } => Some(proto),
            _ => None,
        }
    }

    /// Decoded transport header of an IP packet.
    pub fn transport(&self) -> Option<Transport> {
        match self.payload {
            Payload::Ip { transport, .. } => Some(transport),
            _ => None,
        }
    }

    /// TCP/UDP source port.
    pub fn src_port(&self) -> Option<u16> {
        match self.transport()? {
            Transport::Tcp { src_port, .. } | Transport::Udp { src_port, .. } => Some(src_port),
            _ => None,
        }
    }

    /// TCP/UDP destination port.
    pub fn dst_port(&self) -> Option<u16> {
        match self.transport()? {
            Transport::Tcp { dst_port, .. } | Transport::Udp { dst_port, .. } => Some(dst_port),
            _ => None,
        }
    }

    /// ICMP or ICMPv6 type.
    pub fn icmp_type(&self) -> Option<u8> {
        match self.transport()? {
            Transport::Icmp { icmp_type, .. } | Transport::Icmpv6 { icmp_type, .. } => {
                Some(icmp_type)
            }
            _ => None,
        }
    }

    /// The ARP packet, if this is one.
    pub fn arp(&self) -> Option<Arp> {
        match self.payload {
            Payload::Arp(arp) => Some(arp),
            _ => None,
        }
    }

    /// Whether `ip` appears in this frame as IP source or destination, ARP sender or target,
    /// or neighbour-discovery target. IPv4 and v4-mapped IPv6 forms compare equal.
    pub fn involves(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        let mut hit =
            self.src_ip().map(canonical) == Some(ip) || self.dst_ip().map(canonical) == Some(ip);
        if let Some(Transport::Icmpv6 {
            nd_target: Some(t), ..
        }) = self.transport()
        {
            hit |= IpAddr::V6(t) == ip;
        }
        hit
    }

    /// Whether the frame is TCP or UDP to or from `port`.
    pub fn involves_port(&self, port: u16) -> bool {
        self.src_port() == Some(port) || self.dst_port() == Some(port)
    }

    /// Whether this is background chatter a network stack sends on its own, not caused by
    /// any test traffic: MLD queries/reports, router solicitations/advertisements, duplicate
    /// address detection (neighbour solicitation from `::`) and IGMP.
    ///
    /// Not noise: ARP requests, neighbour solicitations for an address (from a real source),
    /// neighbour advertisements, and any UDP/TCP/ICMP echo, whatever the destination
    /// (`ff02::2` included). Those are how a leak shows up.
    pub fn is_noise(&self) -> bool {
        let Payload::Ip {
            src,
            proto,
            transport,
            ..
        } = self.payload
        else {
            return false;
        };
        if proto == PROTO_IGMP {
            return true;
        }
        if let Transport::Icmpv6 { icmp_type, .. } = transport {
            return match icmp_type {
                130..=132 | 143 => true, // MLD query, report, done; MLDv2 report
                ICMPV6_ROUTER_SOLICIT | ICMPV6_ROUTER_ADVERT => true,
                ICMPV6_NEIGHBOR_SOLICIT => src == IpAddr::V6(Ipv6Addr::UNSPECIFIED), // DAD
                _ => false,
            };
        }
        false
    }
}

impl fmt::Display for Frame {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let dir = match self.direction {
            Direction::Incoming => "in ",
            Direction::Outgoing => "out",
        };
        write!(f, "{dir} ")?;
        match self.payload {
            Payload::Arp(a) => write!(
                f,
                "ARP {} {} -> {}",
                if a.op == 1 { "request" } else { "reply" },
                a.sender_ip,
                a.target_ip
            ),
            Payload::Ip {
                src,
                dst,
                proto,
                transport,
            } => match transport {
                Transport::Tcp {
                    src_port,
                    dst_port,
                    flags,
                } => write!(
                    f,
                    "TCP {src}:{src_port} -> {dst}:{dst_port} flags {flags:#04x}"
                ),
                Transport::Udp { src_port, dst_port } => {
                    write!(f, "UDP {src}:{src_port} -> {dst}:{dst_port}")
                }
                Transport::Icmp { icmp_type, code } => {
                    write!(f, "ICMP {src} -> {dst} type {icmp_type} code {code}")
                }
                Transport::Icmpv6 {
                    icmp_type,
                    code,
                    nd_target,
                } => {
                    write!(f, "ICMPv6 {src} -> {dst} type {icmp_type} code {code}")?;
                    if let Some(t) = nd_target {
                        write!(f, " target {t}")?;
                    }
                    Ok(())
                }
                Transport::Other => write!(f, "IP proto {proto} {src} -> {dst}"),
            },
            Payload::Truncated => write!(f, "truncated frame, ethertype {:#06x}", self.ethertype),
            Payload::Other => write!(f, "ethertype {:#06x}, {} bytes", self.ethertype, self.len),
        }
    }
}

fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => ip,
        },
        v4 => v4,
    }
}

fn be16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

fn ipv4_at(b: &[u8], at: usize) -> Ipv4Addr {
    Ipv4Addr::new(b[at], b[at + 1], b[at + 2], b[at + 3])
}

fn ipv6_at(b: &[u8], at: usize) -> Ipv6Addr {
    let mut octets = [0u8; 16];
    octets.copy_from_slice(&b[at..at + 16]);
    Ipv6Addr::from(octets)
}

fn decode_arp(b: &[u8]) -> Payload {
    // htype(2) ptype(2) hlen(1) plen(1) op(2) sha(6) spa(4) tha(6) tpa(4)
    if b.len() < 28 || be16(b, 2) != ETHERTYPE_IPV4 || b[4] != 6 || b[5] != 4 {
        return if b.len() < 8 {
            Payload::Truncated
        } else {
            Payload::Other
        };
    }
    Payload::Arp(Arp {
        op: be16(b, 6),
        sender_ip: ipv4_at(b, 14),
        target_ip: ipv4_at(b, 24),
    })
}

fn decode_ipv4(b: &[u8]) -> Payload {
    if b.len() < 20 || b[0] >> 4 != 4 {
        return Payload::Truncated;
    }
    let ihl = usize::from(b[0] & 0x0f) * 4;
    let proto = b[9];
    let src = IpAddr::V4(ipv4_at(b, 12));
    let dst = IpAddr::V4(ipv4_at(b, 16));
    // Only the first fragment carries the transport header.
    let frag_offset = be16(b, 6) & 0x1fff;
    let transport = if ihl < 20 || b.len() < ihl || frag_offset != 0 {
        Transport::Other
    } else {
        decode_transport(proto, &b[ihl..])
    };
    Payload::Ip {
        src,
        dst,
        proto,
        transport,
    }
}

fn decode_ipv6(b: &[u8]) -> Payload {
    if b.len() < 40 || b[0] >> 4 != 6 {
        return Payload::Truncated;
    }
    let src = IpAddr::V6(ipv6_at(b, 8));
    let dst = IpAddr::V6(ipv6_at(b, 24));
    let mut next = b[6];
    let mut rest = &b[40..];
    let mut transport_ok = true;
    // Skip extension headers: hop-by-hop (0), routing (43), fragment (44), destination (60).
    loop {
        match next {
            0 | 43 | 60 => {
                if rest.len() < 8 {
                    transport_ok = false;
                    break;
                }
                let len = (usize::from(rest[1]) + 1) * 8;
                if rest.len() < len {
                    transport_ok = false;
                    break;
                }
                next = rest[0];
                rest = &rest[len..];
            }
            44 => {
                if rest.len() < 8 {
                    transport_ok = false;
                    break;
                }
                let offset = be16(rest, 2) >> 3;
                next = rest[0];
                rest = &rest[8..];
                if offset != 0 {
                    transport_ok = false;
                    break;
                }
            }
            _ => break,
        }
    }
    let transport = if transport_ok {
        decode_transport(next, rest)
    } else {
        Transport::Other
    };
    Payload::Ip {
        src,
        dst,
        proto: next,
        transport,
    }
}

fn decode_transport(proto: u8, b: &[u8]) -> Transport {
    match proto {
        PROTO_TCP if b.len() >= 14 => Transport::Tcp {
            src_port: be16(b, 0),
            dst_port: be16(b, 2),
            flags: b[13],
        },
        PROTO_UDP if b.len() >= 8 => Transport::Udp {
            src_port: be16(b, 0),
            dst_port: be16(b, 2),
        },
        PROTO_ICMP if b.len() >= 2 => Transport::Icmp {
            icmp_type: b[0],
            code: b[1],
        },
        PROTO_ICMPV6 if b.len() >= 2 => {
            let icmp_type = b[0];
            let nd_target = if (icmp_type == ICMPV6_NEIGHBOR_SOLICIT
                || icmp_type == ICMPV6_NEIGHBOR_ADVERT)
                && b.len() >= 24
            {
                Some(ipv6_at(b, 8))
            } else {
                None
            };
            Transport::Icmpv6 {
                icmp_type,
                code: b[1],
                nd_target,
            }
        }
        _ => Transport::Other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOST_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 1];
    const PEER_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 2];
    const PKT_HOST: u8 = libc::PACKET_HOST;
    const PKT_OUT: u8 = libc::PACKET_OUTGOING;

    fn eth(dst: [u8; 6], ethertype: u16, payload: &[u8]) -> Vec<u8> {
        let mut f = dst.to_vec();
        f.extend_from_slice(&HOST_MAC);
        f.extend_from_slice(&ethertype.to_be_bytes());
        f.extend_from_slice(payload);
        f
    }

    fn ipv4(proto: u8, src: [u8; 4], dst: [u8; 4], l4: &[u8]) -> Vec<u8> {
        let mut p = vec![0x45, 0, 0, 0, 0, 0, 0x40, 0, 64, proto, 0, 0];
        p.extend_from_slice(&src);
        p.extend_from_slice(&dst);
        p.extend_from_slice(l4);
        p
    }

    fn ipv6(next: u8, src: Ipv6Addr, dst: Ipv6Addr, rest: &[u8]) -> Vec<u8> {
        let mut p = vec![0x60, 0, 0, 0];
        p.extend_from_slice(&(rest.len() as u16).to_be_bytes());
        p.extend_from_slice(&[next, 64]);
        p.extend_from_slice(&src.octets());
        p.extend_from_slice(&dst.octets());
        p.extend_from_slice(rest);
        p
    }

    fn decode(bytes: &[u8], pkttype: u8) -> Frame {
        Frame::decode(bytes, pkttype, bytes.len())
    }

    #[test]
    fn tcp_syn_over_ipv4() {
        let mut tcp = vec![0u8; 20];
        tcp[0..2].copy_from_slice(&40000u16.to_be_bytes());
        tcp[2..4].copy_from_slice(&7000u16.to_be_bytes());
        tcp[13] = 0x02;
        let bytes = eth(
            PEER_MAC,
            ETHERTYPE_IPV4,
            &ipv4(PROTO_TCP, [10, 20, 0, 1], [10, 99, 7, 2], &tcp),
        );
        let f = decode(&bytes, PKT_HOST);
        assert_eq!(f.direction, Direction::Incoming);
        assert_eq!(f.ethertype, ETHERTYPE_IPV4);
        assert_eq!(f.src_mac, HOST_MAC);
        assert_eq!(f.dst_mac, PEER_MAC);
        assert_eq!(f.src_ip(), Some("10.20.0.1".parse().unwrap()));
        assert_eq!(f.dst_ip(), Some("10.99.7.2".parse().unwrap()));
        assert_eq!(f.proto(), Some(PROTO_TCP));
        assert_eq!(f.src_port(), Some(40000));
        assert_eq!(f.dst_port(), Some(7000));
        assert_eq!(
            f.transport(),
            Some(Transport::Tcp {
                src_port: 40000,
                dst_port: 7000,
                flags: 0x02
            })
        );
        assert!(f.involves("10.99.7.2".parse().unwrap()));
        assert!(f.involves("::ffff:10.99.7.2".parse().unwrap()));
        assert!(!f.involves("10.99.7.3".parse().unwrap()));
        assert!(f.involves_port(7000));
        assert!(!f.is_noise());
        assert!(
            f.to_string()
                .contains("TCP 10.20.0.1:40000 -> 10.99.7.2:7000")
        );
    }

    #[test]
    fn udp_with_ipv4_options_and_outgoing_direction() {
        let mut p = ipv4(PROTO_UDP, [10, 10, 0, 2], [10, 10, 0, 1], &[]);
        p[0] = 0x46; // IHL 6: one 4-byte option word
        p.extend_from_slice(&[1, 1, 1, 0]);
        p.extend_from_slice(&[0x1b, 0x5a, 0x94, 0x5f, 0, 8, 0, 0]);
        let f = decode(&eth(HOST_MAC, ETHERTYPE_IPV4, &p), PKT_OUT);
        assert_eq!(f.direction, Direction::Outgoing);
        assert_eq!(f.src_port(), Some(7002));
        assert_eq!(f.dst_port(), Some(0x945f));
    }

    #[test]
    fn later_ipv4_fragment_has_no_ports() {
        let mut p = ipv4(
            PROTO_UDP,
            [10, 0, 0, 1],
            [10, 0, 0, 2],
            &[0, 53, 0, 53, 0, 8, 0, 0],
        );
        p[6] = 0x00;
        p[7] = 0x10; // fragment offset 16 (x8 bytes)
        let f = decode(&eth(PEER_MAC, ETHERTYPE_IPV4, &p), PKT_HOST);
        assert_eq!(f.proto(), Some(PROTO_UDP));
        assert_eq!(f.transport(), Some(Transport::Other));
        assert_eq!(f.dst_port(), None);
    }

    #[test]
    fn arp_request_is_decoded_and_not_noise() {
        let mut arp = vec![0, 1, 0x08, 0x00, 6, 4, 0, 1];
        arp.extend_from_slice(&HOST_MAC);
        arp.extend_from_slice(&[10, 20, 0, 1]);
        arp.extend_from_slice(&[0; 6]);
        arp.extend_from_slice(&[10, 99, 7, 2]);
        let f = decode(&eth([0xff; 6], ETHERTYPE_ARP, &arp), libc::PACKET_BROADCAST);
        assert_eq!(f.direction, Direction::Incoming);
        assert_eq!(
            f.arp(),
            Some(Arp {
                op: 1,
                sender_ip: Ipv4Addr::new(10, 20, 0, 1),
                target_ip: Ipv4Addr::new(10, 99, 7, 2),
            })
        );
        assert!(f.involves("10.99.7.2".parse().unwrap()));
        assert!(!f.is_noise());
    }

    #[test]
    fn icmp_echo() {
        let p = ipv4(
            PROTO_ICMP,
            [10, 0, 0, 1],
            [10, 0, 0, 2],
            &[8, 0, 0, 0, 0, 1, 0, 1],
        );
        let f = decode(&eth(PEER_MAC, ETHERTYPE_IPV4, &p), PKT_HOST);
        assert_eq!(f.icmp_type(), Some(8));
        assert_eq!(f.src_port(), None);
    }

    #[test]
    fn ipv6_udp_to_link_local() {
        let src: Ipv6Addr = "fe80::4".parse().unwrap();
        let dst: Ipv6Addr = "fe80::3".parse().unwrap();
        let udp = [0x9c, 0x40, 0, 9, 0, 9, 0, 0, b'x'];
        let f = decode(
            &eth(PEER_MAC, ETHERTYPE_IPV6, &ipv6(PROTO_UDP, src, dst, &udp)),
            PKT_HOST,
        );
        assert_eq!(f.src_ip(), Some(IpAddr::V6(src)));
        assert_eq!(f.dst_ip(), Some(IpAddr::V6(dst)));
        assert_eq!(f.dst_port(), Some(9));
        assert_eq!(f.src_port(), Some(40000));
    }

    #[test]
    fn neighbour_solicitation_for_a_destination_is_not_noise() {
        let target: Ipv6Addr = "fd99:7::2".parse().unwrap();
        let mut ns = vec![ICMPV6_NEIGHBOR_SOLICIT, 0, 0, 0, 0, 0, 0, 0];
        ns.extend_from_slice(&target.octets());
        let bytes = eth(
            [0x33, 0x33, 0xff, 0, 0, 2],
            ETHERTYPE_IPV6,
            &ipv6(
                PROTO_ICMPV6,
                "fd20::1".parse().unwrap(),
                "ff02::1:ff00:2".parse().unwrap(),
                &ns,
            ),
        );
        let f = decode(&bytes, libc::PACKET_MULTICAST);
        assert_eq!(
            f.transport(),
            Some(Transport::Icmpv6 {
                icmp_type: ICMPV6_NEIGHBOR_SOLICIT,
                code: 0,
                nd_target: Some(target),
            })
        );
        assert!(f.involves(IpAddr::V6(target)));
        assert!(!f.is_noise());
    }

    #[test]
    fn dad_solicitation_is_noise() {
        let mut ns = vec![ICMPV6_NEIGHBOR_SOLICIT, 0, 0, 0, 0, 0, 0, 0];
        ns.extend_from_slice(&"fe80::1".parse::<Ipv6Addr>().unwrap().octets());
        let p = ipv6(
            PROTO_ICMPV6,
            Ipv6Addr::UNSPECIFIED,
            "ff02::1:ff00:1".parse().unwrap(),
            &ns,
        );
        assert!(decode(&eth(PEER_MAC, ETHERTYPE_IPV6, &p), PKT_HOST).is_noise());
    }

    #[test]
    fn mld_report_behind_hop_by_hop_is_noise() {
        // Hop-by-hop header (router alert), then an MLDv2 report.
        let mut rest = vec![PROTO_ICMPV6, 0, 5, 2, 0, 0, 1, 0];
        rest.extend_from_slice(&[143, 0, 0, 0, 0, 0, 0, 0]);
        let p = ipv6(
            0,
            "fe80::1".parse().unwrap(),
            "ff02::16".parse().unwrap(),
            &rest,
        );
        let f = decode(&eth(PEER_MAC, ETHERTYPE_IPV6, &p), PKT_HOST);
        assert_eq!(f.proto(), Some(PROTO_ICMPV6));
        assert_eq!(f.icmp_type(), Some(143));
        assert!(f.is_noise());
    }

    #[test]
    fn router_solicitation_and_igmp_are_noise() {
        let rs = ipv6(
            PROTO_ICMPV6,
            "fe80::1".parse().unwrap(),
            "ff02::2".parse().unwrap(),
            &[ICMPV6_ROUTER_SOLICIT, 0, 0, 0, 0, 0, 0, 0],
        );
        assert!(decode(&eth(PEER_MAC, ETHERTYPE_IPV6, &rs), PKT_HOST).is_noise());
        let igmp = ipv4(PROTO_IGMP, [10, 0, 0, 1], [224, 0, 0, 22], &[0x22, 0, 0, 0]);
        assert!(decode(&eth(PEER_MAC, ETHERTYPE_IPV4, &igmp), PKT_HOST).is_noise());
    }

    #[test]
    fn udp_to_all_routers_is_not_noise() {
        let p = ipv6(
            PROTO_UDP,
            "fe80::4".parse().unwrap(),
            "ff02::2".parse().unwrap(),
            &[0x9c, 0x40, 0, 9, 0, 8, 0, 0],
        );
        assert!(!decode(&eth(PEER_MAC, ETHERTYPE_IPV6, &p), PKT_HOST).is_noise());
    }

    #[test]
    fn echo_to_all_nodes_is_not_noise() {
        let p = ipv6(
            PROTO_ICMPV6,
            "fe80::4".parse().unwrap(),
            "ff02::1".parse().unwrap(),
            &[128, 0, 0, 0, 0, 1, 0, 1],
        );
        assert!(!decode(&eth(PEER_MAC, ETHERTYPE_IPV6, &p), PKT_HOST).is_noise());
    }

    #[test]
    fn vlan_tag_is_skipped() {
        let inner = ipv4(
            PROTO_UDP,
            [1, 1, 1, 1],
            [2, 2, 2, 2],
            &[0, 1, 0, 2, 0, 8, 0, 0],
        );
        let mut payload = vec![0, 5];
        payload.extend_from_slice(&ETHERTYPE_IPV4.to_be_bytes());
        payload.extend_from_slice(&inner);
        let f = decode(&eth(PEER_MAC, 0x8100, &payload), PKT_HOST);
        assert_eq!(f.ethertype, ETHERTYPE_IPV4);
        assert_eq!(f.dst_port(), Some(2));
    }

    #[test]
    fn every_truncation_of_every_sample_decodes_without_panic() {
        let mut tcp = vec![0u8; 20];
        tcp[13] = 0x12;
        let mut ns = vec![ICMPV6_NEIGHBOR_SOLICIT, 0, 0, 0, 0, 0, 0, 0];
        ns.extend_from_slice(&[0xfd; 16]);
        let mut hbh = vec![PROTO_ICMPV6, 0, 5, 2, 0, 0, 1, 0];
        hbh.extend_from_slice(&[143, 0, 0, 0, 0, 0, 0, 0]);
        let mut frag = vec![PROTO_UDP, 0, 0, 0, 0, 0, 0, 1];
        frag.extend_from_slice(&[0, 1, 0, 2, 0, 8, 0, 0]);
        let mut arp = vec![0, 1, 8, 0, 6, 4, 0, 2];
        arp.extend_from_slice(&[0; 20]);
        let v6 = |next, rest: &[u8]| ipv6(next, Ipv6Addr::LOCALHOST, Ipv6Addr::LOCALHOST, rest);
        let samples = [
            eth(
                PEER_MAC,
                ETHERTYPE_IPV4,
                &ipv4(PROTO_TCP, [1; 4], [2; 4], &tcp),
            ),
            eth(PEER_MAC, ETHERTYPE_IPV6, &v6(PROTO_ICMPV6, &ns)),
            eth(PEER_MAC, ETHERTYPE_IPV6, &v6(0, &hbh)),
            eth(PEER_MAC, ETHERTYPE_IPV6, &v6(44, &frag)),
            eth(PEER_MAC, ETHERTYPE_ARP, &arp),
            eth(PEER_MAC, 0x8100, &[0, 1, 0x86, 0xdd]),
        ];
        for sample in &samples {
            for n in 0..=sample.len() {
                let f = Frame::decode(&sample[..n], PKT_HOST, sample.len());
                // Decoding and every accessor must cope with any prefix.
                let _ = (
                    f.src_ip(),
                    f.dst_port(),
                    f.icmp_type(),
                    f.is_noise(),
                    f.to_string(),
                );
            }
        }
        // The complete fragment sample: first fragment, so ports are decoded.
        let f = Frame::decode(&samples[3], PKT_HOST, samples[3].len());
        assert_eq!(f.dst_port(), Some(2));
    }

    #[test]
    fn short_and_unknown_frames_are_kept() {
        let f = decode(&[1, 2, 3], PKT_HOST);
        assert_eq!(f.payload, Payload::Truncated);
        assert!(!f.is_noise());
        let f = decode(&eth(PEER_MAC, ETHERTYPE_IPV4, &[0x45, 0]), PKT_HOST);
        assert_eq!(f.payload, Payload::Truncated);
        let f = decode(&eth(PEER_MAC, 0x88cc, &[0; 30]), PKT_HOST);
        assert_eq!(f.payload, Payload::Other);
        assert_eq!(f.ethertype, 0x88cc);
        assert_eq!(f.src_ip(), None);
    }
}
