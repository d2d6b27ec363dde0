//! What a confinement attaches at each level: the one table the engine loads from, the tests
//! check the kernel against, and the documentation describes.
//!
//! | level | without `allow_loopback` | with `allow_loopback` |
//! |---|---|---|
//! | pinned | `sock_create` binds every AF_INET/AF_INET6 socket | `connect4`, `connect6`, `sendmsg4`, `sendmsg6`, `bind4`, `bind6` pin sockets lazily |
//! | enforced | + `cgroup_skb` egress and ingress filters; + the `setsockopt` guard (multicast memberships) | the same, the filters also passing `lo` |
//! | sealed | + the guard refusing every unpinning or re-steering option and error queues of unpinned sockets; + `bind6` refusing `fe80::/10` | the same (the lazy `bind6` already refuses `fe80::/10`) |

use serde::Serialize;

use crate::bpf::programs::{self, AddrHook, Direction, GuardOptions, MapFds, PinOptions};
use crate::bpf::{AsmError, Insn};
use crate::level::Level;
use crate::sys::bpf::{AttachType, ProgType};

/// One program of a confinement, and where it attaches.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Attachment {
    /// The program's name (what `bpftool prog` shows).
    pub name: &'static str,
    /// Its program type.
    pub prog_type: ProgType,
    /// Where it attaches to the cgroup.
    pub attach_type: AttachType,
    /// Which program it is, with its options.
    pub program: ProgramKind,
}

/// The programs of [`crate::bpf::programs`], with the options a level gives them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProgramKind {
    /// [`programs::sock_create`].
    SockCreate,
    /// [`programs::sock_addr_pin`].
    SockAddrPin(AddrHook, PinOptions),
    /// [`programs::skb_filter`]; `lo` passes too in loopback mode.
    SkbFilter(Direction),
    /// [`programs::setsockopt_guard`].
    SetsockoptGuard(GuardOptions),
}

impl ProgramKind {
    /// The program's instructions, referring to `maps`; `lo` is the loopback index in
    /// loopback mode.
    pub fn build(self, maps: MapFds, lo: Option<u32>) -> Result<Vec<Insn>, AsmError> {
        match self {
            ProgramKind::SockCreate => programs::sock_create(maps),
            ProgramKind::SockAddrPin(hook, options) => programs::sock_addr_pin(hook, maps, options),
            ProgramKind::SkbFilter(direction) => programs::skb_filter(direction, maps, lo),
            ProgramKind::SetsockoptGuard(options) => programs::setsockopt_guard(maps, options),
        }
    }
}

/// Serialized as the program's name, for reports.
impl Serialize for Attachment {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.name)
    }
}

/// What a confinement at `level` attaches (see the module docs), in attach order.
pub fn attachments(level: Level, allow_loopback: bool) -> Vec<Attachment> {
    let mut out = Vec::new();
    if allow_loopback {
        let options = PinOptions {
            lazy_pin: true,
            refuse_link_local_bind: true,
            refuse_pinning_datagram: level == Level::Pinned,
        };
        for (name, attach_type, hook) in [
            (
                "ifpin_connect4",
                AttachType::CgroupInet4Connect,
                AddrHook::Connect4,
            ),
            (
                "ifpin_connect6",
                AttachType::CgroupInet6Connect,
                AddrHook::Connect6,
            ),
            (
                "ifpin_sendmsg4",
                AttachType::CgroupUdp4Sendmsg,
                AddrHook::Sendmsg4,
            ),
            (
                "ifpin_sendmsg6",
                AttachType::CgroupUdp6Sendmsg,
                AddrHook::Sendmsg6,
            ),
            ("ifpin_bind4", AttachType::CgroupInet4Bind, AddrHook::Bind4),
            ("ifpin_bind6", AttachType::CgroupInet6Bind, AddrHook::Bind6),
        ] {
            out.push(Attachment {
                name,
                prog_type: ProgType::CgroupSockAddr,
                attach_type,
                program: ProgramKind::SockAddrPin(hook, options),
            });
        }
    } else {
        out.push(Attachment {
            name: "ifpin_sock",
            prog_type: ProgType::CgroupSock,
            attach_type: AttachType::CgroupInetSockCreate,
            program: ProgramKind::SockCreate,
        });
    }
    if level >= Level::Enforced {
        for (name, attach_type, direction) in [
            (
                "ifpin_egress",
                AttachType::CgroupInetEgress,
                Direction::Egress,
            ),
            (
                "ifpin_ingress",
                AttachType::CgroupInetIngress,
                Direction::Ingress,
            ),
        ] {
            out.push(Attachment {
                name,
                prog_type: ProgType::CgroupSkb,
                attach_type,
                program: ProgramKind::SkbFilter(direction),
            });
        }
        // At enforced: multicast memberships on other interfaces (the kernel's own IGMP/MLD
        // reports pass no cgroup filter). At sealed: also every option that unpins or
        // re-steers a socket, and error queues of unpinned sockets.
        let sealed = level >= Level::Sealed;
        out.push(Attachment {
            name: "ifpin_sockopt",
            prog_type: ProgType::CgroupSockopt,
            attach_type: AttachType::CgroupSetsockopt,
            program: ProgramKind::SetsockoptGuard(GuardOptions {
                refuse_resteer: sealed,
                recverr_pinned_only: sealed,
            }),
        });
    }
    if level >= Level::Sealed && !allow_loopback {
        out.push(Attachment {
            name: "ifpin_bind6",
            prog_type: ProgType::CgroupSockAddr,
            attach_type: AttachType::CgroupInet6Bind,
            program: ProgramKind::SockAddrPin(
                AddrHook::Bind6,
                PinOptions {
                    lazy_pin: false,
                    refuse_link_local_bind: true,
                    refuse_pinning_datagram: false,
                },
            ),
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_level_adds_to_the_one_below() {
        for allow_loopback in [false, true] {
            let names = |level| -> Vec<&str> {
                attachments(level, allow_loopback)
                    .iter()
                    .map(|a| a.name)
                    .collect()
            };
            let (pinned, enforced, sealed) = (
                names(Level::Pinned),
                names(Level::Enforced),
                names(Level::Sealed),
            );
            assert!(
                pinned.iter().all(|n| enforced.contains(n)),
                "{allow_loopback}"
            );
            assert!(
                enforced.iter().all(|n| sealed.contains(n)),
                "{allow_loopback}"
            );
            assert!(enforced.contains(&"ifpin_egress") && enforced.contains(&"ifpin_sockopt"));
            assert!(!pinned.contains(&"ifpin_egress"));
        }
        // The guard refuses re-steering only at sealed.
        let guard = |level| {
            attachments(level, false)
                .into_iter()
                .find_map(|a| match a.program {
                    ProgramKind::SetsockoptGuard(o) => Some(o.refuse_resteer),
                    _ => None,
                })
        };
        assert_eq!(guard(Level::Pinned), None);
        assert_eq!(guard(Level::Enforced), Some(false));
        assert_eq!(guard(Level::Sealed), Some(true));
    }

    #[test]
    fn every_program_of_the_table_assembles() {
        let maps = MapFds {
            config: 3,
            counters: 4,
            locals: Some(5),
        };
        for level in Level::ALL {
            for allow_loopback in [false, true] {
                for a in attachments(level, allow_loopback) {
                    a.program
                        .build(maps, allow_loopback.then_some(1))
                        .unwrap_or_else(|e| panic!("{}: {e}", a.name));
                }
            }
        }
    }
}
