//! `ifpin audit` as a black box, in the test's own network namespace: exit codes, JSON shape,
//! policy errors. (Namespace scenarios are in `audit_netns.rs`.)

#[path = "support/mod.rs"]
mod support;

use std::net::TcpListener;
use std::process::Command;

use serde_json::Value;
use support::{assert_exit, json, run_ifpin, write_policy};

#[test]
fn lists_our_listener_with_its_owner() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let local = listener.local_addr().unwrap().to_string();
    let out = run_ifpin(&["audit", "--json"]);
    assert_exit(&out, 0);
    let report = json(&out);
    let ours: Vec<&Value> = report["sockets"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["local"] == local.as_str())
        .collect();
    assert_eq!(ours.len(), 1, "{ours:?}");
    let socket = ours[0];
    assert_eq!(socket["protocol"], "tcp");
    assert_eq!(socket["state"], "listen");
    assert_eq!(socket["remote"], "0.0.0.0:0");
    assert_eq!(socket["interface"], Value::Null);
    assert!(socket["netns"].as_str().is_some_and(|n| !n.is_empty()));
    let pids: Vec<u64> = socket["processes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["pid"].as_u64().unwrap())
        .collect();
    assert_eq!(pids, vec![u64::from(std::process::id())]);
    assert!(report["violations"].as_array().unwrap().is_empty());

    // The table shows it too, and --pid keeps only our sockets.
    let me = std::process::id().to_string();
    let out = run_ifpin(&["audit", "--pid", &me]);
    assert_exit(&out, 0);
    let text = String::from_utf8_lossy(&out.stdout);
    let rows: Vec<&str> = text.lines().skip(1).collect();
    assert!(
        rows.iter()
            .any(|r| r.contains(&local) && r.contains(&format!("{me}/"))),
        "{text}"
    );
    assert!(rows.iter().all(|r| r.contains(&format!("{me}/"))), "{text}");
    drop(listener);
}

#[test]
fn exit_status_is_1_with_violations_and_0_without() {
    // A wildcard listener on a plane port, unpinned: a violation.
    let listener = TcpListener::bind("0.0.0.0:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let dir = tempfile::tempdir().unwrap();
    let policy = write_policy(
        dir.path(),
        &format!(
            "[[plane]]\nname = \"test-plane\"\ninterface = \"lo\"\nprefixes = [\"192.0.2.0/24\"]\nports = [{port}]\n"
        ),
    );
    // Other programs on this host may break the test policy too: look at our own sockets.
    let me = std::process::id().to_string();
    let out = run_ifpin(&[
        "audit",
        "--policy",
        &policy,
        "--json",
        "--violations",
        "--pid",
        &me,
    ]);
    assert_exit(&out, 1);
    let report = json(&out);
    let violations = report["violations"].as_array().unwrap();
    assert_eq!(violations.len(), 1, "{violations:?}");
    let v = &violations[0];
    assert_eq!(v["rule"], "unpinned-plane-listener");
    assert_eq!(v["plane"], "test-plane");
    assert_eq!(v["protocol"], "tcp");
    assert_eq!(v["state"], "listen");
    assert_eq!(v["local"], format!("0.0.0.0:{port}"));
    assert_eq!(v["remote"], "0.0.0.0:0");
    assert_eq!(v["interface"], Value::Null);
    assert_eq!(v["processes"][0]["pid"], std::process::id());
    assert!(v["processes"][0]["command"].as_str().is_some());
    assert!(v["netns"].is_string());
    // --violations shows only the violating socket.
    assert_eq!(report["sockets"].as_array().unwrap().len(), 1);

    // The table says the same, violations first.
    let out = run_ifpin(&["audit", "--policy", &policy, "--pid", &me]);
    assert_exit(&out, 1);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.starts_with("1 violation of "), "{text}");
    assert!(
        text.contains("unpinned-plane-listener [test-plane]"),
        "{text}"
    );

    // Without the listener, the same policy passes.
    drop(listener);
    let out = run_ifpin(&["audit", "--policy", &policy, "--pid", &me]);
    assert_exit(&out, 0);
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("0 violations of "));
}

#[test]
fn policy_errors_exit_2_naming_file_line_and_column() {
    let dir = tempfile::tempdir().unwrap();
    let policy = write_policy(
        dir.path(),
        "[[plane]]\nname = \"backplane\"\ninterface = \"ctl0\"\nprefixes = [\"10.99.0.1/16\"]\n",
    );
    let out = run_ifpin(&["audit", "--policy", &policy]);
    assert_exit(&out, 2);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&format!("{policy}:4:13:")), "{err}");
    assert!(
        err.contains("10.99.0.1/16 has host bits set; did you mean 10.99.0.0/16?"),
        "{err}"
    );
    assert!(
        out.stdout.is_empty(),
        "nothing is audited with a bad policy"
    );

    let policy = write_policy(
        dir.path(),
        "[[plane]]\nname = \"x\"\ninterface = \"ctl0\"\nports = [1]\ncolour = 3\n",
    );
    let out = run_ifpin(&["audit", "--policy", &policy]);
    assert_exit(&out, 2);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!("{policy}:5:1:")) && err.contains("colour"),
        "{err}"
    );

    let out = run_ifpin(&["audit", "--policy", "/nonexistent/policy.toml"]);
    assert_exit(&out, 2);
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/policy.toml"));
}

#[test]
fn an_unknown_policy_interface_is_a_warning_not_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let policy = write_policy(
        dir.path(),
        "[[plane]]\nname = \"card9\"\ninterface = \"linecard9\"\nprefixes = [\"192.0.2.0/24\"]\n",
    );
    let out = run_ifpin(&["audit", "--policy", &policy]);
    assert_exit(&out, 0);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("warning") && err.contains("no interface linecard9"),
        "{err}"
    );
    assert!(err.contains(&format!("{policy}:3:13")), "{err}");
    let out = run_ifpin(&["audit", "--policy", &policy, "--json"]);
    let report = json(&out);
    assert!(
        report["warnings"][0]
            .as_str()
            .unwrap()
            .contains("linecard9")
    );
}

#[test]
fn usage_errors_exit_2() {
    for args in [
        &["audit", "--violations"][..],
        &["audit", "--interface", "this-name-is-too-long"],
        &["audit", "--pid", "abc"],
        &["audit", "--interface", "nosuch-if0"],
    ] {
        let out = run_ifpin(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert!(!out.stderr.is_empty());
    }
}

#[test]
fn no_owners_skips_the_process_lookup() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let local = listener.local_addr().unwrap().to_string();
    let report = json(&run_ifpin(&["audit", "--json", "--no-owners"]));
    let ours = report["sockets"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["local"] == local.as_str())
        .expect("our listener is listed");
    assert!(ours["processes"].as_array().unwrap().is_empty());
    assert_eq!(report["owners"], "not-read");
}

/// Without root, the audit still lists what it can see, and says owners may be missing.
#[test]
fn without_root_owners_may_be_missing_and_it_says_so() {
    use std::os::unix::process::CommandExt;
    if !netlab::require_privileged() {
        return;
    }
    // Held by this (root) process: an unprivileged audit sees the socket, not its owner.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let local = listener.local_addr().unwrap().to_string();
    // A copy uid 65534 can execute, wherever the build directory is.
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let bin = dir.path().join("ifpin");
    std::fs::copy(env!("CARGO_BIN_EXE_ifpin"), &bin).unwrap();
    std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755)).unwrap();
    let run = |args: &[&str]| {
        // A parallel test's fork may still hold the copy open for a moment (ETXTBSY).
        for _ in 0..50 {
            match Command::new(&bin).args(args).uid(65534).gid(65534).output() {
                Err(e) if e.raw_os_error() == Some(libc::ETXTBSY) => {
                    std::thread::sleep(std::time::Duration::from_millis(20))
                }
                result => return result.expect("run ifpin as uid 65534"),
            }
        }
        panic!("{} stayed busy", bin.display());
    };
    let out = run(&["audit", "--json"]);
    assert_exit(&out, 0);
    let report = json(&out);
    assert_eq!(report["owners"], "partial", "{}", report["owners"]);
    assert!(report["unreadable"].as_u64().unwrap() > 0);
    assert!(
        report["warnings"]
            .as_array()
            .unwrap()
            .iter()
            .any(|w| w.as_str().unwrap().contains("run as root")),
        "{}",
        report["warnings"]
    );
    let ours = report["sockets"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["local"] == local.as_str())
        .expect("the socket is still listed");
    assert!(ours["processes"].as_array().unwrap().is_empty());

    let out = run(&["audit"]);
    assert_exit(&out, 0);
    assert!(String::from_utf8_lossy(&out.stdout).contains("owners may be missing"));
    assert!(String::from_utf8_lossy(&out.stderr).contains("warning"));
    drop(listener);
}

/// A python3 process that runs `setup` (with a listener `s` already on 127.0.0.1), prints its
/// pid and port, then waits for stdin to close. Killed on drop.
struct Holder {
    child: std::process::Child,
    pid: u32,
    port: u16,
}

impl Holder {
    fn start(setup: &str) -> Holder {
        use std::io::BufRead;
        use std::process::Stdio;
        let program = format!(
            "import ctypes, os, socket, sys, threading, time\n\
             s = socket.socket(); s.bind(('127.0.0.1', 0)); s.listen()\n\
             {setup}\n\
             print(os.getpid(), s.getsockname()[1], flush=True)\n\
             sys.stdin.read()\n"
        );
        let mut child = Command::new("python3")
            .args(["-c", &program])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("python3");
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let mut words = line.split_whitespace();
        let pid = words.next().expect("pid").parse().unwrap();
        let port = words.next().expect("port").parse().unwrap();
        Holder { child, pid, port }
    }
}

impl Drop for Holder {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Any user can name a process anything: the name cannot add a row to the table, and escape
/// sequences never reach the terminal.
#[test]
fn a_forged_process_name_cannot_forge_a_row() {
    for (comm, shown) in [
        ("x\nudp   fake", r"x\nudp   fake"),
        ("\x1b[31mred\x1b[0m", r"\e[31mred\e[0m"),
    ] {
        let hex: String = comm.bytes().map(|b| format!("{b:02x}")).collect();
        let holder = Holder::start(&format!(
            "open('/proc/self/comm', 'wb').write(bytes.fromhex('{hex}'))"
        ));
        let pid = holder.pid.to_string();
        let out = run_ifpin(&["audit", "--pid", &pid]);
        assert_exit(&out, 0);
        assert!(
            !out.stdout.contains(&0x1b),
            "an escape sequence reached the output"
        );
        let text = String::from_utf8(out.stdout.clone()).unwrap();
        let rows: Vec<&str> = text.lines().collect();
        assert_eq!(rows.len(), 2, "one header, one row: {text}");
        assert!(
            rows[1].contains(&format!("127.0.0.1:{}", holder.port)),
            "{text}"
        );
        assert!(rows[1].ends_with(&format!("{pid}/{shown}")), "{text}");
        // JSON carries the name as it is.
        let report = json(&run_ifpin(&["audit", "--pid", &pid, "--json"]));
        assert_eq!(report["sockets"][0]["processes"][0]["command"], comm);
    }
}

#[test]
fn pid_of_a_missing_or_exited_process_is_an_error() {
    // Above PID_MAX_LIMIT (4194304): never a process.
    let out = run_ifpin(&["audit", "--pid", "4194305"]);
    assert_exit(&out, 2);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--pid 4194305: no such process"), "{err}");

    // A zombie: our child, exited, not reaped yet.
    let mut child = Command::new("true").spawn().unwrap();
    let pid = child.id();
    let stat = format!("/proc/{pid}/stat");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !std::fs::read_to_string(&stat).is_ok_and(|s| s.contains(") Z ")) {
        assert!(std::time::Instant::now() < deadline, "no zombie");
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    let out = run_ifpin(&["audit", "--pid", &pid.to_string()]);
    child.wait().unwrap();
    assert_exit(&out, 2);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("zombie") && err.contains("holds no socket"),
        "{err}"
    );
}

/// A process whose main thread exited while another lives has an empty `/proc/PID/fd`; its
/// sockets are still found, through the live thread.
#[test]
fn owners_are_found_when_the_main_thread_has_exited() {
    // The raw exit system call ends only the calling thread (exit_group ends them all).
    let holder = Holder::start(
        "threading.Thread(target=lambda: time.sleep(3600), daemon=True).start()\n\
         nr = {'x86_64': 60, 'aarch64': 93, 'riscv64': 93}[os.uname().machine]\n\
         print(os.getpid(), s.getsockname()[1], flush=True)\n\
         ctypes.CDLL(None).syscall(nr, 0)",
    );
    let pid = holder.pid.to_string();
    // The leader is a zombie with a live thread, and its fd table looks empty.
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let mut status = status;
    while !status.contains("State:\tZ") {
        assert!(std::time::Instant::now() < deadline, "{status}");
        std::thread::sleep(std::time::Duration::from_millis(10));
        status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    }
    assert_eq!(
        std::fs::read_dir(format!("/proc/{pid}/fd"))
            .unwrap()
            .count(),
        0
    );

    let out = run_ifpin(&["audit", "--pid", &pid, "--json"]);
    assert_exit(&out, 0);
    let report = json(&out);
    let local = format!("127.0.0.1:{}", holder.port);
    let sockets = report["sockets"].as_array().unwrap();
    assert!(
        sockets.iter().any(|s| s["local"] == local.as_str()),
        "{report}"
    );
    let out = run_ifpin(&["audit", "--pid", &pid]);
    assert_exit(&out, 0);
    assert!(String::from_utf8_lossy(&out.stdout).contains(&local));
}

/// `ifpin audit | head -1`: the reader goes away; the audit ends quietly with its own status.
#[test]
fn a_closed_stdout_ends_quietly() {
    use std::process::Stdio;
    let mut child = Command::new(env!("CARGO_BIN_EXE_ifpin"))
        .arg("audit")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Closed before the audit writes anything.
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    assert_exit(&out, 0);
    assert!(
        out.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `-i 7` and `-i '#7'` select sockets pinned to index 7 even when no interface has it (the
/// kernel keeps a socket's pin when its interface goes, and accepts any index).
#[test]
fn an_index_filter_selects_sockets_pinned_to_a_vanished_index() {
    const GONE: u32 = 987_654;
    let pinned = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    // The bare option (the kernel accepts any index unchecked): a pin to nothing.
    ifpin::pin::bind_device_by_index(&pinned, ifpin::IfIndex::new(GONE).unwrap()).unwrap();
    let local = pinned.local_addr().unwrap().to_string();
    let me = std::process::id().to_string();
    for filter in [GONE.to_string(), format!("#{GONE}")] {
        let out = run_ifpin(&["audit", "--json", "--pid", &me, "-i", &filter]);
        assert_exit(&out, 0);
        let report = json(&out);
        let listed: Vec<&str> = report["sockets"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["local"].as_str().unwrap())
            .collect();
        assert_eq!(listed, vec![local.as_str()], "-i {filter}");
        assert_eq!(report["sockets"][0]["interface_index"], GONE);
    }
    // The table shows the index.
    let out = run_ifpin(&["audit", "--pid", &me, "-i", &GONE.to_string()]);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains(&format!("#{GONE}")),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    drop(pinned);
    // Once nothing is pinned there, it selects nothing, and says so.
    let out = run_ifpin(&["audit", "-i", &format!("#{GONE}")]);
    assert_exit(&out, 2);
    assert!(String::from_utf8_lossy(&out.stderr).contains("no socket is pinned to it"));
    let out = run_ifpin(&["audit", "-i", "#x"]);
    assert_exit(&out, 2);
}

#[test]
fn an_interface_filter_matching_nothing_anywhere_is_an_error() {
    let out = run_ifpin(&["audit", "--all-netns", "-i", "nosuch-if0"]);
    assert_exit(&out, 2);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no such interface in any of the"), "{err}");
    // lo exists in every namespace.
    let out = run_ifpin(&["audit", "--all-netns", "-i", "lo"]);
    assert!(out.status.code() == Some(0), "{out:?}");
}

/// Runs `ifpin` with a deadline: a hang fails the test instead of stalling it.
fn ifpin_within_deadline(args: &[&str]) -> std::process::Output {
    use std::process::Stdio;
    let mut child = Command::new(env!("CARGO_BIN_EXE_ifpin"))
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while child.try_wait().unwrap().is_none() {
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("ifpin {args:?} did not return");
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    child.wait_with_output().unwrap()
}

fn audit_policy_within_deadline(path: &str) -> std::process::Output {
    ifpin_within_deadline(&["audit", "--policy", path])
}

#[test]
fn policy_files_that_are_not_regular_files_are_refused_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("policy.toml");
    assert!(
        Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap()
            .success()
    );
    let fifo = fifo.to_str().unwrap();
    for (path, what) in [
        (fifo, "is a FIFO, not a regular file"),
        ("/dev/zero", "is a character device, not a regular file"),
        ("/dev/urandom", "is a character device, not a regular file"),
    ] {
        let out = audit_policy_within_deadline(path);
        assert_exit(&out, 2);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(&format!("policy file {path} {what}")), "{err}");
        assert!(!err.contains("not valid"), "{err}");
        assert!(out.stdout.is_empty());
    }
    let out = audit_policy_within_deadline("/nonexistent/policy.toml");
    assert_exit(&out, 2);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("policy file /nonexistent/policy.toml: no such file")
            && !err.contains("not valid"),
        "{err}"
    );
    // `exec --policy` reads it with the same loader.
    for (path, what) in [
        (fifo, "is a FIFO, not a regular file"),
        ("/dev/zero", "is a character device, not a regular file"),
    ] {
        let out = ifpin_within_deadline(&["exec", "--policy", path, "--plane", "x", "--", "true"]);
        assert_exit(&out, 2);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(&format!("policy file {path} {what}")), "{err}");
    }
    // Invalid UTF-8: file, line and column of the first bad byte.
    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, b"[[plane]]\nname = 'a\xffb'\n").unwrap();
    let out = audit_policy_within_deadline(bad.to_str().unwrap());
    assert_exit(&out, 2);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!("{}:2:10: not valid UTF-8", bad.display())),
        "{err}"
    );
}
