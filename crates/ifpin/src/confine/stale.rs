//! What dead supervisors leave behind: the run's cgroup name records who made it (pid and
//! start time) and at which level, so the next run, `ifpin exec --cleanup` and the audit can
//! tell a stale run from a live one, and what it enforces, without asking anyone.

use std::fs;
use std::os::fd::AsFd;
use std::path::Path;

use super::ConfineError;
use crate::cgroup::Cgroup;
use crate::level::Level;
use crate::sys::bpf::{self as sys, AttachType};

/// Detaches the programs of a stale run's cgroup and removes it (nested cgroups included):
/// `Ok(false)` when processes are still inside (left alone, confined).
pub(super) fn remove_stale(path: &Path) -> Result<bool, ConfineError> {
    let cgroup = Cgroup::open(path)?;
    if cgroup.is_populated()? {
        return Ok(false);
    }
    for attach in AttachType::ALL {
        let ids = sys::prog_query(cgroup.as_fd(), attach)
            .map_err(|e| ConfineError::from_syscall(format!("querying {}", path.display()), e))?;
        for id in ids {
            let prog = sys::prog_get_fd_by_id(id)
                .map_err(|e| ConfineError::from_syscall(format!("opening BPF program {id}"), e))?;
            sys::prog_detach(cgroup.as_fd(), prog.as_fd(), attach).map_err(|e| {
                ConfineError::from_syscall(
                    format!("detaching BPF program {id} from {}", path.display()),
                    e,
                )
            })?;
        }
    }
    cgroup.remove()?;
    Ok(true)
}

/// The parts of a run's cgroup name, `run-<pid>-<start time>-<n>-<level>`: the process that
/// made it (pid and start time, to tell whether it still runs) and the level it enforces.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RunName {
    /// The supervisor's pid.
    pub pid: u32,
    /// The supervisor's start time (clock ticks since boot, `/proc/PID/stat` field 22).
    pub start: u64,
    /// The level the run's programs enforce (`None` for the names of earlier versions,
    /// `run-<pid>-<start time>-<n>`, which did not record it).
    pub level: Option<Level>,
}

impl RunName {
    /// Parses a run's cgroup directory name; `None` for anything else.
    pub fn parse(name: &str) -> Option<RunName> {
        let mut parts = name.strip_prefix("run-")?.split('-');
        let pid = parts.next()?.parse().ok()?;
        let start = parts.next()?.parse().ok()?;
        parts.next()?.parse::<u32>().ok()?;
        let level = match parts.next() {
            None => None,
            Some(level) => Some(level.parse().ok()?),
        };
        parts
            .next()
            .is_none()
            .then_some(RunName { pid, start, level })
    }
}

/// Field 22 of `/proc/<pid>/stat`: the start time in clock ticks since boot.
fn start_time(pid: &str) -> Option<u64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_start_time(&stat)
}

fn parse_start_time(stat: &str) -> Option<u64> {
    let after_comm = &stat[stat.rfind(')')? + 1..];
    after_comm.split_whitespace().nth(19)?.parse().ok()
}

pub(super) fn own_start_time() -> Option<u64> {
    start_time("self")
}

/// Whether the process that made a confinement still runs (same pid, same start time).
pub(super) fn process_alive(pid: u32, start: u64) -> bool {
    start_time(&pid.to_string()) == Some(start)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_names_round_trip() {
        assert_eq!(
            RunName::parse("run-123-456-7-sealed"),
            Some(RunName {
                pid: 123,
                start: 456,
                level: Some(Level::Sealed)
            })
        );
        assert_eq!(
            RunName::parse("run-1-2-3-enforced").map(|r| r.level),
            Some(Some(Level::Enforced))
        );
        assert_eq!(RunName::parse("run-123-456-7").map(|r| r.level), Some(None));
        assert_eq!(RunName::parse("run-123-456-7-hopeful"), None);
        assert_eq!(RunName::parse("run-123-456-7-pinned-8"), None);
        assert_eq!(RunName::parse("other"), None);
    }

    #[test]
    fn start_time_skips_odd_command_names() {
        let stat = "42 (a) b) c) S 1 42 42 0 -1 4194560 100 0 0 0 0 0 0 0 20 0 1 0 98765 1000 0";
        assert_eq!(parse_start_time(stat), Some(98765));
        assert!(own_start_time().is_some());
        assert!(process_alive(std::process::id(), own_start_time().unwrap()));
        assert!(!process_alive(
            std::process::id(),
            own_start_time().unwrap() + 1
        ));
    }
}
