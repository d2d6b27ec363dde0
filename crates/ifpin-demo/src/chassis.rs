//! The chassis of `docs/kernel.md`, ready to use: a card with a control link and a
//! front-panel port whose routing table would carry control traffic out of the front.
//!
//! ```text
//!            backplane ns                    host ns (card under test)                 front ns
//!  lo: 10.99.7.2, fd99:7::2                                                   lo: 10.99.7.2, fd99:7::2
//!  peer-ctl0 10.10.0.2/24  <---veth--->  ctl0 10.10.0.1/24   eth1 10.20.0.1/24  <---veth--->  peer-eth1 10.20.0.2/24
//!            fd10::2/64                       fd10::1/64          fd20::1/64                  fd20::2/64
//!            fe80::2/64                       fe80::1/64          fe80::4/64                  fe80::3/64
//! ```
//!
//! Host routes: `default via 10.20.0.2 dev eth1 metric 100` and the fallback
//! `default via 10.10.0.2 dev ctl0 metric 1000` (same for IPv6 via `fd20::2` / `fd10::2`), so
//! an unbound socket goes out `eth1` while a socket bound to `ctl0` finds a route on `ctl0`.
//! The control-plane destination ([`Chassis::CONTROL_V4`], [`Chassis::CONTROL_V6`]) exists
//! behind *both* peers, and each peer routes back to the host, so a control packet that leaks
//! out of `eth1` is answered (by `front`) and unmistakable. All link-local addresses are fixed
//! (`nodad`), and automatic link-local addresses are off.
//!
//! Lifecycle helpers ([`Chassis::ctl0_down`], [`Chassis::restore_ctl0`],
//! [`Chassis::delete_ctl0`], [`Chassis::rename_ctl0`], [`Chassis::add_host_link`]) cover the
//! "the binding is an ifindex" cases: a test can delete `ctl0` and create a different device
//! with the old index that leads to `front`.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use crate::counter::FrameCounter;
use crate::error::Result;
use crate::lab::{LINK_UP_TIMEOUT, Lab, Route};
use crate::netns::Netns;
use crate::responder::{Proto, Responder};

/// One of the two peers of the host.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Peer {
    /// The far end of `ctl0` (the internal control network).
    Backplane,
    /// The far end of `eth1` (the front-panel port).
    Front,
}

/// Host label of the card under test.
pub const HOST: &str = "host";
/// Host label of the far end of `ctl0`.
pub const BACKPLANE: &str = "backplane";
/// Host label of the far end of `eth1`.
pub const FRONT: &str = "front";

/// The chassis topology; see [the module docs](self). Everything is deleted on drop.
#[derive(Debug)]
pub struct Chassis {
    lab: Lab,
}

impl Chassis {
    /// The host's control interface.
    pub const CTL0: &'static str = "ctl0";
    /// The host's front-panel interface.
    pub const ETH1: &'static str = "eth1";
    /// The backplane's end of the `ctl0` link.
    pub const BACKPLANE_IF: &'static str = "peer-ctl0";
    /// The front peer's end of the `eth1` link.
    pub const FRONT_IF: &'static str = "peer-eth1";

    /// The control-plane destination, IPv4 (on `lo` of both peers).
    pub const CONTROL_V4: Ipv4Addr = Ipv4Addr::new(10, 99, 7, 2);
    /// The control-plane destination, IPv6 (on `lo` of both peers).
    pub const CONTROL_V6: Ipv6Addr = Ipv6Addr::new(0xfd99, 7, 0, 0, 0, 0, 0, 2);

    /// Host address on `ctl0`, IPv4.
    pub const HOST_CTL0_V4: Ipv4Addr = Ipv4Addr::new(10, 10, 0, 1);
    /// Host address on `ctl0`, IPv6.
    pub const HOST_CTL0_V6: Ipv6Addr = Ipv6Addr::new(0xfd10, 0, 0, 0, 0, 0, 0, 1);
    /// Host link-local address on `ctl0`.
    pub const HOST_CTL0_LL: Ipv6Addr = Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 1);
    /// Backplane address on its end of `ctl0`, IPv4.
    pub const BACKPLANE_V4: Ipv4Addr = Ipv4Addr::new(10, 10, 0, 2);
    /// Backplane address on its end of `ctl0`, IPv6.
    pub const BACKPLANE_V6: Ipv6Addr = Ipv6Addr::new(0xfd10, 0, 0, 0, 0, 0, 0, 2);
    /// Backplane link-local address.
    pub const BACKPLANE_LL: Ipv6Addr = Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 2);

    /// Host address on `eth1`, IPv4.
    pub const HOST_ETH1_V4: Ipv4Addr = Ipv4Addr::new(10, 20, 0, 1);
    /// Host address on `eth1`, IPv6.
    pub const HOST_ETH1_V6: Ipv6Addr = Ipv6Addr::new(0xfd20, 0, 0, 0, 0, 0, 0, 1);
    /// Host link-local address on `eth1`.
    pub const HOST_ETH1_LL: Ipv6Addr = Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 4);
    /// Front peer address on its end of `eth1`, IPv4.
    pub const FRONT_V4: Ipv4Addr = Ipv4Addr::new(10, 20, 0, 2);
    /// Front peer address on its end of `eth1`, IPv6.
    pub const FRONT_V6: Ipv6Addr = Ipv6Addr::new(0xfd20, 0, 0, 0, 0, 0, 0, 2);
    /// Front peer link-local address.
    pub const FRONT_LL: Ipv6Addr = Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 3);

    /// Metric of the host's default routes out of `eth1`.
    pub const FRONT_METRIC: u32 = 100;
    /// Metric of the host's fallback default routes via `ctl0`.
    pub const FALLBACK_METRIC: u32 = 1000;

    /// Builds the chassis (three namespaces, two veth links).
    pub fn new() -> Result<Chassis> {
        let c = |ip: &dyn ToString, len: u8| format!("{}/{len}", ip.to_string());
        let mut b = Lab::builder()
            .host(HOST)
            .host(BACKPLANE)
            .host(FRONT)
            .link((HOST, Self::CTL0), (BACKPLANE, Self::BACKPLANE_IF))
            .link((HOST, Self::ETH1), (FRONT, Self::FRONT_IF));
        for (host, ifname, cidr) in Self::ctl0_host_addrs()
            .into_iter()
            .chain(Self::ctl0_backplane_addrs())
        {
            b = b.addr(host, ifname, &cidr);
        }
        b = b
            .addr(HOST, Self::ETH1, &c(&Self::HOST_ETH1_V4, 24))
            .addr(HOST, Self::ETH1, &c(&Self::HOST_ETH1_V6, 64))
            .addr(HOST, Self::ETH1, &c(&Self::HOST_ETH1_LL, 64))
            .addr(FRONT, Self::FRONT_IF, &c(&Self::FRONT_V4, 24))
            .addr(FRONT, Self::FRONT_IF, &c(&Self::FRONT_V6, 64))
            .addr(FRONT, Self::FRONT_IF, &c(&Self::FRONT_LL, 64));
        for peer in [BACKPLANE, FRONT] {
            b = b.addr(peer, "lo", &c(&Self::CONTROL_V4, 32)).addr(
                peer,
                "lo",
                &c(&Self::CONTROL_V6, 128),
            );
        }
        b = b
            .route(
                HOST,
                Route::new("default")
                    .via(&Self::FRONT_V4.to_string())
                    .dev(Self::ETH1)
                    .metric(Self::FRONT_METRIC),
            )
            .route(
                HOST,
                Route::new("default")
                    .via(&Self::FRONT_V6.to_string())
                    .dev(Self::ETH1)
                    .metric(Self::FRONT_METRIC),
            )
            .route(
                FRONT,
                Route::new("default")
                    .via(&Self::HOST_ETH1_V4.to_string())
                    .dev(Self::FRONT_IF),
            )
            .route(
                FRONT,
                Route::new("default")
                    .via(&Self::HOST_ETH1_V6.to_string())
                    .dev(Self::FRONT_IF),
            );
        for (host, route) in Self::ctl0_routes() {
            b = b.route(host, route);
        }
        Ok(Chassis { lab: b.build()? })
    }

    fn ctl0_host_addrs() -> Vec<(&'static str, &'static str, String)> {
        vec![
            (HOST, Self::CTL0, format!("{}/24", Self::HOST_CTL0_V4)),
            (HOST, Self::CTL0, format!("{}/64", Self::HOST_CTL0_V6)),
            (HOST, Self::CTL0, format!("{}/64", Self::HOST_CTL0_LL)),
        ]
    }

    fn ctl0_backplane_addrs() -> Vec<(&'static str, &'static str, String)> {
        vec![
            (
                BACKPLANE,
                Self::BACKPLANE_IF,
                format!("{}/24", Self::BACKPLANE_V4),
            ),
            (
                BACKPLANE,
                Self::BACKPLANE_IF,
                format!("{}/64", Self::BACKPLANE_V6),
            ),
            (
                BACKPLANE,
                Self::BACKPLANE_IF,
                format!("{}/64", Self::BACKPLANE_LL),
            ),
        ]
    }

    fn ctl0_routes() -> Vec<(&'static str, Route)> {
        vec![
            (
                HOST,
                Route::new("default")
                    .via(&Self::BACKPLANE_V4.to_string())
                    .dev(Self::CTL0)
                    .metric(Self::FALLBACK_METRIC),
            ),
            (
                HOST,
                Route::new("default")
                    .via(&Self::BACKPLANE_V6.to_string())
                    .dev(Self::CTL0)
                    .metric(Self::FALLBACK_METRIC),
            ),
            (
                BACKPLANE,
                Route::new("default")
                    .via(&Self::HOST_CTL0_V4.to_string())
                    .dev(Self::BACKPLANE_IF),
            ),
            (
                BACKPLANE,
                Route::new("default")
                    .via(&Self::HOST_CTL0_V6.to_string())
                    .dev(Self::BACKPLANE_IF),
            ),
        ]
    }

    /// The card under test.
    pub fn host(&self) -> &Netns {
        self.lab.host(HOST)
    }

    /// The far end of `ctl0`.
    pub fn backplane(&self) -> &Netns {
        self.lab.host(BACKPLANE)
    }

    /// The far end of `eth1`.
    pub fn front(&self) -> &Netns {
        self.lab.host(FRONT)
    }

    /// The namespace of `peer`.
    pub fn peer(&self, peer: Peer) -> &Netns {
        match peer {
            Peer::Backplane => self.backplane(),
            Peer::Front => self.front(),
        }
    }

    /// The underlying [`Lab`].
    pub fn lab(&self) -> &Lab {
        &self.lab
    }

    /// The host's control interface name (`ctl0`).
    pub fn ctl0(&self) -> &'static str {
        Self::CTL0
    }

    /// The host's front-panel interface name (`eth1`).
    pub fn eth1(&self) -> &'static str {
        Self::ETH1
    }

    /// The interface name on `peer`'s side of its link.
    pub fn peer_if(&self, peer: Peer) -> &'static str {
        match peer {
            Peer::Backplane => Self::BACKPLANE_IF,
            Peer::Front => Self::FRONT_IF,
        }
    }

    /// The control-plane destination, IPv4.
    pub fn control_v4(&self) -> IpAddr {
        IpAddr::V4(Self::CONTROL_V4)
    }

    /// The control-plane destination, IPv6.
    pub fn control_v6(&self) -> IpAddr {
        IpAddr::V6(Self::CONTROL_V6)
    }

    /// `peer`'s IPv4 address on its link.
    pub fn peer_v4(&self, peer: Peer) -> IpAddr {
        IpAddr::V4(match peer {
            Peer::Backplane => Self::BACKPLANE_V4,
            Peer::Front => Self::FRONT_V4,
        })
    }

    /// `peer`'s IPv6 (ULA) address on its link.
    pub fn peer_v6(&self, peer: Peer) -> IpAddr {
        IpAddr::V6(match peer {
            Peer::Backplane => Self::BACKPLANE_V6,
            Peer::Front => Self::FRONT_V6,
        })
    }

    /// `peer`'s fixed link-local address on its link.
    pub fn peer_ll(&self, peer: Peer) -> Ipv6Addr {
        match peer {
            Peer::Backplane => Self::BACKPLANE_LL,
            Peer::Front => Self::FRONT_LL,
        }
    }

    /// The host's interface towards `peer` (`ctl0` or `eth1`).
    pub fn host_if(&self, peer: Peer) -> &'static str {
        match peer {
            Peer::Backplane => Self::CTL0,
            Peer::Front => Self::ETH1,
        }
    }

    /// The host's IPv4 address on the link to `peer`.
    pub fn host_v4(&self, peer: Peer) -> IpAddr {
        IpAddr::V4(match peer {
            Peer::Backplane => Self::HOST_CTL0_V4,
            Peer::Front => Self::HOST_ETH1_V4,
        })
    }

    /// The host's IPv6 (ULA) address on the link to `peer`.
    pub fn host_v6(&self, peer: Peer) -> IpAddr {
        IpAddr::V6(match peer {
            Peer::Backplane => Self::HOST_CTL0_V6,
            Peer::Front => Self::HOST_ETH1_V6,
        })
    }

    /// The host's fixed link-local address on the link to `peer`.
    pub fn host_ll(&self, peer: Peer) -> Ipv6Addr {
        match peer {
            Peer::Backplane => Self::HOST_CTL0_LL,
            Peer::Front => Self::HOST_ETH1_LL,
        }
    }

    /// Interface index of `ctl0` in the host namespace (it changes after
    /// [`Chassis::delete_ctl0`] + re-creation).
    pub fn ctl0_index(&self) -> Result<u32> {
        self.host().ifindex(Self::CTL0)
    }

    /// Interface index of `eth1` in the host namespace.
    pub fn eth1_index(&self) -> Result<u32> {
        self.host().ifindex(Self::ETH1)
    }

    /// A [`FrameCounter`] on `peer`'s end of its link: counts what the host sent on `ctl0`
    /// (backplane) or `eth1` (front).
    pub fn counter(&self, peer: Peer) -> Result<FrameCounter> {
        FrameCounter::open(self.peer(peer), self.peer_if(peer))
    }

    /// A [`FrameCounter`] on the front peer's end of `eth1`: every frame it counts is a leak.
    pub fn front_counter(&self) -> Result<FrameCounter> {
        self.counter(Peer::Front)
    }

    /// A [`FrameCounter`] on the backplane's end of `ctl0`.
    pub fn backplane_counter(&self) -> Result<FrameCounter> {
        self.counter(Peer::Backplane)
    }

    /// Starts `proto` responders on `port` on both peers, IPv4 (`0.0.0.0`) and IPv6
    /// (`[::]`, v6-only), so the control destination, the peer addresses and link-local
    /// addresses all answer, with `backplane\n` or `front\n`.
    pub fn serve(&self, proto: Proto, port: u16) -> Result<Served> {
        let any4 = SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), port);
        let any6 = SocketAddr::new(IpAddr::V6(Ipv6Addr::UNSPECIFIED), port);
        let start = |ns: &Netns, a| Responder::start(ns, a, proto, None);
        Ok(Served {
            backplane: vec![
                start(self.backplane(), any4)?,
                start(self.backplane(), any6)?,
            ],
            front: vec![start(self.front(), any4)?, start(self.front(), any6)?],
        })
    }

    /// `ip link set ctl0 down` in the host (IPv4 routes via ctl0 and its IPv6 addresses go
    /// away, as the kernel does).
    pub fn ctl0_down(&self) -> Result<()> {
        self.host().link_down(Self::CTL0)
    }

    /// `ip link set ctl0 up` in the host and wait until it carries frames, nothing else (IPv6
    /// addresses stay gone; see [`Chassis::restore_ctl0`]).
    pub fn ctl0_up(&self) -> Result<()> {
        self.host().link_up(Self::CTL0)?;
        self.wait_link(Peer::Backplane, Self::CTL0, Self::BACKPLANE_IF)
    }

    /// Waits until both ends of the host's link `host_if` to `peer` (`peer_if`) carry frames.
    fn wait_link(&self, peer: Peer, host_if: &str, peer_if: &str) -> Result<()> {
        self.host().wait_link_up(host_if, LINK_UP_TIMEOUT)?;
        self.peer(peer).wait_link_up(peer_if, LINK_UP_TIMEOUT)
    }

    /// Brings `ctl0` up and puts back its addresses and the routes through it on both ends
    /// (idempotent: `ip addr/route replace`). After [`Chassis::delete_ctl0`], call
    /// [`Chassis::recreate_ctl0`] instead.
    pub fn restore_ctl0(&self) -> Result<()> {
        self.host().link_up(Self::CTL0)?;
        self.backplane().link_up(Self::BACKPLANE_IF)?;
        self.wait_link(Peer::Backplane, Self::CTL0, Self::BACKPLANE_IF)?;
        for (host, ifname, cidr) in Self::ctl0_host_addrs()
            .into_iter()
            .chain(Self::ctl0_backplane_addrs())
        {
            self.lab.host(host).add_addr(ifname, &cidr)?;
        }
        for (host, route) in Self::ctl0_routes() {
            route.apply(self.lab.host(host))?;
        }
        Ok(())
    }

    /// Deletes `ctl0` (and with it the backplane's end of the link).
    pub fn delete_ctl0(&self) -> Result<()> {
        self.host().ip(&["link", "del", Self::CTL0]).map(drop)
    }

    /// Renames `ctl0` to `new_name` in the host (`ip link set dev ctl0 name NEW`); fails if
    /// the kernel refuses (e.g. an old kernel and the link is up).
    pub fn rename_ctl0(&self, new_name: &str) -> Result<()> {
        crate::netns::check_ifname(new_name)?;
        self.host()
            .ip(&["link", "set", "dev", Self::CTL0, "name", new_name])
            .map(drop)
    }

    /// Re-creates the original `ctl0` link to the backplane (after [`Chassis::delete_ctl0`]),
    /// with interface index `index` if given, and restores its addresses and routes.
    pub fn recreate_ctl0(&self, index: Option<u32>) -> Result<()> {
        self.host()
            .add_veth(Self::CTL0, index, self.backplane(), Self::BACKPLANE_IF)?;
        self.restore_ctl0()
    }

    /// Creates a new veth link from the host (interface `host_if`, with interface index
    /// `index` if given) to `peer` (interface `peer_if`), both ends up and carrying frames when
    /// this returns, no addresses.
    ///
    /// With `index` = the old index of a deleted `ctl0` and `peer` = [`Peer::Front`], this is
    /// "a different device with the old ifindex" that leads out of the front panel.
    pub fn add_host_link(
        &self,
        host_if: &str,
        index: Option<u32>,
        peer: Peer,
        peer_if: &str,
    ) -> Result<()> {
        self.host()
            .add_veth(host_if, index, self.peer(peer), peer_if)?;
        self.host().link_up(host_if)?;
        self.peer(peer).link_up(peer_if)?;
        self.wait_link(peer, host_if, peer_if)
    }
}

/// Responders started by [`Chassis::serve`]; stopped on drop.
#[derive(Debug)]
pub struct Served {
    /// IPv4 and IPv6 responders on the backplane.
    pub backplane: Vec<Responder>,
    /// IPv4 and IPv6 responders on the front peer.
    pub front: Vec<Responder>,
}

impl Served {
    /// Connections/datagrams the backplane received.
    pub fn backplane_hits(&self) -> usize {
        self.backplane.iter().map(Responder::hits).sum()
    }

    /// Connections/datagrams the front peer received.
    pub fn front_hits(&self) -> usize {
        self.front.iter().map(Responder::hits).sum()
    }

    /// Connections/datagrams `peer` received.
    pub fn hits(&self, peer: Peer) -> usize {
        match peer {
            Peer::Backplane => self.backplane_hits(),
            Peer::Front => self.front_hits(),
        }
    }
}
