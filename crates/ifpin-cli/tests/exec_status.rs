//! `ifpin exec` as a parent: the program's exit status passes through (128+N for a signal),
//! signals sent to ifpin reach the program, errors exit 2 with a message naming the problem,
//! and no cgroup is left behind after a normal exit, a signal, or a failed start.

#[path = "support/mod.rs"]
mod support;

use std::io::{BufRead, BufReader, Read};
use std::process::Stdio;
use std::time::Duration;

use netlab::Netns;
use support::{
    assert_cgroup_gone, collect, data, exec_command, exec_in, ifpin, ifpin_cgroups_of, python3,
};

fn status_code(run: &support::Run) -> i32 {
    run.status
        .code()
        .unwrap_or_else(|| panic!("ifpin was killed: {}\n{}", run.status, run.stderr))
}

#[test]
fn exit_status_passes_through() {
    if !netlab::require_privileged() {
        return;
    }
    let ns = Netns::new("exec-status").expect("netns");
    for level in ["pinned", "enforced", "sealed"] {
        let run = exec_in(
            &ns,
            &["-i", "lo", "--level", level],
            &["sh", "-c", "exit 7"],
        );
        assert_eq!(status_code(&run), 7, "{}", run.stderr);
        assert_eq!(run.report()["exit"]["code"], 7);
        assert_cgroup_gone(&run.cgroup());

        let run = exec_in(
            &ns,
            &["-i", "lo", "--level", level],
            &["sh", "-c", "kill -KILL $$"],
        );
        assert_eq!(status_code(&run), 128 + 9, "{}", run.stderr);
        assert_eq!(run.report()["exit"]["signal"], "SIGKILL");
        assert_cgroup_gone(&run.cgroup());
    }
    let run = exec_in(&ns, &["-i", "lo"], &["true"]);
    assert_eq!(status_code(&run), 0);
    assert!(
        run.stderr.contains("level held: sealed on lo"),
        "{}",
        run.stderr
    );
}

/// Starts `signals.py` under ifpin and waits for its "ready".
fn start_signals_program(
    ns: &Netns,
) -> (
    std::process::Child,
    BufReader<std::process::ChildStdout>,
    std::path::PathBuf,
) {
    let (mut cmd, report) = exec_command(
        ns,
        &["-i", "lo"],
        &[python3(), data("signals.py").to_str().unwrap()],
    );
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("ifpin starts");
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    stdout.read_line(&mut line).unwrap();
    assert_eq!(line.trim(), "ready");
    (child, stdout, report)
}

fn kill(pid: u32, signal: i32) {
    // SAFETY: sending a signal to a child process this test started.
    let rc = unsafe { libc::kill(pid as libc::pid_t, signal) };
    assert_eq!(rc, 0, "kill({pid}, {signal})");
}

#[test]
fn signals_are_forwarded_to_the_program() {
    if !netlab::require_privileged() {
        return;
    }
    let ns = Netns::new("exec-signals").expect("netns");
    let (mut child, mut stdout, report) = start_signals_program(&ns);
    let mut seen = Vec::new();
    for (signal, name) in [
        (libc::SIGUSR1, "SIGUSR1"),
        (libc::SIGHUP, "SIGHUP"),
        (libc::SIGUSR2, "SIGUSR2"),
        (libc::SIGTERM, "SIGTERM"),
    ] {
        kill(child.id(), signal);
        let mut line = String::new();
        stdout.read_line(&mut line).unwrap();
        assert_eq!(
            line.trim(),
            name,
            "the program received what ifpin was sent"
        );
        seen.push(name);
    }
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    let output = child.wait_with_output().unwrap();
    let run = collect(
        std::process::Output {
            status: output.status,
            stdout: Vec::new(),
            stderr: stderr.into_bytes(),
        },
        &report,
    );
    assert_eq!(
        status_code(&run),
        42,
        "the program's own status on SIGTERM; {}",
        run.stderr
    );
    let forwarded: Vec<&str> = run.report()["signals_forwarded"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["signal"].as_str().unwrap())
        .collect();
    assert_eq!(forwarded, seen);
    // The text report says so too, one line per signal.
    for name in &seen {
        assert!(
            run.stderr
                .contains(&format!("{name} forwarded to the program")),
            "{name} in the text report: {}",
            run.stderr
        );
    }
    assert_cgroup_gone(&run.cgroup());
}

#[test]
fn a_failing_program_with_loopback_closed_gets_a_hint() {
    if !netlab::require_privileged() {
        return;
    }
    let ns = Netns::new("exec-hint").expect("netns");
    ns.ip(&[
        "link", "add", "hint0", "type", "veth", "peer", "name", "hint1",
    ])
    .unwrap();
    ns.ip(&["link", "set", "hint0", "up"]).unwrap();
    ns.ip(&["link", "set", "hint1", "up"]).unwrap();
    // Pinned to hint0, a connect to 127.0.0.1 cannot reach lo: the program fails.
    // (Unanswered, it would wait for TCP's retries: `timeout` ends it after a second.)
    let connect = "exec 3<>/dev/tcp/127.0.0.1/9";
    let failing = exec_in(
        &ns,
        &["-i", "hint0"],
        &["timeout", "1", "bash", "-c", connect],
    );
    assert_ne!(status_code(&failing), 0, "{}", failing.stderr);
    assert!(
        failing.stderr.contains("hint: loopback was closed")
            && failing.stderr.contains("--allow-loopback"),
        "{}",
        failing.stderr
    );
    // A program that succeeds, or runs with loopback, or on lo itself, gets no hint.
    for (args, cmd) in [
        (&["-i", "hint0"][..], &["true"][..]),
        (&["-i", "hint0", "--allow-loopback"][..], &["false"][..]),
        (&["-i", "lo"][..], &["false"][..]),
    ] {
        let run = exec_in(&ns, args, cmd);
        assert!(
            !run.stderr.contains("hint:"),
            "{args:?} {cmd:?}: {}",
            run.stderr
        );
    }
}

#[test]
fn a_signal_that_kills_the_program_gives_128_plus_n() {
    if !netlab::require_privileged() {
        return;
    }
    let ns = Netns::new("exec-sigint").expect("netns");
    let (mut cmd, report) = exec_command(&ns, &["-i", "lo"], &["sleep", "30"]);
    let child = cmd.stderr(Stdio::piped()).spawn().unwrap();
    std::thread::sleep(Duration::from_millis(300));
    kill(child.id(), libc::SIGINT);
    let run = collect(child.wait_with_output().unwrap(), &report);
    assert_eq!(status_code(&run), 128 + libc::SIGINT, "{}", run.stderr);
    assert_eq!(run.report()["exit"]["signal"], "SIGINT");
    assert_cgroup_gone(&run.cgroup());
}

#[test]
fn errors_exit_2_and_leave_nothing_behind() {
    if !netlab::require_privileged() {
        return;
    }
    let ns = Netns::new("exec-errors").expect("netns");
    let bad_interpreter =
        std::env::temp_dir().join(format!("ifpin-bad-interp-{}", std::process::id()));
    std::fs::write(&bad_interpreter, "#!/nonexistent/interpreter\n").unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&bad_interpreter, std::fs::Permissions::from_mode(0o755)).unwrap();
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (vec!["-i", "nosuch0", "--", "true"], "no interface nosuch0"),
        (
            vec!["-i", "an-interface-name-too-long", "--", "true"],
            "at most 15 bytes",
        ),
        (
            vec!["-i", "lo", "--", "no-such-program-xyz"],
            "no-such-program-xyz",
        ),
        (vec!["-i", "lo", "--", "/etc"], "not a regular file"),
        // Found and executable, but execve fails: the cgroup exists by then and must go.
        (
            vec!["-i", "lo", "--", bad_interpreter.to_str().unwrap()],
            "starting",
        ),
        (
            vec!["-i", "lo", "--level", "paranoid", "--", "true"],
            "paranoid",
        ),
        (vec!["--", "true"], "--interface"),
    ];
    for (args, message) in cases {
        let child = ns
            .command(ifpin())
            .arg("exec")
            .args(&args)
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let pid = child.id();
        let out = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(
            stderr.contains(message),
            "{args:?}: expected {message:?} in:\n{stderr}"
        );
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
        assert_eq!(
            ifpin_cgroups_of(pid),
            Vec::<std::path::PathBuf>::new(),
            "{args:?} left a cgroup"
        );
    }
    std::fs::remove_file(&bad_interpreter).unwrap();
}

#[test]
fn missing_capabilities_are_named() {
    if !netlab::require_privileged() {
        return;
    }
    if !std::path::Path::new("/usr/bin/setpriv").exists() {
        panic!("setpriv (util-linux) is needed to drop capabilities for this test");
    }
    let out = std::process::Command::new("/usr/bin/setpriv")
        .args(["--bounding-set", "-net_admin,-bpf,-sys_admin", "--"])
        .arg(ifpin())
        .args(["exec", "-i", "lo", "--", "true"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    for cap in ["CAP_NET_ADMIN", "CAP_BPF"] {
        assert!(
            stderr.contains(cap),
            "{cap} should be named as missing:\n{stderr}"
        );
    }
}

#[test]
fn cleanup_runs() {
    if !netlab::require_privileged() {
        return;
    }
    let out = std::process::Command::new(ifpin())
        .args(["exec", "--cleanup", "--json"])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(json["removed"].is_array());
}

#[test]
fn the_interface_can_come_from_a_policy_plane() {
    if !netlab::require_privileged() {
        return;
    }
    let ns = Netns::new("exec-policy").expect("netns");
    let policy =
        std::env::temp_dir().join(format!("ifpin-exec-policy-{}.toml", std::process::id()));
    std::fs::write(
        &policy,
        "[[plane]]\nname = \"local\"\ninterface = \"lo\"\nprefixes = [\"127.0.0.0/8\"]\n\n\
         [[plane]]\nname = \"control\"\ninterface = \"ctl9\"\nprefixes = [\"10.99.0.0/16\"]\n",
    )
    .unwrap();
    let path = policy.to_str().unwrap();

    let run = exec_in(&ns, &["--policy", path, "--plane", "local"], &["true"]);
    assert_eq!(status_code(&run), 0, "{}", run.stderr);
    assert_eq!(run.report()["interface"]["name"], "lo");

    for (plane, message) in [
        // The plane names an interface this host does not have: an error for exec.
        (
            "control",
            "names interface ctl9, which this host does not have",
        ),
        (
            "nowhere",
            "no plane \"nowhere\" (planes in the file: local, control)",
        ),
    ] {
        let out = ns
            .command(ifpin())
            .args(["exec", "--policy", path, "--plane", plane, "--", "true"])
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{plane}: {stderr}");
        assert!(
            stderr.contains(message),
            "{plane}: expected {message:?} in:\n{stderr}"
        );
        assert!(
            stderr.contains(path),
            "{plane}: the file is named:\n{stderr}"
        );
    }
    std::fs::remove_file(&policy).unwrap();
}

#[test]
fn help_teaches_the_levels_and_the_exit_status() {
    let out = std::process::Command::new(ifpin())
        .args(["exec", "--help"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    let help = String::from_utf8_lossy(&out.stdout);
    for needle in [
        "pinned",
        "enforced",
        "sealed",
        "--allow-loopback",
        "128+N",
        "--cleanup",
        "stderr",
    ] {
        assert!(help.contains(needle), "{needle:?} missing from:\n{help}");
    }
}

#[test]
fn json_errors_are_json() {
    let out = std::process::Command::new(ifpin())
        .args(["exec", "--json", "-i", "nosuch0", "--", "true"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let json: serde_json::Value = serde_json::from_slice(&out.stderr)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stderr)));
    assert!(
        json["error"].as_str().unwrap().contains("nosuch0"),
        "{json}"
    );
    assert!(json["causes"].is_array(), "{json}");
}
