//! The `bpf(2)` system call: maps, program loading, cgroup attachment.
//!
//! One function per command, each filling only the part of `union bpf_attr` its command
//! reads (the kernel zero-extends a shorter attribute block). Failures come back as
//! [`SyscallError`], which names the command that failed and keeps the kernel's `errno`.
//! Everything above this module (`crate::bpf`, `crate::confine`) is safe code.
//!
//! Kernel numbers are those of `include/uapi/linux/bpf.h`.

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

pub use crate::error::SyscallError;

/// `enum bpf_cmd` values used here.
mod cmd {
    pub const MAP_CREATE: i32 = 0;
    pub const MAP_LOOKUP_ELEM: i32 = 1;
    pub const MAP_UPDATE_ELEM: i32 = 2;
    pub const MAP_DELETE_ELEM: i32 = 3;
    pub const MAP_GET_NEXT_KEY: i32 = 4;
    pub const PROG_LOAD: i32 = 5;
    pub const PROG_ATTACH: i32 = 8;
    pub const PROG_DETACH: i32 = 9;
    pub const PROG_TEST_RUN: i32 = 10;
    pub const PROG_GET_FD_BY_ID: i32 = 13;
    pub const PROG_QUERY: i32 = 16;
}

/// A BPF map type (`enum bpf_map_type`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
pub enum MapType {
    /// `BPF_MAP_TYPE_HASH`.
    Hash = 1,
    /// `BPF_MAP_TYPE_ARRAY`.
    Array = 2,
}

/// A BPF program type (`enum bpf_prog_type`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
pub enum ProgType {
    /// `BPF_PROG_TYPE_CGROUP_SKB`: sees every IP packet a cgroup's sockets send or receive.
    CgroupSkb = 8,
    /// `BPF_PROG_TYPE_CGROUP_SOCK`: runs at socket creation, may set `bound_dev_if`.
    CgroupSock = 9,
    /// `BPF_PROG_TYPE_CGROUP_SOCK_ADDR`: runs at `bind`/`connect`/`sendmsg` with the address.
    CgroupSockAddr = 18,
    /// `BPF_PROG_TYPE_CGROUP_SOCKOPT`: runs at `setsockopt`/`getsockopt`.
    CgroupSockopt = 25,
}

/// A cgroup attach point (`enum bpf_attach_type`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u32)]
pub enum AttachType {
    /// `BPF_CGROUP_INET_INGRESS`.
    CgroupInetIngress = 0,
    /// `BPF_CGROUP_INET_EGRESS`.
    CgroupInetEgress = 1,
    /// `BPF_CGROUP_INET_SOCK_CREATE`.
    CgroupInetSockCreate = 2,
    /// `BPF_CGROUP_INET4_BIND`.
    CgroupInet4Bind = 8,
    /// `BPF_CGROUP_INET6_BIND`.
    CgroupInet6Bind = 9,
    /// `BPF_CGROUP_INET4_CONNECT`.
    CgroupInet4Connect = 10,
    /// `BPF_CGROUP_INET6_CONNECT`.
    CgroupInet6Connect = 11,
    /// `BPF_CGROUP_UDP4_SENDMSG`.
    CgroupUdp4Sendmsg = 14,
    /// `BPF_CGROUP_UDP6_SENDMSG`.
    CgroupUdp6Sendmsg = 15,
    /// `BPF_CGROUP_SETSOCKOPT`.
    CgroupSetsockopt = 22,
}

impl AttachType {
    /// Every attach point this crate uses, for queries and stale cleanup.
    pub const ALL: [AttachType; 10] = [
        AttachType::CgroupInetIngress,
        AttachType::CgroupInetEgress,
        AttachType::CgroupInetSockCreate,
        AttachType::CgroupInet4Bind,
        AttachType::CgroupInet6Bind,
        AttachType::CgroupInet4Connect,
        AttachType::CgroupInet6Connect,
        AttachType::CgroupUdp4Sendmsg,
        AttachType::CgroupUdp6Sendmsg,
        AttachType::CgroupSetsockopt,
    ];
}

/// `BPF_F_ALLOW_MULTI`: several programs per attach point, parents' and children's all run.
pub const BPF_F_ALLOW_MULTI: u32 = 1 << 1;

/// `BPF_ANY` for map updates: create or replace.
pub const BPF_ANY: u64 = 0;

/// `BPF_OBJ_NAME_LEN`: object names are at most 15 bytes plus NUL.
pub const BPF_OBJ_NAME_LEN: usize = 16;

/// Verifier log level 1: the instructions the verifier walked and why it stopped.
pub const LOG_LEVEL_VERBOSE: u32 = 1;

#[repr(C)]
#[derive(Default)]
struct MapCreateAttr {
    map_type: u32,
    key_size: u32,
    value_size: u32,
    max_entries: u32,
    map_flags: u32,
    inner_map_fd: u32,
    numa_node: u32,
    map_name: [u8; BPF_OBJ_NAME_LEN],
}

#[repr(C)]
#[derive(Default)]
struct MapElemAttr {
    map_fd: u32,
    _pad: u32,
    key: u64,
    value: u64,
    flags: u64,
}

#[repr(C)]
#[derive(Default)]
struct ProgLoadAttr {
    prog_type: u32,
    insn_cnt: u32,
    insns: u64,
    license: u64,
    log_level: u32,
    log_size: u32,
    log_buf: u64,
    kern_version: u32,
    prog_flags: u32,
    prog_name: [u8; BPF_OBJ_NAME_LEN],
    prog_ifindex: u32,
    expected_attach_type: u32,
}

#[repr(C)]
#[derive(Default)]
struct AttachAttr {
    target_fd: u32,
    attach_bpf_fd: u32,
    attach_type: u32,
    attach_flags: u32,
    replace_bpf_fd: u32,
}

#[repr(C)]
#[derive(Default)]
struct QueryAttr {
    target_fd: u32,
    attach_type: u32,
    query_flags: u32,
    attach_flags: u32,
    prog_ids: u64,
    prog_cnt: u32,
    _pad: u32,
}

#[repr(C)]
#[derive(Default)]
struct TestRunAttr {
    prog_fd: u32,
    retval: u32,
    data_size_in: u32,
    data_size_out: u32,
    data_in: u64,
    data_out: u64,
    repeat: u32,
    duration: u32,
    ctx_size_in: u32,
    ctx_size_out: u32,
    ctx_in: u64,
    ctx_out: u64,
    flags: u32,
    cpu: u32,
}

#[repr(C)]
#[derive(Default)]
struct GetFdByIdAttr {
    id: u32,
    next_id: u32,
    open_flags: u32,
}

/// Makes one `bpf(cmd, attr, sizeof attr)` call.
///
/// # Safety
/// `attr` must be the attribute block `cmd` expects, and every pointer in it must be valid
/// for the reads and writes the command makes, for the duration of the call.
unsafe fn sys_bpf<T>(cmd: i32, attr: &mut T, call: &'static str) -> Result<i64, SyscallError> {
    // SAFETY: upheld by the caller; `attr` is a live, exclusively borrowed block.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd,
            attr as *mut T as *mut libc::c_void,
            std::mem::size_of::<T>() as libc::c_uint,
        )
    };
    if ret < 0 {
        Err(SyscallError {
            call,
            source: io::Error::last_os_error(),
        })
    } else {
        Ok(ret)
    }
}

fn name_bytes(name: &str) -> [u8; BPF_OBJ_NAME_LEN] {
    let mut out = [0u8; BPF_OBJ_NAME_LEN];
    for (dst, src) in out.iter_mut().zip(name.bytes().take(BPF_OBJ_NAME_LEN - 1)) {
        *dst = if src.is_ascii_alphanumeric() || src == b'_' || src == b'.' {
            src
        } else {
            b'_'
        };
    }
    out
}

fn fd_result(ret: i64) -> OwnedFd {
    // SAFETY: the command returned a new file descriptor that nothing else owns.
    unsafe { OwnedFd::from_raw_fd(ret as i32) }
}

/// A map's descriptor with the key and value sizes it was created with. Every access is
/// checked against them before the system call, because the kernel copies exactly that many
/// bytes whatever the caller's buffer: a wrong size is an `InvalidInput` error, never a kernel
/// read or write past a Rust buffer.
#[derive(Debug)]
pub struct MapFd {
    fd: OwnedFd,
    key_size: usize,
    value_size: usize,
}

/// `BPF_MAP_CREATE`: a new map; `name` is cut to 15 bytes.
#[doc(alias = "BPF_MAP_CREATE")]
pub fn map_create(
    map_type: MapType,
    key_size: u32,
    value_size: u32,
    max_entries: u32,
    name: &str,
) -> Result<MapFd, SyscallError> {
    let mut attr = MapCreateAttr {
        map_type: map_type as u32,
        key_size,
        value_size,
        max_entries,
        map_name: name_bytes(name),
        ..Default::default()
    };
    // SAFETY: MAP_CREATE reads only the plain integers of `attr`.
    let fd = unsafe { sys_bpf(cmd::MAP_CREATE, &mut attr, "BPF_MAP_CREATE") }.map(fd_result)?;
    Ok(MapFd {
        fd,
        key_size: key_size as usize,
        value_size: value_size as usize,
    })
}

impl MapFd {
    /// The key size, in bytes.
    pub fn key_size(&self) -> usize {
        self.key_size
    }

    fn check(
        &self,
        call: &'static str,
        keys: &[usize],
        value: Option<usize>,
    ) -> Result<(), SyscallError> {
        let keys_ok = keys.iter().all(|&k| k == self.key_size);
        let value_ok = value.is_none_or(|v| v == self.value_size);
        if keys_ok && value_ok {
            return Ok(());
        }
        Err(SyscallError {
            call,
            source: io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "key(s) of {keys:?} bytes and a value of {value:?} bytes for a map of {}-byte \
                     keys and {}-byte values",
                    self.key_size, self.value_size
                ),
            ),
        })
    }

    /// `BPF_MAP_LOOKUP_ELEM`: copies the value stored under `key` into `value`.
    #[doc(alias = "BPF_MAP_LOOKUP_ELEM")]
    pub fn lookup(&self, key: &[u8], value: &mut [u8]) -> Result<(), SyscallError> {
        self.check("BPF_MAP_LOOKUP_ELEM", &[key.len()], Some(value.len()))?;
        let mut attr = MapElemAttr {
            map_fd: self.fd.as_raw_fd() as u32,
            key: key.as_ptr() as u64,
            value: value.as_mut_ptr() as u64,
            ..Default::default()
        };
        // SAFETY: the kernel reads key_size bytes from `key` and writes value_size bytes to
        // `value`; `check` made sure the slices have exactly those sizes.
        unsafe { sys_bpf(cmd::MAP_LOOKUP_ELEM, &mut attr, "BPF_MAP_LOOKUP_ELEM") }.map(drop)
    }

    /// `BPF_MAP_UPDATE_ELEM` with `flags` (e.g. [`BPF_ANY`]).
    #[doc(alias = "BPF_MAP_UPDATE_ELEM")]
    pub fn update(&self, key: &[u8], value: &[u8], flags: u64) -> Result<(), SyscallError> {
        self.check("BPF_MAP_UPDATE_ELEM", &[key.len()], Some(value.len()))?;
        let mut attr = MapElemAttr {
            map_fd: self.fd.as_raw_fd() as u32,
            key: key.as_ptr() as u64,
            value: value.as_ptr() as u64,
            flags,
            ..Default::default()
        };
        // SAFETY: the kernel reads key_size and value_size bytes; `check` made sure the
        // slices have exactly those sizes.
        unsafe { sys_bpf(cmd::MAP_UPDATE_ELEM, &mut attr, "BPF_MAP_UPDATE_ELEM") }.map(drop)
    }

    /// `BPF_MAP_DELETE_ELEM`: removes `key`; `ENOENT` if it is not there.
    #[doc(alias = "BPF_MAP_DELETE_ELEM")]
    pub fn delete(&self, key: &[u8]) -> Result<(), SyscallError> {
        self.check("BPF_MAP_DELETE_ELEM", &[key.len()], None)?;
        let mut attr = MapElemAttr {
            map_fd: self.fd.as_raw_fd() as u32,
            key: key.as_ptr() as u64,
            ..Default::default()
        };
        // SAFETY: the kernel reads key_size bytes from `key`; `check` made sure of its size.
        unsafe { sys_bpf(cmd::MAP_DELETE_ELEM, &mut attr, "BPF_MAP_DELETE_ELEM") }.map(drop)
    }

    /// `BPF_MAP_GET_NEXT_KEY`: writes the key after `key` (the first key when `key` is
    /// `None`) into `next`; `Ok(false)` at the end of the map.
    #[doc(alias = "BPF_MAP_GET_NEXT_KEY")]
    pub fn next_key(&self, key: Option<&[u8]>, next: &mut [u8]) -> Result<bool, SyscallError> {
        let sizes: Vec<usize> = key.iter().map(|k| k.len()).chain([next.len()]).collect();
        self.check("BPF_MAP_GET_NEXT_KEY", &sizes, None)?;
        let mut attr = MapElemAttr {
            map_fd: self.fd.as_raw_fd() as u32,
            key: key.map_or(0, |k| k.as_ptr() as u64),
            value: next.as_mut_ptr() as u64,
            ..Default::default()
        };
        // SAFETY: the kernel reads key_size bytes from `key` (if any) and writes key_size
        // bytes to `next`; `check` made sure of both sizes.
        match unsafe { sys_bpf(cmd::MAP_GET_NEXT_KEY, &mut attr, "BPF_MAP_GET_NEXT_KEY") } {
            Ok(_) => Ok(true),
            Err(err) if err.errno() == Some(libc::ENOENT) => Ok(false),
            Err(err) => Err(err),
        }
    }

    /// The raw descriptor, as programs embed it.
    pub fn raw_fd(&self) -> i32 {
        self.fd.as_raw_fd()
    }

    /// The descriptor.
    pub fn as_fd(&self) -> BorrowedFd<'_> {
        use std::os::fd::AsFd;
        self.fd.as_fd()
    }
}

/// What [`prog_load`] needs: the program and how the kernel should check it.
pub struct ProgLoad<'a> {
    /// The program type.
    pub prog_type: ProgType,
    /// The attach point the program is verified for (`expected_attach_type`).
    pub expected_attach_type: AttachType,
    /// Encoded instructions, 8 bytes each (`struct bpf_insn`).
    pub insns: &'a [u64],
    /// The license string (only matters for GPL-only helpers).
    pub license: &'a str,
    /// The program's name, cut to 15 bytes.
    pub name: &'a str,
    /// A buffer for the verifier log, with its level; `None` for no log.
    pub log: Option<(&'a mut [u8], u32)>,
}

/// `BPF_PROG_LOAD`: verifies and loads a program; on failure the verifier's log (if a buffer
/// was given) explains why.
#[doc(alias = "BPF_PROG_LOAD")]
pub fn prog_load(load: ProgLoad<'_>) -> Result<OwnedFd, SyscallError> {
    let license = CString::new(load.license).map_err(|_| SyscallError {
        call: "BPF_PROG_LOAD",
        source: io::Error::from_raw_os_error(libc::EINVAL),
    })?;
    let (log_buf, log_size, log_level) = match load.log {
        Some((buf, level)) => {
            buf.fill(0);
            (buf.as_mut_ptr() as u64, buf.len() as u32, level)
        }
        None => (0, 0, 0),
    };
    let mut attr = ProgLoadAttr {
        prog_type: load.prog_type as u32,
        insn_cnt: load.insns.len() as u32,
        insns: load.insns.as_ptr() as u64,
        license: license.as_ptr() as u64,
        log_level,
        log_size,
        log_buf,
        prog_name: name_bytes(load.name),
        expected_attach_type: load.expected_attach_type as u32,
        ..Default::default()
    };
    // SAFETY: `insns` (insn_cnt * 8 bytes), `license` (NUL-terminated) and the log buffer
    // (log_size bytes, written by the kernel) all outlive the call.
    unsafe { sys_bpf(cmd::PROG_LOAD, &mut attr, "BPF_PROG_LOAD") }.map(fd_result)
}

/// `BPF_PROG_ATTACH`: attaches `prog` to the cgroup `target` at `attach_type`.
#[doc(alias = "BPF_PROG_ATTACH")]
pub fn prog_attach(
    target: BorrowedFd<'_>,
    prog: BorrowedFd<'_>,
    attach_type: AttachType,
    flags: u32,
) -> Result<(), SyscallError> {
    let mut attr = AttachAttr {
        target_fd: target.as_raw_fd() as u32,
        attach_bpf_fd: prog.as_raw_fd() as u32,
        attach_type: attach_type as u32,
        attach_flags: flags,
        ..Default::default()
    };
    // SAFETY: PROG_ATTACH reads only integers.
    unsafe { sys_bpf(cmd::PROG_ATTACH, &mut attr, "BPF_PROG_ATTACH") }.map(drop)
}

/// `BPF_PROG_DETACH`: detaches `prog` from the cgroup `target` at `attach_type`.
#[doc(alias = "BPF_PROG_DETACH")]
pub fn prog_detach(
    target: BorrowedFd<'_>,
    prog: BorrowedFd<'_>,
    attach_type: AttachType,
) -> Result<(), SyscallError> {
    let mut attr = AttachAttr {
        target_fd: target.as_raw_fd() as u32,
        attach_bpf_fd: prog.as_raw_fd() as u32,
        attach_type: attach_type as u32,
        ..Default::default()
    };
    // SAFETY: PROG_DETACH reads only integers.
    unsafe { sys_bpf(cmd::PROG_DETACH, &mut attr, "BPF_PROG_DETACH") }.map(drop)
}

/// `BPF_PROG_QUERY`: the ids of the programs attached directly to the cgroup `target` at
/// `attach_type` (not inherited ones), however many there are.
#[doc(alias = "BPF_PROG_QUERY")]
pub fn prog_query(
    target: BorrowedFd<'_>,
    attach_type: AttachType,
) -> Result<Vec<u32>, SyscallError> {
    let mut ids = vec![0u32; 16];
    loop {
        let mut attr = QueryAttr {
            target_fd: target.as_raw_fd() as u32,
            attach_type: attach_type as u32,
            prog_ids: ids.as_mut_ptr() as u64,
            prog_cnt: ids.len() as u32,
            ..Default::default()
        };
        // SAFETY: the kernel writes at most prog_cnt u32 ids into `ids`.
        match unsafe { sys_bpf(cmd::PROG_QUERY, &mut attr, "BPF_PROG_QUERY") } {
            Ok(_) => {
                ids.truncate((attr.prog_cnt as usize).min(ids.len()));
                return Ok(ids);
            }
            // More programs than room: the kernel says how many there are.
            Err(err) if err.errno() == Some(libc::ENOSPC) && attr.prog_cnt as usize > ids.len() => {
                ids = vec![0u32; attr.prog_cnt as usize];
            }
            Err(err) => return Err(err),
        }
    }
}

/// What a `BPF_PROG_TEST_RUN` reports ([`crate::bpf::Program::test_run`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TestRun {
    /// The program's return value (of the last run).
    pub retval: u32,
    /// Average time per run, in nanoseconds, as the kernel measured it.
    pub duration_ns: u32,
}

/// `BPF_PROG_TEST_RUN`: runs `prog` `repeat` times on a packet built from `data` (an Ethernet
/// frame for `cgroup_skb` programs), without attaching it anywhere.
#[doc(alias = "BPF_PROG_TEST_RUN")]
pub fn prog_test_run(
    prog: BorrowedFd<'_>,
    data: &[u8],
    repeat: u32,
) -> Result<TestRun, SyscallError> {
    let mut attr = TestRunAttr {
        prog_fd: prog.as_raw_fd() as u32,
        data_size_in: data.len() as u32,
        data_in: data.as_ptr() as u64,
        repeat,
        ..Default::default()
    };
    // SAFETY: the kernel reads data_size_in bytes from `data`; no output buffers are given.
    unsafe { sys_bpf(cmd::PROG_TEST_RUN, &mut attr, "BPF_PROG_TEST_RUN") }?;
    Ok(TestRun {
        retval: attr.retval,
        duration_ns: attr.duration,
    })
}

/// `BPF_PROG_GET_FD_BY_ID`: a file descriptor for a loaded program, by id.
#[doc(alias = "BPF_PROG_GET_FD_BY_ID")]
pub fn prog_get_fd_by_id(id: u32) -> Result<OwnedFd, SyscallError> {
    let mut attr = GetFdByIdAttr {
        id,
        ..Default::default()
    };
    // SAFETY: PROG_GET_FD_BY_ID reads only integers.
    unsafe { sys_bpf(cmd::PROG_GET_FD_BY_ID, &mut attr, "BPF_PROG_GET_FD_BY_ID") }.map(fd_result)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attribute_blocks_match_the_kernel_layout() {
        assert_eq!(std::mem::size_of::<MapCreateAttr>(), 44);
        assert_eq!(std::mem::size_of::<MapElemAttr>(), 32);
        assert_eq!(std::mem::size_of::<ProgLoadAttr>(), 72);
        assert_eq!(std::mem::offset_of!(ProgLoadAttr, prog_name), 48);
        assert_eq!(std::mem::offset_of!(ProgLoadAttr, expected_attach_type), 68);
        assert_eq!(std::mem::offset_of!(QueryAttr, prog_ids), 16);
        assert_eq!(std::mem::offset_of!(QueryAttr, prog_cnt), 24);
        assert_eq!(std::mem::offset_of!(TestRunAttr, repeat), 32);
        assert_eq!(std::mem::offset_of!(TestRunAttr, ctx_in), 48);
        assert_eq!(std::mem::size_of::<TestRunAttr>(), 72);
    }

    #[test]
    fn map_accesses_of_the_wrong_size_are_refused_before_the_call() {
        // Any descriptor will do: the size check comes first, so nothing reaches the kernel.
        let map = MapFd {
            fd: std::fs::File::open("/dev/null").unwrap().into(),
            key_size: 4,
            value_size: 64,
        };
        let mut small = [0u8; 1];
        for err in [
            map.lookup(&0u32.to_ne_bytes(), &mut small).unwrap_err(),
            map.update(&0u32.to_ne_bytes(), &small, BPF_ANY)
                .unwrap_err(),
            map.delete(&[0u8; 2]).unwrap_err(),
            map.next_key(None, &mut small).unwrap_err(),
            map.next_key(Some(&[0u8; 8]), &mut [0u8; 4]).unwrap_err(),
        ] {
            assert_eq!(err.source.kind(), io::ErrorKind::InvalidInput, "{err:?}");
        }
    }

    #[test]
    fn object_names_are_cut_and_cleaned() {
        assert_eq!(&name_bytes("ifpin-egress")[..13], b"ifpin_egress\0");
        assert_eq!(name_bytes("a_very_long_program_name")[15], 0);
    }
}
