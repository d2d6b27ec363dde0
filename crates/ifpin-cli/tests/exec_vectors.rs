//! `ifpin exec` against every leak vector of `docs/kernel.md`, at each level, on the chassis
//! topology: the routing table sends the control destination out of the front port `eth1`,
//! and the program under test (`exec_data/leak_vectors.py`, run as root) tries each way of
//! getting a packet there anyway.
//!
//! - negative control: without `exec`, every vector puts frames on the front link;
//! - `pinned`: honest code (a plain connect, the `bind()`-to-an-address fallacy) stays off it;
//! - `enforced`: no IP-level vector does (root still has AF_PACKET, below IP, and can write
//!   itself out of the cgroup: both are what `sealed` adds);
//! - `sealed`: nothing does;
//!
//! and the report's blocked counters match what the program saw refused.

#[path = "support/mod.rs"]
mod support;

use netlab::{Chassis, FrameCounter, Proto};
use serde_json::Value;
use support::{assert_cgroup_gone, data, exec_in, python3};

const PORT: u16 = 7_301;

/// The vectors, and whether `enforced` must hold against each: it stops every IP-level
/// vector, not AF_PACKET (below IP) nor root leaving the cgroup (`sealed` closes both).
const VECTORS: &[(&str, bool)] = &[
    ("tcp4-route", true),
    ("tcp4-bind-address", true),
    ("udp4-pktinfo", true),
    ("ping4-pktinfo", true),
    ("udp6-v4mapped-pktinfo", true),
    ("udp6-scope-id", true),
    ("tcp6-linklocal-bind", true),
    ("rebind-root", true),
    ("raw4-pktinfo", true),
    ("packet", false),
    ("cgroup-escape", false),
];

/// Vectors that only send datagrams: every refused send is exactly one dropped packet.
const DATAGRAM_ONLY: &[&str] = &[
    "udp4-pktinfo",
    "ping4-pktinfo",
    "udp6-v4mapped-pktinfo",
    "udp6-scope-id",
    "raw4-pktinfo",
    "cgroup-escape",
];

fn vector_args(vector: &str) -> Vec<String> {
    vec![
        python3().to_owned(),
        data("leak_vectors.py").display().to_string(),
        vector.to_owned(),
        Chassis::ETH1.to_owned(),
        Chassis::CONTROL_V4.to_string(),
        Chassis::CONTROL_V6.to_string(),
        Chassis::FRONT_LL.to_string(),
        Chassis::HOST_ETH1_LL.to_string(),
        Chassis::HOST_CTL0_V4.to_string(),
        PORT.to_string(),
    ]
}

fn parse_program_output(stdout: &str) -> Value {
    let line = stdout
        .lines()
        .rev()
        .find(|l| l.starts_with('{'))
        .unwrap_or_else(|| panic!("the vector program printed no result: {stdout:?}"));
    serde_json::from_str(line).expect("vector output is JSON")
}

/// How many send-like steps the kernel refused with `EPERM` (the egress filter's answer).
fn sends_refused_eperm(result: &Value) -> u64 {
    result["steps"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| {
            ["sendmsg", "sendto", "send"].contains(&s["call"].as_str().unwrap())
                && s["result"] == "EPERM"
        })
        .count() as u64
}

/// The frames the front link saw since the last call: how many, and what they were.
///
/// The host kernel's neighbour upkeep (ARP, IPv6 neighbour discovery) is left out: it keeps
/// its entries for the front peer fresh on its own, whoever runs
/// ([`support::is_program_frame`]). Every other frame counts.
fn frames(counter: &FrameCounter) -> (usize, String) {
    counter.settle();
    let seen = (counter.count(support::is_program_frame), counter.describe());
    counter.clear();
    seen
}

#[test]
fn every_leak_vector_at_every_level() {
    if !netlab::require_privileged() {
        return;
    }
    let chassis = Chassis::new().expect("chassis");
    // Unprivileged-style ICMP "ping" sockets, for the ping vector (root's group included).
    chassis
        .host()
        .sysctl("net.ipv4.ping_group_range", "0 2147483647")
        .expect("sysctl");
    let _tcp = chassis.serve(Proto::Tcp, PORT).expect("tcp responders");
    let _udp = chassis.serve(Proto::Udp, PORT).expect("udp responders");
    let front = chassis.front_counter().expect("front counter");
    frames(&front);

    let mut table = Vec::new();
    let mut failures = Vec::new();
    // Runs that must put nothing on the front link come first, the runs that leak (pinned,
    // unconfined) after them all: the host kernel may still send a packet of its own for a
    // leaking run's connection after it ended, and that must not be counted against a run
    // that has to hold.
    for phase in [&["enforced", "sealed"][..], &["pinned", "unconfined"][..]] {
        for &(vector, enforced_holds) in VECTORS {
            for &level in phase {
                if level == "unconfined" {
                    // Negative control: the same program, not confined, leaks.
                    let out = chassis
                        .host()
                        .command(python3())
                        .args(&vector_args(vector)[1..])
                        .output()
                        .expect("python3 runs");
                    let (leaked, _) = frames(&front);
                    let control = parse_program_output(&String::from_utf8_lossy(&out.stdout));
                    table.push(format!(
                        "{vector:24} unconfined    {leaked:3} frame(s) {}",
                        control["steps"]
                    ));
                    if leaked == 0 {
                        failures.push(format!(
                        "negative control: {vector} without exec put no frame on the front link: {control}"
                    ));
                    }
                    continue;
                }
                let run = exec_in(
                    chassis.host(),
                    &["-i", Chassis::CTL0, "--level", level],
                    &vector_args(vector),
                );
                let (leaked, seen) = frames(&front);
                assert!(
                    run.status.success(),
                    "{vector} at {level}: ifpin exited {}; stderr:\n{}",
                    run.status,
                    run.stderr
                );
                let result = parse_program_output(&run.stdout);
                assert_eq!(run.report()["level"], level);
                assert_cgroup_gone(&run.cgroup());
                let (egress, setsockopt) = (run.blocked("egress"), run.blocked("setsockopt"));
                table.push(format!(
                "{vector:24} {level:12} {leaked:3} frame(s) egress-blocked {egress} setsockopt-refused {setsockopt} {}",
                result["steps"]
            ));
                let must_hold = match level {
                    "pinned" => ["tcp4-route", "tcp4-bind-address"].contains(&vector),
                    "enforced" => enforced_holds,
                    _ => true,
                };
                if must_hold && leaked != 0 {
                    failures.push(format!(
                        "{vector} at {level}: {leaked} frame(s) on the front link: {seen}"
                    ));
                }
                if level == "enforced" && !enforced_holds && leaked == 0 {
                    failures.push(format!(
                    "{vector} at enforced: expected frames (root keeps CAP_NET_RAW and a writable cgroup hierarchy below sealed), saw none: is the vector broken?"
                ));
                }
                if level == "pinned" {
                    continue;
                }
                // The report counts what the program saw refused.
                let refused = sends_refused_eperm(&result);
                if DATAGRAM_ONLY.contains(&vector) && egress != refused {
                    failures.push(format!(
                    "{vector} at {level}: report says {egress} packet(s) blocked, the program saw {refused} send(s) refused with EPERM"
                ));
                }
                if egress < refused {
                    failures.push(format!(
                    "{vector} at {level}: {refused} EPERM sends but only {egress} blocked in the report"
                ));
                }
                let guard_refusals = result["setsockopt_refused"].as_u64().unwrap();
                let expected_setsockopt = if level == "sealed" { guard_refusals } else { 0 };
                if setsockopt != expected_setsockopt {
                    failures.push(format!(
                    "{vector} at {level}: report says {setsockopt} setsockopt refusal(s), expected {expected_setsockopt} (program saw {guard_refusals})"
                ));
                }
            }
        }
    }
    eprintln!("{}", table.join("\n"));
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// A wildcard UDP socket that counts the datagrams it receives for 2 s.
const UDP_COUNTER: &str = "import socket, sys, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(('0.0.0.0', int(sys.argv[1])))
print('ready', flush=True)
s.settimeout(0.2)
n, end = 0, time.monotonic() + 2
while time.monotonic() < end:
    try:
        s.recv(64)
        n += 1
    except OSError:
        pass
print(n, flush=True)";

/// Sends 3 datagrams to `dst`:`port` from `ns`.
fn send3(ns: &netlab::Netns, dst: &str, port: u16) {
    let code = format!(
        "import socket\ns = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\nfor _ in range(3): s.sendto(b'x', ('{dst}', {port}))"
    );
    let status = ns.command(python3()).args(["-c", &code]).status().unwrap();
    assert!(status.success());
}

#[test]
fn ingress_through_other_interfaces_is_dropped_and_counted() {
    use std::io::{BufRead, BufReader};
    use std::process::Stdio;
    if !netlab::require_privileged() {
        return;
    }
    let chassis = Chassis::new().expect("chassis");
    let port = PORT + 1;
    // With --allow-loopback a wildcard socket is not pinned (nothing to pin it to yet), so
    // the front's datagrams reach it unless the ingress filter drops them.
    for confined in [false, true] {
        let argv = [python3(), "-c", UDP_COUNTER, &port.to_string()];
        let (mut cmd, report) = if confined {
            support::exec_command(
                chassis.host(),
                &[
                    "-i",
                    Chassis::CTL0,
                    "--level",
                    "enforced",
                    "--allow-loopback",
                ],
                &argv,
            )
        } else {
            let mut cmd = chassis.host().command(argv[0]);
            cmd.args(&argv[1..]);
            (cmd, std::path::PathBuf::new())
        };
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        stdout.read_line(&mut line).unwrap();
        assert_eq!(line.trim(), "ready");
        send3(chassis.front(), &Chassis::HOST_ETH1_V4.to_string(), port);
        send3(
            chassis.backplane(),
            &Chassis::HOST_CTL0_V4.to_string(),
            port,
        );
        line.clear();
        stdout.read_line(&mut line).unwrap();
        let received: u32 = line.trim().parse().unwrap();
        let output = child.wait_with_output().unwrap();
        if !confined {
            assert_eq!(
                received, 6,
                "negative control: both peers' datagrams arrive"
            );
            continue;
        }
        let run = support::collect(output, &report);
        assert!(run.status.success(), "{}", run.stderr);
        assert_eq!(received, 3, "only the backplane's datagrams arrive");
        assert_eq!(run.blocked("ingress"), 3, "{}", run.report());
        assert_cgroup_gone(&run.cgroup());
    }
}
