//! Calls on a file descriptor known only by its number (as listed in `/proc/self/fd`): its
//! close-on-exec flag (`fcntl(2)`) and, if it is a socket, its address family (`SO_DOMAIN`).
//!
//! They take a [`RawFd`] because the descriptor is not owned or borrowed by anything in this
//! process's Rust code; none of them reads or writes memory through it, and a number that is
//! not open fails with `EBADF`.

use std::ffi::c_int;
use std::io;
use std::mem;
use std::os::fd::RawFd;

/// `FD_CLOEXEC`: the descriptor is closed by `execve(2)`.
pub const FD_CLOEXEC: c_int = libc::FD_CLOEXEC;

/// `fcntl(fd, F_GETFD)`: the descriptor flags ([`FD_CLOEXEC`]).
pub fn fd_flags(fd: RawFd) -> io::Result<c_int> {
    // SAFETY: F_GETFD takes no argument and touches no memory of ours.
    let rc = unsafe { libc::fcntl(fd, libc::F_GETFD) };
    if rc == -1 {
        return Err(io::Error::last_os_error());
    }
    Ok(rc)
}

/// `fcntl(fd, F_SETFD, flags)`: sets the descriptor flags.
pub fn set_fd_flags(fd: RawFd, flags: c_int) -> io::Result<()> {
    // SAFETY: F_SETFD takes an int and touches no memory of ours.
    let rc = unsafe { libc::fcntl(fd, libc::F_SETFD, flags) };
    if rc == -1 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Reads `SO_DOMAIN`: the socket's address family (`AF_INET`, `AF_PACKET`, ...). Fails with
/// `ENOTSOCK` when `fd` is not a socket.
#[doc(alias = "SO_DOMAIN")]
pub fn socket_domain(fd: RawFd) -> io::Result<c_int> {
    let mut value: c_int = 0;
    let mut len = mem::size_of::<c_int>() as libc::socklen_t;
    // SAFETY: `value` and `len` are live and `len` holds the size of `value`.
    let rc = unsafe {
        libc::getsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_DOMAIN,
            (&raw mut value).cast(),
            &mut len,
        )
    };
    if rc == -1 {
        return Err(io::Error::last_os_error());
    }
    Ok(value)
}

/// `CGROUP2_SUPER_MAGIC`, `CGROUP_SUPER_MAGIC` and `BPF_FS_MAGIC` (`linux/magic.h`): the file
/// systems through which an inherited directory descriptor leads out of a confinement.
pub const ESCAPE_FILE_SYSTEMS: [(i64, &str); 3] = [
    (0x6367_7270, "cgroup2"),
    (0x0027_e0eb, "cgroup"),
    (0xcafe_4a11, "bpf"),
];

/// `fstatfs(fd)`: the type (`f_type`, a `*_SUPER_MAGIC`) of the file system `fd` is on.
pub fn file_system_type(fd: RawFd) -> io::Result<i64> {
    // SAFETY: an all-zero statfs is a valid value for the kernel to overwrite.
    let mut st: libc::statfs = unsafe { mem::zeroed() };
    // SAFETY: `st` is writable for the call; the descriptor is only read.
    if unsafe { libc::fstatfs(fd, &mut st) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(st.f_type as i64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsRawFd;

    #[test]
    fn socket_domain_names_the_family_and_refuses_non_sockets() {
        let v4 = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        assert_eq!(socket_domain(v4.as_raw_fd()).unwrap(), libc::AF_INET);
        let (unix, _) = std::os::unix::net::UnixStream::pair().unwrap();
        assert_eq!(socket_domain(unix.as_raw_fd()).unwrap(), libc::AF_UNIX);
        let file = std::fs::File::open("/proc/self/status").unwrap();
        let err = socket_domain(file.as_raw_fd()).unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::ENOTSOCK));
    }

    #[test]
    fn close_on_exec_reads_back() {
        // std opens everything close-on-exec.
        let s = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let fd = s.as_raw_fd();
        assert_ne!(fd_flags(fd).unwrap() & FD_CLOEXEC, 0);
        set_fd_flags(fd, 0).unwrap();
        assert_eq!(fd_flags(fd).unwrap() & FD_CLOEXEC, 0);
        set_fd_flags(fd, FD_CLOEXEC).unwrap();
        assert_ne!(fd_flags(fd).unwrap() & FD_CLOEXEC, 0);
    }
}
