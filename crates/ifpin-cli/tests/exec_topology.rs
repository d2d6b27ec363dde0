//! `ifpin exec` on a topology the other tests do not use: a card with three links (`up0`,
//! `mgmt7`, `data3`) to three peers that all hold the service address; the default route goes
//! out `up0`, fallbacks via `data3` and `mgmt7`. The program is pinned to `mgmt7` given by its
//! *index*. Every leak vector is tried towards `up0` and towards `data3`, and real programs
//! fetch from the service: nothing reaches `up0` or `data3`, the answers come from `mgmt`.

#[path = "support/mod.rs"]
mod support;

use netlab::{FrameCounter, Lab, Process, Route};
use support::{assert_cgroup_gone, data, exec_in, python3, serve_label};

const PORT: u16 = 7_701;
const SERVICE_V4: &str = "172.31.9.9";
const SERVICE_V6: &str = "fd31::9";

/// (peer host, card interface, peer interface, card v4, peer v4, card v6, peer v6, card ll, peer ll)
type LinkDef = (
    &'static str,
    &'static str,
    &'static str,
    &'static str,
    &'static str,
    &'static str,
    &'static str,
    &'static str,
    &'static str,
);

const LINKS: [LinkDef; 3] = [
    (
        "uplink",
        "up0",
        "p-up0",
        "192.168.50.1",
        "192.168.50.2",
        "fd50::1",
        "fd50::2",
        "fe80::50:1",
        "fe80::50:2",
    ),
    (
        "mgmt",
        "mgmt7",
        "p-mgmt7",
        "192.168.60.1",
        "192.168.60.2",
        "fd60::1",
        "fd60::2",
        "fe80::60:1",
        "fe80::60:2",
    ),
    (
        "data",
        "data3",
        "p-data3",
        "192.168.70.1",
        "192.168.70.2",
        "fd70::1",
        "fd70::2",
        "fe80::70:1",
        "fe80::70:2",
    ),
];

fn build() -> Lab {
    let mut b = Lab::builder().host("card");
    for (peer, card_if, peer_if, c4, p4, c6, p6, cll, pll) in LINKS {
        b = b
            .host(peer)
            .link(("card", card_if), (peer, peer_if))
            .addr("card", card_if, &format!("{c4}/24"))
            .addr("card", card_if, &format!("{c6}/64"))
            .addr("card", card_if, &format!("{cll}/64"))
            .addr(peer, peer_if, &format!("{p4}/24"))
            .addr(peer, peer_if, &format!("{p6}/64"))
            .addr(peer, peer_if, &format!("{pll}/64"))
            .addr(peer, "lo", &format!("{SERVICE_V4}/32"))
            .addr(peer, "lo", &format!("{SERVICE_V6}/128"));
    }
    for (metric, (_, card_if, _, _, p4, _, p6, _, _)) in
        [(10, LINKS[0]), (500, LINKS[2]), (600, LINKS[1])]
    {
        b = b
            .route(
                "card",
                Route::new("default").via(p4).dev(card_if).metric(metric),
            )
            .route(
                "card",
                Route::new("::/0").via(p6).dev(card_if).metric(metric),
            );
    }
    b.sysctl("card", "net.ipv4.ping_group_range", "0 2147483647")
        .build()
        .expect("lab")
}

#[test]
fn a_new_topology_pinned_by_index() {
    if !netlab::require_privileged() {
        return;
    }
    let lab = build();
    let card = lab.host("card");
    let _servers: Vec<Process> = ["uplink", "mgmt", "data"]
        .iter()
        .map(|peer| serve_label(lab.host(peer), peer, PORT))
        .collect();
    let counters: Vec<(&str, FrameCounter)> = [LINKS[0], LINKS[2]]
        .iter()
        .map(|l| {
            (
                l.1,
                FrameCounter::open(lab.host(l.0), l.2).expect("counter"),
            )
        })
        .collect();
    let mgmt_index = card.ifindex("mgmt7").unwrap().to_string();
    let pin = ["-i", mgmt_index.as_str()];
    let settle = |what: &str, must_be_zero: bool| {
        for (ifname, counter) in &counters {
            counter.settle();
            let n = counter.count(support::is_program_frame);
            if must_be_zero {
                assert_eq!(n, 0, "{what}: frames on {ifname}: {}", counter.describe());
            }
            counter.clear();
        }
    };
    settle("start", false);

    // Every confined run comes first, every negative control after them: the host kernel may
    // still send a packet of its own for an unconfined connection some time after it closed
    // (routed by the table), and that must not be counted against a confined run.

    // Real programs reach the service through mgmt7 only.
    let url = format!("http://{SERVICE_V4}:{PORT}/");
    let url6 = format!("http://[{SERVICE_V6}]:{PORT}/");
    let programs = [
        vec!["curl", "-s", "--max-time", "3", url.as_str()],
        vec!["curl", "-s", "--max-time", "3", url6.as_str()],
        vec!["busybox", "wget", "-q", "-O", "-", url.as_str()],
    ];
    for argv in &programs {
        let run = exec_in(card, &pin, argv);
        assert!(run.status.success(), "{argv:?}: {}", run.stderr);
        assert_eq!(run.stdout.trim(), "mgmt", "{argv:?}: {}", run.stderr);
        assert_eq!(run.report()["interface"]["name"], "mgmt7");
        assert_cgroup_gone(&run.cgroup());
        settle(&format!("{argv:?}"), true);
    }

    // Every leak vector, towards the default route's interface and towards the other one.
    let script = data("leak_vectors.py").display().to_string();
    let port = PORT.to_string();
    let vectors = [
        "udp4-pktinfo",
        "ping4-pktinfo",
        "udp6-v4mapped-pktinfo",
        "udp6-scope-id",
        "tcp6-linklocal-bind",
        "rebind-root",
        "raw4-pktinfo",
        "packet",
        "cgroup-escape",
    ];
    let vector_args = |vector: &'static str, link: LinkDef| -> Vec<String> {
        let (_, toward, _, _, _, _, _, card_ll, peer_ll) = link;
        [
            python3(),
            script.as_str(),
            vector,
            toward,
            SERVICE_V4,
            SERVICE_V6,
            peer_ll,
            card_ll,
            "192.168.60.1",
            port.as_str(),
        ]
        .map(String::from)
        .to_vec()
    };
    for link in [LINKS[0], LINKS[2]] {
        for vector in vectors {
            let run = exec_in(card, &pin, &vector_args(vector, link));
            assert!(
                run.status.success(),
                "{vector} via {}: {}",
                link.1,
                run.stderr
            );
            settle(&format!("{vector} towards {}", link.1), true);
        }
    }

    // Negative controls: unconfined, each program goes out of up0, each vector reaches its link.
    for argv in &programs {
        let unconfined = card.command(argv[0]).args(&argv[1..]).output().unwrap();
        assert_eq!(
            String::from_utf8_lossy(&unconfined.stdout).trim(),
            "uplink",
            "negative control {argv:?}"
        );
    }
    for link in [LINKS[0], LINKS[2]] {
        for vector in vectors {
            let args = vector_args(vector, link);
            let out = card.command(&args[0]).args(&args[1..]).output().unwrap();
            assert!(out.status.success());
            let leaked = counters
                .iter()
                .find(|(ifname, _)| *ifname == link.1)
                .map(|(_, c)| {
                    c.settle();
                    c.count(support::is_program_frame)
                })
                .unwrap();
            assert!(
                leaked > 0,
                "negative control: {vector} unconfined put nothing on {}",
                link.1
            );
            settle("negative control", false);
        }
    }
}
