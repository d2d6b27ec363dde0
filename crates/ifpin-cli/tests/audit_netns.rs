//! `ifpin audit` as a black box on a netlab chassis: exit 0 for a card that follows its
//! policy, exit 1 with exactly the expected violations once it breaks it, and `--all-netns`
//! finding the card's namespace from outside.

#[path = "support/mod.rs"]
mod support;

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::Duration;

use ifpin::Interface;
use ifpin::net::{PinnedTcpListener, PinnedTcpStream, PinnedUdpSocket};
use netlab::{Chassis, Proto};
use serde_json::Value;
use support::{assert_exit, json, run_ifpin, write_policy};

const CONTROL_PORT: u16 = 7600;

const CARD_POLICY: &str = r#"[[plane]]
name = "backplane"
interface = "ctl0"
prefixes = ["10.99.0.0/16", "fd99::/16"]
ports = [7500, 7501]
"#;

fn policy_file(dir: &std::path::Path) -> String {
    write_policy(dir, CARD_POLICY)
}

/// (rule, local, remote) of every violation in a report.
fn violations(report: &Value) -> Vec<(String, String, String)> {
    let mut v: Vec<_> = report["violations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| {
            (
                v["rule"].as_str().unwrap().to_owned(),
                v["local"].as_str().unwrap().to_owned(),
                v["remote"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    v.sort();
    v
}

#[test]
fn exit_0_for_a_pinned_card_then_1_with_exactly_its_violations() {
    if !netlab::require_privileged() {
        return;
    }
    let chassis = Chassis::new().unwrap();
    let _served = chassis.serve(Proto::Tcp, CONTROL_PORT).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let policy = policy_file(dir.path());
    let audit = || {
        chassis
            .host()
            .command(env!("CARGO_BIN_EXE_ifpin"))
            .args(["audit", "--policy", &policy, "--json"])
            .output()
            .unwrap()
    };
    let control = SocketAddr::new(Chassis::CONTROL_V4.into(), CONTROL_PORT);

    // A card that follows the policy: a pinned control connection and a pinned listener.
    let (good, good_local) = chassis
        .host()
        .run(|| {
            let ctl0 = Interface::resolve(Chassis::CTL0).unwrap();
            let conn =
                PinnedTcpStream::connect_timeout(&ctl0, control, Duration::from_secs(5)).unwrap();
            let listener = PinnedTcpListener::bind(&ctl0, "[::]:7500".parse().unwrap()).unwrap();
            let local = conn.as_std().local_addr().unwrap();
            ((conn, listener), local)
        })
        .unwrap();
    let out = audit();
    assert_exit(&out, 0);
    let report = json(&out);
    assert!(violations(&report).is_empty());
    let conn = report["sockets"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["local"] == good_local.to_string().as_str())
        .expect("the pinned connection is listed");
    assert_eq!(conn["interface"], "ctl0");
    assert_eq!(conn["remote"], control.to_string().as_str());
    assert_eq!(conn["netns"], chassis.host().name());
    assert_eq!(conn["processes"][0]["pid"], std::process::id());

    // Now it breaks it three ways.
    let (bad, expected) = chassis
        .host()
        .run(|| {
            let ctl0 = Interface::resolve(Chassis::CTL0).unwrap();
            let unpinned = TcpStream::connect_timeout(&control, Duration::from_secs(5)).unwrap();
            let wildcard = TcpListener::bind("0.0.0.0:7501").unwrap();
            let off = PinnedUdpSocket::bind(&ctl0, "0.0.0.0:0".parse().unwrap()).unwrap();
            off.connect("192.0.2.53:53".parse().unwrap()).unwrap();
            let mut expected = vec![
                (
                    "unpinned-plane-traffic".to_owned(),
                    unpinned.local_addr().unwrap().to_string(),
                    control.to_string(),
                ),
                (
                    "unpinned-plane-listener".to_owned(),
                    "0.0.0.0:7501".to_owned(),
                    "0.0.0.0:0".to_owned(),
                ),
                (
                    "pinned-off-plane".to_owned(),
                    off.local_addr().unwrap().to_string(),
                    "192.0.2.53:53".to_owned(),
                ),
            ];
            expected.sort();
            ((unpinned, wildcard, off), expected)
        })
        .unwrap();
    let out = audit();
    assert_exit(&out, 1);
    let report = json(&out);
    assert_eq!(violations(&report), expected);
    for v in report["violations"].as_array().unwrap() {
        assert_eq!(v["plane"], "backplane");
        assert_eq!(v["netns"], chassis.host().name());
        assert_eq!(v["processes"][0]["pid"], std::process::id());
        assert!(
            v["reason"]
                .as_str()
                .is_some_and(|r| r.contains("backplane"))
        );
        let want_if = if v["rule"] == "pinned-off-plane" {
            Value::from("ctl0")
        } else {
            Value::Null
        };
        assert_eq!(v["interface"], want_if, "{v}");
    }

    // The table leads with the same violations.
    let out = chassis
        .host()
        .command(env!("CARGO_BIN_EXE_ifpin"))
        .args(["audit", "--policy", &policy, "--violations"])
        .output()
        .unwrap();
    assert_exit(&out, 1);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.starts_with("3 violations of "), "{text}");
    for (rule, local, _) in &expected {
        assert!(
            text.contains(rule.as_str()) && text.contains(local.as_str()),
            "{text}"
        );
    }
    drop((good, bad));
}

#[test]
fn all_netns_labels_sockets_of_a_namespace_created_here() {
    if !netlab::require_privileged() {
        return;
    }
    let chassis = Chassis::new().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let policy = policy_file(dir.path());
    let listener = chassis
        .host()
        .run(|| TcpListener::bind("0.0.0.0:7500").unwrap())
        .unwrap();
    let me = std::process::id().to_string();

    // Without --all-netns, the audit of our own namespace does not see it.
    let out = run_ifpin(&["audit", "--json", "--pid", &me, "--policy", &policy]);
    let report = json(&out);
    assert!(
        report["sockets"]
            .as_array()
            .unwrap()
            .iter()
            .all(|s| s["netns"] != chassis.host().name()),
        "{report}"
    );

    let out = run_ifpin(&[
        "audit",
        "--all-netns",
        "--json",
        "--pid",
        &me,
        "--policy",
        &policy,
    ]);
    assert_exit(&out, 1);
    let report = json(&out);
    let in_card: Vec<&Value> = report["sockets"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["netns"] == chassis.host().name())
        .collect();
    assert_eq!(in_card.len(), 1, "{in_card:?}");
    assert_eq!(in_card[0]["local"], "0.0.0.0:7500");
    let flagged: Vec<_> = report["violations"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|v| v["netns"] == chassis.host().name())
        .map(|v| v["rule"].as_str().unwrap())
        .collect();
    assert_eq!(flagged, vec!["unpinned-plane-listener"]);

    // The table has a NETNS column naming it.
    let out = run_ifpin(&["audit", "--all-netns", "--pid", &me]);
    assert_exit(&out, 0);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.starts_with("NETNS"), "{text}");
    assert!(
        text.lines()
            .any(|l| l.starts_with(chassis.host().name()) && l.contains("0.0.0.0:7500")),
        "{text}"
    );
    drop(listener);
}

#[test]
fn interface_filter_keeps_sockets_pinned_there_by_name_or_index() {
    if !netlab::require_privileged() {
        return;
    }
    let chassis = Chassis::new().unwrap();
    let (held, pinned_local, ctl0_index) = chassis
        .host()
        .run(|| {
            let ctl0 = Interface::resolve(Chassis::CTL0).unwrap();
            let pinned = PinnedUdpSocket::bind(&ctl0, "0.0.0.0:0".parse().unwrap()).unwrap();
            let free = std::net::UdpSocket::bind("0.0.0.0:0").unwrap();
            let local = pinned.local_addr().unwrap().to_string();
            ((pinned, free), local, ctl0.index().get())
        })
        .unwrap();
    let me = std::process::id().to_string();
    let listed = |iface: &str| -> Vec<String> {
        let out = chassis
            .host()
            .command(env!("CARGO_BIN_EXE_ifpin"))
            .args(["audit", "--json", "--pid", &me, "-i", iface])
            .output()
            .unwrap();
        assert_exit(&out, 0);
        json(&out)["sockets"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["local"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(listed("ctl0"), vec![pinned_local.clone()]);
    assert_eq!(listed(&ctl0_index.to_string()), vec![pinned_local]);
    assert!(listed("eth1").is_empty());
    drop(held);
}

/// Without root, namespaces that cannot be entered are named with the reason, and the
/// processes whose namespace cannot even be read are counted: nothing is skipped silently.
#[test]
fn without_root_unseen_namespaces_are_counted_and_named() {
    use std::os::unix::fs::PermissionsExt;
    use std::os::unix::process::CommandExt;
    if !netlab::require_privileged() {
        return;
    }
    let chassis = Chassis::new().unwrap();
    // A root process in a namespace of its own, which uid 65534 may not look at.
    let mut sleeper = chassis.host().command("sleep");
    sleeper.arg("600");
    let sleeper = chassis.host().spawn(&mut sleeper).unwrap();
    struct Kill(netlab::Process);
    impl Drop for Kill {
        fn drop(&mut self) {
            let _ = self.0.kill();
        }
    }
    let sleeper = Kill(sleeper);
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let bin = dir.path().join("ifpin");
    std::fs::copy(env!("CARGO_BIN_EXE_ifpin"), &bin).unwrap();
    std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755)).unwrap();
    let run = |args: &[&str]| {
        for _ in 0..50 {
            match std::process::Command::new(&bin)
                .args(args)
                .uid(65534)
                .gid(65534)
                .output()
            {
                Err(e) if e.raw_os_error() == Some(libc::ETXTBSY) => {
                    std::thread::sleep(Duration::from_millis(20))
                }
                result => return result.expect("run ifpin as uid 65534"),
            }
        }
        panic!("{} stayed busy", bin.display());
    };
    let out = run(&["audit", "--all-netns", "--json"]);
    assert_exit(&out, 0);
    let report = json(&out);
    let netns = &report["netns"];
    assert!(
        netns["unreadable_processes"].as_u64().unwrap() > 0,
        "{netns}"
    );
    let not_entered = netns["not_entered"].as_array().unwrap();
    let host = not_entered
        .iter()
        .find(|u| u["netns"] == chassis.host().name())
        .unwrap_or_else(|| panic!("{} not named: {netns}", chassis.host().name()));
    assert!(
        host["reason"].as_str().unwrap().contains("CAP_SYS_ADMIN"),
        "{host}"
    );
    let warnings = report["warnings"].to_string();
    assert!(warnings.contains("could not be entered"), "{warnings}");
    assert!(warnings.contains("could not be read"), "{warnings}");

    // The table says so too.
    let out = run(&["audit", "--all-netns"]);
    assert_exit(&out, 0);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("network namespaces may be missing"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    drop(sleeper);
}
