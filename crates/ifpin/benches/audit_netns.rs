//! What finding every namespace costs (`--all-netns`): on a host with 1,000 more processes,
//! a whole audit with the per-thread and socket-held namespace discovery against the same
//! audit that looks only at each process's namespace. The target is at most 10 % more.
//!
//! `cargo bench -p ifpin --bench audit_netns` (starts 1,000 `sleep` processes for the run
//! and kills them at the end, also on a panic).

use std::hint::black_box;
use std::process::{Child, Command, Stdio};

use criterion::{Criterion, criterion_group, criterion_main};

mod stats;
use ifpin::audit::{AuditOptions, netns, snapshot};

const PROCESSES: usize = 1_000;

/// 1,000 idle processes, killed and reaped when dropped.
struct Crowd(Vec<Child>);

impl Crowd {
    fn start() -> Crowd {
        let mut crowd = Crowd(Vec::with_capacity(PROCESSES));
        for _ in 0..PROCESSES {
            let child = Command::new("sleep")
                .arg("3600")
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .spawn()
                .expect("spawn sleep");
            crowd.0.push(child);
        }
        crowd
    }
}

impl Drop for Crowd {
    fn drop(&mut self) {
        for child in &mut self.0 {
            let _ = child.kill();
        }
        for child in &mut self.0 {
            let _ = child.wait();
        }
    }
}

fn options(deep: bool) -> AuditOptions {
    AuditOptions {
        all_netns: true,
        owners: true,
        netns_from_threads: deep,
        netns_from_sockets: deep,
    }
}

fn discovery(c: &mut Criterion) {
    let crowd = Crowd::start();
    let processes = std::fs::read_dir("/proc")
        .unwrap()
        .filter(|e| {
            e.as_ref().is_ok_and(|e| {
                e.file_name()
                    .to_str()
                    .is_some_and(|n| n.parse::<u32>().is_ok())
            })
        })
        .count();
    eprintln!("{processes} processes on this host during the run");
    let mut group = c.benchmark_group("audit_netns");
    group.sample_size(20);
    group.bench_function("all-netns audit, process namespaces only", |b| {
        b.iter(|| black_box(snapshot(&options(false)).unwrap()))
    });
    group.bench_function("all-netns audit, + threads + socket-held namespaces", |b| {
        b.iter(|| black_box(snapshot(&options(true)).unwrap()))
    });
    group.bench_function("namespace list, processes only", |b| {
        b.iter(|| black_box(netns::discover(false).unwrap()))
    });
    group.bench_function("namespace list, + threads", |b| {
        b.iter(|| black_box(netns::discover(true).unwrap()))
    });
    group.finish();

    // The ratio that answers "at most 10 % more", measured back to back in each round (so a
    // load change between two criterion groups does not count), in alternating order.
    const ROUNDS: usize = 101;
    let time = |deep: bool| {
        let start = std::time::Instant::now();
        black_box(snapshot(&options(deep)).unwrap());
        start.elapsed().as_secs_f64()
    };
    let ratios: Vec<f64> = (0..ROUNDS)
        .map(|round| {
            if round % 2 == 0 {
                let shallow = time(false);
                time(true) / shallow
            } else {
                let deep = time(true);
                deep / time(false)
            }
        })
        .collect();
    eprintln!(
        "audit_netns: all-netns audit with thread + socket-held namespace discovery / without: {}",
        stats::Ratios::new(ratios).summary()
    );
    drop(crowd);
}

criterion_group!(benches, discovery);
criterion_main!(benches);
