//! Privileged tests of the chassis lifecycle helpers (down/up, delete, rename, a new device
//! with an old ifindex) and of the lab builder's input checks.

use std::net::{SocketAddr, UdpSocket};
use std::time::Duration;

use netlab::{Chassis, Error, Lab, Peer, Proto};

/// A UDP socket in the host bound to `dev` with SO_BINDTODEVICE.
fn bound_udp(chassis: &Chassis, dev: &str) -> UdpSocket {
    chassis
        .host()
        .run(|| -> std::io::Result<UdpSocket> {
            let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::DGRAM, None)?;
            s.bind_device(Some(dev.as_bytes()))?;
            s.bind(&"0.0.0.0:0".parse::<SocketAddr>().unwrap().into())?;
            s.set_read_timeout(Some(Duration::from_secs(3)))?;
            Ok(s.into())
        })
        .unwrap()
        .unwrap()
}

fn ask(s: &UdpSocket, dst: SocketAddr) -> std::io::Result<String> {
    s.send_to(b"q", dst)?;
    let mut buf = [0u8; 64];
    let (n, _) = s.recv_from(&mut buf)?;
    Ok(String::from_utf8_lossy(&buf[..n]).into_owned())
}

#[test]
fn ctl0_down_then_restore() {
    if !netlab::require_privileged() {
        return;
    }
    let chassis = Chassis::new().unwrap();
    let _udp = chassis.serve(Proto::Udp, 7100).unwrap();
    let dst = SocketAddr::new(chassis.control_v4(), 7100);
    let s = bound_udp(&chassis, "ctl0");
    assert_eq!(ask(&s, dst).unwrap(), "backplane\n");

    chassis.ctl0_down().unwrap();
    let err = s.send_to(b"q", dst).unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::ENETUNREACH), "{err}");
    let addrs = chassis
        .host()
        .ip(&["-6", "addr", "show", "dev", "ctl0"])
        .unwrap();
    assert!(
        !addrs.contains("fd10::1"),
        "IPv6 address survived link down: {addrs}"
    );

    chassis.restore_ctl0().unwrap();
    assert_eq!(ask(&s, dst).unwrap(), "backplane\n");
    let addrs = chassis
        .host()
        .ip(&["-6", "addr", "show", "dev", "ctl0"])
        .unwrap();
    assert!(
        addrs.contains("fd10::1") && addrs.contains("fe80::1"),
        "{addrs}"
    );
    // Restoring twice is harmless.
    chassis.restore_ctl0().unwrap();
}

#[test]
fn rename_keeps_the_index() {
    if !netlab::require_privileged() {
        return;
    }
    let chassis = Chassis::new().unwrap();
    let index = chassis.ctl0_index().unwrap();
    chassis.rename_ctl0("mgmt0").unwrap();
    assert_eq!(chassis.host().ifindex("mgmt0").unwrap(), index);
    assert!(chassis.ctl0_index().is_err());
    assert!(matches!(
        chassis.rename_ctl0("a-name-longer-than-15"),
        Err(Error::Invalid { .. })
    ));
}

#[test]
fn new_device_with_the_old_index_leads_to_the_front() {
    if !netlab::require_privileged() {
        return;
    }
    let chassis = Chassis::new().unwrap();
    let old = chassis.ctl0_index().unwrap();
    let s = bound_udp(&chassis, "ctl0");

    chassis.delete_ctl0().unwrap();
    assert!(chassis.ctl0_index().is_err());
    chassis
        .add_host_link("evil0", Some(old), Peer::Front, "peer-evil0")
        .unwrap();
    assert_eq!(chassis.host().ifindex("evil0").unwrap(), old);

    // The socket bound to the old index now sends out of the new device, to the front.
    let counter = netlab::FrameCounter::open(chassis.front(), "peer-evil0").unwrap();
    s.send_to(b"q", SocketAddr::new(chassis.control_v4(), 7101))
        .expect("send through the old index");
    counter.settle_for(Duration::from_millis(300));
    assert!(
        counter.count_involving(chassis.control_v4()) >= 1,
        "{}",
        counter.describe()
    );

    // The original link can be put back (with a fresh index).
    chassis.host().ip(&["link", "del", "evil0"]).unwrap();
    chassis.recreate_ctl0(None).unwrap();
    let _udp = chassis.serve(Proto::Udp, 7101).unwrap();
    let fresh = bound_udp(&chassis, "ctl0");
    assert_eq!(
        ask(&fresh, SocketAddr::new(chassis.control_v4(), 7101)).unwrap(),
        "backplane\n"
    );
}

#[test]
fn lab_builder_checks_input_before_creating_anything() {
    // No privilege needed: the description is rejected before any namespace exists.
    let err = Lab::builder()
        .host("a")
        .link(("a", "v0"), ("b", "v0"))
        .build()
        .unwrap_err();
    assert!(
        matches!(err, Error::Invalid { what: "host", ref value, .. } if value == "b"),
        "{err}"
    );
    let err = Lab::builder()
        .host("a")
        .host("b")
        .link(("a", "sixteen-bytes-xx"), ("b", "v0"))
        .build()
        .unwrap_err();
    assert!(err.to_string().contains("sixteen-bytes-xx"), "{err}");
    let err = Lab::builder()
        .host("a")
        .addr("z", "lo", "10.0.0.1/8")
        .build()
        .unwrap_err();
    assert!(err.to_string().contains("`z`"), "{err}");
    assert!(matches!(
        netlab::Netns::new("bad label"),
        Err(Error::Invalid { .. })
    ));
}

#[test]
fn lab_builds_a_routed_pair() {
    if !netlab::require_privileged() {
        return;
    }
    let lab = Lab::builder()
        .host("a")
        .host("b")
        .link(("a", "v0"), ("b", "v0"))
        .addr("a", "v0", "10.1.0.1/24")
        .addr("b", "v0", "10.1.0.2/24")
        .addr("b", "lo", "192.0.2.9/32")
        .route(
            "a",
            netlab::Route::new("192.0.2.0/24")
                .via("10.1.0.2")
                .dev("v0")
                .metric(7),
        )
        .sysctl("b", "net.ipv4.conf.v0.rp_filter", "0")
        .build()
        .unwrap();
    let routes = lab.host("a").ip(&["route"]).unwrap();
    assert!(
        routes.contains("192.0.2.0/24 via 10.1.0.2 dev v0 metric 7"),
        "{routes}"
    );
    let r = netlab::Responder::udp(lab.host("b"), "192.0.2.9:7200".parse().unwrap()).unwrap();
    let answer = lab
        .host("a")
        .run(|| {
            let s = UdpSocket::bind("0.0.0.0:0")?;
            s.set_read_timeout(Some(Duration::from_secs(3)))?;
            ask(&s, r.local_addr())
        })
        .unwrap()
        .unwrap();
    assert_eq!(answer, "b\n");
    assert_eq!(r.hits(), 1);
    assert_eq!(r.peers()[0].ip().to_string(), "10.1.0.1");
}
