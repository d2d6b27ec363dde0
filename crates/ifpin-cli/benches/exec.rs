//! `ifpin exec` benchmarks: start-up overhead, and confined vs unconfined TCP throughput and
//! connect rate over a veth link, at each level. Run as root:
//!
//! ```sh
//! cargo bench -p ifpin-cli --bench exec
//! ```
//!
//! Not criterion: each sample is a whole process (or a whole TCP stream), so this harness
//! runs the samples itself, interleaving confined and unconfined runs so that drift of the
//! machine hits both alike, and prints medians as a Markdown table (the one in
//! `BENCHMARKS.md`).
//!
//! The same binary is the traffic client and server: `--serve STREAM_ADDR CONNECT_ADDR`, `--stream ADDR SECS`
//! (writes 128 KiB chunks, prints bytes/s) and `--connect ADDR SECS` (connect + RST-close in
//! a loop, prints connects/s), so the confined client is exactly the unconfined one.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const LEVELS: [&str; 3] = ["pinned", "enforced", "sealed"];
/// The stream server (a thread per connection, reading until EOF).
const STREAM_SERVER: &str = "10.77.0.2:5201";
/// The connect server (accepts and closes at once, in the accept loop: no thread per
/// connection, so its accept queue never overflows on a busy machine).
const CONNECT_SERVER: &str = "10.77.0.2:5202";

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
    rounds: 9,
    stream_secs: 2.0,
    connect_secs: 2.0,
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
        Some("--serve") => serve(&args[1], &args[2]),
        Some("--stream") => stream(&args[1], args[2].parse().unwrap()),
        Some("--connect") => connect(&args[1], args[2].parse().unwrap()),
        _ => orchestrate(if bench { FULL } else { SMOKE }),
    }
}

fn serve(stream_addr: &str, connect_addr: &str) {
    let connects = listen(connect_addr);
    std::thread::spawn(move || {
        for conn in connects.incoming() {
            drop(conn);
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

fn stream(addr: &str, secs: f64) {
    let addr: SocketAddr = addr.parse().unwrap();
    let mut conn = TcpStream::connect(addr).expect("connect");
    let chunk = vec![0x5au8; 128 * 1024];
    let start = Instant::now();
    let mut bytes = 0u64;
    while start.elapsed().as_secs_f64() < secs {
        conn.write_all(&chunk).expect("write");
        bytes += chunk.len() as u64;
    }
    println!("{}", bytes as f64 / start.elapsed().as_secs_f64());
}

fn connect(addr: &str, secs: f64) {
    let addr: SocketAddr = addr.parse().unwrap();
    let start = Instant::now();
    let mut n = 0u64;
    while start.elapsed().as_secs_f64() < secs {
        let conn = TcpStream::connect(addr).expect("connect");
        // RST on close: no TIME_WAIT, so the ephemeral ports never run out.
        socket2::SockRef::from(&conn)
            .set_linger(Some(Duration::ZERO))
            .unwrap();
        drop(conn);
        n += 1;
    }
    println!("{}", n as f64 / start.elapsed().as_secs_f64());
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
    if !netlab::require_privileged("exec benchmarks") {
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
                .args(["--serve", STREAM_SERVER, CONNECT_SERVER]),
        )
        .expect("server");
    std::thread::sleep(Duration::from_millis(300));

    let run = |confine: Option<&str>, mode: &str, secs: f64| -> f64 {
        let secs = secs.to_string();
        let server = if mode == "--stream" {
            STREAM_SERVER
        } else {
            CONNECT_SERVER
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
            "TCP connect rate",
            "connects/s",
            1.0,
        ),
    ] {
        let mut base = Vec::new();
        let mut per_level: Vec<Vec<f64>> = vec![Vec::new(); LEVELS.len()];
        for _ in 0..plan.rounds {
            base.push(run(None, mode, secs) * scale);
            for (i, level) in LEVELS.iter().enumerate() {
                per_level[i].push(run(Some(level), mode, secs) * scale);
            }
        }
        let base_spread = spread(&base);
        let base = median(base);
        println!(
            "\n## {title} over veth ({} rounds of {secs} s, interleaved, median)\n",
            plan.rounds
        );
        println!("| client | {unit} (median) | min–max | ratio to unconfined |\n|---|---|---|---|");
        println!("| unconfined | {base:.2} | {base_spread} | 1.000 |");
        for (i, level) in LEVELS.iter().enumerate() {
            let m = median(per_level[i].clone());
            println!(
                "| `ifpin exec --level {level}` | {m:.2} | {} | {:.3} |",
                spread(&per_level[i]),
                m / base
            );
        }
    }
}
