//! `ifpin audit` as a black box, in the test's own network namespace: exit codes, JSON shape,
//! policy errors. (Namespace scenarios are in `audit_netns.rs`.)

mod audit_support;

use std::net::TcpListener;
use std::process::Command;

use audit_support::{assert_exit, ifpin, json, write_policy};
use serde_json::Value;

#[test]
fn lists_our_listener_with_its_owner() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let local = listener.local_addr().unwrap().to_string();
    let out = ifpin(&["audit", "--json"]);
    assert_exit(&out, 0);
    let report = json(&out);
    let ours: Vec<&Value> = report["sockets"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["local"] == local.as_str())
        .collect();
    assert_eq!(ours.len(), 1, "{ours:?}");
    let socket = ours[0];
    assert_eq!(socket["protocol"], "tcp");
    assert_eq!(socket["state"], "listen");
    assert_eq!(socket["remote"], "0.0.0.0:0");
    assert_eq!(socket["interface"], Value::Null);
    assert!(socket["netns"].as_str().is_some_and(|n| !n.is_empty()));
    let pids: Vec<u64> = socket["processes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["pid"].as_u64().unwrap())
        .collect();
    assert_eq!(pids, vec![u64::from(std::process::id())]);
    assert!(report["violations"].as_array().unwrap().is_empty());

    // The table shows it too, and --pid keeps only our sockets.
    let me = std::process::id().to_string();
    let out = ifpin(&["audit", "--pid", &me]);
    assert_exit(&out, 0);
    let text = String::from_utf8_lossy(&out.stdout);
    let rows: Vec<&str> = text.lines().skip(1).collect();
    assert!(
        rows.iter()
            .any(|r| r.contains(&local) && r.contains(&format!("{me}/"))),
        "{text}"
    );
    assert!(rows.iter().all(|r| r.contains(&format!("{me}/"))), "{text}");
    drop(listener);
}

#[test]
fn exit_status_is_1_with_violations_and_0_without() {
    // A wildcard listener on a plane port, unpinned: a violation.
    let listener = TcpListener::bind("0.0.0.0:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let dir = tempfile::tempdir().unwrap();
    let policy = write_policy(
        dir.path(),
        &format!(
            "[[plane]]\nname = \"test-plane\"\ninterface = \"lo\"\nprefixes = [\"192.0.2.0/24\"]\nports = [{port}]\n"
        ),
    );
    // Other programs on this host may break the test policy too: look at our own sockets.
    let me = std::process::id().to_string();
    let out = ifpin(&[
        "audit",
        "--policy",
        &policy,
        "--json",
        "--violations",
        "--pid",
        &me,
    ]);
    assert_exit(&out, 1);
    let report = json(&out);
    let violations = report["violations"].as_array().unwrap();
    assert_eq!(violations.len(), 1, "{violations:?}");
    let v = &violations[0];
    assert_eq!(v["rule"], "unpinned-plane-listener");
    assert_eq!(v["plane"], "test-plane");
    assert_eq!(v["protocol"], "tcp");
    assert_eq!(v["state"], "listen");
    assert_eq!(v["local"], format!("0.0.0.0:{port}"));
    assert_eq!(v["remote"], "0.0.0.0:0");
    assert_eq!(v["interface"], Value::Null);
    assert_eq!(v["processes"][0]["pid"], std::process::id());
    assert!(v["processes"][0]["command"].as_str().is_some());
    assert!(v["netns"].is_string());
    // --violations shows only the violating socket.
    assert_eq!(report["sockets"].as_array().unwrap().len(), 1);

    // The table says the same, violations first.
    let out = ifpin(&["audit", "--policy", &policy, "--pid", &me]);
    assert_exit(&out, 1);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.starts_with("1 violation of "), "{text}");
    assert!(
        text.contains("unpinned-plane-listener [test-plane]"),
        "{text}"
    );

    // Without the listener, the same policy passes.
    drop(listener);
    let out = ifpin(&["audit", "--policy", &policy, "--pid", &me]);
    assert_exit(&out, 0);
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("0 violations of "));
}

#[test]
fn policy_errors_exit_2_naming_file_line_and_column() {
    let dir = tempfile::tempdir().unwrap();
    let policy = write_policy(
        dir.path(),
        "[[plane]]\nname = \"backplane\"\ninterface = \"ctl0\"\nprefixes = [\"10.99.0.1/16\"]\n",
    );
    let out = ifpin(&["audit", "--policy", &policy]);
    assert_exit(&out, 2);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&format!("{policy}:4:13:")), "{err}");
    assert!(
        err.contains("10.99.0.1/16 has host bits set; did you mean 10.99.0.0/16?"),
        "{err}"
    );
    assert!(
        out.stdout.is_empty(),
        "nothing is audited with a bad policy"
    );

    let policy = write_policy(
        dir.path(),
        "[[plane]]\nname = \"x\"\ninterface = \"ctl0\"\nports = [1]\ncolour = 3\n",
    );
    let out = ifpin(&["audit", "--policy", &policy]);
    assert_exit(&out, 2);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!("{policy}:5:1:")) && err.contains("colour"),
        "{err}"
    );

    let out = ifpin(&["audit", "--policy", "/nonexistent/policy.toml"]);
    assert_exit(&out, 2);
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/policy.toml"));
}

#[test]
fn an_unknown_policy_interface_is_a_warning_not_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let policy = write_policy(
        dir.path(),
        "[[plane]]\nname = \"card9\"\ninterface = \"linecard9\"\nprefixes = [\"192.0.2.0/24\"]\n",
    );
    let out = ifpin(&["audit", "--policy", &policy]);
    assert_exit(&out, 0);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("warning") && err.contains("no interface linecard9"),
        "{err}"
    );
    assert!(err.contains(&format!("{policy}:3:13")), "{err}");
    let out = ifpin(&["audit", "--policy", &policy, "--json"]);
    let report = json(&out);
    assert!(
        report["warnings"][0]
            .as_str()
            .unwrap()
            .contains("linecard9")
    );
}

#[test]
fn usage_errors_exit_2() {
    for args in [
        &["audit", "--violations"][..],
        &["audit", "--interface", "this-name-is-too-long"],
        &["audit", "--pid", "abc"],
        &["audit", "--interface", "nosuch-if0"],
    ] {
        let out = ifpin(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert!(!out.stderr.is_empty());
    }
}

#[test]
fn no_owners_skips_the_process_lookup() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let local = listener.local_addr().unwrap().to_string();
    let report = json(&ifpin(&["audit", "--json", "--no-owners"]));
    let ours = report["sockets"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["local"] == local.as_str())
        .expect("our listener is listed");
    assert!(ours["processes"].as_array().unwrap().is_empty());
    assert_eq!(report["owners"], "not-read");
}

/// Without root, the audit still lists what it can see, and says owners may be missing.
#[test]
fn without_root_owners_may_be_missing_and_it_says_so() {
    use std::os::unix::process::CommandExt;
    if !netlab::require_privileged("without_root_owners_may_be_missing_and_it_says_so") {
        return;
    }
    // Held by this (root) process: an unprivileged audit sees the socket, not its owner.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let local = listener.local_addr().unwrap().to_string();
    // A copy uid 65534 can execute, wherever the build directory is.
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let bin = dir.path().join("ifpin");
    std::fs::copy(env!("CARGO_BIN_EXE_ifpin"), &bin).unwrap();
    std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755)).unwrap();
    let run = |args: &[&str]| {
        // A parallel test's fork may still hold the copy open for a moment (ETXTBSY).
        for _ in 0..50 {
            match Command::new(&bin).args(args).uid(65534).gid(65534).output() {
                Err(e) if e.raw_os_error() == Some(libc::ETXTBSY) => {
                    std::thread::sleep(std::time::Duration::from_millis(20))
                }
                result => return result.expect("run ifpin as uid 65534"),
            }
        }
        panic!("{} stayed busy", bin.display());
    };
    let out = run(&["audit", "--json"]);
    assert_exit(&out, 0);
    let report = json(&out);
    assert_eq!(report["owners"], "partial", "{}", report["owners"]);
    assert!(report["unreadable"].as_u64().unwrap() > 0);
    assert!(
        report["warnings"]
            .as_array()
            .unwrap()
            .iter()
            .any(|w| w.as_str().unwrap().contains("run as root")),
        "{}",
        report["warnings"]
    );
    let ours = report["sockets"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["local"] == local.as_str())
        .expect("the socket is still listed");
    assert!(ours["processes"].as_array().unwrap().is_empty());

    let out = run(&["audit"]);
    assert_exit(&out, 0);
    assert!(String::from_utf8_lossy(&out.stdout).contains("owners may be missing"));
    assert!(String::from_utf8_lossy(&out.stderr).contains("warning"));
    drop(listener);
}
