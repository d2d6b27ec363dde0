//! `ifpin guard`, egress: plane traffic never leaves through the front, whoever sends it: an
//! ordinary unconfined program (named in the event), a socket bound to the plane's source
//! address, the kernel's own reset for a closed port, and a namespace routed through the
//! host. Each test first runs the same traffic without the guard (the negative control: it
//! leaves through the front), then with it, counting frames at the far end of the front link.

#[path = "support/mod.rs"]
mod support;

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use netlab::{Chassis, Netns, Proto, Route};
use support::guard::{Guard, POLICY, PolicyFile, front_control_frames};

const PORT: u16 = 7_700;

#[test]
fn an_unconfined_client_to_a_plane_address_is_dropped_and_named() {
    if !netlab::require_privileged() {
        return;
    }
    let chassis = Chassis::new().unwrap();
    let _served = chassis.serve(Proto::Tcp, PORT).unwrap();
    let front = chassis.front_counter().unwrap();
    let url = format!("http://{}:{PORT}/", Chassis::CONTROL_V4);
    let curl = |ns: &Netns| {
        ns.command("curl")
            .args(["-s", "--max-time", "2", &url])
            .spawn()
            .expect("curl runs")
    };

    // Negative control: no guard, the routing table sends it out of the front.
    let mut child = curl(chassis.host());
    child.wait().unwrap();
    assert!(front_control_frames(&front) > 0, "{}", front.describe());
    front.clear();

    let policy = PolicyFile::new(POLICY);
    let guard = Guard::start(chassis.host(), policy.path(), &[]);
    let mut child = curl(chassis.host());
    let pid = child.id();
    let event = guard.expect_event("drop", |e| {
        e["type"] == "drop" && e["dst"] == Chassis::CONTROL_V4.to_string()
    });
    child.wait().unwrap();
    assert_eq!(front_control_frames(&front), 0, "{}", front.describe());
    assert_eq!(event["rule"], "egress", "{event}");
    assert_eq!(event["plane"], "backplane", "{event}");
    assert_eq!(event["direction"], "egress", "{event}");
    assert_eq!(event["interface"], "eth1", "{event}");
    assert_eq!(event["protocol"], "tcp", "{event}");
    assert_eq!(event["dport"], PORT, "{event}");
    assert_eq!(event["sender"], "process", "{event}");
    assert_eq!(event["owner"]["command"], "curl", "{event}");
    assert!(
        event["owner"]["pids"]
            .as_array()
            .unwrap()
            .contains(&pid.into()),
        "curl is pid {pid}: {event}"
    );
    assert_eq!(event["owner"]["uid"], 0, "{event}");
    assert!(event["owner"]["cgroup"].is_string(), "{event}");
    // SYN retries are one flow: reported again with its count, not as new drops.
    let drops = guard
        .events()
        .iter()
        .filter(|e| e["type"] == "drop" && e["dst"] == Chassis::CONTROL_V4.to_string())
        .count();
    assert_eq!(drops, 1, "{:?}", guard.events());
}

#[test]
fn a_socket_bound_to_the_plane_source_cannot_reach_others_through_the_front() {
    if !netlab::require_privileged() {
        return;
    }
    let chassis = Chassis::new().unwrap();
    let front = chassis.front_counter().unwrap();
    let src = IpAddr::V4(Chassis::HOST_CTL0_V4);
    let dst = SocketAddr::new(IpAddr::V4(Chassis::FRONT_V4), 9_000);
    let from_plane = |front: &netlab::FrameCounter| {
        front.settle();
        front.count(|f| f.src_ip() == Some(src))
    };

    support::guard::send_udp(chassis.host(), Some(src), dst, 5);
    assert!(from_plane(&front) > 0, "{}", front.describe());
    let src6 = IpAddr::V6(Chassis::HOST_CTL0_V6);
    support::guard::send_udp(
        chassis.host(),
        Some(src6),
        SocketAddr::new(IpAddr::V6(Chassis::FRONT_V6), 9_000),
        5,
    );
    front.settle();
    assert!(
        front.count(|f| f.src_ip() == Some(src6)) > 0,
        "{}",
        front.describe()
    );
    front.clear();

    let policy = PolicyFile::new(POLICY);
    let guard = Guard::start(chassis.host(), policy.path(), &[]);
    let failed = support::guard::send_udp(chassis.host(), Some(src), dst, 5);
    assert_eq!(failed, 5, "a drop on the way out is EPERM for the sender");
    assert_eq!(from_plane(&front), 0, "{}", front.describe());
    let event = guard.expect_event("drop", |e| {
        e["type"] == "drop" && e["src"] == src.to_string()
    });
    assert_eq!(event["rule"], "egress");
    assert_eq!(event["protocol"], "udp");
    assert_eq!(event["dst"], Chassis::FRONT_V4.to_string());
}

#[test]
fn the_kernels_reset_for_a_closed_port_does_not_leave_through_the_front() {
    if !netlab::require_privileged() {
        return;
    }
    let chassis = Chassis::new().unwrap();
    let front = chassis.front_counter().unwrap();
    let backplane = chassis.backplane_counter().unwrap();
    // A plane peer (the control address, on the backplane's loopback) knocks on a closed
    // port of the host's ctl0 address; the host's reset is routed by the table: via eth1.
    let knock = || {
        support::guard::tcp_connects(
            chassis.backplane(),
            Some(IpAddr::V4(Chassis::CONTROL_V4)),
            SocketAddr::new(IpAddr::V4(Chassis::HOST_CTL0_V4), 7_999),
            Duration::from_millis(600),
        )
    };
    let knock6 = || {
        support::guard::tcp_connects(
            chassis.backplane(),
            Some(IpAddr::V6(Chassis::CONTROL_V6)),
            SocketAddr::new(IpAddr::V6(Chassis::HOST_CTL0_V6), 7_999),
            Duration::from_millis(600),
        )
    };
    let resets_to = |front: &netlab::FrameCounter, to: IpAddr| {
        front.settle();
        front.count(|f| {
            f.dst_ip() == Some(to)
                && matches!(f.transport(), Some(netlab::Transport::Tcp { flags, .. }) if flags & 0x04 != 0)
        })
    };
    let resets = |front: &netlab::FrameCounter| resets_to(front, IpAddr::V4(Chassis::CONTROL_V4));
    let resets6 = |front: &netlab::FrameCounter| resets_to(front, IpAddr::V6(Chassis::CONTROL_V6));

    assert!(!knock());
    assert!(resets(&front) > 0, "{}", front.describe());
    assert!(!knock6());
    assert!(resets6(&front) > 0, "{}", front.describe());
    front.clear();
    backplane.clear();

    let policy = PolicyFile::new(POLICY);
    let guard = Guard::start(chassis.host(), policy.path(), &[]);
    assert!(!knock());
    assert_eq!(resets(&front), 0, "{}", front.describe());
    // The SYN did arrive over the plane's own interface (accepted), only the answer is held.
    backplane.settle();
    let event = guard.expect_event("drop", |e| {
        e["type"] == "drop" && e["dst"] == Chassis::CONTROL_V4.to_string()
    });
    assert_eq!(event["rule"], "egress", "{event}");
    assert_eq!(event["sender"], "kernel", "{event}");
    assert_eq!(event["tcp_flags"], "ack|rst", "{event}");
    assert_eq!(event["interface"], "eth1", "{event}");
    assert!(!knock6());
    assert_eq!(resets6(&front), 0, "{}", front.describe());
    let event = guard.expect_event("IPv6 reset drop", |e| {
        e["type"] == "drop" && e["dst"] == Chassis::CONTROL_V6.to_string()
    });
    assert_eq!(event["sender"], "kernel", "{event}");
}

#[test]
fn a_namespace_routed_through_the_host_cannot_forward_plane_traffic_out_of_the_front() {
    if !netlab::require_privileged() {
        return;
    }
    let chassis = Chassis::new().unwrap();
    let lan = Netns::new("lan").unwrap();
    chassis
        .host()
        .add_veth("lan0", None, &lan, "peer-lan0")
        .unwrap();
    chassis.host().add_addr("lan0", "10.30.0.1/24").unwrap();
    lan.add_addr("peer-lan0", "10.30.0.2/24").unwrap();
    chassis.host().link_up("lan0").unwrap();
    lan.link_up("peer-lan0").unwrap();
    chassis
        .host()
        .wait_link_up("lan0", Duration::from_secs(10))
        .unwrap();
    lan.wait_link_up("peer-lan0", Duration::from_secs(10))
        .unwrap();
    Route::new("default")
        .via("10.30.0.1")
        .dev("peer-lan0")
        .apply(&lan)
        .unwrap();
    chassis.host().sysctl("net.ipv4.ip_forward", "1").unwrap();
    let front = chassis.front_counter().unwrap();
    let dst = SocketAddr::new(IpAddr::V4(Chassis::CONTROL_V4), 9_001);

    support::guard::send_udp(&lan, None, dst, 5);
    assert!(front_control_frames(&front) > 0, "{}", front.describe());
    front.clear();

    let policy = PolicyFile::new(POLICY);
    let guard = Guard::start(chassis.host(), policy.path(), &[]);
    support::guard::send_udp(&lan, None, dst, 5);
    assert_eq!(front_control_frames(&front), 0, "{}", front.describe());
    let event = guard.expect_event("drop", |e| e["type"] == "drop" && e["src"] == "10.30.0.2");
    assert_eq!(event["rule"], "egress", "{event}");
    assert_eq!(event["in_interface"], "lan0", "{event}");
    assert_eq!(event["out_interface"], "eth1", "{event}");
    assert_eq!(event["sender"], "remote", "{event}");
    drop(guard);
    drop(chassis);
    drop(lan);
}

/// A cgroup v2 directory named like a systemd service's, removed on drop.
struct UnitCgroup(std::path::PathBuf);

impl UnitCgroup {
    fn new() -> UnitCgroup {
        let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
        let root = info
            .lines()
            .find_map(|line| {
                let (left, right) = line.split_once(" - ")?;
                right
                    .starts_with("cgroup2 ")
                    .then(|| left.split(' ').nth(4).map(std::path::PathBuf::from))?
            })
            .expect("a cgroup2 mount");
        let slice = root.join(format!("ifpin-guard-test-{}.slice", std::process::id()));
        let unit = slice.join("leaky.service");
        std::fs::create_dir_all(&unit).unwrap();
        UnitCgroup(unit)
    }
}

impl Drop for UnitCgroup {
    fn drop(&mut self) {
        // Empty once its process is gone (killed below, or with the namespace).
        for _ in 0..50 {
            if std::fs::remove_dir(&self.0).is_ok() {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        if let Some(slice) = self.0.parent() {
            let _ = std::fs::remove_dir(slice);
        }
    }
}

#[test]
fn a_leaking_service_is_named_by_its_systemd_unit() {
    if !netlab::require_privileged() {
        return;
    }
    // Made first, dropped last: after the namespace's drop has killed the service.
    let unit = UnitCgroup::new();
    let chassis = Chassis::new().unwrap();
    let policy = PolicyFile::new(POLICY);
    let guard = Guard::start(chassis.host(), policy.path(), &[]);
    // A "service": a shell in the unit's cgroup that sends to the control address through
    // the front, as a misconfigured daemon would.
    let script = format!(
        "echo $$ > {}/cgroup.procs && exec python3 -c \"import socket,time\ns=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\nfor _ in range(40):\n  try: s.sendto(b'x',('{}',9100))\n  except OSError: pass\n  time.sleep(0.05)\"",
        unit.0.display(),
        Chassis::CONTROL_V4
    );
    let service = chassis
        .host()
        .spawn(chassis.host().command("sh").args(["-c", &script]))
        .unwrap();
    let event = guard.expect_event("drop", |e| e["type"] == "drop" && e["dport"] == 9_100);
    let _ = service.kill();
    assert_eq!(event["owner"]["unit"], "leaky.service", "{event}");
    assert_eq!(event["owner"]["command"], "python3", "{event}");
    assert!(
        event["owner"]["cgroup"]
            .as_str()
            .unwrap()
            .ends_with("/leaky.service"),
        "{event}"
    );
}
