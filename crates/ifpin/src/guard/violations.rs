//! The continuous audit: a violation is news when it appears and when it clears, not every
//! round.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use serde::Serialize;

use crate::audit::{Audit, Check, Rule};
use crate::policy::Policy;

/// A violation as the guard reports it.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct ViolationRecord {
    /// The rule.
    pub rule: Rule,
    /// The plane.
    pub plane: String,
    /// `tcp` or `udp`.
    pub protocol: &'static str,
    /// The socket's local address.
    pub local: SocketAddr,
    /// Its remote address.
    pub remote: SocketAddr,
    /// The interface it is pinned to, if any.
    pub interface: Option<String>,
    /// The processes holding it.
    pub pids: Vec<u32>,
    /// The first one's command.
    pub command: Option<String>,
    /// Why, in words.
    pub reason: String,
    #[serde(skip)]
    inode: u64,
}

impl ViolationRecord {
    fn key(&self) -> (Rule, String, u64, SocketAddr, SocketAddr) {
        (
            self.rule,
            self.plane.clone(),
            self.inode,
            self.local,
            self.remote,
        )
    }
}

/// The plane's sockets in one round: pinned to its interface or not.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct PlaneSockets {
    /// Sockets of the plane (a peer in its prefixes, or a listener on its ports) pinned to
    /// its interface.
    pub pinned: u64,
    /// The same, not pinned.
    pub unpinned: u64,
}

/// What changed since the last round.
#[derive(Clone, Debug, Default)]
pub struct Round {
    /// New violations.
    pub appeared: Vec<ViolationRecord>,
    /// Violations gone since the last round.
    pub cleared: Vec<ViolationRecord>,
    /// Current violations per (plane, rule).
    pub current: BTreeMap<(String, Rule), u64>,
    /// Each plane's sockets.
    pub sockets: BTreeMap<String, PlaneSockets>,
}

/// Remembers the last round's violations.
#[derive(Debug, Default)]
pub struct ViolationTracker {
    last: BTreeMap<(Rule, String, u64, SocketAddr, SocketAddr), ViolationRecord>,
}

impl ViolationTracker {
    /// A tracker that has seen nothing.
    pub fn new() -> ViolationTracker {
        ViolationTracker::default()
    }

    /// Takes one round of the audit.
    pub fn update(&mut self, policy: &Policy, audit: &Audit, check: &Check) -> Round {
        let mut now = BTreeMap::new();
        let mut round = Round::default();
        for plane in policy.planes() {
            for rule in [
                Rule::UnpinnedPlaneTraffic,
                Rule::UnpinnedPlaneListener,
                Rule::PinnedOffPlane,
            ] {
                round.current.insert((plane.name.clone(), rule), 0);
            }
            round
                .sockets
                .insert(plane.name.clone(), PlaneSockets::default());
        }
        for v in &check.violations {
            let socket = &audit.sockets()[v.socket];
            let record = ViolationRecord {
                rule: v.rule,
                plane: v.plane.clone(),
                protocol: socket.diag.protocol.as_str(),
                local: socket.diag.local,
                remote: socket.diag.remote,
                interface: socket.interface_name.clone(),
                pids: socket.pids.clone(),
                command: socket
                    .pids
                    .first()
                    .and_then(|pid| audit.process(*pid))
                    .map(|p| p.command.clone()),
                reason: v.reason.clone(),
                inode: socket.diag.inode,
            };
            *round.current.entry((v.plane.clone(), v.rule)).or_default() += 1;
            now.insert(record.key(), record);
        }
        for (key, record) in &now {
            if !self.last.contains_key(key) {
                round.appeared.push(record.clone());
            }
        }
        for (key, record) in &self.last {
            if !now.contains_key(key) {
                round.cleared.push(record.clone());
            }
        }
        // Plane sockets, pinned or not.
        for socket in audit.sockets() {
            let ns = audit.namespace_of(socket);
            let diag = &socket.diag;
            for plane in policy.planes() {
                let plane_if = ns.resolve(&plane.interface);
                let of_plane = if diag.is_connected() {
                    plane.owns_peer(diag.remote.ip(), diag.bound_interface, plane_if)
                } else {
                    diag.is_listening()
                        && plane.has_port(diag.local.port())
                        && !diag.local.ip().is_loopback()
                };
                if of_plane {
                    let entry = round.sockets.entry(plane.name.clone()).or_default();
                    if plane_if.is_some() && diag.bound_interface == plane_if {
                        entry.pinned += 1;
                    } else {
                        entry.unpinned += 1;
                    }
                }
            }
        }
        self.last = now;
        round
    }
}
