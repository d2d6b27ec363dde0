//! `ifpin guard` through its life and the interfaces' lives: an interface created after the
//! start is covered; `kill -9` leaves the rules in force and a restart adopts them with no
//! gap and no duplicate; `--remove` leaves nothing; a broken policy on SIGHUP keeps the old
//! one; the plane's interface deleted and its index taken by another device fails closed.
//! Each with its negative control: the same traffic without the guard leaves.

#[path = "support/mod.rs"]
mod support;

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use netlab::{Chassis, FrameCounter, Peer, Route};
use nix::sys::signal::Signal;
use support::guard::{Guard, POLICY, PolicyFile, front_control_frames, ifpin_in, table_exists};

fn control(port: u16) -> SocketAddr {
    SocketAddr::new(IpAddr::V4(Chassis::CONTROL_V4), port)
}

/// A second front-panel port `eth2` to the front peer, with a host route to the control
/// address through it; returns a counter on the front's end.
fn add_eth2(chassis: &Chassis, index: Option<u32>) -> FrameCounter {
    chassis
        .add_host_link("eth2", index, Peer::Front, "peer-eth2")
        .unwrap();
    chassis.host().add_addr("eth2", "10.40.0.1/24").unwrap();
    chassis
        .front()
        .add_addr("peer-eth2", "10.40.0.2/24")
        .unwrap();
    Route::new(&format!("{}/32", Chassis::CONTROL_V4))
        .via("10.40.0.2")
        .dev("eth2")
        .metric(10)
        .apply(chassis.host())
        .unwrap();
    FrameCounter::open(chassis.front(), "peer-eth2").unwrap()
}

#[test]
fn an_interface_created_after_the_start_is_covered_from_its_first_packet() {
    if !netlab::require_privileged() {
        return;
    }
    let chassis = Chassis::new().unwrap();
    // Negative control: a new port with a route to the plane carries its traffic.
    let eth2 = add_eth2(&chassis, None);
    support::guard::send_udp(chassis.host(), None, control(9_100), 3);
    assert!(front_control_frames(&eth2) > 0, "{}", eth2.describe());
    drop(eth2);
    chassis.host().ip(&["link", "del", "eth2"]).unwrap();

    let policy = PolicyFile::new(POLICY);
    let guard = Guard::start(chassis.host(), policy.path(), &[]);
    let eth2 = add_eth2(&chassis, None);
    // The very first packet after the link exists: no reaction time is needed, the hooks
    // are the namespace's.
    support::guard::send_udp(chassis.host(), None, control(9_101), 3);
    assert_eq!(front_control_frames(&eth2), 0, "{}", eth2.describe());
    let event = guard.expect_event("drop via eth2", |e| {
        e["type"] == "drop" && e["interface"] == "eth2"
    });
    assert_eq!(event["rule"], "egress");
}

#[test]
fn kill_9_leaves_the_rules_and_a_restart_adopts_them_with_no_gap_and_no_duplicate() {
    if !netlab::require_privileged() {
        return;
    }
    let chassis = Chassis::new().unwrap();
    let front = chassis.front_counter().unwrap();
    support::guard::send_udp(chassis.host(), None, control(9_200), 3);
    assert!(front_control_frames(&front) > 0, "negative control");
    front.clear();

    let policy = PolicyFile::new(POLICY);
    let guard = Guard::start(chassis.host(), policy.path(), &[]);
    assert_eq!(guard.events()[0]["adopted"], false);
    // Plane traffic all along: through the kill, the time without a guard, the restart.
    let stop = Arc::new(AtomicBool::new(false));
    let sender = {
        let stop = stop.clone();
        let host = chassis.host();
        std::thread::scope(|scope| {
            let handle = scope.spawn(|| {
                let mut sent = 0;
                while !stop.load(Ordering::Relaxed) {
                    support::guard::send_udp(host, None, control(9_201), 20);
                    sent += 20;
                }
                sent
            });
            guard.kill9();
            std::thread::sleep(Duration::from_millis(300));
            assert!(table_exists(chassis.host()), "the rules stay after kill -9");
            let again = Guard::start(chassis.host(), policy.path(), &[]);
            let started = again.expect_event("started", |e| e["type"] == "started");
            assert_eq!(started["adopted"], true, "{started}");
            std::thread::sleep(Duration::from_millis(300));
            stop.store(true, Ordering::Relaxed);
            let sent = handle.join().unwrap();
            (sent, again)
        })
    };
    let (sent, again) = sender;
    assert!(sent >= 40, "the sender ran: {sent}");
    assert_eq!(front_control_frames(&front), 0, "{}", front.describe());
    let ruleset = support::guard::nft_ruleset(chassis.host());
    assert_eq!(ruleset.matches("table ip ifpin").count(), 1, "{ruleset}");
    assert_eq!(ruleset.matches("table ip6 ifpin").count(), 1, "{ruleset}");
    assert_eq!(ruleset.matches("table ").count(), 2, "{ruleset}");
    // Per table (ip, ip6): postrouting 2 prefixes x 2 ends, input 2 sources + 2 port
    // rules, forward 2 sources.
    assert_eq!(ruleset.matches("jump backplane_").count(), 20, "{ruleset}");
    assert_eq!(
        ruleset.matches("chain ").count(),
        12,
        "3 base chains and 3 plane chains per table, once: {ruleset}"
    );
    drop(again);
}

#[test]
fn remove_leaves_nothing_and_traffic_follows_the_routing_table_again() {
    if !netlab::require_privileged() {
        return;
    }
    let chassis = Chassis::new().unwrap();
    let front = chassis.front_counter().unwrap();
    let policy = PolicyFile::new(POLICY);
    let guard = Guard::start(chassis.host(), policy.path(), &[]);
    let status = guard.stop();
    assert!(status.success(), "{status}");
    // Stopped: the rules stay.
    assert!(table_exists(chassis.host()));
    support::guard::send_udp(chassis.host(), None, control(9_300), 3);
    assert_eq!(front_control_frames(&front), 0);

    let (code, stdout, stderr) = ifpin_in(chassis.host(), &["guard", "--remove"]);
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    assert!(stdout.contains("removed the guard's rules"), "{stdout}");
    assert!(!table_exists(chassis.host()));
    assert_eq!(support::guard::nft_ruleset(chassis.host()).trim(), "");
    // Nothing left: plane traffic follows the routing table again (the control).
    support::guard::send_udp(chassis.host(), None, control(9_301), 3);
    assert!(front_control_frames(&front) > 0, "{}", front.describe());
    let (code, stdout, _) = ifpin_in(chassis.host(), &["guard", "--remove"]);
    assert_eq!(code, Some(0));
    assert!(stdout.contains("nothing to remove"), "{stdout}");
}

#[test]
fn a_broken_policy_on_sighup_keeps_the_old_one_and_a_good_one_takes_over() {
    if !netlab::require_privileged() {
        return;
    }
    let chassis = Chassis::new().unwrap();
    let front = chassis.front_counter().unwrap();
    let policy = PolicyFile::new(POLICY);
    let guard = Guard::start(chassis.host(), policy.path(), &[]);

    policy.rewrite(
        "[[plane]]\nname = \"backplane\"\ninterface = \"ctl0\"\nprefixes = [\"10.99.0.1/16\"]\n",
    );
    guard.signal(Signal::SIGHUP);
    let failed = guard.expect_event("reload-failed", |e| e["type"] == "reload-failed");
    assert!(
        failed["error"].as_str().unwrap().contains("host bits set"),
        "{failed}"
    );
    support::guard::send_udp(chassis.host(), None, control(9_400), 3);
    assert_eq!(
        front_control_frames(&front),
        0,
        "the old policy still holds"
    );

    // Negative control inside the test: a good policy without the control prefix lets it
    // out; the reload took effect.
    policy.rewrite(
        "[[plane]]\nname = \"backplane\"\ninterface = \"ctl0\"\nprefixes = [\"10.10.0.0/24\"]\n",
    );
    guard.signal(Signal::SIGHUP);
    guard.expect_event("reload", |e| e["type"] == "reload");
    support::guard::send_udp(chassis.host(), None, control(9_401), 3);
    assert!(front_control_frames(&front) > 0, "{}", front.describe());
}

#[test]
fn the_plane_interface_deleted_and_its_index_taken_over_fails_closed() {
    if !netlab::require_privileged() {
        return;
    }
    // Negative control: without the guard, a device that takes ctl0's index and routes the
    // plane carries its traffic out of the front.
    {
        let chassis = Chassis::new().unwrap();
        let index = chassis.ctl0_index().unwrap();
        chassis.delete_ctl0().unwrap();
        let evil = add_eth2(&chassis, Some(index));
        support::guard::send_udp(chassis.host(), None, control(9_500), 3);
        assert!(front_control_frames(&evil) > 0, "{}", evil.describe());
    }

    let chassis = Chassis::new().unwrap();
    let index = chassis.ctl0_index().unwrap();
    let policy = PolicyFile::new(POLICY);
    let guard = Guard::start(chassis.host(), policy.path(), &[]);
    chassis.delete_ctl0().unwrap();
    guard.expect_event("link gone", |e| e["type"] == "link" && e["event"] == "gone");
    let evil = add_eth2(&chassis, Some(index));
    assert_eq!(chassis.host().ifindex("eth2").unwrap(), index);
    support::guard::send_udp(chassis.host(), None, control(9_501), 3);
    assert_eq!(front_control_frames(&evil), 0, "{}", evil.describe());
    guard.expect_event("index taken over", |e| {
        e["type"] == "link" && e["event"] == "index-taken-over" && e["interface"] == "eth2"
    });

    // ctl0 returns (at another index): the rules follow the name, the backplane works again.
    chassis.recreate_ctl0(None).unwrap();
    guard.expect_event("link returned", |e| {
        e["type"] == "link" && e["event"] == "returned"
    });
    let backplane = chassis.backplane_counter().unwrap();
    let pinned = chassis
        .host()
        .run(|| {
            let s =
                socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::DGRAM, None).unwrap();
            s.bind_device(Some(b"ctl0")).unwrap();
            s.send_to(b"x", &control(9_502).into()).is_ok()
        })
        .unwrap();
    assert!(pinned, "a socket pinned to the returned ctl0 may send");
    backplane.settle();
    assert!(
        backplane.count(|f| f.dst_ip() == Some(IpAddr::V4(Chassis::CONTROL_V4))) > 0,
        "{}",
        backplane.describe()
    );
}

#[test]
fn systemd_hears_ready_watchdog_reloading_and_stopping() {
    if !netlab::require_privileged() {
        return;
    }
    let chassis = Chassis::new().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let socket_path = dir.path().join("notify");
    let socket = std::os::unix::net::UnixDatagram::bind(&socket_path).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let policy = PolicyFile::new(POLICY);
    let mut cmd = chassis.host().command(support::guard::ifpin());
    cmd.args(["guard", "--policy"])
        .arg(policy.path())
        .env("NOTIFY_SOCKET", &socket_path)
        .env("WATCHDOG_USEC", "200000")
        .stdout(std::process::Stdio::null());
    let process = chassis.host().spawn(&mut cmd).unwrap();
    let next = || {
        let mut buf = [0u8; 512];
        let n = socket.recv(&mut buf).expect("a notification");
        String::from_utf8_lossy(&buf[..n]).into_owned()
    };
    let first = next();
    assert!(first.starts_with("READY=1"), "{first}");
    assert!(
        table_exists(chassis.host()),
        "READY=1 only once the rules hold"
    );
    assert_eq!(next(), "WATCHDOG=1");
    let pid = nix::unistd::Pid::from_raw(process.pid() as i32);
    nix::sys::signal::kill(pid, Signal::SIGHUP).unwrap();
    let mut seen = Vec::new();
    while !seen.iter().any(|m: &String| m.starts_with("READY=1")) {
        seen.push(next());
    }
    assert!(
        seen.iter()
            .any(|m| m.starts_with("RELOADING=1\nMONOTONIC_USEC=")),
        "{seen:?}"
    );
    nix::sys::signal::kill(pid, Signal::SIGTERM).unwrap();
    let mut last = next();
    while last == "WATCHDOG=1" {
        last = next();
    }
    assert_eq!(last, "STOPPING=1");
    assert_eq!(process.wait().unwrap().code(), Some(0));
}

#[test]
fn a_deleted_table_is_installed_again_at_the_next_audit_round() {
    if !netlab::require_privileged() {
        return;
    }
    let chassis = Chassis::new().unwrap();
    let front = chassis.front_counter().unwrap();
    let policy = PolicyFile::new(POLICY);
    let guard = Guard::start(
        chassis.host(),
        policy.path(),
        &["--audit-interval", "300ms"],
    );
    // Someone with CAP_NET_ADMIN removes the table: plane traffic leaks (the control)...
    let (code, _, _) = ifpin_in(chassis.host(), &["guard", "--remove"]);
    assert_eq!(code, Some(0));
    support::guard::send_udp(chassis.host(), None, control(9_600), 2);
    assert!(front_control_frames(&front) > 0);
    front.clear();
    // ...until the guard's next round puts it back.
    guard.expect_event("rules-restored", |e| e["type"] == "rules-restored");
    assert!(table_exists(chassis.host()));
    support::guard::send_udp(chassis.host(), None, control(9_601), 2);
    assert_eq!(front_control_frames(&front), 0, "{}", front.describe());
}
