//! Mount calls (`mount(2)`, `umount2(2)`, `mount_setattr(2)`) that build a sealed program's
//! own view of the file system: the cgroup hierarchy replaced, kernel tunables read-only,
//! host control sockets masked.
//!
//! Each is one system call on a NUL-terminated path and allocates nothing, so they may run in
//! a child between `fork` and `exec`, in a mount namespace of its own.

use std::ffi::CStr;
use std::io;

/// `mount(NULL, "/", NULL, MS_PRIVATE | MS_REC, NULL)`: no mount event propagates into or out
/// of the calling process's mount namespace any more (a cgroup2 mounted on the host later
/// must not appear writable inside).
pub fn make_mounts_private() -> io::Result<()> {
    // SAFETY: static NUL-terminated path, NULL for the unused arguments.
    let ret = unsafe {
        libc::mount(
            std::ptr::null(),
            c"/".as_ptr(),
            std::ptr::null(),
            libc::MS_PRIVATE | libc::MS_REC,
            std::ptr::null(),
        )
    };
    if ret != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// `umount2(path, MNT_DETACH)`: takes the mount at `path` (and everything below it) out of
/// the calling process's mount namespace.
pub fn detach(path: &CStr) -> io::Result<()> {
    // SAFETY: `path` is NUL-terminated.
    if unsafe { libc::umount2(path.as_ptr(), libc::MNT_DETACH) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Mounts a fresh, read-only cgroup2 at `path`. In a new cgroup namespace its root is the
/// namespace's root cgroup: nothing above it is reachable through this mount.
pub fn mount_cgroup2_read_only(path: &CStr) -> io::Result<()> {
    // SAFETY: static NUL-terminated strings and `path`; NULL data.
    let ret = unsafe {
        libc::mount(
            c"cgroup2".as_ptr(),
            path.as_ptr(),
            c"cgroup2".as_ptr(),
            libc::MS_RDONLY | libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
            std::ptr::null(),
        )
    };
    if ret != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// `mount(path, path, NULL, MS_BIND | MS_REC, NULL)`: makes `path` a mount point of its own
/// (a file or a directory), so it can be made read-only without its parent.
pub fn bind_onto_itself(path: &CStr) -> io::Result<()> {
    // SAFETY: `path` is NUL-terminated; NULL for the unused arguments.
    let ret = unsafe {
        libc::mount(
            path.as_ptr(),
            path.as_ptr(),
            std::ptr::null(),
            libc::MS_BIND | libc::MS_REC,
            std::ptr::null(),
        )
    };
    if ret != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// `struct mount_attr` of `mount_setattr(2)`.
#[repr(C)]
struct MountAttr {
    attr_set: u64,
    attr_clr: u64,
    propagation: u64,
    userns_fd: u64,
}

/// `MOUNT_ATTR_RDONLY`.
const MOUNT_ATTR_RDONLY: u64 = 0x1;

/// `mount_setattr(AT_FDCWD, path, AT_RECURSIVE, {MOUNT_ATTR_RDONLY})` (Linux 5.12): the mount
/// at `path` and every mount below it become read-only. Undoing it needs `CAP_SYS_ADMIN`.
pub fn set_read_only_recursive(path: &CStr) -> io::Result<()> {
    let attr = MountAttr {
        attr_set: MOUNT_ATTR_RDONLY,
        attr_clr: 0,
        propagation: 0,
        userns_fd: 0,
    };
    // SAFETY: `path` is NUL-terminated and `attr` a valid mount_attr of the size passed.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            libc::AT_FDCWD,
            path.as_ptr(),
            libc::AT_RECURSIVE as libc::c_uint,
            &attr as *const MountAttr,
            std::mem::size_of::<MountAttr>(),
        )
    };
    if ret != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Hides the directory `path` behind an empty, read-only tmpfs.
pub fn mask_directory(path: &CStr) -> io::Result<()> {
    // SAFETY: static NUL-terminated strings and `path`.
    let ret = unsafe {
        libc::mount(
            c"tmpfs".as_ptr(),
            path.as_ptr(),
            c"tmpfs".as_ptr(),
            libc::MS_RDONLY | libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
            c"size=4k,mode=0755".as_ptr().cast(),
        )
    };
    if ret != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Hides the file `path` (a socket, say) behind `/dev/null`, read-only: a `connect()` to it
/// fails with `ECONNREFUSED`.
pub fn mask_file(path: &CStr) -> io::Result<()> {
    // SAFETY: static NUL-terminated source and `path`; NULL for the unused arguments.
    let ret = unsafe {
        libc::mount(
            c"/dev/null".as_ptr(),
            path.as_ptr(),
            std::ptr::null(),
            libc::MS_BIND,
            std::ptr::null(),
        )
    };
    if ret != 0 {
        return Err(io::Error::last_os_error());
    }
    set_read_only_recursive(path)
}
