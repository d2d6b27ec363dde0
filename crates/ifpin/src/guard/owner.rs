//! Who sent a dropped packet: the local socket's processes, command, uid, cgroup and
//! systemd unit.
//!
//! NFLOG gives the socket owner's uid and gid when the packet came from a local socket. The
//! rest is found by the packet's addresses and ports: one `sock_diag` dump of the namespace's
//! TCP/UDP sockets ([`crate::sockdiag`]) finds the socket (its inode), one pass over
//! `/proc/*/fd` finds the processes holding it, and `/proc/PID/{comm,cgroup}` names them. The
//! caller batches lookups (one dump and one pass for every new flow of a moment) and limits
//! their rate, so a flood of new flows cannot turn into a flood of `/proc` scans.

use std::net::{IpAddr, SocketAddr};

use serde::Serialize;

use crate::audit::owners::{OwnerIndex, Process};
use crate::policy::unmap;
use crate::sockdiag::{self, DiagSocket, Protocol};

use super::nflog::{LoggedPacket, Proto};

/// The local owner of a socket.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Owner {
    /// The processes holding the socket.
    pub pids: Vec<u32>,
    /// The command name of the first of them.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub command: Option<String>,
    /// The socket owner's uid.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub uid: Option<u32>,
    /// The cgroup v2 path of the first process.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cgroup: Option<String>,
    /// The systemd unit, when the cgroup is a unit's (`.../NAME.service`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unit: Option<String>,
}

/// The systemd unit a cgroup path belongs to: its deepest `*.service` component (or
/// `*.scope`, `*.socket`, `*.mount`, `*.swap` when there is no service).
pub fn unit_of(cgroup: &str) -> Option<String> {
    let parts: Vec<&str> = cgroup.split('/').filter(|p| !p.is_empty()).collect();
    parts
        .iter()
        .rev()
        .find(|p| p.ends_with(".service"))
        .or_else(|| {
            parts.iter().rev().find(|p| {
                [".scope", ".socket", ".mount", ".swap"]
                    .iter()
                    .any(|s| p.ends_with(s))
            })
        })
        .map(|p| (*p).to_owned())
}

fn same(a: IpAddr, b: IpAddr) -> bool {
    unmap(a) == unmap(b)
}

/// Whether `socket` is the local socket that sent `p` (source = local end).
pub fn sent_by(socket: &DiagSocket, p: &LoggedPacket) -> bool {
    let proto = match p.proto {
        Proto::Tcp => Protocol::Tcp,
        Proto::Udp => Protocol::Udp,
        _ => return false,
    };
    if socket.protocol != proto || socket.local.port() != p.sport {
        return false;
    }
    let local_ok = socket.local.ip().is_unspecified() || same(socket.local.ip(), p.src);
    let remote_ok = socket.remote.port() == 0
        || (same(socket.remote.ip(), p.dst) && socket.remote.port() == p.dport);
    local_ok && remote_ok
}

/// Finds the owners of the local sockets that sent `packets` (one dump, one `/proc` pass).
/// `None` for a packet no socket matches (a kernel answer, or a socket already closed).
pub fn lookup(packets: &[&LoggedPacket]) -> Vec<Option<Owner>> {
    if packets.is_empty() {
        return Vec::new();
    }
    let sockets = sockdiag::dump_all().unwrap_or_default();
    let matches: Vec<Option<&DiagSocket>> = packets
        .iter()
        .map(|p| {
            // Prefer the most specific socket (connected over unconnected).
            sockets
                .iter()
                .filter(|s| sent_by(s, p))
                .max_by_key(|s| (s.remote.port() != 0, !s.local.ip().is_unspecified()))
        })
        .collect();
    if matches.iter().all(Option::is_none) {
        return packets
            .iter()
            .map(|p| {
                p.uid.map(|uid| Owner {
                    uid: Some(uid),
                    ..Owner::default()
                })
            })
            .collect();
    }
    let index = OwnerIndex::scan().ok();
    packets
        .iter()
        .zip(matches)
        .map(|(p, socket)| {
            let socket = match socket {
                Some(s) => s,
                None => {
                    return p.uid.map(|uid| Owner {
                        uid: Some(uid),
                        ..Owner::default()
                    });
                }
            };
            let pids: Vec<u32> = index
                .as_ref()
                .map(|i| i.owners(socket.inode).collect())
                .unwrap_or_default();
            let first = pids.first().map(|pid| Process::read(*pid));
            let cgroup = first.as_ref().and_then(|p| p.cgroup.clone());
            Some(Owner {
                unit: cgroup.as_deref().and_then(unit_of),
                command: first.map(|p| p.command).filter(|c| !c.is_empty()),
                uid: Some(p.uid.unwrap_or(socket.uid)),
                cgroup,
                pids,
            })
        })
        .collect()
}

/// The local end of `p` as a socket address (for messages).
pub fn local_end(p: &LoggedPacket) -> SocketAddr {
    SocketAddr::new(p.src, p.sport)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units_come_from_the_cgroup() {
        assert_eq!(
            unit_of("/system.slice/leaky.service").as_deref(),
            Some("leaky.service")
        );
        assert_eq!(
            unit_of("/system.slice/foo.service/sub/bar").as_deref(),
            Some("foo.service")
        );
        assert_eq!(
            unit_of("/user.slice/user-1000.slice/session-3.scope").as_deref(),
            Some("session-3.scope")
        );
        assert_eq!(unit_of("/ifpin/run-1-2-3"), None);
        assert_eq!(unit_of("/"), None);
    }
}
