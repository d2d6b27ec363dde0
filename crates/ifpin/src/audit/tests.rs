//! Rule evaluation on hand-built socket tables (no kernel involved).

use std::net::SocketAddr;

use super::*;
use crate::policy::Policy;
use crate::sockdiag::{Protocol, SocketState};

const POLICY: &str = r#"
[[plane]]
name = "backplane"
interface = "ctl0"
prefixes = ["10.99.0.0/16", "fd99::/16"]
ports = [7500]
"#;

const CTL0: u32 = 3;
const ETH1: u32 = 4;

fn namespace(label: &str, interfaces: &[(u32, &str)]) -> NamespaceSnapshot {
    NamespaceSnapshot {
        namespace: Namespace {
            inode: 1,
            name: Some(label.to_owned()),
            current: true,
            path: "/proc/thread-self/ns/net".into(),
            pid: None,
            found: crate::audit::netns::Found::Current,
            handle: None,
        },
        label: label.to_owned(),
        interfaces: interfaces
            .iter()
            .map(|&(i, n)| (IfIndex::new(i).unwrap(), n.to_owned()))
            .collect(),
    }
}

fn host() -> NamespaceSnapshot {
    namespace("host", &[(1, "lo"), (CTL0, "ctl0"), (ETH1, "eth1")])
}

fn socket(protocol: Protocol, state: SocketState, local: &str, remote: &str, bound: u32) -> Socket {
    let names = [(CTL0, "ctl0"), (ETH1, "eth1")];
    Socket {
        diag: DiagSocket {
            protocol,
            state,
            local: local.parse::<SocketAddr>().unwrap(),
            remote: remote.parse::<SocketAddr>().unwrap(),
            bound_interface: IfIndex::new(bound),
            uid: 0,
            inode: 100,
            cgroup_id: None,
        },
        netns: 0,
        interface_name: names
            .iter()
            .find(|(i, _)| *i == bound)
            .map(|(_, n)| (*n).to_owned()),
        pids: vec![],
        exec: None,
    }
}

use Protocol::{Tcp, Udp};
const EST: SocketState = SocketState::ESTABLISHED;
const LISTEN: SocketState = SocketState::LISTEN;
const UNCONN: SocketState = SocketState::CLOSE;

/// (socket, the rule it must break, or None).
fn cases() -> Vec<(Socket, Option<Rule>)> {
    vec![
        // A pinned control connection: fine.
        (
            socket(Tcp, EST, "10.99.0.1:40000", "10.99.0.2:7500", CTL0),
            None,
        ),
        // The same, unpinned: relies on the routing table.
        (
            socket(Tcp, EST, "10.99.0.1:40001", "10.99.0.2:7500", 0),
            Some(Rule::UnpinnedPlaneTraffic),
        ),
        // Pinned, but to the front port.
        (
            socket(
                Tcp,
                SocketState::SYN_SENT,
                "10.99.0.1:40002",
                "10.99.0.2:7500",
                ETH1,
            ),
            Some(Rule::UnpinnedPlaneTraffic),
        ),
        // Any TCP state but LISTEN counts as connected.
        (
            socket(
                Tcp,
                SocketState::TIME_WAIT,
                "10.99.0.1:40003",
                "10.99.7.7:22",
                0,
            ),
            Some(Rule::UnpinnedPlaneTraffic),
        ),
        // An IPv4-mapped peer is its IPv4 address.
        (
            socket(
                Tcp,
                EST,
                "[::ffff:10.99.0.1]:40004",
                "[::ffff:10.99.1.1]:7500",
                0,
            ),
            Some(Rule::UnpinnedPlaneTraffic),
        ),
        // Connected UDP to a v6 plane prefix, unpinned.
        (
            socket(Udp, EST, "[fd99::1]:5000", "[fd99::5]:53", 0),
            Some(Rule::UnpinnedPlaneTraffic),
        ),
        // A wildcard listener on a plane port.
        (
            socket(Tcp, LISTEN, "0.0.0.0:7500", "0.0.0.0:0", 0),
            Some(Rule::UnpinnedPlaneListener),
        ),
        // Unconnected UDP on a plane port.
        (
            socket(Udp, UNCONN, "[::]:7500", "[::]:0", 0),
            Some(Rule::UnpinnedPlaneListener),
        ),
        // A listener on the plane's own address but unpinned: reachable from elsewhere.
        (
            socket(Tcp, LISTEN, "10.99.0.1:7500", "0.0.0.0:0", ETH1),
            Some(Rule::UnpinnedPlaneListener),
        ),
        // A pinned listener: fine.
        (socket(Tcp, LISTEN, "[::]:7500", "[::]:0", CTL0), None),
        // A loopback listener cannot be reached through any interface.
        (socket(Tcp, LISTEN, "127.0.0.1:7500", "0.0.0.0:0", 0), None),
        // A listener on another port: fine.
        (socket(Tcp, LISTEN, "0.0.0.0:22", "0.0.0.0:0", 0), None),
        // Pinned to the plane, talking off-plane.
        (
            socket(Tcp, EST, "10.99.0.1:40005", "192.0.2.5:443", CTL0),
            Some(Rule::PinnedOffPlane),
        ),
        // Pinned to the plane, talking to a link-local peer on the plane's interface: fine.
        (
            socket(Tcp, EST, "[fe80::1%3]:40006", "[fe80::2%3]:7500", CTL0),
            None,
        ),
        // A link-local peer on the front port is not the plane's, and not pinned to it.
        (
            socket(Tcp, EST, "[fe80::1%4]:40007", "[fe80::2%4]:7500", ETH1),
            None,
        ),
        // Unpinned traffic elsewhere, and front-port traffic: not the policy's business.
        (
            socket(Tcp, EST, "192.0.2.1:40008", "192.0.2.5:443", 0),
            None,
        ),
        (
            socket(Tcp, EST, "192.0.2.1:40009", "192.0.2.5:443", ETH1),
            None,
        ),
    ]
}

#[test]
fn each_socket_breaks_exactly_its_rule() {
    let policy = Policy::parse(POLICY, "policy.toml").unwrap();
    let cases = cases();
    let sockets: Vec<Socket> = cases.iter().map(|(s, _)| s.clone()).collect();
    let audit = Audit::from_parts(vec![host()], sockets, vec![]);
    let check = audit.check(&policy);
    assert!(check.warnings.is_empty(), "{:?}", check.warnings);
    let got: Vec<(usize, Rule)> = check
        .violations
        .iter()
        .map(|v| (v.socket, v.rule))
        .collect();
    let want: Vec<(usize, Rule)> = cases
        .iter()
        .enumerate()
        .filter_map(|(i, (_, rule))| rule.map(|r| (i, r)))
        .collect();
    assert_eq!(got, want, "{:#?}", check.violations);
    assert!(check.violations.iter().all(|v| v.plane == "backplane"));
}

#[test]
fn reasons_say_why() {
    let policy = Policy::parse(POLICY, "policy.toml").unwrap();
    let sockets = vec![
        socket(Tcp, EST, "10.99.0.1:40001", "10.99.0.2:7500", 0),
        socket(Tcp, LISTEN, "0.0.0.0:7500", "0.0.0.0:0", ETH1),
        socket(Tcp, EST, "10.99.0.1:40005", "192.0.2.5:443", CTL0),
    ];
    let check = Audit::from_parts(vec![host()], sockets, vec![]).check(&policy);
    let reasons: Vec<&str> = check.violations.iter().map(|v| v.reason.as_str()).collect();
    assert!(reasons[0].contains("peer 10.99.0.2 belongs to plane \"backplane\" (10.99.0.0/16)"));
    assert!(
        reasons[0].contains("not pinned to ctl0 (it is not pinned at all)"),
        "{}",
        reasons[0]
    );
    assert!(
        reasons[1].contains("port 7500")
            && reasons[1].contains("not pinned to ctl0 (it is pinned to eth1)")
    );
    assert!(
        reasons[2]
            .contains("pinned to ctl0 (plane \"backplane\") but its peer 192.0.2.5 is outside"),
        "{}",
        reasons[2]
    );
}

#[test]
fn a_missing_plane_interface_is_a_warning_and_its_traffic_unpinned() {
    let policy = Policy::parse(POLICY, "policy.toml").unwrap();
    let ns = namespace("linecard", &[(1, "lo"), (ETH1, "eth1")]);
    let sockets = vec![
        socket(Tcp, EST, "10.99.0.1:40001", "10.99.0.2:7500", 0),
        socket(Tcp, EST, "10.99.0.1:40002", "10.99.0.2:7500", ETH1),
        socket(Tcp, EST, "192.0.2.1:40002", "192.0.2.2:80", ETH1),
    ];
    let check = Audit::from_parts(vec![ns], sockets, vec![]).check(&policy);
    assert_eq!(check.warnings.len(), 1);
    let warning = &check.warnings[0];
    assert!(
        warning.contains("no interface ctl0 in network namespace linecard"),
        "{warning}"
    );
    assert!(warning.contains("policy.toml:4:13"), "{warning}");
    let rules: Vec<_> = check
        .violations
        .iter()
        .map(|v| (v.socket, v.rule))
        .collect();
    assert_eq!(
        rules,
        vec![
            (0, Rule::UnpinnedPlaneTraffic),
            (1, Rule::UnpinnedPlaneTraffic)
        ]
    );
}

#[test]
fn planes_sharing_an_interface_do_not_call_each_other_off_plane() {
    let policy = Policy::parse(
        r#"
[[plane]]
name = "cards"
interface = "ctl0"
prefixes = ["10.99.0.0/16"]
[[plane]]
name = "storage"
interface = 3
prefixes = ["10.98.0.0/16"]
"#,
        "p.toml",
    )
    .unwrap();
    let sockets = vec![
        socket(Tcp, EST, "10.99.0.1:1", "10.98.0.2:2", CTL0),
        socket(Tcp, EST, "10.99.0.1:1", "10.97.0.2:2", CTL0),
    ];
    let check = Audit::from_parts(vec![host()], sockets, vec![]).check(&policy);
    let rules: Vec<_> = check
        .violations
        .iter()
        .map(|v| (v.socket, v.rule, v.plane.as_str()))
        .collect();
    assert_eq!(rules, vec![(1, Rule::PinnedOffPlane, "cards")]);
}

#[test]
fn exec_runs_are_told_by_their_cgroup() {
    assert_eq!(run_cgroup("/ifpin/run-7-1-0"), Some("/ifpin/run-7-1-0"));
    assert_eq!(
        run_cgroup("/ifpin/run-7-1-0/worker"),
        Some("/ifpin/run-7-1-0")
    );
    assert_eq!(
        run_cgroup("/system.slice/ifpin/run-7"),
        Some("/system.slice/ifpin/run-7")
    );
    assert_eq!(run_cgroup("/ifpin"), None);
    assert_eq!(run_cgroup("/ifpin/"), None);
    assert_eq!(run_cgroup("/user.slice/ifpinned/x"), None);
    assert_eq!(run_cgroup("/"), None);
    let mut levels = BTreeMap::new();
    let process = |cgroup: &str| Process {
        pid: 1,
        command: "x".into(),
        cgroup: Some(cgroup.into()),
    };
    // A run cgroup that does not exist here: an exec run, level unknown.
    let run = exec_run(&process("/ifpin/run-0-0-no-such-run/w"), &mut levels).unwrap();
    assert_eq!(run.cgroup, "/ifpin/run-0-0-no-such-run/w");
    assert_eq!(run.level, None);
    assert!(exec_run(&process("/user.slice"), &mut levels).is_none());
}

#[test]
fn long_lists_are_cut() {
    assert_eq!(list_some(&["a", "b"], 5), "a, b");
    assert_eq!(list_some(&["a", "b", "c", "d"], 2), "a, b and 2 more");
}

/// A TCP socket that was only `bind()`ed: state CLOSE, no peer.
fn bound_only(local: &str, bound: u32) -> Socket {
    let remote = if local.starts_with('[') {
        "[::]:0"
    } else {
        "0.0.0.0:0"
    };
    socket(Tcp, SocketState::CLOSE, local, remote, bound)
}

#[test]
fn a_bind_only_socket_is_bound_and_breaks_no_rule() {
    let s = bound_only("10.99.0.1:7500", CTL0);
    assert_eq!(s.diag.role(), crate::sockdiag::Role::Bound);
    assert!(!s.diag.is_connected() && !s.diag.is_listening());
    // Pinned to the plane: not "pinned-off-plane" with a peer 0.0.0.0.
    let policy = Policy::parse(POLICY, "policy.toml").unwrap();
    let sockets = vec![
        bound_only("10.99.0.1:7500", CTL0),
        bound_only("0.0.0.0:7500", 0),
        bound_only("[::]:7500", 0),
        bound_only("[fd99::1]:40000", CTL0),
    ];
    let check = Audit::from_parts(vec![host()], sockets, vec![]).check(&policy);
    assert!(check.violations.is_empty(), "{:#?}", check.violations);

    // A plane that owns every address: a bound socket still talks to no one.
    let everything = Policy::parse(
        "[[plane]]\nname='all'\ninterface='ctl0'\nprefixes=['0.0.0.0/0', '::/0']\n",
        "p.toml",
    )
    .unwrap();
    let sockets = vec![
        bound_only("192.0.2.1:40000", 0),
        bound_only("[::]:40001", ETH1),
        bound_only("10.99.0.1:40002", CTL0),
    ];
    let check = Audit::from_parts(vec![host()], sockets, vec![]).check(&everything);
    assert!(check.violations.is_empty(), "{:#?}", check.violations);

    // A TCP socket in CLOSE that still names a peer (a failed connect) is traffic.
    let failed = socket(
        Tcp,
        SocketState::CLOSE,
        "10.99.0.1:40003",
        "10.99.0.2:7500",
        0,
    );
    assert_eq!(failed.diag.role(), crate::sockdiag::Role::Connected);
    let check = Audit::from_parts(vec![host()], vec![failed], vec![]).check(&policy);
    let rules: Vec<_> = check.violations.iter().map(|v| v.rule).collect();
    assert_eq!(rules, vec![Rule::UnpinnedPlaneTraffic]);
}

#[test]
fn a_v4_mapped_loopback_listener_is_a_loopback_listener() {
    let policy = Policy::parse(POLICY, "policy.toml").unwrap();
    let sockets = vec![
        socket(Tcp, LISTEN, "127.0.0.1:7500", "0.0.0.0:0", 0),
        socket(Tcp, LISTEN, "[::1]:7500", "[::]:0", 0),
        socket(Tcp, LISTEN, "[::ffff:127.0.0.1]:7500", "[::]:0", 0),
        socket(Tcp, LISTEN, "[::ffff:127.9.9.9]:7500", "[::]:0", 0),
        socket(Udp, UNCONN, "[::ffff:127.0.0.1]:7500", "[::]:0", 0),
        // The control: a mapped non-loopback address is reachable.
        socket(Tcp, LISTEN, "[::ffff:10.99.0.1]:7500", "[::]:0", 0),
    ];
    let check = Audit::from_parts(vec![host()], sockets, vec![]).check(&policy);
    let got: Vec<_> = check
        .violations
        .iter()
        .map(|v| (v.socket, v.rule))
        .collect();
    assert_eq!(got, vec![(5, Rule::UnpinnedPlaneListener)]);
}

#[test]
fn a_v4_mapped_policy_prefix_matches_its_ipv4_peers() {
    let policy = Policy::parse(
        "[[plane]]\nname='bp'\ninterface='ctl0'\nprefixes=['::ffff:10.99.0.0/112']\n",
        "p.toml",
    )
    .unwrap();
    let sockets = vec![
        socket(Tcp, EST, "10.99.0.1:40000", "10.99.0.2:7500", 0),
        socket(
            Tcp,
            EST,
            "[::ffff:10.99.0.1]:1",
            "[::ffff:10.99.3.2]:7500",
            0,
        ),
        socket(Tcp, EST, "10.99.0.1:40001", "10.98.0.2:7500", 0),
        socket(Tcp, EST, "10.99.0.1:40002", "10.98.0.2:7500", CTL0),
    ];
    let check = Audit::from_parts(vec![host()], sockets, vec![]).check(&policy);
    let got: Vec<_> = check
        .violations
        .iter()
        .map(|v| (v.socket, v.rule))
        .collect();
    assert_eq!(
        got,
        vec![
            (0, Rule::UnpinnedPlaneTraffic),
            (1, Rule::UnpinnedPlaneTraffic),
            (3, Rule::PinnedOffPlane)
        ]
    );
}
