//! Network interfaces as checked name + index pairs.
//!
//! The kernel pins a socket to an *index* (`SO_BINDTOIFINDEX`), but people name interfaces.
//! An [`Interface`] is both, resolved at one moment and checked to exist; an [`InterfaceSpec`]
//! is what a user typed (a name or an index), parsed without any syscall. Resolution happens
//! in the calling thread's network namespace.
//!
//! Because an index can be reused by another device after the interface is deleted (see
//! `docs/kernel.md`), [`Interface::check`] tells whether the index still carries the same
//! name.

use std::fmt;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::str::FromStr;
use std::sync::Arc;

use serde::{Serialize, Serializer};

use crate::sys::iface as sys;

/// A kernel interface index (`ifindex`). Never zero: zero means "no interface" to the kernel.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct IfIndex(NonZeroU32);

impl IfIndex {
    /// Wraps a raw index; `None` for 0.
    pub fn new(raw: u32) -> Option<Self> {
        NonZeroU32::new(raw).map(IfIndex)
    }

    /// The raw index as the kernel uses it.
    pub fn get(self) -> u32 {
        self.0.get()
    }
}

impl fmt::Display for IfIndex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl Serialize for IfIndex {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u32(self.get())
    }
}

/// A syntactically valid interface name: 1 to 15 bytes, no `/`, no whitespace, no NUL, and
/// not `.` or `..` (the rules of the kernel's `dev_valid_name`).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct IfName(String);

impl IfName {
    /// The longest name the kernel accepts, in bytes (`IFNAMSIZ - 1`).
    pub const MAX_LEN: usize = sys::IF_NAMESIZE - 1;

    /// Checks `name` against the kernel's naming rules.
    pub fn new(name: &str) -> Result<Self, InterfaceError> {
        let invalid = |reason: &'static str| InterfaceError::InvalidName {
            name: name.to_owned(),
            reason,
        };
        if name.is_empty() {
            return Err(invalid("the name is empty"));
        }
        if name.len() > Self::MAX_LEN {
            return Err(InterfaceError::NameTooLong {
                name: name.to_owned(),
                len: name.len(),
            });
        }
        if name == "." || name == ".." {
            return Err(invalid("`.` and `..` are not interface names"));
        }
        if name.contains('/') {
            return Err(invalid("interface names cannot contain `/`"));
        }
        if name.contains(|c: char| c.is_whitespace() || c == '\0' || c == ':') {
            return Err(invalid(
                "interface names cannot contain whitespace, `:` or NUL",
            ));
        }
        Ok(IfName(name.to_owned()))
    }

    /// The name as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for IfName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for IfName {
    type Err = InterfaceError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        IfName::new(s)
    }
}

/// What a user named: an interface name or an index. Parsing makes no syscall.
///
/// A string of digits is an index (`"3"`); anything else must be a valid [`IfName`].
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum InterfaceSpec {
    /// An interface name such as `ctl0`.
    Name(IfName),
    /// An interface index such as `3`.
    Index(IfIndex),
}

impl FromStr for InterfaceSpec {
    type Err = InterfaceError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
            let raw: u32 = s.parse().map_err(|_| InterfaceError::InvalidIndex {
                input: s.to_owned(),
            })?;
            return IfIndex::new(raw).map(InterfaceSpec::Index).ok_or_else(|| {
                InterfaceError::InvalidIndex {
                    input: s.to_owned(),
                }
            });
        }
        IfName::new(s).map(InterfaceSpec::Name)
    }
}

impl fmt::Display for InterfaceSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            InterfaceSpec::Name(name) => name.fmt(f),
            InterfaceSpec::Index(index) => write!(f, "index {index}"),
        }
    }
}

impl InterfaceSpec {
    /// Resolves the spec in the calling thread's network namespace.
    pub fn resolve(&self) -> Result<Interface, InterfaceError> {
        match self {
            InterfaceSpec::Name(name) => Interface::from_name(name),
            InterfaceSpec::Index(index) => Interface::from_index(*index),
        }
    }
}

/// A network interface that existed, with this name at this index, when it was resolved.
///
/// Cheap to clone (every pinned socket keeps one): the name is shared, not copied.
///
/// ```
/// use ifpin::{Interface, InterfaceChange, InterfaceError};
///
/// let lo = Interface::resolve("lo")?; // a name, or an index such as "1"
/// assert_eq!(lo.name(), "lo");
/// assert_eq!(Interface::resolve(&lo.index().to_string())?, lo);
/// assert_eq!(lo.check()?, InterfaceChange::Same); // still there, same name, same index
///
/// // Bad input is an error that names it, before any socket exists.
/// assert!(matches!(Interface::resolve("no-such-if0"), Err(InterfaceError::NotFound { .. })));
/// assert!(Interface::resolve("a-name-of-16-byte").is_err()); // IFNAMSIZ is 16 with the NUL
/// # Ok::<(), ifpin::InterfaceError>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize)]
pub struct Interface {
    name: Arc<str>,
    index: IfIndex,
}

/// One address configured on an interface.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize)]
pub struct InterfaceAddress {
    /// The address.
    pub addr: IpAddr,
    /// The prefix length of the address's network.
    pub prefix_len: u8,
}

impl InterfaceAddress {
    /// Whether this is an IPv6 link-local address (`fe80::/10`).
    pub fn is_ipv6_link_local(&self) -> bool {
        matches!(self.addr, IpAddr::V6(v6) if v6.is_unicast_link_local())
    }
}

/// The state of an interface, read from the kernel.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct InterfaceFlags {
    /// `IFF_UP`: administratively up.
    pub up: bool,
    /// `IFF_RUNNING`: operationally up (carrier).
    pub running: bool,
    /// `IFF_LOOPBACK`.
    pub loopback: bool,
}

impl Interface {
    /// Resolves a name or an index given as text (`"ctl0"`, `"3"`).
    pub fn resolve(spec: &str) -> Result<Self, InterfaceError> {
        spec.parse::<InterfaceSpec>()?.resolve()
    }

    /// Looks up the interface called `name`.
    #[doc(alias = "if_nametoindex")]
    pub fn from_name(name: &IfName) -> Result<Self, InterfaceError> {
        let c_name = sys::c_name(name.as_str()).ok_or_else(|| InterfaceError::InvalidName {
            name: name.to_string(),
            reason: "interface names cannot contain NUL",
        })?;
        let raw = sys::if_nametoindex(&c_name).map_err(|source| InterfaceError::Sys {
            call: "if_nametoindex",
            interface: name.to_string(),
            source,
        })?;
        let index = raw
            .and_then(IfIndex::new)
            .ok_or_else(|| InterfaceError::NotFound {
                spec: name.to_string(),
            })?;
        Ok(Interface {
            name: name.as_str().into(),
            index,
        })
    }

    /// Looks up the interface with `index`.
    #[doc(alias = "if_indextoname")]
    pub fn from_index(index: IfIndex) -> Result<Self, InterfaceError> {
        let name = sys::if_indextoname(index.get())
            .map_err(|source| InterfaceError::Sys {
                call: "if_indextoname",
                interface: format!("index {index}"),
                source,
            })?
            .ok_or_else(|| InterfaceError::NotFound {
                spec: format!("index {index}"),
            })?;
        Ok(Interface {
            name: name.into(),
            index,
        })
    }

    /// The loopback interface `lo`.
    pub fn loopback() -> Result<Self, InterfaceError> {
        Interface::resolve("lo")
    }

    /// The interface's name when it was resolved.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The interface's index.
    pub fn index(&self) -> IfIndex {
        self.index
    }

    /// What the interface is now, compared with when it was resolved.
    ///
    /// Detects deletion, renaming, and an index taken over by another device with a
    /// different name. (A device recreated with the same name *and* index is
    /// indistinguishable by name and index alone.)
    pub fn check(&self) -> Result<InterfaceChange, InterfaceError> {
        let now = sys::if_indextoname(self.index.get()).map_err(|source| InterfaceError::Sys {
            call: "if_indextoname",
            interface: self.to_string(),
            source,
        })?;
        let by_name = sys::c_name(&self.name)
            .map(|c| sys::if_nametoindex(&c))
            .transpose()
            .map_err(|source| InterfaceError::Sys {
                call: "if_nametoindex",
                interface: self.to_string(),
                source,
            })?
            .flatten()
            .and_then(IfIndex::new);
        Ok(match (now, by_name) {
            (Some(name), _) if *name == *self.name => InterfaceChange::Same,
            (Some(name), Some(new_index)) => InterfaceChange::IndexTakenOver {
                by: name,
                name_now_at: Some(new_index),
            },
            (Some(name), None) => InterfaceChange::Renamed { to: name },
            (None, new_index) => InterfaceChange::Gone {
                name_now_at: new_index,
            },
        })
    }

    /// The addresses configured on the interface now (`getifaddrs(3)`).
    #[doc(alias = "getifaddrs")]
    pub fn addresses(&self) -> Result<Vec<InterfaceAddress>, InterfaceError> {
        let addrs = nix::ifaddrs::getifaddrs().map_err(|errno| InterfaceError::Sys {
            call: "getifaddrs",
            interface: self.to_string(),
            source: errno.into(),
        })?;
        let mut out = Vec::new();
        for ifa in addrs.filter(|ifa| *ifa.interface_name == *self.name) {
            let Some(address) = ifa.address else { continue };
            let netmask = ifa.netmask;
            let (addr, prefix_len) = if let Some(v4) = address.as_sockaddr_in() {
                let bits = netmask
                    .as_ref()
                    .and_then(|m| m.as_sockaddr_in())
                    .map(|m| u32::from(m.ip()).count_ones() as u8)
                    .unwrap_or(32);
                (IpAddr::V4(v4.ip()), bits)
            } else if let Some(v6) = address.as_sockaddr_in6() {
                let bits = netmask
                    .as_ref()
                    .and_then(|m| m.as_sockaddr_in6())
                    .map(|m| u128::from(m.ip()).count_ones() as u8)
                    .unwrap_or(128);
                (IpAddr::V6(v6.ip()), bits)
            } else {
                continue;
            };
            out.push(InterfaceAddress { addr, prefix_len });
        }
        Ok(out)
    }

    /// The interface's flags now (`getifaddrs(3)`); `NotFound` if it is gone.
    pub fn flags(&self) -> Result<InterfaceFlags, InterfaceError> {
        use nix::net::if_::InterfaceFlags as F;
        let addrs = nix::ifaddrs::getifaddrs().map_err(|errno| InterfaceError::Sys {
            call: "getifaddrs",
            interface: self.to_string(),
            source: errno.into(),
        })?;
        addrs
            .into_iter()
            .find(|ifa| *ifa.interface_name == *self.name)
            .map(|ifa| InterfaceFlags {
                up: ifa.flags.contains(F::IFF_UP),
                running: ifa.flags.contains(F::IFF_RUNNING),
                loopback: ifa.flags.contains(F::IFF_LOOPBACK),
            })
            .ok_or_else(|| InterfaceError::NotFound {
                spec: self.name.to_string(),
            })
    }
}

impl fmt::Display for Interface {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (index {})", self.name, self.index)
    }
}

/// How an interface differs now from when it was resolved; see [`Interface::check`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "change", rename_all = "kebab-case")]
pub enum InterfaceChange {
    /// Same name at the same index.
    Same,
    /// The index now carries another name, and no interface has the old name: most likely
    /// a rename (or a different device took the index after a deletion).
    Renamed {
        /// The name the index carries now.
        to: String,
    },
    /// The index now carries another device while the old name lives elsewhere, or not at
    /// all: the old name at `name_now_at`.
    IndexTakenOver {
        /// The name of the device that has the index now.
        by: String,
        /// Where the old name lives now, if anywhere.
        name_now_at: Option<IfIndex>,
    },
    /// No interface has the index any more.
    Gone {
        /// Where an interface of the old name lives now, if one came back.
        name_now_at: Option<IfIndex>,
    },
}

/// Errors resolving or inspecting an interface.
#[derive(Debug, thiserror::Error)]
pub enum InterfaceError {
    /// The name is longer than the kernel allows.
    #[error(
        "interface name {name:?} is {len} bytes long; Linux interface names are at most 15 bytes (check the name with `ip link`)"
    )]
    NameTooLong {
        /// The name as given.
        name: String,
        /// Its length in bytes.
        len: usize,
    },
    /// The name breaks the kernel's naming rules.
    #[error("{name:?} is not a valid interface name: {reason}")]
    InvalidName {
        /// The name as given.
        name: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// An index that is zero or does not fit.
    #[error(
        "{input:?} is not a valid interface index: indexes are whole numbers from 1 (see `ip link`)"
    )]
    InvalidIndex {
        /// The text as given.
        input: String,
    },
    /// No such interface in this network namespace.
    #[error("no interface {spec} in this network namespace (list them with `ip link`)")]
    NotFound {
        /// The name or index as given.
        spec: String,
    },
    /// A lookup syscall failed for another reason.
    #[error("{call} failed for interface {interface}")]
    Sys {
        /// The call that failed.
        call: &'static str,
        /// The interface it was about.
        interface: String,
        /// The kernel's answer.
        #[source]
        source: std::io::Error,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_kernel_rules() {
        assert!(IfName::new("ctl0").is_ok());
        assert!(IfName::new("a23456789012345").is_ok());
        assert!(matches!(
            IfName::new("a234567890123456"),
            Err(InterfaceError::NameTooLong { len: 16, .. })
        ));
        for bad in ["", ".", "..", "a/b", "a b", "a\0b", "eth0:1"] {
            assert!(
                matches!(IfName::new(bad), Err(InterfaceError::InvalidName { .. })),
                "{bad:?} should be rejected"
            );
        }
    }

    #[test]
    fn specs_are_names_or_indexes() {
        assert_eq!(
            "7".parse::<InterfaceSpec>().unwrap(),
            InterfaceSpec::Index(IfIndex::new(7).unwrap())
        );
        assert!(matches!(
            "0".parse::<InterfaceSpec>(),
            Err(InterfaceError::InvalidIndex { .. })
        ));
        assert!(matches!(
            "99999999999".parse::<InterfaceSpec>(),
            Err(InterfaceError::InvalidIndex { .. })
        ));
        assert!(matches!(
            "eth1".parse::<InterfaceSpec>().unwrap(),
            InterfaceSpec::Name(_)
        ));
    }

    #[test]
    fn errors_name_the_input() {
        let err = Interface::resolve("no-such-if0").unwrap_err();
        assert!(err.to_string().contains("no-such-if0"), "{err}");
        let err = Interface::resolve("this-name-is-too-long").unwrap_err();
        assert!(err.to_string().contains("this-name-is-too-long"), "{err}");
        assert!(err.to_string().contains("15 bytes"), "{err}");
    }

    #[test]
    fn loopback_resolves_and_checks_same() {
        let lo = Interface::loopback().unwrap();
        assert_eq!(lo.name(), "lo");
        assert_eq!(Interface::from_index(lo.index()).unwrap(), lo);
        assert_eq!(lo.check().unwrap(), InterfaceChange::Same);
        assert!(lo.flags().unwrap().loopback);
        let addrs = lo.addresses().unwrap();
        assert!(
            addrs
                .iter()
                .any(|a| a.addr == IpAddr::from([127, 0, 0, 1]) && a.prefix_len == 8),
            "{addrs:?}"
        );
    }
}
