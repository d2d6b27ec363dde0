//! A real systemd, booted inside a netlab namespace, for tests of what a confined program can
//! ask the service manager to do on its behalf.
//!
//! The fixture has two halves.
//!
//! **[`Tree`]: a cached Debian root file system.** `debootstrap --variant=minbase` of
//! [`SUITE`] with [`PACKAGES`] (systemd as init, the D-Bus system bus, iproute2), built once and
//! kept in [`DEFAULT_CACHE`] (or the directory named by `$NETLAB_SYSTEMD_CACHE`). The first build
//! takes a few minutes and about 250 MB; it streams debootstrap's progress to stderr. A build
//! goes into a hidden sibling directory and is renamed into place only when complete, so a
//! crashed or interrupted build never leaves a half tree where the cache should be. A stamp
//! file inside the tree (`/etc/netlab-tree-stamp`) records the suite, the package list and the
//! units masked at build time; when the recipe in this module changes, the stamp no longer
//! matches and the tree is rebuilt. Builders serialise on a lock file next to the cache, so
//! parallel tests (and parallel test binaries) build it once. A failed debootstrap is retried
//! once; then the error names the mirror ([`DEFAULT_MIRROR`], or `$NETLAB_DEBIAN_MIRROR`) and
//! shows the end of debootstrap's output.
//!
//! Units that would reach past the container into the machine running the tests are masked in
//! the tree ([`MASKED_UNITS`]): the container gets a writable `/proc/sys` (ifpin needs it to
//! load its BPF programs), so, for example, `systemd-sysctl` would otherwise rewrite the host's
//! global kernel settings at every boot.
//!
//! **[`Container`]: one boot of that tree.** [`Container::boot`] starts `systemd-nspawn --boot`
//! with the container's network namespace set to a [`Netns`] (the container has exactly that
//! namespace's interfaces, addresses and routes), all capabilities, `bpf()` allowed and the
//! API file systems writable, so `ifpin exec` works inside as it would on a real machine. The
//! root is the cached tree with a throwaway tmpfs overlay on top (`--volatile=overlay`):
//! whatever a test writes inside disappears with the container and the cache is never
//! modified, and several containers can run from the same tree at once. It returns once
//! `systemctl is-system-running` inside says `running` or `degraded` (well under a second
//! on a warm cache, at most [`BOOT_TIMEOUT`]).
//!
//! Commands run inside with [`Container::command`] (`nsenter --target <the container's PID 1>
//! --all`): they see the container's mounts, processes and `/run`, so `systemctl`,
//! `systemd-run` and `busctl` talk to the container's systemd and bus. [`Container::host_path`]
//! reads the container's files from outside (`/proc/<PID 1>/root/...`), and
//! [`Container::console`] returns what systemd printed on the console, for assertion
//! messages.
//!
//! nspawn is started in a cgroup of its own (`nl-systemd-<pid>-<n>` at the root of the cgroup2
//! hierarchy, and of the `name=systemd` v1 hierarchy on hybrid systems), where it creates the
//! container's `payload` and its own `supervisor` sub-cgroups. Dropping the container (also
//! while unwinding from a panic) powers it off through nspawn (SIGTERM, an orderly halt of
//! about two seconds), kills the container's init and nspawn if that does not finish within
//! [`SHUTDOWN_TIMEOUT`], and removes that cgroup tree. If the test process dies without
//! dropping it (SIGKILL), nspawn is sent SIGTERM and halts the container, and the next run
//! removes the empty cgroups; the same happens when the thread that booted the container ends,
//! so keep a container on the thread that booted it. Nothing is registered with the host's
//! systemd (`--register=no --keep-unit`), so the host need not run systemd at all. The
//! [`Netns`] is borrowed for the container's lifetime, so the namespace cannot be deleted under
//! a running container.
//!
//! ```no_run
//! use netlab::systemd::{Container, Tree};
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # if !netlab::require_privileged() { return Ok(()); }
//! let chassis = netlab::Chassis::new()?;
//! let tree = Tree::ensure()?;                      // built on first use, then cached
//! let ifpin = std::path::Path::new("/usr/local/bin/ifpin");
//! let container = Container::boot(&tree, chassis.host(), &[(ifpin, "/usr/local/bin/ifpin")])?;
//! let out = container.command("systemctl").arg("is-system-running").output()?;
//! assert!(out.status.success());
//! # Ok(()) }
//! ```

use std::collections::VecDeque;
use std::fs::{self, File};
use std::io::{self, BufRead, BufReader, Read, Write};
use std::marker::PhantomData;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use nix::fcntl::{Flock, FlockArg};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::netns::{Netns, output_of, signal_when_parent_dies, stale_owner};
use crate::{Error, Result};

/// Where the tree is cached unless `$NETLAB_SYSTEMD_CACHE` names another directory.
pub const DEFAULT_CACHE: &str = "/var/cache/ifpin-test/bookworm-systemd";
/// Environment variable naming the cache directory of the tree.
pub const CACHE_ENV: &str = "NETLAB_SYSTEMD_CACHE";
/// The Debian mirror debootstrap downloads from unless `$NETLAB_DEBIAN_MIRROR` names another.
pub const DEFAULT_MIRROR: &str = "http://deb.debian.org/debian";
/// Environment variable naming the Debian mirror.
pub const MIRROR_ENV: &str = "NETLAB_DEBIAN_MIRROR";
/// The Debian release of the tree.
pub const SUITE: &str = "bookworm";
/// Packages installed on top of `minbase`.
pub const PACKAGES: &[&str] = &["systemd", "systemd-sysv", "dbus", "iproute2"];
/// Units masked in the tree: each would act on the machine running the tests rather than on
/// the container (kernel settings, modules, binfmt, devices, the clock), or start work at a
/// random time (timers).
pub const MASKED_UNITS: &[&str] = &[
    "systemd-sysctl.service",
    "systemd-modules-load.service",
    "modprobe@.service",
    "systemd-binfmt.service",
    "proc-sys-fs-binfmt_misc.automount",
    "systemd-udevd.service",
    "systemd-udev-trigger.service",
    "systemd-timesyncd.service",
    "apt-daily.timer",
    "apt-daily-upgrade.timer",
    "dpkg-db-backup.timer",
    "e2scrub_all.timer",
    "e2scrub_reap.service",
    "systemd-tmpfiles-clean.timer",
];
/// How long [`Container::boot`] waits for the system to be up.
pub const BOOT_TIMEOUT: Duration = Duration::from_secs(90);
/// How long an orderly power-off may take before the container is killed.
pub const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(20);

/// Bump when the way the tree is built changes, so cached trees are rebuilt.
const RECIPE: u32 = 1;
/// The stamp file, relative to the tree's root.
const STAMP: &str = "etc/netlab-tree-stamp";
/// `PATH` of commands run inside.
const CONTAINER_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
/// Console lines kept per container.
const CONSOLE_LINES: usize = 2_000;

/// What the stamp of a tree built by this code says.
fn stamp_text() -> String {
    format!(
        "netlab systemd tree, recipe {RECIPE}\nsuite {SUITE}\nvariant minbase\npackages {}\nmasked {}\n",
        PACKAGES.join(" "),
        MASKED_UNITS.join(" ")
    )
}

/// The cache directory: `$NETLAB_SYSTEMD_CACHE` or [`DEFAULT_CACHE`].
pub fn cache_dir() -> PathBuf {
    std::env::var_os(CACHE_ENV)
        .filter(|v| !v.is_empty())
        .map_or_else(|| PathBuf::from(DEFAULT_CACHE), PathBuf::from)
}

/// The Debian mirror: `$NETLAB_DEBIAN_MIRROR` or [`DEFAULT_MIRROR`].
pub fn mirror() -> String {
    std::env::var(MIRROR_ENV)
        .ok()
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| DEFAULT_MIRROR.to_owned())
}

/// A Debian root file system with systemd, ready to boot; see [the module docs](self).
#[derive(Debug, Clone)]
pub struct Tree {
    root: PathBuf,
    built_in: Option<Duration>,
}

impl Tree {
    /// The tree in [`cache_dir`], built first if it is missing or was built from another
    /// recipe.
    pub fn ensure() -> Result<Tree> {
        Tree::ensure_at(&cache_dir())
    }

    /// The tree at `root`, built first if it is missing or its stamp does not match.
    pub fn ensure_at(root: &Path) -> Result<Tree> {
        static IN_PROCESS: Mutex<()> = Mutex::new(());
        let _one_builder_per_process = lock(&IN_PROCESS);
        let want = stamp_text();
        let tree = |built_in| Tree {
            root: root.to_owned(),
            built_in,
        };
        if is_current(root, &want) {
            return Ok(tree(None));
        }
        let (parent, name) = split(root)?;
        fs::create_dir_all(&parent)
            .map_err(|e| Error::sys("mkdir", parent.display().to_string(), e))?;
        let lock_path = parent.join(format!(".{name}.lock"));
        let file = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|e| Error::sys("open", lock_path.display().to_string(), e))?;
        let _one_builder = Flock::lock(file, FlockArg::LockExclusive)
            .map_err(|(_, e)| Error::sys("flock", lock_path.display().to_string(), e.into()))?;
        if is_current(root, &want) {
            return Ok(tree(None)); // another process built it while this one waited
        }
        let start = Instant::now();
        build(root, &parent, &name, &want)?;
        let took = start.elapsed();
        progress(&format!(
            "the {SUITE} systemd tree is ready in {} ({:.0} s)",
            root.display(),
            took.as_secs_f64()
        ));
        Ok(tree(Some(took)))
    }

    /// The tree's root directory.
    pub fn path(&self) -> &Path {
        &self.root
    }

    /// How long building it took, if this call built it (`None`: it was cached).
    pub fn build_time(&self) -> Option<Duration> {
        self.built_in
    }
}

fn is_current(root: &Path, want: &str) -> bool {
    fs::read_to_string(root.join(STAMP)).is_ok_and(|have| have == want)
}

/// `root`'s parent directory and file name.
fn split(root: &Path) -> Result<(PathBuf, String)> {
    let invalid = || Error::Invalid {
        what: "tree directory",
        value: root.display().to_string(),
        reason: "use an absolute path with a parent directory".to_owned(),
    };
    let parent = root
        .parent()
        .filter(|p| root.is_absolute() && p != &Path::new(""));
    let name = root.file_name().and_then(|n| n.to_str());
    match (parent, name) {
        (Some(p), Some(n)) => Ok((p.to_owned(), n.to_owned())),
        _ => Err(invalid()),
    }
}

/// Progress messages go straight to the process's stderr (not through the test harness's
/// capture), so a long first build shows what it is doing.
fn progress(line: &str) {
    let _ = writeln!(io::stderr(), "netlab: {line}");
}

fn build(root: &Path, parent: &Path, name: &str, stamp: &str) -> Result<()> {
    require_tool("debootstrap", "debootstrap")?;
    sweep_stale_builds(parent, name);
    let pid = std::process::id();
    let tmp = parent.join(format!(".{name}.build-{pid}"));
    let mirror = mirror();
    progress(&format!(
        "building the {SUITE} systemd tree for the container tests in {} (debootstrap from {mirror}, a few minutes, about 250 MB; cached afterwards)",
        root.display()
    ));
    let mut failure = None;
    for attempt in 1..=2 {
        remove_tree(&tmp)?;
        match debootstrap(&tmp, &mirror) {
            Ok(()) => {
                failure = None;
                break;
            }
            Err(detail) => {
                progress(&format!("debootstrap attempt {attempt} of 2 failed"));
                failure = Some(detail);
                if attempt == 1 {
                    std::thread::sleep(Duration::from_secs(5));
                }
            }
        }
    }
    if let Some(detail) = failure {
        let _ = remove_tree(&tmp);
        return Err(Error::Container {
            step: "debootstrap",
            detail: format!(
                "could not build the {SUITE} tree from the Debian mirror {mirror} (tried twice; \
                 is the mirror reachable? ${MIRROR_ENV} selects another one): {detail}"
            ),
        });
    }
    if let Err(e) = customize(&tmp, stamp) {
        let _ = remove_tree(&tmp);
        return Err(e);
    }
    // Swap the finished tree in: the cache directory is either absent, the old tree, or the
    // complete new one, never a partial build.
    let old = parent.join(format!(".{name}.old-{pid}"));
    if root.exists() {
        fs::rename(root, &old).map_err(|e| Error::sys("rename", root.display().to_string(), e))?;
    }
    fs::rename(&tmp, root).map_err(|e| Error::sys("rename", tmp.display().to_string(), e))?;
    remove_tree(&old)
}

/// Runs debootstrap into `dir`, streaming its output to stderr; on failure, the end of its
/// output and of its log.
fn debootstrap(dir: &Path, mirror: &str) -> std::result::Result<(), String> {
    let mut cmd = Command::new("debootstrap");
    cmd.arg("--variant=minbase")
        .arg(format!("--include={}", PACKAGES.join(",")))
        .arg(SUITE)
        .arg(dir)
        .arg(mirror)
        .env("DEBIAN_FRONTEND", "noninteractive")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd
        .spawn()
        .map_err(|e| format!("cannot start debootstrap: {e}"))?;
    let tail = Arc::new(Mutex::new(VecDeque::new()));
    let readers = keep_last_lines(&mut child, &tail, 20, |line| {
        // One line per package and step; the download and signature checks of each package
        // are left out to keep it readable.
        if !line.starts_with("I: Retrieving ") && !line.starts_with("I: Validating ") {
            progress(&format!("debootstrap: {line}"));
        }
        line.to_owned()
    });
    let status = child
        .wait()
        .map_err(|e| format!("waiting for debootstrap: {e}"))?;
    for r in readers {
        let _ = r.join();
    }
    if status.success() {
        return Ok(());
    }
    let output = lock(&tail).iter().cloned().collect::<Vec<_>>().join("\n");
    let log = fs::read_to_string(dir.join("debootstrap/debootstrap.log"))
        .map(|l| {
            let lines: Vec<&str> = l.lines().collect();
            lines[lines.len().saturating_sub(20)..].join("\n")
        })
        .unwrap_or_default();
    Err(format!(
        "debootstrap {status}; its last output:\n{output}\nthe end of debootstrap.log:\n{log}"
    ))
}

/// Masks [`MASKED_UNITS`] and writes the stamp.
fn customize(dir: &Path, stamp: &str) -> Result<()> {
    let units = dir.join("etc/systemd/system");
    fs::create_dir_all(&units).map_err(|e| Error::sys("mkdir", units.display().to_string(), e))?;
    for unit in MASKED_UNITS {
        let link = units.join(unit);
        let _ = fs::remove_file(&link);
        std::os::unix::fs::symlink("/dev/null", &link)
            .map_err(|e| Error::sys("symlink", link.display().to_string(), e))?;
    }
    let path = dir.join(STAMP);
    fs::write(&path, stamp).map_err(|e| Error::sys("write", path.display().to_string(), e))
}

/// Removes builds left by processes that died (`.NAME.build-PID`, `.NAME.old-PID`).
fn sweep_stale_builds(parent: &Path, name: &str) {
    let Ok(entries) = fs::read_dir(parent) else {
        return;
    };
    for entry in entries.flatten() {
        let file = entry.file_name().to_string_lossy().into_owned();
        let pid = [".build-", ".old-"].iter().find_map(|kind| {
            file.strip_prefix(&format!(".{name}{kind}"))
                .and_then(|p| p.parse::<u32>().ok())
        });
        if let Some(pid) = pid
            && !Path::new(&format!("/proc/{pid}")).exists()
        {
            progress(&format!(
                "removing the stale build {}",
                entry.path().display()
            ));
            let _ = remove_tree(&entry.path());
        }
    }
}

/// Removes a directory tree, first detaching anything mounted below it (an interrupted
/// debootstrap leaves `/proc` and `/sys` mounted in its target; removing files through those
/// would reach the real ones).
fn remove_tree(dir: &Path) -> Result<()> {
    if fs::symlink_metadata(dir).is_err() {
        return Ok(());
    }
    let info = fs::read_to_string("/proc/self/mountinfo")
        .map_err(|e| Error::sys("read", "/proc/self/mountinfo", e))?;
    let mut below: Vec<PathBuf> = info
        .lines()
        .filter_map(|line| line.split(' ').nth(4))
        .map(|p| PathBuf::from(p.replace("\\040", " ")))
        .filter(|p| p.starts_with(dir))
        .collect();
    below.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    below.dedup();
    for mount in &below {
        output_of(Command::new("umount").arg("--lazy").arg(mount))?;
    }
    fs::remove_dir_all(dir).map_err(|e| Error::sys("remove_dir_all", dir.display().to_string(), e))
}

/// Fails with the Debian package to install if `tool` cannot be run.
fn require_tool(tool: &str, package: &str) -> Result<()> {
    match Command::new(tool)
        .arg("--help")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
    {
        Ok(_) => Ok(()),
        Err(e) => Err(Error::Container {
            step: "tools",
            detail: format!(
                "cannot run {tool} ({e}): install the Debian package {package} \
                 (scripts/setup does)"
            ),
        }),
    }
}

/// Counter making machine names unique inside one process.
static NEXT_MACHINE: AtomicU32 = AtomicU32::new(0);

/// A booted systemd in a [`Netns`]; see [the module docs](self). Powered off and removed on
/// drop.
#[derive(Debug)]
pub struct Container<'ns> {
    machine: String,
    nspawn: Option<Child>,
    pid1: Option<u32>,
    cgroups: Vec<PathBuf>,
    console: Arc<Mutex<VecDeque<String>>>,
    boot_time: Duration,
    _netns: PhantomData<&'ns Netns>,
}

impl<'ns> Container<'ns> {
    /// Boots `tree` with `ns` as the container's network namespace, each `(host path, path
    /// inside)` of `binds_ro` bind-mounted read-only, and waits until systemd reports the
    /// system `running` or `degraded`.
    pub fn boot(tree: &Tree, ns: &'ns Netns, binds_ro: &[(&Path, &str)]) -> Result<Container<'ns>> {
        require_tool("systemd-nspawn", "systemd-container")?;
        require_tool("nsenter", "util-linux")?;
        static SWEEP: std::sync::Once = std::sync::Once::new();
        SWEEP.call_once(sweep_stale_cgroups);

        let start = Instant::now();
        let machine = format!(
            "nl-systemd-{}-{}",
            std::process::id(),
            NEXT_MACHINE.fetch_add(1, Ordering::Relaxed)
        );
        let mut container = Container {
            machine,
            nspawn: None,
            pid1: None,
            cgroups: Vec::new(),
            console: Arc::new(Mutex::new(VecDeque::new())),
            boot_time: Duration::ZERO,
            _netns: PhantomData,
        };
        // From here on, Drop removes whatever was made if a step fails.
        for hierarchy in cgroup_hierarchies()? {
            let dir = hierarchy.join(&container.machine);
            fs::create_dir(&dir).map_err(|e| Error::sys("mkdir", dir.display().to_string(), e))?;
            container.cgroups.push(dir);
        }

        // A shell moves itself into the new cgroups, then becomes nspawn: nspawn makes its
        // `payload` and `supervisor` cgroups below the one it starts in.
        let mut cmd = Command::new("sh");
        cmd.arg("-c")
            .arg(
                r#"n=$1; shift; while [ "$n" -gt 0 ]; do echo $$ > "$1/cgroup.procs" || exit 125; shift; n=$((n-1)); done; exec "$@""#,
            )
            .arg("sh")
            .arg(container.cgroups.len().to_string())
            .args(&container.cgroups)
            .arg("systemd-nspawn")
            .args([
                "--quiet",
                "--boot",
                "--register=no",
                "--keep-unit",
                "--settings=no",
                "--link-journal=no",
                "--resolv-conf=off",
                "--timezone=off",
                "--volatile=overlay",
                "--capability=all",
                "--system-call-filter=bpf",
            ])
            .arg(format!("--machine={}", container.machine))
            .arg(format!("--directory={}", tree.path().display()))
            .arg(format!("--network-namespace-path=/run/netns/{}", ns.name()));
        for (host, inside) in binds_ro {
            cmd.arg(format!("--bind-ro={}:{inside}", host.display()));
        }
        // If this process dies without dropping the container (SIGKILL), nspawn gets SIGTERM
        // and halts it.
        signal_when_parent_dies(&mut cmd, libc::SIGTERM);
        cmd.env("SYSTEMD_NSPAWN_API_VFS_WRITABLE", "1")
            .env_remove("NOTIFY_SOCKET")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().map_err(|source| Error::Spawn {
            command: "systemd-nspawn".to_owned(),
            source,
        })?;
        keep_last_lines(&mut child, &container.console, CONSOLE_LINES, strip_ansi);
        let nspawn_pid = child.id();
        container.nspawn = Some(child);

        let deadline = start + BOOT_TIMEOUT;
        let pid1 = loop {
            container.check_nspawn_alive("finding the container's init")?;
            if let Some(pid) = find_init(nspawn_pid) {
                break pid;
            }
            container.check_deadline(deadline, "finding the container's init", "")?;
            std::thread::sleep(Duration::from_millis(10));
        };
        container.pid1 = Some(pid1);
        let mut last = String::new();
        loop {
            container.check_nspawn_alive("waiting for systemd")?;
            let out = container
                .command("systemctl")
                .arg("is-system-running")
                .output();
            if let Ok(out) = out {
                last = format!(
                    "{}{}",
                    String::from_utf8_lossy(&out.stdout),
                    String::from_utf8_lossy(&out.stderr)
                )
                .trim()
                .to_owned();
                if last == "running" || last == "degraded" {
                    break;
                }
            }
            container.check_deadline(
                deadline,
                "waiting for systemd",
                &format!("`systemctl is-system-running` says {last:?}"),
            )?;
            std::thread::sleep(Duration::from_millis(20));
        }
        container.boot_time = start.elapsed();
        if last == "degraded" {
            let failed = container
                .run(&["systemctl", "--failed", "--no-legend", "--plain"])
                .unwrap_or_default();
            progress(&format!(
                "container {} booted degraded; failed units: {}",
                container.machine,
                failed.trim()
            ));
        }
        Ok(container)
    }

    fn check_nspawn_alive(&mut self, step: &'static str) -> Result<()> {
        let exited = match self.nspawn.as_mut().map(Child::try_wait) {
            Some(Ok(Some(status))) => status.to_string(),
            _ => return Ok(()),
        };
        // The console readers may still be draining the last lines.
        std::thread::sleep(Duration::from_millis(100));
        Err(Error::Container {
            step: "boot",
            detail: format!(
                "systemd-nspawn exited ({exited}) while {step}; its output:\n{}",
                self.console()
            ),
        })
    }

    fn check_deadline(&self, deadline: Instant, step: &str, what: &str) -> Result<()> {
        if Instant::now() < deadline {
            return Ok(());
        }
        Err(Error::Container {
            step: "boot",
            detail: format!(
                "timed out after {BOOT_TIMEOUT:?} {step} {what}; console:\n{}",
                self.console()
            ),
        })
    }

    /// The machine name (also the container's cgroup name on the host), `nl-systemd-<pid>-<n>`.
    pub fn machine(&self) -> &str {
        &self.machine
    }

    /// The host pid of the container's init (systemd, pid 1 inside).
    pub fn pid1(&self) -> u32 {
        self.pid1.unwrap_or(0)
    }

    /// How long [`Container::boot`] took, from starting nspawn to systemd being up.
    pub fn boot_time(&self) -> Duration {
        self.boot_time
    }

    /// A `Command` running `program` inside the container (`nsenter --target PID1 --all`):
    /// its mounts, pid namespace, network namespace and root. The environment is cleared but
    /// for `PATH` (the container's usual one) and `LANG=C.UTF-8`.
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut cmd = Command::new("nsenter");
        cmd.arg(format!("--target={}", self.pid1()))
            .arg("--all")
            .arg("--")
            .arg(program)
            .env_clear()
            .env("PATH", CONTAINER_PATH)
            .env("LANG", "C.UTF-8");
        cmd
    }

    /// Runs `args` inside the container to completion and returns its stdout; on failure the
    /// error carries the command line and stderr.
    pub fn run(&self, args: &[&str]) -> Result<String> {
        let (program, rest) = args.split_first().ok_or_else(|| Error::Invalid {
            what: "command",
            value: String::new(),
            reason: "empty".to_owned(),
        })?;
        output_of(self.command(program).args(rest))
    }

    /// The host path of `inside` (an absolute path in the container), through
    /// `/proc/<PID 1>/root`: readable while the container runs.
    pub fn host_path(&self, inside: &str) -> PathBuf {
        PathBuf::from(format!(
            "/proc/{}/root/{}",
            self.pid1(),
            inside.trim_start_matches('/')
        ))
    }

    /// What nspawn and the container's console printed so far (boot messages), without
    /// colour codes.
    pub fn console(&self) -> String {
        lock(&self.console)
            .iter()
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// Powers the container off and removes its cgroups (what dropping it does), reporting
    /// what went wrong.
    pub fn shutdown(mut self) -> Result<()> {
        self.stop()
    }

    fn stop(&mut self) -> Result<()> {
        let mut problems = Vec::new();
        if let Some(mut child) = self.nspawn.take() {
            let pid = child.id();
            if let Ok(None) = child.try_wait() {
                // nspawn turns SIGTERM into an orderly halt of the container.
                let _ = kill(Pid::from_raw(pid as i32), Signal::SIGTERM);
                if !wait_for_exit(&mut child, SHUTDOWN_TIMEOUT) {
                    problems.push(format!(
                        "the container did not power off within {SHUTDOWN_TIMEOUT:?}; killed it"
                    ));
                    // Killing the container's init takes its whole pid namespace with it. Only
                    // while it is still nspawn's child: that pid is then surely the container's.
                    if let Some(pid1) = self.pid1
                        && parent_of(pid1) == Some(pid)
                    {
                        let _ = kill(Pid::from_raw(pid1 as i32), Signal::SIGKILL);
                    }
                    let _ = child.kill();
                    let _ = child.wait();
                }
            }
        }
        for dir in std::mem::take(&mut self.cgroups) {
            if let Err(e) = remove_cgroup_tree(&dir, Duration::from_secs(10)) {
                problems.push(e);
            }
        }
        if problems.is_empty() {
            return Ok(());
        }
        Err(Error::Container {
            step: "shutdown",
            detail: format!(
                "{} ({}): {}",
                self.machine,
                problems.join("; "),
                self.console()
            ),
        })
    }
}

impl Drop for Container<'_> {
    fn drop(&mut self) {
        if let Err(e) = self.stop() {
            eprintln!("netlab: {e}");
        }
    }
}

/// Waits up to `timeout` for `child` to exit; whether it did.
fn wait_for_exit(child: &mut Child, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        match child.try_wait() {
            Ok(Some(_)) | Err(_) => return true,
            Ok(None) if Instant::now() >= deadline => return false,
            Ok(None) => std::thread::sleep(Duration::from_millis(20)),
        }
    }
}

/// The child of nspawn that is pid 1 of its own pid namespace (nspawn's first child is a
/// helper that sets up namespaces before the container's init exists).
fn find_init(nspawn: u32) -> Option<u32> {
    let tasks = fs::read_dir(format!("/proc/{nspawn}/task")).ok()?;
    for task in tasks.flatten() {
        let children = fs::read_to_string(task.path().join("children")).unwrap_or_default();
        for child in children.split_whitespace().filter_map(|c| c.parse().ok()) {
            let status = fs::read_to_string(format!("/proc/{child}/status")).unwrap_or_default();
            let nspid: Vec<&str> = status
                .lines()
                .find_map(|l| l.strip_prefix("NSpid:"))
                .map(|l| l.split_whitespace().collect())
                .unwrap_or_default();
            if nspid.len() >= 2 && nspid.last() == Some(&"1") {
                return Some(child);
            }
        }
    }
    None
}

/// The parent pid of `pid`, if it exists.
fn parent_of(pid: u32) -> Option<u32> {
    fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix("PPid:"))?
        .trim()
        .parse()
        .ok()
}

/// The cgroup hierarchies nspawn places itself in: the cgroup2 one and, on hybrid systems,
/// the `name=systemd` v1 one (from `/proc/self/mountinfo`, each hierarchy once).
fn cgroup_hierarchies() -> Result<Vec<PathBuf>> {
    let info = fs::read_to_string("/proc/self/mountinfo")
        .map_err(|e| Error::sys("read", "/proc/self/mountinfo", e))?;
    let (mut unified, mut named) = (None, None);
    for line in info.lines() {
        let Some((left, right)) = line.split_once(" - ") else {
            continue;
        };
        let Some(mount) = left.split(' ').nth(4) else {
            continue;
        };
        let mut fields = right.split(' ');
        let (fstype, options) = (fields.next(), fields.nth(1).unwrap_or(""));
        if fstype == Some("cgroup2") && unified.is_none() {
            unified = Some(PathBuf::from(mount));
        } else if fstype == Some("cgroup")
            && options.split(',').any(|o| o == "name=systemd")
            && named.is_none()
        {
            named = Some(PathBuf::from(mount));
        }
    }
    let unified = unified.ok_or_else(|| Error::Container {
        step: "boot",
        detail: "no cgroup2 hierarchy is mounted (looked in /proc/self/mountinfo)".to_owned(),
    })?;
    Ok([Some(unified), named].into_iter().flatten().collect())
}

/// Removes `dir` and every cgroup below it, deepest first, retrying while processes that just
/// died still count as members (up to `patience`).
fn remove_cgroup_tree(dir: &Path, patience: Duration) -> std::result::Result<(), String> {
    let deadline = Instant::now() + patience;
    loop {
        let mut dirs = Vec::new();
        collect_dirs(dir, &mut dirs);
        dirs.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
        let mut last_error = None;
        for d in &dirs {
            if let Err(e) = fs::remove_dir(d)
                && e.kind() != io::ErrorKind::NotFound
            {
                last_error = Some(format!("rmdir {}: {e}", d.display()));
            }
        }
        if !dir.exists() {
            return Ok(());
        }
        if Instant::now() >= deadline {
            let procs = fs::read_to_string(dir.join("cgroup.procs")).unwrap_or_default();
            return Err(format!(
                "could not remove the cgroup {} ({}); processes still inside: {}",
                dir.display(),
                last_error.unwrap_or_default(),
                procs.split_whitespace().collect::<Vec<_>>().join(" ")
            ));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn collect_dirs(dir: &Path, out: &mut Vec<PathBuf>) {
    if let Ok(entries) = fs::read_dir(dir) {
        for entry in entries.flatten() {
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                collect_dirs(&entry.path(), out);
            }
        }
    }
    if dir.is_dir() {
        out.push(dir.to_owned());
    }
}

/// Removes the (empty) cgroups of containers whose test process died without cleaning up.
fn sweep_stale_cgroups() {
    let Ok(hierarchies) = cgroup_hierarchies() else {
        return;
    };
    for hierarchy in hierarchies {
        let Ok(entries) = fs::read_dir(&hierarchy) else {
            continue;
        };
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if !name.starts_with("nl-systemd-") {
                continue;
            }
            if let Some(pid) = stale_owner(&name)
                && !Path::new(&format!("/proc/{pid}")).exists()
            {
                match remove_cgroup_tree(&entry.path(), Duration::ZERO) {
                    Ok(()) => progress(&format!(
                        "removed the stale container cgroup {}",
                        entry.path().display()
                    )),
                    Err(e) => progress(&format!("left a stale container cgroup alone: {e}")),
                }
            }
        }
    }
}

/// `line` without ANSI escape sequences (systemd colours its console).
fn strip_ansi(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            // CSI: ESC [ parameters... final byte in @..~
            if chars.next() == Some('[') {
                for d in chars.by_ref() {
                    if ('@'..='~').contains(&d) {
                        break;
                    }
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// Reads `child`'s stdout and stderr on threads of their own, line by line, and keeps the last
/// `keep` lines (as `each` turns them) in `sink`. Returns the threads, which end with the
/// streams.
fn keep_last_lines(
    child: &mut std::process::Child,
    sink: &Arc<Mutex<VecDeque<String>>>,
    keep: usize,
    each: impl Fn(&str) -> String + Clone + Send + 'static,
) -> Vec<std::thread::JoinHandle<()>> {
    let streams = [
        child
            .stdout
            .take()
            .map(|s| Box::new(s) as Box<dyn Read + Send>),
        child
            .stderr
            .take()
            .map(|s| Box::new(s) as Box<dyn Read + Send>),
    ];
    streams
        .into_iter()
        .flatten()
        .map(|stream| {
            let (sink, each) = (Arc::clone(sink), each.clone());
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines().map_while(io::Result::ok) {
                    let mut kept = lock(&sink);
                    kept.push_back(each(&line));
                    if kept.len() > keep {
                        kept.pop_front();
                    }
                }
            })
        })
        .collect()
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stamp_names_the_package_list() {
        let stamp = stamp_text();
        for p in PACKAGES {
            assert!(stamp.contains(p), "{stamp}");
        }
        assert!(stamp.contains(SUITE));
    }

    #[test]
    fn ansi_codes_are_stripped() {
        assert_eq!(
            strip_ansi("[\u{1b}[0;32m  OK  \u{1b}[0m] Started \u{1b}[0;1;39mdbus\u{1b}[0m."),
            "[  OK  ] Started dbus."
        );
    }

    #[test]
    fn tree_paths_need_a_parent() {
        assert!(split(Path::new("/var/cache/x/tree")).is_ok());
        assert!(split(Path::new("relative")).is_err());
        assert!(split(Path::new("/")).is_err());
    }
}
