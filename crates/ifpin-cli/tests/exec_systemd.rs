//! `ifpin exec` against a real systemd: a confined program must not be able to have the service
//! manager run code for it outside the confinement.
//!
//! A Debian systemd boots (`netlab::systemd::Container`, systemd-nspawn) in the host namespace
//! of a chassis: `ctl0` to the backplane, `eth1` to the front port, and the routing table sends
//! the control destination out of `eth1`. The built `ifpin` is bound into it. Inside, a program
//! under `ifpin exec -i ctl0` asks systemd to run a TCP client for the control destination; both
//! peers answer on [`PORT`] with their name, so where the client's connection went is
//! unmistakable: `backplane` (through `ctl0`, confined) or `front` (out of `eth1`: it escaped),
//! and a frame counter on the front link sees the escape. Every request is made by a program
//! with an empty capability bounding set and no_new_privs (`setpriv --bounding-set -all
//! --no-new-privs`): systemd authorises its clients by uid, so capabilities make no difference.
//!
//! The ways to ask:
//! - `systemd-run --wait --pipe`: a transient service, over the D-Bus system bus
//!   (`/run/dbus/system_bus_socket`; waiting and piping need bus signals);
//! - `systemd-run` (no `--wait`): a transient service, over systemd's private socket
//!   (`/run/systemd/private`), falling back to the system bus if that cannot be connected to;
//! - `systemd-run --scope` (same sockets): the client is systemd-run's own child, still without
//!   capabilities, but systemd moves it into a new scope cgroup, out of ifpin's and away from its
//!   filter;
//! - `busctl call ... StartTransientUnit`: the raw D-Bus method, over the system bus.
//!
//! The tests:
//! - negative control (`--level enforced`): every request is served, the client answers
//!   `front`, frames involving the control destination cross the front link;
//! - `sealed`: every request fails to reach systemd (the program runs where systemd's sockets
//!   cannot be connected to), ifpin exits with the program's failing status (1), no transient
//!   code runs, nothing crosses the front link;
//! - control of the sealed checks: at `enforced`, with both sockets masked by hand in a mount
//!   namespace around ifpin ([`MASK`]), every request fails exactly as the sealed test expects.
//!   Masking one of the two is not enough: each kind of request has a way through the other.
//!
//! A direct connection by the confined program (no systemd involved) is the baseline in each
//! test: it answers `backplane` and puts nothing on the front link.

#[path = "support/mod.rs"]
mod support;

use std::path::Path;
use std::process::Output;
use std::time::{Duration, Instant};

use netlab::systemd::{Container, Tree};
use netlab::{Chassis, FrameCounter, Peer, Proto, Served};

const PORT: u16 = 7_801;
/// How long a transient unit may take to write its answer (negative control).
const ANSWER_WAIT: Duration = Duration::from_secs(15);
/// How long the sealed runs wait for an answer that must not come.
const NO_ANSWER_WAIT: Duration = Duration::from_secs(2);
/// Upper bound on one `ifpin exec` run inside the container (`timeout` kills it after).
const RUN_LIMIT_SECS: u32 = 60;

/// The capability-less, no_new_privs wrapper every request runs under.
const SETPRIV: &[&str] = &["setpriv", "--bounding-set", "-all", "--no-new-privs", "--"];

/// Runs the rest of the command line in a new mount namespace where systemd's private socket
/// (`/run/systemd/private`) cannot be connected to (`/dev/null` bound over it) and the system
/// bus socket is gone (an empty tmpfs over `/run/dbus`): what the sealed level is to do for
/// its program, done by hand around ifpin for [`masking_systemds_sockets_is_enough`].
const MASK: &[&str] = &[
    "unshare",
    "--mount",
    "--propagation=private",
    "--",
    "sh",
    "-c",
    "mount --bind /dev/null /run/systemd/private && mount -t tmpfs -o mode=0755 none /run/dbus && exec \"$@\"",
    "sh",
];

/// A shell command connecting to the control destination and printing its answer.
fn client() -> String {
    format!("exec 3<>/dev/tcp/{}/{PORT} && cat <&3", Chassis::CONTROL_V4)
}

/// [`client`], writing its answer (or its error) to `file`, complete once the file exists.
fn client_to_file(file: &str) -> String {
    format!("{{ {}; }} >{file}.tmp 2>&1; mv {file}.tmp {file}", client())
}

/// Where a request's transient code leaves its answer.
enum Answer {
    /// On the program's stdout (`--pipe`, `--scope`, or the program itself).
    Stdout,
    /// In this file inside the container (units started without waiting for them).
    File(String),
}

/// One way of running [`client`].
struct Vector {
    name: &'static str,
    argv: Vec<String>,
    answer: Answer,
    /// Whether systemd is asked (false: the confined program connects itself, the baseline).
    via_systemd: bool,
}

fn strings(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| (*s).to_owned()).collect()
}

/// The vectors, with unit and file names unique to `tag`.
fn vectors(tag: &str) -> Vec<Vector> {
    let service_file = format!("/run/netlab-answer-run-{tag}");
    let bus_file = format!("/run/netlab-answer-bus-{tag}");
    let mut run_service = strings(&["systemd-run", "--quiet"]);
    run_service.push(format!("--unit=netlab-run-{tag}"));
    run_service.extend(strings(&["--", "bash", "-c"]));
    run_service.push(client_to_file(&service_file));
    let mut busctl = strings(&[
        "busctl",
        "--",
        "call",
        "org.freedesktop.systemd1",
        "/org/freedesktop/systemd1",
        "org.freedesktop.systemd1.Manager",
        "StartTransientUnit",
        "ssa(sv)a(sa(sv))",
    ]);
    busctl.push(format!("netlab-bus-{tag}.service"));
    busctl.extend(strings(&[
        "fail",
        "1",
        "ExecStart",
        "a(sasb)",
        "1",
        "/bin/bash",
        "3",
        "bash",
        "-c",
    ]));
    busctl.push(client_to_file(&bus_file));
    busctl.extend(strings(&["false", "0"]));
    let with_client = |prefix: &[&str]| {
        let mut v = strings(prefix);
        v.push(client());
        v
    };
    vec![
        Vector {
            name: "direct (baseline)",
            argv: with_client(&["bash", "-c"]),
            answer: Answer::Stdout,
            via_systemd: false,
        },
        Vector {
            name: "systemd-run --wait --pipe",
            argv: with_client(&[
                "systemd-run",
                "--wait",
                "--pipe",
                "--quiet",
                "--",
                "bash",
                "-c",
            ]),
            answer: Answer::Stdout,
            via_systemd: true,
        },
        Vector {
            name: "systemd-run (private socket)",
            argv: run_service,
            answer: Answer::File(service_file),
            via_systemd: true,
        },
        Vector {
            name: "systemd-run --scope",
            argv: with_client(&["systemd-run", "--scope", "--quiet", "--", "bash", "-c"]),
            answer: Answer::Stdout,
            via_systemd: true,
        },
        Vector {
            name: "busctl StartTransientUnit",
            argv: busctl,
            answer: Answer::File(bus_file),
            via_systemd: true,
        },
    ]
}

/// A chassis with responders, a front counter and a booted systemd in its host namespace.
struct Rig<'a> {
    container: Container<'a>,
    front: FrameCounter,
    served: Served,
}

impl<'a> Rig<'a> {
    fn new(chassis: &'a Chassis) -> Rig<'a> {
        let served = chassis.serve(Proto::Tcp, PORT).expect("responders");
        let front = chassis.front_counter().expect("front counter");
        let tree = Tree::ensure().expect("the cached Debian systemd tree");
        if let Some(took) = tree.build_time() {
            eprintln!(
                "built the systemd tree {} in {:.0} s",
                tree.path().display(),
                took.as_secs_f64()
            );
        }
        let container = Container::boot(
            &tree,
            chassis.host(),
            &[(Path::new(support::ifpin()), "/usr/local/bin/ifpin")],
        )
        .expect("systemd boots in the chassis host namespace");
        eprintln!(
            "container {} booted in {:.2} s",
            container.machine(),
            container.boot_time().as_secs_f64()
        );
        let rig = Rig {
            container,
            front,
            served,
        };
        rig.frames(); // whatever booting caused is not counted
        rig
    }

    /// Program frames on the front link since the last call, and their listing.
    fn frames(&self) -> (usize, String) {
        self.front.settle();
        let seen = (
            self.front.count(support::is_program_frame),
            self.front.describe(),
        );
        self.front.clear();
        seen
    }

    /// Runs `ifpin exec -i ctl0 --level LEVEL --report FILE -- argv...` inside the container
    /// (under `timeout`; with `mask`, in a mount namespace where systemd's sockets are masked,
    /// see [`MASK`]), returning its output and the report's `level`.
    fn exec(&self, level: &str, mask: bool, tag: &str, argv: &[String]) -> (Output, String) {
        let report = format!("/run/ifpin-report-{tag}.json");
        let limit = RUN_LIMIT_SECS.to_string();
        let mut cmd = self.container.command("timeout");
        cmd.args(["--kill-after=5", &limit]);
        if mask {
            cmd.args(MASK);
        }
        let output = cmd
            .args(["ifpin", "exec", "-i", Chassis::CTL0])
            .args(["--level", level, "--report", &report, "--"])
            .args(argv)
            .output()
            .expect("nsenter runs");
        let host_report = self.container.host_path(&report);
        let level_held = std::fs::read_to_string(&host_report)
            .ok()
            .and_then(|text| serde_json::from_str::<serde_json::Value>(&text).ok())
            .and_then(|v| v["level"].as_str().map(str::to_owned))
            .unwrap_or_else(|| "(no report)".to_owned());
        let _ = std::fs::remove_file(host_report);
        (output, level_held)
    }

    /// The answer a vector's client left, waiting up to `wait` for a file answer.
    fn answer(&self, vector: &Vector, output: &Output, wait: Duration) -> Option<String> {
        match &vector.answer {
            Answer::Stdout => {
                let text = String::from_utf8_lossy(&output.stdout).trim().to_owned();
                (!text.is_empty()).then_some(text)
            }
            Answer::File(file) => {
                let path = self.container.host_path(file);
                let deadline = Instant::now() + wait;
                loop {
                    if let Ok(text) = std::fs::read_to_string(&path) {
                        let _ = std::fs::remove_file(&path);
                        return Some(text.trim().to_owned());
                    }
                    if Instant::now() >= deadline {
                        return None;
                    }
                    std::thread::sleep(Duration::from_millis(50));
                }
            }
        }
    }
}

/// What one vector did at one level.
struct Outcome {
    code: Option<i32>,
    answer: Option<String>,
    frames: usize,
    listing: String,
    front_hits: usize,
    level_held: String,
    stderr: String,
}

fn run_vector(
    rig: &Rig,
    level: &str,
    mask: bool,
    vector: &Vector,
    tag: &str,
    wait: Duration,
) -> Outcome {
    let hits_before = rig.served.hits(Peer::Front);
    let mut argv = strings(SETPRIV);
    argv.extend(vector.argv.iter().cloned());
    let (output, level_held) = rig.exec(level, mask, tag, &argv);
    let answer = rig.answer(vector, &output, wait);
    let (frames, listing) = rig.frames();
    Outcome {
        code: output.status.code(),
        answer,
        frames,
        listing,
        front_hits: rig.served.hits(Peer::Front) - hits_before,
        level_held,
        stderr: String::from_utf8_lossy(&output.stderr).trim().to_owned(),
    }
}

fn row(level: &str, vector: &Vector, o: &Outcome) -> String {
    format!(
        "{level:9} {:30} exit {:?}  answer {:?}  {} frame(s) on the front, {} front hit(s)\n          stderr: {}",
        vector.name,
        o.code,
        o.answer,
        o.frames,
        o.front_hits,
        o.stderr.replace('\n', "\n                  ")
    )
}

/// The confined program really runs without capabilities and with no_new_privs.
fn check_setpriv(rig: &Rig, level: &str, failures: &mut Vec<String>) {
    let mut argv = strings(SETPRIV);
    argv.extend(strings(&[
        "grep",
        "-E",
        "^(CapEff|CapBnd|NoNewPrivs):",
        "/proc/self/status",
    ]));
    let (output, _) = rig.exec(level, false, &format!("{level}-caps"), &argv);
    let status = String::from_utf8_lossy(&output.stdout);
    let want = [
        "CapEff:\t0000000000000000",
        "CapBnd:\t0000000000000000",
        "NoNewPrivs:\t1",
    ];
    if !want.iter().all(|w| status.contains(w)) {
        failures.push(format!(
            "at {level}, the setpriv wrapper did not leave the program without capabilities \
             and with no_new_privs: {status:?} (stderr {})",
            String::from_utf8_lossy(&output.stderr)
        ));
    }
}

#[test]
fn negative_control_systemd_runs_code_outside_the_enforced_level() {
    if !netlab::require_privileged() {
        return;
    }
    let chassis = Chassis::new().expect("chassis");
    let rig = Rig::new(&chassis);
    let mut table = Vec::new();
    let mut failures = Vec::new();
    check_setpriv(&rig, "enforced", &mut failures);
    for (i, vector) in vectors("enforced").iter().enumerate() {
        let o = run_vector(
            &rig,
            "enforced",
            false,
            vector,
            &format!("enforced-{i}"),
            ANSWER_WAIT,
        );
        table.push(row("enforced", vector, &o));
        let name = vector.name;
        if o.level_held != "enforced" {
            failures.push(format!("{name}: report level {:?}", o.level_held));
        }
        if o.code != Some(0) {
            failures.push(format!(
                "{name}: ifpin exited {:?}; stderr:\n{}",
                o.code, o.stderr
            ));
        }
        if !vector.via_systemd {
            // Baseline: the confined program itself stays on ctl0.
            if o.answer.as_deref() != Some("backplane") || o.frames != 0 || o.front_hits != 0 {
                failures.push(format!(
                    "{name}: the confined program's own connection should reach the backplane \
                     and put nothing on the front link: answer {:?}, {}",
                    o.answer, o.listing
                ));
            }
            continue;
        }
        // The escape: systemd ran the client outside ifpin's cgroup, out of eth1.
        if o.answer.as_deref() != Some("front") {
            failures.push(format!(
                "{name}: expected the transient client to be answered by the front peer, got \
                 {:?}",
                o.answer
            ));
        }
        if o.frames == 0 || o.front_hits == 0 {
            failures.push(format!(
                "{name}: expected the connection on the front link ({} front hit(s)): {}",
                o.front_hits, o.listing
            ));
        }
    }
    eprintln!("{}", table.join("\n"));
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn sealed_programs_cannot_have_systemd_run_code_for_them() {
    if !netlab::require_privileged() {
        return;
    }
    let chassis = Chassis::new().expect("chassis");
    let rig = Rig::new(&chassis);
    let mut failures = Vec::new();
    check_setpriv(&rig, "sealed", &mut failures);
    let table = expect_no_escape(&rig, "sealed", false, &mut failures);
    eprintln!("{}", table.join("\n"));
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Control for the sealed test: at `enforced`, with systemd's two sockets masked by hand
/// around ifpin ([`MASK`]), every vector fails the way the sealed test expects. So those two
/// paths are all a program needs to lose, and the sealed test's checks can pass.
#[test]
fn masking_systemds_sockets_is_enough() {
    if !netlab::require_privileged() {
        return;
    }
    let chassis = Chassis::new().expect("chassis");
    let rig = Rig::new(&chassis);
    let mut failures = Vec::new();
    let table = expect_no_escape(&rig, "enforced", true, &mut failures);
    eprintln!("{}", table.join("\n"));
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Runs every vector at `level` (with `mask`, see [`MASK`]) and records in `failures` each one
/// that reached systemd, left ifpin with another status than the program's failure, or put
/// anything on the front link. Returns the table of outcomes.
fn expect_no_escape(rig: &Rig, level: &str, mask: bool, failures: &mut Vec<String>) -> Vec<String> {
    let label = if mask { "masked" } else { level };
    let mut table = Vec::new();
    for (i, vector) in vectors(label).iter().enumerate() {
        let o = run_vector(
            rig,
            level,
            mask,
            vector,
            &format!("{label}-{i}"),
            NO_ANSWER_WAIT,
        );
        table.push(row(label, vector, &o));
        let name = vector.name;
        if o.level_held != level {
            failures.push(format!("{name}: report level {:?}", o.level_held));
        }
        if o.frames != 0 || o.front_hits != 0 {
            failures.push(format!(
                "{name} at {label}: the connection crossed the front link ({} front hit(s)): {}",
                o.front_hits, o.listing
            ));
        }
        if !vector.via_systemd {
            if o.code != Some(0) || o.answer.as_deref() != Some("backplane") {
                failures.push(format!(
                    "{name}: the confined program's own connection should reach the backplane: \
                     exit {:?}, answer {:?}, stderr:\n{}",
                    o.code, o.answer, o.stderr
                ));
            }
            continue;
        }
        // systemd-run and busctl exit 1 when they cannot reach systemd; ifpin passes the
        // program's status on (2 would be ifpin's own failure, 124 the time limit).
        if o.code != Some(1) {
            failures.push(format!(
                "{name} at {label}: expected ifpin to exit with the program's failure (1), got \
                 {:?}; stderr:\n{}",
                o.code, o.stderr
            ));
        }
        if let Some(answer) = &o.answer {
            failures.push(format!(
                "{name} at {label}: systemd ran the client for the confined program (answer \
                 {answer:?})"
            ));
        }
    }
    table
}
