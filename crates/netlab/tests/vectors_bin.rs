//! The `netlab-vectors` helper as a black box: run inside the chassis host, it tries the named
//! vectors and prints one JSON line each; the frames they cause are counted here.

use std::process::Command;

use netlab::Chassis;
use netlab::vectors::Vector;

const BIN: &str = env!("CARGO_BIN_EXE_netlab-vectors");

fn args(extra: &[&str]) -> Vec<String> {
    let mut args: Vec<String> = [
        "--other",
        Chassis::ETH1,
        "--v4",
        &Chassis::CONTROL_V4.to_string(),
        "--v6",
        &Chassis::CONTROL_V6.to_string(),
        "--peer-ll",
        &Chassis::FRONT_LL.to_string(),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    args.extend(extra.iter().map(|s| s.to_string()));
    args
}

fn lines(stdout: &[u8]) -> Vec<serde_json::Value> {
    String::from_utf8_lossy(stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect()
}

#[test]
fn list_and_bad_arguments_need_no_privilege() {
    let list = Command::new(BIN).arg("--list").output().expect("running");
    assert!(list.status.success());
    let text = String::from_utf8_lossy(&list.stdout);
    for vector in Vector::ALL {
        assert!(
            text.contains(vector.id()),
            "{} missing from --list",
            vector.id()
        );
    }
    for bad in [
        vec!["udp4-pktinfo"], // no --other/--v4/--v6
        args(&["no-such-vector"])
            .iter()
            .map(String::as_str)
            .collect(), // unknown vector
        args(&[]).iter().map(String::as_str).collect(), // no vector at all
    ] {
        let out = Command::new(BIN).args(&bad).output().expect("running");
        assert_eq!(out.status.code(), Some(2), "{bad:?}");
        assert!(!out.stderr.is_empty(), "{bad:?}: says why");
    }
}

#[test]
fn pinned_vectors_in_the_chassis_report_the_kernels_answer_and_leak_where_recorded() {
    if !netlab::require_privileged() {
        return;
    }
    let chassis = Chassis::new().expect("chassis");
    let ctl0 = chassis.ctl0_index().expect("ctl0");
    let eth1 = chassis.eth1_index().expect("eth1");
    let front = chassis.front_counter().expect("front counter");

    // A vector recorded as refused: EINVAL, nothing on the front link, still bound to ctl0.
    let refused = chassis
        .host()
        .command(BIN)
        .args(args(&["--pin", Chassis::CTL0, "ip-unicast-if"]))
        .output()
        .expect("running netlab-vectors");
    assert!(refused.status.success(), "{refused:?}");
    let record = &lines(&refused.stdout)[0];
    assert_eq!(record["vector"], "ip-unicast-if");
    assert_eq!(record["answer"], "refused", "{record}");
    assert_eq!(record["errno"], "EINVAL", "{record}");
    assert_eq!(record["bound_after"], ctl0, "{record}");
    front.settle();
    assert_eq!(front.total(), 0, "{}", front.describe());

    // Negative control in the same lab: a vector recorded as leaking is seen on the front link,
    // and the link-local bind() rebinds the socket to eth1.
    let leaking = chassis
        .host()
        .command(BIN)
        .args(args(&[
            "--pin",
            Chassis::CTL0,
            "--port",
            "47100",
            "udp4-pktinfo",
            "v6-bind-linklocal",
        ]))
        .output()
        .expect("running netlab-vectors");
    assert!(leaking.status.success(), "{leaking:?}");
    let records = lines(&leaking.stdout);
    assert_eq!(records.len(), 2);
    assert_eq!(records[0]["answer"], "accepted", "{}", records[0]);
    assert_eq!(records[0]["port"], 47100);
    assert_eq!(records[1]["vector"], "v6-bind-linklocal");
    assert_eq!(records[1]["bound_after"], eth1, "{}", records[1]);
    front.settle();
    assert!(
        front.count(|f| f.dst_port() == Some(47100)) > 0,
        "the udp4-pktinfo datagram left eth1: {}",
        front.describe()
    );
    assert!(
        front.count(|f| f.dst_port() == Some(47101)) > 0,
        "the rebound TCP socket's SYN left eth1: {}",
        front.describe()
    );
}
