//! Network namespaces to audit: ours, the named ones (`/run/netns`), those of running
//! processes and of each of their threads (`/proc/PID/task/TID/ns/net`: one thread may
//! `unshare(CLONE_NEWNET)` alone), told apart by their nsfs inode. A namespace that no process
//! or thread is in any more, kept alive only by a socket, is found by the audit itself from
//! that socket (see [`from_socket`]).
//!
//! A namespace is entered by `setns(2)` on a short-lived thread, so the caller's own threads
//! never change namespace; whatever must be resolved inside it (sockets, interface names) is
//! read on that thread.

use std::fs;
use std::io;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use nix::sched::CloneFlags;

/// Where named network namespaces are mounted by `ip netns`.
pub const NAMED_NETNS_DIR: &str = "/run/netns";

/// One network namespace.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Namespace {
    /// Its nsfs inode (what `readlink /proc/PID/ns/net` shows as `net:[INODE]`).
    pub inode: u64,
    /// Its name under `/run/netns`, if it has one.
    pub name: Option<String>,
    /// Whether this is the namespace the audit runs in.
    pub current: bool,
    /// A file that refers to it, for `setns`.
    pub path: PathBuf,
    /// A process living in it, if it was found through a process.
    pub pid: Option<u32>,
    /// How it was found.
    pub found: Found,
    /// An open descriptor of it, when no path refers to it (found through a socket).
    pub handle: Option<NsHandle>,
}

/// How a namespace was found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Found {
    /// The namespace the audit runs in.
    Current,
    /// Under `/run/netns`.
    Named,
    /// A process is in it.
    Process {
        /// The process.
        pid: u32,
    },
    /// Only a thread (not its process's main thread) is in it.
    Thread {
        /// The process.
        pid: u32,
        /// The thread.
        tid: u32,
    },
    /// No process is in it; a socket held by a process belongs to it.
    Socket {
        /// The process holding the socket.
        pid: u32,
        /// The socket's descriptor number in that process.
        fd: u32,
    },
}

/// An open namespace descriptor, shared by clones of its [`Namespace`].
#[derive(Clone, Debug)]
pub struct NsHandle(pub Arc<OwnedFd>);

impl PartialEq for NsHandle {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl Eq for NsHandle {}

impl Namespace {
    /// How sockets are labelled: the name if it has one, else `net:[INODE]`.
    pub fn label(&self) -> String {
        match &self.name {
            Some(name) => name.clone(),
            None => format!("net:[{}]", self.inode),
        }
    }
}

/// Errors entering a namespace.
#[derive(Debug, thiserror::Error)]
pub enum NetnsError {
    /// Opening the namespace file failed.
    #[error("cannot open network namespace file {}", path.display())]
    Open {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// `setns` failed (it needs `CAP_SYS_ADMIN`).
    #[error("cannot enter network namespace {label} (setns needs CAP_SYS_ADMIN)")]
    Enter {
        /// The namespace.
        label: String,
        /// Why.
        #[source]
        source: io::Error,
    },
}

fn inode_of(path: &Path) -> io::Result<u64> {
    fs::metadata(path).map(|m| m.ino())
}

fn named() -> Vec<(String, PathBuf, u64)> {
    let Ok(entries) = fs::read_dir(NAMED_NETNS_DIR) else {
        return Vec::new();
    };
    let mut out: Vec<_> = entries
        .filter_map(Result::ok)
        .filter_map(|entry| {
            let name = entry.file_name().to_str()?.to_owned();
            let path = entry.path();
            // A name whose mount is gone (stale file) has no nsfs inode worth keeping.
            let meta = fs::metadata(&path).ok()?;
            (meta.dev() != fs::metadata(NAMED_NETNS_DIR).ok()?.dev()).then_some((
                name,
                path,
                meta.ino(),
            ))
        })
        .collect();
    out.sort();
    out
}

/// The namespace the calling thread is in.
pub fn current() -> io::Result<Namespace> {
    let path = PathBuf::from("/proc/thread-self/ns/net");
    let inode = inode_of(&path)?;
    let name = named()
        .into_iter()
        .find(|(_, _, ino)| *ino == inode)
        .map(|(name, _, _)| name);
    Ok(Namespace {
        inode,
        name,
        current: true,
        path,
        pid: None,
        found: Found::Current,
        handle: None,
    })
}

/// Every network namespace that can be found: the current one first, then the named ones,
/// then those of running processes and threads, each once.
pub fn all() -> io::Result<Vec<Namespace>> {
    discover(true).map(|d| d.namespaces)
}

/// What [`discover`] found.
#[derive(Clone, Debug, Default)]
pub struct Discovery {
    /// Every namespace found, the current one first.
    pub namespaces: Vec<Namespace>,
    /// Processes whose namespace could not be read (`/proc/PID/ns/net` needs the right to
    /// inspect the process: other users' processes, without root).
    pub unreadable: Vec<u32>,
}

/// [`all`], also saying which processes could not be looked at; `threads: false` looks only
/// at each process's main thread.
pub fn discover(threads: bool) -> io::Result<Discovery> {
    let mut found = vec![current()?];
    for (name, path, inode) in named() {
        if let Some(known) = found.iter_mut().find(|ns| ns.inode == inode) {
            known.name.get_or_insert(name);
            continue;
        }
        found.push(Namespace {
            inode,
            name: Some(name),
            current: false,
            path,
            pid: None,
            found: Found::Named,
            handle: None,
        });
    }
    let mut known: std::collections::HashSet<u64> = found.iter().map(|ns| ns.inode).collect();
    let mut pids: Vec<u32> = fs::read_dir("/proc")?
        .filter_map(Result::ok)
        .filter_map(|entry| entry.file_name().to_str()?.parse().ok())
        .collect();
    pids.sort_unstable();
    let mut unreadable = Vec::new();
    for pid in pids {
        let path = PathBuf::from(format!("/proc/{pid}/ns/net"));
        match inode_of(&path) {
            Ok(inode) => {
                if known.insert(inode) {
                    found.push(Namespace {
                        inode,
                        name: None,
                        current: false,
                        path,
                        pid: Some(pid),
                        found: Found::Process { pid },
                        handle: None,
                    });
                }
            }
            Err(err) if err.kind() == io::ErrorKind::PermissionDenied => {
                unreadable.push(pid);
                continue;
            }
            // Exited meanwhile; a zombie (whose main thread exited) may still have threads.
            Err(_) => {}
        }
        if !threads {
            continue;
        }
        // Threads: `/proc/PID/task` links one directory per thread, plus `.` and `..`; only
        // a process with more than one thread is listed.
        let task_dir = format!("/proc/{pid}/task");
        let Ok(meta) = fs::metadata(&task_dir) else {
            continue;
        };
        if meta.nlink() <= 3 {
            continue;
        }
        let Ok(tasks) = fs::read_dir(&task_dir) else {
            continue;
        };
        for task in tasks.filter_map(Result::ok) {
            let Some(tid) = task
                .file_name()
                .to_str()
                .and_then(|t| t.parse::<u32>().ok())
            else {
                continue;
            };
            if tid == pid {
                continue;
            }
            let path = PathBuf::from(format!("/proc/{pid}/task/{tid}/ns/net"));
            let Ok(inode) = inode_of(&path) else { continue };
            if known.insert(inode) {
                found.push(Namespace {
                    inode,
                    name: None,
                    current: false,
                    path,
                    pid: Some(pid),
                    found: Found::Thread { pid, tid },
                    handle: None,
                });
            }
        }
    }
    Ok(Discovery {
        namespaces: found,
        unreadable,
    })
}

/// Why [`from_socket`] could not tell a socket's namespace.
#[derive(Debug, thiserror::Error)]
pub enum SocketNsError {
    /// The process, thread or descriptor is gone: nothing to audit.
    #[error("it was closed meanwhile")]
    Gone,
    /// Copying the descriptor or asking its namespace was refused.
    #[error("{call} failed")]
    Refused {
        /// `pidfd_open`, `pidfd_getfd` or `ioctl(SIOCGSKNS)`.
        call: &'static str,
        /// Why.
        #[source]
        source: io::Error,
    },
}

/// The namespace of socket `fd` of thread `tid` of process `pid`: the descriptor is copied
/// into this process (`pidfd_getfd`, which needs the right to ptrace it: root, or the same
/// user where ptrace is not restricted), asked for its namespace (`SIOCGSKNS`) and closed.
///
/// Like any descriptor passed between processes, the copy updates the socket's cgroup v1
/// `net_cls` class id and `net_prio` index to this process's; on a cgroup v2 host nothing
/// changes.
pub fn from_socket(pid: u32, tid: u32, fd: u32) -> Result<Namespace, SocketNsError> {
    use crate::sys::netns as sys;
    let gone = |call: &'static str| {
        move |source: io::Error| match source.raw_os_error() {
            Some(libc::ESRCH) | Some(libc::EBADF) | Some(libc::ENOENT) => SocketNsError::Gone,
            _ => SocketNsError::Refused { call, source },
        }
    };
    let pidfd = if tid == pid {
        sys::pidfd_open(pid, 0)
    } else {
        sys::pidfd_open(tid, sys::PIDFD_THREAD)
    }
    .map_err(gone("pidfd_open"))?;
    let socket = sys::pidfd_getfd(pidfd.as_fd(), fd as i32).map_err(gone("pidfd_getfd"))?;
    let ns = sys::socket_netns(socket.as_fd()).map_err(|source| SocketNsError::Refused {
        call: "ioctl(SIOCGSKNS)",
        source,
    })?;
    drop(socket);
    let path = PathBuf::from(format!("/proc/self/fd/{}", ns.as_raw_fd()));
    let inode = fs::metadata(&path)
        .map_err(|source| SocketNsError::Refused {
            call: "fstat",
            source,
        })?
        .ino();
    Ok(Namespace {
        inode,
        name: None,
        current: false,
        path: PathBuf::from(format!("/proc/{pid}/fd/{fd}")),
        pid: None,
        found: Found::Socket { pid, fd },
        handle: Some(NsHandle(Arc::new(ns))),
    })
}

/// Runs `f` on a new thread that entered `ns` (or, for the current namespace, on a new thread
/// that stays). The thread ends with `f`, so no thread of the caller changes namespace.
pub fn run_in<T: Send>(ns: &Namespace, f: impl FnOnce() -> T + Send) -> Result<T, NetnsError> {
    let file: Option<OwnedFd> = if ns.current {
        None
    } else if let Some(handle) = &ns.handle {
        Some(handle.0.try_clone().map_err(|source| NetnsError::Open {
            path: ns.path.clone(),
            source,
        })?)
    } else {
        Some(
            fs::File::open(&ns.path)
                .map_err(|source| NetnsError::Open {
                    path: ns.path.clone(),
                    source,
                })?
                .into(),
        )
    };
    std::thread::scope(|scope| {
        scope
            .spawn(move || {
                if let Some(file) = file {
                    nix::sched::setns(&file, CloneFlags::CLONE_NEWNET).map_err(|errno| {
                        NetnsError::Enter {
                            label: ns.label(),
                            source: errno.into(),
                        }
                    })?;
                }
                Ok(f())
            })
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_current_namespace_comes_first_and_once() {
        let all = all().unwrap();
        let me = current().unwrap();
        assert_eq!(all[0].inode, me.inode);
        assert!(all[0].current);
        let mut inodes: Vec<_> = all.iter().map(|ns| ns.inode).collect();
        inodes.sort_unstable();
        inodes.dedup();
        assert_eq!(inodes.len(), all.len(), "each namespace once: {all:?}");
        let link = fs::read_link("/proc/thread-self/ns/net").unwrap();
        assert_eq!(link.to_str().unwrap(), format!("net:[{}]", me.inode));
    }

    #[test]
    fn run_in_the_current_namespace_stays_there() {
        let me = current().unwrap();
        let there = run_in(&me, || current().unwrap().inode).unwrap();
        assert_eq!(there, me.inode);
    }
}
