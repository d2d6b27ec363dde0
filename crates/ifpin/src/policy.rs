//! The policy file: control planes written down once, read by `audit`, `exec` and `watch`.
//!
//! A policy names one or more planes. A plane is an interface (name or index), the address
//! prefixes that live behind it, and the ports of services that must be reachable only through
//! it:
//!
//! ```toml
//! [[plane]]
//! name = "backplane"
//! interface = "ctl0"                       # name or index
//! prefixes = ["10.99.0.0/16", "fd99::/16"] # what lives behind this interface
//! ports = [7500, 7501]                     # services that must be reachable only through it
//! ```
//!
//! Loading parses and validates only; it makes no syscall beyond reading the file, so the
//! interface is kept as an [`InterfaceSpec`] and resolved by the command that acts on it, in
//! the network namespace it acts in (an unknown interface is an error for `exec` and a warning
//! for `audit`). Every error names the file, line and column.
//!
//! Link-local peers (`fe80::/10`, `169.254.0.0/16`) belong to a plane when they are scoped to
//! the plane's interface: see [`Plane::owns_peer`].

use std::collections::HashSet;
use std::fmt;
use std::net::IpAddr;
use std::ops::Range;
use std::path::{Path, PathBuf};

use ipnet::IpNet;
use serde::Deserialize;
use toml::Spanned;

use crate::interface::{IfIndex, InterfaceSpec};

/// A parsed, validated policy file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Policy {
    path: PathBuf,
    planes: Vec<Plane>,
}

/// One control plane: an interface and what lives behind it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Plane {
    /// The plane's name, unique in its policy (`backplane`).
    pub name: String,
    /// The interface the plane's traffic must stay on, as written (name or index). Resolve it
    /// in the network namespace that matters with [`InterfaceSpec::resolve`].
    pub interface: InterfaceSpec,
    /// The address prefixes that live behind the interface. Every prefix is a network (no
    /// host bits set).
    pub prefixes: Vec<IpNet>,
    /// Local ports of services that must be reachable only through the interface.
    pub ports: Vec<u16>,
    /// Where the plane's `interface` value is written, for messages about it.
    pub interface_at: Location,
}

/// A line and column in a policy file, both counted from 1 (columns in characters).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Location {
    /// Line number, from 1.
    pub line: usize,
    /// Column number, from 1.
    pub column: usize,
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.line, self.column)
    }
}

/// Errors loading a policy file. Each names the file; syntax and content errors also name the
/// line and column.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    /// The file could not be read.
    #[error("cannot read policy file {}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The file is not valid TOML, or does not have the policy's shape.
    #[error("{}:{at}: {message}", path.display())]
    Syntax {
        /// The file.
        path: PathBuf,
        /// Where the problem is.
        at: Location,
        /// What is wrong, as the TOML parser says it.
        message: String,
    },
    /// A value is well-formed TOML but not a valid policy value.
    #[error("{}:{at}: {message}", path.display())]
    Invalid {
        /// The file.
        path: PathBuf,
        /// Where the value is.
        at: Location,
        /// What is wrong and what to write instead.
        message: String,
    },
}

impl PolicyError {
    /// Where in the file the problem is, when known.
    pub fn location(&self) -> Option<Location> {
        match self {
            PolicyError::Read { .. } => None,
            PolicyError::Syntax { at, .. } | PolicyError::Invalid { at, .. } => Some(*at),
        }
    }
}

/// The file as TOML gives it, before validation; spans kept for messages.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPolicy {
    #[serde(default)]
    plane: Vec<Spanned<RawPlane>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPlane {
    name: Spanned<String>,
    interface: Spanned<toml::Value>,
    #[serde(default)]
    prefixes: Vec<Spanned<String>>,
    #[serde(default)]
    ports: Vec<Spanned<u16>>,
}

impl Policy {
    /// Reads and validates the policy file at `path`.
    pub fn load(path: impl AsRef<Path>) -> Result<Policy, PolicyError> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|source| PolicyError::Read {
            path: path.to_owned(),
            source,
        })?;
        Policy::parse(&text, path)
    }

    /// Validates policy `text`; `path` is only used to name the source in errors.
    pub fn parse(text: &str, path: impl AsRef<Path>) -> Result<Policy, PolicyError> {
        let path = path.as_ref().to_owned();
        let lines = LineIndex::new(text);
        let raw: RawPolicy = toml::from_str(text).map_err(|err| PolicyError::Syntax {
            at: lines.locate(err.span().map_or(0, |span| span.start)),
            message: err.message().trim().to_owned(),
            path: path.clone(),
        })?;
        let invalid = |span: Range<usize>, message: String| PolicyError::Invalid {
            path: path.clone(),
            at: lines.locate(span.start),
            message,
        };
        if raw.plane.is_empty() {
            return Err(invalid(
                0..0,
                "the policy defines no plane: add a [[plane]] table with name, interface, \
                 prefixes and ports"
                    .to_owned(),
            ));
        }
        let mut names = HashSet::new();
        let mut planes = Vec::with_capacity(raw.plane.len());
        for raw_plane in raw.plane {
            let span = raw_plane.span();
            let raw_plane = raw_plane.into_inner();
            let name = raw_plane.name.get_ref().trim();
            if name.is_empty() {
                return Err(invalid(
                    raw_plane.name.span(),
                    "a plane's name cannot be empty".to_owned(),
                ));
            }
            if !names.insert(name.to_owned()) {
                return Err(invalid(
                    raw_plane.name.span(),
                    format!(
                        "a plane named {name:?} is already defined: plane names must be unique"
                    ),
                ));
            }
            let interface = parse_interface(raw_plane.interface.get_ref()).map_err(|message| {
                invalid(
                    raw_plane.interface.span(),
                    format!("plane {name:?}: {message}"),
                )
            })?;
            let mut prefixes = Vec::with_capacity(raw_plane.prefixes.len());
            for prefix in &raw_plane.prefixes {
                let net = parse_prefix(prefix.get_ref()).map_err(|message| {
                    invalid(prefix.span(), format!("plane {name:?}: {message}"))
                })?;
                prefixes.push(net);
            }
            let mut ports = Vec::with_capacity(raw_plane.ports.len());
            for port in &raw_plane.ports {
                if *port.get_ref() == 0 {
                    return Err(invalid(
                        port.span(),
                        format!("plane {name:?}: port 0 is not a service port (use 1 to 65535)"),
                    ));
                }
                ports.push(*port.get_ref());
            }
            if prefixes.is_empty() && ports.is_empty() {
                return Err(invalid(
                    span,
                    format!(
                        "plane {name:?} has neither prefixes nor ports, so no socket could break it: \
                         add `prefixes = [...]` or `ports = [...]`"
                    ),
                ));
            }
            planes.push(Plane {
                name: name.to_owned(),
                interface,
                prefixes,
                ports,
                interface_at: lines.locate(raw_plane.interface.span().start),
            });
        }
        Ok(Policy { path, planes })
    }

    /// The file the policy was read from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Every plane, in file order.
    pub fn planes(&self) -> &[Plane] {
        &self.planes
    }

    /// The plane called `name`.
    pub fn plane(&self, name: &str) -> Option<&Plane> {
        self.planes.iter().find(|plane| plane.name == name)
    }
}

impl Plane {
    /// Whether `addr` lies in one of the plane's prefixes. An IPv4-mapped IPv6 address
    /// (`::ffff:10.99.0.1`) is checked as the IPv4 address it carries.
    pub fn contains(&self, addr: IpAddr) -> bool {
        let addr = unmap(addr);
        self.prefixes.iter().any(|net| net.contains(&addr))
    }

    /// Whether a peer belongs to this plane: it lies in the plane's prefixes, or it is a
    /// link-local address (`fe80::/10`, `169.254.0.0/16`) scoped to the plane's interface.
    ///
    /// `scope` is the interface the peer is reached through (for a socket, its bound
    /// interface); `plane_interface` is the plane's interface resolved in the same network
    /// namespace (`None` if it does not exist there).
    pub fn owns_peer(
        &self,
        addr: IpAddr,
        scope: Option<IfIndex>,
        plane_interface: Option<IfIndex>,
    ) -> bool {
        if self.contains(addr) {
            return true;
        }
        is_link_local(unmap(addr)) && scope.is_some() && scope == plane_interface
    }

    /// Whether `port` is one of the plane's service ports.
    pub fn has_port(&self, port: u16) -> bool {
        self.ports.contains(&port)
    }
}

/// `fe80::/10` or `169.254.0.0/16`: addresses that only mean something on one link.
pub fn is_link_local(addr: IpAddr) -> bool {
    match addr {
        IpAddr::V4(v4) => v4.is_link_local(),
        IpAddr::V6(v6) => v6.is_unicast_link_local(),
    }
}

/// An IPv4-mapped IPv6 address as the IPv4 address it carries; any other address unchanged.
pub fn unmap(addr: IpAddr) -> IpAddr {
    match addr {
        IpAddr::V6(v6) => v6
            .to_ipv4_mapped()
            .map(IpAddr::V4)
            .unwrap_or(IpAddr::V6(v6)),
        v4 => v4,
    }
}

/// An interface value: a name (`"ctl0"`), or an index as a number (`3`) or digits (`"3"`).
fn parse_interface(value: &toml::Value) -> Result<InterfaceSpec, String> {
    match value {
        toml::Value::String(text) => text.parse::<InterfaceSpec>().map_err(|err| err.to_string()),
        toml::Value::Integer(index) => u32::try_from(*index)
            .ok()
            .and_then(IfIndex::new)
            .map(InterfaceSpec::Index)
            .ok_or_else(|| {
                format!("interface index {index} is not valid: indexes are whole numbers from 1 (see `ip link`)")
            }),
        other => Err(format!(
            "interface must be a name such as \"ctl0\" or an index such as 3, not a {}",
            other.type_str()
        )),
    }
}

/// A prefix such as `10.99.0.0/16`; host bits set is an error that names the intended network.
fn parse_prefix(text: &str) -> Result<IpNet, String> {
    let text = text.trim();
    let net: IpNet = match text.parse() {
        Ok(net) => net,
        Err(_) => {
            if let Ok(addr) = text.parse::<IpAddr>() {
                let len = if addr.is_ipv4() { 32 } else { 128 };
                return Err(format!(
                    "{text} is an address, not a prefix: write {text}/{len} for this one address, \
                     or the network it belongs to"
                ));
            }
            return Err(format!(
                "{text:?} is not an address prefix: write it as ADDRESS/LENGTH, such as \
                 10.99.0.0/16 or fd99::/16"
            ));
        }
    };
    if net.trunc() != net {
        return Err(format!(
            "{net} has host bits set; did you mean {}?",
            net.trunc()
        ));
    }
    Ok(net)
}

/// Turns byte offsets into lines and columns.
struct LineIndex<'a> {
    text: &'a str,
}

impl<'a> LineIndex<'a> {
    fn new(text: &'a str) -> Self {
        LineIndex { text }
    }

    fn locate(&self, offset: usize) -> Location {
        let offset = offset.min(self.text.len());
        let before = self.text.get(..offset).unwrap_or(self.text);
        let line = before.matches('\n').count() + 1;
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        let column = before[line_start..].chars().count() + 1;
        Location { line, column }
    }
}

#[cfg(test)]
mod tests {
    use std::net::{Ipv4Addr, Ipv6Addr};

    use proptest::prelude::*;

    use super::*;

    const GOOD: &str = r#"
# the chassis' internal network
[[plane]]
name = "backplane"
interface = "ctl0"
prefixes = ["10.99.0.0/16", "fd99::/16"]
ports = [7500, 7501]

[[plane]]
name = "mgmt"
interface = 4
prefixes = ["192.0.2.0/24"]
"#;

    fn parse(text: &str) -> Result<Policy, PolicyError> {
        Policy::parse(text, "test.toml")
    }

    fn err_of(text: &str) -> String {
        parse(text).unwrap_err().to_string()
    }

    #[test]
    fn a_good_policy_parses_with_every_field() {
        let policy = parse(GOOD).unwrap();
        assert_eq!(policy.planes().len(), 2);
        let bp = policy.plane("backplane").unwrap();
        assert_eq!(bp.interface, "ctl0".parse().unwrap());
        assert_eq!(
            bp.prefixes,
            vec![
                "10.99.0.0/16".parse::<IpNet>().unwrap(),
                "fd99::/16".parse().unwrap()
            ]
        );
        assert_eq!(bp.ports, vec![7500, 7501]);
        assert_eq!(
            bp.interface_at,
            Location {
                line: 5,
                column: 13
            }
        );
        let mgmt = policy.plane("mgmt").unwrap();
        assert_eq!(
            mgmt.interface,
            InterfaceSpec::Index(IfIndex::new(4).unwrap())
        );
        assert!(mgmt.ports.is_empty());
        assert!(policy.plane("front").is_none());
        assert_eq!(policy.path(), Path::new("test.toml"));
    }

    #[test]
    fn an_index_may_be_written_as_digits() {
        let policy = parse("[[plane]]\nname='a'\ninterface='7'\nports=[1]\n").unwrap();
        assert_eq!(
            policy.planes()[0].interface,
            InterfaceSpec::Index(IfIndex::new(7).unwrap())
        );
    }

    #[test]
    fn host_bits_name_the_intended_network_and_the_place() {
        let text = "[[plane]]\nname = \"bp\"\ninterface = \"ctl0\"\nprefixes = [\"fd99::/16\", \"10.99.0.1/16\"]\n";
        let err = parse(text).unwrap_err();
        assert_eq!(
            err.location(),
            Some(Location {
                line: 4,
                column: 26
            })
        );
        let msg = err.to_string();
        assert!(msg.starts_with("test.toml:4:26: "), "{msg}");
        assert!(
            msg.contains("10.99.0.1/16 has host bits set; did you mean 10.99.0.0/16?"),
            "{msg}"
        );
        let msg = err_of("[[plane]]\nname='x'\ninterface='a'\nprefixes=['fd99::1/16']\n");
        assert!(msg.contains("did you mean fd99::/16?"), "{msg}");
    }

    #[test]
    fn bad_values_are_located_and_explained() {
        let cases: &[(&str, &str, &str)] = &[
            ("[[plane]\n", "test.toml:1:", ""),
            (
                "[[plane]]\nname='a'\ninterface='ctl0'\nprefixes=['10.0.0.0/8']\nport=[1]\n",
                "test.toml:5:1:",
                "unknown field `port`",
            ),
            (
                "[[plane]]\nname='a'\ninterface='this-name-is-too-long'\nports=[1]\n",
                "test.toml:3:11:",
                "15 bytes",
            ),
            (
                "[[plane]]\nname='a'\ninterface=0\nports=[1]\n",
                "test.toml:3:11:",
                "not valid",
            ),
            (
                "[[plane]]\nname='a'\ninterface=true\nports=[1]\n",
                "test.toml:3:11:",
                "not a boolean",
            ),
            (
                "[[plane]]\nname='a'\ninterface='c'\nports=[70000]\n",
                "test.toml:4:8:",
                "",
            ),
            (
                "[[plane]]\nname='a'\ninterface='c'\nports=[0]\n",
                "test.toml:4:8:",
                "port 0",
            ),
            (
                "[[plane]]\nname='a'\ninterface='c'\nprefixes=['10.0.0.1']\n",
                "test.toml:4:11:",
                "write 10.0.0.1/32",
            ),
            (
                "[[plane]]\nname='a'\ninterface='c'\nprefixes=['ten/8']\n",
                "test.toml:4:11:",
                "not an address prefix",
            ),
            (
                "[[plane]]\nname='a'\ninterface='c'\nports=[1]\n[[plane]]\nname='a'\ninterface='d'\nports=[2]\n",
                "test.toml:6:6:",
                "already defined",
            ),
            (
                "[[plane]]\nname='a'\ninterface='c'\n",
                "test.toml:1:1:",
                "neither prefixes nor ports",
            ),
            (
                "[[plane]]\nname='a'\nprefixes=['10.0.0.0/8']\n",
                "test.toml:1:1:",
                "missing field `interface`",
            ),
            ("# nothing\n", "test.toml:1:1:", "defines no plane"),
        ];
        for (text, at, what) in cases {
            let msg = err_of(text);
            assert!(msg.starts_with(at), "{text:?}: {msg}");
            assert!(msg.contains(what), "{text:?}: {msg}");
        }
    }

    #[test]
    fn unreadable_files_are_named() {
        let err = Policy::load("/nonexistent/ifpin-policy.toml").unwrap_err();
        assert!(matches!(err, PolicyError::Read { .. }));
        assert!(err.to_string().contains("/nonexistent/ifpin-policy.toml"));
        assert_eq!(err.location(), None);
    }

    #[test]
    fn link_local_peers_belong_to_the_plane_of_their_scope() {
        let policy = parse(GOOD).unwrap();
        let bp = policy.plane("backplane").unwrap();
        let ctl0 = IfIndex::new(3);
        let eth1 = IfIndex::new(4);
        let ll: IpAddr = "fe80::1".parse().unwrap();
        assert!(bp.owns_peer(ll, ctl0, ctl0));
        assert!(!bp.owns_peer(ll, eth1, ctl0));
        assert!(!bp.owns_peer(ll, None, ctl0));
        assert!(!bp.owns_peer(ll, None, None));
        assert!(bp.owns_peer("169.254.1.1".parse().unwrap(), ctl0, ctl0));
        assert!(bp.owns_peer("10.99.3.4".parse().unwrap(), None, None));
        assert!(bp.owns_peer("::ffff:10.99.3.4".parse().unwrap(), None, None));
        assert!(!bp.owns_peer("10.98.3.4".parse().unwrap(), ctl0, ctl0));
        assert!(bp.has_port(7501) && !bp.has_port(7502));
    }

    fn net_v4() -> impl Strategy<Value = (Ipv4Addr, u8)> {
        (any::<u32>(), 0u8..=32).prop_map(|(bits, len)| {
            let mask = if len == 0 { 0 } else { u32::MAX << (32 - len) };
            (Ipv4Addr::from(bits & mask), len)
        })
    }

    fn net_v6() -> impl Strategy<Value = (Ipv6Addr, u8)> {
        (any::<u128>(), 0u8..=128).prop_map(|(bits, len)| {
            let mask = if len == 0 {
                0
            } else {
                u128::MAX << (128 - len)
            };
            (Ipv6Addr::from(bits & mask), len)
        })
    }

    fn plane_of(prefix: String) -> Plane {
        let text = format!("[[plane]]\nname='p'\ninterface='ctl0'\nprefixes=['{prefix}']\n");
        parse(&text).unwrap().planes()[0].clone()
    }

    proptest! {
        // Membership agrees with a bit-level model: the first `len` bits match.
        #[test]
        fn v4_membership_matches_the_leading_bits((net, len) in net_v4(), addr in any::<u32>()) {
            let plane = plane_of(format!("{net}/{len}"));
            let addr = Ipv4Addr::from(addr);
            let mask = if len == 0 { 0 } else { u32::MAX << (32 - len) };
            let expected = u32::from(addr) & mask == u32::from(net);
            prop_assert_eq!(plane.contains(IpAddr::V4(addr)), expected);
            // The mapped form is the same address; a v6 address with the same bits is not.
            prop_assert_eq!(plane.contains(IpAddr::V6(addr.to_ipv6_mapped())), expected);
            // The network address itself and the last address are members.
            prop_assert!(plane.contains(IpAddr::V4(net)));
            prop_assert!(plane.contains(IpAddr::V4(Ipv4Addr::from(u32::from(net) | !mask))));
        }

        #[test]
        fn v6_membership_matches_the_leading_bits((net, len) in net_v6(), addr in any::<u128>()) {
            let plane = plane_of(format!("{net}/{len}"));
            let addr = Ipv6Addr::from(addr);
            let mask = if len == 0 { 0 } else { u128::MAX << (128 - len) };
            let expected = u128::from(addr) & mask == u128::from(net);
            prop_assert_eq!(plane.contains(IpAddr::V6(addr)), expected);
            prop_assert!(plane.contains(IpAddr::V6(net)));
            // An IPv4 address never lies in an IPv6 prefix.
            prop_assert!(!plane.contains(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1))));
        }

        // Any address with host bits is refused, and the suggestion is the truncated network.
        #[test]
        fn host_bits_are_refused_with_the_network((net, len) in net_v4(), noise in any::<u32>()) {
            prop_assume!(len < 32);
            let host = noise & (u32::MAX >> len);
            prop_assume!(host != 0);
            let addr = Ipv4Addr::from(u32::from(net) | host);
            let text = format!("[[plane]]\nname='p'\ninterface='c'\nprefixes=['{addr}/{len}']\n");
            let msg = parse(&text).unwrap_err().to_string();
            let expected = format!("did you mean {net}/{len}?");
            prop_assert!(msg.contains(&expected), "{}", msg);
        }
    }
}
