//! The override vectors of `docs/kernel.md`, measured on this kernel with a frame counter at the
//! far end of each link of the chassis.
//!
//! These are findings about the kernel, asserted as `docs/kernel.md` records them: a failure
//! here means this kernel behaves differently from the table (the message names the row), which
//! is worth knowing before relying on any level of ifpin. Every test that expects "nothing on the
//! front link" sits next to a negative control in the same lab showing the counter sees a leak.

use netlab::cases::{self, BarePinning, CaseReport, DemoLab, Section, Verdict};
use netlab::vectors::{self, Answer, Documented, Privilege, SocketKind, Vector};

/// Interface indexes of the chassis, read before the cases run (the last finding deletes ctl0).
struct Indexes {
    ctl0: u32,
    eth1: u32,
}

fn run_section(sections: &[Section]) -> (Indexes, Vec<CaseReport>) {
    let lab = DemoLab::new().expect("building the demo lab");
    let indexes = Indexes {
        ctl0: lab.chassis().ctl0_index().expect("ctl0 index"),
        eth1: lab.chassis().eth1_index().expect("eth1 index"),
    };
    let plan: Vec<_> = cases::plan()
        .into_iter()
        .filter(|c| sections.contains(&c.section) || c.section == Section::NegativeControl)
        .collect();
    let report = lab
        .run(&plan, &BarePinning, &mut |_| {})
        .expect("running the cases");
    assert_negative_controls_leaked(&report.cases);
    let cases = report
        .cases
        .into_iter()
        .filter(|c| sections.contains(&c.spec.section))
        .collect();
    (indexes, cases)
}

/// The negative controls run in every lab: `bind()`-only sockets must be seen leaving the front
/// panel, answered by the front peer, or the zero counts elsewhere prove nothing.
fn assert_negative_controls_leaked(cases: &[CaseReport]) {
    let controls: Vec<_> = cases
        .iter()
        .filter(|c| c.spec.section == Section::NegativeControl)
        .collect();
    assert_eq!(controls.len(), 5, "bind-only TCP/UDP v4/v6 and ingress");
    for case in controls {
        assert_eq!(
            case.verdict,
            Verdict::Leaked,
            "negative control {} did not leak ({}): the counter is blind; frames {:?}",
            case.spec.id,
            case.outcome,
            case.front_frames
        );
        assert!(case.frames.front > 0);
        assert_eq!(case.frames.ctl0, 0, "{}: {:?}", case.spec.id, case);
        if case.spec.id != "bind-only-ingress-tcp" {
            assert_eq!(case.outcome, "answered by front", "{}", case.spec.id);
        }
    }
}

fn finding(cases: &[CaseReport], vector: Vector) -> &CaseReport {
    cases
        .iter()
        .find(|c| c.spec.id == format!("finding-{}", vector.id()))
        .unwrap_or_else(|| panic!("no case for {vector}"))
}

#[test]
fn vectors_recorded_as_leaking_leave_through_the_front_panel() {
    if !netlab::require_privileged() {
        return;
    }
    let (indexes, cases) = run_section(&[Section::KernelFinding, Section::Lifecycle]);
    let eth1 = indexes.eth1;
    let mut checked = 0;
    for vector in Vector::ALL {
        let info = vector.info();
        if info.documented != Documented::Leaks {
            continue;
        }
        checked += 1;
        let case = finding(&cases, vector);
        let attempt = case.attempt.as_ref().expect("attempt recorded");
        assert_eq!(
            attempt.answer,
            Answer::Accepted,
            "{} ({}): docs/kernel.md ({}) says the kernel accepts it; this kernel: {}",
            info.id,
            info.privilege,
            info.documented_in,
            case.outcome
        );
        assert!(
            case.vector_frames_on_front.unwrap_or(0) > 0,
            "{} ({}): docs/kernel.md ({}) says its packets leave through eth1; on this kernel \
             none of its own packets reached the front peer. Front frames: {:?}",
            info.id,
            info.privilege,
            info.documented_in,
            case.front_frames
        );
        assert_eq!(case.verdict, Verdict::Leaked);
        assert_eq!(case.as_documented, Some(true));
        // The vector's own packets never showed up on ctl0 either: they were redirected.
        assert_eq!(case.frames.ctl0, 0, "{}: {case:?}", info.id);
    }
    assert_eq!(checked, 14);
    // docs/kernel.md, "The lifecycle of a binding": once another device takes a deleted
    // interface's index, the old socket sends through it, and its binding reads as the new name.
    let reuse = cases
        .iter()
        .find(|c| c.spec.id == "finding-ifindex-reuse")
        .expect("ifindex reuse case");
    assert_eq!(reuse.verdict, Verdict::Leaked, "{}", reuse.outcome);
    assert!(
        reuse
            .front_frames
            .iter()
            .any(|f| f.starts_with("reuse0: ") && f.contains("10.99.7.2")),
        "the old socket's traffic on the new device: {:?}",
        reuse.front_frames
    );
    assert!(
        reuse.outcome.contains("socket now bound to reuse0"),
        "{}",
        reuse.outcome
    );
    assert_eq!(
        reuse.frames.ctl0, 1,
        "before the deletion it used ctl0: {}",
        reuse.outcome
    );
    // The rebinds: the socket is now bound to eth1 (docs/kernel.md: a link-local bind() moves
    // the binding without a word; a privileged SO_BINDTODEVICE changes it openly).
    for vector in [Vector::V6BindLinkLocal, Vector::RebindPrivileged] {
        let attempt = finding(&cases, vector).attempt.as_ref().unwrap();
        assert_eq!(
            attempt.bound_after.map(|i| i.get()),
            Some(eth1),
            "{vector}: binding after the attempt"
        );
    }
}

#[test]
fn vectors_recorded_as_refused_are_refused_and_send_nothing_on_the_front_panel() {
    if !netlab::require_privileged() {
        return;
    }
    let (indexes, cases) = run_section(&[Section::KernelFinding]);
    let ctl0 = indexes.ctl0;
    let mut checked = 0;
    for vector in Vector::ALL {
        let info = vector.info();
        let Documented::Refused(errno) = info.documented else {
            continue;
        };
        checked += 1;
        let case = finding(&cases, vector);
        let attempt = case.attempt.as_ref().expect("attempt recorded");
        match &attempt.answer {
            Answer::Refused { errno: got, .. } => assert_eq!(
                got.name(),
                errno,
                "{}: docs/kernel.md ({}) records {errno}; this kernel: {}",
                info.id,
                info.documented_in,
                case.outcome
            ),
            Answer::Accepted => panic!(
                "{}: docs/kernel.md ({}) records {errno}, but this kernel accepted it; front frames {:?}",
                info.id, info.documented_in, case.front_frames
            ),
        }
        assert_eq!(
            case.frames.front, 0,
            "{}: refused, yet frames on the front link: {:?}",
            info.id, case.front_frames
        );
        assert_eq!(
            attempt.bound_after.map(|i| i.get()),
            Some(ctl0),
            "{}: still bound to ctl0",
            info.id
        );
    }
    assert_eq!(checked, 8);
}

#[test]
fn controls_recorded_as_not_leaking_go_out_of_ctl0() {
    if !netlab::require_privileged() {
        return;
    }
    let (_, cases) = run_section(&[Section::KernelFinding]);
    let mut checked = 0;
    for vector in Vector::ALL {
        let info = vector.info();
        if info.documented != Documented::Contained {
            continue;
        }
        checked += 1;
        let case = finding(&cases, vector);
        assert_eq!(
            case.attempt.as_ref().map(|a| &a.answer),
            Some(&Answer::Accepted),
            "{}: {}",
            info.id,
            case.outcome
        );
        assert_eq!(
            case.frames.front, 0,
            "{}: docs/kernel.md ({}) says it does not leak; front frames: {:?}",
            info.id, info.documented_in, case.front_frames
        );
        // Positive control for the same case: the packet was sent, out of ctl0.
        assert!(
            case.frames.ctl0 > 0,
            "{}: nothing on ctl0 either, so the case proves nothing",
            info.id
        );
    }
    assert_eq!(checked, 4);
}

#[test]
fn honest_sockets_pinned_by_index_do_not_leak_and_refuse_front_ingress() {
    if !netlab::require_privileged() {
        return;
    }
    for section in [Section::Pinned, Section::Ingress] {
        let (_, cases) = run_section(&[section]);
        assert!(!cases.is_empty());
        for case in cases {
            if case.spec.id == "pinned-bind-linklocal" {
                // A bare SO_BINDTOIFINDEX does not stop the link-local bind() from rebinding
                // the socket (docs/kernel.md, "Override vectors"): that is why
                // the library reads the binding back after every bind(). `ifpin demo`'s own
                // test shows the library refusing it.
                assert_eq!(case.verdict, Verdict::Leaked, "{}", case.outcome);
                continue;
            }
            assert!(
                case.ok,
                "{}: {} ({}), front frames {:?}",
                case.spec.id, case.verdict, case.outcome, case.front_frames
            );
            if section == Section::Pinned && case.verdict == Verdict::NoLeak {
                assert_eq!(case.frames.front, 0);
                assert!(
                    case.frames.ctl0 > 0,
                    "{}: reached the backplane over ctl0",
                    case.spec.id
                );
            }
        }
    }
}

#[test]
fn with_privilege_really_drops_capabilities_on_its_thread_only() {
    if !netlab::require_privileged() {
        return;
    }
    // Unprivileged: a raw socket is refused (so the "unprivileged" findings are measured
    // without CAP_NET_RAW)...
    let unprivileged =
        vectors::with_privilege(Privilege::None, || SocketKind::Raw4Icmp.open()).expect("capset");
    assert_eq!(
        unprivileged.map(drop).map_err(|e| e.raw_os_error()),
        Err(Some(libc::EPERM))
    );
    // ...CAP_NET_RAW alone allows it...
    let raw =
        vectors::with_privilege(Privilege::NetRaw, || SocketKind::Raw4Icmp.open()).expect("capset");
    assert!(raw.is_ok(), "{raw:?}");
    // ...and the calling thread kept its own capabilities.
    assert!(SocketKind::Raw4Icmp.open().is_ok());
}

/// A [`cases::Pinning`] that pins nothing: the demo's judgement must catch it.
struct NotPinning;

impl cases::Pinning for NotPinning {
    fn describe(&self) -> String {
        "nothing (negative control)".into()
    }

    fn pin(
        &self,
        _socket: std::os::fd::BorrowedFd<'_>,
        _interface: &str,
    ) -> Result<(), cases::PinningError> {
        Ok(())
    }

    fn tcp_exchange(
        &self,
        _interface: &str,
        peer: std::net::SocketAddr,
        timeout: std::time::Duration,
    ) -> Result<String, cases::PinningError> {
        let stream = std::net::TcpStream::connect_timeout(&peer, timeout)?;
        Ok(cases::read_answer(stream, timeout)?)
    }

    fn tcp_exchange_from(
        &self,
        _interface: &str,
        local: std::net::SocketAddr,
        peer: std::net::SocketAddr,
        timeout: std::time::Duration,
    ) -> Result<String, cases::PinningError> {
        let socket = socket2::Socket::new(
            socket2::Domain::for_address(peer),
            socket2::Type::STREAM,
            None,
        )?;
        socket.bind(&local.into())?;
        socket.connect_timeout(&peer.into(), timeout)?;
        Ok(cases::read_answer(
            std::net::TcpStream::from(socket),
            timeout,
        )?)
    }

    fn udp_exchange(
        &self,
        _interface: &str,
        peer: std::net::SocketAddr,
        timeout: std::time::Duration,
    ) -> Result<String, cases::PinningError> {
        let any: std::net::SocketAddr = if peer.is_ipv4() {
            "0.0.0.0:0".parse()?
        } else {
            "[::]:0".parse()?
        };
        let socket = std::net::UdpSocket::bind(any)?;
        socket.set_read_timeout(Some(timeout))?;
        socket.send_to(b"who are you?", peer)?;
        let mut buf = [0u8; 64];
        let (len, _) = socket.recv_from(&mut buf)?;
        Ok(String::from_utf8_lossy(&buf[..len]).into_owned())
    }

    fn tcp_listener(
        &self,
        _interface: &str,
        addr: std::net::SocketAddr,
    ) -> Result<std::net::TcpListener, cases::PinningError> {
        Ok(std::net::TcpListener::bind(addr)?)
    }

    fn udp_socket(
        &self,
        _interface: &str,
        addr: std::net::SocketAddr,
    ) -> Result<std::net::UdpSocket, cases::PinningError> {
        Ok(std::net::UdpSocket::bind(addr)?)
    }
}

#[test]
fn the_demo_judgement_catches_sockets_that_are_not_pinned() {
    if !netlab::require_privileged() {
        return;
    }
    let lab = DemoLab::new().expect("building the demo lab");
    let plan: Vec<_> = cases::plan()
        .into_iter()
        .filter(|c| c.section.is_promise())
        .collect();
    let report = lab.run(&plan, &NotPinning, &mut |_| {}).expect("running");
    assert!(!report.summary.ok, "{:#?}", report.summary);
    for case in &report.cases {
        // Egress to routed addresses: the table sends it out of the front panel, where it is
        // counted. (Unscoped link-local is left out: where it goes without a pin is up to the
        // kernel's choice among the fe80::/64 routes, not a property of the judgement.)
        let routed = case.spec.section == Section::Pinned && !case.spec.id.ends_with("linklocal");
        // Ingress: unpinned sockets accept what arrives from the front.
        if routed || case.spec.section == Section::Ingress {
            assert_eq!(
                case.verdict,
                Verdict::Leaked,
                "{}: {}",
                case.spec.id,
                case.outcome
            );
            assert!(!case.ok, "{}", case.spec.id);
        }
        if routed {
            assert!(case.frames.front > 0, "{}", case.spec.id);
        }
    }
    assert!(report.summary.promises_kept <= 2, "{:#?}", report.summary);
}
