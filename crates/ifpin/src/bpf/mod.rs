//! eBPF without a compiler: instructions, an assembler, maps, and the confinement programs.
//!
//! ifpin loads its programs with raw `bpf(2)` (in the crate's private `sys` layer): no clang, no libbpf,
//! no object files. [`insn`] gives each instruction a named constructor, [`asm`] resolves
//! labelled jumps, [`maps`] owns the maps the programs share with user space, and
//! [`programs`] holds the programs themselves, as plain functions returning instructions so
//! they can be unit-tested without privileges. [`Program::load`] hands them to the kernel and
//! returns the verifier's log when it says no.

pub mod asm;
pub mod insn;
pub mod maps;
pub mod programs;

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

pub use asm::{Asm, AsmError};
pub use insn::{Cond, Helper, Insn, Reg, Size};
pub use maps::Map;

pub use crate::sys::bpf::{AttachType, ProgType, SyscallError, TestRun};

use crate::sys::bpf as sys;

/// The license the programs are loaded under (GPL-compatible, as some helpers require).
pub const LICENSE: &str = "Dual MIT/GPL";

/// Why a program could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The program text is wrong (a bug in this crate).
    #[error("program {program} does not assemble")]
    Assemble {
        /// The program's name.
        program: &'static str,
        /// What is wrong.
        #[source]
        source: AsmError,
    },
    /// The verifier refused the program; its log says why.
    #[error("the kernel's BPF verifier rejected program {program}:\n{log}")]
    Verifier {
        /// The program's name.
        program: &'static str,
        /// The verifier's log (its last lines matter most).
        log: String,
        /// The `BPF_PROG_LOAD` failure.
        #[source]
        source: SyscallError,
    },
    /// `BPF_PROG_LOAD` failed without a verifier log (no privilege, unknown program type).
    #[error("loading program {program} failed")]
    Syscall {
        /// The program's name.
        program: &'static str,
        /// The failure.
        #[source]
        source: SyscallError,
    },
}

impl LoadError {
    /// The `errno` of the failed load, if the kernel gave one.
    pub fn errno(&self) -> Option<i32> {
        match self {
            LoadError::Assemble { .. } => None,
            LoadError::Verifier { source, .. } | LoadError::Syscall { source, .. } => {
                source.errno()
            }
        }
    }
}

/// A loaded program, with the attach point it was verified for.
#[derive(Debug)]
pub struct Program {
    fd: OwnedFd,
    name: &'static str,
    attach_type: AttachType,
}

impl Program {
    /// Loads `insns` as a `prog_type` program for `attach_type`.
    ///
    /// The first attempt runs without a log (cheap); if the kernel refuses, the load is
    /// retried with a verbose verifier log, which the error carries.
    pub fn load(
        name: &'static str,
        prog_type: ProgType,
        attach_type: AttachType,
        insns: Result<Vec<Insn>, AsmError>,
    ) -> Result<Program, LoadError> {
        let insns = insns.map_err(|source| LoadError::Assemble {
            program: name,
            source,
        })?;
        let encoded: Vec<u64> = insns.iter().map(|insn| insn.encode()).collect();
        let attempt = |log: Option<(&mut [u8], u32)>| {
            sys::prog_load(sys::ProgLoad {
                prog_type,
                expected_attach_type: attach_type,
                insns: &encoded,
                license: LICENSE,
                name,
                log,
            })
        };
        let first = match attempt(None) {
            Ok(fd) => {
                return Ok(Program {
                    fd,
                    name,
                    attach_type,
                });
            }
            Err(err) => err,
        };
        if first.errno() == Some(libc::EPERM) {
            return Err(LoadError::Syscall {
                program: name,
                source: first,
            });
        }
        let mut buf = vec![0u8; 256 * 1024];
        let second = attempt(Some((&mut buf, sys::LOG_LEVEL_VERBOSE)));
        let log_len = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
        let log = String::from_utf8_lossy(&buf[..log_len])
            .trim_end()
            .to_owned();
        match second {
            Ok(fd) => Ok(Program {
                fd,
                name,
                attach_type,
            }),
            Err(source) if !log.is_empty() => Err(LoadError::Verifier {
                program: name,
                log: tail(&log, 40),
                source,
            }),
            Err(source) => Err(LoadError::Syscall {
                program: name,
                source,
            }),
        }
    }

    /// The program's name.
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// The attach point it was verified for.
    pub fn attach_type(&self) -> AttachType {
        self.attach_type
    }

    /// Runs the program `repeat` times on a packet made of `data` (`BPF_PROG_TEST_RUN`; an
    /// Ethernet frame for `cgroup_skb` programs), without attaching it anywhere.
    #[doc(alias = "BPF_PROG_TEST_RUN")]
    pub fn test_run(&self, data: &[u8], repeat: u32) -> Result<TestRun, SyscallError> {
        sys::prog_test_run(self.fd.as_fd(), data, repeat)
    }
}

impl AsFd for Program {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

/// The last `lines` lines of a log.
fn tail(log: &str, lines: usize) -> String {
    let all: Vec<&str> = log.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}
