//! The raw calls of the escape vectors ([`crate::catalogue::escape`]) that neither `std` nor
//! `nix` offer safely: `clone3` into a cgroup, pidfds, `ptrace`, a 32-bit system call from this
//! 64-bit process, `io_uring_setup` and `bpf`. Each returns the kernel's answer as an
//! `io::Result`; the attacks decide what it means.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

/// `CLONE_INTO_CGROUP` (linux/sched.h; not in every libc version).
const CLONE_INTO_CGROUP: u64 = 0x2_0000_0000;
/// The i386 `setsockopt` system call number (what `int 0x80` takes).
const I386_SETSOCKOPT: u32 = 366;

fn check(rc: libc::c_long) -> io::Result<libc::c_long> {
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(rc)
    }
}

/// Whether this process runs a single thread (`Threads:` of `/proc/self/status`).
fn single_threaded() -> bool {
    std::fs::read_to_string("/proc/self/status").is_ok_and(|status| {
        status
            .lines()
            .any(|l| l.strip_prefix("Threads:").map(str::trim) == Some("1"))
    })
}

/// `clone3(CLONE_INTO_CGROUP)` with `cgroup` (a directory fd of a cgroup): like `fork`, but the
/// child starts in that cgroup. The child runs `child` and leaves with its return value as exit
/// status (`_exit`, no exit handlers); the parent gets the child's pid.
///
/// Refused (`EDEADLK`) unless this process runs a single thread: the child of a fork runs on a
/// copy of the calling thread only, and locks held by other threads would stay held.
pub(crate) fn fork_into_cgroup(
    cgroup: BorrowedFd<'_>,
    child: impl FnOnce() -> i32,
) -> io::Result<libc::pid_t> {
    if !single_threaded() {
        return Err(io::Error::from_raw_os_error(libc::EDEADLK));
    }
    #[repr(C)]
    #[derive(Default)]
    struct CloneArgs {
        flags: u64,
        pidfd: u64,
        child_tid: u64,
        parent_tid: u64,
        exit_signal: u64,
        stack: u64,
        stack_size: u64,
        tls: u64,
        set_tid: u64,
        set_tid_size: u64,
        cgroup: u64,
    }
    let args = CloneArgs {
        flags: CLONE_INTO_CGROUP,
        exit_signal: libc::SIGCHLD as u64,
        cgroup: cgroup.as_raw_fd() as u64,
        ..CloneArgs::default()
    };
    // SAFETY: clone3 without a new stack behaves like fork; the process is single-threaded
    // (checked above), so the child's copy of the address space is consistent. The child runs
    // `child` and leaves with _exit, never returning into the parent's frames.
    let pid = check(unsafe {
        libc::syscall(
            libc::SYS_clone3,
            &raw const args,
            std::mem::size_of::<CloneArgs>(),
        )
    })?;
    if pid == 0 {
        let code = child();
        // SAFETY: leaves the child at once, without running the parent's exit handlers.
        unsafe { libc::_exit(code) };
    }
    Ok(pid as libc::pid_t)
}

/// `pidfd_open(pid, 0)`.
pub(crate) fn pidfd_open(pid: libc::pid_t) -> io::Result<OwnedFd> {
    // SAFETY: pidfd_open takes a pid and flags; the result is checked before it is owned.
    let fd = check(unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) })?;
    // SAFETY: `fd` was just returned by pidfd_open and is owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

/// `pidfd_getfd(pidfd, target, 0)`: a duplicate of descriptor `target` of that process.
pub(crate) fn pidfd_getfd(pidfd: BorrowedFd<'_>, target: RawFd) -> io::Result<OwnedFd> {
    // SAFETY: pidfd_getfd takes a pidfd, a descriptor number and flags; checked before owned.
    let fd = check(unsafe { libc::syscall(libc::SYS_pidfd_getfd, pidfd.as_raw_fd(), target, 0) })?;
    // SAFETY: `fd` was just returned by pidfd_getfd and is owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

/// `pidfd_send_signal(pidfd, signal, NULL, 0)`.
pub(crate) fn pidfd_send_signal(pidfd: BorrowedFd<'_>, signal: libc::c_int) -> io::Result<()> {
    // SAFETY: a pidfd, a signal number, no siginfo, no flags.
    check(unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            pidfd.as_raw_fd(),
            signal,
            std::ptr::null::<libc::siginfo_t>(),
            0,
        )
    })
    .map(drop)
}

/// `PTRACE_ATTACH` to `pid`; if the kernel allows it, waits for the attach stop and detaches at
/// once (the tracee goes on as before).
pub(crate) fn ptrace_attach_and_detach(pid: libc::pid_t) -> io::Result<()> {
    let null = std::ptr::null_mut::<libc::c_void>();
    // SAFETY: PTRACE_ATTACH takes a pid; no memory is passed.
    check(unsafe { libc::ptrace(libc::PTRACE_ATTACH, pid, null, null) })?;
    let mut status = 0;
    // SAFETY: waits for the attach stop of the tracee just attached; `status` is writable.
    unsafe { libc::waitpid(pid, &raw mut status, libc::__WALL) };
    // SAFETY: detaches the tracee attached above; no memory is passed.
    unsafe { libc::ptrace(libc::PTRACE_DETACH, pid, null, null) };
    Ok(())
}

/// `setsockopt(socket, SOL_SOCKET, SO_BINDTODEVICE, name)` through the i386 system call entry
/// (`int 0x80`) of this 64-bit process: the 32-bit ABI, with its own system call numbers.
/// Returns the kernel's answer.
#[cfg(target_arch = "x86_64")]
pub(crate) fn int80_bind_to_device(socket: BorrowedFd<'_>, name: &str) -> io::Result<()> {
    let name = name.as_bytes();
    if name.len() > 15 {
        return Err(io::Error::from(io::ErrorKind::InvalidInput));
    }
    // SAFETY: an anonymous private page below 4 GiB (MAP_32BIT, so a 32-bit pointer reaches
    // it), unmapped below; the result is checked.
    let page = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            4096,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_32BIT,
            -1,
            0,
        )
    };
    if page == libc::MAP_FAILED {
        return Err(io::Error::last_os_error());
    }
    let address = page as u64;
    let result = if address > u64::from(u32::MAX) {
        Err(io::Error::other("MAP_32BIT page above 4 GiB"))
    } else {
        // SAFETY: the page is 4096 writable bytes and the name at most 15.
        unsafe { std::ptr::copy_nonoverlapping(name.as_ptr(), page.cast::<u8>(), name.len()) };
        let ret: i32;
        // SAFETY: i386 setsockopt(fd, SOL_SOCKET, SO_BINDTODEVICE, ptr, len) through int 0x80:
        // every argument fits in 32 bits (the pointer is below 4 GiB). rbx is reserved by the
        // compiler, so it is swapped in and out around the call; r8-r11 are declared clobbered.
        unsafe {
            core::arch::asm!(
                "xchg {b}, rbx",
                "int 0x80",
                "xchg {b}, rbx",
                b = inout(reg) u64::from(socket.as_raw_fd() as u32) => _,
                inlateout("eax") I386_SETSOCKOPT => ret,
                in("ecx") libc::SOL_SOCKET as u32,
                in("edx") libc::SO_BINDTODEVICE as u32,
                in("esi") address as u32,
                in("edi") name.len() as u32,
                out("r8") _, out("r9") _, out("r10") _, out("r11") _,
            );
        }
        if ret < 0 {
            Err(io::Error::from_raw_os_error(-ret))
        } else {
            Ok(())
        }
    };
    // SAFETY: the page mapped above, not used any more.
    unsafe { libc::munmap(page, 4096) };
    result
}

/// Not an x86-64 machine: there is no `int 0x80` to try.
#[cfg(not(target_arch = "x86_64"))]
pub(crate) fn int80_bind_to_device(_socket: BorrowedFd<'_>, _name: &str) -> io::Result<()> {
    Err(io::Error::from_raw_os_error(libc::ENOSYS))
}

/// `io_uring_setup(1, params)`: a ring with one entry, closed at once.
pub(crate) fn io_uring_setup() -> io::Result<()> {
    // struct io_uring_params is 120 bytes; all zero asks for the defaults.
    let mut params = [0u8; 120];
    // SAFETY: `params` is a writable buffer of the size the kernel expects.
    let fd = check(unsafe { libc::syscall(libc::SYS_io_uring_setup, 1u32, params.as_mut_ptr()) })?;
    // SAFETY: `fd` was just returned by io_uring_setup and is owned by nobody else.
    drop(unsafe { OwnedFd::from_raw_fd(fd as RawFd) });
    Ok(())
}

/// `bpf(BPF_MAP_CREATE)` of a one-entry array map, closed at once.
pub(crate) fn bpf_map_create() -> io::Result<()> {
    // union bpf_attr, map-create part: map_type, key_size, value_size, max_entries (u32 each).
    let mut attr = [0u8; 128];
    for (i, v) in [2u32 /* BPF_MAP_TYPE_ARRAY */, 4, 4, 1].iter().enumerate() {
        attr[i * 4..i * 4 + 4].copy_from_slice(&v.to_ne_bytes());
    }
    // SAFETY: `attr` is a buffer of the stated size, read and written only by the kernel.
    let fd = check(unsafe {
        libc::syscall(
            libc::SYS_bpf,
            0, /* BPF_MAP_CREATE */
            attr.as_mut_ptr(),
            attr.len() as u32,
        )
    })?;
    // SAFETY: `fd` was just returned by bpf and is owned by nobody else.
    drop(unsafe { OwnedFd::from_raw_fd(fd as RawFd) });
    Ok(())
}
