//! Lifecycle: the binding is an ifindex, not a name. `ctl0` goes down, is deleted, is
//! renamed, or is deleted and a different device takes its index: pinned sockets fail with
//! the error that says so, `verify()` reports the change, and nothing leaves through the
//! front link.

mod pinned_support;

use std::net::SocketAddr;
use std::time::Duration;

use ifpin::probe::{ProbeOutcome, ProbeTarget};
use ifpin::{
    Interface, InterfaceChange, InterfaceError, PinError, PinState, PinnedTcpStream,
    PinnedUdpSocket,
};
use netlab::{FrameCounter, Peer, Proto};
use pinned_support::{Setup, WAIT, setup};

const PORT: u16 = 7000;

fn v4(s: &Setup) -> SocketAddr {
    SocketAddr::new(s.chassis.control_v4(), PORT)
}

fn v6(s: &Setup) -> SocketAddr {
    SocketAddr::new(s.chassis.control_v6(), PORT)
}

fn any4() -> SocketAddr {
    ([0, 0, 0, 0], 0).into()
}

/// One datagram to `dst`, and its answer.
fn ask(socket: &PinnedUdpSocket, dst: SocketAddr) -> Result<String, PinError> {
    socket.set_read_timeout(Some(WAIT)).unwrap();
    socket.send_to(b"hello", dst)?;
    let mut buf = [0u8; 64];
    let (n, _) = socket.recv_from(&mut buf)?;
    Ok(String::from_utf8_lossy(&buf[..n]).into_owned())
}

#[test]
fn ctl0_down_is_reported_as_down() {
    let test = &netlab::test_name();
    let Some(s) = setup(Proto::Udp, PORT) else {
        return;
    };
    let ctl0 = s.ctl0();
    let socket = s.in_host(|| PinnedUdpSocket::bind(&ctl0, any4()).unwrap());
    assert_eq!(s.in_host(|| ask(&socket, v4(&s))).unwrap(), "backplane\n");

    s.chassis.ctl0_down().unwrap();
    s.reset_counters();
    let (send, tcp4, tcp6, state, report) = s.in_host(|| {
        (
            ask(&socket, v4(&s)),
            PinnedTcpStream::connect_timeout(&ctl0, v4(&s), WAIT),
            PinnedTcpStream::connect_timeout(&ctl0, v6(&s), WAIT),
            socket.verify().unwrap(),
            ifpin::probe::probe(
                &ctl0,
                &format!("tcp://{}", v4(&s)).parse::<ProbeTarget>().unwrap(),
                WAIT,
            )
            .unwrap(),
        )
    });
    assert!(
        matches!(send, Err(PinError::InterfaceDown { .. })),
        "{send:?}"
    );
    assert!(
        matches!(tcp4, Err(PinError::InterfaceDown { .. })),
        "{tcp4:?}"
    );
    assert!(
        matches!(tcp6, Err(PinError::InterfaceDown { .. })),
        "{tcp6:?}"
    );
    let msg = send.unwrap_err().to_string();
    assert!(msg.contains("ip link set ctl0 up"), "{msg}");
    // Down changes no binding: verify() says intact, the errors say down.
    assert_eq!(state, PinState::Intact);
    assert_eq!(report.outcome, ProbeOutcome::InterfaceDown);
    s.assert_front_silent(test);

    // Back up with its addresses and routes: the same socket works again.
    s.chassis.restore_ctl0().unwrap();
    assert_eq!(s.in_host(|| ask(&socket, v4(&s))).unwrap(), "backplane\n");
    s.assert_front_silent(test);
}

#[test]
fn ctl0_deleted_is_reported_as_gone() {
    let test = &netlab::test_name();
    let Some(s) = setup(Proto::Udp, PORT) else {
        return;
    };
    let ctl0 = s.ctl0();
    let socket = s.in_host(|| PinnedUdpSocket::bind(&ctl0, any4()).unwrap());
    assert_eq!(s.in_host(|| ask(&socket, v4(&s))).unwrap(), "backplane\n");

    s.chassis.delete_ctl0().unwrap();
    s.front.settle();
    s.front.clear();
    let (state, send, send6, connect, bind, resolve) = s.in_host(|| {
        (
            socket.verify().unwrap(),
            ask(&socket, v4(&s)),
            ask(&socket, v6(&s)),
            PinnedTcpStream::connect_timeout(&ctl0, v4(&s), WAIT),
            PinnedUdpSocket::bind(&ctl0, any4()),
            Interface::resolve("ctl0"),
        )
    });
    assert_eq!(state, PinState::Gone);
    assert!(
        matches!(send, Err(PinError::InterfaceGone { .. })),
        "{send:?}"
    );
    // A v4 socket asked to send to a v6 address: a plain error, nothing sent.
    assert!(send6.is_err(), "{send6:?}");
    assert!(
        matches!(connect, Err(PinError::InterfaceGone { .. })),
        "{connect:?}"
    );
    assert!(
        matches!(bind, Err(PinError::InterfaceGone { .. })),
        "{bind:?}"
    );
    assert!(
        matches!(resolve, Err(InterfaceError::NotFound { .. })),
        "{resolve:?}"
    );
    s.assert_front_silent(test);
}

#[test]
fn ctl0_renamed_is_reported_as_changed() {
    let test = &netlab::test_name();
    let Some(s) = setup(Proto::Udp, PORT) else {
        return;
    };
    let ctl0 = s.ctl0();
    let socket = s.in_host(|| PinnedUdpSocket::bind(&ctl0, any4()).unwrap());
    s.chassis.rename_ctl0("ctl9").unwrap();
    s.reset_counters();
    let (state, still_works, rebind, renamed) = s.in_host(|| {
        (
            socket.verify().unwrap(),
            ask(&socket, v4(&s)),
            PinnedUdpSocket::bind(&ctl0, any4()),
            Interface::resolve("ctl9").unwrap(),
        )
    });
    assert_eq!(
        state,
        PinState::Renamed {
            to: "ctl9".to_owned()
        }
    );
    // Kernel behaviour: the binding is the index, so the renamed device still carries it.
    assert_eq!(still_works.unwrap(), "backplane\n");
    match rebind {
        Err(PinError::InterfaceChanged {
            change: InterfaceChange::Renamed { to },
            ..
        }) => assert_eq!(to, "ctl9"),
        other => panic!("pinning to the old name must fail: {other:?}"),
    }
    assert_eq!(renamed.index(), ctl0.index());
    s.assert_front_silent(test);
    s.assert_backplane_saw(v4(&s).ip(), test);
}

/// A different device (a veth to the front peer) takes ctl0's old index. `verify()` detects
/// it, pinning to the old interface fails, and the kernel itself sends an old socket's
/// traffic through the new device: the finding that the sealed level of `exec` exists for.
#[test]
fn index_taken_over_is_detected() {
    let Some(s) = setup(Proto::Udp, PORT) else {
        return;
    };
    let ctl0 = s.ctl0();
    let old = ctl0.index().get();
    let socket = s.in_host(|| PinnedUdpSocket::bind(&ctl0, any4()).unwrap());
    assert_eq!(s.in_host(|| ask(&socket, v4(&s))).unwrap(), "backplane\n");

    s.chassis.delete_ctl0().unwrap();
    s.chassis
        .add_host_link("evil0", Some(old), Peer::Front, "peer-evil0")
        .unwrap();
    assert_eq!(s.chassis.host().ifindex("evil0").unwrap(), old);
    let evil = FrameCounter::open(s.chassis.front(), "peer-evil0").unwrap();
    s.reset_counters();

    let (state, repin, sent) = s.in_host(|| {
        let state = socket.verify().unwrap();
        let repin = PinnedUdpSocket::bind(&ctl0, any4()).map(drop);
        socket
            .set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        let sent = socket.send_to(b"hello", v4(&s));
        (state, repin, sent)
    });
    assert!(!state.is_intact(), "verify() must notice: {state:?}");
    assert!(
        matches!(&state, PinState::Renamed { to } | PinState::IndexTakenOver { by: to } if to == "evil0"),
        "{state:?}"
    );
    assert!(
        matches!(repin, Err(PinError::InterfaceChanged { .. })),
        "{repin:?}"
    );

    // The finding, as observed on this kernel: the old socket's datagram is accepted and goes
    // out of the new device (ARP for the destination on evil0, towards the front peer).
    assert!(sent.is_ok(), "{sent:?}");
    evil.settle();
    assert!(
        evil.count_involving(v4(&s).ip()) > 0,
        "expected the kernel to send through the device that took the index: {}",
        evil.describe()
    );
    // And it reached the front peer's responder, which answered.
    assert_eq!(s.served.hits(Peer::Front), 1, "{}", evil.describe());
    // The answer came back through eth1 (the front's route to 10.20.0.1), where the socket,
    // bound to evil0's index, does not take it: on eth1 only the kernel's ARP and its ICMP
    // port unreachable for that answer went out, no datagram of the socket itself.
    s.front.settle();
    let own_udp = s.front.count(|f| f.proto() == Some(17));
    assert_eq!(own_udp, 0, "{}", s.front.describe());
    let unreachable = s
        .front
        .count(|f| f.proto() == Some(1) && f.icmp_type() == Some(3));
    assert!(unreachable > 0, "{}", s.front.describe());
}
