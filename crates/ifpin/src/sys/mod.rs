//! The one floor for `unsafe`: thin wrappers over Linux syscalls and kernel constants.
//!
//! Each wrapper makes one call and turns `-1` into [`std::io::Error::last_os_error`]. Kernel
//! numbers are given names here, so the rest of the crate never passes a bare constant. The
//! submodules follow the kernel's own areas: interfaces (`net/if.h`), and, as they are added,
//! sockets, BPF and netlink.

pub mod bpf;
pub mod fd;
pub mod iface;
pub mod landlock;
pub mod mount;
pub mod netns;
pub mod process;
pub mod procfs;
pub mod seccomp;
pub mod socket;
