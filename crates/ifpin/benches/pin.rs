//! What pinning costs.
//!
//! Criterion groups (one variant after the other):
//! - `per_socket`: `socket()+close()` plain, with a bare `SO_BINDTOIFINDEX` call, with
//!   `ifpin::pin` (the bare call plus the read-back of the name the bound index carries), and
//!   with `SO_BINDTODEVICE` by name for reference; on `lo` in the calling namespace.
//! - `per_socket_added`: only the pinning call, on sockets created outside the timed region.
//! - `tcp_throughput`: one TCP stream over a veth pair between two namespaces, 4 MiB per
//!   iteration acknowledged by the receiver, pinned vs unpinned sender.
//! - `tcp_connect`: connect, read the server's byte, close, over the same veth, pinned vs
//!   unpinned. Needs root for the namespaces; without it these two groups are skipped loudly.
//!
//! Then the interleaved A/B rounds, the figures to compare with the targets (library's added
//! cost within 2x of the bare call's; throughput and connect rate ratios >= 0.98): every
//! variant measured back to back in each round, client on CPU 0 and servers on CPU 1, the
//! median ratio with its 95 % confidence interval. See [`interleaved`].
//!
//! Run: `cargo bench -p ifpin --bench pin` (see BENCHMARKS.md).

mod stats;

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
use stats::Ratios;

fn per_socket(c: &mut Criterion) {
    let lo = Interface::loopback().expect("lo");
    let index = lo.index();
    let mut g = c.benchmark_group("per_socket");
    g.measurement_time(Duration::from_secs(4));
    g.warm_up_time(Duration::from_secs(1));
    let new = || Socket::new(Domain::IPV4, Type::STREAM, None).expect("socket");
    g.bench_function("plain", |b| b.iter(|| drop(black_box(new()))));
    g.bench_function("bare_so_bindtoifindex", |b| {
        b.iter(|| {
            let s = new();
            ifpin::pin::bind_device_by_index(&s, black_box(index)).unwrap();
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
    let index = lo.index();
    let mut g = c.benchmark_group("per_socket_added");
    g.measurement_time(Duration::from_secs(3));
    g.warm_up_time(Duration::from_secs(1));
    g.bench_function("bare_so_bindtoifindex", |b| {
        b.iter_custom(|iters| {
            timed_on_fresh_sockets(iters, |s| {
                ifpin::pin::bind_device_by_index(&s, black_box(index)).unwrap()
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
            .run(|| listen_deep(addr))
            .unwrap()
            .expect("listen in b");
        let handle = std::thread::spawn(move || {
            // Threads spawned from here inherit the CPU.
            stats::stay_on_cpu(SERVER_CPU);
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

/// A listener whose accept queue holds a whole round of connects: the connect-rate client
/// does not wait for the server, and an overflowing queue would turn into 1 s SYN retransmits
/// measured instead of the connects.
fn listen_deep(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
    socket.set_reuse_address(true)?;
    socket.bind(&addr.into())?;
    socket.listen(4096)?;
    Ok(socket.into())
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

/// The CPU of the client side (the bench's own threads).
const CLIENT_CPU: usize = 0;
/// The CPU of the server threads.
const SERVER_CPU: usize = 1;
/// Connects per variant and round in the interleaved connect-rate rounds.
const CONNECTS: u32 = 300;
/// 4 MiB chunks per variant and round in the interleaved throughput rounds.
const CHUNKS: usize = 8;

/// Interleaved A/B ratios, robust to a machine whose load drifts during the run: each round
/// measures every variant back to back (rotating which goes first) and yields one ratio per
/// comparison; the median over the rounds is reported with a 95 % confidence interval
/// ([`stats::Ratios`]). The client runs on one CPU and the servers on the other, so
/// the scheduler neither makes them compete for a core nor moves them between rounds.
///
/// Runs only under `cargo bench` (not in the quick test mode of `cargo test --all-targets`),
/// without a filter or with the filter `interleaved`; `IFPIN_BENCH_ROUNDS` sets the number of
/// rounds (default 301).
fn interleaved() {
    let rounds: usize = std::env::var("IFPIN_BENCH_ROUNDS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(301);
    println!("\ninterleaved A/B, {rounds} rounds each: median ratio [95% CI] (range)");
    per_socket_ratio(rounds);

    let Some(pair) = VethPair::new() else { return };
    throughput_ratio(&pair, rounds);
    connect_ratios(&pair, rounds, Serve::Drop);
    connect_ratios(&pair, rounds, Serve::Greet);
}

/// The library's added cost per socket over the bare call's, on fresh sockets.
fn per_socket_ratio(rounds: usize) {
    let lo = Interface::loopback().expect("lo");
    let index = lo.index();
    let n = 4 * BATCH;
    let set = |s: &Socket| ifpin::pin::bind_device_by_index(s, index).unwrap();
    let times = paired::<3>(rounds, |variant| match variant {
        0 => timed_on_fresh_sockets(n, set),
        1 => timed_on_fresh_sockets(n, |s| {
            set(s);
            black_box(ifpin::pin::device(&s).unwrap());
        }),
        _ => timed_on_fresh_sockets(n, |s| ifpin::pin(s, &lo).unwrap()),
    });
    let ratio = |a: usize, b: usize| time_ratios(&times, a, b);
    let ns = |k: usize| {
        Ratios::new(
            times
                .iter()
                .map(|t| t[k].as_secs_f64() * 1e9 / n as f64)
                .collect(),
        )
        .median()
    };
    println!(
        "  per-socket added cost, ifpin::pin / bare SO_BINDTOIFINDEX (target <= 2): {}\n    \
         the bare set + a bare read-back getsockopt(SO_BINDTODEVICE) / bare set: {}\n    \
         ifpin::pin / bare set + bare read-back: {}\n    \
         medians: bare set {:.0} ns, bare set + read-back {:.0} ns, ifpin::pin {:.0} ns",
        ratio(2, 0).summary(),
        ratio(1, 0).summary(),
        ratio(2, 1).summary(),
        ns(0),
        ns(1),
        ns(2),
    );
}

/// One TCP stream of each kind, taking turns; the ratio of their rates per round.
fn throughput_ratio(pair: &VethPair, rounds: usize) {
    let (addr, server) = pair.server(5003, sink, true);
    let data = vec![0x5au8; CHUNK];
    let iface = pair.iface.clone();
    let mut plain = pair.a().run(|| TcpStream::connect(addr)).unwrap().unwrap();
    let mut pinned = pair
        .a()
        .run(|| PinnedTcpStream::connect(&iface, addr))
        .unwrap()
        .expect("pinned connect");
    let mut rates = Vec::new();
    let ratios = paired::<2>(rounds, |variant| {
        let stream: &mut dyn ReadWrite = if variant == 0 {
            &mut plain
        } else {
            &mut pinned
        };
        let start = Instant::now();
        for _ in 0..CHUNKS {
            send_chunk(stream, &data);
        }
        start.elapsed()
    })
    .into_iter()
    .map(|[u, p]| {
        rates.push((CHUNKS * CHUNK) as f64 / u.as_secs_f64() / f64::from(1 << 30));
        u.as_secs_f64() / p.as_secs_f64()
    })
    .collect();
    println!(
        "  TCP throughput over veth, pinned / unpinned (target >= 0.98): {}\n    \
         unpinned median {:.2} GiB/s",
        Ratios::new(ratios).summary(),
        Ratios::new(rates).median()
    );
    drop((plain, pinned));
    pair.stop(addr, server);
}

/// What the server of a connect-rate round does with each connection.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Serve {
    /// Accept and close; the client connects and closes with a RST without waiting (the
    /// kind of loop `netperf TCP_CC` runs: the connect path alone).
    Drop,
    /// Accept, send one byte, close; the client waits for the byte (a connection that carries
    /// a request's answer, as `netperf TCP_CRR` does).
    Greet,
}

/// Connect rates of four kinds of socket, taking turns: unpinned (`TcpStream::connect`), a
/// bare `SO_BINDTOIFINDEX`, the bare call plus a bare read-back `getsockopt`, and
/// `PinnedTcpStream::connect`; per round the ratio pinned / unpinned and its three steps.
fn connect_ratios(pair: &VethPair, rounds: usize, serve: Serve) {
    let (port, serve_fn, label): (u16, fn(TcpStream), &str) = match serve {
        Serve::Drop => (5004, drop, "connect + RST close, server accepts and closes"),
        Serve::Greet => (5005, greet, "connect, read the server's byte, RST close"),
    };
    let (addr, server) = pair.server(port, serve_fn, false);
    let iface = pair.iface.clone();
    let index = iface.index();
    let connect_as = |kind: usize| {
        let start = Instant::now();
        for _ in 0..CONNECTS {
            let s = match kind {
                0 => TcpStream::connect(addr).unwrap(),
                1 | 2 => {
                    let s = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
                    ifpin::pin::bind_device_by_index(&s, index).unwrap();
                    if kind == 2 {
                        black_box(ifpin::pin::device(&s).unwrap());
                    }
                    s.connect(&addr.into()).unwrap();
                    TcpStream::from(s)
                }
                _ => PinnedTcpStream::connect(&iface, addr).unwrap().into_inner(),
            };
            if serve == Serve::Greet {
                connect_once(s);
            } else {
                SockRef::from(&s).set_linger(Some(Duration::ZERO)).unwrap();
            }
        }
        start.elapsed()
    };
    // One thread inside namespace `a` for all rounds (on the client CPU, like every thread
    // but the servers').
    let times = pair.a().run(|| paired::<4>(rounds, connect_as)).unwrap();
    let ratio = |a: usize, b: usize| time_ratios(&times, a, b);
    let per_connect = times
        .iter()
        .map(|t| t[0].as_secs_f64() * 1e6 / f64::from(CONNECTS))
        .collect();
    println!(
        "  TCP connect rate over veth ({label}), pinned / unpinned (target >= 0.98): {}\n    \
         split: the kernel's bare SO_BINDTOIFINDEX / unpinned: {}\n    \
         then the read-back getsockopt(SO_BINDTODEVICE), as a bare call: {}\n    \
         then the library's own code, ifpin / bare set + read-back: {}\n    \
         unpinned median {:.1} us per connect",
        ratio(0, 3).summary(),
        ratio(0, 1).summary(),
        ratio(1, 2).summary(),
        ratio(2, 3).summary(),
        Ratios::new(per_connect).median()
    );
    pair.stop(addr, server);
}

trait ReadWrite: Read + Write {}
impl<T: Read + Write> ReadWrite for T {}

/// Per round, variant `a`'s time over variant `b`'s.
fn time_ratios<const N: usize>(times: &[[Duration; N]], a: usize, b: usize) -> Ratios {
    Ratios::new(
        times
            .iter()
            .map(|t| t[a].as_secs_f64() / t[b].as_secs_f64())
            .collect(),
    )
}

/// Runs `rounds` rounds (after one discarded warm-up round) of `N` variants, each
/// timed by `measure(variant)`, rotating which variant goes first; returns each round's times
/// in variant order.
fn paired<const N: usize>(
    rounds: usize,
    mut measure: impl FnMut(usize) -> Duration,
) -> Vec<[Duration; N]> {
    let mut round = |first: usize| {
        let mut times = [Duration::ZERO; N];
        for k in 0..N {
            let variant = (first + k) % N;
            times[variant] = measure(variant);
        }
        times
    };
    round(0);
    (0..rounds).map(|i| round(i % N)).collect()
}

fn main() {
    // The client side on one CPU, every thread started from here included; the servers move
    // themselves to the other.
    let on_cpu = stats::stay_on_cpu(CLIENT_CPU);
    eprintln!("clients on CPU {on_cpu:?}, servers on CPU {SERVER_CPU}");
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
