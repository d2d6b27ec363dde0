//! `ifpin guard` as a command: `--check` validates and prints what would be enforced,
//! changing nothing; bad input (a policy error, the metrics address or the log group in use,
//! no privilege) is exit 2 naming it, before anything is installed; `--help` teaches.

#[path = "support/mod.rs"]
mod support;

use std::process::Command;

use netlab::{Chassis, Netns};
use support::guard::{Guard, POLICY, PolicyFile, ifpin, ifpin_in, table_exists};

#[test]
fn help_explains_what_is_held_the_events_and_the_metrics() {
    let out = Command::new(ifpin())
        .args(["guard", "--help"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    for needle in [
        "egress",
        "spoofed-source",
        "plane-port",
        "index AND its name",
        "ifpin_guard_",
        "--observe",
        "--remove",
        "SIGHUP",
        "Type=notify",
    ] {
        assert!(help.contains(needle), "--help lacks {needle:?}:\n{help}");
    }
}

#[test]
fn a_broken_policy_is_exit_2_naming_the_place_for_check_and_run() {
    let policy = PolicyFile::new(
        "[[plane]]\nname = 'bp'\ninterface = 'ctl0'\nprefixes = ['10.99.0.1/16']\n",
    );
    for args in [
        vec!["guard", "--check", policy.path().to_str().unwrap()],
        vec!["guard", "--policy", policy.path().to_str().unwrap()],
    ] {
        let out = Command::new(ifpin()).args(&args).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(":4:13:"), "{stderr}");
        assert!(stderr.contains("did you mean 10.99.0.0/16?"), "{stderr}");
    }
    let out = Command::new(ifpin())
        .args(["guard", "--check", "/nonexistent/policy.toml"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/policy.toml"));
}

#[test]
fn check_prints_the_rules_and_changes_nothing() {
    if !netlab::require_privileged() {
        return;
    }
    let chassis = Chassis::new().unwrap();
    let policy = PolicyFile::new(POLICY);
    let index = chassis.ctl0_index().unwrap();
    let (code, stdout, stderr) = ifpin_in(
        chassis.host(),
        &["guard", "--check", policy.path().to_str().unwrap()],
    );
    assert_eq!(code, Some(0), "{stderr}");
    assert!(
        stdout.contains(&format!("interface ctl0 (index {index})")),
        "{stdout}"
    );
    assert!(stdout.contains("nothing was changed"), "{stdout}");
    assert!(
        stdout.contains(&format!("meta oif {index} meta oifname \"ctl0\" return")),
        "{stdout}"
    );
    assert!(
        stdout.contains("ip saddr 10.10.0.0/24 jump backplane_egress"),
        "{stdout}"
    );
    assert!(!table_exists(chassis.host()), "--check installed something");
}

#[test]
fn the_metrics_address_or_log_group_in_use_is_exit_2_before_anything_is_installed() {
    if !netlab::require_privileged() {
        return;
    }
    let chassis = Chassis::new().unwrap();
    let policy = PolicyFile::new(POLICY);
    let path = policy.path().to_str().unwrap();
    let taken = chassis
        .host()
        .run(|| std::net::TcpListener::bind("127.0.0.1:0").unwrap())
        .unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let (code, _, stderr) = ifpin_in(
        chassis.host(),
        &["guard", "--policy", path, "--metrics", &addr],
    );
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains(&format!("cannot listen on --metrics {addr}")),
        "{stderr}"
    );
    assert!(!table_exists(chassis.host()));

    // Another reader holds the NFLOG group: the first guard.
    let first = Guard::start(chassis.host(), policy.path(), &["--log-group", "77"]);
    let (code, _, stderr) = ifpin_in(
        chassis.host(),
        &["guard", "--policy", path, "--log-group", "77"],
    );
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains("NFLOG group 77 is already in use"),
        "{stderr}"
    );
    drop(first);
}

#[test]
fn without_privilege_it_is_exit_2_naming_what_is_missing() {
    if !netlab::require_privileged() {
        return;
    }
    let ns = Netns::new("noprivs").unwrap();
    let policy = PolicyFile::new(POLICY);
    let mut perms = std::fs::metadata(policy.path()).unwrap().permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut perms, 0o644);
    std::fs::set_permissions(policy.path(), perms).unwrap();
    let out = ns
        .command("setpriv")
        .args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "--inh-caps=-all",
            "--bounding-set=-all",
        ])
        .arg(ifpin())
        .args(["guard", "--policy"])
        .arg(policy.path())
        .output()
        .expect("setpriv runs (util-linux)");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("needs root (CAP_NET_ADMIN)"), "{stderr}");
    assert!(!table_exists(&ns));
}
