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
    if !netlab::require_privileged() {
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

/// Per-packet cost of the `cgroup_skb` filter itself, measured by the kernel
/// (`BPF_PROG_TEST_RUN` with `repeat`): a program that only returns 1, against the filter on
/// its pass path, its loopback-mode pass path (reads the destination), and its drop path
/// (counts). Test runs put the packet on `lo` (index 1).
fn filter_per_packet(c: &mut Criterion) {
    use ifpin::bpf::programs::{self, Config, Counter, Direction, MapFds};
    use ifpin::bpf::{Asm, Map, Program};
    use ifpin::bpf::{AttachType, ProgType};
    use std::time::Duration;

    if !netlab::require_privileged() {
        return;
    }
    let config = Map::array("bench_config", Config::SIZE, 1).unwrap();
    let counters = Map::array("bench_counters", 8, Counter::COUNT).unwrap();
    let maps = MapFds {
        config: config.raw_fd(),
        counters: counters.raw_fd(),
        locals: None,
    };
    let load = |insns| {
        Program::load(
            "bench",
            ProgType::CgroupSkb,
            AttachType::CgroupInetEgress,
            insns,
        )
        .unwrap()
    };
    let mut nothing = Asm::new();
    nothing.ret(1);
    let baseline = load(nothing.finish());
    let filter = load(programs::skb_filter(Direction::Egress, maps, None));
    let loopback_filter = load(programs::skb_filter(Direction::Egress, maps, Some(999_999)));
    // Ethernet + IPv4 + UDP to 10.99.7.2.
    let mut packet = vec![2, 0, 0, 0, 0, 1, 2, 0, 0, 0, 0, 2, 0x08, 0x00];
    packet.extend_from_slice(&[0x45, 0, 0, 28, 0, 0, 0x40, 0, 64, 17, 0, 0, 10, 10, 0, 1]);
    packet.extend_from_slice(&[10, 99, 7, 2, 0x30, 0x39, 0x1b, 0x9e, 0, 8, 0, 0]);

    let mut group = c.benchmark_group("confine/skb_filter_per_packet");
    let mut run = |name: &str, program: &Program, allowed: u32| {
        config
            .update(&0u32.to_ne_bytes(), &Config::encode(allowed, "lo"))
            .unwrap();
        group.bench_function(name, |b| {
            b.iter_custom(|iters| {
                let repeat = iters.min(u64::from(u32::MAX)) as u32;
                let run = program.test_run(&packet, repeat).unwrap();
                Duration::from_nanos(u64::from(run.duration_ns) * iters)
            })
        });
    };
    run("return_1_baseline", &baseline, 1);
    run("filter_pass", &filter, 1);
    run("filter_pass_loopback_mode", &loopback_filter, 1);
    run("filter_drop_and_count", &filter, 2);
    group.finish();
}

criterion_group! {
    name = confine;
    // The kernel reports whole nanoseconds, so samples can be identical: no plots.
    config = Criterion::default().without_plots();
    targets = benches, filter_per_packet
}
criterion_main!(confine);
