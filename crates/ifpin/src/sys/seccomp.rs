//! The sealed level's seccomp filter (`seccomp(2)`, classic BPF), built in the parent and
//! installed by the child right before `execve`.
//!
//! What it refuses, and why (each a way out of a cgroup BPF confinement that no other layer
//! closes as cheaply):
//!
//! | system call | answer | why |
//! |---|---|---|
//! | any call of a foreign ABI (32-bit `int 0x80`, x32) | the process is killed (`SIGSYS`) | the kernel runs the cgroup `setsockopt` hook only for native calls |
//! | `clone3` | `ENOSYS` | `CLONE_INTO_CGROUP` starts a child in any cgroup whose directory can be opened, read-only mounts included; seccomp cannot read clone3's argument struct, and C libraries fall back to `clone` on `ENOSYS` |
//! | `unshare`, `clone` with `CLONE_NEWUSER` | `EPERM` | a user namespace gives back every capability over new mount, cgroup and network namespaces |
//! | `io_uring_setup`, `io_uring_enter`, `io_uring_register` | `ENOSYS` | a second path to socket calls that seccomp does not see |
//! | `bpf` | `EPERM` | a capless root process may still open BPF objects pinned in bpffs by file permission |
//!
//! Everything else is allowed: the filter is a wall around the confinement, not a sandbox of
//! the program's own work.

use std::io;

/// One classic BPF instruction (`struct sock_filter`).
pub type SockFilter = libc::sock_filter;

/// `AUDIT_ARCH_*` of this build's native system call ABI, and the x32 marker bit where the
/// architecture has one.
#[cfg(target_arch = "x86_64")]
mod arch {
    /// `AUDIT_ARCH_X86_64`: `EM_X86_64 | __AUDIT_ARCH_64BIT | __AUDIT_ARCH_LE`.
    pub const NATIVE: u32 = 0xc000_003e;
    /// `__X32_SYSCALL_BIT`: x32 calls arrive with the native arch and this bit set.
    pub const X32_BIT: Option<u32> = Some(0x4000_0000);
}
#[cfg(target_arch = "aarch64")]
mod arch {
    /// `AUDIT_ARCH_AARCH64`: `EM_AARCH64 | __AUDIT_ARCH_64BIT | __AUDIT_ARCH_LE`.
    pub const NATIVE: u32 = 0xc000_00b7;
    /// aarch64 has no x32-like ABI on the native arch value.
    pub const X32_BIT: Option<u32> = None;
}

/// Whether this build knows its architecture's seccomp numbers (the sealed level refuses to
/// start where it does not).
pub const SUPPORTED: bool = cfg!(any(target_arch = "x86_64", target_arch = "aarch64"));

// Offsets into `struct seccomp_data`.
const DATA_NR: u32 = 0;
const DATA_ARCH: u32 = 4;
/// The low 32 bits of `args[0]` on a little-endian machine.
const DATA_ARG0_LOW: u32 = 16;

// Classic BPF opcodes (`linux/filter.h`), by name.
const BPF_LD_W_ABS: u16 = (libc::BPF_LD | libc::BPF_W | libc::BPF_ABS) as u16;
const BPF_JEQ_K: u16 = (libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K) as u16;
const BPF_JGE_K: u16 = (libc::BPF_JMP | libc::BPF_JGE | libc::BPF_K) as u16;
const BPF_JSET_K: u16 = (libc::BPF_JMP | libc::BPF_JSET | libc::BPF_K) as u16;
const BPF_RET_K: u16 = (libc::BPF_RET | libc::BPF_K) as u16;
const BPF_JA: u16 = (libc::BPF_JMP | libc::BPF_JA) as u16;

const RET_ALLOW: u32 = libc::SECCOMP_RET_ALLOW;
const RET_KILL_PROCESS: u32 = libc::SECCOMP_RET_KILL_PROCESS;

fn ret_errno(errno: i32) -> u32 {
    libc::SECCOMP_RET_ERRNO | (errno as u32 & libc::SECCOMP_RET_DATA)
}

fn stmt(code: u16, k: u32) -> SockFilter {
    SockFilter {
        code,
        jt: 0,
        jf: 0,
        k,
    }
}

fn jump(code: u16, k: u32, jt: u8, jf: u8) -> SockFilter {
    SockFilter { code, jt, jf, k }
}

/// What a system call number gets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Verdict {
    Errno(i32),
    /// `EPERM` when `args[0]` has `CLONE_NEWUSER`, allowed otherwise.
    NoNewUser,
}

/// The refused calls of the table in the module docs.
fn refused() -> Vec<(i64, Verdict)> {
    vec![
        (libc::SYS_clone3, Verdict::Errno(libc::ENOSYS)),
        (libc::SYS_io_uring_setup, Verdict::Errno(libc::ENOSYS)),
        (libc::SYS_io_uring_enter, Verdict::Errno(libc::ENOSYS)),
        (libc::SYS_io_uring_register, Verdict::Errno(libc::ENOSYS)),
        (libc::SYS_bpf, Verdict::Errno(libc::EPERM)),
        (libc::SYS_unshare, Verdict::NoNewUser),
        (libc::SYS_clone, Verdict::NoNewUser),
    ]
}

/// The sealed filter (see the module docs), as classic BPF.
pub fn sealed_filter() -> Vec<SockFilter> {
    let table = refused();
    // Foreign ABIs die: a 32-bit call's arguments would not even mean what the table means.
    let mut prog = vec![
        stmt(BPF_LD_W_ABS, DATA_ARCH),
        jump(BPF_JEQ_K, arch::NATIVE, 1, 0),
        stmt(BPF_RET_K, RET_KILL_PROCESS),
        stmt(BPF_LD_W_ABS, DATA_NR),
    ];
    if let Some(bit) = arch::X32_BIT {
        prog.push(jump(BPF_JGE_K, bit, 0, 1));
        prog.push(stmt(BPF_RET_K, RET_KILL_PROCESS));
    }
    // One compare per refused call, each jumping to its own two-slot answer block below the
    // "allow": compare i is followed by (n - 1 - i) compares and the allow, then 2 slots per
    // earlier answer.
    let n = table.len();
    for (i, (nr, _)) in table.iter().enumerate() {
        let to_answer = (n - 1 - i) + 1 + 2 * i;
        prog.push(jump(BPF_JEQ_K, *nr as u32, to_answer as u8, 0));
    }
    prog.push(stmt(BPF_RET_K, RET_ALLOW));
    for (i, (_, verdict)) in table.iter().enumerate() {
        match *verdict {
            Verdict::Errno(errno) => {
                prog.push(stmt(BPF_RET_K, ret_errno(errno)));
                prog.push(stmt(BPF_RET_K, ret_errno(errno))); // unused: blocks are two slots
            }
            Verdict::NoNewUser => {
                prog.push(stmt(BPF_LD_W_ABS, DATA_ARG0_LOW));
                // Over the remaining answer blocks to the shared flag test.
                prog.push(stmt(BPF_JA, (2 * (n - 1 - i)) as u32));
            }
        }
    }
    // The flag test of the NoNewUser blocks, with the flags loaded.
    prog.push(jump(BPF_JSET_K, libc::CLONE_NEWUSER as u32, 0, 1));
    prog.push(stmt(BPF_RET_K, ret_errno(libc::EPERM)));
    prog.push(stmt(BPF_RET_K, RET_ALLOW));
    prog
}

/// `PR_SET_NO_NEW_PRIVS`: `execve` never grants privileges again (set-user-ID bits and file
/// capabilities are ignored). Required before an unprivileged seccomp filter or Landlock.
pub fn set_no_new_privs() -> io::Result<()> {
    // SAFETY: prctl with integer arguments only.
    if unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// `seccomp(SECCOMP_SET_MODE_FILTER, 0, prog)`: installs `filter` for the calling thread and
/// everything it executes. No allocation: safe between `fork` and `execve`.
pub fn install(filter: &[SockFilter]) -> io::Result<()> {
    let prog = libc::sock_fprog {
        len: filter.len() as u16,
        filter: filter.as_ptr() as *mut SockFilter,
    };
    // SAFETY: `prog` points at `filter`, alive for the call; the kernel copies it.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_seccomp,
            libc::SECCOMP_SET_MODE_FILTER,
            0,
            &prog as *const libc::sock_fprog,
        )
    };
    if ret != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Whether this kernel has seccomp filters (`PR_GET_SECCOMP` answers).
pub fn available() -> bool {
    // SAFETY: prctl with integer arguments only.
    unsafe { libc::prctl(libc::PR_GET_SECCOMP, 0, 0, 0, 0) >= 0 }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A classic BPF interpreter for the subset the filter uses, to test it as a function.
    fn run(prog: &[SockFilter], arch_value: u32, nr: u32, arg0: u64) -> u32 {
        let mut data = [0u8; 64];
        data[0..4].copy_from_slice(&nr.to_ne_bytes());
        data[4..8].copy_from_slice(&arch_value.to_ne_bytes());
        data[16..24].copy_from_slice(&arg0.to_ne_bytes());
        let mut acc = 0u32;
        let mut pc = 0usize;
        loop {
            let insn = prog[pc];
            pc += 1;
            match insn.code {
                BPF_LD_W_ABS => {
                    let k = insn.k as usize;
                    acc = u32::from_ne_bytes(data[k..k + 4].try_into().unwrap());
                }
                BPF_RET_K => return insn.k,
                BPF_JA => pc += insn.k as usize,
                BPF_JEQ_K | BPF_JGE_K | BPF_JSET_K => {
                    let taken = match insn.code {
                        BPF_JEQ_K => acc == insn.k,
                        BPF_JGE_K => acc >= insn.k,
                        _ => acc & insn.k != 0,
                    };
                    pc += if taken { insn.jt } else { insn.jf } as usize;
                }
                other => panic!("unexpected opcode {other:#x}"),
            }
            assert!(pc < prog.len(), "ran off the end");
        }
    }

    #[test]
    fn refuses_what_the_table_says_and_allows_the_rest() {
        let prog = sealed_filter();
        let native = arch::NATIVE;
        let nr = |n: i64| n as u32;
        assert_eq!(
            run(&prog, native, nr(libc::SYS_clone3), 0),
            ret_errno(libc::ENOSYS)
        );
        for io in [
            libc::SYS_io_uring_setup,
            libc::SYS_io_uring_enter,
            libc::SYS_io_uring_register,
        ] {
            assert_eq!(run(&prog, native, nr(io), 0), ret_errno(libc::ENOSYS));
        }
        assert_eq!(
            run(&prog, native, nr(libc::SYS_bpf), 0),
            ret_errno(libc::EPERM)
        );
        let newuser = libc::CLONE_NEWUSER as u64;
        for call in [libc::SYS_unshare, libc::SYS_clone] {
            assert_eq!(
                run(&prog, native, nr(call), newuser),
                ret_errno(libc::EPERM)
            );
            assert_eq!(
                run(&prog, native, nr(call), newuser | libc::CLONE_NEWNS as u64),
                ret_errno(libc::EPERM)
            );
            assert_eq!(
                run(&prog, native, nr(call), libc::SIGCHLD as u64),
                RET_ALLOW
            );
            assert_eq!(
                run(&prog, native, nr(call), libc::CLONE_NEWNS as u64),
                RET_ALLOW
            );
        }
        for allowed in [
            libc::SYS_read,
            libc::SYS_socket,
            libc::SYS_setsockopt,
            libc::SYS_execve,
            libc::SYS_exit_group,
        ] {
            assert_eq!(run(&prog, native, nr(allowed), newuser), RET_ALLOW);
        }
    }

    #[test]
    fn foreign_abis_are_killed() {
        let prog = sealed_filter();
        // AUDIT_ARCH_I386 and AUDIT_ARCH_ARM: 32-bit calls on a 64-bit kernel.
        for foreign in [0x4000_0003u32, 0x4000_0028] {
            assert_eq!(run(&prog, foreign, 54, 0), RET_KILL_PROCESS);
        }
        if let Some(bit) = arch::X32_BIT {
            assert_eq!(run(&prog, arch::NATIVE, bit | 54, 0), RET_KILL_PROCESS);
        }
    }
}
