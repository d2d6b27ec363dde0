//! Interface name/index lookups (`if_nametoindex(3)`, `if_indextoname(3)`).

use std::ffi::{CStr, CString};
use std::io;

/// `IF_NAMESIZE`: an interface name is at most 15 bytes plus the terminating NUL.
pub const IF_NAMESIZE: usize = libc::IF_NAMESIZE;

/// `if_nametoindex(3)`: the index of the interface called `name`, or `None` if there is none
/// in the calling thread's network namespace.
pub fn if_nametoindex(name: &CStr) -> io::Result<Option<u32>> {
    // SAFETY: `name` is a valid NUL-terminated string for the duration of the call.
    let index = unsafe { libc::if_nametoindex(name.as_ptr()) };
    if index != 0 {
        return Ok(Some(index));
    }
    let err = io::Error::last_os_error();
    match err.raw_os_error() {
        Some(libc::ENODEV) | Some(libc::ENXIO) => Ok(None),
        _ => Err(err),
    }
}

/// `if_indextoname(3)`: the name of the interface with `index`, or `None` if there is none in
/// the calling thread's network namespace.
pub fn if_indextoname(index: u32) -> io::Result<Option<String>> {
    let mut buf = [0 as libc::c_char; IF_NAMESIZE];
    // SAFETY: `buf` has the IF_NAMESIZE bytes the call may write.
    let ptr = unsafe { libc::if_indextoname(index, buf.as_mut_ptr()) };
    if ptr.is_null() {
        let err = io::Error::last_os_error();
        return match err.raw_os_error() {
            Some(libc::ENXIO) | Some(libc::ENODEV) => Ok(None),
            _ => Err(err),
        };
    }
    // SAFETY: on success the kernel wrote a NUL-terminated name into `buf`.
    let name = unsafe { CStr::from_ptr(buf.as_ptr()) };
    Ok(Some(name.to_string_lossy().into_owned()))
}

/// A name as a C string; `None` if it holds a NUL byte.
pub fn c_name(name: &str) -> Option<CString> {
    CString::new(name).ok()
}
