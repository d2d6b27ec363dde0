//! What the sealed level does to the program besides the BPF programs, and why each layer is
//! there. The threat: a hostile program that may run as uid 0 and runs any code. The BPF
//! programs hold its sockets; these layers keep it from getting around them.
//!
//! | way around | layer that closes it |
//! |---|---|
//! | writing its pid into another cgroup's `cgroup.procs`, `clone3(CLONE_INTO_CGROUP)` | own mount and cgroup namespace: every cgroup mount replaced, cgroup2 by a read-only mount that shows only the confinement; `clone3` refused (seccomp) |
//! | another process's view of the hierarchy (`/proc/PID/root/...`), ptrace, `process_vm_*`, `pidfd_getfd` of a process outside | Landlock: these need ptrace access, which a Landlock domain only has inside itself |
//! | signals to ifpin or to processes outside (killing the link watch) | Landlock signal scope |
//! | sysctls (`core_pattern`, `modprobe`, `net.*`), `sysrq-trigger`, `/sys` (`uevent_helper`), other processes' `/proc/PID/oom_score_adj` | `/proc` and `/sys` read-only in its mount namespace |
//! | asking a host service to run code as root (systemd, the D-Bus system bus, container engines), or typing into a console as a virtual keyboard (`/dev/uinput`) | masked in its mount namespace; abstract sockets outside scoped away (Landlock) |
//! | capabilities: raw and packet sockets, mounts, BPF, module loading, ... | every capability dropped from every set, bounding included; `--keep-cap` keeps one, never one in [`SEAL_BREAKING`] |
//! | set-user-ID binaries of the host, file capabilities | `no_new_privs` |
//! | System V IPC and POSIX message queues of processes outside | its own IPC namespace |
//! | user namespaces (capabilities again, inside) | `unshare`/`clone` with `CLONE_NEWUSER` refused (seccomp) |
//! | 32-bit and x32 system calls (the cgroup `setsockopt` hook runs only for native ones) | any foreign-ABI call kills the process (seccomp); a 32-bit program is refused before it starts |
//! | io_uring, `bpf()`, `request_key` (a usermode helper as root), non-IP socket families (vsock, TIPC, RDS, SMC, CAN, ...) | refused (seccomp) |
//! | typing into the terminal of the shell outside (`TIOCSTI`, `TIOCLINUX`) | refused (seccomp) |
//!
//! Everything is decided here, in the parent, and carried out by the child between `fork`
//! and `execve`, as a closed plan of system calls (no code of the caller's). A layer the kernel lacks is an error
//! before anything starts: sealed never runs weaker in silence.

use crate::error::SyscallError;
use std::ffi::CString;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};

use caps::Capability;
use serde::Serialize;

use super::ExecError;
use crate::cgroup;
use crate::sys::landlock;
pub use crate::sys::process::Identity;
use crate::sys::process::{CapSets, SealSteps};
use crate::sys::seccomp;

/// Capabilities `--keep-cap` refuses, each with what it would open.
pub const SEAL_BREAKING: &[(Capability, &str)] = &[
    (
        Capability::CAP_NET_RAW,
        "raw and packet sockets bypass the IP-level filters",
    ),
    (
        Capability::CAP_NET_ADMIN,
        "changes interfaces, routes and the confinement's BPF programs",
    ),
    (
        Capability::CAP_SYS_ADMIN,
        "mounts, namespaces and BPF: undoes every other layer",
    ),
    (Capability::CAP_BPF, "loads and changes BPF programs"),
    (Capability::CAP_PERFMON, "BPF and tracing of the whole host"),
    (
        Capability::CAP_SYS_PTRACE,
        "reaches into processes outside the confinement",
    ),
    (Capability::CAP_SYS_MODULE, "loads kernel code"),
    (Capability::CAP_SYS_RAWIO, "raw memory and I/O ports"),
    (Capability::CAP_SYS_BOOT, "loads a new kernel (kexec)"),
    (
        Capability::CAP_DAC_READ_SEARCH,
        "open_by_handle_at reaches files outside the mount namespace",
    ),
    (Capability::CAP_MKNOD, "device nodes of the host's disks"),
    (Capability::CAP_SETPCAP, "changes capability bounding sets"),
    (
        Capability::CAP_SETFCAP,
        "file capabilities for later programs",
    ),
    (
        Capability::CAP_MAC_ADMIN,
        "changes the security modules' policy",
    ),
    (
        Capability::CAP_MAC_OVERRIDE,
        "overrides the security modules' policy",
    ),
    (
        Capability::CAP_CHECKPOINT_RESTORE,
        "reaches into other processes' state",
    ),
];

/// Directories hidden behind an empty read-only tmpfs at sealed: where host services that run
/// code as root, or as another user outside the confinement, listen.
pub const MASKED_DIRECTORIES: &[&str] = &[
    "/run/dbus", // the D-Bus system bus (systemd's StartTransientUnit, NetworkManager, ...)
    "/run/user", // users' session buses and systemd --user managers
    "/run/containerd", // container engines run anything as root
    "/run/podman",
    "/run/docker",
];

/// Files hidden behind `/dev/null` at sealed, besides every socket directly in
/// `/run/systemd` but `notify` (systemd's private socket and its varlink services): sockets
/// of services that run code as root, and `/dev/uinput`, through which a root program makes a
/// virtual keyboard and types into whatever session has the focus.
pub const MASKED_FILES: &[&str] = &[
    "/run/docker.sock",
    "/run/udev/control",
    "/dev/uinput",
    "/dev/input/uinput",
];

/// The directory of systemd's sockets, and the one kept (service readiness notifications).
const SYSTEMD_RUN: &str = "/run/systemd";
const SYSTEMD_NOTIFY: &str = "notify";

/// Paths made read-only at sealed, with every mount below them: kernel tunables and triggers
/// that check uid 0, not a capability (`/proc/sys`, `/proc/sysrq-trigger`,
/// `/sys/kernel/uevent_helper`, ...), and the files of other processes in `/proc` that their
/// owner's uid may write without ptrace access (raising another process's `oom_score_adj`
/// would let the program have the kernel kill ifpin).
pub const READ_ONLY: &[&str] = &["/proc", "/sys"];

/// What the sealed layers are on this run, for the report.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct SealLayers {
    /// Capabilities left to the program (every other one is gone from every set).
    pub capabilities_kept: Vec<String>,
    /// `PR_SET_NO_NEW_PRIVS` is set.
    pub no_new_privs: bool,
    /// The namespaces the program got of its own.
    pub namespaces: Vec<&'static str>,
    /// cgroup mounts replaced: v2 by a read-only view of the confinement only, v1 removed.
    pub cgroup_mounts_replaced: Vec<PathBuf>,
    /// Paths made read-only.
    pub read_only: Vec<PathBuf>,
    /// Host control sockets and directories masked.
    pub masked: Vec<PathBuf>,
    /// The kernel's Landlock ABI (at least 6: signal and abstract-socket scopes).
    pub landlock_abi: u32,
    /// What the seccomp filter refuses.
    pub seccomp: Vec<&'static str>,
}

/// What the seccomp filter refuses, in words (see [`crate::sys::seccomp`]).
const SECCOMP_SUMMARY: &[&str] = &[
    "32-bit and x32 system calls kill the process",
    "clone3: ENOSYS",
    "new user namespaces: EPERM",
    "io_uring: ENOSYS",
    "bpf: EPERM",
    "request_key: EPERM",
    "ioctl TIOCSTI and TIOCLINUX: EPERM",
    "sockets of unix, inet, inet6 and netlink only: EAFNOSUPPORT",
];

/// Parses a capability name: `CAP_NET_BIND_SERVICE`, `cap_net_bind_service` or
/// `net_bind_service`.
pub fn parse_capability(name: &str) -> Result<Capability, ExecError> {
    let upper = name.trim().to_ascii_uppercase();
    let full = if upper.starts_with("CAP_") {
        upper
    } else {
        format!("CAP_{upper}")
    };
    full.parse::<Capability>()
        .map_err(|_| ExecError::BadCapability {
            name: name.to_owned(),
            reason: "not a capability name (see capabilities(7), e.g. CAP_NET_BIND_SERVICE)"
                .to_owned(),
        })
}

/// Refuses capabilities that would break the seal.
pub fn check_keep(keep: &[Capability]) -> Result<(), ExecError> {
    for cap in keep {
        if let Some((_, why)) = SEAL_BREAKING.iter().find(|(c, _)| c == cap) {
            return Err(ExecError::BadCapability {
                name: cap.to_string(),
                reason: format!("it would break the seal: {why}"),
            });
        }
    }
    Ok(())
}

/// The capability sets a program keeps.
pub(crate) fn cap_sets(keep: &[Capability]) -> Result<CapSets, ExecError> {
    let last_cap = crate::sys::process::last_cap().map_err(|source| {
        ExecError::Sys(SyscallError::new(
            "reading /proc/sys/kernel/cap_last_cap",
            source,
        ))
    })?;
    Ok(CapSets {
        keep: keep.iter().fold(0, |acc, c| acc | c.bitmask()),
        last_cap,
    })
}

/// Resolves `--user` and `--group` (names or numbers) with the user database.
pub fn resolve_identity(
    user: Option<&str>,
    group: Option<&str>,
) -> Result<Option<Identity>, ExecError> {
    use nix::unistd::{Gid, Group, Uid, User};
    if user.is_none() && group.is_none() {
        return Ok(None);
    }
    let bad = |what: &str, name: &str, reason: String| ExecError::BadAccount {
        what: what.to_owned(),
        name: name.to_owned(),
        reason,
    };
    let account = match user {
        None => None,
        Some(name) => {
            let found = match name.parse::<u32>() {
                Ok(uid) => User::from_uid(Uid::from_raw(uid)),
                Err(_) => User::from_name(name),
            }
            .map_err(|e| bad("user", name, e.to_string()))?;
            match (found, name.parse::<u32>()) {
                (Some(user), _) => Some((user.uid.as_raw(), user.gid.as_raw(), Some(user))),
                (None, Ok(uid)) => Some((uid, uid, None)),
                (None, Err(_)) => {
                    return Err(bad("user", name, "no such user on this host".into()));
                }
            }
        }
    };
    let gid = match group {
        None => None,
        Some(name) => Some(match name.parse::<u32>() {
            Ok(gid) => gid,
            Err(_) => Group::from_name(name)
                .map_err(|e| bad("group", name, e.to_string()))?
                .ok_or_else(|| bad("group", name, "no such group on this host".into()))?
                .gid
                .as_raw(),
        }),
    };
    let (uid, primary, user) = account.unwrap_or((0, 0, None));
    let gid = gid.unwrap_or(primary);
    let groups = match &user {
        Some(user) => {
            let name = CString::new(user.name.as_bytes())
                .map_err(|_| bad("user", &user.name, "the name has a NUL byte".into()))?;
            nix::unistd::getgrouplist(&name, Gid::from_raw(gid))
                .map(|g| g.into_iter().map(|g| g.as_raw()).collect())
                .unwrap_or_else(|_| vec![gid])
        }
        None => vec![gid],
    };
    Ok(Some(Identity { uid, gid, groups }))
}

/// Refuses a 32-bit (or x32) ELF program at sealed, where every foreign-ABI system call
/// kills the process: better a clear error now than a `SIGSYS` on its first call.
pub fn check_native_abi(program: &Path) -> Result<(), ExecError> {
    use std::io::Read;
    let mut header = [0u8; 5];
    let Ok(mut file) = fs::File::open(program) else {
        return Ok(()); // Program::resolve has checked it; execve will say what is wrong.
    };
    if file.read_exact(&mut header).is_err() || &header[..4] != b"\x7fELF" {
        return Ok(()); // a script or something else: its interpreter is checked at execve
    }
    const ELFCLASS32: u8 = 1;
    if header[4] == ELFCLASS32 {
        return Err(ExecError::ForeignAbi {
            program: program.to_owned(),
        });
    }
    Ok(())
}

/// Everything the sealed child does, decided now; and its description for the report.
pub(crate) fn prepare(keep: &[Capability]) -> Result<(SealSteps, SealLayers), ExecError> {
    check_keep(keep)?;
    if !seccomp::SUPPORTED || !seccomp::available() {
        return Err(ExecError::SealUnsupported {
            layer: "seccomp filters".into(),
            need: "a kernel with CONFIG_SECCOMP_FILTER on x86_64 or aarch64".into(),
        });
    }
    let abi = landlock::abi_version()
        .map_err(|source| ExecError::Sys(SyscallError::new("landlock_create_ruleset", source)))?
        .unwrap_or(0);
    if abi < landlock::SCOPES_ABI {
        return Err(ExecError::SealUnsupported {
            layer: format!(
                "Landlock ABI {} (this kernel has {abi})",
                landlock::SCOPES_ABI
            ),
            need: "Linux 6.12 or newer with Landlock enabled (lsm= on the kernel command line \
                   must include landlock)"
                .into(),
        });
    }
    let ruleset = landlock::create_scoped_ruleset(
        landlock::SCOPE_SIGNAL | landlock::SCOPE_ABSTRACT_UNIX_SOCKET,
    )
    .map_err(|source| ExecError::Sys(SyscallError::new("landlock_create_ruleset", source)))?;

    let mounts = cgroup::cgroup_mounts().map_err(crate::confine::ConfineError::from)?;
    let read_only = existing(READ_ONLY.iter().map(PathBuf::from));
    let masked_dirs = existing_dirs(MASKED_DIRECTORIES);
    let mut masked_files = existing(MASKED_FILES.iter().map(PathBuf::from));
    masked_files.extend(systemd_sockets());
    masked_files.sort();
    masked_files.dedup();

    let layers = SealLayers {
        capabilities_kept: keep.iter().map(|c| c.to_string()).collect(),
        no_new_privs: true,
        namespaces: vec!["mount", "cgroup", "ipc"],
        cgroup_mounts_replaced: mounts.v2.iter().chain(&mounts.v1).cloned().collect(),
        read_only: read_only.clone(),
        masked: masked_dirs.iter().chain(&masked_files).cloned().collect(),
        landlock_abi: abi,
        seccomp: SECCOMP_SUMMARY.to_vec(),
    };
    let steps = SealSteps {
        cgroup_v2: c_paths(&mounts.v2)?,
        cgroup_v1: c_paths(&mounts.v1)?,
        read_only: c_paths(&read_only)?,
        masked_dirs: c_paths(&masked_dirs)?,
        masked_files: c_paths(&masked_files)?,
        landlock: ruleset,
        seccomp: seccomp::sealed_filter(),
    };
    Ok((steps, layers))
}

fn existing(paths: impl Iterator<Item = PathBuf>) -> Vec<PathBuf> {
    paths.filter(|p| fs::symlink_metadata(p).is_ok()).collect()
}

/// Existing directories, symlinks resolved (`/var/run` is usually `/run`), without repeats.
fn existing_dirs(paths: &[&str]) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = paths
        .iter()
        .filter_map(|p| fs::canonicalize(p).ok())
        .filter(|p| p.is_dir())
        .collect();
    out.sort();
    out.dedup();
    out
}

/// Every socket directly in `/run/systemd`, but the readiness-notification socket.
fn systemd_sockets() -> Vec<PathBuf> {
    let Ok(entries) = fs::read_dir(SYSTEMD_RUN) else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_socket()))
        .filter(|e| e.file_name() != SYSTEMD_NOTIFY)
        .map(|e| e.path())
        .collect()
}

fn c_paths(paths: &[PathBuf]) -> Result<Vec<CString>, ExecError> {
    paths
        .iter()
        .map(|p| {
            CString::new(p.as_os_str().as_bytes()).map_err(|_| {
                ExecError::Sys(SyscallError::new(
                    "preparing mount paths",
                    std::io::Error::new(
                        std::io::ErrorKind::InvalidInput,
                        format!("{} has a NUL byte", p.display()),
                    ),
                ))
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capability_names_in_every_spelling() {
        for name in [
            "CAP_NET_BIND_SERVICE",
            "cap_net_bind_service",
            "net_bind_service",
        ] {
            assert_eq!(
                parse_capability(name).unwrap(),
                Capability::CAP_NET_BIND_SERVICE
            );
        }
        assert!(matches!(
            parse_capability("CAP_FLY"),
            Err(ExecError::BadCapability { .. })
        ));
    }

    #[test]
    fn seal_breaking_capabilities_are_refused_with_the_reason() {
        for (cap, _) in SEAL_BREAKING {
            let err = check_keep(&[*cap]).unwrap_err();
            assert!(err.to_string().contains("break the seal"), "{err}");
        }
        check_keep(&[Capability::CAP_NET_BIND_SERVICE, Capability::CAP_SETUID]).unwrap();
    }

    #[test]
    fn thirty_two_bit_programs_are_refused() {
        let dir = std::env::temp_dir().join(format!("ifpin-abi-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let elf32 = dir.join("elf32");
        fs::write(&elf32, b"\x7fELF\x01\x01\x01\0\0\0\0\0\0\0\0\0").unwrap();
        let elf64 = dir.join("elf64");
        fs::write(&elf64, b"\x7fELF\x02\x01\x01\0\0\0\0\0\0\0\0\0").unwrap();
        let script = dir.join("script");
        fs::write(&script, b"#!/bin/sh\n").unwrap();
        assert!(matches!(
            check_native_abi(&elf32),
            Err(ExecError::ForeignAbi { .. })
        ));
        check_native_abi(&elf64).unwrap();
        check_native_abi(&script).unwrap();
        check_native_abi(Path::new("/bin/sh")).unwrap();
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn numeric_accounts_need_no_database_entry() {
        let id = resolve_identity(Some("4242"), None).unwrap().unwrap();
        assert_eq!(
            (id.uid, id.gid, id.groups.clone()),
            (4242, 4242, vec![4242])
        );
        let id = resolve_identity(Some("root"), Some("4243"))
            .unwrap()
            .unwrap();
        assert_eq!((id.uid, id.gid), (0, 4243));
        assert!(matches!(
            resolve_identity(Some("no-such-user-ifpin"), None),
            Err(ExecError::BadAccount { .. })
        ));
        assert_eq!(resolve_identity(None, None).unwrap(), None);
    }
}
