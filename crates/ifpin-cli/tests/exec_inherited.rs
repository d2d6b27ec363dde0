//! Sockets created outside the confinement and handed down to the program.
//!
//! cgroup BPF programs hold a socket by the cgroup that created it, so an inet socket the
//! program inherits would not be held (see `sockets_created_outside_are_not_confined` in the
//! library's tests). `ifpin exec` withholds such a socket at fd 3 and above (the program never
//! receives it; the report says so), and refuses to run with one as stdin, stdout or stderr.

#[path = "support/mod.rs"]
mod support;

use std::os::fd::OwnedFd;
use std::process::Stdio;

use netlab::Chassis;
use support::{assert_cgroup_gone, collect, exec_command, ifpin, ifpin_cgroups_of, python3};

const PORT: u16 = 7_651;

/// Creates a UDP socket in its own namespace, puts it at fd 3 (inheritable) and runs the
/// command given as its arguments with fd 3 passed down; exits with the command's status.
const OUTER: &str = "\
import os, socket, subprocess, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
if s.fileno() != 3:
    os.dup2(s.fileno(), 3)
os.set_inheritable(3, True)
sys.exit(subprocess.run(sys.argv[1:], pass_fds=(3,)).returncode)
";

/// Sends one datagram from the socket at fd 3 to argv[1]:argv[2]; prints `sent`, or the errno
/// name of the failure (`EBADF`: there is no fd 3).
const INNER: &str = "\
import errno, socket, sys
try:
    s = socket.socket(fileno=3)
    s.sendto(b'inherited', (sys.argv[1], int(sys.argv[2])))
    print('sent')
except OSError as e:
    print(errno.errorcode.get(e.errno, str(e.errno)))
";

fn inner_argv() -> Vec<String> {
    vec![
        python3().to_owned(),
        "-c".to_owned(),
        INNER.to_owned(),
        Chassis::CONTROL_V4.to_string(),
        PORT.to_string(),
    ]
}

#[test]
fn an_inherited_inet_socket_is_withheld_from_the_program() {
    if !netlab::require_privileged() {
        return;
    }
    let chassis = Chassis::new().unwrap();
    let front = chassis.front_counter().unwrap();
    let control = chassis.control_v4();

    // Under ifpin exec: fd 3 never reaches the program, nothing leaves through eth1.
    let report =
        std::env::temp_dir().join(format!("ifpin-exec-inherited-{}.json", std::process::id()));
    let mut argv = vec![python3().to_owned(), "-c".to_owned(), OUTER.to_owned()];
    argv.extend(
        [ifpin(), "exec", "-i", "ctl0", "--report"]
            .map(str::to_owned)
            .into_iter()
            .chain([report.display().to_string(), "--".to_owned()])
            .chain(inner_argv()),
    );
    let mut outer = chassis.host().command(&argv[0]);
    outer.args(&argv[1..]);
    let run = collect(outer.output().unwrap(), &report);
    assert_eq!(run.status.code(), Some(0), "{}", run.stderr);
    assert_eq!(run.stdout.trim(), "EBADF", "stderr:\n{}", run.stderr);
    assert_eq!(
        run.report()["withheld_sockets"],
        serde_json::json!([3]),
        "{}",
        run.report()
    );
    assert!(
        run.stderr.contains("withheld inherited fd(s) 3"),
        "{}",
        run.stderr
    );
    front.settle();
    assert_eq!(
        front.count(|f| support::is_program_frame(f) && f.involves(control)),
        0,
        "the inherited socket leaked out of the front: {}",
        front.describe()
    );

    // Negative control: the same inherited socket, without ifpin exec, leaves through eth1
    // and the counter sees it.
    let mut argv = vec![python3().to_owned(), "-c".to_owned(), OUTER.to_owned()];
    argv.extend(inner_argv());
    let out = chassis
        .host()
        .command(&argv[0])
        .args(&argv[1..])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "sent");
    front.settle();
    assert!(
        front.count_involving(control) >= 1,
        "the uncontained run should be seen on the front link: {}",
        front.describe()
    );
}

#[test]
fn an_inet_socket_as_stdin_is_refused() {
    if !netlab::require_privileged() {
        return;
    }
    let chassis = Chassis::new().unwrap();
    let socket = chassis
        .host()
        .run(|| std::net::UdpSocket::bind("0.0.0.0:0"))
        .unwrap()
        .unwrap();
    let marker = std::env::temp_dir().join(format!("ifpin-stdin-socket-{}", std::process::id()));
    let _ = std::fs::remove_file(&marker);
    let touch = ["/usr/bin/touch".to_owned(), marker.display().to_string()];
    let (mut cmd, report) = exec_command(chassis.host(), &["-i", "ctl0"], &touch);
    let child = cmd
        .stdin(Stdio::from(OwnedFd::from(socket)))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let run = collect(child.wait_with_output().unwrap(), &report);
    assert_eq!(run.status.code(), Some(2), "{}", run.stderr);
    for part in [
        "fd 0",
        "AF_INET socket created outside the confinement",
        "let it open its own sockets",
    ] {
        assert!(run.stderr.contains(part), "{part:?} in:\n{}", run.stderr);
    }
    assert!(!run.stderr.contains("panicked"), "{}", run.stderr);
    assert!(!marker.exists(), "the program ran");
    assert!(run.report.is_none(), "a report was written");
    assert_eq!(
        ifpin_cgroups_of(pid),
        Vec::<std::path::PathBuf>::new(),
        "a cgroup was left"
    );
}

/// A directory of the cgroup hierarchy opened outside and inherited (fd 5 here) would lead a
/// sealed program straight to the host's writable hierarchy (`/proc/self/fd/5/cgroup.procs`),
/// whatever its own mount namespace shows: ifpin withholds it.
#[test]
fn an_inherited_cgroup_directory_is_withheld() {
    if !netlab::require_privileged() {
        return;
    }
    let mount = support::cgroup2_mount();
    let escape = "echo $$ > /proc/self/fd/5/cgroup.procs && echo moved || echo refused";
    // Negative control: with the descriptor, a process moves itself to the root cgroup.
    let direct = std::process::Command::new("bash")
        .arg("-c")
        .arg(format!("exec 5<{}; sh -c '{escape}'", mount.display()))
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&direct.stdout).trim(), "moved");

    let report =
        std::env::temp_dir().join(format!("ifpin-exec-cgroupfd-{}.json", std::process::id()));
    let out = std::process::Command::new("bash")
        .arg("-c")
        .arg(format!(
            "exec 5<{}; {} exec -i lo --report {} -- sh -c '{escape}' 2>/dev/null",
            mount.display(),
            ifpin(),
            report.display()
        ))
        .output()
        .unwrap();
    let run = collect(out, &report);
    assert_eq!(run.stdout.trim(), "refused", "{}", run.stderr);
    assert_eq!(run.report()["withheld_sockets"], serde_json::json!([5]));
    assert_cgroup_gone(&run.cgroup());
}
