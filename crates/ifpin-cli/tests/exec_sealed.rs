//! Attacks on the `sealed` level: a hostile program (`netlab-escape`, run as uid 0 under
//! `ifpin exec -i ctl0` in the chassis host) tries to get traffic out of the front port `eth1`
//! or out of its confinement. Each attack runs where it is not blocked (the negative control:
//! `enforced`, `pinned` or unconfined), where it must work, and at `sealed`, where it must fail
//! with nothing on the front link. The kernel behaviour each attack relies on:
//!
//! - **clone3 into another cgroup**: `clone3(CLONE_INTO_CGROUP)` takes a directory fd of any
//!   cgroup the caller may write to and starts the child there; with the hierarchy's root the
//!   child is outside the confinement and its sockets are nobody's to filter. A read-only
//!   mount does not help (the fd is opened read-only); the seccomp filter answers `ENOSYS`, so
//!   libc falls back to `clone`, and the cgroup namespace shows no cgroup outside the run.
//! - **kernel knobs**: `/proc/sys` is writable by root in any mount namespace unless remounted
//!   read-only; a write of the current value proves write access and changes nothing.
//! - **`/proc/PID/root`**: the kernel checks "may this caller ptrace that process" with the
//!   *filesystem* uid and gid; after `setfsgid(U)` and `setfsuid(U)` a root without
//!   `CAP_SYS_PTRACE` matches any process of uid and gid U (with the fsuid alone the gid check
//!   still fails, `EACCES`), and through its root directory reaches the outside mount namespace,
//!   where the cgroup hierarchy is writable (the fd is taken with fsuid U, the write done
//!   after `setfsuid(0)`, which brings the filesystem capabilities back).
//! - **borrowing a socket**: cgroup filters hold a socket by the cgroup that created it; a
//!   socket made outside and taken with `pidfd_getfd` (a ptrace-class check: same uid is
//!   enough) is not held.
//! - **IGMP/MLD**: a join makes the *host* send membership reports on the named interface;
//!   they are the kernel's packets, no socket of the program's, so no cgroup filter sees them.
//!   The tests force IGMPv2/MLDv1 on the host, whose reports are addressed to the group
//!   itself, so they are told apart from the host's own background reports.
//! - **error queue**: an ICMP error is matched to a UDP socket by the tuple it embeds and
//!   queued (with `IP_RECVERR`) without passing the socket's ingress filter, carrying bytes
//!   chosen by whoever sent it; a socket not bound to the pinned interface matches one that
//!   arrived on the front port.
//! - **the supervisor**: ifpin is the program's parent and runs as root; root may signal it.
//! - **32-bit system calls**: `int 0x80` from a 64-bit process enters the i386 system call
//!   table, with other numbers, so a seccomp filter written for x86-64 numbers does not see
//!   it unless it checks the architecture.
//! - **nested cgroup**: a new user namespace gives back every capability inside it, enough
//!   to mount cgroup2 (in a new cgroup namespace) and make and enter a child cgroup of the
//!   run's, which the supervisor's teardown then finds.
//! - **index takeover** (in `exec_lifecycle.rs`, at every level): a pin is an interface
//!   index; when the interface is deleted and a new device takes the index, bound sockets
//!   follow the new device.
//!
//! Runs that must hold come before the negative controls in each test: the host may send
//! packets of its own for a leaking run's connection after it ended, and those must not be
//! counted against a run that holds. Both sides always run: each test collects what failed,
//! tagged `sealed:` or `negative control:`, and fails at the end with the whole list.

#[path = "support/mod.rs"]
mod support;

use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use netlab::{Chassis, FrameCounter, Netns, Proto};
use serde_json::Value;
use support::{
    Leftovers, Run, escape_argv, exec_in, program_frames, spawn_as_nobody, step_detail,
    step_result, step_results,
};

const PORT: u16 = 7_801;
/// The uid of the processes outside.
const NOBODY: u32 = 65_534;

/// What failed in one test, each tagged with its side; [`Checks::finish`] panics with all.
#[derive(Default)]
struct Checks {
    failures: Vec<String>,
}

impl Checks {
    /// Records `what` as a failure of `side` unless `ok`.
    fn check(&mut self, side: &str, ok: bool, what: impl FnOnce() -> String) {
        if !ok {
            self.failures.push(format!("{side}: {}", what()));
        }
    }

    /// Checks that step `call` of `result` answered `expected`.
    fn step(&mut self, side: &str, result: &Value, call: &str, expected: &str) {
        let got = step_result(result, call);
        self.check(side, got == expected, || {
            format!("{call} gave {got}, expected {expected}: {result}")
        });
    }

    /// Checks that ifpin ran the program to the end at `level` and removed its cgroup.
    fn ran(&mut self, side: &str, run: &Run, level: &str) {
        let ok = run.status.code() == Some(0)
            && run
                .report
                .as_ref()
                .is_some_and(|r| r["level"] == level && !run.cgroup().exists());
        self.check(side, ok, || {
            format!(
                "ifpin at {level} exited {} (report {:?}), stderr:\n{}",
                run.status, run.report, run.stderr
            )
        });
    }

    /// Checks that nothing of the program's reached the front link since the last call.
    fn quiet(&mut self, side: &str, front: &FrameCounter) {
        let (leaked, seen) = program_frames(front);
        self.check(side, leaked == 0, || {
            format!("frames on the front link: {seen}")
        });
    }

    /// Checks that frames of the program reached the front link since the last call.
    fn leaked(&mut self, side: &str, front: &FrameCounter) {
        let (leaked, seen) = program_frames(front);
        self.check(side, leaked > 0, || {
            format!("no frame on the front link: {seen}")
        });
    }

    fn finish(self) {
        assert!(self.failures.is_empty(), "{}", self.failures.join("\n"));
    }
}

/// Held by the tests that leave stale cgroups on purpose and run `exec --cleanup`: one
/// test's leftovers must not be another's cleanup failure.
static STALE_CGROUPS: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn stale_cgroups_lock() -> std::sync::MutexGuard<'static, ()> {
    STALE_CGROUPS
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

const SEALED: &str = "sealed";
const CONTROL: &str = "negative control";

/// Runs `netlab-escape ATTACK ARGS` under `ifpin exec -i ctl0 --level LEVEL EXTRA...` in the
/// chassis host; returns the run and the program's JSON result (`Null` if it printed none).
fn attack(
    chassis: &Chassis,
    level: &str,
    extra: &[&str],
    name: &str,
    args: &[(&str, String)],
) -> (Run, Value) {
    let mut ifpin_args = vec!["-i", Chassis::CTL0, "--level", level];
    ifpin_args.extend_from_slice(extra);
    let run = exec_in(chassis.host(), &ifpin_args, &escape_argv(name, args));
    let result = if run.stdout.lines().any(|l| l.starts_with('{')) {
        support::last_json_line(&run.stdout)
    } else {
        Value::Null
    };
    eprintln!("{name} at {level} {extra:?}: {result}");
    (run, result)
}

fn dst_args() -> Vec<(&'static str, String)> {
    vec![
        ("dst", Chassis::CONTROL_V4.to_string()),
        ("port", PORT.to_string()),
    ]
}

/// The chassis with TCP and UDP responders on [`PORT`] and a counter on the front link.
fn chassis_with_front() -> (Chassis, netlab::Served, netlab::Served, FrameCounter) {
    let chassis = Chassis::new().expect("chassis");
    let tcp = chassis.serve(Proto::Tcp, PORT).expect("tcp responders");
    let udp = chassis.serve(Proto::Udp, PORT).expect("udp responders");
    let front = chassis.front_counter().expect("front counter");
    program_frames(&front);
    (chassis, tcp, udp, front)
}

// 1. clone3(CLONE_INTO_CGROUP) with the hierarchy's root.
#[test]
fn clone3_into_the_root_cgroup() {
    if !netlab::require_privileged() {
        return;
    }
    let (chassis, _tcp, _udp, front) = chassis_with_front();
    let mut checks = Checks::default();

    let (run, sealed) = attack(&chassis, "sealed", &[], "clone3-cgroup", &dst_args());
    checks.quiet(SEALED, &front);
    checks.ran(SEALED, &run, "sealed");
    checks.step(SEALED, &sealed, "clone3", "ENOSYS");
    checks.check(SEALED, sealed["mount_root_holds_self"] == true, || {
        format!("the cgroup2 mount must show only the confinement: {sealed}")
    });

    // At enforced the child starts in the root cgroup and leaks.
    let (run, control) = attack(&chassis, "enforced", &[], "clone3-cgroup", &dst_args());
    checks.leaked(CONTROL, &front);
    checks.ran(CONTROL, &run, "enforced");
    checks.step(CONTROL, &control, "clone3", "ok");
    checks.check(CONTROL, control["child_cgroup"] == "/", || {
        format!("the child is in the root cgroup: {control}")
    });
    checks.check(
        CONTROL,
        step_detail(&control, "child-connect").as_deref() == Some("front"),
        || format!("the child is answered by the front: {control}"),
    );
    checks.finish();
}

/// Runs `write-same` (or `open-write`) on each path at sealed and at enforced: at sealed
/// every open for writing is `EROFS`, at enforced it works, and the value is unchanged.
fn read_only_knobs(write_same: &[String], open_only: &[&str]) {
    if !netlab::require_privileged() {
        return;
    }
    let (chassis, _tcp, _udp, front) = chassis_with_front();
    let mut checks = Checks::default();
    let mut cases: Vec<(&str, String)> = write_same
        .iter()
        .map(|p| ("write-same", p.clone()))
        .collect();
    for path in open_only {
        if Path::new(path).exists() {
            cases.push(("open-write", (*path).to_owned()));
        } else {
            eprintln!("{path} does not exist on this kernel: not tried");
        }
    }
    let read_all = || -> Vec<Option<String>> {
        cases
            .iter()
            .map(|(_, p)| {
                chassis
                    .host()
                    .run(|| std::fs::read_to_string(p).ok())
                    .unwrap()
            })
            .collect()
    };
    let before = read_all();
    for (level, side) in [("sealed", SEALED), ("enforced", CONTROL)] {
        for (name, path) in &cases {
            let (run, result) = attack(&chassis, level, &[], name, &[("path", path.clone())]);
            checks.ran(side, &run, level);
            if level == "sealed" {
                checks.step(side, &result, "open-write", "EROFS");
            } else {
                checks.step(side, &result, "open-write", "ok");
                if *name == "write-same" {
                    checks.step(side, &result, "write", "ok");
                }
            }
        }
    }
    let after = read_all();
    assert_eq!(before, after, "the values written back must be the same");
    checks.quiet("both", &front);
    checks.finish();
}

// 2. Kernel knobs: core_pattern (same value written back), sysrq-trigger and uevent_helper
//    (opened for writing only, where this kernel has them).
#[test]
fn kernel_knobs_are_read_only() {
    read_only_knobs(
        &["/proc/sys/kernel/core_pattern".to_owned()],
        &["/proc/sysrq-trigger", "/sys/kernel/uevent_helper"],
    );
}

// 10. Network sysctls of the host namespace.
#[test]
fn network_sysctls_are_read_only() {
    read_only_knobs(
        &[format!(
            "/proc/sys/net/ipv6/conf/{}/disable_ipv6",
            Chassis::ETH1
        )],
        &[],
    );
}

// 3. setfsuid/setfsgid + /proc/PID/root of a process outside.
#[test]
fn setfsuid_and_proc_pid_root() {
    if !netlab::require_privileged() {
        return;
    }
    let (chassis, _tcp, _udp, front) = chassis_with_front();
    let mut checks = Checks::default();
    let outside = spawn_as_nobody(chassis.host(), &["sleep", "30"]);
    let mut args = dst_args();
    args.push(("pid", outside.pid().to_string()));
    args.push(("uid", NOBODY.to_string()));

    let (run, sealed) = attack(&chassis, "sealed", &[], "proc-root-cgroup", &args);
    checks.quiet(SEALED, &front);
    checks.ran(SEALED, &run, "sealed");
    checks.check(
        SEALED,
        step_result(&sealed, "write(cgroup.procs)") != "ok",
        || format!("the program wrote itself out of its cgroup: {sealed}"),
    );
    checks.check(
        SEALED,
        sealed["cgroup_after"] == sealed["cgroup_before"],
        || format!("the program changed cgroups: {sealed}"),
    );

    let (run, control) = attack(&chassis, "enforced", &[], "proc-root-cgroup", &args);
    checks.leaked(CONTROL, &front);
    checks.ran(CONTROL, &run, "enforced");
    for call in [
        "setfsuid+setfsgid(65534)",
        "open(/proc/PID/root)",
        "openat(root, cgroup.procs)",
        "write(cgroup.procs)",
    ] {
        checks.step(CONTROL, &control, call, "ok");
    }
    checks.check(CONTROL, control["cgroup_after"] == "/", || {
        format!("moved to the root cgroup: {control}")
    });
    checks.check(
        CONTROL,
        step_detail(&control, "connect").as_deref() == Some("front"),
        || format!("answered by the front: {control}"),
    );
    checks.finish();
}

/// A UDP socket held by uid 65534 outside; prints its fd number.
const HOLD_SOCKET: &str = "import socket, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
print(s.fileno(), flush=True)
time.sleep(30)";

// 4. pidfd_getfd (and ptrace, process_vm_readv) on a process outside holding a socket.
#[test]
fn borrowing_a_socket_from_outside() {
    if !netlab::require_privileged() {
        return;
    }
    let (chassis, _tcp, udp, front) = chassis_with_front();
    let mut checks = Checks::default();
    let outside = spawn_as_nobody(chassis.host(), &[support::python3(), "-c", HOLD_SOCKET]);
    let stdout = outside.with_child(|c| c.stdout.take()).unwrap();
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line).unwrap();
    let fd: u32 = line.trim().parse().expect("the fd number");
    let mut args = dst_args();
    args.push(("pid", outside.pid().to_string()));
    args.push(("fd", fd.to_string()));
    args.push(("uid", NOBODY.to_string()));

    let (run, sealed) = attack(&chassis, "sealed", &[], "borrow-fd", &args);
    checks.quiet(SEALED, &front);
    checks.ran(SEALED, &run, "sealed");
    for call in ["pidfd_getfd", "ptrace(PTRACE_ATTACH)", "process_vm_readv"] {
        checks.step(SEALED, &sealed, call, "EPERM");
    }
    checks.check(SEALED, udp.front_hits() == 0, || {
        format!("the front got {} datagram(s)", udp.front_hits())
    });

    let (run, control) = attack(&chassis, "enforced", &[], "borrow-fd", &args);
    checks.leaked(CONTROL, &front);
    checks.ran(CONTROL, &run, "enforced");
    checks.step(CONTROL, &control, "pidfd_getfd", "ok");
    checks.check(
        CONTROL,
        step_results(&control, "sendto(borrowed)") == ["ok", "ok", "ok"],
        || format!("three sends through the borrowed socket: {control}"),
    );
    checks.check(CONTROL, udp.front_hits() > 0, || {
        "the front peer got no datagram".to_owned()
    });
    checks.finish();
}

const GROUP4: &str = "239.1.2.3";
const SSM_GROUP: &str = "232.1.2.4";
const GROUP6: &str = "ff15::1:2:3";
const LEGACY_GROUP: &str = "239.1.2.5";
const JOIN_GROUP: &str = "239.1.2.6";
const SOURCE_GROUP: &str = "232.1.2.7";

/// Membership reports for the test's groups among the frames the host sent on a link since
/// the last call. With IGMPv2 and MLDv1 a report is addressed to its group.
fn membership_reports(counter: &FrameCounter) -> usize {
    counter.settle();
    let groups: Vec<std::net::IpAddr> = [
        GROUP4,
        SSM_GROUP,
        GROUP6,
        LEGACY_GROUP,
        JOIN_GROUP,
        SOURCE_GROUP,
    ]
    .iter()
    .map(|g| g.parse().unwrap())
    .collect();
    counter
        .take_all()
        .iter()
        .filter(|f| f.direction == netlab::Direction::Incoming)
        .filter(|f| f.dst_ip().is_some_and(|d| groups.contains(&d)))
        .filter(|f| f.proto() == Some(netlab::frame::PROTO_IGMP) || f.icmp_type().is_some())
        .count()
}

/// The `mcast` arguments for the interface of index `index` and IPv4 address `addr`.
fn mcast_args(index: u32, addr: std::net::Ipv4Addr) -> Vec<(&'static str, String)> {
    vec![
        ("index", index.to_string()),
        ("group4", GROUP4.to_owned()),
        ("ssm-group", SSM_GROUP.to_owned()),
        ("ssm-source", Chassis::FRONT_V4.to_string()),
        ("group6", GROUP6.to_owned()),
        ("iface-addr", addr.to_string()),
        ("legacy-group", LEGACY_GROUP.to_owned()),
        ("join-group", JOIN_GROUP.to_owned()),
        ("source-group", SOURCE_GROUP.to_owned()),
        ("hold-ms", "1200".to_owned()),
    ]
}

/// The joins that name the interface by index (allowed for the pinned one).
const JOINS: [&str; 4] = [
    "IP_ADD_MEMBERSHIP(ip_mreqn)",
    "MCAST_JOIN_SOURCE_GROUP",
    "MCAST_JOIN_GROUP",
    "IPV6_ADD_MEMBERSHIP",
];
/// The joins that name the interface by address (refused whatever they name).
const ADDRESS_JOINS: [&str; 2] = ["IP_ADD_MEMBERSHIP(ip_mreq)", "IP_ADD_SOURCE_MEMBERSHIP"];

// 5. Multicast joins naming eth1: the host's IGMP/MLD reports leave through it.
#[test]
fn multicast_joins_on_another_interface() {
    if !netlab::require_privileged() {
        return;
    }
    let chassis = Chassis::new().expect("chassis");
    let mut checks = Checks::default();
    for ifname in [Chassis::ETH1, Chassis::CTL0] {
        let host = chassis.host();
        host.sysctl(&format!("net/ipv4/conf/{ifname}/force_igmp_version"), "2")
            .unwrap();
        host.sysctl(&format!("net/ipv6/conf/{ifname}/force_mld_version"), "1")
            .unwrap();
    }
    let front = chassis.front_counter().unwrap();
    let backplane = chassis.backplane_counter().unwrap();
    let eth1_args = mcast_args(chassis.eth1_index().unwrap(), Chassis::HOST_ETH1_V4);
    let ctl0_args = mcast_args(chassis.ctl0_index().unwrap(), Chassis::HOST_CTL0_V4);
    membership_reports(&front);

    // Refused at sealed, and at enforced (the setsockopt guard holds at both).
    for level in ["sealed", "enforced"] {
        let side = format!("{SEALED} ({level})");
        let (run, result) = attack(&chassis, level, &[], "mcast", &eth1_args);
        let reports = membership_reports(&front);
        checks.ran(&side, &run, level);
        for call in JOINS.iter().chain(&ADDRESS_JOINS) {
            checks.step(&side, &result, call, "EPERM");
        }
        let refused = run.report.as_ref().map(|_| run.blocked("setsockopt"));
        checks.check(&side, refused == Some(6), || {
            format!("the refused joins are counted: setsockopt {refused:?}")
        });
        checks.check(&side, reports == 0, || {
            format!("{reports} membership report(s) left through eth1")
        });
    }

    // A join naming ctl0 is a legitimate control-plane use: it works at sealed.
    membership_reports(&backplane);
    let (run, result) = attack(&chassis, "sealed", &[], "mcast", &ctl0_args);
    checks.ran(SEALED, &run, "sealed");
    for call in JOINS {
        checks.step(&format!("{SEALED} (ctl0)"), &result, call, "ok");
    }
    let on_ctl0 = membership_reports(&backplane);
    checks.check(SEALED, on_ctl0 > 0, || {
        "the joins on ctl0 are not reported on ctl0".to_owned()
    });
    checks.check(SEALED, membership_reports(&front) == 0, || {
        "a join on ctl0 was reported on eth1".to_owned()
    });

    // At pinned the joins work and the reports leave through eth1.
    let (run, control) = attack(&chassis, "pinned", &[], "mcast", &eth1_args);
    let reports = membership_reports(&front);
    eprintln!("mcast at pinned: {reports} membership report(s) on eth1");
    checks.ran(CONTROL, &run, "pinned");
    for call in JOINS.iter().chain(&ADDRESS_JOINS) {
        checks.step(CONTROL, &control, call, "ok");
    }
    checks.check(CONTROL, reports >= 6, || {
        format!("{reports} membership report(s) on eth1, expected one per group at least")
    });
    checks.finish();
}

/// An ICMP port unreachable from the front peer to the host's eth1 address, embedding a UDP
/// datagram from the host's `sport` carrying `payload`: what an unconnected socket on that
/// port is matched with.
fn send_port_unreachable(chassis: &Chassis, sport: u16, payload: &[u8]) {
    let icmp = netlab::cases::levels::port_unreachable(sport, payload);
    chassis
        .front()
        .run(|| {
            use socket2::{Domain, Protocol, SockAddr, Socket, Type};
            let socket = Socket::new(Domain::IPV4, Type::RAW, Some(Protocol::ICMPV4)).unwrap();
            let to = std::net::SocketAddr::new(Chassis::HOST_ETH1_V4.into(), 0);
            socket.send_to(&icmp, &SockAddr::from(to)).unwrap();
        })
        .unwrap();
}

/// Runs the `errqueue` attack with `--allow-loopback` at `level`; once it says `ready`, the
/// front peer sends it an ICMP error carrying `payload`.
fn errqueue_run(chassis: &Chassis, level: &str, payload: &[u8]) -> (Run, Value) {
    let port = PORT + 5;
    let argv = escape_argv(
        "errqueue",
        &[("port", port.to_string()), ("wait-ms", "1500".to_owned())],
    );
    let (mut cmd, report) = support::exec_command(
        chassis.host(),
        &["-i", Chassis::CTL0, "--level", level, "--allow-loopback"],
        &argv,
    );
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    stdout.read_line(&mut line).unwrap();
    if line.trim() == "ready" {
        send_port_unreachable(chassis, port, payload);
    }
    let mut rest = String::new();
    stdout.read_to_string(&mut rest).unwrap();
    let output = child.wait_with_output().unwrap();
    let run = support::collect(
        std::process::Output {
            stdout: format!("{line}{rest}").into_bytes(),
            ..output
        },
        &report,
    );
    let result = support::last_json_line(&run.stdout);
    eprintln!("errqueue at {level}: {result}");
    (run, result)
}

// 6. The error queue of an unpinned socket (--allow-loopback) reads what the front sent.
#[test]
fn error_queue_of_an_unpinned_socket() {
    if !netlab::require_privileged() {
        return;
    }
    let (chassis, _tcp, _udp, front) = chassis_with_front();
    let mut checks = Checks::default();
    let secret = "ifpin-errqueue-from-the-front";

    let (run, sealed) = errqueue_run(&chassis, "sealed", secret.as_bytes());
    checks.ran(SEALED, &run, "sealed");
    checks.step(SEALED, &sealed, "setsockopt(IP_RECVERR)", "EPERM");
    checks.check(SEALED, sealed["errqueue_payload"].is_null(), || {
        format!("the front's bytes were read: {sealed}")
    });
    let refused = run.report.as_ref().map(|_| run.blocked("setsockopt"));
    checks.check(SEALED, refused == Some(1), || {
        format!("the refusal is counted: setsockopt {refused:?}")
    });

    let (run, control) = errqueue_run(&chassis, "enforced", secret.as_bytes());
    checks.ran(CONTROL, &run, "enforced");
    checks.step(CONTROL, &control, "setsockopt(IP_RECVERR)", "ok");
    checks.check(CONTROL, control["errqueue_payload"] == secret, || {
        format!("the front's bytes are read from the error queue: {control}")
    });
    checks.quiet("both (nothing is sent in this attack)", &front);
    checks.finish();
}

/// Runs `kill-parent` at `level`; the program and, if ifpin was killed, its cgroup are
/// registered in `leftovers`. Returns the run, the result and the run's cgroup.
fn kill_parent(
    chassis: &Chassis,
    level: &str,
    leftovers: &mut Leftovers,
) -> (Run, Value, std::path::PathBuf) {
    let (run, result) = attack(chassis, level, &[], "kill-parent", &[]);
    let first = run.stdout.lines().next().unwrap_or_default().to_owned();
    let words: Vec<&str> = first.split(' ').collect();
    let (pid, cgroup) = match words[..] {
        ["pid", pid, "cgroup", cgroup] => (pid.parse::<u32>().unwrap(), cgroup),
        _ => panic!("first line {first:?}; stderr {}", run.stderr),
    };
    leftovers.kill_on_drop(pid, cgroup);
    let dir = support::cgroup_dir(cgroup);
    leftovers.rmdir_on_drop(dir.clone());
    // The program exits on its own after printing.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while Path::new(&format!("/proc/{pid}")).exists() && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    (run, result, dir)
}

// 7. Killing the supervisor.
#[test]
fn killing_the_supervisor() {
    if !netlab::require_privileged() {
        return;
    }
    use std::os::unix::process::ExitStatusExt;
    let _stale = stale_cgroups_lock();
    let chassis = Chassis::new().expect("chassis");
    let mut checks = Checks::default();
    let mut leftovers = Leftovers::default();

    let (run, sealed, _) = kill_parent(&chassis, "sealed", &mut leftovers);
    checks.ran(SEALED, &run, "sealed");
    checks.step(SEALED, &sealed, "pidfd_send_signal(SIGKILL)", "EPERM");
    checks.step(SEALED, &sealed, "kill(ppid, SIGKILL)", "EPERM");

    // At enforced ifpin dies; the stale cgroup is then removed by `exec --cleanup`.
    let (run, control, cgroup) = kill_parent(&chassis, "enforced", &mut leftovers);
    checks.check(CONTROL, run.status.signal() == Some(libc::SIGKILL), || {
        format!("ifpin was not killed: {} {control}", run.status)
    });
    checks.step(CONTROL, &control, "pidfd_send_signal(SIGKILL)", "ok");
    let cleanup = std::process::Command::new(support::ifpin())
        .args(["exec", "--cleanup"])
        .output()
        .unwrap();
    checks.check(CONTROL, cleanup.status.code() == Some(0), || {
        format!("exec --cleanup exited {}", cleanup.status)
    });
    checks.check(CONTROL, !cgroup.exists(), || {
        format!("{} left after exec --cleanup", cgroup.display())
    });
    drop(leftovers);
    checks.finish();
}

/// A 32-bit (i386) ELF program that exits with status 42 (`int 0x80`, exit).
fn elf32_exit42() -> Vec<u8> {
    const BASE: u32 = 0x0804_8000;
    let code: [u8; 12] = [
        0xb8, 1, 0, 0, 0, // mov eax, 1 (exit)
        0xbb, 42, 0, 0, 0, // mov ebx, 42
        0xcd, 0x80, // int 0x80
    ];
    let size = (52 + 32 + code.len()) as u32;
    let mut elf = vec![0x7f, b'E', b'L', b'F', 1, 1, 1, 0];
    elf.extend_from_slice(&[0; 8]);
    for half in [2u16, 3, 1, 0] {
        // e_type EXEC, e_machine 386, e_version 1 (two halves)
        elf.extend_from_slice(&half.to_le_bytes());
    }
    for word in [BASE + 52 + 32, 52, 0, 0] {
        // e_entry, e_phoff, e_shoff, e_flags
        elf.extend_from_slice(&word.to_le_bytes());
    }
    for half in [52u16, 32, 1, 40, 0, 0] {
        // e_ehsize, e_phentsize, e_phnum, e_shentsize, e_shnum, e_shstrndx
        elf.extend_from_slice(&half.to_le_bytes());
    }
    for word in [1u32, 0, BASE, BASE, size, size, 5, 0x1000] {
        // PT_LOAD, offset, vaddr, paddr, filesz, memsz, R+X, align
        elf.extend_from_slice(&word.to_le_bytes());
    }
    elf.extend_from_slice(&code);
    elf
}

// 8. 32-bit system calls: int 0x80 from a 64-bit program, and a 32-bit program.
#[test]
fn thirty_two_bit_system_calls() {
    if !netlab::require_privileged() {
        return;
    }
    let (chassis, _tcp, _udp, front) = chassis_with_front();
    let mut checks = Checks::default();
    let eth1 = chassis.eth1_index().unwrap();
    let args = [("iface", Chassis::ETH1.to_owned())];
    let extra = ["--allow-loopback"];

    let (run, sealed) = attack(&chassis, "sealed", &extra, "int80-bindtodevice", &args);
    checks.check(SEALED, sealed.is_null(), || {
        format!("the program went on after int 0x80: {sealed}")
    });
    let signal = run.report.as_ref().map(|r| r["exit"]["signal"].clone());
    checks.check(SEALED, signal == Some(Value::from("SIGSYS")), || {
        format!("the program was not killed by SIGSYS: {signal:?}")
    });
    checks.check(
        SEALED,
        run.status.code() == Some(128 + libc::SIGSYS),
        || format!("ifpin exited {}", run.status),
    );

    let (run, control) = attack(&chassis, "enforced", &extra, "int80-bindtodevice", &args);
    checks.ran(CONTROL, &run, "enforced");
    checks.step(CONTROL, &control, "int80 setsockopt(SO_BINDTODEVICE)", "ok");
    checks.check(
        CONTROL,
        control["bound_after"].as_u64() == Some(u64::from(eth1)),
        || format!("not rebound to eth1 ({eth1}): {control}"),
    );

    // A real 32-bit program: refused before it starts at sealed (exit 2, no report); it runs
    // unconfined and at enforced.
    let dir = tempfile::tempdir().unwrap();
    let elf = dir.path().join("exit42-i386");
    std::fs::write(&elf, elf32_exit42()).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&elf, std::fs::Permissions::from_mode(0o755)).unwrap();
    let unconfined = std::process::Command::new(&elf).status().unwrap();
    checks.check(CONTROL, unconfined.code() == Some(42), || {
        format!("the 32-bit program does not run here: {unconfined}")
    });
    let elf_argv = [elf.display().to_string()];
    let pin = |level| ["-i", Chassis::CTL0, "--level", level];
    let run = exec_in(chassis.host(), &pin("sealed"), &elf_argv);
    checks.check(
        SEALED,
        run.status.code() == Some(2) && run.report.is_none(),
        || {
            format!(
                "a 32-bit program must be refused before it starts (exit 2, no report): {} {}",
                run.status, run.stderr
            )
        },
    );
    let run = exec_in(chassis.host(), &pin("enforced"), &elf_argv);
    checks.check(CONTROL, run.status.code() == Some(42), || {
        format!(
            "the 32-bit program at enforced: {} {}",
            run.status, run.stderr
        )
    });
    checks.quiet("both", &front);
    checks.finish();
}

// 9. A nested cgroup made in a new user + cgroup namespace.
#[test]
fn nested_cgroup_in_a_user_namespace() {
    if !netlab::require_privileged() {
        return;
    }
    let _stale = stale_cgroups_lock();
    let (chassis, _tcp, _udp, front) = chassis_with_front();
    let mut checks = Checks::default();
    let mut leftovers = Leftovers::default();
    const UNSHARE: &str = "unshare(NEWUSER|NEWNS|NEWCGROUP)";

    let (run, sealed) = attack(&chassis, "sealed", &[], "nested-cgroup", &dst_args());
    if let Some(before) = sealed["cgroup_before"].as_str() {
        let dir = support::cgroup_dir(before);
        leftovers.rmdir_on_drop(dir.clone());
        leftovers.rmdir_on_drop(dir.join("sub"));
    }
    checks.quiet(SEALED, &front);
    checks.ran(SEALED, &run, "sealed");
    checks.step(SEALED, &sealed, UNSHARE, "EPERM");

    // At enforced the program makes and enters `sub`; ifpin's teardown must cope with it, and
    // `exec --cleanup` afterwards must not fail.
    let (run, control) = attack(&chassis, "enforced", &[], "nested-cgroup", &dst_args());
    let run_cgroup = support::cgroup_dir(control["cgroup_before"].as_str().unwrap_or("/"));
    assert_ne!(run_cgroup, support::cgroup2_mount(), "{control}");
    leftovers.rmdir_on_drop(run_cgroup.clone());
    leftovers.rmdir_on_drop(run_cgroup.join("sub"));
    checks.quiet(&format!("{CONTROL} (still filtered in sub)"), &front);
    for call in [
        UNSHARE,
        "mount(cgroup2)",
        "mkdir(sub)",
        "write(sub/cgroup.procs)",
    ] {
        checks.step(CONTROL, &control, call, "ok");
    }
    checks.check(CONTROL, control["cgroup_after"] == "/sub", || {
        format!("not moved into sub: {control}")
    });
    checks.check(
        "teardown",
        run.status.code() == Some(0) && !run_cgroup.exists(),
        || {
            format!(
                "ifpin's teardown with a nested cgroup: exit {}, {} exists: {}; stderr:\n{}",
                run.status,
                run_cgroup.display(),
                run_cgroup.exists(),
                run.stderr
            )
        },
    );
    let cleanup = std::process::Command::new(support::ifpin())
        .args(["exec", "--cleanup"])
        .output()
        .unwrap();
    checks.check("teardown", cleanup.status.code() != Some(2), || {
        format!(
            "exec --cleanup after a nested cgroup exited 2: {}",
            String::from_utf8_lossy(&cleanup.stderr)
        )
    });
    drop(leftovers);
    checks.finish();
}

// Capabilities: --keep-cap keeps one (binding a port below 1024 works), without it root
// inside cannot; the dangerous ones are refused.
#[test]
fn keep_cap_net_bind_service() {
    if !netlab::require_privileged() {
        return;
    }
    let chassis = Chassis::new().expect("chassis");
    let mut checks = Checks::default();
    let args = [("port", "179".to_owned())];
    let (run, sealed) = attack(&chassis, "sealed", &[], "bind-port", &args);
    checks.ran(SEALED, &run, "sealed");
    checks.step(SEALED, &sealed, "bind", "EACCES");
    let keep = ["--keep-cap", "CAP_NET_BIND_SERVICE"];
    let (run, kept) = attack(&chassis, "sealed", &keep, "bind-port", &args);
    checks.ran(&format!("{SEALED} --keep-cap"), &run, "sealed");
    checks.step(&format!("{SEALED} --keep-cap"), &kept, "bind", "ok");
    let (run, control) = attack(&chassis, "enforced", &[], "bind-port", &args);
    checks.ran(CONTROL, &run, "enforced");
    checks.step(CONTROL, &control, "bind", "ok");
    checks.finish();
}

#[test]
fn keep_cap_refuses_dangerous_capabilities() {
    if !netlab::require_privileged() {
        return;
    }
    let ns = Netns::new("keepcap").unwrap();
    let mut checks = Checks::default();
    // The flag exists and keeps a harmless capability.
    let run = exec_in(
        &ns,
        &["-i", "lo", "--keep-cap", "CAP_NET_BIND_SERVICE"],
        &["true"],
    );
    checks.check(SEALED, run.status.code() == Some(0), || {
        format!(
            "--keep-cap CAP_NET_BIND_SERVICE: {} {}",
            run.status, run.stderr
        )
    });
    for cap in [
        "CAP_NET_ADMIN",
        "CAP_NET_RAW",
        "CAP_SYS_ADMIN",
        "CAP_BPF",
        "CAP_SYS_PTRACE",
        "CAP_SYS_MODULE",
        "CAP_DAC_READ_SEARCH",
    ] {
        let run = exec_in(&ns, &["-i", "lo", "--keep-cap", cap], &["true"]);
        checks.check(
            SEALED,
            run.status.code() == Some(2)
                && run.report.is_none()
                && run.stderr.contains(cap)
                && !run.stderr.contains("unexpected argument"),
            || {
                format!(
                    "--keep-cap {cap} must be refused, naming it (exit 2): {} {}",
                    run.status, run.stderr
                )
            },
        );
    }
    checks.finish();
}

#[test]
fn io_uring_and_bpf_are_refused() {
    if !netlab::require_privileged() {
        return;
    }
    let ns = Netns::new("uring").unwrap();
    let mut checks = Checks::default();
    for (attack, call, sealed_errno) in [
        ("io-uring", "io_uring_setup", "ENOSYS"),
        ("bpf", "bpf(BPF_MAP_CREATE)", "EPERM"),
    ] {
        for (level, side, expected) in [
            ("sealed", SEALED, sealed_errno),
            ("enforced", CONTROL, "ok"),
        ] {
            let run = exec_in(
                &ns,
                &["-i", "lo", "--level", level],
                &escape_argv(attack, &[]),
            );
            checks.ran(side, &run, level);
            let result = support::last_json_line(&run.stdout);
            checks.step(side, &result, call, expected);
        }
    }
    checks.finish();
}

/// `--user` and `--group` run the program as another account, at any level; a kept
/// capability survives the switch (ambient set); an unknown account is exit 2, nothing run.
#[test]
fn another_account_and_its_kept_capability() {
    if !netlab::require_privileged() {
        return;
    }
    let ns = Netns::new("account").unwrap();
    let script = "import os, socket\n\
                  print(os.getuid(), os.getgid())\n\
                  s = socket.socket()\n\
                  try:\n    s.bind(('127.0.0.1', 179)); print('bound')\n\
                  except OSError as e:\n    print(e.strerror)\n";
    let python = support::python3();
    let cases: [(&[&str], &str); 4] = [
        (&["--user", "nobody"], "65534 65534\nPermission denied"),
        (
            &["--user", "65534", "--group", "4242"],
            "65534 4242\nPermission denied",
        ),
        (
            &["--user", "nobody", "--keep-cap", "CAP_NET_BIND_SERVICE"],
            "65534 65534\nbound",
        ),
        (
            &["--user", "nobody", "--level", "enforced"],
            "65534 65534\nPermission denied",
        ),
    ];
    for (flags, expected) in cases {
        let mut args = vec!["-i", "lo"];
        args.extend_from_slice(flags);
        let run = exec_in(&ns, &args, &[python, "-c", script]);
        assert_eq!(run.status.code(), Some(0), "{flags:?}: {}", run.stderr);
        assert_eq!(run.stdout.trim(), expected, "{flags:?}: {}", run.stderr);
        assert_eq!(run.report()["user"], 65534, "{flags:?}");
    }
    // Negative control: as root with the capability, binding works (the account mattered).
    let run = exec_in(
        &ns,
        &["-i", "lo", "--level", "enforced"],
        &[python, "-c", script],
    );
    assert_eq!(run.stdout.trim(), "0 0\nbound", "{}", run.stderr);
    let run = exec_in(
        &ns,
        &["-i", "lo", "--user", "no-such-user-ifpin"],
        &["true"],
    );
    assert_eq!(run.status.code(), Some(2), "{}", run.stderr);
    assert!(run.stderr.contains("no-such-user-ifpin"), "{}", run.stderr);
    assert!(run.report.is_none());
}

/// A program on the operator's terminal pushes characters into its input with
/// `ioctl(TIOCSTI)` (where `dev.tty.legacy_tiocsti` allows it); the shell outside reads them
/// as its next command once the program has ended. `script` gives the run a terminal of its
/// own, and the "shell outside" is the `read` after ifpin.
#[test]
fn typing_into_the_shell_outside() {
    if !netlab::require_privileged() {
        return;
    }
    let program = "import fcntl, termios\n\
                   try:\n    [fcntl.ioctl(0, termios.TIOCSTI, bytes([c])) for c in b'echo injected\\n']\n    print('TIOCSTI ok')\n\
                   except OSError as e:\n    print('TIOCSTI', e.strerror)\n";
    let file = std::env::temp_dir().join(format!("ifpin-tiocsti-{}.py", std::process::id()));
    std::fs::write(&file, program).unwrap();
    let run = |level: &str| -> String {
        let inner = format!(
            "{} exec -i lo --level {level} -- {} {} 2>/dev/null; read -t 2 line; echo \"outside read: $line\"",
            support::ifpin(),
            support::python3(),
            file.display()
        );
        // script runs the command with $SHELL (`read -t` is bash's), and needs a stdin that
        // stays open: at its end of file it would end the terminal's input too.
        let mut child = std::process::Command::new("script")
            .args(["-qec", &inner, "/dev/null"])
            .env("SHELL", "/bin/bash")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("script(1) runs");
        let stdin = child.stdin.take();
        let mut out = String::new();
        child
            .stdout
            .take()
            .unwrap()
            .read_to_string(&mut out)
            .unwrap();
        drop(stdin);
        child.wait().unwrap();
        out.replace('\r', "")
    };
    let sealed = run("sealed");
    let control = run("enforced");
    let _ = std::fs::remove_file(&file);
    let legacy = std::fs::read_to_string("/proc/sys/dev/tty/legacy_tiocsti")
        .map(|v| v.trim() == "1")
        .unwrap_or(true);
    assert!(
        sealed.contains("TIOCSTI Operation not permitted"),
        "{sealed}"
    );
    assert!(sealed.contains("outside read: \n"), "{sealed}");
    if legacy {
        assert!(
            control.contains("TIOCSTI ok"),
            "negative control: {control}"
        );
        assert!(
            control.contains("outside read: echo injected"),
            "negative control: the shell outside read what the program typed: {control}"
        );
    } else {
        eprintln!("note: dev.tty.legacy_tiocsti is 0 here: the kernel refuses TIOCSTI itself");
    }
}
