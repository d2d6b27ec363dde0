//! `ifpin probe` on a topology of its own (not the chassis): other interface names, an
//! IPv6-only service network with a link-local peer, and an uplink that carries the default
//! routes. The probe through the service link answers from the peer with nothing on the
//! uplink; the same probe through the uplink is the negative control, seen on the uplink.

#[path = "support/mod.rs"]
mod support;

use std::net::{IpAddr, Ipv6Addr, SocketAddr};

use netlab::{FrameCounter, Lab, Responder, Route};
use support::json;

const BIN: &str = env!("CARGO_BIN_EXE_ifpin");

#[test]
fn probe_works_on_another_topology() {
    if !netlab::require_privileged() {
        return;
    }
    // node --svc7--> svcpeer (fd42::/64 and link-local fe80::42)
    // node --wan0--> isp (default routes; isp also holds fd42::2, so a leak is answered)
    let lab = Lab::builder()
        .host("node")
        .host("svcpeer")
        .host("isp")
        .link(("node", "svc7"), ("svcpeer", "s0"))
        .link(("node", "wan0"), ("isp", "w0"))
        .addr("node", "svc7", "fd42::1/64")
        .addr("svcpeer", "s0", "fd42::2/64")
        .addr("svcpeer", "s0", "fe80::42/64")
        .addr("node", "svc7", "fe80::41/64")
        .addr("node", "wan0", "fd66::1/64")
        .addr("isp", "w0", "fd66::2/64")
        .addr("isp", "lo", "fd42::2/128")
        .route("node", Route::new("::/0").via("fd66::2").dev("wan0"))
        .route(
            "node",
            Route::new("fd42::2/128")
                .via("fd66::2")
                .dev("wan0")
                .metric(10),
        )
        .route("node", Route::new("fd42::/64").dev("svc7").metric(500))
        .route("isp", Route::new("::/0").via("fd66::1").dev("w0"))
        .build()
        .expect("lab");
    let any = SocketAddr::from((Ipv6Addr::UNSPECIFIED, 9000));
    let _peer = Responder::udp(lab.host("svcpeer"), any).unwrap();
    let _isp = Responder::udp(lab.host("isp"), any).unwrap();
    let uplink = FrameCounter::open(lab.host("isp"), "w0").unwrap();
    let probe = |args: &[&str]| {
        lab.host("node")
            .command(BIN)
            .args(["probe", "--json", "--timeout", "2s"])
            .args(args)
            .output()
            .unwrap()
    };

    for url in [
        "udp://[fd42::2]:9000",
        "udp://[fe80::42]:9000",
        "udp://[fe80::42%svc7]:9000",
    ] {
        let out = probe(&["-i", "svc7", url]);
        assert_eq!(out.status.code(), Some(0), "{url}: {}", json(&out));
        let v = json(&out);
        assert_eq!(v["outcome"], "reply-received", "{url}: {v}");
        assert_eq!(v["interface"]["name"], "svc7");
        assert_eq!(v["reply"], lab.host("svcpeer").label(), "{url}: {v}");
    }
    uplink.settle();
    assert_eq!(uplink.total(), 0, "{}", uplink.describe());

    // Negative control: the routing table sends fd42::2 to the uplink, where isp answers.
    let out = probe(&["-i", "wan0", "udp://[fd42::2]:9000"]);
    assert_eq!(out.status.code(), Some(0), "{}", json(&out));
    assert_eq!(json(&out)["reply"], lab.host("isp").label());
    uplink.settle();
    assert!(
        uplink.count_involving(IpAddr::from("fd42::2".parse::<Ipv6Addr>().unwrap())) > 0,
        "{}",
        uplink.describe()
    );

    // The link-local peer does not exist behind the uplink: pinned there, not reachable.
    let out = probe(&["-i", "wan0", "udp://[fe80::42]:9000"]);
    assert_eq!(out.status.code(), Some(1), "{}", json(&out));
    assert_eq!(json(&out)["reachable"], false);
}
