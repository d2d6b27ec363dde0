//! Shared by the black-box tests of the `ifpin` binary (one support module for the crate):
//! run it (inside a namespace, or here), read its exit code and JSON output, read an `exec`
//! report, check that nothing was left behind, write a policy file; and, in [`guard`], run
//! `ifpin guard` and read its events.
#![allow(dead_code, reason = "each test binary uses a different subset")]

pub mod guard;

use std::ffi::OsStr;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use netlab::{Chassis, Netns, Process};
use serde_json::Value;

/// The `ifpin` binary under test.
pub fn ifpin() -> &'static str {
    env!("CARGO_BIN_EXE_ifpin")
}

/// The Debian python3 (not a pyenv shim: the tests time programs and count their packets).
pub fn python3() -> &'static str {
    if Path::new("/usr/bin/python3").exists() {
        "/usr/bin/python3"
    } else {
        "python3"
    }
}

/// Starts `label_http.py` in `ns`, answering every request on `port` with `label`, and waits
/// until it prints "ready" (listening on IPv4 and IPv6).
pub fn serve_label(ns: &Netns, label: &str, port: u16) -> Process {
    let mut cmd = ns.command(python3());
    cmd.arg(data("label_http.py"))
        .arg(label)
        .arg(port.to_string())
        .stdout(Stdio::piped());
    let process = ns.spawn(&mut cmd).expect("label server starts");
    let stdout = process.with_child(|c| c.stdout.take()).expect("stdout");
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line).expect("ready");
    assert_eq!(line.trim(), "ready");
    process
}

/// A test data file.
pub fn data(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/exec_data")
        .join(name)
}

/// What one `ifpin exec` run gave.
#[derive(Debug)]
pub struct Run {
    /// ifpin's exit status.
    pub status: ExitStatus,
    /// The program's stdout (ifpin writes nothing there).
    pub stdout: String,
    /// ifpin's report and the program's stderr.
    pub stderr: String,
    /// The JSON report (`--report FILE`), if one was written.
    pub report: Option<Value>,
}

impl Run {
    /// The report; panics with stderr if there is none.
    pub fn report(&self) -> &Value {
        self.report.as_ref().unwrap_or_else(|| {
            panic!(
                "no report; status {}, stderr:\n{}",
                self.status, self.stderr
            )
        })
    }

    /// A blocked counter of the report (`egress`, `ingress`, `setsockopt`).
    pub fn blocked(&self, which: &str) -> u64 {
        self.report()["blocked"][which]
            .as_u64()
            .unwrap_or_else(|| panic!("report has no blocked.{which}: {}", self.report()))
    }

    /// The cgroup the run used (from the report).
    pub fn cgroup(&self) -> PathBuf {
        PathBuf::from(
            self.report()["cgroup"]
                .as_str()
                .unwrap_or_else(|| panic!("report has no cgroup: {}", self.report())),
        )
    }
}

/// A unique path for a report file (removed by [`collect`]).
fn report_path() -> PathBuf {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    std::env::temp_dir().join(format!(
        "ifpin-exec-test-{}-{}.json",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ))
}

/// A `Command` running `ifpin exec ARGS --report FILE -- CMD...` inside `ns`; returns it and
/// the report path.
pub fn exec_command<S: AsRef<OsStr>>(ns: &Netns, args: &[&str], cmd: &[S]) -> (Command, PathBuf) {
    let report = report_path();
    let mut c = ns.command(ifpin());
    c.arg("exec")
        .args(args)
        .arg("--report")
        .arg(&report)
        .arg("--");
    c.args(cmd);
    (c, report)
}

/// Turns an `Output` and a report path into a [`Run`].
pub fn collect(output: Output, report: &Path) -> Run {
    let parsed = std::fs::read_to_string(report)
        .ok()
        .map(|text| serde_json::from_str(&text).expect("the report is JSON"));
    let _ = std::fs::remove_file(report);
    Run {
        status: output.status,
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        report: parsed,
    }
}

/// Runs `ifpin exec ARGS -- CMD...` inside `ns` to the end.
pub fn exec_in<S: AsRef<OsStr>>(ns: &Netns, args: &[&str], cmd: &[S]) -> Run {
    let (mut c, report) = exec_command(ns, args, cmd);
    let output = c.output().expect("ifpin runs");
    collect(output, &report)
}

/// Panics if `cgroup` still exists (the run left its cgroup, and with it its BPF programs).
pub fn assert_cgroup_gone(cgroup: &Path) {
    assert!(
        !cgroup.exists(),
        "{} was left behind (with its BPF programs attached)",
        cgroup.display()
    );
}

/// The cgroup2 mount point, from /proc/self/mountinfo.
pub fn cgroup2_mount() -> PathBuf {
    let info = std::fs::read_to_string("/proc/self/mountinfo").expect("mountinfo");
    info.lines()
        .find_map(|line| {
            let (left, right) = line.split_once(" - ")?;
            if !right.starts_with("cgroup2 ") {
                return None;
            }
            left.split(' ').nth(4).map(PathBuf::from)
        })
        .expect("a cgroup2 mount")
}

/// The cgroups a run of the ifpin process `pid` made (`<cgroup2>/ifpin/run-<pid>-...`).
pub fn ifpin_cgroups_of(pid: u32) -> Vec<PathBuf> {
    let prefix = format!("run-{pid}-");
    std::fs::read_dir(cgroup2_mount().join("ifpin"))
        .map(|entries| {
            entries
                .flatten()
                .filter(|e| e.file_name().to_string_lossy().starts_with(&prefix))
                .map(|e| e.path())
                .collect()
        })
        .unwrap_or_default()
}

/// A running `loop.py` under ifpin, its output lines collected by a thread.
pub struct Looping {
    /// ifpin.
    pub child: Child,
    lines: Arc<Mutex<Vec<String>>>,
    /// Its existence stops the program.
    pub stop: PathBuf,
    report: PathBuf,
}

impl Looping {
    /// Starts `loop.py` with `mode_args` under `ifpin exec -i ctl0 --level LEVEL` in the host.
    pub fn start(chassis: &Chassis, level: &str, mode_args: &[String]) -> Looping {
        let stop =
            std::env::temp_dir().join(format!("ifpin-loop-stop-{}-{level}", std::process::id()));
        let _ = std::fs::remove_file(&stop);
        let mut argv = vec![
            python3().to_owned(),
            data("loop.py").display().to_string(),
            stop.display().to_string(),
        ];
        argv.extend_from_slice(mode_args);
        let (mut cmd, report) =
            exec_command(chassis.host(), &["-i", "ctl0", "--level", level], &argv);
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let lines = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&lines);
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                sink.lock().unwrap().push(line);
            }
        });
        Looping {
            child,
            lines,
            stop,
            report,
        }
    }

    /// Lines so far.
    pub fn len(&self) -> usize {
        self.lines.lock().unwrap().len()
    }

    /// Lines after the first `from`.
    pub fn lines_since(&self, from: usize) -> Vec<String> {
        self.lines.lock().unwrap()[from..].to_vec()
    }

    /// Waits until a line after `from` equals `want`.
    pub fn wait_for(&self, from: usize, want: &str, within: Duration) -> bool {
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if self.lines_since(from).iter().any(|l| l == want) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        false
    }

    /// The program's pid, from its first line.
    pub fn pid_line(&self) -> u32 {
        let deadline = Instant::now() + Duration::from_secs(5);
        while self.len() == 0 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        let first = self.lines_since(0).first().cloned().unwrap_or_default();
        first
            .strip_prefix("pid ")
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("first line {first:?}"))
    }

    /// Stops the program and collects ifpin's run.
    pub fn finish(mut self) -> Run {
        std::fs::write(&self.stop, "").unwrap();
        let stderr = self.child.stderr.take().unwrap();
        let status = self.child.wait().unwrap();
        let mut err = Vec::new();
        std::io::Read::read_to_end(&mut BufReader::new(stderr), &mut err).unwrap();
        let _ = std::fs::remove_file(&self.stop);
        collect(
            std::process::Output {
                status,
                stdout: Vec::new(),
                stderr: err,
            },
            &self.report,
        )
    }
}

/// Whether a frame counted on a link can be the program's: everything but the host kernel's
/// neighbour upkeep (ARP, and IPv6 neighbour solicitations/advertisements), which it sends on
/// its own for a peer that was talked to earlier, whoever runs. A program cannot send these
/// through an IP socket; an `AF_PACKET` frame counts whatever it carries.
pub fn is_program_frame(frame: &netlab::frame::Frame) -> bool {
    let neighbour_discovery = frame.proto() == Some(netlab::frame::PROTO_ICMPV6)
        && matches!(frame.icmp_type(), Some(135 | 136));
    frame.arp().is_none() && !neighbour_discovery
}

/// The hostile helper `netlab-escape` (a binary of the netlab crate), next to `ifpin` in the
/// same target directory. A `cargo test -p ifpin-cli` does not build another package's
/// binaries, so it is built here once per test process (a no-op when it is up to date).
pub fn netlab_escape() -> &'static Path {
    static PATH: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    PATH.get_or_init(|| {
        let ifpin = Path::new(ifpin());
        let profile_dir = ifpin.parent().expect("ifpin is in a profile directory");
        let target_dir = profile_dir
            .parent()
            .expect("the profile is in a target dir");
        let profile = match profile_dir.file_name().and_then(OsStr::to_str) {
            Some("debug") | None => "dev".to_owned(),
            Some(other) => other.to_owned(),
        };
        let status = Command::new(env!("CARGO"))
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .args(["build", "--quiet", "-p", "netlab", "--bin", "netlab-escape"])
            .arg("--profile")
            .arg(&profile)
            .arg("--target-dir")
            .arg(target_dir)
            .status()
            .expect("cargo runs");
        assert!(status.success(), "building netlab-escape failed: {status}");
        let path = profile_dir.join("netlab-escape");
        assert!(path.exists(), "{} was not built", path.display());
        path
    })
}

/// The argv running `netlab-escape ATTACK --key value...`.
pub fn escape_argv(attack: &str, args: &[(&str, String)]) -> Vec<String> {
    let mut argv = vec![netlab_escape().display().to_string(), attack.to_owned()];
    for (key, value) in args {
        argv.push(format!("--{key}"));
        argv.push(value.clone());
    }
    argv
}

/// The last line of `stdout` that is a JSON object (the result of `netlab-escape` or
/// `leak_vectors.py`).
pub fn last_json_line(stdout: &str) -> Value {
    let line = stdout
        .lines()
        .rev()
        .find(|l| l.starts_with('{'))
        .unwrap_or_else(|| panic!("the program printed no JSON result: {stdout:?}"));
    serde_json::from_str(line).expect("the program's result is JSON")
}

/// The results of every step named `call` of a `netlab-escape` result, in order.
pub fn step_results(result: &Value, call: &str) -> Vec<String> {
    result["steps"]
        .as_array()
        .unwrap_or_else(|| panic!("no steps in {result}"))
        .iter()
        .filter(|s| s["call"] == call)
        .map(|s| s["result"].as_str().unwrap_or_default().to_owned())
        .collect()
}

/// The result of the first step named `call` (`"missing"` if it was not tried).
pub fn step_result(result: &Value, call: &str) -> String {
    step_results(result, call)
        .into_iter()
        .next()
        .unwrap_or_else(|| "missing".to_owned())
}

/// The detail of the first step named `call`, if any.
pub fn step_detail(result: &Value, call: &str) -> Option<String> {
    result["steps"].as_array()?.iter().find_map(|s| {
        (s["call"] == call)
            .then(|| s["detail"].as_str().map(str::to_owned))
            .flatten()
    })
}

/// Frames on a link's far end since the last call that can be the program's (see
/// [`is_program_frame`]): how many and what they were; the counter is cleared.
pub fn program_frames(counter: &netlab::FrameCounter) -> (usize, String) {
    counter.settle();
    let seen = (counter.count(is_program_frame), counter.describe());
    counter.clear();
    seen
}

/// Deletes ctl0 and creates `intruder` with ctl0's old index, leading to the front peer,
/// with a route for the control destination through it. Returns a counter on its far end.
pub fn take_over_ctl0_index(chassis: &Chassis) -> netlab::FrameCounter {
    let old_index = chassis.ctl0_index().unwrap();
    chassis.delete_ctl0().unwrap();
    chassis
        .add_host_link(
            "intruder",
            Some(old_index),
            netlab::Peer::Front,
            "peer-intr",
        )
        .unwrap();
    assert_eq!(chassis.host().ifindex("intruder").unwrap(), old_index);
    let counter = netlab::FrameCounter::open(chassis.front(), "peer-intr").unwrap();
    chassis
        .front()
        .add_addr("peer-intr", "10.30.0.2/24")
        .unwrap();
    chassis.host().add_addr("intruder", "10.30.0.1/24").unwrap();
    chassis
        .host()
        .ip(&[
            "route",
            "replace",
            &format!("{}/32", Chassis::CONTROL_V4),
            "via",
            "10.30.0.2",
            "dev",
            "intruder",
        ])
        .unwrap();
    counter
}

/// The `(kind, action)` of every link event of a report.
pub fn link_events(report: &Value) -> Vec<(String, String)> {
    report["link_events"]
        .as_array()
        .unwrap_or_else(|| panic!("no link_events in {report}"))
        .iter()
        .map(|e| {
            (
                e["kind"].as_str().unwrap_or_default().to_owned(),
                e["action"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect()
}

/// What a test must remove even when it panics: processes it started that may have left
/// ifpin's supervision (killed by pid), cgroup directories an attack made or an ifpin left
/// (removed deepest first), and then `ifpin exec --cleanup` for the rest.
#[derive(Default)]
pub struct Leftovers {
    pids: Vec<(u32, String)>,
    cgroups: Vec<PathBuf>,
}

impl Leftovers {
    /// Kills `pid` on drop if it still runs in `cgroup`, the `0::` path of an ifpin run
    /// (checked, so that a reused pid is left alone; any other path, such as the `/` a
    /// program sees in a cgroup namespace, registers nothing).
    pub fn kill_on_drop(&mut self, pid: u32, cgroup: &str) {
        if is_run_cgroup(cgroup) {
            self.pids.push((pid, cgroup.to_owned()));
        }
    }

    /// Removes `dir` (a cgroup of an ifpin run or below it, empty by then) on drop if it
    /// still exists; give children after their parents. Other paths are ignored.
    pub fn rmdir_on_drop(&mut self, dir: PathBuf) {
        if dir
            .strip_prefix(cgroup2_mount())
            .is_ok_and(|rel| is_run_cgroup(&format!("/{}", rel.display())))
        {
            self.cgroups.push(dir);
        }
    }
}

impl Drop for Leftovers {
    fn drop(&mut self) {
        let still_there = |pid: u32, cgroup: &str| {
            std::fs::read_to_string(format!("/proc/{pid}/cgroup"))
                .is_ok_and(|c| c.lines().any(|l| l.strip_prefix("0::") == Some(cgroup)))
        };
        for (pid, cgroup) in &self.pids {
            if still_there(*pid, cgroup) {
                // SAFETY: kill(2) of a process this test started, still in its cgroup.
                unsafe { libc::kill(*pid as libc::pid_t, libc::SIGKILL) };
            }
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        while self
            .pids
            .iter()
            .any(|(pid, cgroup)| still_there(*pid, cgroup))
            && Instant::now() < deadline
        {
            std::thread::sleep(Duration::from_millis(20));
        }
        for dir in self.cgroups.iter().rev() {
            if dir.exists() {
                let _ = std::fs::remove_dir(dir);
            }
        }
        let _ = Command::new(ifpin()).args(["exec", "--cleanup"]).output();
    }
}

/// Whether `relative` (a `0::` path) is an ifpin run's cgroup or below one.
fn is_run_cgroup(relative: &str) -> bool {
    relative.starts_with("/ifpin/run-")
}

/// The cgroup v2 directory of `relative` (a `0::` path of `/proc/PID/cgroup`).
pub fn cgroup_dir(relative: &str) -> PathBuf {
    cgroup2_mount().join(relative.trim_start_matches('/'))
}

/// A process outside any confinement, in `ns`, running as uid/gid 65534 (`setpriv`), with
/// its stdout piped.
pub fn spawn_as_nobody(ns: &Netns, argv: &[&str]) -> Process {
    let mut cmd = ns.command("setpriv");
    cmd.args([
        "--reuid",
        "65534",
        "--regid",
        "65534",
        "--clear-groups",
        "--",
    ])
    .args(argv)
    .stdout(Stdio::piped());
    ns.spawn(&mut cmd).expect("setpriv starts")
}

/// Runs the `ifpin` binary under test with `args` in the test's own namespace.
pub fn run_ifpin(args: &[&str]) -> Output {
    Command::new(ifpin())
        .args(args)
        .output()
        .expect("run ifpin")
}

/// Writes `text` as `policy.toml` in `dir` and returns its path.
pub fn write_policy(dir: &Path, text: &str) -> String {
    let path = dir.join("policy.toml");
    std::fs::write(&path, text).unwrap();
    path.to_str().unwrap().to_owned()
}

/// What `ifpin` printed, with its exit code, for a failure message.
pub fn printed(output: &Output) -> String {
    format!(
        "exit {:?}\n--- stdout\n{}--- stderr\n{}",
        output.status.code(),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// Asserts that `ifpin` exited with `code`, showing what it printed otherwise.
#[track_caller]
pub fn assert_exit(output: &Output, code: i32) {
    assert_eq!(output.status.code(), Some(code), "{}", printed(output));
}

/// The JSON on `output`'s stdout; panics showing what was printed if it is not JSON.
pub fn json(output: &Output) -> Value {
    serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|err| panic!("not JSON ({err}): {}", printed(output)))
}
