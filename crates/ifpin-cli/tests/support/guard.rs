//! For the `ifpin guard` black-box tests: a policy for the chassis, the guard running inside
//! the chassis' host namespace with its JSON events collected, and small senders.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use netlab::{Chassis, Netns, Process};
use serde_json::Value;

pub use super::ifpin;

/// The chassis' backplane as a plane: the control prefixes, the ctl0 link's own prefixes
/// (so the host's ctl0 address is a plane source), and one service port.
pub const POLICY: &str = r#"
[[plane]]
name = "backplane"
interface = "ctl0"
prefixes = ["10.99.0.0/16", "10.10.0.0/24", "fd99::/16", "fd10::/64"]
ports = [7500]
"#;

/// The plane's service port in [`POLICY`].
pub const PLANE_PORT: u16 = 7500;

/// A policy file that is removed on drop.
pub struct PolicyFile {
    file: tempfile::NamedTempFile,
}

impl PolicyFile {
    /// Writes `text` to a fresh file.
    pub fn new(text: &str) -> PolicyFile {
        let mut file = tempfile::Builder::new()
            .prefix("ifpin-guard-policy-")
            .suffix(".toml")
            .tempfile()
            .unwrap();
        file.write_all(text.as_bytes()).unwrap();
        PolicyFile { file }
    }

    /// Its path.
    pub fn path(&self) -> &Path {
        self.file.path()
    }

    /// Replaces its content (for reloads).
    pub fn rewrite(&self, text: &str) {
        std::fs::write(self.file.path(), text).unwrap();
    }
}

/// A running `ifpin guard`, its events collected by a thread.
pub struct Guard {
    process: Process,
    events: Arc<Mutex<Vec<Value>>>,
    stderr: Arc<Mutex<String>>,
}

impl Guard {
    /// Starts `ifpin guard --policy POLICY ARGS` in `ns` and waits until it is ready.
    pub fn start(ns: &Netns, policy: &Path, args: &[&str]) -> Guard {
        let guard = Guard::spawn(ns, policy, args);
        if guard
            .wait_event(|e| e["type"] == "ready", Duration::from_secs(15))
            .is_none()
        {
            panic!(
                "the guard did not become ready; events {:?}, stderr:\n{}",
                guard.events(),
                guard.stderr()
            );
        }
        guard
    }

    /// Starts it without waiting.
    pub fn spawn(ns: &Netns, policy: &Path, args: &[&str]) -> Guard {
        let mut cmd = ns.command(ifpin());
        cmd.arg("guard")
            .arg("--policy")
            .arg(policy)
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let process = ns.spawn(&mut cmd).expect("ifpin guard starts");
        let stdout = process.with_child(|c| c.stdout.take()).unwrap();
        let mut stderr_pipe = process.with_child(|c| c.stderr.take()).unwrap();
        let events = Arc::new(Mutex::new(Vec::new()));
        let stderr = Arc::new(Mutex::new(String::new()));
        let sink = events.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                let value: Value = serde_json::from_str(&line)
                    .unwrap_or_else(|e| panic!("not a JSON line: {line:?}: {e}"));
                assert!(value["type"].is_string(), "an event without a type: {line}");
                sink.lock().unwrap().push(value);
            }
        });
        let err_sink = stderr.clone();
        std::thread::spawn(move || {
            let mut text = String::new();
            let _ = stderr_pipe.read_to_string(&mut text);
            err_sink.lock().unwrap().push_str(&text);
        });
        Guard {
            process,
            events,
            stderr,
        }
    }

    /// Its pid.
    pub fn pid(&self) -> u32 {
        self.process.pid()
    }

    /// Every event so far.
    pub fn events(&self) -> Vec<Value> {
        self.events.lock().unwrap().clone()
    }

    /// What it wrote to stderr (complete once it exited).
    pub fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// The first event matching `pred`, waiting up to `timeout`.
    pub fn wait_event(&self, pred: impl Fn(&Value) -> bool, timeout: Duration) -> Option<Value> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(e) = self.events().into_iter().find(|e| pred(e)) {
                return Some(e);
            }
            if Instant::now() >= deadline {
                return None;
            }
            if let Ok(Some(_)) = self.process.try_wait() {
                std::thread::sleep(Duration::from_millis(100));
                return self.events().into_iter().find(|e| pred(e));
            }
            std::thread::sleep(Duration::from_millis(25));
        }
    }

    /// Like [`Guard::wait_event`], panicking with every event when none comes.
    pub fn expect_event(&self, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
        self.wait_event(pred, Duration::from_secs(10))
            .unwrap_or_else(|| {
                panic!(
                    "no {what} event; events:\n{}\nstderr:\n{}",
                    self.events()
                        .iter()
                        .map(ToString::to_string)
                        .collect::<Vec<_>>()
                        .join("\n"),
                    self.stderr()
                )
            })
    }

    /// Sends a signal.
    pub fn signal(&self, signal: nix::sys::signal::Signal) {
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.pid() as i32), signal)
            .unwrap_or_else(|e| panic!("kill({}, {signal}): {e}", self.pid()));
    }

    /// SIGTERM, then waits for it to exit.
    pub fn stop(self) -> ExitStatus {
        self.signal(nix::sys::signal::Signal::SIGTERM);
        self.wait_exit()
    }

    /// SIGKILL, then waits.
    pub fn kill9(self) -> ExitStatus {
        self.process.kill().unwrap()
    }

    /// Waits for it to exit (at most 10 s, then kills it and panics).
    pub fn wait_exit(&self) -> ExitStatus {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(status) = self.process.try_wait().unwrap() {
                std::thread::sleep(Duration::from_millis(50)); // let the readers finish
                return status;
            }
            if Instant::now() >= deadline {
                let _ = self.process.kill();
                panic!("the guard did not exit; stderr:\n{}", self.stderr());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.process.kill();
    }
}

/// Runs `ifpin ARGS` in `ns` to the end: (exit code, stdout, stderr).
pub fn ifpin_in(ns: &Netns, args: &[&str]) -> (Option<i32>, String, String) {
    let out = ns.command(ifpin()).args(args).output().unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Whether the guard's table exists in `ns`.
pub fn table_exists(ns: &Netns) -> bool {
    ns.run(|| ifpin::guard::installed(ifpin::guard::TABLE))
        .unwrap()
        .unwrap()
}

/// `nft list ruleset` in `ns` (the Debian package `nftables`).
pub fn nft_ruleset(ns: &Netns) -> String {
    let out = ns
        .command("nft")
        .args(["list", "ruleset"])
        .output()
        .expect("nft runs (apt-get install nftables; scripts/setup does)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Sends `count` UDP datagrams from `ns` to `dst`, from `src` if given; errors (EPERM from
/// a drop) are counted, not raised. Returns how many `send_to` calls failed.
pub fn send_udp(ns: &Netns, src: Option<IpAddr>, dst: SocketAddr, count: usize) -> usize {
    ns.run(|| {
        let bind: SocketAddr = match (src, dst) {
            (Some(ip), _) => SocketAddr::new(ip, 0),
            (None, SocketAddr::V4(_)) => "0.0.0.0:0".parse().unwrap(),
            (None, SocketAddr::V6(_)) => "[::]:0".parse().unwrap(),
        };
        let socket = UdpSocket::bind(bind).unwrap();
        let mut failed = 0;
        for _ in 0..count {
            if socket.send_to(b"ifpin-guard-test", dst).is_err() {
                failed += 1;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        failed
    })
    .unwrap()
}

/// Tries a TCP connection from `ns` to `dst`: whether it connected within `timeout`.
pub fn tcp_connects(ns: &Netns, src: Option<IpAddr>, dst: SocketAddr, timeout: Duration) -> bool {
    ns.run(|| {
        let socket = socket2::Socket::new(
            socket2::Domain::for_address(dst),
            socket2::Type::STREAM,
            None,
        )
        .unwrap();
        if let Some(ip) = src {
            socket.bind(&SocketAddr::new(ip, 0).into()).unwrap();
        }
        socket.connect_timeout(&dst.into(), timeout).is_ok()
    })
    .unwrap()
}

/// A TCP listener in `ns` that counts accepted connections, until dropped.
pub struct Listener {
    accepted: Arc<Mutex<Vec<SocketAddr>>>,
    stop: Arc<std::sync::atomic::AtomicBool>,
    pub addr: SocketAddr,
}

impl Listener {
    pub fn start(ns: &Netns, addr: SocketAddr) -> Listener {
        let listener = ns
            .run(|| std::net::TcpListener::bind(addr).unwrap())
            .unwrap();
        listener.set_nonblocking(true).unwrap();
        let accepted = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (a, s) = (accepted.clone(), stop.clone());
        std::thread::spawn(move || {
            while !s.load(std::sync::atomic::Ordering::Relaxed) {
                match listener.accept() {
                    Ok((_, peer)) => a.lock().unwrap().push(peer),
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        Listener {
            accepted,
            stop,
            addr,
        }
    }

    /// The peers accepted so far.
    pub fn accepted(&self) -> Vec<SocketAddr> {
        self.accepted.lock().unwrap().clone()
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
    }
}

/// A UDP socket in `ns` that counts what it receives, from whom.
pub fn udp_receiver(ns: &Netns, addr: SocketAddr) -> UdpSocket {
    let socket = ns.run(|| UdpSocket::bind(addr).unwrap()).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    socket
}

/// Every datagram waiting on `socket`: their sources.
pub fn received(socket: &UdpSocket) -> Vec<SocketAddr> {
    let mut out = Vec::new();
    let mut buf = [0u8; 2048];
    while let Ok((_, from)) = socket.recv_from(&mut buf) {
        out.push(from);
    }
    out
}

/// Frames on the front link involving the control address (IPv4 or IPv6).
pub fn front_control_frames(front: &netlab::FrameCounter) -> usize {
    front.settle();
    front.count(|f| {
        f.involves(IpAddr::V4(Chassis::CONTROL_V4)) || f.involves(IpAddr::V6(Chassis::CONTROL_V6))
    })
}

/// A path in the temp directory, removed on drop.
pub struct TempPath(pub PathBuf);

impl TempPath {
    pub fn new(name: &str) -> TempPath {
        TempPath(std::env::temp_dir().join(format!("ifpin-guard-{}-{name}", std::process::id())))
    }
}

impl Drop for TempPath {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// `curl -s URL` run in `ns`: the body.
pub fn curl(ns: &Netns, url: &str) -> String {
    let out = ns
        .command("curl")
        .args(["-s", "--max-time", "5", url])
        .output()
        .expect("curl runs");
    assert!(
        out.status.success(),
        "curl {url}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A TCP port on loopback nobody listens on now, for the metrics endpoint.
pub fn free_port(ns: &Netns) -> u16 {
    ns.run(|| {
        std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port()
    })
    .unwrap()
}

/// Writes `text` to a stream (for raw HTTP).
pub fn http_get(ns: &Netns, addr: SocketAddr, path: &str) -> String {
    ns.run(|| {
        let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(3)).unwrap();
        write!(s, "GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
        let mut body = String::new();
        s.read_to_string(&mut body).unwrap();
        body
    })
    .unwrap()
}
