//! `ifpin guard`, ingress: a plane source arriving through the front (spoofed) and a front
//! connection to a plane port are dropped, while the backplane's are accepted. The negative
//! control: without the guard, both arrive from the front too.

#[path = "support/mod.rs"]
mod support;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use netlab::Chassis;
use support::guard::{Guard, PLANE_PORT, POLICY, PolicyFile, received, udp_receiver};

const UDP_PORT: u16 = 7_801;

#[test]
fn spoofed_plane_sources_and_front_connections_to_plane_ports_are_dropped() {
    if !netlab::require_privileged() {
        return;
    }
    let chassis = Chassis::new().unwrap();
    // An unpinned service on the plane's port, and a UDP socket for the spoofed datagrams.
    let service = support::guard::Listener::start(
        chassis.host(),
        SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), PLANE_PORT),
    );
    let inbox = udp_receiver(
        chassis.host(),
        SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), UDP_PORT),
    );
    let control_ip = IpAddr::V4(Chassis::CONTROL_V4);
    let control = Some(control_ip);
    let via_front = SocketAddr::new(IpAddr::V4(Chassis::HOST_ETH1_V4), PLANE_PORT);
    let via_backplane = SocketAddr::new(IpAddr::V4(Chassis::HOST_CTL0_V4), PLANE_PORT);
    let udp_front = SocketAddr::new(IpAddr::V4(Chassis::HOST_ETH1_V4), UDP_PORT);
    let udp_backplane = SocketAddr::new(IpAddr::V4(Chassis::HOST_CTL0_V4), UDP_PORT);
    let short = Duration::from_millis(700);

    // Negative control: the front reaches the plane's port, and its spoofed plane source
    // is delivered.
    assert!(support::guard::tcp_connects(
        chassis.front(),
        None,
        via_front,
        short
    ));
    support::guard::send_udp(chassis.front(), control, udp_front, 3);
    let got = received(&inbox);
    assert!(
        got.iter().any(|a| a.ip() == control_ip),
        "without the guard the spoofed datagram arrives: {got:?}"
    );

    let policy = PolicyFile::new(POLICY);
    let guard = Guard::start(chassis.host(), policy.path(), &[]);
    let accepted_before = service.accepted().len();
    assert!(
        !support::guard::tcp_connects(chassis.front(), None, via_front, short),
        "a front connection to the plane port must be dropped"
    );
    assert!(
        support::guard::tcp_connects(chassis.backplane(), None, via_backplane, short),
        "the backplane's connection to the plane port must pass"
    );
    std::thread::sleep(Duration::from_millis(100));
    let accepted: Vec<_> = service.accepted()[accepted_before..].to_vec();
    assert!(
        accepted
            .iter()
            .all(|a| a.ip() == IpAddr::V4(Chassis::BACKPLANE_V4)),
        "{accepted:?}"
    );
    assert_eq!(accepted.len(), 1, "{accepted:?}");

    support::guard::send_udp(chassis.front(), control, udp_front, 3);
    support::guard::send_udp(chassis.backplane(), control, udp_backplane, 3);
    let got = received(&inbox);
    assert_eq!(got.len(), 3, "only the backplane's datagrams: {got:?}");

    let port_event = guard.expect_event("plane-port drop", |e| {
        e["type"] == "drop" && e["rule"] == "plane-port"
    });
    assert_eq!(port_event["direction"], "ingress", "{port_event}");
    assert_eq!(port_event["interface"], "eth1", "{port_event}");
    assert_eq!(port_event["dport"], PLANE_PORT, "{port_event}");
    assert_eq!(
        port_event["src"],
        Chassis::FRONT_V4.to_string(),
        "{port_event}"
    );
    assert_eq!(port_event["sender"], "remote", "{port_event}");
    let spoof = guard.expect_event("spoofed-source drop", |e| {
        e["type"] == "drop" && e["rule"] == "spoofed-source"
    });
    assert_eq!(spoof["src"], Chassis::CONTROL_V4.to_string(), "{spoof}");
    assert_eq!(spoof["interface"], "eth1", "{spoof}");
    assert!(
        !guard
            .events()
            .iter()
            .any(|e| e["type"] == "drop" && e["interface"] == "ctl0"),
        "nothing on the plane's own interface is dropped: {:?}",
        guard.events()
    );
}

#[test]
fn loopback_to_the_hosts_own_plane_address_keeps_working() {
    if !netlab::require_privileged() {
        return;
    }
    let chassis = Chassis::new().unwrap();
    let policy = PolicyFile::new(POLICY);
    let guard = Guard::start(chassis.host(), policy.path(), &[]);
    // The host's ctl0 address is in the plane's prefixes (10.10.0.0/24, fd10::/64), and so
    // is its listener's port: a local connection to it travels over lo, source and
    // destination in the plane, and must pass.
    for addr in [
        IpAddr::V4(Chassis::HOST_CTL0_V4),
        IpAddr::V6(Chassis::HOST_CTL0_V6),
    ] {
        let service =
            support::guard::Listener::start(chassis.host(), SocketAddr::new(addr, PLANE_PORT));
        assert!(
            support::guard::tcp_connects(
                chassis.host(),
                Some(addr),
                SocketAddr::new(addr, PLANE_PORT),
                Duration::from_secs(2)
            ),
            "a local connection to {addr} over lo"
        );
        std::thread::sleep(Duration::from_millis(100));
        assert_eq!(service.accepted().len(), 1);
    }
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        !guard.events().iter().any(|e| e["type"] == "drop"),
        "{:?}",
        guard.events()
    );
}
