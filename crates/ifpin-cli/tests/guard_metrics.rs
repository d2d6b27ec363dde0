//! `ifpin guard` outputs: `--observe` drops nothing and counts; the metrics scraped with curl
//! and the textfile pass `promtool check metrics`; the contrib alerting rules pass
//! `promtool check rules` (Debian's `prometheus` package; scripts/setup installs it).

#[path = "support/mod.rs"]
mod support;

use std::io::Write;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use netlab::Chassis;
use nix::sys::signal::Signal;
use support::guard::{Guard, PLANE_PORT, POLICY, PolicyFile, TempPath, front_control_frames};

fn promtool() -> &'static str {
    "promtool"
}

/// `promtool check metrics` on `text`: (success, what it said).
fn check_metrics(text: &str) -> (bool, String) {
    let mut child = Command::new(promtool())
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool runs (apt-get install prometheus; scripts/setup does)");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

/// The value of the first sample whose line starts with `name{` and contains every label.
fn sample(text: &str, name: &str, labels: &[&str]) -> Option<f64> {
    text.lines()
        .filter(|l| l.starts_with(&format!("{name}{{")) || l.starts_with(&format!("{name} ")))
        .find(|l| labels.iter().all(|want| l.contains(want)))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

#[test]
fn the_contrib_alerting_rules_pass_promtool_and_the_unit_is_type_notify() {
    let rules = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../contrib/prometheus/ifpin-guard.rules.yml");
    let out = Command::new(promtool())
        .args(["check", "rules"])
        .arg(&rules)
        .output()
        .expect("promtool runs (apt-get install prometheus; scripts/setup does)");
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // The alerts fire as intended on recorded series (a drop, a violation, a missing plane
    // interface, a refused reload, a guard down), and only then.
    let tests = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../contrib/prometheus/ifpin-guard.rules.test.yml");
    let out = Command::new(promtool())
        .args(["test", "rules"])
        .arg(&tests)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // The same check fails on a broken rule (the tool does check).
    let broken = TempPath::new("broken.rules.yml");
    std::fs::write(
        &broken.0,
        "groups:\n  - name: x\n    rules:\n      - alert: X\n        expr: sum by (a (b)\n",
    )
    .unwrap();
    let out = Command::new(promtool())
        .args(["check", "rules"])
        .arg(&broken.0)
        .output()
        .unwrap();
    assert!(!out.status.success());

    let unit = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../contrib/systemd/ifpin-guard.service"),
    )
    .unwrap();
    for line in [
        "Type=notify",
        "ExecReload=/bin/kill -HUP $MAINPID",
        "WatchdogSec=",
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        "CapabilityBoundingSet=CAP_NET_ADMIN",
    ] {
        assert!(unit.contains(line), "the unit lacks {line}");
    }
    assert!(unit.contains("ExecStart=/usr/local/bin/ifpin guard --policy"));

    // systemd accepts it (with the binary under test in place of /usr/local/bin/ifpin), and
    // rates its exposure at most 4.0 ("OK").
    let copy = TempPath::new("ifpin-guard.service");
    std::fs::write(
        &copy.0,
        unit.replace("/usr/local/bin/ifpin", support::guard::ifpin()),
    )
    .unwrap();
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&copy.0)
        .output()
        .expect("systemd-analyze runs (Debian's systemd package)");
    assert!(
        out.status.success() && out.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = Command::new("systemd-analyze")
        .args(["security", "--offline=yes", "--threshold=40"])
        .arg(&copy.0)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

#[test]
fn observe_drops_nothing_and_counts() {
    if !netlab::require_privileged() {
        return;
    }
    let chassis = Chassis::new().unwrap();
    let front = chassis.front_counter().unwrap();
    let port = support::guard::free_port(chassis.host());
    let addr = format!("127.0.0.1:{port}");
    let policy = PolicyFile::new(POLICY);
    let guard = Guard::start(
        chassis.host(),
        policy.path(),
        &["--observe", "--metrics", &addr],
    );
    let started = guard.expect_event("started", |e| e["type"] == "started");
    assert_eq!(started["mode"], "observe");
    let dst = SocketAddr::new(IpAddr::V4(Chassis::CONTROL_V4), 9_600);
    let failed = support::guard::send_udp(chassis.host(), None, dst, 4);
    assert_eq!(failed, 0, "observe mode refuses nothing");
    assert_eq!(front_control_frames(&front), 4, "{}", front.describe());
    let event = guard.expect_event("observed drop", |e| e["type"] == "drop");
    assert_eq!(event["action"], "observed", "{event}");
    // Counted: the four datagrams, as "observe".
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let text = support::guard::curl(chassis.host(), &format!("http://{addr}/metrics"));
        let n = sample(
            &text,
            "ifpin_guard_drops_total",
            &[
                "action=\"observe\"",
                "plane=\"backplane\"",
                "interface=\"eth1\"",
                "rule=\"egress\"",
            ],
        );
        if n == Some(4.0) {
            assert!(sample(&text, "ifpin_guard_drops_total", &["action=\"drop\""]).is_none());
            assert_eq!(sample(&text, "ifpin_guard_observe_mode", &[]), Some(1.0));
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{n:?}:\n{text}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn metrics_scraped_with_curl_and_the_textfile_pass_promtool() {
    if !netlab::require_privileged() {
        return;
    }
    let chassis = Chassis::new().unwrap();
    let port = support::guard::free_port(chassis.host());
    let addr = format!("127.0.0.1:{port}");
    let textfile = TempPath::new("metrics.prom");
    let policy = PolicyFile::new(POLICY);
    // An unpinned listener on the plane's port: an audit violation.
    let _listener = support::guard::Listener::start(
        chassis.host(),
        SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), PLANE_PORT),
    );
    let guard = Guard::start(
        chassis.host(),
        policy.path(),
        &[
            "--metrics",
            &addr,
            "--textfile",
            textfile.0.to_str().unwrap(),
            "--audit-interval",
            "500ms",
        ],
    );
    let violation = guard.expect_event("violation", |e| e["type"] == "violation");
    assert_eq!(violation["rule"], "unpinned-plane-listener", "{violation}");
    support::guard::send_udp(
        chassis.host(),
        None,
        SocketAddr::new(IpAddr::V4(Chassis::CONTROL_V4), 9_700),
        2,
    );
    guard.expect_event("drop", |e| e["type"] == "drop");
    policy.rewrite("not a policy");
    guard.signal(Signal::SIGHUP);
    guard.expect_event("reload-failed", |e| e["type"] == "reload-failed");
    std::thread::sleep(Duration::from_millis(1_500)); // the textfile is written once a second

    let scraped = support::guard::curl(chassis.host(), &format!("http://{addr}/metrics"));
    let (ok, said) = check_metrics(&scraped);
    assert!(ok, "promtool: {said}\n{scraped}");
    for (name, labels, value) in [
        ("ifpin_guard_up", vec![], 1.0),
        ("ifpin_guard_ready", vec![], 1.0),
        (
            "ifpin_guard_drops_total",
            vec!["action=\"drop\"", "rule=\"egress\"", "direction=\"egress\""],
            2.0,
        ),
        (
            "ifpin_guard_violations",
            vec!["rule=\"unpinned-plane-listener\"", "plane=\"backplane\""],
            1.0,
        ),
        ("ifpin_guard_plane_sockets", vec!["state=\"unpinned\""], 1.0),
        (
            "ifpin_guard_plane_interface_up",
            vec!["plane=\"backplane\""],
            1.0,
        ),
        (
            "ifpin_guard_policy_reloads_total",
            vec!["result=\"error\""],
            1.0,
        ),
    ] {
        assert_eq!(
            sample(&scraped, name, &labels),
            Some(value),
            "{name} {labels:?}:\n{scraped}"
        );
    }
    let file = std::fs::read_to_string(&textfile.0).unwrap();
    let (ok, said) = check_metrics(&file);
    assert!(ok, "promtool on the textfile: {said}\n{file}");
    assert_eq!(
        sample(&file, "ifpin_guard_drops_total", &["action=\"drop\""]),
        Some(2.0),
        "{file}"
    );
    // promtool does fail on a malformed exposition (the check can fail).
    assert!(!check_metrics("ifpin_guard_up{ 1\n").0);
    let raw = support::guard::http_get(chassis.host(), addr.parse().unwrap(), "/nothing");
    assert!(raw.starts_with("HTTP/1.1 404"), "{raw}");
    // The listener goes away: the violation clears, once.
    drop(_listener);
    let cleared = guard.expect_event("violation-cleared", |e| e["type"] == "violation-cleared");
    assert_eq!(cleared["rule"], "unpinned-plane-listener", "{cleared}");
    std::thread::sleep(Duration::from_millis(1_200));
    let events = guard.events();
    let count = |ty: &str| events.iter().filter(|e| e["type"] == ty).count();
    assert_eq!(count("violation"), 1, "not every round: {events:?}");
    assert_eq!(count("violation-cleared"), 1, "{events:?}");
    drop(guard);
}

#[test]
fn a_flow_that_keeps_dropping_is_reported_again_with_its_count() {
    if !netlab::require_privileged() {
        return;
    }
    let chassis = Chassis::new().unwrap();
    let policy = PolicyFile::new(POLICY);
    let guard = Guard::start(
        chassis.host(),
        policy.path(),
        &["--report-interval", "300ms"],
    );
    let dst = SocketAddr::new(IpAddr::V4(Chassis::CONTROL_V4), 9_800);
    // One socket, one flow: three datagrams, then three more after the first report.
    let socket = chassis
        .host()
        .run(|| std::net::UdpSocket::bind("0.0.0.0:0").unwrap())
        .unwrap();
    let sent_at = std::time::Instant::now();
    for _ in 0..3 {
        let _ = socket.send_to(b"x", dst);
    }
    let first = guard.expect_event("drop", |e| e["type"] == "drop" && e["dport"] == 9_800);
    // The kernel flushes the log group every 100 ms, the owner lookup follows at once.
    assert!(
        sent_at.elapsed() < Duration::from_millis(800),
        "the drop was reported {:?} after it happened",
        sent_at.elapsed()
    );
    assert_eq!(first["count"], 3, "{first}");
    assert_eq!(first["owner"]["pids"][0], std::process::id(), "{first}");
    for _ in 0..3 {
        let _ = socket.send_to(b"x", dst);
    }
    let again = guard.expect_event("flow", |e| e["type"] == "flow" && e["dport"] == 9_800);
    assert_eq!(again["count"], 6, "{again}");
    assert_eq!(again["new"], 3, "{again}");
    assert_eq!(again["first_seen"], first["first_seen"], "{again}");
    let drops = guard
        .events()
        .iter()
        .filter(|e| e["type"] == "drop" && e["dport"] == 9_800)
        .count();
    assert_eq!(drops, 1);
    // The rules' own counter agrees (read from the kernel at each audit round and at exit).
    let textfile = TempPath::new("flow-metrics.prom");
    drop(guard);
    let again = Guard::start(
        chassis.host(),
        policy.path(),
        &["--textfile", textfile.0.to_str().unwrap()],
    );
    for _ in 0..4 {
        let _ = socket.send_to(b"x", dst);
    }
    again.expect_event("drop", |e| e["type"] == "drop" && e["dport"] == 9_800);
    assert!(again.stop().success());
    let text = std::fs::read_to_string(&textfile.0).unwrap();
    assert_eq!(
        sample(
            &text,
            "ifpin_guard_kernel_rule_packets",
            &["rule=\"egress\"", "family=\"ip\"", "plane=\"backplane\""]
        ),
        Some(4.0),
        "{text}"
    );
    assert_eq!(
        sample(&text, "ifpin_guard_drops_total", &["rule=\"egress\""]),
        Some(4.0),
        "{text}"
    );
}

#[test]
fn flows_beyond_max_flows_are_counted_in_overflow() {
    if !netlab::require_privileged() {
        return;
    }
    let chassis = Chassis::new().unwrap();
    let policy = PolicyFile::new(POLICY);
    let guard = Guard::start(
        chassis.host(),
        policy.path(),
        &["--max-flows", "2", "--report-interval", "300ms"],
    );
    let socket = chassis
        .host()
        .run(|| std::net::UdpSocket::bind("0.0.0.0:0").unwrap())
        .unwrap();
    for port in 9_900..9_905u16 {
        let _ = socket.send_to(b"x", SocketAddr::new(IpAddr::V4(Chassis::CONTROL_V4), port));
    }
    let overflow = guard.expect_event("overflow", |e| e["type"] == "overflow");
    assert_eq!(overflow["count"], 3, "{overflow}");
    assert_eq!(overflow["rule"], "egress", "{overflow}");
    let drops = guard
        .events()
        .iter()
        .filter(|e| e["type"] == "drop")
        .count();
    assert_eq!(drops, 2, "the table holds two flows: {:?}", guard.events());
}
