//! Ingress: a listener (or UDP socket) pinned to `ctl0` refuses what arrives through the
//! front link (`ECONNREFUSED` / port unreachable), whatever address it is for, and accepts
//! what arrives through `ctl0`, even when it is addressed to eth1's address. The negative
//! control, an unpinned listener on the same host, accepts from the front.

mod pinned_support;

use std::io::{ErrorKind, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream, UdpSocket};

use ifpin::{PinnedTcpListener, PinnedUdpSocket};
use netlab::{Chassis, Netns, Proto};
use pinned_support::{WAIT, setup};

const PINNED: u16 = 7100;
const PINNED_V6: u16 = 7102;
const UNPINNED: u16 = 7101;

fn connect_from(ns: &Netns, dst: SocketAddr) -> std::io::Result<()> {
    ns.run(|| {
        let mut s = TcpStream::connect_timeout(&dst, WAIT)?;
        s.write_all(b"hi")
    })
    .expect("enter namespace")
}

fn send_from(ns: &Netns, dst: SocketAddr) -> std::io::Result<usize> {
    ns.run(|| UdpSocket::bind(SocketAddr::from(([0, 0, 0, 0], 0)))?.send_to(b"hi", dst))
        .expect("enter namespace")
}

fn datagram_from(ns: &Netns, dst: SocketAddr) -> std::io::Result<usize> {
    ns.run(|| {
        let any: SocketAddr = if dst.is_ipv4() {
            ([0, 0, 0, 0], 0).into()
        } else {
            ([0u16; 8], 0).into()
        };
        let s = UdpSocket::bind(any)?;
        s.connect(dst)?;
        s.set_read_timeout(Some(WAIT))?;
        s.send(b"hi")?;
        // A port unreachable comes back as ECONNREFUSED on the connected socket; an answer
        // comes back as data.
        s.recv(&mut [0u8; 16])
    })
    .expect("enter namespace")
}

#[test]
fn pinned_tcp_listener_refuses_the_front_and_accepts_ctl0() {
    let Some(s) = setup(Proto::Tcp, 7000) else {
        return;
    };
    let ctl0 = s.ctl0();
    let (v4, v6, open) = s.in_host(|| {
        (
            PinnedTcpListener::bind(&ctl0, ([0, 0, 0, 0], PINNED).into()).unwrap(),
            PinnedTcpListener::bind(&ctl0, ([0u16; 8], PINNED_V6).into()).unwrap(),
            TcpListener::bind(SocketAddr::from(([0, 0, 0, 0], UNPINNED))).unwrap(),
        )
    });
    let (front, backplane) = (s.chassis.front(), s.chassis.backplane());
    let host_addrs: [IpAddr; 4] = [
        Chassis::HOST_ETH1_V4.into(),
        Chassis::HOST_CTL0_V4.into(),
        Chassis::HOST_ETH1_V6.into(),
        Chassis::HOST_CTL0_V6.into(),
    ];

    // From the front: refused, for eth1's and for ctl0's addresses alike.
    let port = |ip: IpAddr| if ip.is_ipv4() { PINNED } else { PINNED_V6 };
    for ip in host_addrs {
        let err = connect_from(front, SocketAddr::new(ip, port(ip))).unwrap_err();
        assert_eq!(
            err.kind(),
            ErrorKind::ConnectionRefused,
            "front -> {ip}: {err}"
        );
    }
    // Negative control: the front can reach an unpinned listener on the same host.
    connect_from(
        front,
        SocketAddr::new(Chassis::HOST_ETH1_V4.into(), UNPINNED),
    )
    .expect("the unpinned listener accepts from the front");
    let (_, peer) = open.accept().unwrap();
    assert_eq!(peer.ip(), IpAddr::from(Chassis::FRONT_V4));

    // From the backplane: accepted, also when addressed to eth1's address, and every
    // accepted socket is pinned.
    for ip in host_addrs {
        connect_from(backplane, SocketAddr::new(ip, port(ip)))
            .unwrap_or_else(|e| panic!("backplane -> {ip}: {e}"));
        let listener = if ip.is_ipv4() { &v4 } else { &v6 };
        let (stream, peer) = listener.accept().expect("accept");
        assert!(
            peer.ip() == IpAddr::from(Chassis::BACKPLANE_V4)
                || peer.ip() == IpAddr::from(Chassis::BACKPLANE_V6),
            "{peer}"
        );
        assert!(stream.verify().unwrap().is_intact());
        assert_eq!(
            ifpin::pin::bound_index(&stream).unwrap(),
            Some(ctl0.index())
        );
    }
    // Nothing from the front was queued on the pinned listeners.
    for l in [&v4, &v6] {
        l.set_nonblocking(true).unwrap();
        let err = l.accept().unwrap_err();
        assert!(
            matches!(&err, ifpin::PinError::Io { source, .. } if source.kind() == ErrorKind::WouldBlock),
            "{err:?}"
        );
    }
}

#[test]
fn pinned_udp_socket_ignores_the_front_and_hears_ctl0() {
    let Some(s) = setup(Proto::Udp, 7000) else {
        return;
    };
    let ctl0 = s.ctl0();
    let (v4, open) = s.in_host(|| {
        (
            PinnedUdpSocket::bind(&ctl0, ([0, 0, 0, 0], PINNED).into()).unwrap(),
            UdpSocket::bind(SocketAddr::from(([0, 0, 0, 0], UNPINNED))).unwrap(),
        )
    });
    let receive = |sock: &PinnedUdpSocket| {
        sock.set_read_timeout(Some(WAIT)).unwrap();
        let mut buf = [0u8; 16];
        let (n, from) = sock.recv_from(&mut buf).expect("datagram");
        assert_eq!(&buf[..n], b"hi");
        from
    };
    let (front, backplane) = (s.chassis.front(), s.chassis.backplane());
    for ip in [Chassis::HOST_ETH1_V4, Chassis::HOST_CTL0_V4] {
        let err = datagram_from(front, SocketAddr::new(ip.into(), PINNED)).unwrap_err();
        assert_eq!(
            err.kind(),
            ErrorKind::ConnectionRefused,
            "front -> {ip}: {err}"
        );
    }
    // Negative control: the unpinned socket hears the front.
    std::thread::scope(|scope| {
        let t = scope.spawn(|| {
            open.set_read_timeout(Some(WAIT)).unwrap();
            let mut buf = [0u8; 16];
            let (n, from) = open.recv_from(&mut buf).unwrap();
            open.send_to(&buf[..n], from).unwrap();
            from
        });
        datagram_from(
            front,
            SocketAddr::new(Chassis::HOST_ETH1_V4.into(), UNPINNED),
        )
        .expect("the unpinned socket answers the front");
        assert_eq!(t.join().unwrap().ip(), IpAddr::from(Chassis::FRONT_V4));
    });
    for ip in [Chassis::HOST_ETH1_V4, Chassis::HOST_CTL0_V4] {
        std::thread::scope(|scope| {
            let t = scope.spawn(|| receive(&v4));
            send_from(backplane, SocketAddr::new(ip.into(), PINNED))
                .unwrap_or_else(|e| panic!("backplane -> {ip}: {e}"));
            assert_eq!(t.join().unwrap().ip(), IpAddr::from(Chassis::BACKPLANE_V4));
        });
    }
    assert!(v4.verify().unwrap().is_intact());
}
