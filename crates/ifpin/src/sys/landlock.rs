//! Landlock (`landlock_create_ruleset(2)`, `landlock_restrict_self(2)`), used by the sealed
//! level for what Landlock restricts between processes, not for files:
//!
//! - every Landlock domain may ptrace (and so open `/proc/PID/root`, `/proc/PID/fd`, use
//!   `process_vm_readv`/`writev`, `pidfd_getfd`) only processes in the same or a nested domain;
//! - `LANDLOCK_SCOPE_SIGNAL` (ABI 6, Linux 6.12): signals only to processes of the domain;
//! - `LANDLOCK_SCOPE_ABSTRACT_UNIX_SOCKET` (ABI 6): connects to abstract unix sockets only
//!   when they were created inside the domain.
//!
//! The ruleset is created in the parent (a file descriptor, close-on-exec) and applied by the
//! child between `fork` and `execve`, after `PR_SET_NO_NEW_PRIVS`.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

/// `LANDLOCK_SCOPE_ABSTRACT_UNIX_SOCKET`.
pub const SCOPE_ABSTRACT_UNIX_SOCKET: u64 = 1 << 0;
/// `LANDLOCK_SCOPE_SIGNAL`.
pub const SCOPE_SIGNAL: u64 = 1 << 1;
/// The first ABI with both scopes.
pub const SCOPES_ABI: u32 = 6;
/// `LANDLOCK_CREATE_RULESET_VERSION`.
const CREATE_RULESET_VERSION: u32 = 1 << 0;

/// `struct landlock_ruleset_attr` (ABI 6 layout).
#[repr(C)]
struct RulesetAttr {
    handled_access_fs: u64,
    handled_access_net: u64,
    scoped: u64,
}

/// The kernel's Landlock ABI version: `Ok(None)` when Landlock is built but disabled at boot
/// (`EOPNOTSUPP`) or not built (`ENOSYS`).
pub fn abi_version() -> io::Result<Option<u32>> {
    // SAFETY: a NULL attribute with size 0 and the VERSION flag is the documented query.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_landlock_create_ruleset,
            std::ptr::null::<RulesetAttr>(),
            0usize,
            CREATE_RULESET_VERSION,
        )
    };
    if ret < 0 {
        let err = io::Error::last_os_error();
        return match err.raw_os_error() {
            Some(libc::EOPNOTSUPP) | Some(libc::ENOSYS) => Ok(None),
            _ => Err(err),
        };
    }
    Ok(Some(ret as u32))
}

/// A ruleset that handles no file or network access and sets `scoped`.
pub fn create_scoped_ruleset(scoped: u64) -> io::Result<OwnedFd> {
    let attr = RulesetAttr {
        handled_access_fs: 0,
        handled_access_net: 0,
        scoped,
    };
    // SAFETY: `attr` is a valid ruleset attribute of the size passed, alive for the call.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_landlock_create_ruleset,
            &attr as *const RulesetAttr,
            std::mem::size_of::<RulesetAttr>(),
            0u32,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: on success the kernel returned a new descriptor (close-on-exec) owned by nobody.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

/// `landlock_restrict_self(ruleset, 0)`: the calling thread enters a new domain. Needs
/// `PR_SET_NO_NEW_PRIVS` (or `CAP_SYS_ADMIN`). No allocation: safe before `execve`.
pub fn restrict_self(ruleset: &OwnedFd) -> io::Result<()> {
    // SAFETY: integer arguments only; the descriptor is open for the call.
    let ret = unsafe { libc::syscall(libc::SYS_landlock_restrict_self, ruleset.as_raw_fd(), 0u32) };
    if ret != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}
