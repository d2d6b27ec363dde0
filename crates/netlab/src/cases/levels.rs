//! What each guarantee level blocks: the override vectors that leaked from a pinned socket, run
//! again by a child process confined to ctl0 at the enforced and the sealed level.
//!
//! Confinement works per process (a cgroup), so the vectors run in a child: the demo re-executes
//! itself in a hidden "vector child" mode ([`serve_child`]) inside the host namespace, moves it
//! into the confinement, and then drives it one vector at a time over stdin/stdout, counting
//! the frames of each on both links as for the other cases:
//!
//! ```text
//! parent -> child: run <vector-id> <documented|none>    child -> parent: <the kernel's answer>
//! parent -> child: close                                child -> parent: closed
//! parent -> child: quit
//! ```
//! The socket stays open until `close`, so answers to it are not turned into ICMP errors.
//!
//! How a process is confined is a parameter ([`Confiner`]): `ifpin demo` passes one backed by
//! the `ifpin` library's confinement engine. At the sealed level the child runs every vector
//! with no capability at all (what `ifpin exec --level sealed` leaves a program); at the
//! enforced level with the privilege the vector needs.

use std::io::{BufRead, BufReader, Write};
use std::os::fd::AsFd;
use std::process::{Child, ChildStdin, ChildStdout, Command, ExitCode, Stdio};

use serde::Serialize;

use super::{LinkFrames, Pinning, PinningError};
use crate::chassis::Chassis;
use crate::vectors::{self, Answer, Errno, LinkIndex, Privilege, Vector};

/// A guarantee level above "pinned".
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Guard {
    /// cgroup BPF filters pass only the pinned interface.
    Enforced,
    /// Enforced, plus setsockopt/bind guards and no capabilities.
    Sealed,
}

impl Guard {
    /// Both levels, weakest first.
    pub const ALL: [Guard; 2] = [Guard::Enforced, Guard::Sealed];

    /// The privilege a vector runs with at this level.
    pub fn privilege(self, vector: Vector) -> Privilege {
        match self {
            Self::Enforced => vector.info().privilege,
            Self::Sealed => Privilege::None,
        }
    }

    fn wire(self) -> &'static str {
        match self {
            Self::Enforced => "documented",
            Self::Sealed => "none",
        }
    }
}

impl std::fmt::Display for Guard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Enforced => "enforced",
            Self::Sealed => "sealed",
        })
    }
}

/// Confines processes to an interface at a level (the `ifpin` confinement engine in the demo).
pub trait Confiner: Sync {
    /// What confines, for the report.
    fn describe(&self) -> String;
    /// Creates a confinement to `interface` at `guard`. Called on a thread inside the host
    /// namespace.
    fn confine(&self, interface: &str, guard: Guard) -> Result<Box<dyn Confined>, PinningError>;
}

/// One live confinement.
pub trait Confined: Send {
    /// Moves process `pid` in.
    fn add_process(&self, pid: u32) -> Result<(), PinningError>;
    /// Packets dropped and calls refused by the confinement so far (all counters summed).
    fn blocked(&self) -> Result<u64, PinningError>;
    /// Removes the confinement (its processes have exited).
    fn close(self: Box<Self>) -> Result<(), PinningError>;
}

/// How to start the vector child: the program and its arguments (`ifpin demo --vector-child`).
#[derive(Debug, Clone)]
pub struct ChildCommand {
    /// The program.
    pub program: std::path::PathBuf,
    /// Its arguments.
    pub args: Vec<String>,
}

/// Everything the levels section needs.
pub struct LevelSetup<'a> {
    /// Confines the child.
    pub confiner: &'a dyn Confiner,
    /// Starts the child.
    pub child: ChildCommand,
}

/// One vector at one level.
#[derive(Debug, Clone, Serialize)]
pub struct LevelCase {
    /// The vector's id.
    pub vector: &'static str,
    /// The level.
    pub level: Guard,
    /// The privilege the child ran it with.
    pub privilege: Privilege,
    /// The kernel's answer to the child.
    pub answer: String,
    /// Frames counted on each link.
    pub frames: LinkFrames,
    /// How many packets/calls the confinement's programs blocked during the vector.
    pub blocked_by_confinement: u64,
    /// Whether anything left through the front panel.
    pub leaked: bool,
    /// The frames seen on the front link, decoded (at most a few).
    pub front_frames: Vec<String>,
}

/// The levels section of a run.
#[derive(Debug, Clone, Serialize)]
pub struct LevelsReport {
    /// What confined the child.
    pub confiner: String,
    /// Every vector that leaked from a pinned socket, at each level.
    pub cases: Vec<LevelCase>,
}

/// An error of the levels section.
#[derive(Debug, thiserror::Error)]
pub enum LevelError {
    /// Confining failed.
    #[error("confining the vector child at the {level} level failed: {source}")]
    Confine {
        /// The level.
        level: Guard,
        /// Why.
        #[source]
        source: PinningError,
    },
    /// Talking to the child failed.
    #[error("the vector child ({what}) failed: {source}")]
    Child {
        /// What was being done.
        what: &'static str,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The lab failed.
    #[error(transparent)]
    Lab(#[from] crate::Error),
    /// `SIGINT`/`SIGTERM` arrived.
    #[error("interrupted")]
    Interrupted,
}

/// A running vector child; killed and reaped on drop if it has not exited.
pub(super) struct ChildProcess {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}

impl ChildProcess {
    pub(super) fn spawn(host: &crate::Netns, command: &ChildCommand) -> Result<Self, LevelError> {
        let mut cmd: Command = host.command(&command.program);
        cmd.args(&command.args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped());
        let mut child = cmd.spawn().map_err(|source| LevelError::Child {
            what: "spawn",
            source,
        })?;
        let (Some(stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
            let _ = child.kill();
            let _ = child.wait();
            return Err(LevelError::Child {
                what: "pipes",
                source: std::io::Error::other("no stdin/stdout pipe"),
            });
        };
        Ok(Self {
            child,
            stdin,
            stdout: BufReader::new(stdout),
        })
    }

    pub(super) fn pid(&self) -> u32 {
        self.child.id()
    }

    pub(super) fn request(&mut self, line: &str) -> Result<String, LevelError> {
        let io = |source| LevelError::Child {
            what: "request",
            source,
        };
        writeln!(self.stdin, "{line}").map_err(io)?;
        self.stdin.flush().map_err(io)?;
        let mut answer = String::new();
        if self.stdout.read_line(&mut answer).map_err(io)? == 0 {
            return Err(io(std::io::Error::other(format!(
                "exited instead of answering `{line}`"
            ))));
        }
        Ok(answer.trim().to_owned())
    }

    /// Asks the child to quit and reaps it.
    pub(super) fn quit(mut self) -> Result<(), LevelError> {
        let _ = writeln!(self.stdin, "quit");
        let _ = self.stdin.flush();
        self.child
            .wait()
            .map(drop)
            .map_err(|source| LevelError::Child {
                what: "wait",
                source,
            })
    }
}

impl Drop for ChildProcess {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

pub(super) fn run_request(vector: Vector, guard: Guard) -> String {
    format!("run {} {}", vector.id(), guard.wire())
}

/// The child's side: reads requests from stdin, runs each vector in the current (host)
/// namespace on a socket pinned to ctl0 (by `pinning`, unless the confinement already pinned it
/// at creation), and writes the kernel's answer. Returns when stdin closes or says `quit`.
pub fn serve_child(pinning: &dyn Pinning) -> ExitCode {
    match serve(pinning) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("vector child: {e}");
            ExitCode::from(2)
        }
    }
}

fn serve(pinning: &dyn Pinning) -> Result<(), String> {
    let index_of = |name: &str| {
        nix::net::if_::if_nametoindex(name)
            .ok()
            .and_then(LinkIndex::new)
            .ok_or(format!("no interface {name} here: not in the chassis host"))
    };
    let ctl0 = index_of(Chassis::CTL0)?;
    let target = super::lab::chassis_target(index_of(Chassis::ETH1)?);
    let stdin = std::io::stdin();
    let mut stdout = std::io::stdout();
    let mut open = None;
    for line in stdin.lock().lines() {
        let line = line.map_err(|e| format!("reading stdin: {e}"))?;
        let words: Vec<&str> = line.split_whitespace().collect();
        let reply = match words.as_slice() {
            ["run", id, mode] => {
                let vector = Vector::from_id(id).ok_or(format!("unknown vector {id}"))?;
                let privilege = match *mode {
                    "none" => Privilege::None,
                    _ => vector.info().privilege,
                };
                let (answer, socket) =
                    vectors::with_privilege(privilege, || attempt(vector, pinning, ctl0, &target))
                        .map_err(|e| format!("dropping capabilities: {e}"))?;
                open = socket;
                answer
            }
            ["close"] => {
                open = None;
                "closed".to_owned()
            }
            ["quit"] => return Ok(()),
            _ => return Err(format!("unknown request `{line}`")),
        };
        writeln!(stdout, "{reply}").map_err(|e| format!("writing stdout: {e}"))?;
        stdout.flush().map_err(|e| format!("writing stdout: {e}"))?;
    }
    drop(open);
    Ok(())
}

/// Opens, pins (if needed) and attempts; failures to open or pin are the kernel's answer here,
/// because at the sealed level that is exactly what is blocked.
fn attempt(
    vector: Vector,
    pinning: &dyn Pinning,
    ctl0: LinkIndex,
    target: &vectors::Target,
) -> (String, Option<std::os::fd::OwnedFd>) {
    let refused =
        |call: &str, e: &std::io::Error| format!("{} from {call}", Errno::from_io_error(e));
    let socket = match vector.info().socket.open() {
        Ok(socket) => socket,
        Err(e) => return (refused("socket()", &e), None),
    };
    match vectors::bound_index(&socket) {
        Ok(Some(index)) if index == ctl0 => {}
        _ => {
            if let Err(e) = pinning.pin(socket.as_fd(), Chassis::CTL0) {
                return (format!("pinning to ctl0 failed: {e}"), None);
            }
        }
    }
    let answer = match vector.attempt(socket.as_fd(), target) {
        Ok(attempt) => match attempt.answer {
            Answer::Accepted => "accepted".to_owned(),
            refused @ Answer::Refused { .. } => refused.to_string(),
        },
        Err(e) => format!("{e}: {}", e.source),
    };
    (answer, Some(socket))
}
