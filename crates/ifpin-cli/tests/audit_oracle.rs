//! The oracle: `ifpin audit --json` against `ss -tuanpe` on a varied population in a netlab
//! namespace: TCP in every state a test can hold still (listen, established, time-wait,
//! close-wait, fin-wait-2, syn-sent when the kernel keeps it, bind()-only), UDP connected and
//! not, pinned by name and by index, v4-mapped, link-local, a socket shared by two processes,
//! and one of another uid. Every socket both tools list must agree (5-tuple, state,
//! interface, uid, inode, owners); any socket only one lists must be one the test can explain
//! (a bind()-only TCP socket, which `ss` does not show).

#[path = "support/mod.rs"]
mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader};
use std::net::{IpAddr, Ipv6Addr, SocketAddr, SocketAddrV6, TcpListener, TcpStream, UdpSocket};
use std::process::Stdio;
use std::time::Duration;

use ifpin::Interface;
use netlab::Chassis;
use serde_json::Value;
use support::{assert_exit, json};

/// One row, normalised so that both tools' rows compare.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Row {
    proto: String,
    state: String,
    interface: Option<String>,
    uid: u64,
    inode: u64,
    pids: BTreeSet<u64>,
}

/// (proto, local ip, local port, remote ip, remote port); an unspecified address of either
/// family is one key (`ss` prints `*` for a dual-stack wildcard).
type Key = (String, Option<IpAddr>, u16, Option<IpAddr>, u16);

fn norm_ip(ip: IpAddr) -> Option<IpAddr> {
    (!ip.is_unspecified()).then_some(ip)
}

/// `127.0.0.1:80`, `0.0.0.0%ctl0:80`, `[::ffff:1.2.3.4]:80`, `[fe80::1]%ctl0:80`, `*:80`, `*:*`.
fn parse_ss_addr(text: &str) -> (Option<IpAddr>, u16, Option<String>) {
    let (host, port) = text.rsplit_once(':').expect("host:port");
    let port = if port == "*" {
        0
    } else {
        port.parse().unwrap()
    };
    let (host, iface) = match host.split_once('%') {
        Some((h, i)) => (h, Some(i.to_owned())),
        None => (host, None),
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let ip = if host == "*" {
        None
    } else {
        norm_ip(host.parse().unwrap_or_else(|_| panic!("address {text}")))
    };
    (ip, port, iface)
}

fn ss_state(proto: &str, state: &str) -> String {
    match (proto, state) {
        ("udp", "UNCONN") => "unconnected".into(),
        ("udp", "ESTAB") => "connected".into(),
        (_, "ESTAB") => "established".into(),
        (_, "UNCONN") => "close".into(),
        (_, other) => other.to_ascii_lowercase(),
    }
}

fn parse_ss(text: &str) -> BTreeMap<Key, Row> {
    let mut rows = BTreeMap::new();
    for line in text.lines().skip(1) {
        let fields: Vec<&str> = line.split_whitespace().collect();
        if fields.len() < 6 {
            continue;
        }
        let proto = fields[0].to_owned();
        let (lip, lport, iface) = parse_ss_addr(fields[4]);
        let (rip, rport, _) = parse_ss_addr(fields[5]);
        let rest = &fields[6..];
        let field = |name: &str| {
            rest.iter()
                .find_map(|f| f.strip_prefix(name))
                .map(|v| v.parse::<u64>().unwrap())
        };
        let mut pids = BTreeSet::new();
        for f in rest {
            for part in f.split("pid=").skip(1) {
                let digits: String = part.chars().take_while(char::is_ascii_digit).collect();
                pids.insert(digits.parse().unwrap());
            }
        }
        let row = Row {
            state: ss_state(&proto, fields[1]),
            proto: proto.clone(),
            interface: iface,
            uid: field("uid:").unwrap_or(0),
            inode: field("ino:").unwrap_or(0),
            pids,
        };
        let old = rows.insert((proto, lip, lport, rip, rport), row);
        assert!(old.is_none(), "two ss rows for one key: {line}");
    }
    rows
}

fn parse_ifpin(report: &Value) -> BTreeMap<Key, Row> {
    let mut rows = BTreeMap::new();
    for s in report["sockets"].as_array().unwrap() {
        let local: SocketAddr = s["local"].as_str().unwrap().parse().unwrap();
        let remote: SocketAddr = s["remote"].as_str().unwrap().parse().unwrap();
        let proto = s["protocol"].as_str().unwrap().to_owned();
        let row = Row {
            proto: proto.clone(),
            state: s["state"].as_str().unwrap().to_owned(),
            interface: s["interface"].as_str().map(str::to_owned),
            uid: s["uid"].as_u64().unwrap(),
            inode: s["inode"].as_u64().unwrap(),
            pids: s["processes"]
                .as_array()
                .unwrap()
                .iter()
                .map(|p| p["pid"].as_u64().unwrap())
                .collect(),
        };
        let key = (
            proto,
            norm_ip(local.ip()),
            local.port(),
            norm_ip(remote.ip()),
            remote.port(),
        );
        let old = rows.insert(key, row);
        assert!(old.is_none(), "two ifpin rows for one key: {s}");
    }
    rows
}

/// Kills a child on drop (also on a panic).
struct Child(netlab::Process);
impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
    }
}

#[test]
fn audit_json_agrees_with_ss() {
    if !netlab::require_privileged() {
        return;
    }
    let chassis = Chassis::new().unwrap();
    let host = chassis.host();
    let mut held: Vec<Box<dyn std::any::Any + Send>> = Vec::new();
    let (sockets, bound_only, shared) = host
        .run(|| {
            let mut sockets: Vec<Box<dyn std::any::Any + Send>> = Vec::new();
            let ctl0 = Interface::resolve(Chassis::CTL0).unwrap();
            // Listeners: v4, dual-stack v6 (its accepted v4 peers are v4-mapped).
            let v4 = TcpListener::bind("127.0.0.1:7500").unwrap();
            let v6 = TcpListener::bind("[::]:7501").unwrap();
            // Established, both ends; one through the v6 listener (v4-mapped ends).
            let c1 = TcpStream::connect("127.0.0.1:7500").unwrap();
            let (a1, _) = v4.accept().unwrap();
            let c2 = TcpStream::connect("127.0.0.1:7501").unwrap();
            let (a2, _) = v6.accept().unwrap();
            // Time-wait: the client closes first, then the server.
            let c3 = TcpStream::connect("127.0.0.1:7500").unwrap();
            let (a3, _) = v4.accept().unwrap();
            drop(c3);
            std::thread::sleep(Duration::from_millis(50));
            drop(a3);
            // Close-wait (server side open) and fin-wait-2 (client closed).
            let c4 = TcpStream::connect("127.0.0.1:7500").unwrap();
            let (a4, _) = v4.accept().unwrap();
            drop(c4);
            // Syn-sent: a listener whose accept queue is full drops further SYNs.
            let full =
                socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
            full.bind(&"127.0.0.1:7502".parse::<SocketAddr>().unwrap().into())
                .unwrap();
            full.listen(0).unwrap();
            let mut pending = Vec::new();
            for _ in 0..3 {
                let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)
                    .unwrap();
                s.set_nonblocking(true).unwrap();
                let _ = s.connect(&"127.0.0.1:7502".parse::<SocketAddr>().unwrap().into());
                pending.push(s);
            }
            // bind()-only TCP: listed by ifpin, not by ss.
            let bound =
                socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
            bound
                .bind(&"127.0.0.1:7503".parse::<SocketAddr>().unwrap().into())
                .unwrap();
            let bound_only = bound.local_addr().unwrap().as_socket().unwrap();
            // UDP: unconnected, connected, pinned by name, pinned by index, link-local.
            let u1 = UdpSocket::bind("0.0.0.0:5353").unwrap();
            let u2 = UdpSocket::bind("127.0.0.1:0").unwrap();
            u2.connect("127.0.0.1:5353").unwrap();
            let by_name =
                socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::DGRAM, None).unwrap();
            by_name.bind_device(Some(b"ctl0")).unwrap();
            by_name
                .bind(&"0.0.0.0:5354".parse::<SocketAddr>().unwrap().into())
                .unwrap();
            let by_index = UdpSocket::bind("[::]:5355").unwrap();
            ifpin::pin(&by_index, &ctl0).unwrap();
            let ll = UdpSocket::bind("[::]:0").unwrap();
            ifpin::pin(&ll, &ctl0).unwrap();
            ll.connect(SocketAddr::V6(SocketAddrV6::new(
                Chassis::BACKPLANE_LL,
                5353,
                0,
                ctl0.index().get(),
            )))
            .unwrap();
            // v4-mapped bound address, v6-only off.
            let mapped = UdpSocket::bind(SocketAddr::new(
                IpAddr::V6(Ipv6Addr::new(0, 0, 0, 0, 0, 0xffff, 0x7f00, 1)),
                5356,
            ))
            .unwrap();
            // Shared with a child process (below).
            let shared = TcpListener::bind("127.0.0.1:7504").unwrap();
            sockets.push(Box::new((v4, v6, c1, a1, c2, a2, a4, full, pending)));
            sockets.push(Box::new((bound, u1, u2, by_name, by_index, ll, mapped)));
            (sockets, bound_only, shared)
        })
        .unwrap();
    held.extend(sockets);

    // A child holding the shared listener too: its descriptor is inherited across exec.
    let shared_ref = socket2::SockRef::from(&shared);
    shared_ref.set_cloexec(false).unwrap();
    let mut sleep = host.command("sleep");
    sleep.arg("600");
    let spawned = host.spawn(&mut sleep);
    shared_ref.set_cloexec(true).unwrap();
    held.push(Box::new(shared));
    let sharer = Child(spawned.unwrap());
    // A socket of another uid, in its own process.
    let mut other = host.command("python3");
    other
        .args([
            "-c",
            "import os, socket, sys\n\
             os.setgid(65534); os.setuid(65534)\n\
             s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(('127.0.0.1', 5357))\n\
             print('ready', flush=True); sys.stdin.read()\n",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped());
    let other = Child(host.spawn(&mut other).unwrap());
    let (other_stdin, other_stdout) = other
        .0
        .with_child(|c| (c.stdin.take().unwrap(), c.stdout.take().unwrap()));
    let mut line = String::new();
    BufReader::new(other_stdout).read_line(&mut line).unwrap();
    assert_eq!(line.trim(), "ready");
    std::thread::sleep(Duration::from_millis(100));

    let ss = host.command("ss").arg("-tuanpe").output().unwrap();
    assert!(ss.status.success(), "{ss:?}");
    let ss_text = String::from_utf8(ss.stdout).unwrap();
    let out = host
        .command(env!("CARGO_BIN_EXE_ifpin"))
        .args(["audit", "--json"])
        .output()
        .unwrap();
    assert_exit(&out, 0);
    let ours = parse_ifpin(&json(&out));
    let theirs = parse_ss(&ss_text);

    let compared = ours.keys().filter(|k| theirs.contains_key(*k)).count();
    assert!(
        compared >= 20,
        "only {compared} sockets compared:\n{ss_text}"
    );
    let mut unexplained = Vec::new();
    for (key, row) in &ours {
        match theirs.get(key) {
            Some(ss_row) if ss_row == row => {}
            Some(ss_row) => unexplained.push(format!("{key:?}: ifpin {row:?}, ss {ss_row:?}")),
            // ss does not list bind()-only TCP sockets.
            None if row.proto == "tcp" && row.state == "close" && key.3.is_none() && key.4 == 0 => {
            }
            None => unexplained.push(format!("{key:?}: only ifpin lists {row:?}")),
        }
    }
    for (key, row) in &theirs {
        if !ours.contains_key(key) {
            unexplained.push(format!("{key:?}: only ss lists {row:?}"));
        }
    }
    assert!(
        unexplained.is_empty(),
        "differences:\n{}\n\nss:\n{ss_text}",
        unexplained.join("\n")
    );

    // The population is what it was meant to be (so the comparison covered it).
    let states: BTreeSet<&str> = ours.values().map(|r| r.state.as_str()).collect();
    for state in [
        "listen",
        "established",
        "time-wait",
        "close-wait",
        "fin-wait-2",
        "close",
        "unconnected",
        "connected",
    ] {
        assert!(states.contains(state), "no {state} socket: {states:?}");
    }
    let key_of = |addr: SocketAddr| {
        ours.iter()
            .find(|(k, _)| k.1 == norm_ip(addr.ip()) && k.2 == addr.port())
            .map(|(_, r)| r.clone())
            .unwrap_or_else(|| panic!("{addr} not listed"))
    };
    assert_eq!(key_of(bound_only).state, "close");
    assert_eq!(
        key_of("0.0.0.0:5354".parse().unwrap()).interface.as_deref(),
        Some("ctl0")
    );
    assert_eq!(
        key_of("[::]:5355".parse().unwrap()).interface.as_deref(),
        Some("ctl0")
    );
    assert_eq!(key_of("127.0.0.1:5357".parse().unwrap()).uid, 65534);
    let shared = key_of("127.0.0.1:7504".parse().unwrap());
    assert_eq!(
        shared.pids,
        BTreeSet::from([u64::from(std::process::id()), u64::from(sharer.0.pid())])
    );
    assert!(
        ours.keys()
            .any(|k| matches!(k.1, Some(IpAddr::V6(v6)) if v6.to_ipv4_mapped().is_some())),
        "no v4-mapped socket"
    );
    assert!(
        ours.keys()
            .any(|k| matches!(k.3, Some(IpAddr::V6(v6)) if v6.is_unicast_link_local())),
        "no link-local peer"
    );

    drop(other_stdin);
    drop((other, sharer));
    drop(held);
}
