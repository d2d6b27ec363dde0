//! The report of one `exec` run: which level held, on which interface, what was blocked, what
//! happened to the interface, how the program ended. Printed as text or serialized as JSON.

use std::fmt;

/// The index of `lo` in every network namespace.
const LOOPBACK_INDEX: u32 = 1;

use serde::Serialize;

use super::supervise::ForwardedSignal;
use crate::confine::Counters;
use crate::interface::Interface;
use crate::level::Level;
use crate::linkwatch::{LinkEvent, LinkEventKind, PinAction};

/// How the program ended.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ExitSummary {
    /// Its exit code, if it exited.
    pub code: Option<i32>,
    /// The signal that killed it, if one did (`SIGTERM`, ...).
    pub signal: Option<String>,
    /// What `ifpin exec` exits with: the code, or 128 + the signal number.
    pub status: u8,
}

/// Everything `ifpin exec` reports when the program's cgroup is empty.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    /// The program as given.
    pub program: String,
    /// Its process id.
    pub pid: u32,
    /// The level asked for.
    pub level: Level,
    /// The level that held for the whole run: the level asked for, or `None` when the run
    /// broke it. Only `pinned` can break: its sockets are bound to an index, which stays
    /// behind when the interface is deleted or renamed (and another device may take it);
    /// the filtered levels close the filter instead.
    pub level_held: Option<Level>,
    /// The interface pinned at the start (name and index).
    pub interface: Interface,
    /// Whether loopback was allowed.
    pub allow_loopback: bool,
    /// The cgroup the program ran in (removed when the report is made).
    pub cgroup: std::path::PathBuf,
    /// The index the filter was open for at the end; `None` if it was closed (the interface
    /// had gone).
    pub open_for_index_at_exit: Option<u32>,
    /// How the program ended.
    pub exit: ExitSummary,
    /// Milliseconds from the start until the cgroup was empty.
    pub elapsed_ms: u64,
    /// Whether processes outlived the program (daemons) and were waited for.
    pub waited_for_descendants: bool,
    /// What the confinement blocked or refused (its BPF counters, every one of them).
    pub blocked: Counters,
    /// Changes of the pinned interface seen while the program ran.
    pub link_events: Vec<LinkEvent>,
    /// Signals passed on to the program.
    pub signals_forwarded: Vec<ForwardedSignal>,
    /// Cgroups left by earlier runs whose ifpin was killed, removed at the start of this one.
    pub stale_cgroups_removed: Vec<std::path::PathBuf>,
    /// Inheritable inet and packet sockets of ifpin's own (created outside the confinement,
    /// which could not hold them), and descriptors on the cgroup or BPF file systems (a way
    /// out of the confinement), that were closed for the program: their fd numbers.
    pub withheld_sockets: Vec<i32>,
    /// At `sealed`: the layers that hold besides the BPF programs.
    pub seal: Option<super::seal::SealLayers>,
    /// The user id the program ran as, when `--user` was given.
    pub user: Option<u32>,
    /// The group id the program ran as, when `--user` or `--group` was given.
    pub group: Option<u32>,
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ended = match (&self.exit.code, &self.exit.signal) {
            (Some(code), _) => format!("exited with status {code}"),
            (None, Some(signal)) => format!("was killed by {signal}"),
            (None, None) => "ended".to_owned(),
        };
        writeln!(
            f,
            "ifpin exec: {} (pid {}) {ended} after {:.3} s{}",
            self.program,
            self.pid,
            self.elapsed_ms as f64 / 1000.0,
            if self.waited_for_descendants {
                "; waited for the processes it left behind"
            } else {
                ""
            }
        )?;
        let held = match self.level_held {
            Some(level) => level.to_string(),
            None => format!(
                "none (asked for {}: its sockets stay bound to index {} after the interface \
                 went away, and that index may now be another device's; enforced and sealed \
                 close the filter instead)",
                self.level,
                self.interface.index()
            ),
        };
        let on_loopback = self.interface.index().get() == LOOPBACK_INDEX;
        writeln!(
            f,
            "ifpin exec: level held: {held} on {}, loopback {}",
            self.interface,
            if on_loopback {
                "is the interface itself"
            } else if self.allow_loopback {
                "allowed"
            } else {
                "closed"
            }
        )?;
        // Every counter that counted, whatever the level: the pinned level's own refusals
        // (closed confinement, loopback mode's pins) count too.
        let b = &self.blocked;
        // The guard's count is always shown where a guard runs; the others when they counted.
        let guarded = self.level >= Level::Enforced;
        let refused: Vec<String> = [
            (b.setsockopt, "setsockopt", guarded),
            (b.connect, "connect", false),
            (b.sendmsg, "sendto/sendmsg", false),
            (b.bind, "bind", false),
            (b.socket, "socket", false),
        ]
        .iter()
        .filter(|(n, _, always)| *always || *n > 0)
        .map(|(n, call, _)| format!("{n} {call} call(s) refused"))
        .collect();
        let refused = if refused.is_empty() {
            String::new()
        } else {
            format!("; {}", refused.join(", "))
        };
        if self.level == Level::Pinned {
            writeln!(
                f,
                "ifpin exec: blocked: no filter at level pinned (sockets are bound, packets are not counted){refused}"
            )?;
        } else {
            writeln!(
                f,
                "ifpin exec: blocked: {} packet(s) leaving, {} arriving through other interfaces{refused}",
                b.egress, b.ingress
            )?;
        }
        if let Some(seal) = &self.seal {
            let kept = if seal.capabilities_kept.is_empty() {
                "none".to_owned()
            } else {
                seal.capabilities_kept.join(", ")
            };
            writeln!(
                f,
                "ifpin exec: sealed by: capabilities kept: {kept}; no_new_privs; own {} namespaces \
                 ({} cgroup mount(s) replaced); read-only: {}; {} host control socket(s) masked; \
                 Landlock ABI {} (no ptrace or signals outside); seccomp ({})",
                seal.namespaces.join(", "),
                seal.cgroup_mounts_replaced.len(),
                seal.read_only
                    .iter()
                    .map(|p| p.display().to_string())
                    .collect::<Vec<_>>()
                    .join(" "),
                seal.masked.len(),
                seal.landlock_abi,
                seal.seccomp.join("; ")
            )?;
        }
        if let (Some(uid), Some(gid)) = (self.user, self.group) {
            writeln!(f, "ifpin exec: ran as uid {uid}, gid {gid}")?;
        } else if let Some(gid) = self.group {
            writeln!(f, "ifpin exec: ran with gid {gid}")?;
        }
        if self.link_events.is_empty() {
            writeln!(f, "ifpin exec: link events: none")?;
        }
        for signal in &self.signals_forwarded {
            let to = match signal.sent_to {
                0 => "already delivered by the terminal to the program's process group".to_owned(),
                1 => "forwarded to the program".to_owned(),
                n => format!("forwarded to the {n} processes left in the cgroup"),
            };
            writeln!(
                f,
                "ifpin exec: signal at {} ms: {} {to}",
                signal.at_ms, signal.signal
            )?;
        }
        if self.exit.status != 0 && !self.allow_loopback && !on_loopback {
            writeln!(
                f,
                "ifpin exec: hint: loopback was closed: a socket pinned to {} cannot reach \
                 127.0.0.1, ::1 or this host's own addresses (a connect there fails or times \
                 out, and no filter counts it); if the program needed them, run it with \
                 --allow-loopback",
                self.interface.name()
            )?;
        }
        if !self.withheld_sockets.is_empty() {
            let fds: Vec<String> = self
                .withheld_sockets
                .iter()
                .map(|fd| fd.to_string())
                .collect();
            writeln!(
                f,
                "ifpin exec: withheld inherited fd(s) {}: sockets created outside the \
                 confinement (which could not hold them) or directories of the cgroup or BPF \
                 file systems; the program did not receive them",
                fds.join(", ")
            )?;
        }
        for path in &self.stale_cgroups_removed {
            writeln!(
                f,
                "ifpin exec: removed {} (left by an earlier run whose ifpin was killed)",
                path.display()
            )?;
        }
        for event in &self.link_events {
            let what = match event.kind {
                LinkEventKind::Deleted => "deleted",
                LinkEventKind::Renamed => "renamed, or its index taken by another device",
                LinkEventKind::IndexTakenOver => {
                    "now carries the old index (the pin did not follow it)"
                }
                LinkEventKind::Returned => "back",
                LinkEventKind::Resync => "re-read after lost notices",
            };
            let action = match event.action {
                PinAction::Closed => ": filter closed",
                PinAction::Reopened => ": filter reopened for it",
                PinAction::None => "",
            };
            let index = event
                .index
                .map(|i| format!(" (index {i})"))
                .unwrap_or_default();
            writeln!(
                f,
                "ifpin exec: link event at {} ms: {}{index} {what}{action}",
                event.at_ms, event.name
            )?;
        }
        Ok(())
    }
}
