//! The only place in ifpin-demo with `unsafe`: raw system calls, each wrapped in one safe
//! function with a `SAFETY` comment on every block.
//!
//! * [`sockopt`]: socket options as C values or bytes, an `AF_PACKET` send, thread capabilities.
//! * [`interrupt`]: the `SIGINT`/`SIGTERM` handler of `ifpin demo`.
//! * [`escape`]: the raw calls of the escape vectors (`clone3`, pidfds, `ptrace`, `int 0x80`).
//!
//! * [`setns_net`]: `setns(2)` with `CLONE_NEWNET`, usable between `fork` and `exec`
//!   (async-signal-safe, no allocation).
//! * [`signal_when_parent_dies`]: `prctl(PR_SET_PDEATHSIG)` between `fork` and `exec`.
//! * [`packet_socket`] / [`recv_packet`] / [`packet_drops`]: an `AF_PACKET` / `SOCK_RAW` socket bound to one
//!   interface, `recvfrom(2)` returning the `sll_pkttype` of each frame, and the kernel's drop
//!   count for it.
//!
//! Everything above this module is safe code.

pub(crate) mod escape;
pub(crate) mod interrupt;
pub(crate) mod sockopt;

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::time::Duration;

/// `setns(fd, CLONE_NEWNET)` on the calling thread.
///
/// Async-signal-safe: it is called from `pre_exec` hooks, between `fork` and `exec`.
pub(crate) fn setns_net(fd: RawFd) -> io::Result<()> {
    // SAFETY: setns takes an fd and a flag; no memory is passed.
    let rc = unsafe { libc::setns(fd, libc::CLONE_NEWNET) };
    if rc == -1 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// `unshare(CLONE_NEWNET)` on the calling thread (used to probe for the privilege).
pub(crate) fn unshare_net() -> io::Result<()> {
    // SAFETY: unshare takes only a flag.
    let rc = unsafe { libc::unshare(libc::CLONE_NEWNET) };
    if rc == -1 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Effective user id of the process (`geteuid(2)`).
pub(crate) fn euid() -> u32 {
    // SAFETY: geteuid cannot fail and takes no arguments.
    unsafe { libc::geteuid() }
}

/// `ETH_P_ALL` in network byte order, as `AF_PACKET` wants it.
fn eth_p_all_be() -> u16 {
    (libc::ETH_P_ALL as u16).to_be()
}

/// Opens `socket(AF_PACKET, SOCK_RAW, htons(ETH_P_ALL))` and binds it to `ifindex`, with a
/// receive timeout (so a reader thread can notice it must stop) and a large receive buffer.
///
/// The socket lives in the network namespace of the calling thread.
pub(crate) fn packet_socket(ifindex: u32, timeout: Duration) -> io::Result<OwnedFd> {
    // SAFETY: plain socket(2) call; the result is checked before use.
    let fd = unsafe {
        libc::socket(
            libc::AF_PACKET,
            libc::SOCK_RAW | libc::SOCK_CLOEXEC,
            i32::from(eth_p_all_be()),
        )
    };
    if fd == -1 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fd is a fresh, valid descriptor that nothing else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };

    // SO_RCVBUFFORCE (CAP_NET_ADMIN) goes past net.core.rmem_max; SO_RCVBUF is the fallback.
    let rcvbuf: libc::c_int = 8 << 20;
    if setsockopt(
        fd.as_raw_fd(),
        libc::SOL_SOCKET,
        libc::SO_RCVBUFFORCE,
        &rcvbuf,
    )
    .is_err()
    {
        setsockopt(fd.as_raw_fd(), libc::SOL_SOCKET, libc::SO_RCVBUF, &rcvbuf)?;
    }
    let tv = libc::timeval {
        tv_sec: timeout.as_secs() as libc::time_t,
        tv_usec: timeout.subsec_micros() as libc::suseconds_t,
    };
    setsockopt(fd.as_raw_fd(), libc::SOL_SOCKET, libc::SO_RCVTIMEO, &tv)?;

    // SAFETY: sockaddr_ll is plain old data; all-zero is a valid value.
    let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    sll.sll_family = libc::AF_PACKET as u16;
    sll.sll_protocol = eth_p_all_be();
    sll.sll_ifindex = ifindex as i32;
    // SAFETY: sll is a valid sockaddr_ll and its exact size is passed.
    let rc = unsafe {
        libc::bind(
            fd.as_raw_fd(),
            (&raw const sll).cast::<libc::sockaddr>(),
            size_of::<libc::sockaddr_ll>() as libc::socklen_t,
        )
    };
    if rc == -1 {
        return Err(io::Error::last_os_error());
    }
    Ok(fd)
}

fn setsockopt<T>(fd: RawFd, level: libc::c_int, name: libc::c_int, value: &T) -> io::Result<()> {
    // SAFETY: value points to a live T and its exact size is passed.
    let rc = unsafe {
        libc::setsockopt(
            fd,
            level,
            name,
            (value as *const T).cast::<libc::c_void>(),
            size_of::<T>() as libc::socklen_t,
        )
    };
    if rc == -1 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// `recvfrom(2)` on a packet socket: returns the frame length (possibly larger than `buf` if
/// truncated, thanks to `MSG_TRUNC`) and the `sll_pkttype` of the frame.
pub(crate) fn recv_packet(fd: BorrowedFd<'_>, buf: &mut [u8]) -> io::Result<(usize, u8)> {
    // SAFETY: sockaddr_ll is plain old data; all-zero is a valid value.
    let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    let mut len = size_of::<libc::sockaddr_ll>() as libc::socklen_t;
    // SAFETY: buf is valid for buf.len() bytes; sll/len describe a writable sockaddr_ll.
    let n = unsafe {
        libc::recvfrom(
            fd.as_raw_fd(),
            buf.as_mut_ptr().cast::<libc::c_void>(),
            buf.len(),
            libc::MSG_TRUNC,
            (&raw mut sll).cast::<libc::sockaddr>(),
            &mut len,
        )
    };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok((n as usize, sll.sll_pkttype))
}

/// Makes the child of `cmd` enter the network namespace `ns` (an fd on `/run/netns/NAME`)
/// with `setns(2)` between `fork` and `exec`. Nothing else about the child changes: unlike
/// `ip netns exec`, no mount namespace is created and `/sys` is not remounted.
pub(crate) fn enter_netns_before_exec(
    cmd: &mut std::process::Command,
    ns: std::sync::Arc<OwnedFd>,
) {
    use std::os::unix::process::CommandExt;
    let raw = ns.as_raw_fd();
    // SAFETY: the hook only calls setns(2), which is async-signal-safe, and builds no
    // allocation; `ns` is moved into the closure so the descriptor outlives the Command.
    unsafe {
        cmd.pre_exec(move || {
            let _keep_alive = &ns;
            setns_net(raw)
        });
    }
}

/// `getsockopt(SOL_PACKET, PACKET_STATISTICS)`: how many frames the kernel dropped on this
/// packet socket (receive buffer full) since the last call. Reading resets the counters.
pub(crate) fn packet_drops(fd: BorrowedFd<'_>) -> io::Result<u32> {
    // SAFETY: tpacket_stats is plain old data; all-zero is a valid value.
    let mut stats: libc::tpacket_stats = unsafe { std::mem::zeroed() };
    let mut len = size_of::<libc::tpacket_stats>() as libc::socklen_t;
    // SAFETY: stats/len describe a writable tpacket_stats of the given size.
    let rc = unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            libc::SOL_PACKET,
            libc::PACKET_STATISTICS,
            (&raw mut stats).cast::<libc::c_void>(),
            &mut len,
        )
    };
    if rc == -1 {
        return Err(io::Error::last_os_error());
    }
    Ok(stats.tp_drops)
}

/// Makes the child of `cmd` receive `signal` when the thread that spawned it ends (also when
/// the whole process is killed): `prctl(PR_SET_PDEATHSIG)` between `fork` and `exec`. The
/// setting survives `exec` of programs that are not set-uid.
pub(crate) fn signal_when_parent_dies(cmd: &mut std::process::Command, signal: libc::c_int) {
    use std::os::unix::process::CommandExt;
    // SAFETY: the hook only calls prctl(2), which is async-signal-safe, and allocates nothing.
    unsafe {
        cmd.pre_exec(move || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, signal as libc::c_ulong, 0, 0, 0) == -1 {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        });
    }
}
