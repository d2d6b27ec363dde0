//! Privileged tests of netlab itself: the chassis builds, answers, counts, and leaves nothing
//! behind (also after a panic).

use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, SocketAddrV6, TcpStream, UdpSocket};
use std::time::Duration;

use netlab::{Chassis, Netns, Peer, Proto, Responder};

fn netns_list() -> String {
    let out = std::process::Command::new("ip")
        .args(["netns", "list"])
        .output()
        .expect("ip netns list");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn tcp_read(dst: SocketAddr) -> std::io::Result<String> {
    let mut s = TcpStream::connect_timeout(&dst, Duration::from_secs(3))?;
    s.set_read_timeout(Some(Duration::from_secs(3)))?;
    let mut text = String::new();
    s.read_to_string(&mut text)?;
    Ok(text)
}

fn udp_ask(socket: &UdpSocket, dst: SocketAddr) -> std::io::Result<String> {
    socket.set_read_timeout(Some(Duration::from_secs(3)))?;
    socket.send_to(b"hello", dst)?;
    let mut buf = [0u8; 64];
    let (n, _) = socket.recv_from(&mut buf)?;
    Ok(String::from_utf8_lossy(&buf[..n]).into_owned())
}

#[test]
fn chassis_builds_and_tears_down() {
    if !netlab::require_privileged() {
        return;
    }
    let names: Vec<String>;
    let pid;
    {
        let chassis = Chassis::new().expect("chassis");
        names = [chassis.host(), chassis.backplane(), chassis.front()]
            .iter()
            .map(|n| n.name().to_owned())
            .collect();
        let list = netns_list();
        for n in &names {
            assert!(list.contains(n.as_str()), "{n} missing from:\n{list}");
        }
        let links = chassis.host().ip(&["-brief", "link"]).expect("ip link");
        assert!(links.contains("ctl0") && links.contains("eth1"), "{links}");
        let routes = chassis.host().ip(&["route"]).expect("ip route");
        assert!(
            routes.contains("default via 10.20.0.2 dev eth1"),
            "{routes}"
        );
        assert!(
            routes.contains("default via 10.10.0.2 dev ctl0"),
            "{routes}"
        );
        // A process spawned through netlab lives in the namespace and is killed on drop.
        let mut cmd = chassis.host().command("sleep");
        cmd.arg("600");
        let p = chassis.host().spawn(&mut cmd).expect("spawn sleep");
        pid = p.pid();
        assert!(std::path::Path::new(&format!("/proc/{pid}")).exists());
        let own = std::fs::read_link("/proc/self/ns/net").unwrap();
        let child = std::fs::read_link(format!("/proc/{pid}/ns/net")).unwrap();
        assert_ne!(own, child, "child did not enter the namespace");
        // Unlike `ip netns exec`, the child keeps our mount namespace (and so the cgroup2
        // mount and /sys as they are).
        let out = chassis
            .host()
            .command("readlink")
            .args(["/proc/self/ns/mnt", "/proc/self/ns/net"])
            .output()
            .expect("readlink in the namespace");
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let own_mnt = std::fs::read_link("/proc/self/ns/mnt").unwrap();
        let mut lines = text.lines();
        assert_eq!(lines.next(), Some(own_mnt.to_str().unwrap()), "{text}");
        assert_eq!(lines.next(), Some(child.to_str().unwrap()), "{text}");
    }
    let list = netns_list();
    for n in &names {
        assert!(!list.contains(n.as_str()), "{n} left behind:\n{list}");
    }
    // Killed and reaped: the pid is gone (or, improbably, reused by a non-sleep process).
    let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
    assert_ne!(
        comm.trim(),
        "sleep",
        "spawned process {pid} survived the drop"
    );
}

#[test]
fn responders_answer_over_ctl0_with_their_name() {
    if !netlab::require_privileged() {
        return;
    }
    let chassis = Chassis::new().expect("chassis");
    let tcp = chassis.serve(Proto::Tcp, 7000).expect("tcp");
    let udp = chassis.serve(Proto::Udp, 7001).expect("udp");

    // Direct addresses on the ctl0 link reach the backplane.
    let v4 = SocketAddr::new(chassis.peer_v4(Peer::Backplane), 7000);
    let v6 = SocketAddr::new(chassis.peer_v6(Peer::Backplane), 7000);
    let ctl0 = chassis.ctl0_index().unwrap();
    let ll = SocketAddr::V6(SocketAddrV6::new(
        chassis.peer_ll(Peer::Backplane),
        7001,
        0,
        ctl0,
    ));
    let (a4, a6, all) = chassis
        .host()
        .run(|| {
            let u = UdpSocket::bind("[::]:0").unwrap();
            (tcp_read(v4), tcp_read(v6), udp_ask(&u, ll))
        })
        .unwrap();
    assert_eq!(a4.unwrap(), "backplane\n");
    let ll_tcp = SocketAddr::V6(SocketAddrV6::new(
        chassis.peer_ll(Peer::Backplane),
        7000,
        0,
        ctl0,
    ));
    let answer = chassis.host().run(|| tcp_read(ll_tcp)).unwrap();
    assert_eq!(answer.unwrap(), "backplane\n");
    assert_eq!(a6.unwrap(), "backplane\n");
    assert_eq!(all.unwrap(), "backplane\n");
    assert_eq!(tcp.backplane_hits(), 3);
    assert_eq!(udp.backplane_hits(), 1);
    assert_eq!(tcp.front_hits() + udp.front_hits(), 0);

    // The control destination, unbound, follows the default route out of eth1: the front answers.
    let ctl = SocketAddr::new(chassis.control_v6(), 7000);
    let answer = chassis.host().run(|| tcp_read(ctl)).unwrap().unwrap();
    assert_eq!(answer, "front\n");
    assert_eq!(tcp.front_hits(), 1);
    assert_eq!(tcp.backplane_hits(), 3);

    // A client that talks first still gets the whole answer (no RST on close).
    let answer = chassis
        .host()
        .run(|| -> std::io::Result<String> {
            let mut s = TcpStream::connect_timeout(&v4, Duration::from_secs(3))?;
            s.write_all(&[b'x'; 3000])?;
            std::thread::sleep(Duration::from_millis(50));
            let mut text = String::new();
            s.read_to_string(&mut text)?;
            Ok(text)
        })
        .unwrap()
        .unwrap();
    assert_eq!(answer, "backplane\n");

    // A connected UDP client accepts the answer: it comes from the address it asked.
    let ctl = SocketAddr::new(chassis.control_v4(), 7001);
    let answer = chassis
        .host()
        .run(|| {
            let u = UdpSocket::bind("0.0.0.0:0")?;
            u.connect(ctl)?;
            u.set_read_timeout(Some(Duration::from_secs(3)))?;
            u.send(b"hi")?;
            let mut buf = [0u8; 64];
            let n = u.recv(&mut buf)?;
            Ok::<_, std::io::Error>(String::from_utf8_lossy(&buf[..n]).into_owned())
        })
        .unwrap()
        .unwrap();
    assert_eq!(answer, "front\n");
    assert_eq!(udp.front_hits(), 1);

    // Broadcast on the ctl0 subnet and multicast to all nodes on ctl0 are answered too.
    let bcast = SocketAddr::new("10.10.0.255".parse().unwrap(), 7001);
    let all_nodes = SocketAddr::V6(SocketAddrV6::new("ff02::1".parse().unwrap(), 7001, 0, ctl0));
    let (b, m) = chassis
        .host()
        .run(|| {
            let u4 = UdpSocket::bind("0.0.0.0:0").unwrap();
            u4.set_broadcast(true).unwrap();
            let u6 = UdpSocket::bind("[::]:0").unwrap();
            (udp_ask(&u4, bcast), udp_ask(&u6, all_nodes))
        })
        .unwrap();
    assert_eq!(b.unwrap(), "backplane\n");
    assert_eq!(m.unwrap(), "backplane\n");
}

#[test]
fn counter_sees_unbound_leak_and_not_ctl0_traffic() {
    if !netlab::require_privileged() {
        return;
    }
    let chassis = Chassis::new().expect("chassis");
    let _udp = chassis.serve(Proto::Udp, 7002).expect("udp");
    let front = chassis.front_counter().expect("front counter");
    let back = chassis.backplane_counter().expect("backplane counter");
    let ctl_v4 = chassis.control_v4();

    // Negative control: an unbound socket to the control destination leaves eth1 and is counted.
    let answer = chassis
        .host()
        .run(|| {
            let u = UdpSocket::bind("0.0.0.0:0").unwrap();
            udp_ask(&u, SocketAddr::new(ctl_v4, 7002))
        })
        .unwrap()
        .unwrap();
    assert_eq!(answer, "front\n");
    front.settle();
    let leaked = front.count(|f| f.dst_ip() == Some(ctl_v4) && f.dst_port() == Some(7002));
    assert_eq!(leaked, 1, "{}", front.describe());
    assert_eq!(back.count_involving(ctl_v4), 0, "{}", back.describe());

    // Over ctl0 (SO_BINDTODEVICE + the fallback route): counted on the backplane, not the front.
    netlab::settle_all(&[&front, &back]);
    front.clear();
    back.clear();
    let answer = chassis
        .host()
        .run(|| {
            let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::DGRAM, None)?;
            s.bind_device(Some(b"ctl0"))?;
            s.bind(&"0.0.0.0:0".parse::<SocketAddr>().unwrap().into())?;
            udp_ask(&UdpSocket::from(s), SocketAddr::new(ctl_v4, 7002))
        })
        .unwrap()
        .unwrap();
    assert_eq!(answer, "backplane\n");
    netlab::settle_all(&[&front, &back]);
    assert_eq!(front.count_involving(ctl_v4), 0, "{}", front.describe());
    assert_eq!(front.total(), 0, "{}", front.describe());
    assert_eq!(
        back.count(|f| f.dst_ip() == Some(ctl_v4) && f.dst_port() == Some(7002)),
        1,
        "{}",
        back.describe()
    );
    // The peer's own reply is recorded, but as outgoing, so it does not count.
    assert!(
        back.all_frames()
            .iter()
            .any(|f| f.src_ip() == Some(ctl_v4) && f.direction == netlab::Direction::Outgoing)
    );
}

#[test]
fn ipv6_leak_is_counted_including_neighbour_discovery() {
    if !netlab::require_privileged() {
        return;
    }
    let chassis = Chassis::new().expect("chassis");
    let front = chassis.front_counter().expect("front counter");
    // Link-local to the front with scope eth1: neighbour solicitation first, then the datagram.
    let eth1 = chassis.eth1_index().unwrap();
    let dst = SocketAddr::V6(SocketAddrV6::new(chassis.peer_ll(Peer::Front), 9, 0, eth1));
    chassis
        .host()
        .run(|| UdpSocket::bind("[::]:0").unwrap().send_to(b"x", dst))
        .unwrap()
        .unwrap();
    let ll = IpAddr::V6(chassis.peer_ll(Peer::Front));
    assert!(front.wait_for(|f| f.dst_port() == Some(9), Duration::from_secs(2)));
    front.settle();
    assert!(
        front.count(|f| f.icmp_type() == Some(135) && f.involves(ll)) >= 1,
        "{}",
        front.describe()
    );
    assert_eq!(
        front.count(|f| f.dst_ip() == Some(ll) && f.dst_port() == Some(9)),
        1,
        "{}",
        front.describe()
    );
}

#[test]
fn settle_records_every_frame_of_a_burst() {
    if !netlab::require_privileged() {
        return;
    }
    let chassis = Chassis::new().expect("chassis");
    let front = chassis.front_counter().expect("front counter");
    let dst = SocketAddr::new(chassis.peer_v4(Peer::Front), 9);
    const BURST: usize = 2000;
    chassis
        .host()
        .run(|| {
            let s = UdpSocket::bind("0.0.0.0:0").unwrap();
            for i in 0..BURST {
                s.send_to(&(i as u32).to_be_bytes(), dst).unwrap();
            }
        })
        .unwrap();
    front.settle();
    let is_burst = |f: &netlab::Frame| f.dst_ip() == Some(dst.ip()) && f.dst_port() == Some(9);
    assert_eq!(front.kernel_drops(), 0);
    assert_eq!(
        front.count(is_burst),
        BURST,
        "{} frames total",
        front.total()
    );
    // take() empties the counter in the same step.
    let taken = front.take();
    assert_eq!(taken.iter().filter(|f| is_burst(f)).count(), BURST);
    assert_eq!(front.total(), 0);
    assert!(front.all_frames().is_empty());
}

#[test]
fn counter_on_unknown_interface_is_a_clear_error() {
    if !netlab::require_privileged() {
        return;
    }
    let ns = Netns::new("c").expect("netns");
    let err = netlab::FrameCounter::open(&ns, "nope0")
        .unwrap_err()
        .to_string();
    assert!(err.contains("nope0") && err.contains(ns.name()), "{err}");
    // A counter on lo of a quiet namespace sees nothing, then exactly what is sent.
    let lo = netlab::FrameCounter::open(&ns, "lo").unwrap();
    assert!(!lo.wait_for(|_| true, Duration::from_millis(200)));
    ns.run(|| {
        let s = UdpSocket::bind("127.0.0.1:0").unwrap();
        s.send_to(b"x", "127.0.0.1:9").unwrap();
    })
    .unwrap();
    assert!(lo.wait_for(|f| f.dst_port() == Some(9), Duration::from_secs(2)));
    lo.settle();
    assert_eq!(
        lo.count(|f| f.dst_port() == Some(9)),
        1,
        "{}",
        lo.describe()
    );
}

#[test]
fn teardown_after_panic_leaves_nothing() {
    if !netlab::require_privileged() {
        return;
    }
    let seen = std::sync::Mutex::new((String::new(), 0u32));
    let result = std::panic::catch_unwind(|| {
        let chassis = Chassis::new().expect("chassis");
        let _r = Responder::tcp(chassis.backplane(), "0.0.0.0:7003".parse().unwrap()).unwrap();
        let _c = chassis.front_counter().unwrap();
        let mut cmd = chassis.front().command("sleep");
        cmd.arg("600");
        let p = chassis.front().spawn(&mut cmd).unwrap();
        *seen.lock().unwrap() = (chassis.host().name().to_owned(), p.pid());
        panic!("deliberate panic inside a lab");
    });
    assert!(result.is_err());
    let (name, pid) = seen.into_inner().unwrap();
    assert!(!name.is_empty() && pid != 0);
    let list = netns_list();
    assert!(
        !list.contains(&name),
        "{name} left behind after panic:\n{list}"
    );
    let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
    assert_ne!(comm.trim(), "sleep", "process {pid} survived the panic");
}

#[test]
fn run_propagates_panics_and_stays_in_namespace() {
    if !netlab::require_privileged() {
        return;
    }
    let ns = Netns::new("t").expect("netns");
    let (a, b) = (
        format!("nla{}", std::process::id()),
        format!("nlb{}", std::process::id()),
    );
    ns.ip(&["link", "add", &a, "type", "veth", "peer", "name", &b])
        .unwrap();
    // Interfaces created inside are visible only inside.
    assert!(ns.ifindex(&a).is_ok());
    assert!(nix::net::if_::if_nametoindex(a.as_str()).is_err());
    ns.sysctl("net.ipv4.ip_forward", "1").unwrap();
    assert_eq!(ns.read_sysctl("net.ipv4.ip_forward").unwrap(), "1");
    let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        ns.run(|| panic!("inner")).ok();
    }));
    assert!(caught.is_err());
    // ip errors carry stderr.
    let err = ns
        .ip(&["link", "set", "nope0", "up"])
        .unwrap_err()
        .to_string();
    assert!(err.contains("nope0"), "{err}");
    // Writing to a stream from inside works via command().
    let mut child = ns
        .command("cat")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(b"ok").unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.stdout, b"ok");
}
