//! cgroup v2 directories: where the cgroup2 hierarchy is, and making, filling, and removing
//! one cgroup.
//!
//! A confinement is one cgroup v2 directory with BPF programs attached to it; every process
//! moved into it (and every child they start) is under those programs. This module knows
//! nothing about BPF: it finds the cgroup2 mount in `/proc/self/mountinfo` (it is
//! `/sys/fs/cgroup` on most systems, `/sys/fs/cgroup/unified` in hybrid mode), creates and
//! removes directories, moves processes in through `cgroup.procs`, and reads
//! `cgroup.events` to tell whether any process is left.

use std::fs::{self, File};
use std::io;
use std::os::fd::{AsFd, BorrowedFd};
use std::path::{Path, PathBuf};

/// Errors of the cgroup layer.
#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    /// No cgroup2 file system is mounted.
    #[error(
        "no cgroup v2 hierarchy is mounted (looked for fstype cgroup2 in /proc/self/mountinfo); \
         mount one, e.g. `mount -t cgroup2 none /sys/fs/cgroup`"
    )]
    NotMounted,
    /// A file operation on the hierarchy failed.
    #[error("{op} {path} failed")]
    Io {
        /// What was being done (`mkdir`, `rmdir`, `write`, `read`, `open`).
        op: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The kernel's answer.
        #[source]
        source: io::Error,
    },
}

impl CgroupError {
    fn io(op: &'static str, path: &Path, source: io::Error) -> CgroupError {
        CgroupError::Io {
            op,
            path: path.to_owned(),
            source,
        }
    }

    /// The `errno` behind the failure, if any.
    pub fn errno(&self) -> Option<i32> {
        match self {
            CgroupError::NotMounted => None,
            CgroupError::Io { source, .. } => source.raw_os_error(),
        }
    }
}

/// The mount point of the cgroup2 hierarchy, from `/proc/self/mountinfo`.
pub fn cgroup2_mount() -> Result<PathBuf, CgroupError> {
    cgroup2_mounts()?
        .into_iter()
        .next()
        .ok_or(CgroupError::NotMounted)
}

/// Every place the cgroup2 hierarchy is mounted (it can be mounted more than once).
pub fn cgroup2_mounts() -> Result<Vec<PathBuf>, CgroupError> {
    let path = Path::new("/proc/self/mountinfo");
    let text = fs::read_to_string(path).map_err(|e| CgroupError::io("read", path, e))?;
    Ok(parse_cgroup2_mounts(&text))
}

/// Finds the first cgroup2 mount point in mountinfo text.
#[cfg(test)]
fn parse_cgroup2_mount(mountinfo: &str) -> Option<PathBuf> {
    parse_cgroup2_mounts(mountinfo).into_iter().next()
}

/// Finds every cgroup2 mount point in mountinfo text.
fn parse_cgroup2_mounts(mountinfo: &str) -> Vec<PathBuf> {
    mountinfo
        .lines()
        .filter_map(|line| {
            let (before, after) = line.split_once(" - ")?;
            if after.split_whitespace().next()? != "cgroup2" {
                return None;
            }
            let mount_point = before.split_whitespace().nth(4)?;
            Some(PathBuf::from(unescape_octal(mount_point)))
        })
        .collect()
}

/// Every cgroup mount of this mount namespace: what a sealed program's own mount namespace
/// replaces (v2: by a read-only view of its confinement only) or removes (v1).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CgroupMounts {
    /// cgroup2 mount points.
    pub v2: Vec<PathBuf>,
    /// cgroup (v1) mount points.
    pub v1: Vec<PathBuf>,
}

/// Every cgroup mount point, v1 and v2, from `/proc/self/mountinfo`.
pub fn cgroup_mounts() -> Result<CgroupMounts, CgroupError> {
    let path = Path::new("/proc/self/mountinfo");
    let text = fs::read_to_string(path).map_err(|e| CgroupError::io("read", path, e))?;
    Ok(parse_cgroup_mounts(&text))
}

fn parse_cgroup_mounts(mountinfo: &str) -> CgroupMounts {
    let mut mounts = CgroupMounts::default();
    for line in mountinfo.lines() {
        let Some((before, after)) = line.split_once(" - ") else {
            continue;
        };
        let Some(mount_point) = before.split_whitespace().nth(4) else {
            continue;
        };
        let path = PathBuf::from(unescape_octal(mount_point));
        match after.split_whitespace().next() {
            Some("cgroup2") => mounts.v2.push(path),
            Some("cgroup") => mounts.v1.push(path),
            _ => {}
        }
    }
    mounts
}

/// mountinfo escapes space, tab, newline and backslash as `\ooo`.
fn unescape_octal(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\'
            && i + 3 < bytes.len()
            && bytes[i + 1..i + 4]
                .iter()
                .all(|b| (b'0'..=b'7').contains(b))
        {
            let value =
                (bytes[i + 1] - b'0') * 64 + (bytes[i + 2] - b'0') * 8 + (bytes[i + 3] - b'0');
            out.push(value);
            i += 4;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Creates `path` as a directory if it is not one yet (the shared parent of confinements).
pub fn ensure_dir(path: &Path) -> Result<(), CgroupError> {
    match fs::create_dir(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(CgroupError::io("mkdir", path, e)),
    }
}

/// Removes the shared parent directory `path` when nothing is left in it, so that no empty
/// directory stays behind after the last confinement; a parent that still holds another
/// run's cgroup (`EBUSY`/`ENOTEMPTY`) or is already gone is left alone.
pub fn remove_parent_if_empty(path: &Path) {
    let _ = fs::remove_dir(path);
}

/// One cgroup v2 directory, held open (the descriptor is what BPF attaches to, and what
/// `clone3(CLONE_INTO_CGROUP)` takes).
#[derive(Debug)]
pub struct Cgroup {
    path: PathBuf,
    dir: File,
}

impl Cgroup {
    /// Creates a new cgroup `name` under the shared `parent`, creating the parent as needed.
    ///
    /// Another run may remove the parent between the two `mkdir`s (it does so when it is the
    /// last one out, see [`remove_parent_if_empty`]); then the parent is made again.
    pub fn create_in(parent: &Path, name: &str) -> Result<Cgroup, CgroupError> {
        let path = parent.join(name);
        let mut attempts = 0;
        loop {
            ensure_dir(parent)?;
            match Cgroup::create(&path) {
                Err(CgroupError::Io { source, .. })
                    if source.kind() == io::ErrorKind::NotFound && attempts < 3 =>
                {
                    attempts += 1;
                }
                other => return other,
            }
        }
    }

    /// Creates a new cgroup at `path`; fails if it exists.
    pub fn create(path: &Path) -> Result<Cgroup, CgroupError> {
        fs::create_dir(path).map_err(|e| CgroupError::io("mkdir", path, e))?;
        match Cgroup::open(path) {
            Ok(cgroup) => Ok(cgroup),
            Err(err) => {
                let _ = fs::remove_dir(path);
                Err(err)
            }
        }
    }

    /// Opens an existing cgroup directory.
    pub fn open(path: &Path) -> Result<Cgroup, CgroupError> {
        let dir = File::open(path).map_err(|e| CgroupError::io("open", path, e))?;
        Ok(Cgroup {
            path: path.to_owned(),
            dir,
        })
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Moves process `pid` (and none of its other threads' siblings: the whole thread group)
    /// into this cgroup by writing `cgroup.procs`.
    pub fn add_process(&self, pid: u32) -> Result<(), CgroupError> {
        let path = self.path.join("cgroup.procs");
        fs::write(&path, pid.to_string()).map_err(|e| CgroupError::io("write", &path, e))
    }

    /// The processes in this cgroup itself (`cgroup.procs`; not those of cgroups below it).
    #[doc(alias = "cgroup.procs")]
    pub fn procs(&self) -> Result<Vec<u32>, CgroupError> {
        let path = self.path.join("cgroup.procs");
        let text = fs::read_to_string(&path).map_err(|e| CgroupError::io("read", &path, e))?;
        Ok(text.lines().filter_map(|l| l.trim().parse().ok()).collect())
    }

    /// Opens `cgroup.events`, whose `POLLPRI` wakes a `poll(2)` when `populated` changes;
    /// read it with [`parse_populated`].
    #[doc(alias = "cgroup.events")]
    pub fn events(&self) -> Result<File, CgroupError> {
        let path = self.path.join("cgroup.events");
        File::open(&path).map_err(|e| CgroupError::io("open", &path, e))
    }

    /// Kills every process in this cgroup and below (`cgroup.kill`, Linux 5.14); where the
    /// kernel lacks it, sends `SIGKILL` to each process listed in `cgroup.procs`.
    #[doc(alias = "cgroup.kill")]
    pub fn kill(&self) -> Result<(), CgroupError> {
        let path = self.path.join("cgroup.kill");
        if fs::write(&path, "1").is_ok() {
            return Ok(());
        }
        for pid in self.procs()? {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid as i32),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
        Ok(())
    }

    /// Waits up to `timeout` until no process is left in this cgroup or below; `Ok(false)`
    /// if some still are.
    pub fn wait_empty(&self, timeout: std::time::Duration) -> Result<bool, CgroupError> {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            if !self.is_populated()? {
                return Ok(true);
            }
            if std::time::Instant::now() >= deadline {
                return Ok(false);
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
    }

    /// Whether any process is in this cgroup or below (`populated` in `cgroup.events`).
    pub fn is_populated(&self) -> Result<bool, CgroupError> {
        let path = self.path.join("cgroup.events");
        let text = fs::read_to_string(&path).map_err(|e| CgroupError::io("read", &path, e))?;
        parse_populated(&text).ok_or_else(|| {
            CgroupError::io(
                "read",
                &path,
                io::Error::new(io::ErrorKind::InvalidData, "no `populated` line"),
            )
        })
    }

    /// Removes the directory, and first every cgroup the processes inside made below it
    /// (deepest first); `EBUSY` if processes are still inside.
    pub fn remove(self) -> Result<(), CgroupError> {
        let Cgroup { path, dir } = self;
        drop(dir);
        remove_children(&path)?;
        fs::remove_dir(&path).map_err(|e| CgroupError::io("rmdir", &path, e))
    }
}

/// Removes every cgroup below `path`, deepest first. A cgroup directory holds only its
/// interface files (which `rmdir` takes with it) and child cgroups.
fn remove_children(path: &Path) -> Result<(), CgroupError> {
    let entries = match fs::read_dir(path) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(CgroupError::io("read directory", path, e)),
    };
    for entry in entries.flatten() {
        if entry.file_type().is_ok_and(|t| t.is_dir()) {
            let child = entry.path();
            remove_children(&child)?;
            match fs::remove_dir(&child) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(CgroupError::io("rmdir", &child, e)),
            }
        }
    }
    Ok(())
}

impl AsFd for Cgroup {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.dir.as_fd()
    }
}

/// `populated` from the text of `cgroup.events`: whether any process is in the cgroup or
/// below; `None` when the line is missing.
pub fn parse_populated(events: &str) -> Option<bool> {
    events.lines().find_map(|line| match line.split_once(' ')? {
        ("populated", "1") => Some(true),
        ("populated", "0") => Some(false),
        _ => None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shared_parent_comes_and_goes_with_its_last_run() {
        // Plain directories behave as cgroup directories do for mkdir/rmdir.
        let parent = std::env::temp_dir().join(format!("ifpin-parent-{}", std::process::id()));
        let _ = fs::remove_dir_all(&parent);
        let first = Cgroup::create_in(&parent, "run-a").unwrap();
        let second = Cgroup::create_in(&parent, "run-b").unwrap();
        assert!(matches!(
            Cgroup::create_in(&parent, "run-a"),
            Err(CgroupError::Io { .. })
        ));
        first.remove().unwrap();
        remove_parent_if_empty(&parent);
        assert!(parent.is_dir(), "another run is still inside");
        second.remove().unwrap();
        remove_parent_if_empty(&parent);
        assert!(!parent.exists(), "the last one out removes the parent");
        remove_parent_if_empty(&parent); // already gone: nothing to do
    }

    #[test]
    fn finds_the_cgroup2_mount_in_hybrid_and_unified_layouts() {
        let hybrid = "\
25 30 0:22 / /sys rw,nosuid - sysfs sysfs rw
34 25 0:29 / /sys/fs/cgroup ro - tmpfs tmpfs ro,mode=755
35 34 0:30 / /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw,nsdelegate
36 34 0:31 / /sys/fs/cgroup/systemd rw - cgroup cgroup rw,name=systemd
";
        assert_eq!(
            parse_cgroup2_mount(hybrid),
            Some(PathBuf::from("/sys/fs/cgroup/unified"))
        );
        let unified = "29 23 0:26 / /sys/fs/cgroup rw shared:4 - cgroup2 cgroup2 rw\n";
        assert_eq!(
            parse_cgroup2_mount(unified),
            Some(PathBuf::from("/sys/fs/cgroup"))
        );
        assert_eq!(
            parse_cgroup2_mount("25 30 0:22 / /sys rw - sysfs sysfs rw\n"),
            None
        );
        let escaped = "29 23 0:26 / /mnt/my\\040cg rw - cgroup2 none rw\n";
        assert_eq!(
            parse_cgroup2_mount(escaped),
            Some(PathBuf::from("/mnt/my cg"))
        );
    }

    #[test]
    fn lists_v1_and_v2_cgroup_mounts() {
        let hybrid = "\
34 25 0:29 / /sys/fs/cgroup ro - tmpfs tmpfs ro,mode=755
35 34 0:30 / /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw,nsdelegate
36 34 0:31 / /sys/fs/cgroup/systemd rw - cgroup cgroup rw,name=systemd
37 34 0:32 / /sys/fs/cgroup/cpu rw - cgroup cgroup rw,cpu
";
        let mounts = parse_cgroup_mounts(hybrid);
        assert_eq!(mounts.v2, [PathBuf::from("/sys/fs/cgroup/unified")]);
        assert_eq!(
            mounts.v1,
            [
                PathBuf::from("/sys/fs/cgroup/systemd"),
                PathBuf::from("/sys/fs/cgroup/cpu")
            ]
        );
    }

    #[test]
    fn removal_takes_nested_cgroups_with_it() {
        // Plain directories behave as cgroup directories do for mkdir/rmdir.
        let parent = std::env::temp_dir().join(format!("ifpin-nested-{}", std::process::id()));
        let _ = fs::remove_dir_all(&parent);
        let run = Cgroup::create_in(&parent, "run-a").unwrap();
        fs::create_dir_all(run.path().join("sub/deeper")).unwrap();
        fs::create_dir_all(run.path().join("other")).unwrap();
        run.remove().unwrap();
        remove_parent_if_empty(&parent);
        assert!(!parent.exists());
    }

    #[test]
    fn reads_populated_from_cgroup_events() {
        assert_eq!(parse_populated("populated 1\nfrozen 0\n"), Some(true));
        assert_eq!(parse_populated("populated 0\nfrozen 0\n"), Some(false));
        assert_eq!(parse_populated("frozen 0\n"), None);
    }
}
