//! The Tokio variants of the egress tests: pinned TCP and UDP (IPv4, IPv6, link-local) reach
//! the backplane with zero frames on the front link; the `bind()`-only negative controls leak.

mod pinned_support;

use std::net::{IpAddr, SocketAddr};

use ifpin::Interface;
use ifpin::net::tokio::{PinnedTcpStream, PinnedUdpSocket};
use netlab::{Chassis, Peer, Proto};
use pinned_support::{Setup, WAIT, ll, setup, tcp_bind_only, udp_bind_only};
use tokio::io::AsyncReadExt;

const PORT: u16 = 7000;

/// Runs `f` on a current-thread runtime on a thread inside the host namespace.
fn block_on_host<T: Send, F: Future<Output = T>>(s: &Setup, f: impl FnOnce() -> F + Send) -> T {
    s.in_host(|| {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime")
            .block_on(async { tokio::time::timeout(WAIT * 2, f()).await })
            .expect("the test timed out")
    })
}

async fn tcp_answer(ctl0: Interface, dst: SocketAddr) -> String {
    let mut stream = PinnedTcpStream::connect(&ctl0, dst)
        .await
        .expect("pinned connect");
    assert!(stream.verify().unwrap().is_intact());
    let mut text = String::new();
    stream.read_to_string(&mut text).await.unwrap();
    text
}

async fn udp_answer(ctl0: Interface, dst: SocketAddr) -> String {
    let any: SocketAddr = if dst.is_ipv4() {
        ([0, 0, 0, 0], 0).into()
    } else {
        ([0u16; 8], 0).into()
    };
    let socket = PinnedUdpSocket::bind(&ctl0, any)
        .await
        .expect("pinned bind");
    socket.send_to(b"hello", dst).await.expect("pinned send_to");
    let mut buf = [0u8; 64];
    let (n, _) = socket.recv_from(&mut buf).await.expect("an answer");
    assert!(socket.verify().unwrap().is_intact());
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

fn case(test: &str, proto: Proto, dst: fn(&Chassis) -> SocketAddr, local: Option<IpAddr>) {
    let Some(s) = setup(proto, PORT) else {
        return;
    };
    let ctl0 = s.ctl0();
    let dst = dst(&s.chassis);
    let answer = match proto {
        Proto::Tcp => block_on_host(&s, || tcp_answer(ctl0, dst)),
        Proto::Udp => block_on_host(&s, || udp_answer(ctl0, dst)),
    };
    assert_eq!(answer, "backplane\n");
    s.assert_front_silent(test);
    s.assert_backplane_saw(dst.ip(), test);
    assert_eq!(s.served.hits(Peer::Backplane), 1);

    if let Some(local) = local {
        let leaked = match proto {
            Proto::Tcp => tcp_bind_only(&s, local, dst),
            Proto::Udp => udp_bind_only(&s, local, dst),
        };
        assert_eq!(leaked, "front\n");
        s.assert_front_saw(dst.ip(), test);
    }
}

fn control_v4(c: &Chassis) -> SocketAddr {
    SocketAddr::new(c.control_v4(), PORT)
}
fn control_v6(c: &Chassis) -> SocketAddr {
    SocketAddr::new(c.control_v6(), PORT)
}
fn backplane_ll(_: &Chassis) -> SocketAddr {
    ll(Chassis::BACKPLANE_LL, PORT, 0)
}

#[test]
fn tokio_tcp_v4_stays_on_ctl0() {
    case(
        "tokio_tcp_v4_stays_on_ctl0",
        Proto::Tcp,
        control_v4,
        Some(Chassis::HOST_CTL0_V4.into()),
    );
}

#[test]
fn tokio_tcp_v6_stays_on_ctl0() {
    case(
        "tokio_tcp_v6_stays_on_ctl0",
        Proto::Tcp,
        control_v6,
        Some(Chassis::HOST_CTL0_V6.into()),
    );
}

#[test]
fn tokio_udp_v4_stays_on_ctl0() {
    case(
        "tokio_udp_v4_stays_on_ctl0",
        Proto::Udp,
        control_v4,
        Some(Chassis::HOST_CTL0_V4.into()),
    );
}

#[test]
fn tokio_udp_v6_stays_on_ctl0() {
    case(
        "tokio_udp_v6_stays_on_ctl0",
        Proto::Udp,
        control_v6,
        Some(Chassis::HOST_CTL0_V6.into()),
    );
}

/// Link-local without scope; the negative control for link-local (a caller's `%eth1` scope
/// on an unpinned socket) is in `pinned_egress.rs`, and the refusal of that scope is shared
/// code (`ifpin::net::pinned_address`), checked here once more for the Tokio type.
#[test]
fn tokio_link_local_stays_on_ctl0() {
    let test = &netlab::test_name();
    for proto in [Proto::Tcp, Proto::Udp] {
        case(test, proto, backplane_ll, None);
    }
    let Some(s) = setup(Proto::Udp, PORT) else {
        return;
    };
    let ctl0 = s.ctl0();
    let eth1 = s.chassis.eth1_index().unwrap();
    let refused = block_on_host(&s, || async move {
        let socket = PinnedUdpSocket::bind(&ctl0, ([0u16; 8], 0).into())
            .await
            .unwrap();
        let send = socket
            .send_to(b"x", ll(Chassis::BACKPLANE_LL, PORT, eth1))
            .await;
        let connect = PinnedTcpStream::connect(&ctl0, ll(Chassis::BACKPLANE_LL, PORT, eth1)).await;
        (
            send.is_err_and(|e| matches!(e, ifpin::PinError::ForeignScope { .. })),
            connect.is_err_and(|e| matches!(e, ifpin::PinError::ForeignScope { .. })),
        )
    });
    assert_eq!(refused, (true, true));
    s.assert_front_silent(test);
}

/// Ingress for the Tokio listener: the front is refused, the backplane accepted, and the
/// accepted stream is pinned.
#[test]
fn tokio_listener_refuses_the_front() {
    let Some(s) = setup(Proto::Tcp, PORT) else {
        return;
    };
    let ctl0 = s.ctl0();
    let connect_from = |ns: &netlab::Netns| {
        ns.run(|| {
            std::net::TcpStream::connect_timeout(
                &SocketAddr::new(Chassis::HOST_CTL0_V4.into(), 7100),
                WAIT,
            )
        })
        .unwrap()
    };
    let (front, backplane) = (s.chassis.front(), s.chassis.backplane());
    let accepted = std::thread::scope(|scope| {
        let (tx, rx) = std::sync::mpsc::channel();
        let server = scope.spawn(|| {
            block_on_host(&s, || async move {
                let listener =
                    ifpin::net::tokio::PinnedTcpListener::bind(&ctl0, ([0, 0, 0, 0], 7100).into())
                        .await
                        .unwrap();
                tx.send(()).unwrap();
                let (stream, peer) = listener.accept().await.unwrap();
                (stream.verify().unwrap(), peer)
            })
        });
        rx.recv().unwrap();
        let refused = connect_from(front).unwrap_err();
        assert_eq!(refused.kind(), std::io::ErrorKind::ConnectionRefused);
        let _kept = connect_from(backplane).expect("the backplane is accepted");
        server.join().unwrap()
    });
    assert!(accepted.0.is_intact(), "{accepted:?}");
    assert_eq!(accepted.1.ip(), IpAddr::from(Chassis::BACKPLANE_V4));
}
