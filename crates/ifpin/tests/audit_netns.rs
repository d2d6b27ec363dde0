//! `ifpin::audit` on a real chassis (netlab): the sockets a card holds, checked against its
//! policy, give exactly the violations they should, with the right interfaces and owners.

use std::net::{IpAddr, Ipv4Addr, SocketAddr, SocketAddrV6, TcpListener, TcpStream, UdpSocket};
use std::time::Duration;

use ifpin::audit::{AuditOptions, Rule, snapshot};
use ifpin::net::{PinnedTcpListener, PinnedTcpStream, PinnedUdpSocket};
use ifpin::{Interface, Policy};
use netlab::{Chassis, Proto};

const POLICY: &str = r#"
[[plane]]
name = "backplane"
interface = "ctl0"
prefixes = ["10.99.0.0/16", "fd99::/16"]
ports = [7500, 7501]
"#;

/// The service the control connections talk to, served behind both peers.
const CONTROL_PORT: u16 = 7600;

/// What the card holds, and what each socket must give.
struct Held {
    _sockets: Vec<Box<dyn std::any::Any + Send>>,
    /// (rule, local, remote) expected; sockets with no violation are listed with `None`.
    expected: Vec<(Option<Rule>, SocketAddr, SocketAddr, Option<&'static str>)>,
}

fn build_card(chassis: &Chassis) -> Held {
    chassis
        .host()
        .run(|| {
            let ctl0 = Interface::resolve(Chassis::CTL0).unwrap();
            let eth1 = Interface::resolve(Chassis::ETH1).unwrap();
            let control = SocketAddr::new(Chassis::CONTROL_V4.into(), CONTROL_PORT);
            let mut sockets: Vec<Box<dyn std::any::Any + Send>> = Vec::new();
            let mut expected = Vec::new();

            // 1. A pinned control connection: fine.
            let pinned =
                PinnedTcpStream::connect_timeout(&ctl0, control, Duration::from_secs(5)).unwrap();
            let s = pinned.as_std();
            expected.push((
                None,
                s.local_addr().unwrap(),
                s.peer_addr().unwrap(),
                Some("ctl0"),
            ));
            sockets.push(Box::new(pinned));

            // 2. The same connection, unpinned: the routing table sends it out eth1.
            let unpinned = TcpStream::connect_timeout(&control, Duration::from_secs(5)).unwrap();
            expected.push((
                Some(Rule::UnpinnedPlaneTraffic),
                unpinned.local_addr().unwrap(),
                unpinned.peer_addr().unwrap(),
                None,
            ));
            sockets.push(Box::new(unpinned));

            // 3. A wildcard listener on a plane port.
            let wildcard = TcpListener::bind("0.0.0.0:7500").unwrap();
            expected.push((
                Some(Rule::UnpinnedPlaneListener),
                wildcard.local_addr().unwrap(),
                "0.0.0.0:0".parse().unwrap(),
                None,
            ));
            sockets.push(Box::new(wildcard));

            // 4. A pinned listener on the other plane port: fine.
            let listener = PinnedTcpListener::bind(&ctl0, "[::]:7501".parse().unwrap()).unwrap();
            expected.push((
                None,
                listener.as_std().local_addr().unwrap(),
                "[::]:0".parse().unwrap(),
                Some("ctl0"),
            ));
            sockets.push(Box::new(listener));

            // 5. A socket pinned to ctl0 talking off-plane (connected UDP, nothing is sent).
            let off = PinnedUdpSocket::bind(&ctl0, "0.0.0.0:0".parse().unwrap()).unwrap();
            let off_peer = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 53)), 53);
            off.connect(off_peer).unwrap();
            expected.push((
                Some(Rule::PinnedOffPlane),
                off.local_addr().unwrap(),
                off_peer,
                Some("ctl0"),
            ));
            sockets.push(Box::new(off));

            // 6. Pinned to ctl0, to the backplane's link-local address: the plane's own peer.
            let ll = PinnedUdpSocket::bind(&ctl0, "[::]:0".parse().unwrap()).unwrap();
            let ll_peer = SocketAddr::V6(SocketAddrV6::new(
                Chassis::BACKPLANE_LL,
                CONTROL_PORT,
                0,
                ctl0.index().get(),
            ));
            ll.connect(ll_peer).unwrap();
            expected.push((None, ll.local_addr().unwrap(), ll_peer, Some("ctl0")));
            sockets.push(Box::new(ll));

            // 7. A front-panel link-local peer, scoped to eth1: not the plane's business.
            let front_ll = UdpSocket::bind("[::]:0").unwrap();
            let front_peer = SocketAddr::V6(SocketAddrV6::new(
                Chassis::FRONT_LL,
                CONTROL_PORT,
                0,
                eth1.index().get(),
            ));
            front_ll.connect(front_peer).unwrap();
            expected.push((
                None,
                front_ll.local_addr().unwrap(),
                front_peer,
                Some("eth1"),
            ));
            sockets.push(Box::new(front_ll));

            Held {
                _sockets: sockets,
                expected,
            }
        })
        .unwrap()
}

#[test]
fn a_card_gets_exactly_its_violations() {
    if !netlab::require_privileged() {
        return;
    }
    let chassis = Chassis::new().unwrap();
    let _served = chassis.serve(Proto::Tcp, CONTROL_PORT).unwrap();
    let held = build_card(&chassis);
    let policy = Policy::parse(POLICY, "card.toml").unwrap();

    let audit = chassis
        .host()
        .run(|| snapshot(&AuditOptions::default()))
        .unwrap()
        .unwrap();
    assert_eq!(audit.namespaces().len(), 1);
    assert_eq!(audit.namespaces()[0].label, chassis.host().name());
    let me = std::process::id();

    // Every socket the card holds is seen, with its interface and its owner.
    for (_, local, remote, interface) in &held.expected {
        let found: Vec<_> = audit
            .sockets()
            .iter()
            .filter(|s| s.diag.local == *local && s.diag.remote == *remote)
            .collect();
        assert_eq!(found.len(), 1, "{local} -> {remote}: {found:#?}");
        assert_eq!(
            found[0].interface_name.as_deref(),
            *interface,
            "{local} -> {remote}"
        );
        assert_eq!(found[0].pids, vec![me], "{local} -> {remote}");
        assert_eq!(audit.process(me).unwrap().pid, me);
    }

    let check = audit.check(&policy);
    assert!(check.warnings.is_empty(), "{:?}", check.warnings);
    let mut got: Vec<(Rule, SocketAddr, SocketAddr)> = check
        .violations
        .iter()
        .map(|v| {
            let s = &audit.sockets()[v.socket];
            (v.rule, s.diag.local, s.diag.remote)
        })
        .collect();
    let mut want: Vec<(Rule, SocketAddr, SocketAddr)> = held
        .expected
        .iter()
        .filter_map(|(rule, l, r, _)| rule.map(|rule| (rule, *l, *r)))
        .collect();
    got.sort();
    want.sort();
    assert_eq!(got, want, "{:#?}", check.violations);
    assert!(check.violations.iter().all(|v| v.plane == "backplane"));
}

#[test]
fn all_netns_finds_a_namespace_it_was_not_told_about() {
    if !netlab::require_privileged() {
        return;
    }
    let chassis = Chassis::new().unwrap();
    // A wildcard listener on a plane port inside the chassis' host namespace; the audit runs
    // from the test's own namespace.
    let listener = chassis
        .host()
        .run(|| TcpListener::bind("0.0.0.0:7500").unwrap())
        .unwrap();
    let local = listener.local_addr().unwrap();
    let policy = Policy::parse(POLICY, "card.toml").unwrap();

    let audit = snapshot(&AuditOptions {
        all_netns: true,
        ..AuditOptions::default()
    })
    .unwrap();
    let labels: Vec<&str> = audit
        .namespaces()
        .iter()
        .map(|n| n.label.as_str())
        .collect();
    for ns in [chassis.host(), chassis.backplane(), chassis.front()] {
        assert_eq!(
            labels.iter().filter(|l| **l == ns.name()).count(),
            1,
            "{labels:?}"
        );
    }
    let ours: Vec<_> = audit
        .sockets()
        .iter()
        .filter(|s| s.diag.local == local && s.pids.contains(&std::process::id()))
        .collect();
    assert_eq!(ours.len(), 1);
    assert_eq!(audit.namespace_of(ours[0]).label, chassis.host().name());
    let check = audit.check(&policy);
    let flagged: Vec<_> = check
        .violations
        .iter()
        .filter(|v| {
            let s = &audit.sockets()[v.socket];
            audit.namespace_of(s).label == chassis.host().name()
        })
        .map(|v| (v.rule, audit.sockets()[v.socket].diag.local))
        .collect();
    assert_eq!(flagged, vec![(Rule::UnpinnedPlaneListener, local)]);
    drop(listener);
}

/// A process confined by the engine (what `ifpin exec` does) is reported as running under
/// `ifpin exec`, at the level of its run, and its listener, pinned by the cgroup at creation,
/// breaks no rule; the same listener outside the cgroup does (the negative control).
#[test]
fn sockets_of_a_confined_program_show_its_run_and_level() {
    use std::io::{BufRead, BufReader, Write};
    use std::process::Stdio;

    use ifpin::Level;
    use ifpin::confine::{ConfineOptions, Confinement};

    if !netlab::require_privileged() {
        return;
    }
    let chassis = Chassis::new().unwrap();
    let confinement = chassis
        .host()
        .run(|| {
            Confinement::create(ConfineOptions {
                interface: Interface::resolve(Chassis::CTL0)?,
                level: Level::Enforced,
                allow_loopback: false,
            })
        })
        .unwrap()
        .unwrap();
    // Waits for a line (so it is in the cgroup before it makes a socket), listens on a plane
    // port on every address, says so, then holds the socket until stdin closes.
    const PROGRAM: &str = "import socket, sys\n\
        sys.stdin.readline()\n\
        s = socket.socket(); s.bind(('0.0.0.0', int(sys.argv[1]))); s.listen()\n\
        print('ready', flush=True)\n\
        sys.stdin.read()\n";
    let start = |port: &str, confined: bool| {
        let mut cmd = chassis.host().command("python3");
        cmd.args(["-c", PROGRAM, port])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped());
        let process = chassis.host().spawn(&mut cmd).unwrap();
        if confined {
            confinement.add_process(process.pid()).unwrap();
        }
        let (mut stdin, stdout) =
            process.with_child(|c| (c.stdin.take().unwrap(), c.stdout.take().unwrap()));
        // Killed first on a panic, so the cgroup empties and the confinement's drop removes it.
        let process = KillOnDrop(process);
        stdin.write_all(b"go\n").unwrap();
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line).unwrap();
        assert_eq!(line.trim(), "ready");
        (process, stdin)
    };
    let (inside, inside_stdin) = start("7500", true);
    let (outside, outside_stdin) = start("7501", false);

    let audit = chassis
        .host()
        .run(|| snapshot(&AuditOptions::default()))
        .unwrap()
        .unwrap();
    let find = |port: u16| {
        audit
            .sockets()
            .iter()
            .find(|s| {
                s.diag.local.port() == port && s.diag.protocol == ifpin::sockdiag::Protocol::Tcp
            })
            .unwrap_or_else(|| panic!("no listener on {port}"))
    };
    let confined = find(7500);
    assert_eq!(confined.pids, vec![inside.0.pid()]);
    assert_eq!(confined.interface_name.as_deref(), Some("ctl0"));
    let run = confined
        .exec
        .as_ref()
        .expect("reported as running under ifpin exec");
    let cgroup_dir = confinement
        .cgroup_path()
        .file_name()
        .unwrap()
        .to_str()
        .unwrap();
    assert!(
        run.cgroup.ends_with(&format!("/ifpin/{cgroup_dir}")),
        "{run:?}"
    );
    assert_eq!(run.level, Some(Level::Enforced));

    let free = find(7501);
    assert_eq!(free.pids, vec![outside.0.pid()]);
    assert!(free.exec.is_none());
    assert_eq!(free.interface_name, None);

    let policy = Policy::parse(POLICY, "card.toml").unwrap();
    let flagged: Vec<_> = audit
        .check(&policy)
        .violations
        .iter()
        .map(|v| (v.rule, audit.sockets()[v.socket].diag.local.port()))
        .collect();
    assert_eq!(flagged, vec![(Rule::UnpinnedPlaneListener, 7501)]);

    drop((inside_stdin, outside_stdin));
    inside.0.wait().unwrap();
    outside.0.wait().unwrap();
    confinement.close().unwrap();
}

struct KillOnDrop(netlab::Process);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
    }
}

/// A listener in a fresh namespace that no process or thread is in any more: a thread
/// unshares its network namespace, listens, and goes back. Only the socket keeps the
/// namespace alive.
fn listener_in_a_namespace_only_a_socket_holds() -> (TcpListener, u64) {
    use std::os::unix::fs::MetadataExt;
    std::thread::spawn(|| {
        let home = std::fs::File::open("/proc/thread-self/ns/net").unwrap();
        nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET).unwrap();
        let inode = std::fs::metadata("/proc/thread-self/ns/net").unwrap().ino();
        let listener = TcpListener::bind("0.0.0.0:7500").unwrap();
        nix::sched::setns(&home, nix::sched::CloneFlags::CLONE_NEWNET).unwrap();
        (listener, inode)
    })
    .join()
    .unwrap()
}

fn audit_all(netns_from_sockets: bool) -> ifpin::audit::Audit {
    audit_all_with(true, netns_from_sockets)
}

fn audit_all_with(netns_from_threads: bool, netns_from_sockets: bool) -> ifpin::audit::Audit {
    snapshot(&AuditOptions {
        all_netns: true,
        netns_from_threads,
        netns_from_sockets,
        ..AuditOptions::default()
    })
    .unwrap()
}

#[test]
fn all_netns_finds_a_namespace_held_only_by_a_socket() {
    use ifpin::audit::netns::Found;
    if !netlab::require_privileged() {
        return;
    }
    let (listener, inode) = listener_in_a_namespace_only_a_socket_holds();
    let me = std::process::id();
    let label = format!("net:[{inode}]");

    // The control: from processes and threads alone, it cannot be found.
    let blind = audit_all(false);
    assert!(
        blind
            .namespaces()
            .iter()
            .all(|ns| ns.namespace.inode != inode),
        "found without looking at sockets"
    );

    let audit = audit_all(true);
    let ns = audit
        .namespaces()
        .iter()
        .find(|ns| ns.namespace.inode == inode)
        .unwrap_or_else(|| panic!("{label} not audited: {:?}", audit.netns()));
    assert_eq!(ns.label, label);
    assert!(
        matches!(ns.namespace.found, Found::Socket { pid, .. } if pid == me),
        "{:?}",
        ns.namespace.found
    );
    let ours: Vec<_> = audit
        .sockets()
        .iter()
        .filter(|s| audit.namespace_of(s).namespace.inode == inode)
        .collect();
    assert_eq!(ours.len(), 1, "{ours:#?}");
    assert_eq!(ours[0].diag.local, "0.0.0.0:7500".parse().unwrap());
    assert_eq!(ours[0].pids, vec![me]);
    // Checked like any other: a wildcard listener on a plane port.
    let policy = Policy::parse(POLICY, "card.toml").unwrap();
    let check = audit.check(&policy);
    assert!(check.violations.iter().any(|v| {
        let s = &audit.sockets()[v.socket];
        v.rule == Rule::UnpinnedPlaneListener && audit.namespace_of(s).namespace.inode == inode
    }));
    drop(listener);
}

#[test]
fn all_netns_finds_a_namespace_only_one_thread_is_in() {
    use ifpin::audit::netns::Found;
    use std::os::unix::fs::MetadataExt;
    if !netlab::require_privileged() {
        return;
    }
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
    // The thread stays in its namespace until the test ends (or panics: the sender drops).
    let thread = std::thread::spawn(move || {
        nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET).unwrap();
        let inode = std::fs::metadata("/proc/thread-self/ns/net").unwrap().ino();
        let tid = nix::unistd::gettid().as_raw() as u32;
        let listener = UdpSocket::bind("0.0.0.0:7501").unwrap();
        ready_tx.send((inode, tid)).unwrap();
        let _ = done_rx.recv();
        drop(listener);
    });
    let (inode, tid) = ready_rx.recv().unwrap();
    let me = std::process::id();

    // The control: from processes alone (and no socket lookup), it cannot be found.
    let blind = audit_all_with(false, false);
    assert!(
        blind
            .namespaces()
            .iter()
            .all(|ns| ns.namespace.inode != inode),
        "found without looking at threads"
    );

    // Found through the thread, without looking at sockets.
    let audit = audit_all(false);
    let ns = audit
        .namespaces()
        .iter()
        .find(|ns| ns.namespace.inode == inode)
        .unwrap_or_else(|| panic!("net:[{inode}] not audited"));
    assert_eq!(
        ns.namespace.found,
        Found::Thread { pid: me, tid },
        "{:?}",
        ns.namespace
    );
    let ours: Vec<_> = audit
        .sockets()
        .iter()
        .filter(|s| audit.namespace_of(s).namespace.inode == inode)
        .map(|s| (s.diag.local, s.pids.clone()))
        .collect();
    assert_eq!(ours, vec![("0.0.0.0:7501".parse().unwrap(), vec![me])]);
    drop(done_tx);
    thread.join().unwrap();
}
