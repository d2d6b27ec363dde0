//! `ifpin probe` as a black box: the built binary, run inside the chassis host namespace
//! (netlab's `ns.command`), checked by exit code, output and frames on the front link.

#[path = "support/mod.rs"]
mod support;

use std::net::IpAddr;
use std::process::{Command, Output};

use netlab::{Chassis, FrameCounter, Proto};

const BIN: &str = env!("CARGO_BIN_EXE_ifpin");
const PORT: u16 = 7000;

struct Lab {
    front: FrameCounter,
    _served: Vec<netlab::Served>,
    chassis: Chassis,
}

fn lab() -> Option<Lab> {
    if !netlab::require_privileged() {
        return None;
    }
    let chassis = Chassis::new().expect("chassis");
    let served = vec![
        chassis.serve(Proto::Tcp, PORT).expect("tcp responders"),
        chassis.serve(Proto::Udp, PORT).expect("udp responders"),
    ];
    let front = chassis.front_counter().expect("front counter");
    Some(Lab {
        front,
        _served: served,
        chassis,
    })
}

impl Lab {
    fn probe(&self, args: &[&str]) -> Output {
        self.chassis
            .host()
            .command(BIN)
            .arg("probe")
            .args(args)
            .output()
            .expect("run ifpin")
    }

    fn assert_front_silent(&self, what: &str) {
        self.front.settle();
        assert_eq!(self.front.total(), 0, "{what}: {}", self.front.describe());
    }
}

fn code(out: &Output) -> i32 {
    out.status.code().expect("exit code")
}

use support::{json, printed as text};

#[test]
fn probe_reaches_the_backplane_through_ctl0_only() {
    let Some(lab) = lab() else {
        return;
    };
    let ctl0_index = lab.chassis.ctl0_index().unwrap();
    let urls = [
        "tcp://10.99.7.2:7000".to_owned(),
        "udp://10.99.7.2:7000".to_owned(),
        "tcp://[fd99:7::2]:7000".to_owned(),
        "udp://[fd99:7::2]:7000".to_owned(),
        "tcp://[fe80::2]:7000".to_owned(),
        "udp://[fe80::2%ctl0]:7000".to_owned(),
        format!("tcp://[fe80::2%{ctl0_index}]:7000"),
    ];
    for url in &urls {
        let out = lab.probe(&["-i", "ctl0", url]);
        assert_eq!(code(&out), 0, "{url}: {}", text(&out));
        let stdout = String::from_utf8_lossy(&out.stdout);
        let expected = if url.starts_with("tcp") {
            "connected"
        } else {
            "reply received"
        };
        assert!(stdout.contains(expected), "{url}: {}", text(&out));
        assert!(stdout.contains("backplane"), "{url}: {}", text(&out));
        assert!(
            stdout.contains(&format!("ctl0 (index {ctl0_index})")),
            "{url}: {}",
            text(&out)
        );
    }
    // By index, and as JSON.
    let out = lab.probe(&[
        "-i",
        &ctl0_index.to_string(),
        "udp://10.99.7.2:7000",
        "--json",
    ]);
    assert_eq!(code(&out), 0, "{}", text(&out));
    let v = json(&out);
    assert_eq!(v["outcome"], "reply-received");
    assert_eq!(v["reachable"], true);
    assert_eq!(v["protocol"], "udp");
    assert_eq!(v["interface"]["name"], "ctl0");
    assert_eq!(v["interface"]["index"], ctl0_index);
    assert_eq!(v["destination"], "10.99.7.2:7000");
    assert_eq!(v["reply"], "backplane");
    assert!(v["elapsed_ms"].as_f64().is_some(), "{v}");
    assert!(
        v["local"].as_str().unwrap().starts_with("10.10.0.1:"),
        "{v}"
    );
    lab.assert_front_silent("probes through ctl0");

    // Negative control: the same probe through eth1 is answered by the front, and counted.
    let out = lab.probe(&["-i", "eth1", "tcp://10.99.7.2:7000", "--json"]);
    assert_eq!(code(&out), 0, "{}", text(&out));
    assert_eq!(json(&out)["reply"], "front");
    lab.front.settle();
    assert!(
        lab.front.count_involving(IpAddr::from([10, 99, 7, 2])) > 0,
        "the counter must see the probe through eth1: {}",
        lab.front.describe()
    );
}

#[test]
fn probe_reports_what_went_wrong_with_exit_1() {
    let Some(lab) = lab() else {
        return;
    };
    // Nothing listens on 7999: refused (TCP reset / UDP port unreachable).
    for url in ["tcp://10.99.7.2:7999", "udp://[fd99:7::2]:7999"] {
        let out = lab.probe(&["-i", "ctl0", url, "--json"]);
        assert_eq!(code(&out), 1, "{url}: {}", text(&out));
        let v = json(&out);
        assert_eq!(v["outcome"], "refused", "{url}: {v}");
        assert_eq!(v["reachable"], false);
        assert!(v["detail"].as_str().unwrap().contains("ctl0"), "{v}");
    }

    // No IPv6 route via ctl0 (the fallback default route removed): no route, at once,
    // while the table would send it out eth1.
    lab.chassis
        .host()
        .ip(&["-6", "route", "del", "default", "dev", "ctl0"])
        .unwrap();
    let out = lab.probe(&["-i", "ctl0", "tcp://[fd99:7::2]:7000"]);
    assert_eq!(code(&out), 1, "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("no route on that interface"),
        "{}",
        text(&out)
    );

    // ctl0 down.
    lab.chassis.ctl0_down().unwrap();
    let out = lab.probe(&["-i", "ctl0", "tcp://10.99.7.2:7000", "--json"]);
    assert_eq!(code(&out), 1, "{}", text(&out));
    assert_eq!(json(&out)["outcome"], "interface-down");
    lab.assert_front_silent("failed probes");
}

#[test]
fn probe_refuses_bad_input_with_exit_2() {
    let Some(lab) = lab() else {
        return;
    };
    let eth1 = lab.chassis.eth1_index().unwrap().to_string();
    let cases: [(&[&str], &str); 5] = [
        (
            &["-i", "ctl0", "tcp://[fe80::2%eth1]:7000"],
            "pinned to ctl0",
        ),
        (
            &["-i", "ctl0", &format!("udp://[fe80::2%{eth1}]:7000")],
            "refused before anything was sent",
        ),
        (
            &["-i", "nosuch0", "tcp://10.99.7.2:7000"],
            "no interface nosuch0",
        ),
        (
            &["-i", "a-very-long-name0", "tcp://10.99.7.2:7000"],
            "15 bytes",
        ),
        (&["-i", "ctl0", "tcp://backplane:7000"], "not an IP address"),
    ];
    for (args, needle) in cases {
        let out = lab.probe(args);
        assert_eq!(code(&out), 2, "{args:?}: {}", text(&out));
        assert!(
            String::from_utf8_lossy(&out.stderr).contains(needle),
            "{args:?} should say {needle:?}: {}",
            text(&out)
        );
    }
    // With --json, the error is one JSON object on stdout, in the shape every command uses.
    let out = lab.probe(&["-i", "ctl0", "tcp://[fe80::2%eth1]:7000", "--json"]);
    assert_eq!(code(&out), 2, "{}", text(&out));
    let v = json(&out);
    assert_eq!(v["exit"], 2, "{v}");
    assert!(v["causes"].is_array(), "{v}");
    assert!(v.to_string().contains("%ctl0"), "{v}");
    lab.assert_front_silent("refused input");
}

/// Input errors need no namespace: these run everywhere.
#[test]
fn probe_input_errors_and_help() {
    let run = |args: &[&str]| Command::new(BIN).args(args).output().expect("run ifpin");
    for (args, needle) in [
        (
            &["probe", "-i", "lo", "http://127.0.0.1:80"][..],
            "unknown scheme",
        ),
        (&["probe", "-i", "lo", "tcp://127.0.0.1"], "port"),
        (&["probe", "-i", "lo", "tcp://fe80::1:80"], "brackets"),
        (
            &["probe", "-i", "lo", "udp://127.0.0.1:9", "--timeout", "3d"],
            "unknown unit",
        ),
        (
            &["probe", "-i", "lo", "udp://127.0.0.1:9", "--timeout", "3h"],
            "out of range: from 1ms to 1h",
        ),
        (
            &["probe", "-i", "no-such-if0", "tcp://127.0.0.1:9"],
            "no interface no-such-if0",
        ),
        (
            &["probe", "-i", "0", "tcp://127.0.0.1:9"],
            "not a valid interface index",
        ),
        (&["probe", "tcp://127.0.0.1:9"], "--interface"),
    ] {
        let out = run(args);
        assert_eq!(code(&out), 2, "{args:?}: {}", text(&out));
        assert!(
            String::from_utf8_lossy(&out.stderr).contains(needle),
            "{args:?} should say {needle:?}: {}",
            text(&out)
        );
    }
    let out = run(&["probe", "--help"]);
    assert_eq!(code(&out), 0);
    let help = String::from_utf8_lossy(&out.stdout);
    for needle in [
        "Examples:",
        "tcp://[fe80::",
        "--timeout",
        "--json",
        "exit 1",
        "exit 2",
    ] {
        assert!(help.contains(needle), "help lacks {needle:?}:\n{help}");
    }
}
