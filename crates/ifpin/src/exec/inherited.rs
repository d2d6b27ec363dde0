//! Sockets the program would inherit from outside: withheld, or (on stdin, stdout or stderr)
//! refused.
//!
//! cgroup BPF programs hold a socket by the cgroup that *created* it. An `AF_INET`,
//! `AF_INET6` or `AF_PACKET` socket that ifpin's own parent left open without close-on-exec
//! (`ifpin exec ... 3<>...`, socket activation) would reach the program without any of the
//! confinement's programs seeing its packets, even at `sealed`. So, before the program starts,
//! such sockets at fd 3 and above are marked close-on-exec (the program never receives them),
//! and such a socket as fd 0, 1 or 2 (inetd-style) stops the run.
//!
//! The same holds for a descriptor on a cgroup or BPF file system (a directory of the cgroup
//! hierarchy opened outside): through it, or through its `/proc/self/fd` link, the program
//! would reach the host's writable hierarchy whatever its own mount namespace shows. Such
//! descriptors at fd 3 and above are withheld too.

use crate::error::SyscallError;
use std::os::fd::RawFd;

use super::ExecError;
use crate::sys::fd as sys;

/// The name of an address family ifpin withholds, `None` for any other family.
fn held_family(domain: i32) -> Option<&'static str> {
    match domain {
        libc::AF_INET => Some("AF_INET"),
        libc::AF_INET6 => Some("AF_INET6"),
        libc::AF_PACKET => Some("AF_PACKET"),
        _ => None,
    }
}

/// Whether `fd` is on a file system through which a descriptor leads out of a confinement.
fn leads_out(fd: RawFd) -> bool {
    sys::file_system_type(fd).is_ok_and(|t| {
        sys::ESCAPE_FILE_SYSTEMS
            .iter()
            .any(|(magic, _)| *magic == t)
    })
}

/// Marks close-on-exec every inheritable `AF_INET`, `AF_INET6` and `AF_PACKET` socket, and
/// every descriptor on a cgroup or BPF file system, of this process at fd 3 and above, and
/// returns their numbers (ascending). Fails, changing nothing,
/// if fd 0, 1 or 2 is such a socket.
///
/// This changes the caller's own descriptors: they stay open in this process, but no program
/// it executes from then on receives them.
pub(super) fn withhold_inherited_sockets() -> Result<Vec<RawFd>, ExecError> {
    let sys_err = |call| move |source| ExecError::Sys(SyscallError::new(call, source));
    let mut fds: Vec<RawFd> = std::fs::read_dir("/proc/self/fd")
        .map_err(sys_err("open /proc/self/fd"))?
        .map(|entry| entry.map(|e| e.file_name().to_str().and_then(|n| n.parse().ok())))
        .collect::<Result<Vec<_>, _>>()
        .map_err(sys_err("read /proc/self/fd"))?
        .into_iter()
        .flatten()
        .collect();
    fds.sort_unstable();

    let mut sockets = Vec::new();
    for fd in fds {
        let domain = match sys::socket_domain(fd) {
            Ok(domain) => domain,
            // Not a socket: withheld only if it leads into the cgroup or BPF file systems.
            Err(e) if e.raw_os_error() == Some(libc::ENOTSOCK) => {
                if fd > 2 && leads_out(fd) {
                    sockets.push(fd);
                }
                continue;
            }
            // The directory listing's own descriptor, closed since.
            Err(e) if e.raw_os_error() == Some(libc::EBADF) => continue,
            Err(source) => {
                return Err(ExecError::Sys(SyscallError::new(
                    "getsockopt(SO_DOMAIN)",
                    source,
                )));
            }
        };
        let Some(family) = held_family(domain) else {
            continue;
        };
        if fd <= 2 {
            return Err(ExecError::InheritedStdioSocket { fd, family });
        }
        sockets.push(fd);
    }

    let mut withheld = Vec::new();
    for fd in sockets {
        let flags = sys::fd_flags(fd).map_err(sys_err("fcntl(F_GETFD)"))?;
        if flags & sys::FD_CLOEXEC == 0 {
            sys::set_fd_flags(fd, flags | sys::FD_CLOEXEC).map_err(sys_err("fcntl(F_SETFD)"))?;
            withheld.push(fd);
        }
    }
    Ok(withheld)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsRawFd;

    /// The tests below mark this process's descriptors: one at a time, or one would mark the
    /// other's first and it would see nothing left to withhold.
    static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

    #[test]
    fn an_inheritable_inet_socket_is_withheld_and_others_are_left_alone() {
        let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
        let inet = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let (unix, _peer) = std::os::unix::net::UnixStream::pair().unwrap();
        let closing = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        for fd in [inet.as_raw_fd(), unix.as_raw_fd()] {
            sys::set_fd_flags(fd, 0).unwrap();
        }
        let withheld = withhold_inherited_sockets().unwrap();
        // Other tests of this binary may run at the same time: look only at our own fds.
        assert!(withheld.contains(&inet.as_raw_fd()), "{withheld:?}");
        assert!(!withheld.contains(&unix.as_raw_fd()), "{withheld:?}");
        assert!(!withheld.contains(&closing.as_raw_fd()), "{withheld:?}");
        assert_ne!(
            sys::fd_flags(inet.as_raw_fd()).unwrap() & sys::FD_CLOEXEC,
            0
        );
        assert_eq!(
            sys::fd_flags(unix.as_raw_fd()).unwrap() & sys::FD_CLOEXEC,
            0
        );
    }

    #[test]
    fn an_inheritable_cgroup_directory_is_withheld() {
        let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
        let Ok(mount) = crate::cgroup::cgroup2_mount() else {
            return; // no cgroup2 here: nothing to hold
        };
        let dir = std::fs::File::open(&mount).unwrap();
        let plain = std::fs::File::open("/").unwrap();
        for fd in [dir.as_raw_fd(), plain.as_raw_fd()] {
            sys::set_fd_flags(fd, 0).unwrap();
        }
        let withheld = withhold_inherited_sockets().unwrap();
        assert!(withheld.contains(&dir.as_raw_fd()), "{withheld:?}");
        assert!(!withheld.contains(&plain.as_raw_fd()), "{withheld:?}");
    }

    #[test]
    fn families_held() {
        assert_eq!(held_family(libc::AF_INET6), Some("AF_INET6"));
        assert_eq!(held_family(libc::AF_PACKET), Some("AF_PACKET"));
        assert_eq!(held_family(libc::AF_UNIX), None);
        assert_eq!(held_family(libc::AF_NETLINK), None);
    }
}
