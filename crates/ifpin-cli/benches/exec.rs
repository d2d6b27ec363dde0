//! `ifpin exec` benchmarks: start-up overhead, and confined vs unconfined TCP throughput and
//! connect rate over a veth link, at each level. Run as root:
//!
//! ```sh
//! cargo bench -p ifpin-cli --bench exec
//! ```
//!
//! Not criterion: each sample is a whole process (or a whole TCP stream), so this harness
//! runs the samples itself and prints Markdown tables (the ones in `BENCHMARKS.md`).
//! Start-up: medians of interleaved runs. Traffic: rounds in which the unconfined client and
//! one client per level run back to back (rotating the order); each round gives one ratio per
//! level, and the median ratio is shown with its 95 % confidence interval
//! (`stats::Ratios`), so the drift of a noisy machine cancels out.
//! `IFPIN_BENCH_ROUNDS` sets the number of rounds (default 101).
//!
//! The same binary is the traffic client and server: `--serve STREAM_ADDR CONNECT_ADDR
//! GREET_ADDR`, `--stream ADDR SECS` (writes 128 KiB chunks, prints bytes/s), `--connect ADDR
//! SECS` (connect + RST-close in a loop, prints connects/s) and `--connect-greet ADDR SECS`
//! (the same, reading the server's one-byte greeting before the close), so the confined client
//! is exactly the unconfined one. Clients run on CPU 0, the server on CPU 1.

#[path = "../../ifpin/benches/stats/mod.rs"]
mod stats;

use stats::clients;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use stats::Ratios;

const LEVELS: [&str; 3] = ["pinned", "enforced", "sealed"];
/// The stream server (a thread per connection, reading until EOF).
const STREAM_SERVER: &str = "10.77.0.2:5201";
/// The connect server (accepts and closes at once, in the accept loop: no thread per
/// connection, so its accept queue never overflows on a busy machine).
const CONNECT_SERVER: &str = "10.77.0.2:5202";
/// The greeting server (accepts, sends one byte, closes, in the accept loop): the client of
/// `--connect-greet` waits for that byte, as a connection that carries a request's answer.
const GREET_SERVER: &str = "10.77.0.2:5203";

/// How much to measure.
#[derive(Clone, Copy)]
struct Plan {
    startup_samples: usize,
    rounds: usize,
    stream_secs: f64,
    connect_secs: f64,
}

/// `cargo bench`.
const FULL: Plan = Plan {
    startup_samples: 200,
    rounds: 101,
    stream_secs: 0.25,
    connect_secs: 0.25,
};

/// `cargo test --all-targets` runs this binary without `--bench`: one quick pass, so the
/// harness is known to work, with numbers that mean nothing.
const SMOKE: Plan = Plan {
    startup_samples: 2,
    rounds: 1,
    stream_secs: 0.2,
    connect_secs: 0.2,
};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let bench = args.iter().any(|a| a == "--bench");
    let args: Vec<String> = args.into_iter().filter(|a| a != "--bench").collect();
    match args.first().map(String::as_str) {
        Some("--serve") => serve(&args[1], &args[2], &args[3]),
        Some("--stream") => clients::stream(args[1].parse().unwrap(), args[2].parse().unwrap()),
        Some("--connect") => {
            clients::connect(args[1].parse().unwrap(), args[2].parse().unwrap(), false)
        }
        Some("--connect-greet") => {
            clients::connect(args[1].parse().unwrap(), args[2].parse().unwrap(), true)
        }
        _ => orchestrate(if bench { FULL } else { SMOKE }),
    }
}

/// The CPU of the server process and its threads.
const SERVER_CPU: usize = 1;

fn serve(stream_addr: &str, connect_addr: &str, greet_addr: &str) {
    // Threads started from here inherit the CPU.
    stats::stay_on_cpu(SERVER_CPU);
    let connects = listen(connect_addr);
    std::thread::spawn(move || {
        for conn in connects.incoming() {
            drop(conn);
        }
    });
    let greets = listen(greet_addr);
    std::thread::spawn(move || {
        for conn in greets.incoming() {
            let _ = conn.and_then(|mut c| c.write_all(b"x"));
        }
    });
    let listener = listen(stream_addr);
    for conn in listener.incoming() {
        let Ok(mut conn) = conn else { continue };
        std::thread::spawn(move || {
            let mut buf = vec![0u8; 256 * 1024];
            while matches!(conn.read(&mut buf), Ok(n) if n > 0) {}
        });
    }
}

/// A listener with a deep accept queue (`somaxconn`): on a busy machine the accepting thread
/// may not run for milliseconds, and an overflowing queue turns into 1 s SYN retransmits that
/// would be measured instead of the connects.
fn listen(addr: &str) -> TcpListener {
    use socket2::{Domain, Socket, Type};
    let addr: SocketAddr = addr.parse().unwrap();
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None).unwrap();
    socket.set_reuse_address(true).unwrap();
    socket.bind(&addr.into()).expect("bind");
    socket.listen(65_535).unwrap();
    socket.into()
}

fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(f64::total_cmp);
    xs[xs.len() / 2]
}

/// `min–max` of the samples, to show the spread the medians come from.
fn spread(xs: &[f64]) -> String {
    let min = xs.iter().copied().fold(f64::INFINITY, f64::min);
    let max = xs.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    format!("{min:.2}–{max:.2}")
}

fn orchestrate(plan: Plan) {
    if !netlab::require_privileged() {
        return;
    }
    let ifpin = env!("CARGO_BIN_EXE_ifpin");
    let me = std::env::current_exe().unwrap();

    // Start-up: `true` vs `ifpin exec -i lo --level L -- true`, interleaved.
    let time = |cmd: &mut Command| {
        let start = Instant::now();
        let status = cmd
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .unwrap();
        assert!(status.success(), "{cmd:?}");
        start.elapsed().as_secs_f64() * 1e3
    };
    let mut plain = Vec::new();
    let mut confined: Vec<Vec<f64>> = vec![Vec::new(); LEVELS.len()];
    for _ in 0..plan.startup_samples {
        plain.push(time(&mut Command::new("true")));
        for (i, level) in LEVELS.iter().enumerate() {
            confined[i].push(time(
                Command::new(ifpin).args(["exec", "-i", "lo", "--level", level, "--", "true"]),
            ));
        }
    }
    let plain_ms = median(plain);
    println!(
        "## start-up ({} runs each, median wall time)\n",
        plan.startup_samples
    );
    println!("| command | median ms | overhead ms |\n|---|---|---|");
    println!("| `true` | {plain_ms:.2} | |");
    for (i, level) in LEVELS.iter().enumerate() {
        let ms = median(confined[i].clone());
        println!(
            "| `ifpin exec -i lo --level {level} -- true` | {ms:.2} | {:.2} |",
            ms - plain_ms
        );
    }

    // Traffic: a veth link between two namespaces.
    let lab = netlab::Lab::builder()
        .host("a")
        .host("b")
        .link(("a", "veth-a"), ("b", "veth-b"))
        .addr("a", "veth-a", "10.77.0.1/24")
        .addr("b", "veth-b", "10.77.0.2/24")
        .build()
        .expect("lab");
    let (a, b) = (lab.host("a"), lab.host("b"));
    let _server = b
        .spawn(
            b.command(&me)
                .args(["--serve", STREAM_SERVER, CONNECT_SERVER, GREET_SERVER]),
        )
        .expect("server");
    std::thread::sleep(Duration::from_millis(300));

    let run = |confine: Option<&str>, mode: &str, secs: f64| -> f64 {
        let secs = secs.to_string();
        let server = match mode {
            "--stream" => STREAM_SERVER,
            "--connect" => CONNECT_SERVER,
            _ => GREET_SERVER,
        };
        let out = match confine {
            None => a.command(&me).args([mode, server, &secs]).output(),
            Some(level) => a
                .command(ifpin)
                .args(["exec", "-i", "veth-a", "--level", level, "--"])
                .arg(&me)
                .args([mode, server, &secs])
                .output(),
        }
        .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
    };
    let rounds = std::env::var("IFPIN_BENCH_ROUNDS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(plan.rounds);
    for (mode, secs, title, unit, scale) in [
        (
            "--stream",
            plan.stream_secs,
            "TCP throughput",
            "Gbit/s",
            8e-9,
        ),
        (
            "--connect",
            plan.connect_secs,
            "TCP connect rate (connect + RST close; the server accepts and closes)",
            "connects/s",
            1.0,
        ),
        (
            "--connect-greet",
            plan.connect_secs,
            "TCP connect rate (connect, read the server's byte, RST close)",
            "connects/s",
            1.0,
        ),
    ] {
        // Each round runs the unconfined client and one per level back to back, rotating
        // which goes first, and yields one ratio per level: drift of the machine between
        // rounds cancels out.
        let variants: Vec<Option<&str>> = std::iter::once(None)
            .chain(LEVELS.iter().copied().map(Some))
            .collect();
        let mut rates: Vec<Vec<f64>> = vec![Vec::new(); variants.len()];
        for round in 0..rounds {
            for k in 0..variants.len() {
                let v = (round + k) % variants.len();
                rates[v].push(run(variants[v], mode, secs) * scale);
            }
        }
        println!("\n## {title} over veth ({rounds} rounds of {secs} s per client, interleaved)\n");
        println!(
            "| client | {unit} (median) | min–max | ratio to unconfined, median of rounds [95% CI] |\n|---|---|---|---|"
        );
        let base = &rates[0];
        println!(
            "| unconfined | {:.2} | {} | 1 |",
            Ratios::new(base.clone()).median(),
            spread(base)
        );
        for (i, level) in LEVELS.iter().enumerate() {
            let own = &rates[i + 1];
            let ratios = Ratios::new(own.iter().zip(base).map(|(c, u)| c / u).collect());
            let (low, high) = ratios.ci95();
            println!(
                "| `ifpin exec --level {level}` | {:.2} | {} | {:.3} [{low:.3}, {high:.3}] |",
                Ratios::new(own.clone()).median(),
                spread(own),
                ratios.median(),
            );
        }
    }
}
