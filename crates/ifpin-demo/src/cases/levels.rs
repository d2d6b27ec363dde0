//! What each guarantee level holds: the override vectors that got out of a pinned socket, and
//! the escape vectors of a hostile root program, each run under `ifpin exec` at a level.
//!
//! Every run goes through the same code path as a user's `ifpin exec`: the demo starts the
//! `ifpin` binary itself inside the chassis host as
//!
//! ```text
//! ifpin exec -i ctl0 --level LEVEL --json [--allow-loopback] -- ifpin demo-vector VECTOR ARGS...
//! ```
//!
//! (the program and its first argument are [`ChildCommand`]), counts the frames of the run on
//! both links as for the other cases, and reads the `blocked` counters of the exec report
//! (printed on stderr with `--json`). The vector itself runs in the confined program
//! ([`run_child`]) and prints one JSON line on stdout: the kernel's answer.
//!
//! Override vectors run at `enforced` and `sealed` (their `pinned` result is the kernel finding
//! measured before, on a socket pinned by the library). Escape vectors run at `pinned`,
//! `enforced` and `sealed`; those that reach into a process outside get one, started as uid
//! 65534 and ended afterwards; `kill-parent` runs last, and a supervisor it killed is cleaned
//! up with `ifpin exec --cleanup`.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::fd::AsFd;
use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

use ifpin::Level;
use serde::Serialize;
use serde_json::Value;

use super::{LinkFrames, Pinning, SERVICE_PORT};
use crate::catalogue::escape::{self, JOIN_GROUPS, Needs};
use crate::catalogue::{
    self, Answer, Documented, Errno, Escape, EscapeArgs, EscapeReport, LinkIndex, Vector,
};
use crate::chassis::Chassis;

/// Each run of the levels section, with placeholders.
pub const COMMAND: &str =
    "ifpin exec -i ctl0 --level LEVEL --json -- ifpin demo-vector VECTOR ARGS...";
/// The uid of the process outside that the escape vectors reach into.
pub const OUTSIDE_UID: u32 = 65_534;
/// How long the multicast vector keeps its memberships.
const MCAST_HOLD_MS: u32 = 300;
/// How long the error-queue vector waits for the front's ICMP error.
const ERRQUEUE_WAIT_MS: u32 = 500;
/// The port the error-queue vector listens on.
const ERRQUEUE_PORT: u16 = 7_205;

/// How to start the `ifpin` binary: the program, and the hidden subcommand that runs one
/// vector (`ifpin demo-vector`).
#[derive(Debug, Clone)]
pub struct ChildCommand {
    /// The `ifpin` binary (`std::env::current_exe()`).
    pub program: PathBuf,
    /// The hidden subcommand that runs a vector, e.g. `["demo-vector"]`.
    pub vector_args: Vec<String>,
}

/// What the levels section runs: an override vector or an escape vector.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum AnyVector {
    /// An override vector against a pinned socket.
    Override(Vector),
    /// An escape vector of a root program.
    Escape(Escape),
}

impl AnyVector {
    /// The vector's id.
    pub fn id(self) -> &'static str {
        match self {
            Self::Override(v) => v.id(),
            Self::Escape(e) => e.id(),
        }
    }

    /// Whether `docs/kernel.md` records that it gets out at `level`.
    pub fn documented_out(self, level: Level) -> bool {
        match self {
            Self::Override(v) => {
                let info = v.info();
                info.documented == Documented::Leaks && info.closed_by.is_none_or(|c| level < c)
            }
            Self::Escape(e) => level < e.info().closed_by,
        }
    }

    /// The levels it runs at under `ifpin exec`.
    pub fn levels(self) -> &'static [Level] {
        match self {
            Self::Override(_) => &[Level::Enforced, Level::Sealed],
            Self::Escape(_) => &Level::ALL,
        }
    }
}

/// One vector at one level.
#[derive(Debug, Clone, Serialize)]
pub struct LevelCase {
    /// The vector's id.
    pub vector: &'static str,
    /// `override` or `escape`.
    pub kind: &'static str,
    /// The level.
    pub level: Level,
    /// Whether the run went through `ifpin exec` (false: the pinned column of an override
    /// vector, which is its kernel finding).
    pub exec: bool,
    /// What the vector ran with (`unprivileged`, `CAP_NET_RAW`, `root`, `root, no
    /// capabilities`...), as the program saw it.
    pub run_as: String,
    /// The kernel's answer: `accepted`, `ERRNO from CALL`, or how the program ended.
    pub answer: String,
    /// Frames counted on each link during the run.
    pub frames: LinkFrames,
    /// The nonzero `blocked` counters of the exec report.
    pub blocked: BTreeMap<String, u64>,
    /// Whether it got out: frames on the front link, or (escape vectors) the step that takes it
    /// out of the confinement worked.
    pub got_out: bool,
    /// Whether `docs/kernel.md` records that it gets out at this level.
    pub documented_out: bool,
    /// `got_out == documented_out`.
    pub as_documented: bool,
    /// `ifpin exec`'s exit status, or the signal that killed it.
    pub ifpin_exit: String,
    /// The escape vector's steps, as the program reported them.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub steps: Option<EscapeReport>,
    /// The frames seen on the front link, decoded (at most a few).
    pub front_frames: Vec<String>,
}

/// The levels section of a run.
#[derive(Debug, Clone, Serialize)]
pub struct LevelsReport {
    /// The command each run is, with placeholders.
    pub command: String,
    /// Every vector at every level, vector by vector.
    pub cases: Vec<LevelCase>,
}

/// An error of the levels section.
#[derive(Debug, thiserror::Error)]
pub enum LevelError {
    /// Starting or talking to `ifpin exec` failed.
    #[error("ifpin exec ({what}) failed: {source}")]
    Child {
        /// What was being done.
        what: &'static str,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// `ifpin exec` could not run the vector at all (exit 2 and no report).
    #[error("ifpin exec --level {level} could not run {vector}: {stderr}")]
    Refused {
        /// The vector.
        vector: &'static str,
        /// The level.
        level: Level,
        /// What it said.
        stderr: String,
    },
    /// The lab failed.
    #[error(transparent)]
    Lab(#[from] crate::Error),
    /// `SIGINT`/`SIGTERM` arrived.
    #[error("interrupted")]
    Interrupted,
}

/// A process outside the confinement, of another uid, holding a UDP socket: what
/// `proc-root-cgroup` and `borrow-fd` reach into. Ended on drop.
pub(super) struct Outside {
    child: Child,
    /// Its socket's descriptor number.
    fd: u32,
}

impl Outside {
    pub(super) fn start(host: &crate::Netns, command: &ChildCommand) -> Result<Self, LevelError> {
        let mut cmd = host.command(&command.program);
        cmd.args(&command.vector_args)
            .arg(HOLD_SOCKET)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        let io = |what| move |source| LevelError::Child { what, source };
        let mut child = cmd.spawn().map_err(io("starting the outside process"))?;
        let mut line = String::new();
        let read = child
            .stdout
            .take()
            .map(|out| BufReader::new(out).read_line(&mut line));
        let fd = line.trim().parse().ok();
        match (read, fd) {
            (Some(Ok(_)), Some(fd)) => Ok(Self { child, fd }),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                Err(io("the outside process")(std::io::Error::other(format!(
                    "printed {line:?} instead of its socket's descriptor"
                ))))
            }
        }
    }
}

impl Drop for Outside {
    fn drop(&mut self) {
        drop(self.child.stdin.take());
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The word that makes `ifpin demo-vector` hold a socket as the process outside.
pub const HOLD_SOCKET: &str = "hold-socket";

/// The arguments an escape vector gets in the chassis.
pub(super) fn escape_args(
    escape: Escape,
    eth1: LinkIndex,
    outside: Option<&Outside>,
) -> EscapeArgs {
    let dst = EscapeArgs::default()
        .with("dst", Chassis::CONTROL_V4)
        .with("port", SERVICE_PORT);
    match escape.info().needs {
        Needs::Destination => dst,
        Needs::Path(path) => EscapeArgs::default().with("path", path),
        Needs::Outside => {
            let (pid, fd) = outside.map_or((0, 0), |o| (o.child.id(), o.fd));
            dst.with("pid", pid).with("fd", fd).with("uid", OUTSIDE_UID)
        }
        Needs::Multicast => EscapeArgs::default()
            .with("index", eth1)
            .with("group4", JOIN_GROUPS.group4)
            .with("ssm-group", JOIN_GROUPS.ssm_group)
            .with("ssm-source", Chassis::FRONT_V4)
            .with("group6", JOIN_GROUPS.group6)
            .with("iface-addr", Chassis::HOST_ETH1_V4)
            .with("legacy-group", JOIN_GROUPS.legacy_group)
            .with("join-group", JOIN_GROUPS.join_group)
            .with("source-group", JOIN_GROUPS.source_group)
            .with("hold-ms", MCAST_HOLD_MS),
        Needs::ErrorQueue => EscapeArgs::default()
            .with("port", ERRQUEUE_PORT)
            .with("wait-ms", ERRQUEUE_WAIT_MS),
        Needs::Nothing => EscapeArgs::default(),
        Needs::Interface => EscapeArgs::default().with("iface", Chassis::ETH1),
    }
}

/// The port the error-queue vector listens on, for the ICMP error the front sends it.
pub(super) fn errqueue_port() -> u16 {
    ERRQUEUE_PORT
}

/// What one `ifpin exec` run gave.
pub(super) struct ExecRun {
    /// The program's stdout lines.
    pub lines: Vec<String>,
    /// The exec report, if ifpin printed one.
    pub report: Option<Value>,
    /// ifpin's stderr lines that are not the report.
    pub stderr: String,
    /// ifpin's exit status, or the signal that killed it.
    pub status: std::process::ExitStatus,
}

impl ExecRun {
    /// The last JSON line of the program.
    pub fn result(&self) -> Option<Value> {
        self.lines
            .iter()
            .rev()
            .find(|l| l.starts_with('{'))
            .and_then(|l| serde_json::from_str(l).ok())
    }

    /// The nonzero `blocked` counters of the report.
    pub fn blocked(&self) -> BTreeMap<String, u64> {
        self.report
            .as_ref()
            .and_then(|r| r["blocked"].as_object())
            .map(|counters| {
                counters
                    .iter()
                    .filter_map(|(k, v)| Some((k.clone(), v.as_u64()?)))
                    .filter(|(_, v)| *v > 0)
                    .collect()
            })
            .unwrap_or_default()
    }

    /// How ifpin ended.
    pub fn exit(&self) -> String {
        match (self.status.code(), self.status.signal()) {
            (Some(code), _) => format!("exit {code}"),
            (None, Some(signal)) => format!(
                "killed by {}",
                nix::sys::signal::Signal::try_from(signal)
                    .map_or_else(|_| signal.to_string(), |s| s.as_str().to_owned())
            ),
            _ => self.status.to_string(),
        }
    }

    /// How the program ended, from the report (`killed by SIGSYS`), if it was not a plain exit.
    pub fn program_signal(&self) -> Option<String> {
        let signal = self.report.as_ref()?["exit"]["signal"].as_str()?;
        Some(format!("killed by {signal}"))
    }
}

/// One vector at one level: what [`exec_vector`] runs.
pub(super) struct VectorRun<'a> {
    /// The vector's id.
    pub vector: &'a str,
    /// Its arguments (`--key value`...).
    pub args: &'a [String],
    /// The level.
    pub level: Level,
    /// Whether to run with `--allow-loopback`.
    pub allow_loopback: bool,
}

/// Starts `ifpin exec -i ctl0 --level LEVEL --json [--allow-loopback] -- ifpin demo-vector
/// VECTOR ARGS...` in `host`; `on_line` sees each stdout line of the program as it comes and
/// may act (send the front's ICMP error on `ready`); `before_close` runs once the program has
/// printed its JSON line and before its stdin is closed (the override child keeps its socket
/// open until then).
pub(super) fn exec_vector(
    host: &crate::Netns,
    command: &ChildCommand,
    run: &VectorRun<'_>,
    on_line: &mut dyn FnMut(&str),
    before_close: &mut dyn FnMut(),
) -> Result<ExecRun, LevelError> {
    let mut cmd: Command = host.command(&command.program);
    cmd.args([
        "exec",
        "-i",
        Chassis::CTL0,
        "--level",
        run.level.as_str(),
        "--json",
    ]);
    if run.allow_loopback {
        cmd.arg("--allow-loopback");
    }
    cmd.arg("--")
        .arg(&command.program)
        .args(&command.vector_args)
        .arg(run.vector)
        .args(run.args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let io = |what| move |source| LevelError::Child { what, source };
    let mut child = cmd.spawn().map_err(io("spawn"))?;
    let stdin = child.stdin.take();
    let stdout = child.stdout.take().expect("piped");
    let mut stderr = child.stderr.take().expect("piped");
    // stderr is read on a thread: a program that writes much there must not block.
    let errors = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text);
        text
    });
    let mut stdin = stdin;
    let mut lines = Vec::new();
    for line in BufReader::new(stdout).lines() {
        let Ok(line) = line else { break };
        on_line(&line);
        let last = line.starts_with('{');
        lines.push(line);
        if last {
            before_close();
            drop(stdin.take());
        }
    }
    drop(stdin);
    let status = child.wait().map_err(io("wait"))?;
    let text = errors.join().unwrap_or_default();
    let mut report = None;
    let mut rest = Vec::new();
    for line in text.lines() {
        match serde_json::from_str::<Value>(line) {
            Ok(value) if value.get("blocked").is_some() => report = Some(value),
            _ => rest.push(line),
        }
    }
    Ok(ExecRun {
        lines,
        report,
        stderr: rest.join("\n"),
        status,
    })
}

/// `ifpin exec --cleanup`: removes the cgroup a killed supervisor left, once its program is
/// gone (the `kill-parent` vector at the levels where it works).
pub(super) fn cleanup(command: &ChildCommand) -> Result<(), LevelError> {
    let out = Command::new(&command.program)
        .args(["exec", "--cleanup", "--json"])
        .stdin(Stdio::null())
        .output()
        .map_err(|source| LevelError::Child {
            what: "exec --cleanup",
            source,
        })?;
    if out.status.success() {
        Ok(())
    } else {
        Err(LevelError::Child {
            what: "exec --cleanup",
            source: std::io::Error::other(String::from_utf8_lossy(&out.stderr).into_owned()),
        })
    }
}

/// What the program of a level run reports about itself.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct ChildAnswer {
    /// The kernel's answer.
    pub answer: String,
    /// What it ran with.
    pub run_as: String,
    /// The interface the socket was bound to afterwards.
    pub bound_after: Option<u32>,
}

/// The program's side of a level run (`ifpin demo-vector VECTOR ARGS...`, inside the chassis
/// host, under `ifpin exec`): runs one vector and writes its answer to `out` as one JSON line.
///
/// - an override vector: a socket of its kind, pinned to ctl0 (by `pinning`, unless the
///   confinement already pinned it at creation), tried with the vector's privilege; the socket
///   stays open until stdin closes, so answers to it are not turned into ICMP errors;
/// - an escape vector: the attack, with `args`;
/// - [`HOLD_SOCKET`]: the process outside ([`catalogue::escape::hold_socket`]).
pub fn run_child(
    vector: &str,
    args: Vec<String>,
    pinning: &dyn Pinning,
    out: &mut dyn Write,
) -> Result<(), String> {
    if vector == HOLD_SOCKET {
        return escape::hold_socket(OUTSIDE_UID).map_err(|e| format!("holding a socket: {e}"));
    }
    if let Some(escape) = Escape::from_id(vector) {
        let args = EscapeArgs::parse(args)?;
        let report = escape::run(escape.info().attack, &args)?;
        return write_line(out, &report);
    }
    let vector = Vector::from_id(vector).ok_or(format!("unknown vector {vector}"))?;
    let index_of = |name: &str| {
        nix::net::if_::if_nametoindex(name)
            .ok()
            .and_then(LinkIndex::new)
            .ok_or(format!("no interface {name} here: not in the chassis host"))
    };
    let ctl0 = index_of(Chassis::CTL0)?;
    let target = super::lab::chassis_target(index_of(Chassis::ETH1)?);
    let privilege = vector.info().privilege;
    let (answer, socket) = catalogue::with_privilege(privilege, || {
        let run_as = if effective_caps() == 0 {
            "unprivileged".to_owned()
        } else {
            privilege.to_string()
        };
        let (answer, bound_after, socket) = attempt(vector, pinning, ctl0, &target);
        (
            ChildAnswer {
                answer,
                run_as,
                bound_after,
            },
            socket,
        )
    })
    .map_err(|e| format!("dropping capabilities: {e}"))?;
    write_line(out, &answer)?;
    // Keep the socket open until the parent has counted the frames and closes stdin.
    let mut sink = Vec::new();
    let _ = std::io::stdin().read_to_end(&mut sink);
    drop(socket);
    Ok(())
}

/// Writes `value` as one JSON line and flushes.
fn write_line(out: &mut dyn Write, value: &impl Serialize) -> Result<(), String> {
    let line = serde_json::to_string(value).map_err(|e| format!("serialising: {e}"))?;
    writeln!(out, "{line}")
        .and_then(|()| out.flush())
        .map_err(|e| format!("writing stdout: {e}"))
}

/// The calling thread's effective capabilities (`CapEff` of `/proc/thread-self/status`).
pub(super) fn effective_caps() -> u64 {
    std::fs::read_to_string("/proc/thread-self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("CapEff:"))
                .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        })
        .unwrap_or(0)
}

/// Opens, pins (if needed) and attempts; failures to open or pin are the kernel's answer here,
/// because at the sealed level that is exactly what is blocked.
fn attempt(
    vector: Vector,
    pinning: &dyn Pinning,
    ctl0: LinkIndex,
    target: &catalogue::Target,
) -> (String, Option<u32>, Option<std::os::fd::OwnedFd>) {
    let refused =
        |call: &str, e: &std::io::Error| format!("{} from {call}", Errno::from_io_error(e));
    let socket = match vector.info().socket.open() {
        Ok(socket) => socket,
        Err(e) => return (refused("socket()", &e), None, None),
    };
    match catalogue::bound_index(&socket) {
        Ok(Some(index)) if index == ctl0 => {}
        _ => {
            if let Err(e) = pinning.pin(socket.as_fd(), Chassis::CTL0) {
                return (format!("pinning to ctl0 failed: {e}"), None, Some(socket));
            }
        }
    }
    match vector.attempt(socket.as_fd(), target) {
        Ok(attempt) => {
            let answer = match attempt.answer {
                Answer::Accepted => "accepted".to_owned(),
                refused @ Answer::Refused { .. } => refused.to_string(),
            };
            (
                answer,
                attempt.bound_after.map(LinkIndex::get),
                Some(socket),
            )
        }
        Err(e) => (format!("{e}: {}", e.source), None, Some(socket)),
    }
}

/// The ICMP port unreachable the front peer sends the error-queue vector: from the front to
/// the host's eth1 address, embedding a UDP datagram from the host's `sport` carrying
/// `payload`, which an unconnected socket on that port is matched with.
pub fn port_unreachable(sport: u16, payload: &[u8]) -> Vec<u8> {
    use catalogue::overrides::internet_checksum as checksum;
    // The embedded IPv4 header (as if the host had sent it to the front peer)...
    let mut inner = vec![0x45, 0, 0, 0, 0, 1, 0, 0, 64, 17, 0, 0];
    inner.extend_from_slice(&Chassis::HOST_ETH1_V4.octets());
    inner.extend_from_slice(&Chassis::FRONT_V4.octets());
    let total = (20 + 8 + payload.len()) as u16;
    inner[2..4].copy_from_slice(&total.to_be_bytes());
    let sum = checksum(&inner);
    inner[10..12].copy_from_slice(&sum.to_be_bytes());
    // ...its UDP header (from the socket's port) and the chosen payload.
    inner.extend_from_slice(&sport.to_be_bytes());
    inner.extend_from_slice(&9u16.to_be_bytes());
    inner.extend_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
    inner.extend_from_slice(&[0, 0]);
    inner.extend_from_slice(payload);
    let mut icmp = vec![3, 3, 0, 0, 0, 0, 0, 0];
    icmp.extend_from_slice(&inner);
    let sum = checksum(&icmp);
    icmp[2..4].copy_from_slice(&sum.to_be_bytes());
    icmp
}

/// Sends `icmp` from the front peer to the host's eth1 address.
pub(super) fn send_from_front(front: &crate::Netns, icmp: &[u8]) -> Result<(), LevelError> {
    use socket2::{Domain, Protocol, SockAddr, Socket, Type};
    front
        .run(|| {
            let socket = Socket::new(Domain::IPV4, Type::RAW, Some(Protocol::ICMPV4))?;
            let to = std::net::SocketAddr::new(Chassis::HOST_ETH1_V4.into(), 0);
            socket.send_to(icmp, &SockAddr::from(to)).map(drop)
        })?
        .map_err(|source| LevelError::Child {
            what: "sending the front's ICMP error",
            source,
        })
}

/// The payload of the front's ICMP error: what the error-queue vector reads when it gets in.
pub const ERRQUEUE_PAYLOAD: &[u8] = b"ifpin-demo: crafted on the front";

/// Whether `frame` is a membership report for one of the multicast vector's groups (IGMPv2 or
/// MLDv1, addressed to the group).
pub(super) fn is_join_report(frame: &crate::Frame) -> bool {
    frame.direction == crate::Direction::Incoming
        && frame
            .dst_ip()
            .is_some_and(|d| JOIN_GROUPS.all().contains(&d))
        && (frame.proto() == Some(crate::frame::PROTO_IGMP) || frame.icmp_type().is_some())
}
