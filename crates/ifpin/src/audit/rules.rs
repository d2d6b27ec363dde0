//! The policy's three rules, applied to an [`Audit`]: which socket breaks which rule, for which
//! plane, and why (see the module docs of [`crate::audit`] for the rules themselves).

use std::fmt;
use std::net::IpAddr;

use serde::Serialize;

use super::{Audit, NamespaceSnapshot, Socket, list_some};
use crate::interface::IfIndex;
use crate::policy::{Plane, Policy, unmap};
use crate::sockdiag::Role;

impl Audit {
    /// Applies `policy`'s rules to every socket.
    pub fn check(&self, policy: &Policy) -> Check {
        let mut warnings = Vec::new();
        // Each plane's interface, resolved in each namespace.
        let resolved: Vec<Vec<Option<IfIndex>>> = self
            .namespaces
            .iter()
            .map(|ns| {
                policy
                    .planes()
                    .iter()
                    .map(|plane| ns.resolve(&plane.interface))
                    .collect()
            })
            .collect();
        for (p, plane) in policy.planes().iter().enumerate() {
            let missing: Vec<&str> = self
                .namespaces
                .iter()
                .zip(&resolved)
                .filter(|(_, r)| r[p].is_none())
                .map(|(ns, _)| ns.label.as_str())
                .collect();
            if !missing.is_empty() {
                warnings.push(format!(
                    "plane {:?}: no interface {} in network namespace{} {} ({}:{}): nothing \
                     there can be pinned to it, so its plane traffic is reported as unpinned",
                    plane.name,
                    plane.interface,
                    if missing.len() == 1 { "" } else { "s" },
                    list_some(&missing, 5),
                    policy.path().display(),
                    plane.interface_at,
                ));
            }
        }
        let mut violations = Vec::new();
        for (i, socket) in self.sockets.iter().enumerate() {
            let ns = &self.namespaces[socket.netns];
            evaluate(
                policy,
                &resolved[socket.netns],
                ns,
                i,
                socket,
                &mut violations,
            );
        }
        Check {
            violations,
            warnings,
        }
    }
}

/// The result of [`Audit::check`].
#[derive(Clone, Debug, Default)]
pub struct Check {
    /// Every socket that breaks a rule, once per rule and plane, in socket order.
    pub violations: Vec<Violation>,
    /// Problems with the policy in this host (an interface missing in a namespace).
    pub warnings: Vec<String>,
}

/// The rule a socket breaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Rule {
    /// A connected socket to a plane's peer, not pinned to the plane's interface.
    UnpinnedPlaneTraffic,
    /// A listener on a plane's port, not pinned to the plane's interface.
    UnpinnedPlaneListener,
    /// A connected socket pinned to a plane's interface, to a peer outside the plane.
    PinnedOffPlane,
}

impl Rule {
    /// The rule's name as printed and in JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Rule::UnpinnedPlaneTraffic => "unpinned-plane-traffic",
            Rule::UnpinnedPlaneListener => "unpinned-plane-listener",
            Rule::PinnedOffPlane => "pinned-off-plane",
        }
    }
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One broken rule.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Violation {
    /// Which rule.
    pub rule: Rule,
    /// The plane concerned.
    pub plane: String,
    /// Index of the socket in [`Audit::sockets`].
    pub socket: usize,
    /// Why, in words.
    pub reason: String,
}

fn evaluate(
    policy: &Policy,
    resolved: &[Option<IfIndex>],
    ns: &NamespaceSnapshot,
    index: usize,
    socket: &Socket,
    out: &mut Vec<Violation>,
) {
    let diag = &socket.diag;
    let bound = diag.bound_interface;
    let pinned_to = |plane_if: Option<IfIndex>| plane_if.is_some() && plane_if == bound;
    let bound_text = || match (bound, &socket.interface_name) {
        (None, _) => "it is not pinned at all".to_owned(),
        (Some(_), Some(name)) => format!("it is pinned to {name}"),
        (Some(index), None) => format!("it is pinned to interface index {index}"),
    };
    let mut push = |rule, plane: &Plane, reason| {
        out.push(Violation {
            rule,
            plane: plane.name.clone(),
            socket: index,
            reason,
        })
    };
    let peer = unmap(diag.remote.ip());
    let role = diag.role();
    for (plane, &plane_if) in policy.planes().iter().zip(resolved) {
        let want = match plane_if.and_then(|i| ns.interface_name(i)) {
            Some(name) => name.to_owned(),
            None => plane.interface.to_string(),
        };
        if role == Role::Connected {
            if plane.owns_peer(peer, bound, plane_if) && !pinned_to(plane_if) {
                push(
                    Rule::UnpinnedPlaneTraffic,
                    plane,
                    format!(
                        "peer {peer} belongs to plane {:?}{} but the socket is not pinned to \
                         {want} ({}): its packets follow the routing table",
                        plane.name,
                        prefix_of(plane, peer),
                        bound_text(),
                    ),
                );
            }
        } else if role == Role::Listening
            && plane.has_port(diag.local.port())
            && !pinned_to(plane_if)
            && !unmap(diag.local.ip()).is_loopback()
        {
            push(
                Rule::UnpinnedPlaneListener,
                plane,
                format!(
                    "port {} is a service port of plane {:?} but the socket is not pinned to \
                     {want} ({}): it can be reached through other interfaces",
                    diag.local.port(),
                    plane.name,
                    bound_text(),
                ),
            );
        }
    }
    // Pinned to some plane's interface, talking to a peer no plane of that interface owns.
    if role == Role::Connected && bound.is_some() {
        let mut planes_here = policy
            .planes()
            .iter()
            .zip(resolved)
            .filter(|(_, plane_if)| pinned_to(**plane_if));
        let first = planes_here.clone().next();
        let owned = planes_here.any(|(plane, plane_if)| plane.owns_peer(peer, bound, *plane_if));
        if let (Some((plane, _)), false) = (first, owned) {
            push(
                Rule::PinnedOffPlane,
                plane,
                format!(
                    "the socket is pinned to {} (plane {:?}) but its peer {peer} is outside the \
                     plane's prefixes: check the address it talks to, or the policy",
                    socket
                        .interface_name
                        .clone()
                        .unwrap_or_else(|| plane.interface.to_string()),
                    plane.name,
                ),
            );
        }
    }
}

fn prefix_of(plane: &Plane, peer: IpAddr) -> String {
    plane
        .prefixes
        .iter()
        .find(|net| net.contains(&peer))
        .map(|net| format!(" ({net})"))
        .unwrap_or_else(|| " (link-local on its interface)".to_owned())
}
