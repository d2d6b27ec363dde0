//! Mount-namespace calls (`unshare(2)`, `mount(2)`, `statvfs(3)`) used to give a confined
//! process a read-only view of the cgroup hierarchy.
//!
//! [`unshare_mount_namespace`], [`make_mounts_slave`] and [`remount_read_only`] are plain
//! syscalls with no allocation, so they may run in a child between `fork` and `exec`.

use std::ffi::CStr;
use std::io;

/// Mount flags (`MS_*`) of a mount point, as `statvfs(3)` reports them (`ST_*`), for a
/// remount that must keep them.
pub fn mount_flags(path: &CStr) -> io::Result<libc::c_ulong> {
    // SAFETY: an all-zero statvfs is a valid value for the kernel to overwrite.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: `path` is NUL-terminated and `st` is writable for the call.
    if unsafe { libc::statvfs(path.as_ptr(), &mut st) } != 0 {
        return Err(io::Error::last_os_error());
    }
    let pairs = [
        (libc::ST_NOSUID, libc::MS_NOSUID),
        (libc::ST_NODEV, libc::MS_NODEV),
        (libc::ST_NOEXEC, libc::MS_NOEXEC),
        (libc::ST_NOATIME, libc::MS_NOATIME),
        (libc::ST_NODIRATIME, libc::MS_NODIRATIME),
        (libc::ST_RELATIME, libc::MS_RELATIME),
    ];
    Ok(pairs
        .iter()
        .filter(|(st_flag, _)| st.f_flag & st_flag != 0)
        .fold(0, |acc, (_, ms_flag)| acc | ms_flag))
}

/// `unshare(CLONE_NEWNS)`: a private copy of the mount table for the calling process.
pub fn unshare_mount_namespace() -> io::Result<()> {
    // SAFETY: no pointers.
    if unsafe { libc::unshare(libc::CLONE_NEWNS) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// `mount(NULL, "/", NULL, MS_SLAVE | MS_REC, NULL)`: changes made here stay here.
pub fn make_mounts_slave() -> io::Result<()> {
    // SAFETY: static NUL-terminated path, NULL for the unused arguments.
    let ret = unsafe {
        libc::mount(
            std::ptr::null(),
            c"/".as_ptr(),
            std::ptr::null(),
            libc::MS_SLAVE | libc::MS_REC,
            std::ptr::null(),
        )
    };
    if ret != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// `mount(NULL, path, NULL, MS_BIND | MS_REMOUNT | MS_RDONLY | keep, NULL)`: makes the mount
/// at `path` read-only (in the calling process's mount namespace), keeping flags `keep`.
pub fn remount_read_only(path: &CStr, keep: libc::c_ulong) -> io::Result<()> {
    // SAFETY: `path` is NUL-terminated; NULL for the unused arguments.
    let ret = unsafe {
        libc::mount(
            std::ptr::null(),
            path.as_ptr(),
            std::ptr::null(),
            libc::MS_BIND | libc::MS_REMOUNT | libc::MS_RDONLY | keep,
            std::ptr::null(),
        )
    };
    if ret != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}
