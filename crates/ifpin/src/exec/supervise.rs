//! Staying the parent: starting the program inside the cgroup, forwarding signals, following
//! the interface, and waiting until the whole cgroup is empty.
//!
//! One thread, one `poll(2)` over:
//! - a pidfd of the program (it exited: collect its status);
//! - the cgroup's `cgroup.events` (`populated` changed: maybe every process has gone,
//!   double-forked daemons included; the kernel marks the file with `POLLPRI`);
//! - optionally a signalfd for the forwarded signals;
//! - optionally the netlink [`LinkWatch`].
//!
//! A timeout re-checks everything now and then, so no missed wake-up can hang the wait.

use crate::error::SyscallError;
use std::fs::File;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::process::{Child, Command, ExitStatus};
use std::time::{Duration, Instant};

use nix::sys::signal::{SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::unistd::Pid;
use serde::Serialize;

use super::ExecError;
use crate::cgroup::{self, Cgroup};
use crate::interface::Interface;
use crate::linkwatch::{LinkEvent, LinkTracker, LinkWatch, PinChange};
use crate::sys::process::{self as sys, CapSets, ChildPlan, Identity, SealSteps};

/// The signals `ifpin exec` passes on to the program instead of acting on them.
pub const FORWARDED_SIGNALS: [Signal; 6] = [
    Signal::SIGINT,
    Signal::SIGTERM,
    Signal::SIGHUP,
    Signal::SIGQUIT,
    Signal::SIGUSR1,
    Signal::SIGUSR2,
];

/// How long `poll` sleeps at most before re-checking the program and the cgroup.
const RECHECK: Duration = Duration::from_millis(250);

/// `si_code` of a signal the kernel raised itself, for instance the terminal's `SIGINT` to the
/// whole foreground process group (`SI_KERNEL`).
const SI_KERNEL: i32 = 0x80;

/// The forwarded signals, blocked in the calling thread and read from a signalfd.
///
/// Create it *before* starting other threads (the mask is per thread, and a signal sent to
/// the process goes to any thread that does not block it). The child gets a clean mask
/// (`std::process::Command` resets it before `execve`).
#[derive(Debug)]
pub struct SignalForwarding {
    fd: SignalFd,
    previous: SigSet,
}

impl SignalForwarding {
    /// Blocks [`FORWARDED_SIGNALS`] in the calling thread and opens a signalfd for them.
    pub fn new() -> Result<Self, ExecError> {
        let mut set = SigSet::empty();
        for sig in FORWARDED_SIGNALS {
            set.add(sig);
        }
        let previous = set
            .thread_swap_mask(nix::sys::signal::SigmaskHow::SIG_BLOCK)
            .map_err(|e| ExecError::Sys(SyscallError::new("pthread_sigmask", e)))?;
        let fd = SignalFd::with_flags(&set, SfdFlags::SFD_NONBLOCK | SfdFlags::SFD_CLOEXEC)
            .map_err(|e| ExecError::Sys(SyscallError::new("signalfd", e)))?;
        Ok(SignalForwarding { fd, previous })
    }
}

impl Drop for SignalForwarding {
    fn drop(&mut self) {
        let _ = self.previous.thread_set_mask();
    }
}

/// A signal passed on to the program.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ForwardedSignal {
    /// The signal's name, `SIGTERM` for instance.
    pub signal: String,
    /// Milliseconds after the start.
    pub at_ms: u64,
    /// How many processes it was sent to (the program, or every process left in the cgroup
    /// once the program itself has exited); 0 when the terminal had already sent it to them.
    pub sent_to: usize,
}

/// Applies a pin change to the confinement.
pub type ApplyPin<'a> = &'a mut dyn FnMut(&PinChange) -> Result<(), ExecError>;

/// The interface being followed, and what to do when its pin changes.
pub struct Follow<'a> {
    /// The link watch, created before the interface was last checked.
    pub watch: LinkWatch,
    /// The tracker for the pinned interface.
    pub tracker: LinkTracker,
    /// Applies a pin change to the confinement (`None`: watch and record only).
    pub apply: Option<ApplyPin<'a>>,
}

/// What supervision saw.
#[derive(Debug)]
pub struct Supervised {
    /// The program's own exit status.
    pub status: ExitStatus,
    /// How long the program ran, until the cgroup was empty.
    pub elapsed: Duration,
    /// Whether processes stayed in the cgroup after the program exited (daemons), and were
    /// waited for.
    pub waited_for_descendants: bool,
    /// Signals forwarded.
    pub signals: Vec<ForwardedSignal>,
    /// Changes of the pinned interface.
    pub link_events: Vec<LinkEvent>,
    /// The index the tracker held the pin open for at the end (`None`: closed).
    pub open_for: Option<crate::interface::IfIndex>,
}

/// A program started inside a cgroup.
#[derive(Debug)]
pub struct Started {
    child: Child,
    pidfd: OwnedFd,
    cgroup: Cgroup,
    events: File,
    started: Instant,
}

impl Started {
    /// Starts `cmd` so that it enters the cgroup at `cgroup` (a cgroup v2 directory) before its
    /// first instruction; then, if given, is sealed (`seal`: see [`super::seal`]), runs as
    /// `identity`, keeps only the capabilities of `caps`; and gets the signal mask the caller
    /// had before `signals` blocked the forwarded ones.
    pub(crate) fn spawn(
        cmd: Command,
        cgroup: &Path,
        seal: Option<SealSteps>,
        identity: Option<Identity>,
        caps: Option<CapSets>,
        signals: Option<&SignalForwarding>,
    ) -> Result<Started, ExecError> {
        let procs_path = cgroup.join("cgroup.procs");
        let procs: OwnedFd = std::fs::OpenOptions::new()
            .write(true)
            .open(&procs_path)
            .map_err(|source| ExecError::Cgroup {
                path: procs_path.clone(),
                source,
            })?
            .into();
        let cgroup = Cgroup::open(cgroup).map_err(ExecError::from_cgroup)?;
        let events = cgroup.events().map_err(ExecError::from_cgroup)?;
        let program = cmd.get_program().to_string_lossy().into_owned();
        let plan = ChildPlan {
            cgroup_procs: procs,
            seal,
            identity,
            caps,
            mask: signals.map(|s| s.previous),
        };
        let started = Instant::now();
        let mut child = sys::spawn_with_plan(cmd, plan).map_err(|failure| ExecError::Spawn {
            program,
            step: failure.step.map_or("executing it", |s| s.describe()),
            source: failure.error,
        })?;
        let pidfd = match sys::pidfd_open(child.id()) {
            Ok(fd) => fd,
            Err(source) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(ExecError::Sys(SyscallError::new("pidfd_open", source)));
            }
        };
        Ok(Started {
            child,
            pidfd,
            cgroup,
            events,
            started,
        })
    }

    /// The program's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits until the program has exited and the cgroup is empty, forwarding signals and
    /// following the interface meanwhile.
    ///
    /// If a pin change cannot be applied, the whole cgroup is killed (`cgroup.kill`) rather
    /// than left running with a stale pin, and the error is returned once it is empty.
    pub fn supervise(
        mut self,
        signals: Option<&SignalForwarding>,
        mut follow: Option<Follow<'_>>,
    ) -> Result<Supervised, ExecError> {
        let mut status = None;
        let mut waited_for_descendants = false;
        let mut forwarded = Vec::new();
        let mut pin_failure = None;
        loop {
            if status.is_none() {
                status = self
                    .child
                    .try_wait()
                    .map_err(|source| ExecError::Sys(SyscallError::new("waitpid", source)))?;
            }
            let populated = self.populated()?;
            if let Some(status) = status {
                if !populated {
                    if let Some(err) = pin_failure {
                        return Err(err);
                    }
                    return Ok(Supervised {
                        status,
                        elapsed: self.started.elapsed(),
                        waited_for_descendants,
                        signals: forwarded,
                        open_for: follow.as_ref().and_then(|f| f.tracker.current()),
                        link_events: follow.map(|f| f.tracker.into_events()).unwrap_or_default(),
                    });
                }
                waited_for_descendants = true;
            }

            // The cgroup's events always; the pidfd only until the program has exited (it
            // stays readable after that, and would make this loop spin while daemons run).
            let mut fds = vec![(self.events.as_raw_fd(), sys::POLLPRI)];
            if status.is_none() {
                fds.push((self.pidfd.as_raw_fd(), sys::POLLIN));
            }
            let first_optional = fds.len();
            if let Some(s) = signals {
                fds.push((s.fd.as_fd().as_raw_fd(), sys::POLLIN));
            }
            if let Some(f) = &follow {
                fds.push((f.watch.as_fd().as_raw_fd(), sys::POLLIN));
            }
            let ready = sys::poll(&fds, RECHECK.as_millis() as i32)
                .map_err(|source| ExecError::Sys(SyscallError::new("poll", source)))?;
            let mut next = first_optional;
            if let Some(s) = signals {
                if ready[next] != 0 {
                    self.forward(s, status.is_some(), &mut forwarded)?;
                }
                next += 1;
            }
            if let Some(f) = &mut follow {
                if ready[next] != 0 {
                    if let Err(err) = follow_links(f) {
                        if pin_failure.is_none() {
                            self.kill_all();
                            pin_failure = Some(err);
                        }
                    }
                }
            }
        }
    }

    /// Reads `populated` from `cgroup.events` (which also re-arms its `POLLPRI`).
    fn populated(&self) -> Result<bool, ExecError> {
        let mut buf = [0u8; 256];
        let path = || self.cgroup.path().join("cgroup.events");
        let n = self
            .events
            .read_at(&mut buf, 0)
            .map_err(|source| ExecError::Cgroup {
                path: path(),
                source,
            })?;
        cgroup::parse_populated(&String::from_utf8_lossy(&buf[..n])).ok_or_else(|| {
            ExecError::Cgroup {
                path: path(),
                source: std::io::Error::new(std::io::ErrorKind::InvalidData, "no `populated` line"),
            }
        })
    }

    /// Forwards every pending signal: to the program while it runs, then to every process left
    /// in the cgroup. A signal the kernel raised for the terminal's whole process group reached
    /// the program already (it shares ifpin's group) and is not sent twice.
    fn forward(
        &self,
        signals: &SignalForwarding,
        program_exited: bool,
        log: &mut Vec<ForwardedSignal>,
    ) -> Result<(), ExecError> {
        while let Some(info) = signals
            .fd
            .read_signal()
            .map_err(|e| ExecError::Sys(SyscallError::new("read(signalfd)", e)))?
        {
            let Ok(signal) = Signal::try_from(info.ssi_signo as i32) else {
                continue;
            };
            let from_terminal = info.ssi_code == SI_KERNEL;
            let targets: Vec<u32> = if from_terminal {
                Vec::new()
            } else if program_exited {
                self.cgroup_pids()
            } else {
                vec![self.child.id()]
            };
            let mut sent_to = 0;
            for pid in targets {
                if nix::sys::signal::kill(Pid::from_raw(pid as i32), signal).is_ok() {
                    sent_to += 1;
                }
            }
            log.push(ForwardedSignal {
                signal: signal.as_str().to_owned(),
                at_ms: self.started.elapsed().as_millis() as u64,
                sent_to,
            });
        }
        Ok(())
    }

    fn cgroup_pids(&self) -> Vec<u32> {
        self.cgroup.procs().unwrap_or_default()
    }

    /// Kills every process of the cgroup.
    fn kill_all(&self) {
        let _ = self.cgroup.kill();
    }
}

/// Reads the link notices and applies the tracker's decisions.
fn follow_links(follow: &mut Follow<'_>) -> Result<(), ExecError> {
    let notices = follow.watch.read().map_err(ExecError::LinkWatch)?;
    let mut changes: Vec<PinChange> = notices
        .iter()
        .filter_map(|n| follow.tracker.observe(n))
        .collect();
    if LinkTracker::needs_resync(&notices) {
        let now = crate::interface::IfName::new(follow.tracker.name())
            .ok()
            .and_then(|name| Interface::from_name(&name).ok());
        changes.extend(
            follow
                .tracker
                .resync(now.as_ref().map(|i| (i.index(), i.name()))),
        );
    }
    if let Some(apply) = follow.apply.as_mut() {
        for change in &changes {
            apply(change)?;
        }
    }
    Ok(())
}

/// What `ifpin exec` exits with for the program's status: its exit code, or 128 + the signal
/// that killed it (as shells do).
pub fn exit_code(status: ExitStatus) -> u8 {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => code as u8,
        (None, Some(signal)) => 128u8.saturating_add(signal as u8),
        (None, None) => 255,
    }
}
