//! The few raw calls the vectors need that neither `socket2` nor `nix` offer safely: socket
//! options given as plain C values or as bytes, an `AF_PACKET` send with a `sockaddr_ll`, and
//! the calling thread's effective capabilities.
//!
//! Every wrapper makes one call and turns `-1` into [`io::Error::last_os_error`].

use std::io;
use std::mem;
use std::os::fd::{AsRawFd, BorrowedFd};

/// Plain C data that can be handed to `setsockopt(2)` byte for byte.
///
/// # Safety
/// Implementors must be `#[repr(C)]` kernel structures or integers with no padding bytes the
/// kernel would read as meaningful, and must match the size the option expects.
pub(crate) unsafe trait SockoptValue: Copy {}

// SAFETY: integers are plain data.
unsafe impl SockoptValue for libc::c_int {}
// SAFETY: `struct ip_mreqn` (linux/in.h) is plain data, 12 bytes, no padding.
unsafe impl SockoptValue for libc::ip_mreqn {}
// SAFETY: `struct in6_pktinfo` (linux/ipv6.h) is plain data, 20 bytes, no padding.
unsafe impl SockoptValue for libc::in6_pktinfo {}

/// `setsockopt(fd, level, name, &value, sizeof value)`.
pub(crate) fn setsockopt<T: SockoptValue>(
    fd: BorrowedFd<'_>,
    level: libc::c_int,
    name: libc::c_int,
    value: &T,
) -> io::Result<()> {
    let len = libc::socklen_t::try_from(mem::size_of::<T>())
        .map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    // SAFETY: `value` points to `len` initialised bytes of plain data (SockoptValue) that
    // live for the duration of the call; the kernel only reads them.
    let rc = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            level,
            name,
            (value as *const T).cast::<libc::c_void>(),
            len,
        )
    };
    if rc == -1 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// `setsockopt(fd, level, name, value, value.len())`: the option's C structure given as its
/// bytes (the multicast requests of the escape vectors, built field by field).
pub(crate) fn setsockopt_bytes(
    fd: BorrowedFd<'_>,
    level: libc::c_int,
    name: libc::c_int,
    value: &[u8],
) -> io::Result<()> {
    let len = libc::socklen_t::try_from(value.len())
        .map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    // SAFETY: `value` is `len` initialised bytes that live for the call; the kernel only reads
    // them, and checks `len` against the option's size itself.
    let rc = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            level,
            name,
            value.as_ptr().cast::<libc::c_void>(),
            len,
        )
    };
    if rc == -1 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// `sendto(2)` on an `AF_PACKET` socket, addressed with a `sockaddr_ll` naming the outgoing
/// interface by index (see `packet(7)`). `protocol` is in host byte order.
#[doc(alias = "sockaddr_ll")]
pub(crate) fn packet_send_to(
    fd: BorrowedFd<'_>,
    payload: &[u8],
    ifindex: u32,
    protocol: u16,
    destination: [u8; 6],
) -> io::Result<usize> {
    // SAFETY: sockaddr_ll is plain data; all-zero is a valid value.
    let mut addr: libc::sockaddr_ll = unsafe { mem::zeroed() };
    addr.sll_family = libc::AF_PACKET as libc::c_ushort;
    addr.sll_protocol = protocol.to_be();
    addr.sll_ifindex =
        libc::c_int::try_from(ifindex).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    addr.sll_halen = 6;
    addr.sll_addr[..6].copy_from_slice(&destination);
    // SAFETY: `payload` and `addr` are valid for reads of the given lengths for the call.
    let sent = unsafe {
        libc::sendto(
            fd.as_raw_fd(),
            payload.as_ptr().cast::<libc::c_void>(),
            payload.len(),
            0,
            (&raw const addr).cast::<libc::sockaddr>(),
            mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
        )
    };
    usize::try_from(sent).map_err(|_| io::Error::last_os_error())
}

/// `_LINUX_CAPABILITY_VERSION_3` (linux/capability.h): two 32-bit words per set.
const CAPABILITY_VERSION_3: u32 = 0x2008_0522;

#[repr(C)]
struct CapHeader {
    version: u32,
    pid: libc::c_int,
}

#[repr(C)]
#[derive(Clone, Copy, Default)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

/// Sets the calling **thread's** effective capability set to `effective & permitted`
/// (`capset(2)` with pid 0 acts on the calling thread only). Permitted and inheritable sets
/// are left as they are.
#[doc(alias = "capset")]
pub(crate) fn set_thread_effective_caps(effective: u64) -> io::Result<()> {
    let mut header = CapHeader {
        version: CAPABILITY_VERSION_3,
        pid: 0,
    };
    let mut data = [CapData::default(); 2];
    // SAFETY: header and a two-element data array, as capget(2) wants for version 3.
    let rc = unsafe { libc::syscall(libc::SYS_capget, &raw mut header, data.as_mut_ptr()) };
    if rc == -1 {
        return Err(io::Error::last_os_error());
    }
    let words = [effective as u32, (effective >> 32) as u32];
    for (set, word) in data.iter_mut().zip(words) {
        set.effective = word & set.permitted;
    }
    // SAFETY: same layout, read only by the kernel.
    let rc = unsafe { libc::syscall(libc::SYS_capset, &raw mut header, data.as_ptr()) };
    if rc == -1 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}
