//! `/proc` reads that must be fast: `readlinkat(2)` into a caller's buffer.
//!
//! Finding the owners of 100,000 sockets means reading 100,000 `/proc/PID/fd/N` links; one
//! call per link, relative to the open `fd` directory and without an allocation, keeps that
//! cheap.

use std::ffi::CStr;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};

/// `readlinkat(2)`: the target of link `name` in directory `dir`, written into `buf`; returns
/// the number of bytes written (the target is cut at `buf.len()`).
pub fn readlinkat(dir: BorrowedFd<'_>, name: &CStr, buf: &mut [u8]) -> io::Result<usize> {
    // SAFETY: `name` is NUL-terminated and `buf` is valid for `buf.len()` bytes for the call.
    let len = unsafe {
        libc::readlinkat(
            dir.as_raw_fd(),
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
