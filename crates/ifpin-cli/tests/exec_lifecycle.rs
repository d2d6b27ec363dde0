//! The pinned interface's life while a confined program runs, and ifpin's own death.
//!
//! - `ctl0` is deleted and a different device, leading out of the front, takes its index:
//!   at `sealed` not one frame of the program reaches that device (the link watch closed the
//!   filter); at `enforced` (no link watch: the negative control) they do. When `ctl0` comes
//!   back under its name, at a new index, new connections work again.
//! - ifpin is killed with SIGKILL: the program stays confined (fail closed), and
//!   `ifpin exec --cleanup` removes what was left once the program is gone.

#[path = "exec_support/mod.rs"]
mod support;

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use netlab::{Chassis, FrameCounter, Peer, Proto};
use serde_json::Value;
use support::{assert_cgroup_gone, collect, data, exec_command, ifpin, python3};

const PORT: u16 = 7_501;

/// A running `loop.py` under ifpin, its output lines collected by a thread.
struct Looping {
    child: Child,
    lines: Arc<Mutex<Vec<String>>>,
    stop: PathBuf,
    report: PathBuf,
}

impl Looping {
    fn start(chassis: &Chassis, level: &str, mode_args: &[String]) -> Looping {
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

    fn len(&self) -> usize {
        self.lines.lock().unwrap().len()
    }

    fn lines_since(&self, from: usize) -> Vec<String> {
        self.lines.lock().unwrap()[from..].to_vec()
    }

    /// Waits until a line after `from` equals `want`.
    fn wait_for(&self, from: usize, want: &str, within: Duration) -> bool {
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
    fn pid_line(&self) -> u32 {
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

    fn finish(mut self) -> support::Run {
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

/// Deletes ctl0 and creates `intruder` with ctl0's old index, leading to the front peer,
/// with a route for the control destination through it. Returns a counter on its far end.
fn take_over_ctl0_index(chassis: &Chassis) -> FrameCounter {
    let old_index = chassis.ctl0_index().unwrap();
    chassis.delete_ctl0().unwrap();
    chassis
        .add_host_link("intruder", Some(old_index), Peer::Front, "peer-intr")
        .unwrap();
    assert_eq!(chassis.host().ifindex("intruder").unwrap(), old_index);
    let counter = FrameCounter::open(chassis.front(), "peer-intr").unwrap();
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

fn event_kinds(report: &Value) -> Vec<(String, String)> {
    report["link_events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["kind"].as_str().unwrap().to_owned(),
                e["action"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

#[test]
fn sealed_follows_the_interface_by_name() {
    if !netlab::require_privileged("sealed_follows_the_interface_by_name") {
        return;
    }
    let chassis = Chassis::new().unwrap();
    let _tcp = chassis.serve(Proto::Tcp, PORT).unwrap();
    let connect = [
        "connect".to_owned(),
        Chassis::CONTROL_V4.to_string(),
        PORT.to_string(),
    ];
    let looping = Looping::start(&chassis, "sealed", &connect);
    assert!(
        looping.wait_for(0, "ok backplane", Duration::from_secs(5)),
        "{:?}",
        looping.lines_since(0)
    );

    let intruder = take_over_ctl0_index(&chassis);
    let mark = looping.len();
    std::thread::sleep(Duration::from_millis(1500));
    intruder.settle();
    assert_eq!(
        intruder.total(),
        0,
        "frames on the device that took ctl0's index: {}",
        intruder.describe()
    );
    let during = looping.lines_since(mark);
    assert!(during.len() >= 3, "the program kept trying: {during:?}");
    assert!(
        during.iter().all(|l| l.starts_with("err")),
        "nothing got through: {during:?}"
    );

    // ctl0 returns under its name, at a new index: new connections work again.
    chassis.host().ip(&["link", "del", "intruder"]).unwrap();
    chassis.recreate_ctl0(None).unwrap();
    let mark = looping.len();
    assert!(
        looping.wait_for(mark, "ok backplane", Duration::from_secs(10)),
        "no connection after ctl0 returned: {:?}",
        looping.lines_since(mark)
    );
    let run = looping.finish();
    assert_eq!(run.status.code(), Some(0), "{}", run.stderr);
    let kinds = event_kinds(run.report());
    let expect = [
        ("deleted", "closed"),
        ("index-taken-over", "none"),
        ("returned", "reopened"),
    ];
    for (kind, action) in expect {
        assert!(
            kinds.iter().any(|(k, a)| k == kind && a == action),
            "expected a {kind}/{action} link event in {kinds:?}"
        );
    }
    assert_eq!(
        run.report()["open_for_index_at_exit"].as_u64(),
        Some(u64::from(chassis.ctl0_index().unwrap()))
    );
    assert_cgroup_gone(&run.cgroup());
}

#[test]
fn enforced_does_not_follow_the_name_negative_control() {
    if !netlab::require_privileged("enforced_does_not_follow_the_name_negative_control") {
        return;
    }
    let chassis = Chassis::new().unwrap();
    let _tcp = chassis.serve(Proto::Tcp, PORT).unwrap();
    let connect = [
        "connect".to_owned(),
        Chassis::CONTROL_V4.to_string(),
        PORT.to_string(),
    ];
    let looping = Looping::start(&chassis, "enforced", &connect);
    assert!(looping.wait_for(0, "ok backplane", Duration::from_secs(5)));
    let intruder = take_over_ctl0_index(&chassis);
    std::thread::sleep(Duration::from_millis(1500));
    intruder.settle();
    assert!(
        intruder.total() > 0,
        "at enforced the pin is a number: the program's traffic should follow it to the intruder"
    );
    let run = looping.finish();
    assert_eq!(run.status.code(), Some(0), "{}", run.stderr);
    // The events were seen and recorded, but not acted on.
    let kinds = event_kinds(run.report());
    assert!(
        kinds.iter().any(|(k, a)| k == "deleted" && a == "none"),
        "{kinds:?}"
    );
    assert_cgroup_gone(&run.cgroup());
}

#[test]
fn killing_ifpin_leaves_the_program_confined_and_cleanup_removes_the_rest() {
    if !netlab::require_privileged(
        "killing_ifpin_leaves_the_program_confined_and_cleanup_removes_the_rest",
    ) {
        return;
    }
    let chassis = Chassis::new().unwrap();
    let front = chassis.front_counter().unwrap();
    let pktinfo = [
        "pktinfo".to_owned(),
        Chassis::ETH1.to_owned(),
        Chassis::CONTROL_V4.to_string(),
        PORT.to_string(),
    ];
    let mut looping = Looping::start(&chassis, "sealed", &pktinfo);
    let pid = looping.pid_line();
    assert!(
        looping.wait_for(0, "err EPERM", Duration::from_secs(5)),
        "{:?}",
        looping.lines_since(0)
    );
    let cgroup_line = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
    let relative = cgroup_line
        .lines()
        .find_map(|l| l.strip_prefix("0::"))
        .unwrap()
        .to_owned();
    let cgroup = support::cgroup2_mount().join(relative.trim_start_matches('/'));

    looping.child.kill().unwrap(); // SIGKILL to ifpin, not to the program
    looping.child.wait().unwrap();
    let mark = looping.len();
    std::thread::sleep(Duration::from_millis(800));
    let after = looping.lines_since(mark);
    assert!(after.len() >= 3, "the program keeps running: {after:?}");
    assert!(
        after.iter().all(|l| l == "err EPERM"),
        "still blocked: {after:?}"
    );
    front.settle();
    assert_eq!(front.total(), 0, "{}", front.describe());
    assert!(cgroup.exists());

    // While the program lives, cleanup must not pull the programs out from under it.
    let out = std::process::Command::new(ifpin())
        .args(["exec", "--cleanup"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    assert!(
        cgroup.exists(),
        "cleanup removed a cgroup that still had a process"
    );

    std::fs::write(&looping.stop, "").unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while std::path::Path::new(&format!("/proc/{pid}")).exists() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = std::process::Command::new(ifpin())
        .args(["exec", "--cleanup"])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_cgroup_gone(&cgroup);
    let _ = std::fs::remove_file(&looping.stop);
}
