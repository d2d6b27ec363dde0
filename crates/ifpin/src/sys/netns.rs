//! Calls that find the network namespace of a socket held by another process:
//! `pidfd_open(2)` of a thread, `pidfd_getfd(2)`, `ioctl(SIOCGSKNS)` and `getxattr(2)` of a
//! socket's protocol name.
//!
//! A socket in another process's fd table cannot be opened through `/proc/PID/fd/N` (`open`
//! of a socket fails with `ENXIO`); `pidfd_getfd` (Linux 5.6, needs the right to ptrace the
//! process) copies the descriptor into this process instead, and `SIOCGSKNS` (Linux 4.9)
//! turns a socket descriptor into a descriptor of its network namespace, usable with `setns`.

use std::ffi::{CStr, c_int};
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

/// `PIDFD_THREAD` (Linux 6.9, `linux/pidfd.h`): a pidfd for one thread rather than a process.
pub const PIDFD_THREAD: c_int = libc::O_EXCL;

/// `SIOCGSKNS` (`linux/sockios.h`): the network namespace of a socket, as a new descriptor.
pub const SIOCGSKNS: libc::c_ulong = 0x894C;

/// The extended attribute every socket inode answers with its protocol's name (`TCP`,
/// `UDPv6`, `UNIX`, `NETLINK`...).
pub const SOCKPROTONAME: &CStr = c"system.sockprotoname";

/// `pidfd_open(pid, flags)`: [`PIDFD_THREAD`] opens a thread that is not its process's leader.
pub fn pidfd_open(pid: u32, flags: c_int) -> io::Result<OwnedFd> {
    // SAFETY: plain system call with integer arguments.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid as libc::pid_t, flags) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: on success the kernel returned a new file descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as c_int) })
}

/// `pidfd_getfd(pidfd, target, 0)`: a copy, in this process, of descriptor `target` of the
/// process (or thread) `pidfd` refers to.
pub fn pidfd_getfd(pidfd: BorrowedFd<'_>, target: c_int) -> io::Result<OwnedFd> {
    // SAFETY: plain system call with integer arguments.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_getfd, pidfd.as_raw_fd(), target, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: on success the kernel returned a new file descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as c_int) })
}

/// `ioctl(socket, SIOCGSKNS)`: a descriptor of the socket's network namespace.
pub fn socket_netns(socket: BorrowedFd<'_>) -> io::Result<OwnedFd> {
    // SAFETY: SIOCGSKNS takes no argument and touches no memory of ours.
    let fd = unsafe { libc::ioctl(socket.as_raw_fd(), SIOCGSKNS as _) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: on success the kernel returned a new file descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// `getxattr(path, name)`, following links, into `buf`; returns the value's length.
pub fn getxattr(path: &CStr, name: &CStr, buf: &mut [u8]) -> io::Result<usize> {
    // SAFETY: `path` and `name` are NUL-terminated; `buf` is valid for `buf.len()` bytes.
    let len = unsafe {
        libc::getxattr(
            path.as_ptr(),
            name.as_ptr(),
            buf.as_mut_ptr().cast(),
            buf.len(),
        )
    };
    if len < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(len as usize)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsFd;
    use std::os::unix::fs::MetadataExt;

    #[test]
    fn our_own_socket_names_its_protocol_and_namespace() {
        let socket = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let fd = socket.as_raw_fd();
        let path = std::ffi::CString::new(format!("/proc/self/fd/{fd}")).unwrap();
        let mut buf = [0u8; 32];
        let len = getxattr(&path, SOCKPROTONAME, &mut buf).unwrap();
        assert_eq!(&buf[..len], b"TCP\0");

        let me = pidfd_open(std::process::id(), 0).unwrap();
        let copy = pidfd_getfd(me.as_fd(), fd).unwrap();
        let ns = socket_netns(copy.as_fd()).unwrap();
        let ns_inode = std::fs::metadata(format!("/proc/self/fd/{}", ns.as_raw_fd()))
            .unwrap()
            .ino();
        let mine = std::fs::metadata("/proc/thread-self/ns/net").unwrap().ino();
        assert_eq!(ns_inode, mine);
        let file = std::fs::File::open("/proc/self/status").unwrap();
        assert!(socket_netns(file.as_fd()).is_err());
    }
}
