//! What pinning costs.
//!
//! - `per_socket`: `socket()+close()` plain, with a bare `SO_BINDTOIFINDEX` call, with
//!   `ifpin::pin` (the bare call plus the read-back of index and name), and with
//!   `SO_BINDTODEVICE` by name for reference; on `lo` in the calling namespace. The target:
//!   the library's added cost within 2x of the bare call's added cost.
//! - `tcp_throughput`: one TCP stream over a veth pair between two namespaces, 4 MiB per
//!   iteration acknowledged by the receiver, pinned vs unpinned sender (target ratio >= 0.98).
//! - `tcp_connect`: connect + accept + close over the same veth, pinned vs unpinned (same
//!   target). Needs root for the namespaces; without it these two groups are skipped loudly.
//!
//! Run: `cargo bench -p ifpin --bench pin` (see BENCHMARKS.md).

use std::hint::black_box;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsFd;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput};
use ifpin::{Interface, PinnedTcpStream};
use netlab::{Lab, Netns};
use socket2::{Domain, SockRef, Socket, Type};

fn per_socket(c: &mut Criterion) {
    let lo = Interface::loopback().expect("lo");
    let index = lo.index().get();
    let mut g = c.benchmark_group("per_socket");
    g.measurement_time(Duration::from_secs(4));
    g.warm_up_time(Duration::from_secs(1));
    let new = || Socket::new(Domain::IPV4, Type::STREAM, None).expect("socket");
    g.bench_function("plain", |b| b.iter(|| drop(black_box(new()))));
    g.bench_function("bare_so_bindtoifindex", |b| {
        b.iter(|| {
            let s = new();
            ifpin::sys::socket::bind_device_by_index(s.as_fd(), black_box(index)).unwrap();
            drop(black_box(s));
        })
    });
    g.bench_function("ifpin_pin", |b| {
        b.iter(|| {
            let s = new();
            ifpin::pin(&s, black_box(&lo)).unwrap();
            drop(black_box(s));
        })
    });
    g.bench_function("bare_so_bindtodevice", |b| {
        b.iter(|| {
            let s = new();
            s.bind_device(Some(black_box(b"lo"))).unwrap();
            drop(black_box(s));
        })
    });
    g.finish();
}

/// The added cost alone: the pinning call timed on sockets created (and closed) outside the
/// timed region, in batches, so the noisy `socket()+close()` is not part of the figure.
fn per_socket_added(c: &mut Criterion) {
    let lo = Interface::loopback().expect("lo");
    let index = lo.index().get();
    let mut g = c.benchmark_group("per_socket_added");
    g.measurement_time(Duration::from_secs(3));
    g.warm_up_time(Duration::from_secs(1));
    g.bench_function("bare_so_bindtoifindex", |b| {
        b.iter_custom(|iters| {
            timed_on_fresh_sockets(iters, |s| {
                ifpin::sys::socket::bind_device_by_index(s.as_fd(), black_box(index)).unwrap()
            })
        })
    });
    g.bench_function("ifpin_pin", |b| {
        b.iter_custom(|iters| timed_on_fresh_sockets(iters, |s| ifpin::pin(s, &lo).unwrap()))
    });
    g.finish();
}

const BATCH: u64 = 256;

/// Runs `f` once on each of `iters` fresh sockets, timing only the calls.
fn timed_on_fresh_sockets(iters: u64, f: impl Fn(&Socket)) -> Duration {
    let mut total = Duration::ZERO;
    let mut left = iters;
    while left > 0 {
        let n = left.min(BATCH);
        let sockets: Vec<Socket> = (0..n)
            .map(|_| Socket::new(Domain::IPV4, Type::STREAM, None).expect("socket"))
            .collect();
        let start = Instant::now();
        for s in &sockets {
            f(black_box(s));
        }
        total += start.elapsed();
        left -= n;
    }
    total
}

/// Two namespaces joined by a veth pair: `a` (10.77.0.1) sends to `b` (10.77.0.2).
struct VethPair {
    lab: Lab,
    iface: Interface,
    dst_ip: std::net::IpAddr,
}

impl VethPair {
    fn new() -> Option<VethPair> {
        if let Some(reason) = netlab::privilege_problem() {
            eprintln!("\n*** SKIPPED tcp_throughput / tcp_connect (need root): {reason}\n");
            return None;
        }
        let lab = Lab::builder()
            .host("a")
            .host("b")
            .link(("a", "veth0"), ("b", "veth0"))
            .addr("a", "veth0", "10.77.0.1/24")
            .addr("b", "veth0", "10.77.0.2/24")
            .build()
            .expect("veth lab");
        let iface = lab
            .host("a")
            .run(|| Interface::resolve("veth0"))
            .unwrap()
            .expect("veth0 in a");
        Some(VethPair {
            lab,
            iface,
            dst_ip: [10, 77, 0, 2].into(),
        })
    }

    fn a(&self) -> &Netns {
        self.lab.host("a")
    }

    /// A listener in `b` and a thread accepting connections and serving each with `serve`,
    /// on a thread of its own if `threaded` (long streams), inline otherwise (short ones).
    fn server(
        &self,
        port: u16,
        serve: fn(TcpStream),
        threaded: bool,
    ) -> (SocketAddr, JoinHandle<()>) {
        let addr = SocketAddr::new(self.dst_ip, port);
        let listener = self
            .lab
            .host("b")
            .run(|| TcpListener::bind(addr))
            .unwrap()
            .expect("listen in b");
        let handle = std::thread::spawn(move || {
            for stream in listener.incoming() {
                match stream {
                    Ok(s) if s.peer_addr().is_ok_and(|p| p.port() == 1) => return,
                    Ok(s) if threaded => {
                        std::thread::spawn(move || serve(s));
                    }
                    Ok(s) => serve(s),
                    Err(_) => return,
                }
            }
        });
        (addr, handle)
    }

    /// Stops a server started by [`VethPair::server`]: a connection from port 1 ends it.
    fn stop(&self, addr: SocketAddr, handle: JoinHandle<()>) {
        self.a()
            .run(|| {
                let s = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
                s.set_reuse_address(true).unwrap();
                s.bind(&SocketAddr::from(([10, 77, 0, 1], 1)).into())
                    .unwrap();
                let _ = s.connect(&addr.into());
            })
            .unwrap();
        handle.join().unwrap();
    }
}

const CHUNK: usize = 4 << 20;

fn sink(mut s: TcpStream) {
    let mut buf = vec![0u8; 256 << 10];
    let mut got = 0usize;
    loop {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => got += n,
        }
        while got >= CHUNK {
            got -= CHUNK;
            if s.write_all(&[1]).is_err() {
                return;
            }
        }
    }
}

fn send_chunk(stream: &mut (impl Read + Write + ?Sized), data: &[u8]) {
    stream.write_all(data).unwrap();
    let mut ack = [0u8; 1];
    stream.read_exact(&mut ack).unwrap();
}

fn tcp_throughput(c: &mut Criterion) {
    let Some(pair) = VethPair::new() else { return };
    let (addr, server) = pair.server(5001, sink, true);
    let data = vec![0x5au8; CHUNK];
    let mut g = c.benchmark_group("tcp_throughput");
    g.throughput(Throughput::Bytes(CHUNK as u64));
    g.sample_size(30);
    g.measurement_time(Duration::from_secs(6));
    g.warm_up_time(Duration::from_secs(1));
    {
        let mut plain = pair.a().run(|| TcpStream::connect(addr)).unwrap().unwrap();
        g.bench_function("unpinned", |b| b.iter(|| send_chunk(&mut plain, &data)));
    }
    {
        let iface = pair.iface.clone();
        let mut pinned = pair
            .a()
            .run(|| PinnedTcpStream::connect(&iface, addr))
            .unwrap()
            .expect("pinned connect");
        g.bench_function("pinned", |b| b.iter(|| send_chunk(&mut pinned, &data)));
    }
    g.finish();
    pair.stop(addr, server);
}

/// The server side of `tcp_connect`: one byte, then close.
fn greet(mut s: TcpStream) {
    let _ = s.write_all(b"x");
}

/// The client side of `tcp_connect`: wait for the server's byte (so the accept queue never
/// builds up), then close with `SO_LINGER` 0, so no TIME_WAIT piles up and ports do not run
/// out.
fn connect_once(mut s: impl Read + AsFd) {
    let mut byte = [0u8; 1];
    s.read_exact(&mut byte).unwrap();
    SockRef::from(&s).set_linger(Some(Duration::ZERO)).unwrap();
}

fn tcp_connect(c: &mut Criterion) {
    let Some(pair) = VethPair::new() else { return };
    let (addr, server) = pair.server(5002, greet, false);
    let mut g = c.benchmark_group("tcp_connect");
    g.measurement_time(Duration::from_secs(4));
    g.warm_up_time(Duration::from_secs(1));
    g.bench_function("unpinned", |b| {
        b.iter_custom(|iters| {
            pair.a()
                .run(|| {
                    let start = Instant::now();
                    for _ in 0..iters {
                        connect_once(TcpStream::connect(addr).unwrap());
                    }
                    start.elapsed()
                })
                .unwrap()
        })
    });
    let iface = pair.iface.clone();
    g.bench_function("pinned", |b| {
        b.iter_custom(|iters| {
            pair.a()
                .run(|| {
                    let start = Instant::now();
                    for _ in 0..iters {
                        connect_once(PinnedTcpStream::connect(&iface, addr).unwrap());
                    }
                    start.elapsed()
                })
                .unwrap()
        })
    });
    g.finish();
    pair.stop(addr, server);
}

/// Interleaved A/B ratios, robust to a machine whose load drifts during the run: each round
/// measures both variants back to back (alternating which goes first) and yields one ratio;
/// the median over the rounds is reported. Runs only under `cargo bench` (not in the quick
/// test mode of `cargo test --all-targets`), without a filter or with the filter `interleaved`;
/// `IFPIN_BENCH_ROUNDS` sets the number of rounds (default 31).
fn interleaved() {
    let rounds: usize = std::env::var("IFPIN_BENCH_ROUNDS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(31);
    println!("\ninterleaved A/B, {rounds} rounds, median [min, max]:");

    let lo = Interface::loopback().expect("lo");
    let index = lo.index().get();
    let added = collect(rounds, |first| {
        let n = 4 * BATCH;
        let bare = || {
            timed_on_fresh_sockets(n, |s| {
                ifpin::sys::socket::bind_device_by_index(s.as_fd(), index).unwrap()
            })
        };
        let lib = || timed_on_fresh_sockets(n, |s| ifpin::pin(s, &lo).unwrap());
        let (b, l) = both(first, bare, lib);
        l.as_secs_f64() / b.as_secs_f64()
    });
    report(
        "per-socket added cost, ifpin::pin / bare SO_BINDTOIFINDEX (target <= 2)",
        &added,
    );

    let Some(pair) = VethPair::new() else { return };
    let (addr, server) = pair.server(5003, sink, true);
    let data = vec![0x5au8; CHUNK];
    let iface = pair.iface.clone();
    let mut plain = pair.a().run(|| TcpStream::connect(addr)).unwrap().unwrap();
    let mut pinned = pair
        .a()
        .run(|| PinnedTcpStream::connect(&iface, addr))
        .unwrap()
        .expect("pinned connect");
    let throughput = collect(rounds, |first| {
        let run = |s: &mut dyn ReadWrite| {
            let start = Instant::now();
            for _ in 0..4 {
                send_chunk(s, &data);
            }
            start.elapsed()
        };
        let (u, p) = if first {
            let u = run(&mut plain);
            (u, run(&mut pinned))
        } else {
            let p = run(&mut pinned);
            (run(&mut plain), p)
        };
        u.as_secs_f64() / p.as_secs_f64()
    });
    report(
        "TCP throughput over veth, pinned / unpinned (target >= 0.98)",
        &throughput,
    );
    drop((plain, pinned));
    pair.stop(addr, server);

    let (addr, server) = pair.server(5004, greet, false);
    let index = iface.index().get();
    // 200 connects of one kind, timed, on a thread inside namespace `a`.
    let connects = |kind: Connect| {
        pair.a()
            .run(|| {
                let start = Instant::now();
                for _ in 0..200 {
                    match kind {
                        Connect::Unpinned => connect_once(TcpStream::connect(addr).unwrap()),
                        Connect::Bare => {
                            let s = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
                            ifpin::sys::socket::bind_device_by_index(s.as_fd(), index).unwrap();
                            s.connect(&addr.into()).unwrap();
                            connect_once(TcpStream::from(s));
                        }
                        Connect::Pinned => {
                            connect_once(PinnedTcpStream::connect(&iface, addr).unwrap())
                        }
                    }
                }
                start.elapsed()
            })
            .unwrap()
    };
    let ratio = |a: Connect, b: Connect| {
        collect(rounds, |first| {
            let (ta, tb) = both(first, || connects(a), || connects(b));
            ta.as_secs_f64() / tb.as_secs_f64()
        })
    };
    report(
        "TCP connect rate over veth, pinned / unpinned (target >= 0.98)",
        &ratio(Connect::Unpinned, Connect::Pinned),
    );
    report(
        "  of which the kernel's: bare SO_BINDTOIFINDEX / unpinned",
        &ratio(Connect::Unpinned, Connect::Bare),
    );
    report(
        "  and the library's: ifpin pinned / bare SO_BINDTOIFINDEX",
        &ratio(Connect::Bare, Connect::Pinned),
    );
    pair.stop(addr, server);
}

/// The kinds of connect compared in [`interleaved`].
#[derive(Clone, Copy)]
enum Connect {
    /// `TcpStream::connect`.
    Unpinned,
    /// `socket()`, a bare `SO_BINDTOIFINDEX`, `connect()`.
    Bare,
    /// `PinnedTcpStream::connect`.
    Pinned,
}

trait ReadWrite: Read + Write {}
impl<T: Read + Write> ReadWrite for T {}

/// Runs `a` and `b`, `a` first when `a_first`; returns (a's time, b's time).
fn both(
    a_first: bool,
    a: impl FnOnce() -> Duration,
    b: impl FnOnce() -> Duration,
) -> (Duration, Duration) {
    if a_first {
        let ta = a();
        (ta, b())
    } else {
        let tb = b();
        (a(), tb)
    }
}

fn collect(rounds: usize, mut round: impl FnMut(bool) -> f64) -> Vec<f64> {
    round(true); // warm-up, discarded
    let mut v: Vec<f64> = (0..rounds).map(|i| round(i % 2 == 0)).collect();
    v.sort_by(f64::total_cmp);
    v
}

fn report(what: &str, sorted: &[f64]) {
    let median = sorted[sorted.len() / 2];
    let (min, max) = (sorted[0], sorted[sorted.len() - 1]);
    println!("  {what}: {median:.3} [{min:.3}, {max:.3}]");
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let bench_mode = args.iter().any(|a| a == "--bench");
    let filter = args.iter().find(|a| !a.starts_with('-'));
    let mut c = Criterion::default().configure_from_args();
    per_socket(&mut c);
    per_socket_added(&mut c);
    tcp_throughput(&mut c);
    tcp_connect(&mut c);
    c.final_summary();
    if bench_mode && filter.is_none_or(|f| f == "interleaved") {
        interleaved();
    }
}
