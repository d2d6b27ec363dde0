//! Socket options that bind a socket to one device (`socket(7)`).
//!
//! One function per option and direction, named after the option the way `socket2` names
//! them: `bind_device_by_index` sets `SO_BINDTOIFINDEX`, `device_index` reads it, `device`
//! reads `SO_BINDTODEVICE`. Every function borrows the file descriptor, so it works on `std`,
//! `tokio` and `socket2` sockets alike. [`mod@crate::pin`] builds the checked pinning on top.

use std::ffi::c_int;
use std::io;
use std::mem;
use std::os::fd::{AsRawFd, BorrowedFd};

/// `SO_BINDTOIFINDEX` (Linux ≥ 5.0): bind a socket to a device by interface index.
pub const SO_BINDTOIFINDEX: c_int = libc::SO_BINDTOIFINDEX;

/// `SO_BINDTODEVICE`: bind a socket to a device by name.
pub const SO_BINDTODEVICE: c_int = libc::SO_BINDTODEVICE;

/// `IFNAMSIZ`: room for a device name and its NUL.
const IFNAMSIZ: usize = libc::IFNAMSIZ;

/// Sets `SO_BINDTOIFINDEX` to `index` (0 clears the binding).
///
/// The kernel does **not** check that a device with this index exists (it accepts any
/// number); callers must validate the index themselves. Setting the first binding of a fresh
/// socket needs no privilege (Linux ≥ 5.7); changing or clearing an existing one needs
/// `CAP_NET_RAW` and fails with `EPERM` without it.
#[doc(alias = "SO_BINDTOIFINDEX")]
pub fn bind_device_by_index(fd: BorrowedFd<'_>, index: u32) -> io::Result<()> {
    let value = index as c_int;
    // SAFETY: `value` is a live c_int and we pass its exact size.
    let rc = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            SO_BINDTOIFINDEX,
            (&raw const value).cast(),
            mem::size_of::<c_int>() as libc::socklen_t,
        )
    };
    if rc == -1 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Reads `SO_BINDTOIFINDEX`: the index the socket is bound to, 0 when it is not bound.
#[doc(alias = "SO_BINDTOIFINDEX")]
pub fn device_index(fd: BorrowedFd<'_>) -> io::Result<u32> {
    let mut value: c_int = 0;
    let mut len = mem::size_of::<c_int>() as libc::socklen_t;
    // SAFETY: `value` and `len` are live and `len` holds the size of `value`.
    let rc = unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            SO_BINDTOIFINDEX,
            (&raw mut value).cast(),
            &mut len,
        )
    };
    if rc == -1 {
        return Err(io::Error::last_os_error());
    }
    Ok(value as u32)
}

/// Reads `SO_BINDTODEVICE`: the *current* name of the device at the bound index, `None`
/// when the socket is not bound.
///
/// The kernel resolves the name at call time, so this one call tells whether the bound index
/// still exists (`ENODEV`, on older kernels `ENXIO`, when it does not) and what it is called now.
#[doc(alias = "SO_BINDTODEVICE")]
pub fn device(fd: BorrowedFd<'_>) -> io::Result<Option<DeviceName>> {
    let mut buf = [0u8; IFNAMSIZ];
    let mut len = IFNAMSIZ as libc::socklen_t;
    // SAFETY: `buf` has `len` writable bytes.
    let rc = unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            SO_BINDTODEVICE,
            buf.as_mut_ptr().cast(),
            &mut len,
        )
    };
    if rc == -1 {
        return Err(io::Error::last_os_error());
    }
    let len = (len as usize).min(IFNAMSIZ);
    let len = buf[..len].iter().position(|&b| b == 0).unwrap_or(len);
    Ok((len > 0).then_some(DeviceName { buf, len }))
}

/// A device name as `SO_BINDTODEVICE` reads it ([`crate::pin::device`]): up to 15 bytes, kept on the stack (reading it back
/// is on the hot path of every pinned socket, so it allocates nothing). Derefs to the bytes,
/// without the NUL.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct DeviceName {
    buf: [u8; IFNAMSIZ],
    len: usize,
}

impl std::ops::Deref for DeviceName {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.buf[..self.len]
    }
}

impl std::fmt::Debug for DeviceName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}", String::from_utf8_lossy(self))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::UdpSocket;
    use std::os::fd::AsFd;

    #[test]
    fn a_fresh_socket_is_unbound() {
        let s = UdpSocket::bind("127.0.0.1:0").unwrap();
        assert_eq!(device_index(s.as_fd()).unwrap(), 0);
        assert_eq!(device(s.as_fd()).unwrap(), None);
    }

    #[test]
    fn binding_to_lo_reads_back() {
        let s = UdpSocket::bind("127.0.0.1:0").unwrap();
        let lo = crate::sys::iface::if_nametoindex(c"lo").unwrap().unwrap();
        bind_device_by_index(s.as_fd(), lo).unwrap();
        assert_eq!(device_index(s.as_fd()).unwrap(), lo);
        assert_eq!(device(s.as_fd()).unwrap().as_deref(), Some(&b"lo"[..]));
    }

    #[test]
    fn the_kernel_accepts_an_index_that_does_not_exist() {
        // docs/kernel.md: SO_BINDTOIFINDEX is unchecked. This is why `pin` validates.
        let s = UdpSocket::bind("127.0.0.1:0").unwrap();
        let missing = 0x7fff_fff0;
        bind_device_by_index(s.as_fd(), missing).unwrap();
        assert_eq!(device_index(s.as_fd()).unwrap(), missing);
        let err = device(s.as_fd()).unwrap_err();
        assert!(
            matches!(err.raw_os_error(), Some(libc::ENODEV) | Some(libc::ENXIO)),
            "{err}"
        );
    }
}
