//! Declarative topologies: describe hosts, links, addresses, routes and sysctls, then build.
//!
//! [`Lab::builder`] collects the description without touching the system; [`LabBuilder::build`]
//! creates one [`Netns`] per host, the veth pairs directly inside their namespaces, applies
//! sysctls, brings links up (and waits until they carry frames), adds addresses (IPv6 with
//! `nodad`), then routes, in that order. Any
//! failure drops what was built so far. Dropping the [`Lab`] deletes every namespace (and so
//! every veth).
//!
//! ```
//! # fn main() -> ifpin_demo::Result<()> {
//! # if ifpin_demo::privilege_problem().is_some() { return Ok(()); }
//! use ifpin_demo::{Lab, Route};
//! let lab = Lab::builder()
//!     .host("a")
//!     .host("b")
//!     .link(("a", "veth0"), ("b", "veth0"))
//!     .addr("a", "veth0", "10.1.0.1/24")
//!     .addr("b", "veth0", "10.1.0.2/24")
//!     .route("a", Route::new("default").via("10.1.0.2").dev("veth0").metric(10))
//!     .build()?;
//! assert!(lab.host("a").name().starts_with("nl-a-"));
//! # Ok(()) }
//! ```

use std::collections::BTreeMap;

use crate::error::{Error, Result};
use crate::netns::{Netns, check_ifname};

/// How long [`LabBuilder::build`] and the chassis helpers wait for a link to come up.
pub const LINK_UP_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// A route, in `ip route` terms.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    dst: String,
    via: Option<String>,
    dev: Option<String>,
    metric: Option<u32>,
    src: Option<String>,
    onlink: bool,
}

impl Route {
    /// A route to `dst` (`default`, `10.0.0.0/8`, `fd00::/64`...).
    pub fn new(dst: &str) -> Route {
        Route {
            dst: dst.to_owned(),
            via: None,
            dev: None,
            metric: None,
            src: None,
            onlink: false,
        }
    }

    /// Through gateway `gw`.
    pub fn via(mut self, gw: &str) -> Route {
        self.via = Some(gw.to_owned());
        self
    }

    /// Out of interface `dev`.
    pub fn dev(mut self, dev: &str) -> Route {
        self.dev = Some(dev.to_owned());
        self
    }

    /// With metric (priority) `metric`; lower wins.
    pub fn metric(mut self, metric: u32) -> Route {
        self.metric = Some(metric);
        self
    }

    /// With preferred source address `src`.
    pub fn src(mut self, src: &str) -> Route {
        self.src = Some(src.to_owned());
        self
    }

    /// Gateway is on-link even if no prefix covers it.
    pub fn onlink(mut self) -> Route {
        self.onlink = true;
        self
    }

    /// Whether the route is IPv6 (decided by its destination or gateway).
    pub fn is_ipv6(&self) -> bool {
        self.dst.contains(':') || self.via.as_deref().is_some_and(|v| v.contains(':'))
    }

    /// The arguments after `ip route replace`.
    pub fn to_args(&self) -> Vec<String> {
        let mut args = Vec::new();
        if self.is_ipv6() {
            args.push("-6".to_owned());
        }
        args.extend(["route".to_owned(), "replace".to_owned(), self.dst.clone()]);
        if let Some(v) = &self.via {
            args.extend(["via".to_owned(), v.clone()]);
        }
        if let Some(d) = &self.dev {
            args.extend(["dev".to_owned(), d.clone()]);
        }
        if let Some(m) = self.metric {
            args.extend(["metric".to_owned(), m.to_string()]);
        }
        if let Some(s) = &self.src {
            args.extend(["src".to_owned(), s.clone()]);
        }
        if self.onlink {
            args.push("onlink".to_owned());
        }
        args
    }

    /// Adds (or replaces) this route in `ns`.
    pub fn apply(&self, ns: &Netns) -> Result<()> {
        let args = self.to_args();
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        ns.ip(&refs).map(drop)
    }
}

#[derive(Debug, Clone)]
struct LinkSpec {
    a: (String, String),
    b: (String, String),
    index: Option<u32>,
}

/// Description of a lab; see [the module docs](self).
#[derive(Debug, Clone, Default)]
#[must_use = "a LabBuilder does nothing until build() is called"]
pub struct LabBuilder {
    hosts: Vec<String>,
    links: Vec<LinkSpec>,
    addrs: Vec<(String, String, String)>,
    routes: Vec<(String, Route)>,
    sysctls: Vec<(String, String, String)>,
    down: Vec<(String, String)>,
}

impl LabBuilder {
    /// Adds a host (a namespace labelled `name`).
    pub fn host(mut self, name: &str) -> Self {
        self.hosts.push(name.to_owned());
        self
    }

    /// Adds a veth link between interface `a.1` on host `a.0` and `b.1` on host `b.0`.
    pub fn link(self, a: (&str, &str), b: (&str, &str)) -> Self {
        self.link_with_index(a, b, None)
    }

    /// Like [`LabBuilder::link`], giving the `a` end interface index `index`.
    pub fn link_with_index(mut self, a: (&str, &str), b: (&str, &str), index: Option<u32>) -> Self {
        self.links.push(LinkSpec {
            a: (a.0.to_owned(), a.1.to_owned()),
            b: (b.0.to_owned(), b.1.to_owned()),
            index,
        });
        self
    }

    /// Adds address `cidr` to `ifname` on `host` (`10.0.0.1/24`, `fd00::1/64`,
    /// `fe80::2/64`; IPv6 added with `nodad`). Use interface `lo` for host-local addresses.
    pub fn addr(mut self, host: &str, ifname: &str, cidr: &str) -> Self {
        self.addrs
            .push((host.to_owned(), ifname.to_owned(), cidr.to_owned()));
        self
    }

    /// Adds a route on `host`, applied after all links are up.
    pub fn route(mut self, host: &str, route: Route) -> Self {
        self.routes.push((host.to_owned(), route));
        self
    }

    /// Sets a sysctl on `host` (dotted or `/` form, see [`Netns::sysctl`]), applied after the
    /// links exist (so per-interface keys work) and before they come up.
    pub fn sysctl(mut self, host: &str, key: &str, value: &str) -> Self {
        self.sysctls
            .push((host.to_owned(), key.to_owned(), value.to_owned()));
        self
    }

    /// Leaves `ifname` on `host` down after build (links come up by default).
    pub fn keep_down(mut self, host: &str, ifname: &str) -> Self {
        self.down.push((host.to_owned(), ifname.to_owned()));
        self
    }

    /// Creates everything. On error, whatever was created is removed again.
    pub fn build(self) -> Result<Lab> {
        // Check the description before creating anything.
        let known = |h: &str| -> Result<()> {
            if self.hosts.iter().any(|x| x == h) {
                Ok(())
            } else {
                Err(Error::Invalid {
                    what: "host",
                    value: h.to_owned(),
                    reason: "not declared with LabBuilder::host()".to_owned(),
                })
            }
        };
        for l in &self.links {
            known(&l.a.0)?;
            known(&l.b.0)?;
            check_ifname(&l.a.1)?;
            check_ifname(&l.b.1)?;
        }
        for (h, i, _) in &self.addrs {
            known(h)?;
            check_ifname(i)?;
        }
        for (h, _) in &self.routes {
            known(h)?;
        }
        for (h, _, _) in &self.sysctls {
            known(h)?;
        }

        let mut lab = Lab {
            hosts: BTreeMap::new(),
        };
        for h in &self.hosts {
            if lab.hosts.contains_key(h) {
                return Err(Error::Invalid {
                    what: "host",
                    value: h.clone(),
                    reason: "declared twice".to_owned(),
                });
            }
            lab.hosts.insert(h.clone(), Netns::new(h)?);
        }
        for l in &self.links {
            lab.host(&l.a.0)
                .add_veth(&l.a.1, l.index, lab.host(&l.b.0), &l.b.1)?;
        }
        for (h, key, value) in &self.sysctls {
            lab.host(h).sysctl(key, value)?;
        }
        let is_up = |h: &String, i: &String| !self.down.iter().any(|(dh, di)| dh == h && di == i);
        for l in &self.links {
            for (h, i) in [&l.a, &l.b] {
                if is_up(h, i) {
                    lab.host(h).link_up(i)?;
                }
            }
        }
        // Links with both ends up must be able to carry frames when build() returns.
        for l in &self.links {
            if is_up(&l.a.0, &l.a.1) && is_up(&l.b.0, &l.b.1) {
                lab.host(&l.a.0).wait_link_up(&l.a.1, LINK_UP_TIMEOUT)?;
                lab.host(&l.b.0).wait_link_up(&l.b.1, LINK_UP_TIMEOUT)?;
            }
        }
        for (h, i, cidr) in &self.addrs {
            lab.host(h).add_addr(i, cidr)?;
        }
        for (h, r) in &self.routes {
            r.apply(lab.host(h))?;
        }
        Ok(lab)
    }
}

/// A built topology: one [`Netns`] per host, deleted on drop.
#[derive(Debug)]
pub struct Lab {
    hosts: BTreeMap<String, Netns>,
}

impl Lab {
    /// Starts describing a lab.
    pub fn builder() -> LabBuilder {
        LabBuilder::default()
    }

    /// The namespace of host `name`.
    ///
    /// # Panics
    /// If no such host was declared (a bug in the test); see [`Lab::get`].
    pub fn host(&self, name: &str) -> &Netns {
        match self.hosts.get(name) {
            Some(ns) => ns,
            None => panic!("netlab: no host `{name}` in this lab"),
        }
    }

    /// The namespace of host `name`, if declared.
    pub fn get(&self, name: &str) -> Option<&Netns> {
        self.hosts.get(name)
    }

    /// All hosts, by name.
    pub fn hosts(&self) -> impl Iterator<Item = (&str, &Netns)> {
        self.hosts.iter().map(|(k, v)| (k.as_str(), v))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn route_arguments_follow_ip_route() {
        let r = Route::new("default")
            .via("10.0.0.2")
            .dev("eth1")
            .metric(100);
        assert!(!r.is_ipv6());
        assert_eq!(
            r.to_args(),
            [
                "route", "replace", "default", "via", "10.0.0.2", "dev", "eth1", "metric", "100"
            ]
        );
        let r = Route::new("default")
            .via("fd10::2")
            .dev("ctl0")
            .src("fd10::1")
            .onlink();
        assert!(r.is_ipv6());
        assert_eq!(
            r.to_args(),
            [
                "-6", "route", "replace", "default", "via", "fd10::2", "dev", "ctl0", "src",
                "fd10::1", "onlink"
            ]
        );
        assert!(Route::new("fd99::/64").is_ipv6());
    }
}
