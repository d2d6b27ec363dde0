//! Shared set-up of the pinned-socket namespace tests: a chassis with responders on both
//! peers and frame counters on both links, and the unpinned "bind() only" negative controls.

#![allow(dead_code, reason = "each test file uses a different part")]

use std::io::Read;
use std::net::{IpAddr, SocketAddr, SocketAddrV6, UdpSocket};
use std::time::Duration;

use ifpin::Interface;
use netlab::{Chassis, FrameCounter, Proto, Served};
use socket2::{Domain, Socket, Type};

/// How long any single step may wait.
pub const WAIT: Duration = Duration::from_secs(5);

/// A chassis, its responders, and counters on both peers' ends.
pub struct Setup {
    /// Counter on the front peer's end of eth1: every frame counted is a leak. Declared first
    /// so it is dropped before the namespaces.
    pub front: FrameCounter,
    /// Counter on the backplane's end of ctl0.
    pub backplane: FrameCounter,
    /// Responders on both peers.
    pub served: Served,
    /// The namespaces.
    pub chassis: Chassis,
}

/// Builds the chassis with `proto` responders on `port`, or `None` (loud skip) without root.
pub fn setup(proto: Proto, port: u16) -> Option<Setup> {
    if !netlab::require_privileged() {
        return None;
    }
    let chassis = Chassis::new().expect("build the chassis");
    let served = chassis.serve(proto, port).expect("start responders");
    let front = chassis.front_counter().expect("front counter");
    let backplane = chassis.backplane_counter().expect("backplane counter");
    Some(Setup {
        front,
        backplane,
        served,
        chassis,
    })
}

impl Setup {
    /// `ctl0` resolved inside the host namespace.
    pub fn ctl0(&self) -> Interface {
        self.in_host(|| Interface::resolve(Chassis::CTL0).expect("resolve ctl0"))
    }

    /// Runs `f` on a thread inside the host namespace.
    pub fn in_host<T: Send>(&self, f: impl FnOnce() -> T + Send) -> T {
        self.chassis
            .host()
            .run(f)
            .expect("enter the host namespace")
    }

    /// Asserts that nothing from the host reached the front peer.
    pub fn assert_front_silent(&self, what: &str) {
        self.front.settle();
        assert_eq!(
            self.front.total(),
            0,
            "{what}: frames leaked out of eth1: {}",
            self.front.describe()
        );
    }

    /// Asserts that the front peer saw frames involving `ip` (a negative control).
    pub fn assert_front_saw(&self, ip: IpAddr, what: &str) {
        self.front.settle();
        assert!(
            self.front.count_involving(ip) > 0,
            "{what}: the negative control should have leaked to {ip} out of eth1, but the counter \
             saw nothing: {}",
            self.front.describe()
        );
    }

    /// Asserts that the backplane saw frames involving `ip`: the pinned traffic went there.
    pub fn assert_backplane_saw(&self, ip: IpAddr, what: &str) {
        self.backplane.settle();
        assert!(
            self.backplane.count_involving(ip) > 0,
            "{what}: nothing involving {ip} on ctl0: {}",
            self.backplane.describe()
        );
    }

    /// Clears both counters after letting them settle.
    pub fn reset_counters(&self) {
        self.front.settle();
        self.backplane.settle();
        self.front.clear();
        self.backplane.clear();
    }
}

/// The negative control: an unpinned TCP socket `bind()`-ed to ctl0's address `local`,
/// connecting to `dst` from inside the host; returns what answered.
pub fn tcp_bind_only(setup: &Setup, local: IpAddr, dst: SocketAddr) -> String {
    setup.in_host(|| {
        let socket = Socket::new(Domain::for_address(dst), Type::STREAM, None).unwrap();
        socket
            .bind(&SocketAddr::new(local, 0).into())
            .expect("bind to ctl0's address");
        socket
            .connect_timeout(&dst.into(), WAIT)
            .expect("the bind()-only socket connects (through eth1)");
        let mut stream: std::net::TcpStream = socket.into();
        stream.set_read_timeout(Some(WAIT)).unwrap();
        let mut text = String::new();
        stream.read_to_string(&mut text).unwrap();
        text
    })
}

/// The negative control for UDP: an unpinned socket bound to `local`, one datagram to `dst`.
pub fn udp_bind_only(setup: &Setup, local: IpAddr, dst: SocketAddr) -> String {
    setup.in_host(|| {
        let socket = UdpSocket::bind(SocketAddr::new(local, 0)).expect("bind to ctl0's address");
        socket.set_read_timeout(Some(WAIT)).unwrap();
        socket.send_to(b"hello", dst).unwrap();
        let mut buf = [0u8; 64];
        let (n, _) = socket
            .recv_from(&mut buf)
            .expect("an answer (from the front)");
        String::from_utf8_lossy(&buf[..n]).into_owned()
    })
}

/// A link-local socket address with an explicit scope.
pub fn ll(ip: std::net::Ipv6Addr, port: u16, scope: u32) -> SocketAddr {
    SocketAddr::V6(SocketAddrV6::new(ip, port, 0, scope))
}
