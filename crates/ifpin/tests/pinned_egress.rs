//! Egress: pinned sockets reach the control peer through `ctl0` with zero frames on the front
//! link, under a routing table whose preferred default route goes out `eth1`; each case has
//! its negative control (an unpinned socket `bind()`-ed to ctl0's address), which leaks and is
//! counted on the front link.

mod pinned_support;

use std::io::Read;
use std::net::{IpAddr, SocketAddr};

use ifpin::{PinError, PinnedTcpStream, PinnedUdpSocket};
use netlab::{Chassis, Peer, Proto};
use pinned_support::{Setup, WAIT, ll, setup, tcp_bind_only, udp_bind_only};

const PORT: u16 = 7000;

fn pinned_tcp_answer(s: &Setup, dst: SocketAddr) -> String {
    let ctl0 = s.ctl0();
    s.in_host(|| {
        let mut stream =
            PinnedTcpStream::connect_timeout(&ctl0, dst, WAIT).expect("pinned connect");
        assert!(stream.verify().unwrap().is_intact());
        stream.set_read_timeout(Some(WAIT)).unwrap();
        let mut text = String::new();
        stream.read_to_string(&mut text).unwrap();
        text
    })
}

fn pinned_udp_answer(s: &Setup, local: SocketAddr, dst: SocketAddr) -> String {
    let ctl0 = s.ctl0();
    s.in_host(|| {
        let socket = PinnedUdpSocket::bind(&ctl0, local).expect("pinned bind");
        socket.set_read_timeout(Some(WAIT)).unwrap();
        socket.send_to(b"hello", dst).expect("pinned send_to");
        let mut buf = [0u8; 64];
        let (n, _) = socket.recv_from(&mut buf).expect("an answer");
        assert!(socket.verify().unwrap().is_intact());
        String::from_utf8_lossy(&buf[..n]).into_owned()
    })
}

fn tcp_case(control: fn(&Chassis) -> IpAddr, local: IpAddr) {
    let test = &netlab::test_name();
    let Some(s) = setup(Proto::Tcp, PORT) else {
        return;
    };
    let dst = SocketAddr::new(control(&s.chassis), PORT);
    assert_eq!(pinned_tcp_answer(&s, dst), "backplane\n");
    s.assert_front_silent(test);
    s.assert_backplane_saw(dst.ip(), test);
    assert_eq!(s.served.hits(Peer::Backplane), 1);
    assert_eq!(s.served.hits(Peer::Front), 0);

    // Negative control: bind() to ctl0's address only. It leaves eth1 and the front answers.
    assert_eq!(tcp_bind_only(&s, local, dst), "front\n");
    s.assert_front_saw(dst.ip(), test);
    assert_eq!(s.served.hits(Peer::Front), 1);
}

fn udp_case(control: fn(&Chassis) -> IpAddr, local: IpAddr) {
    let test = &netlab::test_name();
    let Some(s) = setup(Proto::Udp, PORT) else {
        return;
    };
    let dst = SocketAddr::new(control(&s.chassis), PORT);
    let any = SocketAddr::new(
        if local.is_ipv4() {
            IpAddr::from([0, 0, 0, 0])
        } else {
            IpAddr::from([0u16; 8])
        },
        0,
    );
    assert_eq!(pinned_udp_answer(&s, any, dst), "backplane\n");
    // Bound to ctl0's own address too: the pin decides the interface, the address the source.
    assert_eq!(
        pinned_udp_answer(&s, SocketAddr::new(local, 0), dst),
        "backplane\n"
    );
    s.assert_front_silent(test);
    s.assert_backplane_saw(dst.ip(), test);
    assert_eq!(s.served.hits(Peer::Backplane), 2);

    assert_eq!(udp_bind_only(&s, local, dst), "front\n");
    s.assert_front_saw(dst.ip(), test);
    assert_eq!(s.served.hits(Peer::Front), 1);
}

#[test]
fn pinned_tcp_v4_stays_on_ctl0() {
    tcp_case(Chassis::control_v4, Chassis::HOST_CTL0_V4.into());
}

#[test]
fn pinned_tcp_v6_stays_on_ctl0() {
    tcp_case(Chassis::control_v6, Chassis::HOST_CTL0_V6.into());
}

#[test]
fn pinned_udp_v4_stays_on_ctl0() {
    udp_case(Chassis::control_v4, Chassis::HOST_CTL0_V4.into());
}

#[test]
fn pinned_udp_v6_stays_on_ctl0() {
    udp_case(Chassis::control_v6, Chassis::HOST_CTL0_V6.into());
}

/// Link-local: `fe80::2` (the backplane) without a scope gets ctl0; with `%ctl0` too. The
/// negative control is the caller-chosen scope: an unpinned socket sending to
/// `fe80::2%eth1` puts frames on the front link, while the pinned API refuses that scope
/// before sending anything.
#[test]
fn pinned_tcp_link_local_stays_on_ctl0() {
    let test = &netlab::test_name();
    let Some(s) = setup(Proto::Tcp, PORT) else {
        return;
    };
    let ctl0 = s.ctl0();
    let eth1 = s.chassis.eth1_index().unwrap();
    let bp = Chassis::BACKPLANE_LL;
    assert_eq!(pinned_tcp_answer(&s, ll(bp, PORT, 0)), "backplane\n");
    assert_eq!(
        pinned_tcp_answer(&s, ll(bp, PORT, ctl0.index().get())),
        "backplane\n"
    );
    let err = s.in_host(|| PinnedTcpStream::connect_timeout(&ctl0, ll(bp, PORT, eth1), WAIT));
    match err {
        Err(PinError::ForeignScope { scope, .. }) => assert_eq!(scope, eth1),
        other => panic!("expected ForeignScope, got {other:?}"),
    }
    s.assert_front_silent(test);
    s.assert_backplane_saw(IpAddr::V6(bp), test);
    assert_eq!(s.served.hits(Peer::Backplane), 2);

    // Negative control: the same address with scope eth1 on an unpinned socket.
    let leaked = s.in_host(|| {
        std::net::TcpStream::connect_timeout(&ll(bp, PORT, eth1), std::time::Duration::from_secs(2))
    });
    assert!(
        leaked.is_err(),
        "nobody has fe80::2 behind eth1: {leaked:?}"
    );
    s.assert_front_saw(IpAddr::V6(bp), test);
}

#[test]
fn pinned_udp_link_local_stays_on_ctl0() {
    let test = &netlab::test_name();
    let Some(s) = setup(Proto::Udp, PORT) else {
        return;
    };
    let ctl0 = s.ctl0();
    let eth1 = s.chassis.eth1_index().unwrap();
    let bp = Chassis::BACKPLANE_LL;
    let any = SocketAddr::from(([0u16; 8], 0));
    assert_eq!(pinned_udp_answer(&s, any, ll(bp, PORT, 0)), "backplane\n");
    // Bound to ctl0's own link-local address, scope filled in by the library.
    assert_eq!(
        pinned_udp_answer(&s, ll(Chassis::HOST_CTL0_LL, 0, 0), ll(bp, PORT, 0)),
        "backplane\n"
    );
    let refused = s.in_host(|| {
        let socket = PinnedUdpSocket::bind(&ctl0, any).unwrap();
        (
            socket.send_to(b"x", ll(bp, PORT, eth1)),
            socket.connect(ll(bp, PORT, eth1)),
        )
    });
    assert!(
        matches!(refused.0, Err(PinError::ForeignScope { .. })),
        "{refused:?}"
    );
    assert!(
        matches!(refused.1, Err(PinError::ForeignScope { .. })),
        "{refused:?}"
    );
    s.assert_front_silent(test);
    s.assert_backplane_saw(IpAddr::V6(bp), test);

    // Negative control: the caller's scope on an unpinned socket leaves eth1.
    s.in_host(|| {
        let socket = std::net::UdpSocket::bind(any).unwrap();
        socket.send_to(b"hello", ll(bp, PORT, eth1)).unwrap();
    });
    s.assert_front_saw(IpAddr::V6(bp), test);
}

/// The link-local `bind()` rebind of `docs/kernel.md`: binding a ctl0-pinned socket to
/// `fe80::4%eth1` (eth1's own link-local address) silently moves it to eth1. The library
/// refuses the scope before `bind()`; a socket pinned with [`ifpin::pin`] and then bound by
/// hand is caught by [`ifpin::verify`], which is what the library does after every `bind()`.
#[test]
fn link_local_bind_rebind_is_refused_or_detected() {
    let test = &netlab::test_name();
    let Some(s) = setup(Proto::Udp, PORT) else {
        return;
    };
    let ctl0 = s.ctl0();
    let eth1 = s.chassis.eth1_index().unwrap();
    let foreign = ll(Chassis::HOST_ETH1_LL, 0, eth1);
    let (lib, by_hand) = s.in_host(|| {
        let lib = PinnedUdpSocket::bind(&ctl0, foreign).map(drop);
        let socket = socket2::Socket::new(socket2::Domain::IPV6, socket2::Type::DGRAM, None)
            .expect("socket");
        ifpin::pin(&socket, &ctl0).unwrap();
        assert!(ifpin::verify(&socket, &ctl0).unwrap().is_intact());
        socket
            .bind(&foreign.into())
            .expect("the kernel lets the rebind happen");
        (lib, ifpin::verify(&socket, &ctl0).unwrap())
    });
    assert!(matches!(lib, Err(PinError::ForeignScope { .. })), "{lib:?}");
    assert_eq!(
        by_hand,
        ifpin::PinState::BoundElsewhere {
            index: ifpin::IfIndex::new(eth1).unwrap()
        },
        "the kernel moved the socket to eth1, and verify() says so"
    );
    s.assert_front_silent(test);
}
