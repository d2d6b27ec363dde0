//! Which processes hold which sockets: one pass over `/proc/*/fd`, once per audit.
//!
//! Every open socket appears in its holders' `/proc/PID/fd` as a link to `socket:[INODE]`,
//! and `inet_diag` reports the same inode, so one read of every process's fd links answers
//! "who owns this socket" for all sockets at once. Socket inodes are unique across network
//! namespaces, so one index serves every namespace.
//!
//! The pass only calls `readlinkat` (no `stat`), and spreads processes over a few threads.
//! Without `CAP_SYS_PTRACE`/root, other users' fd directories are unreadable: they are
//! counted, so the audit can say owners may be missing.
//!
//! When a process's main thread has exited while others live (`pthread_exit` in `main`), its
//! `/proc/PID/fd` is empty although the process still holds files: then the fd tables of its
//! live threads (`/proc/PID/task/TID/fd`) are read instead. (A thread that stopped sharing
//! its fd table, `unshare(CLONE_FILES)`, while the main thread lives is not looked at.)

use std::ffi::CStr;
use std::fs;
use std::io;
use std::os::fd::AsFd;
use std::os::unix::fs::OpenOptionsExt;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use serde::Serialize;

use crate::sys::procfs;

/// A process id.
pub type Pid = u32;

/// Socket inode → holding processes, from one pass over `/proc/*/fd`.
#[derive(Clone, Debug, Default)]
pub struct OwnerIndex {
    /// (inode, pid, fd number), sorted.
    pairs: Vec<(u64, Pid, u32)>,
    /// Processes whose fd table was read through one of their threads (the main thread had
    /// exited): (pid, tid), sorted.
    pub via_thread: Vec<(Pid, Pid)>,
    /// Processes whose fd directory could not be read for lack of permission.
    pub unreadable: Vec<Pid>,
    /// How many processes were read.
    pub processes_read: usize,
}

/// Where a socket is held: the process, the thread whose fd table holds it, and the number.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Holder {
    /// The process.
    pub pid: Pid,
    /// The thread whose table was read (the process itself unless its main thread exited).
    pub tid: Pid,
    /// The descriptor number in that table.
    pub fd: u32,
}

impl OwnerIndex {
    /// Reads every process's fd links.
    pub fn scan() -> io::Result<OwnerIndex> {
        let pids = all_pids()?;
        let threads = std::thread::available_parallelism()
            .map_or(1, |n| n.get())
            .clamp(1, 4)
            .min(pids.len().max(1));
        let next = AtomicUsize::new(0);
        let results = Mutex::new(Vec::with_capacity(threads));
        std::thread::scope(|scope| {
            for _ in 0..threads {
                scope.spawn(|| {
                    let mut part = Part::default();
                    let mut buf = [0u8; 64];
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        let Some(&pid) = pids.get(i) else { break };
                        part.read_process(pid, &mut buf);
                    }
                    results.lock().unwrap_or_else(|e| e.into_inner()).push(part);
                });
            }
        });
        let parts = results.into_inner().unwrap_or_else(|e| e.into_inner());
        let mut index = OwnerIndex {
            pairs: Vec::with_capacity(parts.iter().map(|p| p.pairs.len()).sum()),
            ..OwnerIndex::default()
        };
        for part in parts {
            index.pairs.extend(part.pairs);
            index.unreadable.extend(part.unreadable);
            index.via_thread.extend(part.via_thread);
            index.processes_read += part.read;
        }
        index.pairs.sort_unstable();
        index.pairs.dedup();
        index.unreadable.sort_unstable();
        index.via_thread.sort_unstable();
        Ok(index)
    }

    /// The processes holding socket `inode`, in pid order, each once.
    pub fn owners(&self, inode: u64) -> impl Iterator<Item = Pid> + '_ {
        let start = self.pairs.partition_point(|&(i, _, _)| i < inode);
        let mut last = None;
        self.pairs[start..]
            .iter()
            .take_while(move |&&(i, _, _)| i == inode)
            .filter_map(move |&(_, pid, _)| (last.replace(pid) != Some(pid)).then_some(pid))
    }

    /// Every socket inode found, each once, in order, with one place that holds it.
    pub fn sockets(&self) -> impl Iterator<Item = (u64, Holder)> + '_ {
        let mut last = None;
        self.pairs.iter().filter_map(move |&(inode, pid, fd)| {
            if last.replace(inode) == Some(inode) {
                return None;
            }
            let tid = self
                .via_thread
                .binary_search_by_key(&pid, |&(p, _)| p)
                .map_or(pid, |i| self.via_thread[i].1);
            Some((inode, Holder { pid, tid, fd }))
        })
    }

    /// How many (socket, process, descriptor) links were found.
    pub fn len(&self) -> usize {
        self.pairs.len()
    }

    /// Whether no socket link was found.
    pub fn is_empty(&self) -> bool {
        self.pairs.is_empty()
    }
}

#[derive(Default)]
struct Part {
    pairs: Vec<(u64, Pid, u32)>,
    unreadable: Vec<Pid>,
    via_thread: Vec<(Pid, Pid)>,
    read: usize,
}

/// What reading one fd directory gave.
enum Table {
    /// Read; this many entries.
    Read(usize),
    /// Permission denied.
    Unreadable,
    /// Gone (the process or thread exited).
    Gone,
}

impl Part {
    fn read_process(&mut self, pid: Pid, buf: &mut [u8]) {
        match self.read_table(&format!("/proc/{pid}/fd"), pid, buf) {
            Table::Read(0) => {}
            Table::Read(_) => {
                self.read += 1;
                return;
            }
            Table::Unreadable => {
                self.unreadable.push(pid);
                return;
            }
            Table::Gone => return,
        }
        // An empty table: a process without files (a kernel thread), a zombie, or a process
        // whose main thread exited while others live. Its live threads still share a table.
        self.read += 1;
        let Ok(tasks) = fs::read_dir(format!("/proc/{pid}/task")) else {
            return;
        };
        for task in tasks.filter_map(Result::ok) {
            let Some(tid) = task
                .file_name()
                .to_str()
                .and_then(|t| t.parse::<Pid>().ok())
            else {
                continue;
            };
            if tid == pid {
                continue;
            }
            match self.read_table(&format!("/proc/{pid}/task/{tid}/fd"), pid, buf) {
                Table::Read(0) | Table::Gone => {}
                Table::Read(_) => {
                    self.via_thread.push((pid, tid));
                    return;
                }
                Table::Unreadable => {
                    self.unreadable.push(pid);
                    return;
                }
            }
        }
    }

    /// Reads the socket links of one fd directory, as held by `pid`: one `open`, the
    /// `getdents` of the listing (names borrowed, not copied) and one `readlinkat` per entry.
    fn read_table(&mut self, path: &str, pid: Pid, buf: &mut [u8]) -> Table {
        let dir = match fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_DIRECTORY)
            .open(path)
        {
            Ok(dir) => dir,
            Err(err) if err.kind() == io::ErrorKind::PermissionDenied => return Table::Unreadable,
            // The process exited: it holds nothing.
            Err(_) => return Table::Gone,
        };
        // The same open directory twice: one descriptor is read by the listing, the other is
        // the base of `readlinkat`.
        let Ok(links) = dir.try_clone() else {
            return Table::Gone;
        };
        let Ok(mut listing) = nix::dir::Dir::from_fd(dir.into()) else {
            return Table::Gone;
        };
        let mut count = 0;
        for entry in listing.iter() {
            let Ok(entry) = entry else { break };
            let name = entry.file_name();
            let bytes = name.to_bytes();
            // Only fd numbers are fd links ("." and ".." are not).
            let Some(fd) = parse_fd(bytes) else { continue };
            count += 1;
            if let Some(inode) = socket_link(links.as_fd(), name, buf) {
                self.pairs.push((inode, pid, fd));
            }
        }
        Table::Read(count)
    }
}

/// A descriptor number as `/proc/PID/fd` names it.
fn parse_fd(name: &[u8]) -> Option<u32> {
    if name.is_empty() || name.len() > 10 || !name.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(name).ok()?.parse().ok()
}

fn socket_link(dir: std::os::fd::BorrowedFd<'_>, name: &CStr, buf: &mut [u8]) -> Option<u64> {
    let len = procfs::readlinkat(dir, name, buf).ok()?;
    parse_socket_link(&buf[..len])
}

/// The inode in a `socket:[INODE]` link target; `None` for any other target.
pub fn parse_socket_link(target: &[u8]) -> Option<u64> {
    let digits = target.strip_prefix(b"socket:[")?.strip_suffix(b"]")?;
    if digits.is_empty() || digits.len() > 20 {
        return None;
    }
    let mut inode: u64 = 0;
    for &d in digits {
        if !d.is_ascii_digit() {
            return None;
        }
        inode = inode.checked_mul(10)?.checked_add(u64::from(d - b'0'))?;
    }
    Some(inode)
}

fn all_pids() -> io::Result<Vec<Pid>> {
    let mut pids = Vec::new();
    for entry in fs::read_dir("/proc")? {
        let entry = entry?;
        if let Some(pid) = entry.file_name().to_str().and_then(|s| s.parse().ok()) {
            pids.push(pid);
        }
    }
    Ok(pids)
}

/// A process that holds at least one audited socket.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Process {
    /// Its pid.
    pub pid: Pid,
    /// Its command name (`/proc/PID/comm`), empty if it exited meanwhile.
    pub command: String,
    /// Its cgroup v2 path (`0::PATH` in `/proc/PID/cgroup`), if readable.
    #[serde(skip)]
    pub cgroup: Option<String>,
}

impl Process {
    /// Reads a process's command name and cgroup.
    pub fn read(pid: Pid) -> Process {
        // The kernel ends the name with one newline; the name itself may hold anything.
        let command = fs::read(format!("/proc/{pid}/comm"))
            .map(|bytes| {
                let bytes = bytes.strip_suffix(b"\n").unwrap_or(&bytes);
                String::from_utf8_lossy(bytes).into_owned()
            })
            .unwrap_or_default();
        let cgroup = fs::read_to_string(format!("/proc/{pid}/cgroup"))
            .ok()
            .and_then(|text| cgroup2_path(&text).map(str::to_owned));
        Process {
            pid,
            command,
            cgroup,
        }
    }
}

/// Whether a process is there to hold sockets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProcessStatus {
    /// No such process.
    Missing,
    /// It exited and waits to be reaped: it holds nothing.
    Zombie,
    /// Alive (possibly with its main thread exited and other threads running).
    Alive,
}

/// Reads `/proc/PID/status`: a process whose main thread exited shows state `Z` while its
/// other threads live, so it is a zombie only when no other thread is left.
pub fn process_status(pid: Pid) -> ProcessStatus {
    let Ok(text) = fs::read_to_string(format!("/proc/{pid}/status")) else {
        return ProcessStatus::Missing;
    };
    let field = |name: &str| {
        text.lines()
            .find_map(|line| line.strip_prefix(name))
            .map(str::trim)
    };
    let dead = field("State:").is_some_and(|s| s.starts_with('Z') || s.starts_with('X'));
    let threads: usize = field("Threads:").and_then(|t| t.parse().ok()).unwrap_or(1);
    if dead && threads <= 1 {
        ProcessStatus::Zombie
    } else {
        ProcessStatus::Alive
    }
}

/// The cgroup v2 path in the text of `/proc/PID/cgroup` (the `0::PATH` line).
pub fn cgroup2_path(text: &str) -> Option<&str> {
    text.lines().find_map(|line| line.strip_prefix("0::"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn socket_links_parse_and_others_do_not() {
        assert_eq!(parse_socket_link(b"socket:[15028]"), Some(15028));
        assert_eq!(
            parse_socket_link(b"socket:[18446744073709551615]"),
            Some(u64::MAX)
        );
        for other in [
            &b"socket:[]"[..],
            b"socket:[12",
            b"socket:[1x]",
            b"pipe:[15028]",
            b"/dev/null",
            b"socket:[18446744073709551616]",
            b"anon_inode:[eventfd]",
        ] {
            assert_eq!(parse_socket_link(other), None, "{other:?}");
        }
    }

    #[test]
    fn only_descriptor_numbers_are_descriptors() {
        assert_eq!(parse_fd(b"0"), Some(0));
        assert_eq!(parse_fd(b"4294967295"), Some(u32::MAX));
        for other in [
            &b"."[..],
            b"..",
            b"",
            b"4294967296",
            b"12345678901",
            b"1a",
            b"-1",
        ] {
            assert_eq!(parse_fd(other), None, "{other:?}");
        }
    }

    #[test]
    fn cgroup_paths_come_from_the_v2_line() {
        let text = "12:cpu:/x\n0::/ifpin/run-42\n";
        assert_eq!(cgroup2_path(text), Some("/ifpin/run-42"));
        assert_eq!(cgroup2_path("1:name=systemd:/\n"), None);
    }

    #[test]
    fn scan_finds_our_own_socket() {
        use std::os::fd::AsRawFd;
        use std::os::unix::fs::MetadataExt;
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let inode = fs::metadata(format!("/proc/self/fd/{}", listener.as_raw_fd()))
            .unwrap()
            .ino();
        let index = OwnerIndex::scan().unwrap();
        let owners: Vec<_> = index.owners(inode).collect();
        assert_eq!(owners, vec![std::process::id()]);
        assert_eq!(index.owners(u64::MAX).count(), 0);
        assert!(index.processes_read >= 1);
        let me = Process::read(std::process::id());
        assert!(!me.command.is_empty());
    }
}
