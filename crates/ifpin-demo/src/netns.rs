//! Named network namespaces that clean up after themselves.
//!
//! A [`Netns`] is created with `ip netns add` (so it shows in `ip netns list` and `ip -n`
//! works on it), gets `lo` up and IPv6 background chatter switched off, and is deleted with
//! `ip netns del` when dropped, also while unwinding from a panic. Processes started through
//! [`Netns::spawn`] are killed (by pid, through their `Child`) before the namespace goes.
//!
//! Code runs inside the namespace in two ways, neither of which touches the mount namespace:
//! [`Netns::run`] runs a closure on a fresh thread that `setns(CLONE_NEWNET)`s into it, and
//! [`Netns::command`] builds a `std::process::Command` whose child does the same in
//! `pre_exec`.

use std::fs::File;
use std::os::fd::OwnedFd;
use std::process::{Child, Command, ExitStatus, Output};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use crate::error::{Error, Result};
use crate::sys;

/// Counter making namespace names unique inside one process.
static NEXT_ID: AtomicU32 = AtomicU32::new(0);

/// Sysctls applied to every new namespace to keep the wire quiet: no router solicitations,
/// no duplicate address detection, no automatic link-local addresses (labs assign fixed
/// ones), no reverse-path filtering (labs route asymmetrically on purpose).
const QUIET_SYSCTLS: &[(&str, &str)] = &[
    ("net/ipv6/conf/all/accept_ra", "0"),
    ("net/ipv6/conf/default/accept_ra", "0"),
    ("net/ipv6/conf/all/router_solicitations", "0"),
    ("net/ipv6/conf/default/router_solicitations", "0"),
    ("net/ipv6/conf/all/accept_dad", "0"),
    ("net/ipv6/conf/default/accept_dad", "0"),
    ("net/ipv6/conf/all/dad_transmits", "0"),
    ("net/ipv6/conf/default/dad_transmits", "0"),
    ("net/ipv6/conf/default/addr_gen_mode", "1"),
    ("net/ipv4/conf/all/rp_filter", "0"),
    ("net/ipv4/conf/default/rp_filter", "0"),
];

/// A named network namespace, deleted (with its interfaces and the processes started through
/// it) when dropped.
#[derive(Debug)]
pub struct Netns {
    name: String,
    label: String,
    fd: Arc<OwnedFd>,
    children: Mutex<Vec<Arc<Mutex<Child>>>>,
}

impl Netns {
    /// Creates a namespace named `nl-<label>-<pid>-<n>`, unique across parallel tests and
    /// processes. `label` is the logical host name ("host", "backplane"...), returned by
    /// [`Netns::label`] and used by responders as their answer.
    ///
    /// `lo` is brought up and [the quiet sysctls](self) are applied.
    pub fn new(label: &str) -> Result<Netns> {
        if label.is_empty()
            || !label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return Err(Error::Invalid {
                what: "namespace label",
                value: label.to_owned(),
                reason: "use ASCII letters, digits, '-' or '_'".to_owned(),
            });
        }
        static SWEEP: std::sync::Once = std::sync::Once::new();
        SWEEP.call_once(sweep_stale);
        let pid = std::process::id();
        let mut attempts = 0;
        loop {
            let n = NEXT_ID.fetch_add(1, Ordering::Relaxed);
            let name = format!("nl-{label}-{pid}-{n}");
            match run_ip(&["netns", "add", &name]) {
                Ok(_) => return Netns::finish(name, label),
                // A leftover from a dead process with a recycled pid: take the next number.
                Err(Error::Command { ref stderr, .. })
                    if stderr.contains("File exists") && attempts < 100 =>
                {
                    attempts += 1;
                }
                Err(e) => return Err(e),
            }
        }
    }

    fn finish(name: String, label: &str) -> Result<Netns> {
        let path = format!("/run/netns/{name}");
        let fd = match File::open(&path) {
            Ok(f) => OwnedFd::from(f),
            Err(e) => {
                let _ = run_ip(&["netns", "del", &name]);
                return Err(Error::sys("open", path, e));
            }
        };
        // From here on, Drop deletes the namespace if anything below fails.
        let ns = Netns {
            name,
            label: label.to_owned(),
            fd: Arc::new(fd),
            children: Mutex::new(Vec::new()),
        };
        ns.ip(&["link", "set", "lo", "up"])?;
        ns.run(|| -> Result<()> {
            for (key, value) in QUIET_SYSCTLS {
                write_sysctl(key, value)?;
            }
            Ok(())
        })??;
        Ok(ns)
    }

    /// The namespace name, as shown by `ip netns list` (`nl-<label>-<pid>-<n>`).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The logical host name given to [`Netns::new`].
    pub fn label(&self) -> &str {
        &self.label
    }

    /// Runs `f` on a new thread that has entered this namespace with
    /// `setns(CLONE_NEWNET)`, and returns its result. Sockets created inside keep belonging to
    /// the namespace after the closure returns, so they can be handed back and used anywhere.
    ///
    /// A panic inside `f` is re-raised in the caller.
    pub fn run<T, F>(&self, f: F) -> Result<T>
    where
        T: Send,
        F: FnOnce() -> T + Send,
    {
        std::thread::scope(|scope| {
            let handle = scope.spawn(|| -> Result<T> {
                self.enter_current_thread()?;
                Ok(f())
            });
            match handle.join() {
                Ok(result) => result,
                Err(panic) => std::panic::resume_unwind(panic),
            }
        })
    }

    /// Moves the calling thread into this namespace for good (`setns(CLONE_NEWNET)`).
    ///
    /// Meant for threads netlab or a test spawns for that purpose (responders, capture
    /// threads); never call it on a thread you do not own.
    pub fn enter_current_thread(&self) -> Result<()> {
        use std::os::fd::AsRawFd;
        sys::setns_net(self.fd.as_raw_fd())
            .map_err(|e| Error::sys("setns(CLONE_NEWNET)", self.name.clone(), e))
    }

    /// A `Command` for `program` whose child enters this namespace with `setns` before `exec`
    /// (no `ip netns exec`: that remounts `/sys` and hides the cgroup2 mount).
    ///
    /// Run it with [`Netns::spawn`] to have it killed when the namespace is dropped, or with
    /// `output()` / `status()` for short commands.
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut cmd = Command::new(program);
        sys::enter_netns_before_exec(&mut cmd, Arc::clone(&self.fd));
        cmd
    }

    /// Spawns `cmd` (normally built with [`Netns::command`]) and remembers the child, so it is
    /// killed and reaped when this `Netns` is dropped, before the namespace is deleted.
    pub fn spawn(&self, cmd: &mut Command) -> Result<Process> {
        let child = cmd.spawn().map_err(|source| Error::Spawn {
            command: describe(cmd),
            source,
        })?;
        let child = Arc::new(Mutex::new(child));
        lock(&self.children).push(Arc::clone(&child));
        Ok(Process { child })
    }

    /// Runs `ip -n NAME ARGS...` and returns its stdout; on failure the error carries the
    /// command line and `ip`'s stderr.
    pub fn ip(&self, args: &[&str]) -> Result<String> {
        let mut full = vec!["-n", self.name.as_str()];
        full.extend_from_slice(args);
        run_ip(&full)
    }

    /// Writes a sysctl inside this namespace. `key` is either dotted
    /// (`net.ipv4.ip_forward`) or a path below `/proc/sys` (`net/ipv6/conf/eth1/accept_ra`,
    /// needed when an interface name contains a dot).
    pub fn sysctl(&self, key: &str, value: &str) -> Result<()> {
        let path = if key.contains('/') {
            key.to_owned()
        } else {
            key.replace('.', "/")
        };
        self.run(|| write_sysctl(&path, value))?
    }

    /// Reads a sysctl inside this namespace (same key forms as [`Netns::sysctl`]).
    pub fn read_sysctl(&self, key: &str) -> Result<String> {
        let path = if key.contains('/') {
            key.to_owned()
        } else {
            key.replace('.', "/")
        };
        self.run(|| {
            let full = format!("/proc/sys/{path}");
            std::fs::read_to_string(&full)
                .map(|s| s.trim().to_owned())
                .map_err(|e| Error::sys("read", full, e))
        })?
    }

    /// The interface index of `ifname` inside this namespace (`if_nametoindex(3)`).
    pub fn ifindex(&self, ifname: &str) -> Result<u32> {
        self.run(|| {
            nix::net::if_::if_nametoindex(ifname).map_err(|e| {
                Error::sys(
                    "if_nametoindex",
                    format!("{ifname} in {}", self.name),
                    e.into(),
                )
            })
        })?
    }

    /// Creates a veth pair with one end `name` here and the other end `peer_name` in `peer`,
    /// both created directly inside their namespaces (so the same names can exist in parallel
    /// labs). With `index`, this end gets that interface index (`ip link add ... index N`),
    /// which is how a test makes "a different device with an old ifindex". Both ends stay
    /// down; see [`Netns::link_up`].
    pub fn add_veth(
        &self,
        name: &str,
        index: Option<u32>,
        peer: &Netns,
        peer_name: &str,
    ) -> Result<()> {
        check_ifname(name)?;
        check_ifname(peer_name)?;
        let index = index.map(|i| i.to_string());
        let mut args = vec!["link", "add", name];
        if let Some(i) = &index {
            args.extend_from_slice(&["index", i]);
        }
        args.extend_from_slice(&[
            "type", "veth", "peer", "name", peer_name, "netns", &peer.name,
        ]);
        self.ip(&args)?;
        Ok(())
    }

    /// `ip link set IFNAME up`. Returns at once; see [`Netns::wait_link_up`] before sending.
    pub fn link_up(&self, ifname: &str) -> Result<()> {
        self.ip(&["link", "set", ifname, "up"]).map(drop)
    }

    /// Waits until `ifname` is operationally up (`state UP` in `ip link`: the carrier is on,
    /// for a veth both ends are up) or `timeout` passes.
    ///
    /// Needed before sending: the kernel activates a device's transmit queue only when it
    /// processes the carrier-on event, asynchronously; until then frames are silently dropped.
    pub fn wait_link_up(&self, ifname: &str, timeout: std::time::Duration) -> Result<()> {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            let out = self.ip(&["-o", "link", "show", "dev", ifname])?;
            if out.contains(" state UP ") {
                return Ok(());
            }
            if std::time::Instant::now() >= deadline {
                return Err(Error::Invalid {
                    what: "interface state",
                    value: format!("{ifname} in {}", self.name),
                    reason: format!(
                        "not operationally up after {timeout:?} (is the other end of the link \
                         up?): {}",
                        out.trim()
                    ),
                });
            }
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
    }

    /// `ip link set IFNAME down`.
    pub fn link_down(&self, ifname: &str) -> Result<()> {
        self.ip(&["link", "set", ifname, "down"]).map(drop)
    }

    /// Adds an address (`10.0.0.1/24`, `fd00::1/64`, `fe80::1/64`). IPv6 addresses are added
    /// with `nodad`, so they are usable at once.
    pub fn add_addr(&self, ifname: &str, cidr: &str) -> Result<()> {
        let mut args = vec!["addr", "replace", cidr, "dev", ifname];
        if cidr.contains(':') {
            args.push("nodad");
        }
        self.ip(&args).map(drop)
    }

    fn kill_children(&self) {
        for child in lock(&self.children).drain(..) {
            let mut child = lock(&child);
            // try_wait first: never signal a pid that was already reaped (and maybe reused).
            if let Ok(None) = child.try_wait() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        self.kill_children();
        if let Err(e) = run_ip(&["netns", "del", &self.name]) {
            eprintln!(
                "netlab: could not delete network namespace {}: {e}",
                self.name
            );
        }
    }
}

/// A process started with [`Netns::spawn`]. It is killed when its namespace is dropped, or
/// earlier with [`Process::kill`].
#[derive(Debug, Clone)]
pub struct Process {
    child: Arc<Mutex<Child>>,
}

impl Process {
    /// Its process id.
    pub fn pid(&self) -> u32 {
        lock(&self.child).id()
    }

    /// Kills it (SIGKILL) unless it already exited, and reaps it.
    pub fn kill(&self) -> Result<ExitStatus> {
        let mut child = lock(&self.child);
        if let Ok(Some(status)) = child.try_wait() {
            return Ok(status);
        }
        let pid = child.id();
        child
            .kill()
            .map_err(|e| Error::sys("kill", format!("pid {pid}"), e))?;
        child
            .wait()
            .map_err(|e| Error::sys("waitpid", format!("pid {pid}"), e))
    }

    /// Returns its exit status if it exited, without blocking.
    pub fn try_wait(&self) -> Result<Option<ExitStatus>> {
        let mut child = lock(&self.child);
        let pid = child.id();
        child
            .try_wait()
            .map_err(|e| Error::sys("waitpid", format!("pid {pid}"), e))
    }

    /// Waits for it to exit.
    pub fn wait(&self) -> Result<ExitStatus> {
        let mut child = lock(&self.child);
        let pid = child.id();
        child
            .wait()
            .map_err(|e| Error::sys("waitpid", format!("pid {pid}"), e))
    }

    /// Gives access to the underlying `std::process::Child` (to take its stdout, for example).
    pub fn with_child<T>(&self, f: impl FnOnce(&mut Child) -> T) -> T {
        f(&mut lock(&self.child))
    }
}

/// Locks a mutex, ignoring poisoning (a panicking test must still be able to clean up).
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Checks an interface name against the kernel's rules (1..=15 bytes, no '/', ':' or
/// whitespace) before handing it to `ip`.
pub(crate) fn check_ifname(name: &str) -> Result<()> {
    let bad = name.is_empty()
        || name.len() > 15
        || name == "."
        || name == ".."
        || name
            .bytes()
            .any(|b| b == b'/' || b == b':' || b.is_ascii_whitespace() || b == 0);
    if bad {
        return Err(Error::Invalid {
            what: "interface name",
            value: name.to_owned(),
            reason: "must be 1 to 15 bytes without '/', ':' or whitespace".to_owned(),
        });
    }
    Ok(())
}

/// Deletes namespaces left behind by netlab processes that died without cleaning up (killed
/// by SIGKILL, for example): names `nl-<label>-<pid>-<n>` whose `<pid>` no longer exists.
/// Namespaces of live processes and names netlab did not make are never touched.
fn sweep_stale() {
    let Ok(entries) = std::fs::read_dir("/run/netns") else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if let Some(pid) = stale_owner(&name)
            && !std::path::Path::new(&format!("/proc/{pid}")).exists()
            && run_ip(&["netns", "del", &name]).is_ok()
        {
            eprintln!("netlab: deleted stale network namespace {name} (process {pid} is gone)");
        }
    }
}

/// The pid in a netlab namespace name `nl-<label>-<pid>-<n>`, if `name` is one.
pub fn stale_owner(name: &str) -> Option<u32> {
    let rest = name.strip_prefix("nl-")?;
    let mut parts = rest.rsplitn(3, '-');
    let n = parts.next()?;
    let pid = parts.next()?;
    let label = parts.next()?;
    if label.is_empty() || n.parse::<u32>().is_err() {
        return None;
    }
    pid.parse().ok()
}

fn write_sysctl(path: &str, value: &str) -> Result<()> {
    let full = format!("/proc/sys/{path}");
    std::fs::write(&full, value).map_err(|e| Error::sys("write", format!("{full} = {value}"), e))
}

fn describe(cmd: &Command) -> String {
    let mut s = cmd.get_program().to_string_lossy().into_owned();
    for a in cmd.get_args() {
        s.push(' ');
        s.push_str(&a.to_string_lossy());
    }
    s
}

/// Makes the child of `cmd` receive `signal` when the thread that spawned it ends (also when
/// the whole process is killed): `prctl(PR_SET_PDEATHSIG)` between `fork` and `exec`. The
/// setting survives `exec` of programs that are not set-uid.
pub fn signal_when_parent_dies(cmd: &mut Command, signal: libc::c_int) {
    sys::signal_when_parent_dies(cmd, signal);
}

/// Runs `ip ARGS...`, returning stdout or an error with stderr.
pub(crate) fn run_ip(args: &[&str]) -> Result<String> {
    let mut cmd = Command::new("ip");
    cmd.args(args);
    output_of(&mut cmd)
}

/// Runs `cmd` to completion, returning stdout or an error carrying stderr.
pub fn output_of(cmd: &mut Command) -> Result<String> {
    let out: Output = cmd.output().map_err(|source| Error::Spawn {
        command: describe(cmd),
        source,
    })?;
    if !out.status.success() {
        return Err(Error::Command {
            command: describe(cmd),
            status: out.status.to_string(),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stale_owner_parses_only_netlab_names() {
        assert_eq!(stale_owner("nl-host-1234-0"), Some(1234));
        assert_eq!(stale_owner("nl-my-label-77-12"), Some(77));
        assert_eq!(stale_owner("nl--77-1"), None);
        assert_eq!(stale_owner("nl-host-x-1"), None);
        assert_eq!(stale_owner("nl-host-12"), None);
        assert_eq!(stale_owner("dh"), None);
        assert_eq!(stale_owner("other-host-1234-0"), None);
    }

    #[test]
    fn interface_names_are_checked() {
        assert!(check_ifname("ctl0").is_ok());
        assert!(check_ifname("fifteen-bytes-x").is_ok());
        for bad in ["", "sixteen-bytes-xx", "a/b", "a:b", "a b", ".", ".."] {
            assert!(check_ifname(bad).is_err(), "{bad:?} accepted");
        }
    }
}
