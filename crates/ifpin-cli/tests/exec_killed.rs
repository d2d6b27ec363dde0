//! ifpin's own death: killed with SIGKILL while the program runs, the program stays confined
//! (fail closed: the programs stay attached, nothing passes the front link); `--cleanup` leaves
//! the cgroup alone while a process is inside; once the program is gone, the next run removes
//! what was left and says so in its report.
//!
//! Alone in its test binary: no other `ifpin exec` of this binary runs at the same time, so
//! the cleanup this test sees is the one it expects.

#[path = "support/mod.rs"]
mod support;

use std::time::{Duration, Instant};

use netlab::{Chassis, Netns};
use support::{Looping, assert_cgroup_gone, exec_in, ifpin};

const PORT: u16 = 7_601;

#[test]
fn killing_ifpin_leaves_the_program_confined_and_cleanup_removes_the_rest() {
    if !netlab::require_privileged() {
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
    assert_eq!(
        front.count(support::is_program_frame),
        0,
        "{}",
        front.describe()
    );
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
    // The next run removes it, and says so.
    // (Any `ifpin exec` on the machine cleans up, so on a machine shared with other test runs
    // another one may get there first; then only "gone" can be checked.)
    let existed = cgroup.exists();
    let run = exec_in(&Netns::new("exec-next").unwrap(), &["-i", "lo"], &["true"]);
    assert_eq!(run.status.code(), Some(0), "{}", run.stderr);
    assert_cgroup_gone(&cgroup);
    let removed: Vec<&str> = run.report()["stale_cgroups_removed"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_str().unwrap())
        .collect();
    assert!(
        !existed || removed.contains(&cgroup.to_str().unwrap()),
        "the next run should report removing {}: {removed:?}",
        cgroup.display()
    );
    let _ = std::fs::remove_file(&looping.stop);
}
