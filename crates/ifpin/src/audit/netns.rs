//! Network namespaces to audit: ours, the named ones (`/run/netns`), and those of running
//! processes, told apart by their nsfs inode.
//!
//! A namespace is entered by `setns(2)` on a short-lived thread, so the caller's own threads
//! never change namespace; whatever must be resolved inside it (sockets, interface names) is
//! read on that thread.

use std::fs;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

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
}

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
    })
}

/// Every network namespace that can be found: the current one first, then the named ones,
/// then those of running processes, each once.
pub fn all() -> io::Result<Vec<Namespace>> {
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
        });
    }
    let mut pids: Vec<u32> = fs::read_dir("/proc")?
        .filter_map(Result::ok)
        .filter_map(|entry| entry.file_name().to_str()?.parse().ok())
        .collect();
    pids.sort_unstable();
    for pid in pids {
        let path = PathBuf::from(format!("/proc/{pid}/ns/net"));
        // Processes that exited, or that we may not inspect, are skipped.
        let Ok(inode) = inode_of(&path) else { continue };
        if found.iter().any(|ns| ns.inode == inode) {
            continue;
        }
        found.push(Namespace {
            inode,
            name: None,
            current: false,
            path,
            pid: Some(pid),
        });
    }
    Ok(found)
}

/// Runs `f` on a new thread that entered `ns` (or, for the current namespace, on a new thread
/// that stays). The thread ends with `f`, so no thread of the caller changes namespace.
pub fn run_in<T: Send>(ns: &Namespace, f: impl FnOnce() -> T + Send) -> Result<T, NetnsError> {
    let file = if ns.current {
        None
    } else {
        Some(fs::File::open(&ns.path).map_err(|source| NetnsError::Open {
            path: ns.path.clone(),
            source,
        })?)
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
