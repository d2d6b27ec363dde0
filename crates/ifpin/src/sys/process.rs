//! Processes: starting a program inside a cgroup with fewer capabilities, `pidfd_open(2)`,
//! `poll(2)`.
//!
//! [`confine_before_exec`] is the one place where code runs in the child between `fork` and
//! `execve`. It does only async-signal-safe work there: a `write(2)` of `"0"` to an
//! already-open `cgroup.procs` (the child moves *itself*, so not one instruction of the
//! program runs outside the cgroup), then `prctl(2)`/`capset(2)` calls with sets computed in
//! the parent beforehand.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::process::Command;

use caps::{CapSet, Capability, CapsHashSet};
use nix::sys::signal::SigSet;

/// Capabilities to take away from the child, and the child's sets without them (computed in
/// the parent, so the child only makes system calls).
#[derive(Debug, Clone)]
pub struct CapDrop {
    /// Dropped from the bounding and ambient sets one by one.
    pub dropped: Vec<Capability>,
    /// The effective set to install.
    pub effective: CapsHashSet,
    /// The permitted set to install.
    pub permitted: CapsHashSet,
    /// The inheritable set to install.
    pub inheritable: CapsHashSet,
}

impl CapDrop {
    /// Reads the calling thread's sets and removes `dropped` from them.
    pub fn without(dropped: &[Capability]) -> Result<CapDrop, caps::errors::CapsError> {
        let read = |set| -> Result<CapsHashSet, caps::errors::CapsError> {
            let mut caps = caps::read(None, set)?;
            for cap in dropped {
                caps.remove(cap);
            }
            Ok(caps)
        };
        Ok(CapDrop {
            dropped: dropped.to_vec(),
            effective: read(CapSet::Effective)?,
            permitted: read(CapSet::Permitted)?,
            inheritable: read(CapSet::Inheritable)?,
        })
    }
}

/// A step run in the child between `fork` and `execve`: system calls only, no allocation.
pub type ChildStep = Box<dyn Fn() -> io::Result<()> + Send + Sync>;

/// Makes the child of `cmd`, between `fork` and `execve`:
/// 1. write `0` to `cgroup_procs` (an open `cgroup.procs` of a cgroup v2), moving itself into
///    that cgroup (`cgroup(7)`: writing 0 moves the writer);
/// 2. run `isolate` if given (for instance
///    [`ReadOnlyHierarchy::apply`](crate::cgroup::ReadOnlyHierarchy::apply): it needs the
///    capabilities the next step drops);
/// 3. if `caps` is given, drop those capabilities from the bounding set
///    (`PR_CAPBSET_DROP`, so not even a set-user-ID-root program gets them back), the ambient
///    set (`PR_CAP_AMBIENT_LOWER`), and the effective, inheritable and permitted sets
///    (`capset(2)`).
///
/// 4. if `mask` is given, install it as the signal mask (`pthread_sigmask(2)`): the
///    supervisor blocks the signals it forwards, and `execve` would pass that on.
///
/// A failure there makes `spawn` fail with that step's `errno`.
pub fn confine_before_exec(
    cmd: &mut Command,
    cgroup_procs: OwnedFd,
    isolate: Option<ChildStep>,
    caps: Option<CapDrop>,
    mask: Option<SigSet>,
) {
    let child_setup = move || -> io::Result<()> {
        // SAFETY: writes 1 byte from a static buffer to an fd the closure owns; async-signal-safe.
        let n = unsafe { libc::write(cgroup_procs.as_raw_fd(), b"0".as_ptr().cast(), 1) };
        if n != 1 {
            return Err(io::Error::last_os_error());
        }
        if let Some(isolate) = &isolate {
            isolate()?;
        }
        if let Some(caps) = &caps {
            // The caps crate's calls below allocate only on their error paths.
            for cap in &caps.dropped {
                caps::drop(None, CapSet::Bounding, *cap).map_err(|_| io::Error::last_os_error())?;
                caps::drop(None, CapSet::Ambient, *cap).map_err(|_| io::Error::last_os_error())?;
            }
            for (set, value) in [
                (CapSet::Effective, &caps.effective),
                (CapSet::Inheritable, &caps.inheritable),
                (CapSet::Permitted, &caps.permitted),
            ] {
                caps::set(None, set, value).map_err(|_| io::Error::last_os_error())?;
            }
        }
        if let Some(mask) = &mask {
            mask.thread_set_mask().map_err(io::Error::from)?;
        }
        Ok(())
    };
    // SAFETY: the closure makes only async-signal-safe system calls (write, prctl, capget,
    // capset, rt_sigprocmask) and touches only data it owns; it allocates nothing on success.
    unsafe {
        cmd.pre_exec(child_setup);
    }
}

/// `pidfd_open(2)` (Linux 5.3): a file descriptor for process `pid`, readable once it exits.
pub fn pidfd_open(pid: u32) -> io::Result<OwnedFd> {
    // SAFETY: plain system call with integer arguments.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid as libc::pid_t, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: on success the kernel returned a new file descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

/// `poll(2)` readiness to wait for.
pub use libc::{POLLIN, POLLPRI};

/// `poll(2)` on `fds` (pairs of a raw fd and the events to wait for), up to `timeout_ms`.
/// Returns the events that occurred on each, in the same order; `EINTR` counts as a timeout.
pub fn poll(fds: &[(i32, i16)], timeout_ms: i32) -> io::Result<Vec<i16>> {
    let mut pollfds: Vec<libc::pollfd> = fds
        .iter()
        .map(|&(fd, events)| libc::pollfd {
            fd,
            events,
            revents: 0,
        })
        .collect();
    // SAFETY: `pollfds` is a valid array of `pollfds.len()` entries for the call's duration.
    let n = unsafe {
        libc::poll(
            pollfds.as_mut_ptr(),
            pollfds.len() as libc::nfds_t,
            timeout_ms,
        )
    };
    if n < 0 {
        let err = io::Error::last_os_error();
        if err.kind() != io::ErrorKind::Interrupted {
            return Err(err);
        }
    }
    Ok(pollfds.iter().map(|p| p.revents).collect())
}
