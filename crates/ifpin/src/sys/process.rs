//! Processes: starting a program inside a cgroup, sealed, `pidfd_open(2)`, `poll(2)`.
//!
//! [`spawn_with_plan`] is the one place where code runs in the child between `fork` and
//! `execve`. What it does there is a closed [`ChildPlan`], data decided in full by the parent:
//! only system calls on buffers the plan owns, nothing allocated, nothing the caller can
//! inject. In order:
//! 1. a `write(2)` of `"0"` to an already-open `cgroup.procs` (the child moves *itself*, so not
//!    one instruction of the program runs outside the cgroup);
//! 2. sealed: new mount, cgroup and IPC namespaces, every cgroup mount replaced (v2 by a fresh
//!    read-only mount showing only the confinement, v1 detached), paths made read-only, host
//!    control sockets masked; then `PR_SET_NO_NEW_PRIVS`;
//! 3. the bounding set cut to the capabilities kept (before the account changes: it needs
//!    `CAP_SETPCAP`);
//! 4. the account (`setgroups`, `setresgid`, `setresuid`), if one was asked for;
//! 5. the other capability sets: ambient cleared, `capset(2)`, the kept ones raised into the
//!    ambient set so they survive `execve` of a non-root program;
//! 6. sealed: `landlock_restrict_self(2)`;
//! 7. the signal mask;
//! 8. sealed: the seccomp filter, last, so that nothing above is filtered.

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command};

use nix::sys::signal::SigSet;

use super::{landlock, mount, seccomp};

/// The mount-namespace and kernel-interface part of the sealed level.
#[derive(Debug)]
pub struct SealSteps {
    /// cgroup2 mount points: each replaced by a fresh read-only cgroup2 mount (in the new
    /// cgroup namespace, it shows only the confinement).
    pub cgroup_v2: Vec<CString>,
    /// cgroup v1 mount points: detached.
    pub cgroup_v1: Vec<CString>,
    /// Paths bound onto themselves and made read-only, with every mount below them.
    pub read_only: Vec<CString>,
    /// Directories hidden behind an empty read-only tmpfs.
    pub masked_dirs: Vec<CString>,
    /// Files (sockets) hidden behind `/dev/null`.
    pub masked_files: Vec<CString>,
    /// The Landlock ruleset to enter.
    pub landlock: OwnedFd,
    /// The seccomp filter to install.
    pub seccomp: Vec<seccomp::SockFilter>,
}

/// The account to run as.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Identity {
    /// Real, effective and saved user id.
    pub uid: libc::uid_t,
    /// Real, effective and saved group id.
    pub gid: libc::gid_t,
    /// Supplementary groups.
    pub groups: Vec<libc::gid_t>,
}

/// The capability sets to leave: `keep` (a bit per capability number) in the bounding,
/// permitted, effective, inheritable and ambient sets, nothing else.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CapSets {
    /// Bit `n` set: capability `n` is kept.
    pub keep: u64,
    /// The highest capability number this kernel knows (`/proc/sys/kernel/cap_last_cap`).
    pub last_cap: u32,
}

/// Everything the child does before `execve`: see the module docs.
#[derive(Debug)]
pub struct ChildPlan {
    /// An open `cgroup.procs` of the cgroup to enter.
    pub cgroup_procs: OwnedFd,
    /// The sealed steps, at the sealed level.
    pub seal: Option<SealSteps>,
    /// The account to switch to.
    pub identity: Option<Identity>,
    /// The capability sets to leave.
    pub caps: Option<CapSets>,
    /// The signal mask to install (the supervisor blocks the signals it forwards, and
    /// `execve` would pass that on).
    pub mask: Option<SigSet>,
}

/// The step of a [`ChildPlan`] that failed, carried to the parent in the error's message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum ChildStep {
    /// Writing `cgroup.procs`.
    EnterCgroup = 1,
    /// The new mount, cgroup and IPC namespaces.
    Namespaces,
    /// Replacing the cgroup mounts.
    CgroupMounts,
    /// Making paths read-only.
    ReadOnly,
    /// Masking host control sockets.
    Mask,
    /// `PR_SET_NO_NEW_PRIVS`.
    NoNewPrivs,
    /// `setgroups`/`setresgid`/`setresuid`.
    Identity,
    /// The capability sets.
    Capabilities,
    /// `landlock_restrict_self`.
    Landlock,
    /// The signal mask.
    SignalMask,
    /// Installing the seccomp filter.
    Seccomp,
}

impl ChildStep {
    /// Every step, in plan order.
    pub const ALL: [ChildStep; 11] = [
        ChildStep::EnterCgroup,
        ChildStep::Namespaces,
        ChildStep::CgroupMounts,
        ChildStep::ReadOnly,
        ChildStep::Mask,
        ChildStep::NoNewPrivs,
        ChildStep::Identity,
        ChildStep::Capabilities,
        ChildStep::Landlock,
        ChildStep::SignalMask,
        ChildStep::Seccomp,
    ];

    /// What the step does, for an error message.
    pub fn describe(self) -> &'static str {
        match self {
            ChildStep::EnterCgroup => "entering the cgroup (cgroup.procs)",
            ChildStep::Namespaces => "creating the mount, cgroup and IPC namespaces",
            ChildStep::CgroupMounts => "replacing the cgroup mounts",
            ChildStep::ReadOnly => "making kernel tunables read-only",
            ChildStep::Mask => "masking host control sockets",
            ChildStep::NoNewPrivs => "setting no_new_privs",
            ChildStep::Identity => "switching user and groups",
            ChildStep::Capabilities => "dropping capabilities",
            ChildStep::Landlock => "entering the Landlock domain",
            ChildStep::SignalMask => "restoring the signal mask",
            ChildStep::Seccomp => "installing the seccomp filter",
        }
    }
}

/// A failed step: the errno of the child, and which step it was. `std` carries only the
/// errno from the child, so the step travels in a pipe of our own.
fn step<T>(which: ChildStep, result: io::Result<T>, report: &OwnedFd) -> io::Result<T> {
    if result.is_err() {
        let byte = [which as u8];
        // SAFETY: writes one byte from a stack buffer to a descriptor the plan owns.
        unsafe { libc::write(report.as_raw_fd(), byte.as_ptr().cast(), 1) };
    }
    result
}

fn check(ret: libc::c_int) -> io::Result<()> {
    if ret != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

fn run_plan(plan: &ChildPlan, report: &OwnedFd) -> io::Result<()> {
    // SAFETY: writes 1 byte from a static buffer to an fd the plan owns; async-signal-safe.
    let n = unsafe { libc::write(plan.cgroup_procs.as_raw_fd(), b"0".as_ptr().cast(), 1) };
    let entered = if n == 1 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    };
    step(ChildStep::EnterCgroup, entered, report)?;
    if let Some(seal) = &plan.seal {
        // SAFETY: no pointers.
        let unshared = check(unsafe {
            libc::unshare(libc::CLONE_NEWNS | libc::CLONE_NEWCGROUP | libc::CLONE_NEWIPC)
        });
        step(ChildStep::Namespaces, unshared, report)?;
        step(ChildStep::Namespaces, mount::make_mounts_private(), report)?;
        for path in &seal.cgroup_v1 {
            step(ChildStep::CgroupMounts, mount::detach(path), report)?;
        }
        for path in &seal.cgroup_v2 {
            step(ChildStep::CgroupMounts, mount::detach(path), report)?;
            step(
                ChildStep::CgroupMounts,
                mount::mount_cgroup2_read_only(path),
                report,
            )?;
        }
        for path in &seal.masked_dirs {
            step(ChildStep::Mask, mount::mask_directory(path), report)?;
        }
        for path in &seal.masked_files {
            step(ChildStep::Mask, mount::mask_file(path), report)?;
        }
        for path in &seal.read_only {
            step(ChildStep::ReadOnly, mount::bind_onto_itself(path), report)?;
            step(
                ChildStep::ReadOnly,
                mount::set_read_only_recursive(path),
                report,
            )?;
        }
        step(ChildStep::NoNewPrivs, seccomp::set_no_new_privs(), report)?;
    }
    // The bounding set first: cutting it needs CAP_SETPCAP, which a new uid loses.
    if let Some(caps) = &plan.caps {
        step(ChildStep::Capabilities, drop_bounding(*caps), report)?;
    }
    if let Some(id) = &plan.identity {
        let keep = plan.caps.is_some_and(|c| c.keep != 0);
        step(ChildStep::Identity, set_identity(id, keep), report)?;
    }
    if let Some(caps) = &plan.caps {
        step(ChildStep::Capabilities, set_capabilities(*caps), report)?;
    }
    if let Some(seal) = &plan.seal {
        step(
            ChildStep::Landlock,
            landlock::restrict_self(&seal.landlock),
            report,
        )?;
    }
    if let Some(mask) = &plan.mask {
        step(
            ChildStep::SignalMask,
            mask.thread_set_mask().map_err(io::Error::from),
            report,
        )?;
    }
    if let Some(seal) = &plan.seal {
        step(ChildStep::Seccomp, seccomp::install(&seal.seccomp), report)?;
    }
    Ok(())
}

fn set_identity(id: &Identity, keep_caps: bool) -> io::Result<()> {
    // SAFETY: `groups` is a valid array of its length for the call.
    check(unsafe { libc::setgroups(id.groups.len(), id.groups.as_ptr()) })?;
    // SAFETY: integer arguments only.
    check(unsafe { libc::setresgid(id.gid, id.gid, id.gid) })?;
    if keep_caps {
        // Keep the permitted set across the uid change; the capability step trims it.
        // SAFETY: integer arguments only.
        check(unsafe { libc::prctl(libc::PR_SET_KEEPCAPS, 1, 0, 0, 0) })?;
    }
    // SAFETY: integer arguments only.
    check(unsafe { libc::setresuid(id.uid, id.uid, id.uid) })
}

/// `struct __user_cap_header_struct`.
#[repr(C)]
struct CapHeader {
    version: u32,
    pid: libc::c_int,
}

/// `struct __user_cap_data_struct`.
#[repr(C)]
#[derive(Clone, Copy)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

/// `_LINUX_CAPABILITY_VERSION_3`: two 32-bit words per set.
const CAP_VERSION_3: u32 = 0x2008_0522;

/// Cuts the bounding set to `keep`: no program executed later, set-user-ID or not, gets
/// any other capability back.
fn drop_bounding(caps: CapSets) -> io::Result<()> {
    for cap in 0..=caps.last_cap.min(63) {
        if caps.keep & (1 << cap) == 0 {
            // SAFETY: integer arguments only.
            check(unsafe { libc::prctl(libc::PR_CAPBSET_DROP, cap as libc::c_ulong, 0, 0, 0) })?;
        }
    }
    Ok(())
}

/// Leaves `keep` in the permitted, effective, inheritable and ambient sets, nothing else.
fn set_capabilities(caps: CapSets) -> io::Result<()> {
    // SAFETY: integer arguments only.
    check(unsafe {
        libc::prctl(
            libc::PR_CAP_AMBIENT,
            libc::PR_CAP_AMBIENT_CLEAR_ALL as libc::c_ulong,
            0,
            0,
            0,
        )
    })?;
    let low = caps.keep as u32;
    let high = (caps.keep >> 32) as u32;
    let mut header = CapHeader {
        version: CAP_VERSION_3,
        pid: 0,
    };
    let data = [
        CapData {
            effective: low,
            permitted: low,
            inheritable: low,
        },
        CapData {
            effective: high,
            permitted: high,
            inheritable: high,
        },
    ];
    // SAFETY: a version-3 header and the two data words it asks for, alive for the call.
    check(unsafe { libc::syscall(libc::SYS_capset, &mut header, data.as_ptr()) as libc::c_int })?;
    for cap in 0..=caps.last_cap.min(63) {
        if caps.keep & (1 << cap) != 0 {
            // In the ambient set, a kept capability survives `execve` of a non-root program.
            // SAFETY: integer arguments only.
            check(unsafe {
                libc::prctl(
                    libc::PR_CAP_AMBIENT,
                    libc::PR_CAP_AMBIENT_RAISE as libc::c_ulong,
                    cap as libc::c_ulong,
                    0,
                    0,
                )
            })?;
        }
    }
    Ok(())
}

/// Why [`spawn_with_plan`] failed.
#[derive(Debug)]
pub struct SpawnFailure {
    /// The step of the plan that failed in the child, if it was one (else `fork` or `execve`).
    pub step: Option<ChildStep>,
    /// The kernel's answer.
    pub error: io::Error,
}

/// Spawns `cmd` with `plan` run in the child between `fork` and `execve` (see the module docs).
pub fn spawn_with_plan(mut cmd: Command, plan: ChildPlan) -> Result<Child, SpawnFailure> {
    let (read_end, write_end) =
        nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(|e| SpawnFailure {
            step: None,
            error: e.into(),
        })?;
    let child_setup = move || run_plan(&plan, &write_end);
    // SAFETY: the closure runs only system calls on data the plan owns (write, unshare,
    // mount, umount2, mount_setattr, prctl, setgroups, setresgid, setresuid, capset,
    // landlock_restrict_self, rt_sigprocmask, seccomp); it allocates nothing.
    unsafe {
        cmd.pre_exec(child_setup);
    }
    let spawned = cmd.spawn();
    // Drop the parent's copy of the write end (the closure holding it lives in `cmd`).
    drop(cmd);
    match spawned {
        Ok(child) => Ok(child),
        Err(error) => {
            let mut byte = [0u8; 1];
            let n = nix::unistd::read(&read_end, &mut byte).unwrap_or(0);
            let step = (n == 1).then(|| step_from_byte(byte[0])).flatten();
            Err(SpawnFailure { step, error })
        }
    }
}

fn step_from_byte(byte: u8) -> Option<ChildStep> {
    ChildStep::ALL.into_iter().find(|s| *s as u8 == byte)
}

/// The highest capability number of this kernel.
pub fn last_cap() -> io::Result<u32> {
    let text = std::fs::read_to_string("/proc/sys/kernel/cap_last_cap")?;
    text.trim()
        .parse()
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "cap_last_cap is not a number"))
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
