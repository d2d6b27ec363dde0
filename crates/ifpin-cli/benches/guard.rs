//! `ifpin guard` benchmarks. Run as root:
//!
//! ```sh
//! cargo bench -p ifpin-cli --bench guard
//! ```
//!
//! Not criterion: each sample is a whole TCP stream, a send loop or a process. Prints the
//! Markdown tables of `BENCHMARKS.md`:
//!
//! 1. Traffic the policy does not touch, over veth, with the guard's table installed vs
//!    without: TCP throughput, TCP connect rate and UDP send rate, in paired rounds (the
//!    table is installed and removed between the two halves of each round, the order
//!    rotating), median ratio with its 95 % CI (`stats::Ratios`). The UDP send loop
//!    also gives the filter's cost per packet in ns (the difference of the time per send).
//! 2. A flood of 100,000 dropped packets/s for 30 s against a running guard: its CPU (from
//!    `/proc/PID/stat`), its memory (peak RSS), and whether the per-flow counts in its events
//!    add up to every packet dropped.
//! 3. Start-up to ready, and `--check`, on a policy of 1,000 prefixes.
//!
//! `IFPIN_BENCH_ROUNDS` sets the rounds of part 1 (default 51), `IFPIN_BENCH_FLOOD_SECS` the
//! flood's length (default 30); `IFPIN_BENCH_ONLY=traffic|flood|startup` runs one part. Without `--bench` (as `cargo test --all-targets` runs it), one
//! quick pass checks that the harness works.

#[path = "../../ifpin/benches/stats/mod.rs"]
mod stats;

use stats::clients::{self, CLIENT_CPU};

use std::io::{BufRead, BufReader, Read};
use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::process::Stdio;
use std::time::{Duration, Instant};

use ifpin::Policy;
use ifpin::guard::{self, GuardOptions, PlaneBinding};
use serde_json::Value;
use stats::Ratios;

const STREAM_SERVER: &str = "10.77.0.2:5201";
const CONNECT_SERVER: &str = "10.77.0.2:5202";
const UDP_SINK: &str = "10.77.0.2:5203";
/// A plane address that routes through veth-a (not the plane's interface): dropped.
const PLANE_TARGET: &str = "10.99.1.1";

const POLICY: &str = r#"
[[plane]]
name = "backplane"
interface = "ctl0"
prefixes = ["10.99.0.0/16", "fd99::/16"]
ports = [7500]
"#;

#[derive(Clone, Copy)]
struct Plan {
    rounds: usize,
    secs: f64,
    flood_secs: u64,
    startup_samples: usize,
}

const FULL: Plan = Plan {
    rounds: 51,
    secs: 0.25,
    flood_secs: 30,
    startup_samples: 21,
};

const SMOKE: Plan = Plan {
    rounds: 1,
    secs: 0.1,
    flood_secs: 1,
    startup_samples: 1,
};

const SERVER_CPU: usize = 1;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let bench = args.iter().any(|a| a == "--bench");
    let args: Vec<String> = args.into_iter().filter(|a| a != "--bench").collect();
    match args.first().map(String::as_str) {
        Some("--serve") => serve(),
        Some("--stream") => {
            clients::stream(STREAM_SERVER.parse().unwrap(), args[1].parse().unwrap())
        }
        Some("--connect") => clients::connect(
            CONNECT_SERVER.parse().unwrap(),
            args[1].parse().unwrap(),
            false,
        ),
        Some("--udp") => udp(args[1].parse().unwrap()),
        Some("--flood") => flood(
            args[1].parse().unwrap(),
            args[2].parse().unwrap(),
            args[3].parse().unwrap(),
        ),
        _ => orchestrate(if bench { FULL } else { SMOKE }),
    }
}

fn listen(addr: &str) -> TcpListener {
    use socket2::{Domain, Socket, Type};
    let addr: SocketAddr = addr.parse().unwrap();
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None).unwrap();
    socket.set_reuse_address(true).unwrap();
    socket.bind(&addr.into()).expect("bind");
    socket.listen(65_535).unwrap();
    socket.into()
}

fn serve() {
    stats::stay_on_cpu(SERVER_CPU);
    let connects = listen(CONNECT_SERVER);
    std::thread::spawn(move || {
        for conn in connects.incoming() {
            drop(conn);
        }
    });
    let sink = UdpSocket::bind(UDP_SINK).unwrap();
    std::thread::spawn(move || {
        let mut buf = [0u8; 2048];
        while sink.recv(&mut buf).is_ok() {}
    });
    let listener = listen(STREAM_SERVER);
    for conn in listener.incoming() {
        let Ok(mut conn) = conn else { continue };
        std::thread::spawn(move || {
            let mut buf = vec![0u8; 256 * 1024];
            while matches!(conn.read(&mut buf), Ok(n) if n > 0) {}
        });
    }
}

/// This process's CPU time (user + system), in seconds.
fn cpu_secs() -> f64 {
    use nix::sys::resource::{UsageWho, getrusage};
    let u = getrusage(UsageWho::RUSAGE_SELF).unwrap();
    let t = |tv: nix::sys::time::TimeVal| tv.tv_sec() as f64 + tv.tv_usec() as f64 * 1e-6;
    t(u.user_time()) + t(u.system_time())
}

/// Small UDP datagrams as fast as one thread sends them: sends per second.
fn udp(secs: f64) {
    stats::stay_on_cpu(CLIENT_CPU);
    let socket = UdpSocket::bind("0.0.0.0:0").unwrap();
    socket.connect(UDP_SINK).unwrap();
    let payload = [0u8; 64];
    let start = Instant::now();
    let cpu = cpu_secs();
    let mut n = 0u64;
    while start.elapsed().as_secs_f64() < secs {
        for _ in 0..64 {
            let _ = socket.send(&payload);
        }
        n += 64;
    }
    // Sends per second, and CPU nanoseconds per send (the machine's other load does not
    // count in the second).
    println!(
        "{} {}",
        n as f64 / start.elapsed().as_secs_f64(),
        (cpu_secs() - cpu) * 1e9 / n as f64
    );
}

/// `rate` datagrams per second to the plane target through veth-a (so each is dropped), for
/// `secs` seconds, over 16 flows (destination ports); prints how many were refused (EPERM:
/// dropped) and how many were sent.
/// `rate` datagrams per second to the plane target through veth-a (so each is dropped), for
/// `secs` seconds, over `flows` flows (destination ports; 16 flows use a connected socket
/// each, more use one unconnected socket); prints how many were refused (EPERM: dropped),
/// how many were sent, and the seconds it took.
fn flood(rate: u64, secs: u64, flows: u64) {
    stats::stay_on_cpu(CLIENT_CPU);
    let connected: Vec<UdpSocket> = (0..flows.min(16))
        .map(|i| {
            let s = UdpSocket::bind("0.0.0.0:0").unwrap();
            s.connect(format!("{PLANE_TARGET}:{}", 9000 + i)).unwrap();
            s
        })
        .collect();
    let unconnected = UdpSocket::bind("0.0.0.0:0").unwrap();
    let target: std::net::Ipv4Addr = PLANE_TARGET.parse().unwrap();
    let start = Instant::now();
    let total = rate * secs;
    let (mut sent, mut refused) = (0u64, 0u64);
    while sent < total {
        // Pace: where we should be by now, in batches.
        let due = ((start.elapsed().as_secs_f64() * rate as f64) as u64).min(total);
        if sent >= due {
            std::thread::sleep(Duration::from_micros(200));
            continue;
        }
        while sent < due {
            let result = if flows <= 16 {
                connected[(sent % flows) as usize].send(b"flood")
            } else {
                let port = 1024 + (sent % flows) as u16;
                unconnected.send_to(b"flood", (target, port))
            };
            if result.is_err() {
                refused += 1;
            }
            sent += 1;
        }
    }
    println!("{refused} {sent} {:.3}", start.elapsed().as_secs_f64());
}

fn ticks_of(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let fields: Vec<&str> = after.split_whitespace().collect();
    // utime and stime: fields 14 and 15 of the file, 12 and 13 after the command.
    fields
        .get(11)
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(0)
        + fields
            .get(12)
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
}

fn status_kb(pid: u32, key: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(f64::total_cmp);
    xs[xs.len() / 2]
}

fn orchestrate(plan: Plan) {
    if !netlab::require_privileged() {
        return;
    }
    let ifpin = env!("CARGO_BIN_EXE_ifpin");
    let me = std::env::current_exe().unwrap();
    let rounds = std::env::var("IFPIN_BENCH_ROUNDS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(plan.rounds);
    let flood_secs = std::env::var("IFPIN_BENCH_FLOOD_SECS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(plan.flood_secs);

    // a: the card (the guard runs here), with its plane link ctl0 to c; b: the far end of the
    // traffic link veth-a, which is also where a routes the plane's prefixes (a leak path).
    let lab = netlab::Lab::builder()
        .host("a")
        .host("b")
        .host("c")
        .link(("a", "veth-a"), ("b", "veth-b"))
        .link(("a", "ctl0"), ("c", "peer-ctl0"))
        .addr("a", "veth-a", "10.77.0.1/24")
        .addr("b", "veth-b", "10.77.0.2/24")
        .addr("a", "ctl0", "10.99.0.1/24")
        .addr("c", "peer-ctl0", "10.99.0.2/24")
        .route(
            "a",
            netlab::Route::new("default").via("10.77.0.2").dev("veth-a"),
        )
        .build()
        .expect("lab");
    let a = lab.host("a");
    let b = lab.host("b");
    let _server = b.spawn(b.command(&me).arg("--serve")).expect("server");
    std::thread::sleep(Duration::from_millis(300));

    let policy = Policy::parse(POLICY, "bench.toml").unwrap();
    let table = a
        .run(|| {
            let bindings = PlaneBinding::resolve_all(&policy);
            guard::ruleset(&policy, &bindings, &GuardOptions::default())
        })
        .unwrap();
    let only = std::env::var("IFPIN_BENCH_ONLY").unwrap_or_default();
    if only.is_empty() || only == "traffic" {
        traffic(plan, rounds, a, &me, &table);
    }
    if only.is_empty() || only == "flood" {
        flood_bench(flood_secs, a, &me, ifpin);
    }
    if only.is_empty() || only == "startup" {
        startup(plan, a, ifpin);
    }
    a.run(|| guard::remove(guard::TABLE)).unwrap().unwrap();
}

fn traffic(
    plan: Plan,
    rounds: usize,
    a: &netlab::Netns,
    me: &std::path::Path,
    table: &[guard::nft::Table],
) {
    let set_guard = |on: bool| {
        a.run(|| {
            if on {
                guard::install(table).map(drop)
            } else {
                guard::remove(guard::TABLE).map(drop)
            }
        })
        .unwrap()
        .unwrap()
    };
    let cpu_per_send = std::cell::RefCell::new((Vec::new(), Vec::new()));
    let run = |mode: &str, secs: f64, on: bool| -> f64 {
        let out = a
            .command(me)
            .args([mode, &secs.to_string()])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = String::from_utf8_lossy(&out.stdout);
        let mut fields = text.split_whitespace();
        let rate = fields.next().unwrap().parse().unwrap();
        if let Some(cpu) = fields.next().and_then(|c| c.parse::<f64>().ok()) {
            let mut per = cpu_per_send.borrow_mut();
            if on { per.1.push(cpu) } else { per.0.push(cpu) }
        }
        rate
    };

    println!(
        "## Traffic the policy does not touch, guard table installed vs not ({rounds} paired rounds of {} s)\n",
        plan.secs
    );
    println!(
        "| traffic | without (median) | with the guard (median) | ratio with/without, median [95% CI] |\n|---|---|---|---|"
    );
    let mut per_packet = Vec::new();
    let mut udp_without = Vec::new();
    for (mode, title, unit, scale) in [
        ("--stream", "TCP throughput", "Gbit/s", 8e-9),
        ("--connect", "TCP connect + RST close", "connects/s", 1.0),
        ("--udp", "UDP sends of 64 bytes", "sends/s", 1.0),
    ] {
        let (mut without, mut with) = (Vec::new(), Vec::new());
        for round in 0..rounds {
            let order = if round % 2 == 0 {
                [false, true]
            } else {
                [true, false]
            };
            for on in order {
                set_guard(on);
                let r = run(mode, plan.secs, on);
                if on {
                    with.push(r);
                } else {
                    without.push(r);
                }
            }
        }
        set_guard(false);
        let ratios = Ratios::new(with.iter().zip(&without).map(|(w, o)| w / o).collect());
        let (low, high) = ratios.ci95();
        println!(
            "| {title} | {:.2} {unit} | {:.2} {unit} | {:.3} [{low:.3}, {high:.3}] |",
            median(without.clone()) * scale,
            median(with.clone()) * scale,
            ratios.median()
        );
        if mode == "--udp" {
            udp_without = without.clone();
            per_packet = with
                .iter()
                .zip(&without)
                .map(|(w, o)| 1e9 / w - 1e9 / o)
                .collect();
        }
    }
    let pp = Ratios::new(per_packet.clone());
    let (low, high) = pp.ci95();
    let (cpu_without, cpu_with) = cpu_per_send.borrow().clone();
    let cpu_delta = Ratios::new(
        cpu_with
            .iter()
            .zip(&cpu_without)
            .map(|(w, o)| w - o)
            .collect(),
    );
    let (clow, chigh) = cpu_delta.ci95();
    println!(
        "\nCost of the guard's rules per sent packet, paired rounds of UDP sends (each packet passes postrouting in the sender's namespace):\n\n\
         | measure | without (median) | difference with the guard, median [95% CI] |\n|---|---|---|\n\
         | wall time per send | {:.0} ns | {:.0} ns [{low:.0}, {high:.0}] |\n\
         | CPU time per send (user + system; other load does not count) | {:.0} ns | {:.0} ns [{clow:.0}, {chigh:.0}] |\n",
        1e9 / median(udp_without.clone()),
        pp.median(),
        median(cpu_without.clone()),
        cpu_delta.median(),
    );
}

fn flood_bench(flood_secs: u64, a: &netlab::Netns, me: &std::path::Path, ifpin: &str) {
    println!("## A flood of dropped packets against a running guard\n");
    println!(
        "| offered | sent | refused (EPERM, dropped) | counted by the rules (kernel) | counted in the guard's events (flows + overflow) | log overruns | event lines | guard CPU | guard RSS before / peak |\n|---|---|---|---|---|---|---|---|---|"
    );
    for flows in [16, 60_000] {
        flood_round(flood_secs, flows, a, me, ifpin);
    }
    println!();
}

fn flood_round(
    flood_secs: u64,
    flow_count: u64,
    a: &netlab::Netns,
    me: &std::path::Path,
    ifpin: &str,
) {
    let policy_file =
        std::env::temp_dir().join(format!("ifpin-guard-bench-{}.toml", std::process::id()));
    std::fs::write(&policy_file, POLICY).unwrap();
    let guard_proc = a
        .spawn(
            a.command(ifpin)
                .args(["guard", "--policy"])
                .arg(&policy_file)
                .args(["--audit-interval", "10s", "--report-interval", "10s"])
                .stdout(Stdio::piped())
                .stderr(Stdio::null()),
        )
        .unwrap();
    let pid = guard_proc.pid();
    let stdout = guard_proc.with_child(|c| c.stdout.take()).unwrap();
    let (tx, rx) = std::sync::mpsc::channel::<Value>();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Ok(v) = serde_json::from_str::<Value>(&line) {
                let _ = tx.send(v);
            }
        }
    });
    let mut events = Vec::new();
    loop {
        let e = rx
            .recv_timeout(Duration::from_secs(10))
            .expect("guard ready");
        let ready = e["type"] == "ready";
        events.push(e);
        if ready {
            break;
        }
    }
    let rss_before = status_kb(pid, "VmRSS:");
    let ticks_before = ticks_of(pid);
    let t0 = Instant::now();
    let flooder = a
        .spawn(
            a.command(me)
                .args([
                    "--flood",
                    "100000",
                    &flood_secs.to_string(),
                    &flow_count.to_string(),
                ])
                .stdout(Stdio::piped()),
        )
        .unwrap();
    let mut rss_max = rss_before;
    while flooder.try_wait().unwrap().is_none() {
        rss_max = rss_max.max(status_kb(pid, "VmRSS:"));
        std::thread::sleep(Duration::from_millis(250));
    }
    let elapsed = t0.elapsed().as_secs_f64();
    let ticks = ticks_of(pid) - ticks_before;
    let hz = 100.0; // USER_HZ
    let cpu = ticks as f64 / hz / elapsed;
    let mut out = String::new();
    flooder
        .with_child(|c| c.stdout.take())
        .unwrap()
        .read_to_string(&mut out)
        .unwrap();
    let parts: Vec<&str> = out.split_whitespace().collect();
    let (refused, sent): (u64, u64) = (parts[0].parse().unwrap(), parts[1].parse().unwrap());
    std::thread::sleep(Duration::from_millis(1500)); // the kernel flushes its log queue
    let kernel: u64 = a
        .run(|| guard::kernel_counts(guard::TABLE))
        .unwrap()
        .unwrap()
        .iter()
        .map(|c| c.packets)
        .sum();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    guard_proc.wait().unwrap();
    while let Ok(e) = rx.recv_timeout(Duration::from_secs(2)) {
        events.push(e);
    }
    // The latest count of every flow, plus the overflow counts.
    let mut flows = std::collections::BTreeMap::new();
    let mut overflow = std::collections::BTreeMap::new();
    let mut overruns = 0u64;
    let mut lines = 0usize;
    for e in &events {
        match e["type"].as_str() {
            Some("drop") | Some("flow") => {
                lines += 1;
                let key = format!("{}:{}>{}:{}", e["src"], e["sport"], e["dst"], e["dport"]);
                let c = e["count"].as_u64().unwrap_or(0);
                let entry = flows.entry(key).or_insert(0u64);
                *entry = (*entry).max(c);
            }
            Some("overflow") => {
                lines += 1;
                let key = format!("{}{}", e["plane"], e["rule"]);
                let c = e["count"].as_u64().unwrap_or(0);
                let entry = overflow.entry(key).or_insert(0u64);
                *entry = (*entry).max(c);
            }
            Some("log-overrun") => overruns += e["times"].as_u64().unwrap_or(0),
            _ => {}
        }
    }
    let counted: u64 = flows.values().sum::<u64>() + overflow.values().sum::<u64>();
    let _ = std::fs::remove_file(&policy_file);
    println!(
        "| 100,000/s for {flood_secs} s over {flow_count} flows | {sent} | {refused} | {kernel} | {counted} ({} flows + {} in overflow) | {overruns} | {lines} | {:.1} % of one core | {:.1} / {:.1} MiB |",
        flows.len(),
        overflow.values().sum::<u64>(),
        cpu * 100.0,
        rss_before as f64 / 1024.0,
        rss_max as f64 / 1024.0,
    );
}

fn startup(plan: Plan, a: &netlab::Netns, ifpin: &str) {
    let mut big = String::from(
        "[[plane]]\nname = \"backplane\"\ninterface = \"ctl0\"\nports = [7500]\nprefixes = [\n",
    );
    for i in 0..500u32 {
        big.push_str(&format!("  \"10.{}.{}.0/24\",\n", 100 + i / 250, i % 250));
        big.push_str(&format!("  \"fd99:{:x}::/32\",\n", i + 1));
    }
    big.push_str("]\n");
    let big_file =
        std::env::temp_dir().join(format!("ifpin-guard-bench-big-{}.toml", std::process::id()));
    std::fs::write(&big_file, &big).unwrap();
    let mut check = Vec::new();
    let mut ready = Vec::new();
    for _ in 0..plan.startup_samples {
        let t = Instant::now();
        let out = a
            .command(ifpin)
            .args(["guard", "--check"])
            .arg(&big_file)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        check.push(t.elapsed().as_secs_f64() * 1e3);
        let t = Instant::now();
        let p = a
            .spawn(
                a.command(ifpin)
                    .args(["guard", "--policy"])
                    .arg(&big_file)
                    .stdout(Stdio::piped())
                    .stderr(Stdio::null()),
            )
            .unwrap();
        let stdout = p.with_child(|c| c.stdout.take()).unwrap();
        let mut reader = BufReader::new(stdout);
        let mut line = String::new();
        loop {
            line.clear();
            assert!(reader.read_line(&mut line).unwrap() > 0, "the guard exited");
            if line.contains("\"type\":\"ready\"") {
                break;
            }
        }
        ready.push(t.elapsed().as_secs_f64() * 1e3);
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(p.pid() as i32),
            nix::sys::signal::Signal::SIGTERM,
        )
        .unwrap();
        p.wait().unwrap();
    }
    let _ = std::fs::remove_file(&big_file);
    println!(
        "## Start-up on a policy of 1,000 prefixes (500 IPv4, 500 IPv6; {} runs, median)\n",
        plan.startup_samples
    );
    println!("| command | median ms |\n|---|---|");
    println!(
        "| `ifpin guard --check` (parse, resolve, print the 1,000-element sets) | {:.1} |",
        median(check)
    );
    println!(
        "| `ifpin guard --policy` from exec to the `ready` event (NFLOG bound, table installed in one transaction) | {:.1} |",
        median(ready)
    );
}
