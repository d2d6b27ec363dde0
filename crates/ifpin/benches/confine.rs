//! What the confinement engine costs: making and removing a confinement, and, for a process
//! inside one, each `socket()` and each UDP datagram sent, at every level.
//!
//! Needs root (it builds a netlab chassis and moves itself into cgroups); without it, it
//! says so and measures nothing. Run: `cargo bench -p ifpin --bench confine`.

use std::fs;
use std::hint::black_box;
use std::net::{SocketAddr, UdpSocket};
use std::path::PathBuf;

use criterion::{Criterion, criterion_group, criterion_main};
use ifpin::confine::{ConfineOptions, Confinement};
use ifpin::{Interface, Level};
use netlab::Chassis;
use socket2::{Domain, Socket, Type};

/// The variants measured: none, then each level, then loopback mode.
const MODES: [(&str, Option<(Level, bool)>); 6] = [
    ("unconfined", None),
    ("pinned", Some((Level::Pinned, false))),
    ("enforced", Some((Level::Enforced, false))),
    ("sealed", Some((Level::Sealed, false))),
    ("enforced+loopback", Some((Level::Enforced, true))),
    ("sealed+loopback", Some((Level::Sealed, true))),
];

/// The cgroup this process started in, to move back to.
fn own_cgroup() -> PathBuf {
    let text = fs::read_to_string("/proc/self/cgroup").unwrap();
    let rel = text
        .lines()
        .find_map(|l| l.strip_prefix("0::"))
        .expect("a cgroup v2 line in /proc/self/cgroup");
    ifpin::cgroup::cgroup2_mount()
        .unwrap()
        .join(rel.trim_start_matches('/'))
}

/// Runs `f` with this whole process inside a confinement of `mode` (or none), then moves
/// back and closes the confinement.
fn inside(mode: Option<(Level, bool)>, f: impl FnOnce()) {
    let Some((level, allow_loopback)) = mode else {
        return f();
    };
    let home = own_cgroup();
    let confinement = Confinement::create(ConfineOptions {
        interface: Interface::resolve(Chassis::CTL0).unwrap(),
        level,
        allow_loopback,
    })
    .unwrap();
    confinement.add_process(std::process::id()).unwrap();
    f();
    fs::write(home.join("cgroup.procs"), std::process::id().to_string()).unwrap();
    confinement.close().unwrap();
}

fn benches(c: &mut Criterion) {
    if !netlab::require_privileged("confine benchmarks") {
        return;
    }
    let chassis = Chassis::new().unwrap();
    // Everything below runs in the chassis's host namespace, where ctl0 exists.
    chassis.host().enter_current_thread().unwrap();

    let mut group = c.benchmark_group("confine/create_close");
    for (name, mode) in MODES.iter().skip(1) {
        let (level, allow_loopback) = mode.unwrap();
        group.bench_function(*name, |b| {
            b.iter(|| {
                let confinement = Confinement::create(ConfineOptions {
                    interface: Interface::resolve(Chassis::CTL0).unwrap(),
                    level,
                    allow_loopback,
                })
                .unwrap();
                black_box(confinement.close().unwrap());
            })
        });
    }
    group.finish();

    let mut group = c.benchmark_group("confine/socket_close");
    for (name, mode) in MODES {
        inside(mode, || {
            group.bench_function(name, |b| {
                b.iter(|| black_box(Socket::new(Domain::IPV4, Type::DGRAM, None).unwrap()))
            });
        });
    }
    group.finish();

    // One 64-byte datagram to the backplane over ctl0, unconnected (so the sendmsg hook of
    // loopback mode runs on every send), nobody listening.
    let target = SocketAddr::new(Chassis::BACKPLANE_V4.into(), 9);
    let payload = [0u8; 64];
    let mut group = c.benchmark_group("confine/udp_sendto");
    for (name, mode) in MODES {
        inside(mode, || {
            let socket = UdpSocket::bind("0.0.0.0:0").unwrap();
            group.bench_function(name, |b| {
                b.iter(|| black_box(socket.send_to(&payload, target).unwrap()))
            });
        });
    }
    group.finish();
}

criterion_group!(confine, benches);
criterion_main!(confine);
