//! `ifpin guard` as the service `contrib/systemd/ifpin-guard.service` describes it, under a real
//! systemd (Debian's, booted with systemd-nspawn by `netlab::systemd::Container` in the host
//! namespace of a chassis, the built `ifpin`, the unit file and a policy bound into it).
//!
//! The chassis routes the control destination out of the front port `eth1`; both peers answer
//! on [`PORT`] with their name. A "leaking service" is a transient unit started by systemd that
//! connects to the control destination with no pinning at all.
//!
//! - negative control: without the guard, the leaking service is answered by `front`, and
//!   frames for the control destination cross the front link;
//! - `systemctl start ifpin-guard` returns once the guard said `READY=1` (`Type=notify`); the
//!   same leaking service is then answered by nobody, nothing crosses the front link, and the
//!   guard's drop event (on its stdout, in the journal) names the unit;
//! - `systemctl restart ifpin-guard` while a service keeps trying: the rules stay in the kernel
//!   across the restart (the next start adopts them in one transaction), so not one attempt
//!   gets through the front, and the restarted guard is ready again.

#[path = "support/mod.rs"]
mod support;

use std::path::Path;
use std::time::{Duration, Instant};

use netlab::systemd::{Container, Tree};
use netlab::{Chassis, Proto};
use serde_json::Value;
use support::guard::{POLICY, PolicyFile, front_control_frames};

const PORT: u16 = 7_802;

/// A shell command connecting to the control destination and printing who answered; a
/// connection nobody answers (dropped) gives up after 3 s.
fn client() -> String {
    format!(
        "timeout 3 bash -c 'exec 3<>/dev/tcp/{}/{PORT} && timeout 2 cat <&3'",
        Chassis::CONTROL_V4
    )
}

/// Runs [`client`] as the transient service `unit`, waits for it and returns its output.
fn leak(container: &Container<'_>, unit: &str) -> String {
    let out = container
        .command("timeout")
        .args(["30", "systemd-run", "--wait", "--pipe", "--quiet"])
        .arg(format!("--unit={unit}"))
        .args(["--", "bash", "-c", &client()])
        .output()
        .expect("systemd-run runs");
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// The guard's JSON events so far, from the journal of its unit.
fn guard_events(container: &Container<'_>) -> Vec<Value> {
    let out = container
        .command("journalctl")
        .args(["-u", "ifpin-guard", "-o", "cat", "--no-pager"])
        .output()
        .expect("journalctl runs");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .collect()
}

#[test]
fn the_guard_unit_holds_a_leaking_service_and_keeps_holding_across_a_restart() {
    if !netlab::require_privileged() {
        return;
    }
    let chassis = Chassis::new().unwrap();
    let _served = chassis.serve(Proto::Tcp, PORT).unwrap();
    let front = chassis.front_counter().unwrap();
    let policy = PolicyFile::new(POLICY);
    let unit =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../contrib/systemd/ifpin-guard.service");
    let tree = Tree::ensure().expect("the cached Debian systemd tree");
    let container = Container::boot(
        &tree,
        chassis.host(),
        &[
            (Path::new(support::guard::ifpin()), "/usr/local/bin/ifpin"),
            (policy.path(), "/etc/ifpin/policy.toml"),
            (&unit, "/etc/systemd/system/ifpin-guard.service"),
        ],
    )
    .expect("systemd boots");

    // Negative control: no guard, the service's connection leaves through the front.
    assert_eq!(leak(&container, "leaky-control.service"), "front");
    assert!(front_control_frames(&front) > 0, "{}", front.describe());
    front.clear();

    // The unit starts (systemctl returns once the guard is ready) and holds.
    let started = container
        .run(&["systemctl", "start", "ifpin-guard"])
        .map_err(|e| format!("{e}\n{}", container.console()));
    assert!(started.is_ok(), "{started:?}");
    assert_eq!(
        container
            .run(&["systemctl", "is-active", "ifpin-guard"])
            .unwrap()
            .trim(),
        "active"
    );
    assert_eq!(leak(&container, "leaky.service"), "", "no peer may answer");
    assert_eq!(front_control_frames(&front), 0, "{}", front.describe());
    let deadline = Instant::now() + Duration::from_secs(10);
    let named = loop {
        let found = guard_events(&container)
            .into_iter()
            .find(|e| e["type"] == "drop" && e["owner"]["unit"] == "leaky.service");
        if let Some(event) = found {
            break event;
        }
        assert!(
            Instant::now() < deadline,
            "no drop event naming leaky.service: {:?}",
            guard_events(&container)
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(named["rule"], "egress", "{named}");
    assert_eq!(named["interface"], "eth1", "{named}");

    // A restart while a service keeps trying: no gap.
    let mut trying = container
        .command("systemd-run")
        .args([
            "--wait",
            "--quiet",
            "--unit=leaky-loop.service",
            "--",
            "bash",
            "-c",
        ])
        .arg(format!(
            "for i in $(seq 8); do {{ {} ; }} >/dev/null 2>&1; done",
            client()
        ))
        .spawn()
        .expect("the looping service starts");
    std::thread::sleep(Duration::from_millis(500));
    container
        .run(&["systemctl", "restart", "ifpin-guard"])
        .expect("the guard restarts");
    let status = trying.wait().unwrap();
    assert!(status.code().is_some(), "{status:?}");
    assert_eq!(
        front_control_frames(&front),
        0,
        "a connection got out during the restart: {}",
        front.describe()
    );
    assert_eq!(
        container
            .run(&["systemctl", "is-active", "ifpin-guard"])
            .unwrap()
            .trim(),
        "active"
    );
    // The restarted guard adopted the rules its predecessor left (one transaction, no gap).
    let starts: Vec<Value> = guard_events(&container)
        .into_iter()
        .filter(|e| e["type"] == "started")
        .collect();
    assert!(starts.len() >= 2, "two starts in the journal: {starts:?}");
    assert_eq!(starts.last().unwrap()["adopted"], true, "{starts:?}");
}
