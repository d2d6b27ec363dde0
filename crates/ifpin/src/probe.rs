//! Probing a peer through one interface: "can this card reach that peer over the backplane,
//! and only over the backplane?"
//!
//! A [`ProbeTarget`] is parsed from a URL without any syscall (`tcp://HOST:PORT`,
//! `udp://HOST:PORT`, IPv6 in brackets with an optional `%scope`:
//! `tcp://[fe80::1%ctl0]:7000`). [`probe`] resolves it against the pinned interface (a scope
//! naming another interface is refused before anything is sent), then connects (TCP) or
//! sends one datagram and waits for a reply (UDP) over a socket from [`crate::net`], and
//! reports what happened on the wire as a [`ProbeOutcome`]. Failures that are answers
//! (refused, no route, interface down, no reply) are outcomes; failures to even try (bad
//! scope, permission, unexpected kernel errors) are errors.

use std::fmt;
use std::io::Read;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV6};
use std::str::FromStr;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::error::PinError;
use crate::interface::{Interface, InterfaceError, InterfaceSpec};
use crate::net::{PinnedTcpStream, PinnedUdpSocket};

/// The transport a probe uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    /// `tcp://`: a TCP connect.
    Tcp,
    /// `udp://`: one datagram, then wait for one back.
    Udp,
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
        })
    }
}

/// A parsed probe URL. Parsing makes no syscall; the scope is resolved by [`probe`].
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ProbeTarget {
    /// TCP or UDP.
    pub protocol: Protocol,
    /// The peer's address (an IP literal: names are not resolved).
    pub ip: IpAddr,
    /// The peer's port (not 0).
    pub port: u16,
    /// The `%scope` of an IPv6 address, if one was given.
    pub scope: Option<InterfaceSpec>,
}

/// Why a probe URL could not be parsed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum UrlError {
    /// No `scheme://`, or an unknown scheme.
    #[error(
        "{input:?}: unknown scheme; write tcp://HOST:PORT or udp://HOST:PORT (IPv6 as tcp://[ADDR]:PORT)"
    )]
    Scheme {
        /// The URL as given.
        input: String,
    },
    /// No port, or not a number from 1 to 65535.
    #[error("{input:?}: the port must be a number from 1 to 65535, as in tcp://192.0.2.1:7000")]
    Port {
        /// The URL as given.
        input: String,
    },
    /// The host is not an IP address.
    #[error(
        "{input:?}: {host:?} is not an IP address; ifpin does not resolve names, because the DNS \
         lookup would not travel through the pinned interface (give the peer's address)"
    )]
    Host {
        /// The URL as given.
        input: String,
        /// The host part.
        host: String,
    },
    /// An IPv6 address without brackets, or a broken bracket.
    #[error("{input:?}: put IPv6 addresses in brackets, as in tcp://[fe80::1%ctl0]:7000")]
    Brackets {
        /// The URL as given.
        input: String,
    },
    /// A scope on an IPv4 address, or an invalid scope.
    #[error("{input:?}: bad scope {scope:?}: {reason}")]
    Scope {
        /// The URL as given.
        input: String,
        /// The scope as given.
        scope: String,
        /// What is wrong with it.
        reason: String,
    },
    /// Something after the port (a path, a query).
    #[error("{input:?}: nothing may follow the port (no path or query)")]
    Trailing {
        /// The URL as given.
        input: String,
    },
}

impl FromStr for ProbeTarget {
    type Err = UrlError;

    fn from_str(input: &str) -> Result<Self, UrlError> {
        let owned = || input.to_owned();
        let (scheme, rest) = input
            .split_once("://")
            .ok_or(UrlError::Scheme { input: owned() })?;
        let protocol = match scheme.to_ascii_lowercase().as_str() {
            "tcp" => Protocol::Tcp,
            "udp" => Protocol::Udp,
            _ => return Err(UrlError::Scheme { input: owned() }),
        };
        let rest = rest.strip_suffix('/').unwrap_or(rest);
        if rest.contains(['/', '?', '#']) {
            return Err(UrlError::Trailing { input: owned() });
        }
        let (host, port) = if let Some(bracketed) = rest.strip_prefix('[') {
            let (host, after) = bracketed
                .split_once(']')
                .ok_or(UrlError::Brackets { input: owned() })?;
            let port = after
                .strip_prefix(':')
                .ok_or(UrlError::Port { input: owned() })?;
            (host, port)
        } else {
            let (host, port) = rest
                .rsplit_once(':')
                .ok_or(UrlError::Port { input: owned() })?;
            if host.contains(':') || host.contains(']') {
                return Err(UrlError::Brackets { input: owned() });
            }
            (host, port)
        };
        let port: u16 = match port.parse() {
            Ok(p) if p != 0 && port.bytes().all(|b| b.is_ascii_digit()) => p,
            _ => return Err(UrlError::Port { input: owned() }),
        };
        let (addr, scope) = match host.split_once('%') {
            Some((addr, scope)) => (addr, Some(scope)),
            None => (host, None),
        };
        let ip: IpAddr = if rest.starts_with('[') {
            addr.parse::<Ipv6Addr>()
                .map(IpAddr::V6)
                .map_err(|_| UrlError::Host {
                    input: owned(),
                    host: addr.to_owned(),
                })?
        } else {
            addr.parse::<Ipv4Addr>()
                .map(IpAddr::V4)
                .map_err(|_| UrlError::Host {
                    input: owned(),
                    host: addr.to_owned(),
                })?
        };
        let scope = match scope {
            None => None,
            Some(scope) if ip.is_ipv4() => {
                return Err(UrlError::Scope {
                    input: owned(),
                    scope: scope.to_owned(),
                    reason: "only IPv6 addresses carry a scope".to_owned(),
                });
            }
            Some(scope) => Some(
                scope
                    .parse::<InterfaceSpec>()
                    .map_err(|err| UrlError::Scope {
                        input: owned(),
                        scope: scope.to_owned(),
                        reason: err.to_string(),
                    })?,
            ),
        };
        Ok(ProbeTarget {
            protocol,
            ip,
            port,
            scope,
        })
    }
}

impl fmt::Display for ProbeTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.ip, &self.scope) {
            (IpAddr::V4(ip), _) => write!(f, "{}://{ip}:{}", self.protocol, self.port),
            (IpAddr::V6(ip), None) => write!(f, "{}://[{ip}]:{}", self.protocol, self.port),
            (IpAddr::V6(ip), Some(InterfaceSpec::Name(name))) => {
                write!(f, "{}://[{ip}%{name}]:{}", self.protocol, self.port)
            }
            (IpAddr::V6(ip), Some(InterfaceSpec::Index(index))) => {
                write!(f, "{}://[{ip}%{index}]:{}", self.protocol, self.port)
            }
        }
    }
}

impl ProbeTarget {
    /// The socket address to use on a socket pinned to `interface`.
    ///
    /// A `%scope` is resolved in the calling thread's network namespace; if it names another
    /// interface than `interface`, the result is [`PinError::ForeignScope`], before anything
    /// is sent. Without a scope, link-local addresses get `interface`'s index.
    pub fn resolve(&self, interface: &Interface) -> Result<SocketAddr, PinError> {
        let scope_id = match &self.scope {
            None => 0,
            Some(spec) => {
                let scoped = spec.resolve().map_err(|err| match err {
                    InterfaceError::NotFound { spec } => InterfaceError::NotFound {
                        spec: format!("{spec} (the %scope of {self})"),
                    },
                    other => other,
                })?;
                scoped.index().get()
            }
        };
        let addr = match self.ip {
            IpAddr::V4(ip) => SocketAddr::from((ip, self.port)),
            IpAddr::V6(ip) => SocketAddr::V6(SocketAddrV6::new(ip, self.port, 0, scope_id)),
        };
        crate::net::pinned_address(interface, addr)
    }
}

/// What a probe saw on the wire.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ProbeOutcome {
    /// TCP: the connection was established through the interface.
    Connected,
    /// UDP: a reply came back through the interface.
    ReplyReceived,
    /// UDP: no reply within the timeout (the peer may not answer, or the datagram was lost).
    NoReply,
    /// TCP: no answer within the timeout.
    TimedOut,
    /// The peer (or its host) refused: nothing listens on that port there, through this
    /// interface.
    Refused,
    /// The kernel has no way to the peer through this interface.
    NoRoute,
    /// The interface is down.
    InterfaceDown,
    /// The interface no longer exists.
    InterfaceGone,
    /// The interface was renamed or its index taken over during the probe.
    InterfaceChanged,
}

impl ProbeOutcome {
    /// Whether the peer was reached.
    pub fn reachable(self) -> bool {
        matches!(self, ProbeOutcome::Connected | ProbeOutcome::ReplyReceived)
    }

    /// Short text for people.
    pub fn as_str(self) -> &'static str {
        match self {
            ProbeOutcome::Connected => "connected",
            ProbeOutcome::ReplyReceived => "reply received",
            ProbeOutcome::NoReply => "no reply",
            ProbeOutcome::TimedOut => "timed out",
            ProbeOutcome::Refused => "refused",
            ProbeOutcome::NoRoute => "no route on that interface",
            ProbeOutcome::InterfaceDown => "interface down",
            ProbeOutcome::InterfaceGone => "interface gone",
            ProbeOutcome::InterfaceChanged => "interface changed",
        }
    }
}

impl fmt::Display for ProbeOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What [`probe`] found.
#[derive(Clone, Debug, Serialize)]
pub struct ProbeReport {
    /// The URL probed, as parsed.
    pub target: String,
    /// TCP or UDP.
    pub protocol: Protocol,
    /// The interface the socket was pinned to.
    pub interface: Interface,
    /// The address tried, with the scope actually used.
    pub destination: SocketAddr,
    /// The socket's local address, when it got one.
    pub local: Option<SocketAddr>,
    /// What happened.
    pub outcome: ProbeOutcome,
    /// Whether the peer was reached.
    pub reachable: bool,
    /// The first bytes the peer sent back (UDP reply, or a TCP banner within a short wait).
    pub reply: Option<String>,
    /// How long the connect or the round trip took.
    #[serde(rename = "elapsed_ms", serialize_with = "millis")]
    pub elapsed: Duration,
    /// The explanation, for outcomes that are failures.
    pub detail: Option<String>,
}

fn millis<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64((d.as_secs_f64() * 1e6).round() / 1e3)
}

/// The datagram a UDP probe sends.
pub const UDP_PAYLOAD: &[u8] = b"ifpin probe\n";

/// How long a TCP probe waits, once connected, for the peer to speak first.
pub const BANNER_WAIT: Duration = Duration::from_millis(300);

/// Probes `target` through `interface`, waiting at most `timeout` for an answer.
///
/// Wire answers (refused, no route, interface down or gone, no reply) come back as an
/// [`ProbeReport`] with the matching [`ProbeOutcome`]; a bad `%scope`, a missing privilege or
/// an unexpected kernel error is an `Err`.
///
/// ```
/// use std::time::Duration;
/// use ifpin::probe::{ProbeOutcome, ProbeTarget};
/// use ifpin::Interface;
///
/// let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
/// let target: ProbeTarget = format!("tcp://{}", listener.local_addr()?).parse()?;
/// let lo = Interface::resolve("lo")?;
/// let report = ifpin::probe::probe(&lo, &target, Duration::from_secs(2))?;
/// assert_eq!(report.outcome, ProbeOutcome::Connected);
/// assert!(report.reachable);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn probe(
    interface: &Interface,
    target: &ProbeTarget,
    timeout: Duration,
) -> Result<ProbeReport, PinError> {
    let destination = target.resolve(interface)?;
    let start = Instant::now();
    let mut local = None;
    let mut reply = None;
    let attempt = match target.protocol {
        Protocol::Tcp => {
            PinnedTcpStream::connect_timeout(interface, destination, timeout).map(|mut stream| {
                local = stream.local_addr().ok();
                let elapsed = start.elapsed();
                reply = read_banner(&mut stream);
                (ProbeOutcome::Connected, elapsed)
            })
        }
        Protocol::Udp => udp_round_trip(interface, destination, timeout, &mut local).map(|text| {
            reply = Some(text);
            (ProbeOutcome::ReplyReceived, start.elapsed())
        }),
    };
    let (outcome, elapsed, detail) = match attempt {
        Ok((outcome, elapsed)) => (outcome, elapsed, None),
        Err(err) => {
            let outcome = outcome_of(&err, target.protocol).ok_or(err)?;
            let detail = describe(outcome, target.protocol, interface, destination);
            (outcome, start.elapsed(), Some(detail))
        }
    };
    Ok(ProbeReport {
        target: target.to_string(),
        protocol: target.protocol,
        interface: interface.clone(),
        destination,
        local,
        outcome,
        reachable: outcome.reachable(),
        reply,
        elapsed,
        detail,
    })
}

fn udp_round_trip(
    interface: &Interface,
    destination: SocketAddr,
    timeout: Duration,
    local: &mut Option<SocketAddr>,
) -> Result<String, PinError> {
    let any: SocketAddr = match destination {
        SocketAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
        SocketAddr::V6(_) => (Ipv6Addr::UNSPECIFIED, 0).into(),
    };
    let socket = PinnedUdpSocket::bind(interface, any)?;
    // Connected, so that ICMP errors (port or host unreachable) come back to this socket.
    socket.connect(destination)?;
    *local = socket.local_addr().ok();
    socket
        .set_read_timeout(Some(timeout.max(Duration::from_millis(1))))
        .map_err(|err| socket.explain(crate::Op::Configure, err))?;
    socket.send(UDP_PAYLOAD)?;
    let mut buf = [0u8; 512];
    let n = socket.recv(&mut buf)?;
    Ok(printable(&buf[..n]))
}

fn read_banner(stream: &mut PinnedTcpStream) -> Option<String> {
    stream.set_read_timeout(Some(BANNER_WAIT)).ok()?;
    let mut buf = [0u8; 512];
    match stream.read(&mut buf) {
        Ok(n) if n > 0 => Some(printable(&buf[..n])),
        _ => None,
    }
}

fn printable(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    let text: String = text
        .trim()
        .chars()
        .map(|c| if c.is_control() { '.' } else { c })
        .take(200)
        .collect();
    text
}

/// The outcome a wire-level error stands for; `None` for errors that are not answers.
fn outcome_of(err: &PinError, protocol: Protocol) -> Option<ProbeOutcome> {
    Some(match err {
        PinError::Refused { .. } => ProbeOutcome::Refused,
        PinError::NoRoute { .. } => ProbeOutcome::NoRoute,
        PinError::InterfaceDown { .. } => ProbeOutcome::InterfaceDown,
        PinError::InterfaceGone { .. } => ProbeOutcome::InterfaceGone,
        PinError::InterfaceChanged { .. } => ProbeOutcome::InterfaceChanged,
        PinError::TimedOut { .. } => match protocol {
            Protocol::Tcp => ProbeOutcome::TimedOut,
            Protocol::Udp => ProbeOutcome::NoReply,
        },
        _ => return None,
    })
}

fn describe(
    outcome: ProbeOutcome,
    protocol: Protocol,
    interface: &Interface,
    destination: SocketAddr,
) -> String {
    let name = interface.name();
    match outcome {
        ProbeOutcome::Connected | ProbeOutcome::ReplyReceived => String::new(),
        ProbeOutcome::NoReply => format!(
            "the datagram went out through {interface} but nothing came back: the peer may not \
             answer on that port, or (IPv4) no neighbour answered ARP on {name}"
        ),
        ProbeOutcome::TimedOut => format!(
            "no answer from {destination} through {interface}: the peer is silent or filtered"
        ),
        ProbeOutcome::Refused => match protocol {
            Protocol::Tcp => format!(
                "{destination} answered through {interface} with a reset: nothing listens on that \
                 port, or the listener only accepts on another interface"
            ),
            Protocol::Udp => format!(
                "{destination} answered through {interface} with port unreachable: nothing \
                 listens on that port there"
            ),
        },
        ProbeOutcome::NoRoute => format!(
            "the kernel has no way to {destination} through {interface} (no route via {name}, or \
             no neighbour answered on the link); it did not use another interface"
        ),
        ProbeOutcome::InterfaceDown => {
            format!("{interface} is down: bring it up with `ip link set {name} up`")
        }
        ProbeOutcome::InterfaceGone => format!("{interface} no longer exists"),
        ProbeOutcome::InterfaceChanged => {
            format!("{interface} was renamed or its index now belongs to another device")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> ProbeTarget {
        s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    #[test]
    fn parses_ipv4_and_ipv6() {
        let t = parse("tcp://192.0.2.1:7000");
        assert_eq!(t.protocol, Protocol::Tcp);
        assert_eq!(t.ip, IpAddr::from([192, 0, 2, 1]));
        assert_eq!(t.port, 7000);
        assert_eq!(t.scope, None);

        let t = parse("UDP://[2001:db8::1]:53/");
        assert_eq!(t.protocol, Protocol::Udp);
        assert_eq!(t.ip, "2001:db8::1".parse::<IpAddr>().unwrap());
        assert_eq!(t.port, 53);
        assert_eq!(t.to_string(), "udp://[2001:db8::1]:53");
    }

    #[test]
    fn parses_scopes_by_name_and_index() {
        let t = parse("tcp://[fe80::1%ctl0]:7000");
        assert_eq!(t.scope, Some("ctl0".parse().unwrap()));
        assert_eq!(t.to_string(), "tcp://[fe80::1%ctl0]:7000");
        let t = parse("udp://[fe80::1%3]:7000");
        assert_eq!(t.scope, Some("3".parse().unwrap()));
        assert_eq!(t.to_string(), "udp://[fe80::1%3]:7000");
    }

    #[test]
    fn rejects_bad_urls_naming_the_input() {
        type Check = fn(&UrlError) -> bool;
        let cases: &[(&str, Check)] = &[
            ("http://192.0.2.1:80", |e| {
                matches!(e, UrlError::Scheme { .. })
            }),
            ("192.0.2.1:80", |e| matches!(e, UrlError::Scheme { .. })),
            ("tcp://192.0.2.1", |e| matches!(e, UrlError::Port { .. })),
            ("tcp://192.0.2.1:0", |e| matches!(e, UrlError::Port { .. })),
            ("tcp://192.0.2.1:65536", |e| {
                matches!(e, UrlError::Port { .. })
            }),
            ("tcp://192.0.2.1:+80", |e| {
                matches!(e, UrlError::Port { .. })
            }),
            ("tcp://192.0.2.1:", |e| matches!(e, UrlError::Port { .. })),
            ("tcp://example.com:80", |e| {
                matches!(e, UrlError::Host { .. })
            }),
            ("tcp://fe80::1:80", |e| {
                matches!(e, UrlError::Brackets { .. })
            }),
            ("tcp://[fe80::1:80", |e| {
                matches!(e, UrlError::Brackets { .. })
            }),
            ("tcp://[fe80::1]80", |e| matches!(e, UrlError::Port { .. })),
            ("tcp://[192.0.2.1]:80", |e| {
                matches!(e, UrlError::Host { .. })
            }),
            ("tcp://192.0.2.1%ctl0:80", |e| {
                matches!(e, UrlError::Scope { .. })
            }),
            ("tcp://[fe80::1%]:80", |e| {
                matches!(e, UrlError::Scope { .. })
            }),
            (
                "tcp://[fe80::1%a234567890123456]:80",
                |e| matches!(e, UrlError::Scope { reason, .. } if reason.contains("15 bytes")),
            ),
            ("tcp://192.0.2.1:80/path", |e| {
                matches!(e, UrlError::Trailing { .. })
            }),
        ];
        for (input, check) in cases {
            let err = input.parse::<ProbeTarget>().unwrap_err();
            assert!(check(&err), "{input}: {err:?}");
            assert!(err.to_string().contains(input), "{input}: {err}");
        }
    }

    #[test]
    fn a_scope_naming_another_interface_is_refused() {
        let lo = Interface::loopback().unwrap();
        let other = lo.index().get() + 1000;
        let t = parse(&format!("tcp://[fe80::1%{other}]:7"));
        // That index does not exist here: an unknown-interface error naming the scope.
        let err = t.resolve(&lo).unwrap_err();
        assert!(matches!(err, PinError::Interface(_)), "{err:?}");
        assert!(err.to_string().contains("%scope"), "{err}");
        // A scope naming the pinned interface is fine and kept.
        let t = parse("tcp://[fe80::1%lo]:7");
        match t.resolve(&lo).unwrap() {
            SocketAddr::V6(v6) => assert_eq!(v6.scope_id(), lo.index().get()),
            other => panic!("{other}"),
        }
    }

    #[test]
    fn outcomes_map_from_errors() {
        let lo = Interface::loopback().unwrap();
        let refused = PinError::Refused {
            interface: lo.clone(),
            destination: None,
        };
        assert_eq!(
            outcome_of(&refused, Protocol::Tcp),
            Some(ProbeOutcome::Refused)
        );
        let timeout = PinError::TimedOut {
            interface: lo.clone(),
            op: crate::Op::Recv,
            destination: None,
            after: Duration::from_secs(1),
        };
        assert_eq!(
            outcome_of(&timeout, Protocol::Udp),
            Some(ProbeOutcome::NoReply)
        );
        assert_eq!(
            outcome_of(&timeout, Protocol::Tcp),
            Some(ProbeOutcome::TimedOut)
        );
        let scope = PinError::ForeignScope {
            interface: lo,
            address: Ipv6Addr::LOCALHOST,
            scope: 9,
            scope_name: None,
        };
        assert_eq!(outcome_of(&scope, Protocol::Tcp), None);
    }

    #[test]
    fn probes_loopback_tcp_and_udp() {
        use std::io::Write;
        use std::net::{TcpListener, UdpSocket};
        let lo = Interface::loopback().unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = std::thread::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            s.write_all(b"hello\n").unwrap();
        });
        let report = probe(
            &lo,
            &parse(&format!("tcp://127.0.0.1:{port}")),
            Duration::from_secs(2),
        )
        .unwrap();
        server.join().unwrap();
        assert_eq!(report.outcome, ProbeOutcome::Connected);
        assert_eq!(report.reply.as_deref(), Some("hello"));
        assert!(report.reachable);

        let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
        let port = udp.local_addr().unwrap().port();
        let echo = std::thread::spawn(move || {
            let mut buf = [0u8; 64];
            let (n, from) = udp.recv_from(&mut buf).unwrap();
            assert_eq!(&buf[..n], UDP_PAYLOAD);
            udp.send_to(b"lo-peer", from).unwrap();
        });
        let report = probe(
            &lo,
            &parse(&format!("udp://127.0.0.1:{port}")),
            Duration::from_secs(2),
        )
        .unwrap();
        echo.join().unwrap();
        assert_eq!(report.outcome, ProbeOutcome::ReplyReceived);
        assert_eq!(report.reply.as_deref(), Some("lo-peer"));

        // Nothing listens any more: UDP port unreachable comes back as refused.
        let report = probe(
            &lo,
            &parse(&format!("udp://127.0.0.1:{port}")),
            Duration::from_secs(2),
        )
        .unwrap();
        assert_eq!(report.outcome, ProbeOutcome::Refused);
        assert!(!report.reachable);
        assert!(report.detail.unwrap().contains("port unreachable"));
    }
}
