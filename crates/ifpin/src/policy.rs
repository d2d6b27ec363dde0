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
//! for `audit`). Every error names the file; content errors (TOML, values, UTF-8) also name the
//! line and column.
//!
//! [`Policy::load`] is the one way every command reads a policy file: a regular file only
//! (opened with `O_NONBLOCK`, its type checked on the open descriptor, so a FIFO or a device
//! is refused at once), at most [`MAX_POLICY_SIZE`] bytes (the read is bounded whatever the
//! file claims), parsed in time linear in its size.
//!
//! An IPv4-mapped prefix (`::ffff:10.99.0.0/112`) is read as the IPv4 prefix it stands for
//! (`10.99.0.0/16`), since addresses are unmapped before they are compared.
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

/// The largest policy file [`Policy::load`] reads: 16 MiB, far above any real policy (a plane
/// takes about 100 bytes), and small enough that a wrong path cannot exhaust memory.
pub const MAX_POLICY_SIZE: u64 = 16 * 1024 * 1024;

/// Errors loading a policy file. Each names the file; syntax, content and encoding errors also
/// name the line and column.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    /// There is no file at that path.
    #[error("policy file {}: no such file", path.display())]
    Missing {
        /// The path.
        path: PathBuf,
    },
    /// The file could not be opened or read.
    #[error("cannot read policy file {}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The path names something other than a regular file (a FIFO, a device, a directory...).
    #[error("policy file {} is a {kind}, not a regular file", path.display())]
    NotRegular {
        /// The path.
        path: PathBuf,
        /// What it is (`FIFO`, `character device`, `directory`...).
        kind: &'static str,
    },
    /// The file is larger than [`MAX_POLICY_SIZE`].
    #[error(
        "policy file {} is larger than {} MiB: that is not a policy",
        path.display(),
        MAX_POLICY_SIZE >> 20
    )]
    TooLarge {
        /// The file.
        path: PathBuf,
    },
    /// The file is not valid UTF-8; `at` is the first invalid byte.
    #[error("{}:{at}: not valid UTF-8 (byte 0x{byte:02x}); a policy file is UTF-8 text", path.display())]
    Encoding {
        /// The file.
        path: PathBuf,
        /// Where the first invalid byte is (its column counts the characters before it).
        at: Location,
        /// The first invalid byte.
        byte: u8,
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
            PolicyError::Missing { .. }
            | PolicyError::Read { .. }
            | PolicyError::NotRegular { .. }
            | PolicyError::TooLarge { .. } => None,
            PolicyError::Encoding { at, .. }
            | PolicyError::Syntax { at, .. }
            | PolicyError::Invalid { at, .. } => Some(*at),
        }
    }

    /// Whether the file was read and its content is wrong (as opposed to a file that could not
    /// be read at all).
    pub fn is_content(&self) -> bool {
        self.location().is_some()
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
    /// Reads and validates the policy file at `path`: the one loader of every command that
    /// takes a policy.
    ///
    /// The file is opened without blocking (`O_NONBLOCK`, so a FIFO cannot hang the caller)
    /// and must be a regular file (checked on the open file, `fstat`); at most
    /// [`MAX_POLICY_SIZE`] bytes are read, whatever the file claims. Parsing takes time linear
    /// in the file's size.
    pub fn load(path: impl AsRef<Path>) -> Result<Policy, PolicyError> {
        let path = path.as_ref();
        let bytes = read_bounded(path)?;
        Policy::parse_bytes(&bytes, path)
    }

    /// Validates policy `bytes`, which must be UTF-8 (an error locates the first invalid
    /// byte); `path` is only used to name the source in errors.
    pub fn parse_bytes(bytes: &[u8], path: impl AsRef<Path>) -> Result<Policy, PolicyError> {
        match std::str::from_utf8(bytes) {
            Ok(text) => Policy::parse(text, path),
            Err(err) => {
                let valid = err.valid_up_to();
                // The valid prefix is UTF-8, so lines and columns are counted in it.
                let prefix = std::str::from_utf8(&bytes[..valid]).unwrap_or_default();
                Err(PolicyError::Encoding {
                    path: path.as_ref().to_owned(),
                    at: LineIndex::new(prefix).locate(valid),
                    byte: bytes[valid],
                })
            }
        }
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
    Ok(unmap_prefix(net))
}

/// Reads at most [`MAX_POLICY_SIZE`] bytes of the regular file at `path`, without ever
/// blocking in `open`.
fn read_bounded(path: &Path) -> Result<Vec<u8>, PolicyError> {
    use std::io::Read;
    use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
    let read_error = |source: std::io::Error| {
        if source.kind() == std::io::ErrorKind::NotFound {
            PolicyError::Missing {
                path: path.to_owned(),
            }
        } else {
            PolicyError::Read {
                path: path.to_owned(),
                source,
            }
        }
    };
    // O_NONBLOCK: opening a FIFO for reading would otherwise wait for a writer forever.
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)
        .map_err(read_error)?;
    let meta = file.metadata().map_err(read_error)?;
    let kind = meta.file_type();
    if !kind.is_file() {
        let kind = if kind.is_fifo() {
            "FIFO"
        } else if kind.is_char_device() {
            "character device"
        } else if kind.is_block_device() {
            "block device"
        } else if kind.is_dir() {
            "directory"
        } else if kind.is_socket() {
            "socket"
        } else {
            "special file"
        };
        return Err(PolicyError::NotRegular {
            path: path.to_owned(),
            kind,
        });
    }
    if meta.len() > MAX_POLICY_SIZE {
        return Err(PolicyError::TooLarge {
            path: path.to_owned(),
        });
    }
    // The size may change, or be wrong (procfs says 0): the read itself is bounded.
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    file.take(MAX_POLICY_SIZE + 1)
        .read_to_end(&mut bytes)
        .map_err(read_error)?;
    if bytes.len() as u64 > MAX_POLICY_SIZE {
        return Err(PolicyError::TooLarge {
            path: path.to_owned(),
        });
    }
    Ok(bytes)
}

/// An IPv4-mapped IPv6 prefix (`::ffff:10.99.0.0/112`, length 96 or more) as the IPv4 prefix it
/// stands for (`10.99.0.0/16`): peers and local addresses are unmapped before every
/// comparison, so a mapped prefix would otherwise never match. Any other prefix unchanged.
/// (A prefix shorter than 96 bits has host bits inside `::ffff:0:0/96` set, or does not
/// start with it, so it is never mapped; such prefixes, `::/0` included, only match IPv6
/// addresses.)
pub fn unmap_prefix(net: IpNet) -> IpNet {
    match net {
        IpNet::V6(v6) if v6.prefix_len() >= 96 => match v6.network().to_ipv4_mapped() {
            Some(v4) => ipnet::Ipv4Net::new(v4, v6.prefix_len() - 96)
                .map(IpNet::V4)
                .unwrap_or(net),
            None => net,
        },
        net => net,
    }
}

/// Turns byte offsets into lines and columns: the start of every line is found once, so each
/// lookup is a binary search (plus counting characters on a line that is not ASCII).
struct LineIndex<'a> {
    text: &'a str,
    /// Byte offset of the start of each line.
    starts: Vec<usize>,
}

impl<'a> LineIndex<'a> {
    fn new(text: &'a str) -> Self {
        let mut starts = vec![0];
        starts.extend(
            text.bytes()
                .enumerate()
                .filter(|&(_, b)| b == b'\n')
                .map(|(i, _)| i + 1),
        );
        LineIndex { text, starts }
    }

    fn locate(&self, offset: usize) -> Location {
        let mut offset = offset.min(self.text.len());
        while !self.text.is_char_boundary(offset) {
            offset -= 1;
        }
        // The last line starting at or before `offset`.
        let line = self.starts.partition_point(|&start| start <= offset);
        let start = self.starts[line - 1];
        let before = &self.text[start..offset];
        let column = if before.is_ascii() {
            before.len()
        } else {
            before.chars().count()
        } + 1;
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
    fn a_missing_file_says_so() {
        let err = Policy::load("/nonexistent/ifpin-policy.toml").unwrap_err();
        assert!(matches!(err, PolicyError::Missing { .. }), "{err:?}");
        assert_eq!(
            err.to_string(),
            "policy file /nonexistent/ifpin-policy.toml: no such file"
        );
        assert_eq!(err.location(), None);
        assert!(!err.is_content());
    }

    fn temp_dir(tag: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "ifpin-policy-{tag}-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    /// Removes a directory when dropped, also on a panic.
    struct Cleanup(PathBuf);
    impl Drop for Cleanup {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    /// A FIFO with no writer would block `open` forever: it is refused at once. The load runs
    /// on a thread so that a hang fails the test instead of stalling it.
    #[test]
    fn a_fifo_is_refused_without_blocking() {
        let dir = temp_dir("fifo");
        let _cleanup = Cleanup(dir.clone());
        let fifo = dir.join("policy.toml");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let path = fifo.clone();
        std::thread::spawn(move || {
            let _ = tx.send(Policy::load(&path).map(|_| ()).map_err(|e| e.to_string()));
        });
        let result = rx
            .recv_timeout(std::time::Duration::from_secs(20))
            .expect("Policy::load of a FIFO did not return");
        // Unblock a hung open, if any, so the thread can end.
        let _ = std::fs::OpenOptions::new()
            .write(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(&fifo);
        let err = result.unwrap_err();
        assert!(err.contains("is a FIFO, not a regular file"), "{err}");
        assert!(err.contains(fifo.to_str().unwrap()), "{err}");
    }

    use std::os::unix::fs::OpenOptionsExt;

    /// `/dev/zero` never ends; it is refused before a byte is read.
    #[test]
    fn devices_and_directories_are_refused() {
        for (path, kind) in [
            ("/dev/zero", "character device"),
            ("/dev/urandom", "character device"),
            ("/", "directory"),
        ] {
            let err = Policy::load(path).unwrap_err();
            assert!(matches!(err, PolicyError::NotRegular { .. }), "{err:?}");
            assert_eq!(
                err.to_string(),
                format!("policy file {path} is a {kind}, not a regular file")
            );
        }
    }

    #[test]
    fn a_file_over_16_mib_is_refused_unread() {
        let dir = temp_dir("large");
        let _cleanup = Cleanup(dir.clone());
        let path = dir.join("policy.toml");
        // Sparse: 16 MiB + 1 byte of zeros, costing no disk.
        let file = std::fs::File::create(&path).unwrap();
        file.set_len(MAX_POLICY_SIZE + 1).unwrap();
        let err = Policy::load(&path).unwrap_err();
        assert!(matches!(err, PolicyError::TooLarge { .. }), "{err:?}");
        assert!(err.to_string().contains("larger than 16 MiB"), "{err}");
        // Exactly 16 MiB is read (and then is not a policy).
        file.set_len(MAX_POLICY_SIZE).unwrap();
        let err = Policy::load(&path).unwrap_err();
        assert!(err.is_content(), "{err:?}");
    }

    /// A file whose size says 0 (as procfs files do) is still read, up to the cap.
    #[test]
    fn the_read_does_not_trust_the_size() {
        let err = Policy::load("/proc/self/status").unwrap_err();
        assert!(err.is_content(), "{err:?}");
        assert!(err.to_string().starts_with("/proc/self/status:1:"), "{err}");
    }

    #[test]
    fn invalid_utf8_is_located_at_its_first_bad_byte() {
        let mut bytes = b"[[plane]]\nname = '\xc3\xa9t\xc3\xa9'\ninterface = 'c\xff'\n".to_vec();
        let err = Policy::parse_bytes(&bytes, "test.toml").unwrap_err();
        assert!(
            matches!(err, PolicyError::Encoding { byte: 0xff, .. }),
            "{err:?}"
        );
        assert_eq!(
            err.to_string(),
            "test.toml:3:15: not valid UTF-8 (byte 0xff); a policy file is UTF-8 text"
        );
        // On the first line, after multi-byte characters: columns count characters.
        bytes = b"# \xc3\xa9\xc3\xa9 \xe2\x82".to_vec();
        let err = Policy::parse_bytes(&bytes, "test.toml").unwrap_err();
        assert_eq!(err.location(), Some(Location { line: 1, column: 6 }));
        // The same through load.
        let dir = temp_dir("utf8");
        let _cleanup = Cleanup(dir.clone());
        let path = dir.join("policy.toml");
        std::fs::write(&path, b"\n\n\x80").unwrap();
        let err = Policy::load(&path).unwrap_err();
        assert_eq!(err.location(), Some(Location { line: 3, column: 1 }));
        assert!(
            err.to_string()
                .starts_with(&format!("{}:3:1: ", path.display()))
        );
    }

    #[test]
    fn line_index_agrees_with_counting() {
        let text = "a\n\nbé c\n\u{1F600}x\ny";
        let index = LineIndex::new(text);
        for offset in 0..=text.len() + 2 {
            let o = offset.min(text.len());
            let mut o2 = o;
            while !text.is_char_boundary(o2) {
                o2 -= 1;
            }
            let before = &text[..o2];
            let line = before.matches('\n').count() + 1;
            let start = before.rfind('\n').map_or(0, |i| i + 1);
            let column = before[start..].chars().count() + 1;
            assert_eq!(index.locate(offset), Location { line, column }, "{offset}");
        }
    }

    #[test]
    fn v4_mapped_prefixes_become_ipv4_prefixes() {
        let plane = plane_of("::ffff:10.99.0.0/112".to_owned());
        assert_eq!(
            plane.prefixes,
            vec!["10.99.0.0/16".parse::<IpNet>().unwrap()]
        );
        assert!(plane.contains("10.99.3.4".parse().unwrap()));
        assert!(plane.contains("::ffff:10.99.3.4".parse().unwrap()));
        assert!(!plane.contains("10.98.3.4".parse().unwrap()));
        let all = plane_of("::ffff:0.0.0.0/96".to_owned());
        assert_eq!(all.prefixes, vec!["0.0.0.0/0".parse::<IpNet>().unwrap()]);
        let one = plane_of("::ffff:192.0.2.1/128".to_owned());
        assert_eq!(one.prefixes, vec!["192.0.2.1/32".parse::<IpNet>().unwrap()]);
        // Other IPv6 prefixes stay as written.
        let v6 = plane_of("::/0".to_owned());
        assert_eq!(v6.prefixes, vec!["::/0".parse::<IpNet>().unwrap()]);
        assert_eq!(
            unmap_prefix("64:ff9b::/96".parse().unwrap()),
            "64:ff9b::/96".parse::<IpNet>().unwrap()
        );
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
