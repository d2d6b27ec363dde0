//! Real programs no one here wrote, under `ifpin exec`: curl, python3, a static busybox, and a
//! daemon that double-forks. On the chassis topology the URL's address exists behind both
//! peers and the routing table prefers the front port, so *which* peer answers shows which
//! interface the program used: `front` unconfined (the negative control), `backplane` when
//! confined to `ctl0`.

#[path = "support/mod.rs"]
mod support;

use netlab::Chassis;
use support::{assert_cgroup_gone, data, exec_in, python3, serve_label};

const PORT: u16 = 7_401;

fn url() -> String {
    format!("http://{}:{PORT}/", Chassis::CONTROL_V4)
}

#[test]
fn real_programs_reach_the_service_over_the_pinned_interface_only() {
    if !netlab::require_privileged() {
        return;
    }
    let chassis = Chassis::new().expect("chassis");
    let _backplane = serve_label(chassis.backplane(), "backplane", PORT);
    let _front = serve_label(chassis.front(), "front", PORT);
    let front = chassis.front_counter().expect("front counter");
    let url = url();
    let py_fetch = format!(
        "import urllib.request; print(urllib.request.urlopen('{url}', timeout=3).read().decode(), end='')"
    );
    let programs: Vec<(&str, Vec<String>)> = vec![
        (
            "curl",
            ["curl", "-s", "--max-time", "3", &url]
                .map(String::from)
                .to_vec(),
        ),
        (
            "busybox (static)",
            // (No `-T`: Debian 12's busybox-static wget crashes with it when a connect fails.)
            ["busybox", "wget", "-q", "-O", "-", &url]
                .map(String::from)
                .to_vec(),
        ),
        ("python3", vec![python3().to_owned(), "-c".into(), py_fetch]),
    ];
    // The confined runs first, the negative controls after them all: the host kernel may send
    // a packet of its own for an unconfined connection after it closed, and that must not be
    // counted against a confined run.
    for (what, argv) in &programs {
        for level in ["pinned", "enforced", "sealed"] {
            let run = exec_in(chassis.host(), &["-i", "ctl0", "--level", level], argv);
            assert!(
                run.status.success(),
                "{what} at {level}: {}\n{}",
                run.status,
                run.stderr
            );
            assert_eq!(
                run.stdout.trim(),
                "backplane",
                "{what} at {level} should reach the service over ctl0; stderr: {}",
                run.stderr
            );
            front.settle();
            assert_eq!(
                front.count(support::is_program_frame),
                0,
                "{what} at {level} put frames on the front link: {}",
                front.describe()
            );
            front.clear();
            assert_cgroup_gone(&run.cgroup());
        }
    }
    for (what, argv) in &programs {
        // Negative control: unconfined, the routing table takes it out of the front port.
        let out = chassis
            .host()
            .command(&argv[0])
            .args(&argv[1..])
            .output()
            .unwrap();
        assert_eq!(
            String::from_utf8_lossy(&out.stdout).trim(),
            "front",
            "{what} unconfined should reach the front peer (negative control); {}, stderr: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        front.settle();
        assert!(
            front.count(support::is_program_frame) > 0,
            "the front counter saw the unconfined {what}"
        );
        front.clear();
    }
}

/// Waits for `child` with `wait4(2)`: its output and the CPU time it (and the children it
/// reaped) used.
fn wait_with_cpu(mut child: std::process::Child) -> (std::process::Output, std::time::Duration) {
    use std::io::Read;
    use std::os::unix::process::ExitStatusExt;
    let mut stderr = Vec::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_end(&mut stderr)
        .unwrap();
    let mut status = 0;
    // SAFETY: an all-zero rusage is a valid value for wait4 to overwrite.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: waits for our own child; both out-pointers are valid for the call.
    let pid = unsafe { libc::wait4(child.id() as libc::pid_t, &mut status, 0, &mut usage) };
    assert_eq!(pid, child.id() as libc::pid_t, "wait4");
    let tv = |t: libc::timeval| {
        std::time::Duration::from_secs(t.tv_sec as u64)
            + std::time::Duration::from_micros(t.tv_usec as u64)
    };
    let output = std::process::Output {
        status: std::process::ExitStatus::from_raw(status),
        stdout: Vec::new(),
        stderr,
    };
    (output, tv(usage.ru_utime) + tv(usage.ru_stime))
}

#[test]
fn a_double_forking_daemon_stays_confined_and_is_waited_for() {
    if !netlab::require_privileged() {
        return;
    }
    let chassis = Chassis::new().expect("chassis");
    let _backplane = serve_label(chassis.backplane(), "backplane", PORT);
    let _front = serve_label(chassis.front(), "front", PORT);
    let front = chassis.front_counter().expect("front counter");
    let out = std::env::temp_dir().join(format!("ifpin-daemon-{}.out", std::process::id()));
    let _ = std::fs::remove_file(&out);
    let argv = [
        python3().to_owned(),
        data("daemon.py").display().to_string(),
        url(),
        out.display().to_string(),
        Chassis::ETH1.to_owned(),
        Chassis::CONTROL_V4.to_string(),
        PORT.to_string(),
    ];

    // Run ifpin and collect its CPU time with wait4: while it waits for the daemon (its
    // direct child long gone) it must sleep in poll, not spin.
    let (mut cmd, report) = support::exec_command(chassis.host(), &["-i", "ctl0"], &argv);
    let child = cmd
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let (output, cpu) = wait_with_cpu(child);
    let run = support::collect(output, &report);
    assert!(run.status.success(), "{}\n{}", run.status, run.stderr);
    assert!(
        cpu < std::time::Duration::from_millis(400),
        "ifpin (with the program it reaped) used {cpu:?} of CPU over {} ms of waiting",
        run.report()["elapsed_ms"]
    );
    // ifpin returned only after the daemon was done: its output is there already.
    let fetched =
        std::fs::read_to_string(&out).expect("the daemon wrote its result before ifpin exited");
    let _ = std::fs::remove_file(&out);
    assert_eq!(
        fetched.trim(),
        "backplane",
        "the daemon reached the service over ctl0"
    );
    let report = run.report();
    assert_eq!(report["waited_for_descendants"], true, "{report}");
    assert!(report["elapsed_ms"].as_u64().unwrap() >= 1500, "{report}");
    // The daemon's leak attempt was blocked and counted after its parent had exited.
    assert_eq!(run.blocked("egress"), 1, "{report}");
    front.settle();
    assert_eq!(
        front.count(support::is_program_frame),
        0,
        "{}",
        front.describe()
    );
    assert_cgroup_gone(&run.cgroup());

    // Negative control: unconfined, the same daemon's datagram does reach the front link.
    let status = chassis
        .host()
        .command(&argv[0])
        .args(&argv[1..])
        .status()
        .unwrap();
    assert!(status.success());
    std::thread::sleep(std::time::Duration::from_millis(2500));
    front.settle();
    assert!(
        front.count(support::is_program_frame) > 0,
        "the unconfined daemon leaked (negative control)"
    );
    let _ = std::fs::remove_file(&out);
}

#[test]
fn loopback_is_closed_unless_allowed() {
    if !netlab::require_privileged() {
        return;
    }
    let chassis = Chassis::new().expect("chassis");
    let _backplane = serve_label(chassis.backplane(), "backplane", PORT);
    let _front = serve_label(chassis.front(), "front", PORT);
    let _local = serve_label(chassis.host(), "loopback", PORT);
    let front = chassis.front_counter().expect("front counter");
    let curl = |url: &str| -> Vec<String> {
        ["curl", "-s", "--max-time", "2", url]
            .map(String::from)
            .to_vec()
    };
    let local4 = format!("http://127.0.0.1:{PORT}/");
    let local6 = format!("http://[::1]:{PORT}/");
    for level in ["pinned", "enforced", "sealed"] {
        // Without --allow-loopback, every socket is pinned to ctl0: loopback is unreachable.
        for url in [&local4, &local6] {
            let run = exec_in(
                chassis.host(),
                &["-i", "ctl0", "--level", level],
                &curl(url),
            );
            assert_ne!(run.status.code(), Some(0), "{level} {url}: {}", run.stderr);
            assert_eq!(run.stdout, "", "{level} {url}");
            assert_cgroup_gone(&run.cgroup());
        }
        // With it, loopback works and the rest stays pinned.
        for (url, want) in [
            (&local4, "loopback"),
            (&local6, "loopback"),
            (&url(), "backplane"),
        ] {
            let run = exec_in(
                chassis.host(),
                &["-i", "ctl0", "--level", level, "--allow-loopback"],
                &curl(url),
            );
            assert!(run.status.success(), "{level} {url}: {}", run.stderr);
            assert_eq!(run.stdout.trim(), want, "{level} {url}: {}", run.stderr);
            assert_eq!(run.report()["allow_loopback"], true);
            assert_cgroup_gone(&run.cgroup());
        }
        front.settle();
        assert_eq!(
            front.count(support::is_program_frame),
            0,
            "{level}: {}",
            front.describe()
        );
    }
}
