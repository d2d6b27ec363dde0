//! Escape vectors: what a hostile program running as root under `ifpin exec` does to get out
//! of its confinement as a whole, rather than to steer one pinned socket.
//!
//! [`ESCAPES`] is the table the demo runs at each level: one row per vector with its id, what
//! it does, the attack it runs, what `docs/kernel.md` records the kernel does without the seal,
//! which level closes it, and how to tell from the steps whether it got out. [`ATTACKS`] names
//! every attack function (the demo's and a few more the tests use, through `netlab-escape`);
//! [`run`] runs one by name.
//!
//! An attack is a plain function of [`EscapeArgs`] (`--key value` pairs): it makes its calls
//! one after the other and records what the kernel answered to each ([`EscapeReport`]), as one
//! JSON object: `{"attack": NAME, "steps": [{"call", "result", "detail"?}], ...extra}`. Some
//! print plain lines first (`pid N cgroup C`, `ready`, `calling int 0x80`) so the caller can act
//! while they run; the JSON line is printed last by the caller.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream, UdpSocket};
use std::os::fd::{AsFd, AsRawFd};
use std::time::{Duration, Instant};

use ifpin::Level;
use nix::fcntl::{OFlag, open, openat};
use nix::sys::stat::Mode;
use nix::unistd::{Gid, Pid, Uid};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::{Documented, Privilege};
use crate::sys::{escape as sys, sockopt};

/// Where `docs/kernel.md` records the escape vectors.
pub const DOCUMENTED_IN: &str = "docs/kernel.md#escapes-from-a-confinement";

/// How long a TCP connect of an attack may take.
const CONNECT_TIMEOUT: Duration = Duration::from_millis(1500);

/// The groups the multicast vector joins. The demo forces IGMPv2 and MLDv1 on the host, whose
/// reports are addressed to the group itself, so they are told apart from background reports.
pub const JOIN_GROUPS: MulticastGroups = MulticastGroups {
    group4: Ipv4Addr::new(239, 1, 2, 3),
    ssm_group: Ipv4Addr::new(232, 1, 2, 4),
    group6: Ipv6Addr::new(0xff15, 0, 0, 0, 0, 1, 2, 3),
    legacy_group: Ipv4Addr::new(239, 1, 2, 5),
    join_group: Ipv4Addr::new(239, 1, 2, 6),
    source_group: Ipv4Addr::new(232, 1, 2, 7),
};

/// The multicast groups of the `mcast` attack.
#[derive(Debug, Clone, Copy)]
pub struct MulticastGroups {
    /// Joined with `IP_ADD_MEMBERSHIP` (`ip_mreqn`).
    pub group4: Ipv4Addr,
    /// Joined with `MCAST_JOIN_SOURCE_GROUP`.
    pub ssm_group: Ipv4Addr,
    /// Joined with `IPV6_ADD_MEMBERSHIP`.
    pub group6: Ipv6Addr,
    /// Joined with `IP_ADD_MEMBERSHIP` (`ip_mreq`, by address).
    pub legacy_group: Ipv4Addr,
    /// Joined with `MCAST_JOIN_GROUP`.
    pub join_group: Ipv4Addr,
    /// Joined with `IP_ADD_SOURCE_MEMBERSHIP`.
    pub source_group: Ipv4Addr,
}

impl MulticastGroups {
    /// Every group, as addresses.
    pub fn all(&self) -> [IpAddr; 6] {
        [
            self.group4.into(),
            self.ssm_group.into(),
            self.group6.into(),
            self.legacy_group.into(),
            self.join_group.into(),
            self.source_group.into(),
        ]
    }
}

/// One call of an attack and the kernel's answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Step {
    /// The call, e.g. `clone3` or `write(cgroup.procs)`.
    pub call: String,
    /// `ok`, or the errno's name.
    pub result: String,
    /// What the call returned, when that matters (a label, a path, ids).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<Value>,
}

/// What an attack did: every step, and extra fields (cgroups before and after, payloads).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct EscapeReport {
    /// The attack's name.
    pub attack: String,
    /// Every call, in order.
    pub steps: Vec<Step>,
    /// Extra fields, flattened into the JSON object.
    #[serde(flatten)]
    pub extra: serde_json::Map<String, Value>,
}

impl EscapeReport {
    /// Records a call and its outcome; returns whether it worked.
    pub fn step(&mut self, call: &str, result: std::io::Result<()>) -> bool {
        self.step_detail(call, result, None)
    }

    /// Records a call, its outcome and what it returned; returns whether it worked.
    pub fn step_detail(
        &mut self,
        call: &str,
        result: std::io::Result<()>,
        detail: Option<Value>,
    ) -> bool {
        let ok = result.is_ok();
        self.steps.push(Step {
            call: call.to_owned(),
            result: match result {
                Ok(()) => "ok".to_owned(),
                Err(e) => errno_name(&e),
            },
            detail,
        });
        ok
    }

    /// Sets an extra field.
    pub fn set(&mut self, key: &str, value: Value) {
        self.extra.insert(key.to_owned(), value);
    }

    /// The result of the first step named `call` (`None` if it was not tried).
    pub fn result(&self, call: &str) -> Option<&str> {
        self.steps
            .iter()
            .find(|s| s.call == call)
            .map(|s| s.result.as_str())
    }

    /// Whether the first step named `call` worked.
    pub fn ok(&self, call: &str) -> bool {
        self.result(call) == Some("ok")
    }

    /// The first refused step, as `ERRNO from CALL`, or `accepted` if none was.
    pub fn answer(&self) -> String {
        match self.steps.iter().find(|s| s.result != "ok") {
            Some(step) => format!("{} from {}", step.result, step.call),
            None => "accepted".to_owned(),
        }
    }
}

fn errno_name(e: &std::io::Error) -> String {
    super::Errno::from_io_error(e).name()
}

/// The arguments of an attack: `--key value` pairs.
#[derive(Debug, Clone, Default)]
pub struct EscapeArgs {
    named: BTreeMap<String, String>,
}

impl EscapeArgs {
    /// Parses `--key value` pairs.
    pub fn parse(args: impl IntoIterator<Item = String>) -> Result<Self, String> {
        let mut args = args.into_iter();
        let mut named = BTreeMap::new();
        while let Some(key) = args.next() {
            let key = key
                .strip_prefix("--")
                .ok_or_else(|| format!("expected --key, got {key}"))?
                .to_owned();
            let value = args
                .next()
                .ok_or_else(|| format!("--{key} needs a value"))?;
            named.insert(key, value);
        }
        Ok(Self { named })
    }

    /// Adds `--key value`.
    pub fn with(mut self, key: &str, value: impl ToString) -> Self {
        self.named.insert(key.to_owned(), value.to_string());
        self
    }

    /// The pairs as command-line words (`--key`, `value`, ...).
    pub fn to_argv(&self) -> Vec<String> {
        self.named
            .iter()
            .flat_map(|(k, v)| [format!("--{k}"), v.clone()])
            .collect()
    }

    fn get(&self, key: &str) -> Result<&str, String> {
        self.named
            .get(key)
            .map(String::as_str)
            .ok_or_else(|| format!("needs --{key}"))
    }

    fn parse_as<T: std::str::FromStr>(&self, key: &str) -> Result<T, String> {
        let value = self.get(key)?;
        value
            .parse()
            .map_err(|_| format!("--{key}: bad value {value:?}"))
    }

    fn dst(&self) -> Result<SocketAddr, String> {
        Ok(SocketAddr::new(
            self.parse_as::<IpAddr>("dst")?,
            self.parse_as("port")?,
        ))
    }
}

/// An attack: makes its calls and records them; `Err` only for bad arguments.
pub type AttackFn = fn(&EscapeArgs, &mut EscapeReport) -> Result<(), String>;

/// Every attack, by name.
pub static ATTACKS: [(&str, AttackFn); 13] = [
    ("clone3-cgroup", clone3_cgroup),
    ("write-same", write_same),
    ("open-write", open_write),
    ("proc-root-cgroup", proc_root_cgroup),
    ("borrow-fd", borrow_fd),
    ("mcast", mcast),
    ("errqueue", errqueue),
    ("kill-parent", kill_parent),
    ("int80-bindtodevice", int80_bindtodevice),
    ("nested-cgroup", nested_cgroup),
    ("bind-port", bind_port),
    ("io-uring", io_uring),
    ("bpf", bpf),
];

/// Runs the attack `name` with `args`.
pub fn run(name: &str, args: &EscapeArgs) -> Result<EscapeReport, String> {
    let (_, attack) = ATTACKS
        .iter()
        .find(|(n, _)| *n == name)
        .ok_or_else(|| format!("unknown attack {name}"))?;
    let mut report = EscapeReport {
        attack: name.to_owned(),
        ..EscapeReport::default()
    };
    attack(args, &mut report).map_err(|e| format!("{name}: {e}"))?;
    Ok(report)
}

/// An escape vector of the demo.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(into = "&'static str")]
pub enum Escape {
    /// `clone3(CLONE_INTO_CGROUP)` with the cgroup2 root, then a plain connect.
    Clone3Cgroup,
    /// A same-value write of `kernel.core_pattern`.
    CorePattern,
    /// A same-value write of `net.ipv6.conf.eth1.disable_ipv6`.
    DisableIpv6,
    /// `setfsuid` to an outside process's uid, through its `/proc/PID/root` into the outside
    /// cgroup hierarchy, `cgroup.procs` of the root cgroup, then a plain connect.
    ProcRootCgroup,
    /// `pidfd_getfd` of an outside process's UDP socket, then sends through it.
    BorrowFd,
    /// IGMP/MLD joins naming eth1: the host sends the reports.
    MulticastJoin,
    /// `IP_RECVERR` on an unpinned socket (`--allow-loopback`): reads what the front sent.
    ErrorQueue,
    /// `setsockopt(SO_BINDTODEVICE, eth1)` through `int 0x80`.
    Int80,
    /// `unshare(CLONE_NEWUSER)`, cgroup2 mounted in it, a nested cgroup made and entered.
    NestedCgroup,
    /// `kill(getppid(), SIGKILL)`: the supervisor dies. Last: where it works, `ifpin exec`
    /// is killed and its cgroup must be cleaned up.
    KillParent,
}

/// What the demo must give an escape vector.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Needs {
    /// The control address and the service port (`--dst`, `--port`).
    Destination,
    /// A file to write back (`--path`).
    Path(&'static str),
    /// A process outside, of another uid, holding a UDP socket (`--pid`, `--uid`, `--fd`), and
    /// the destination.
    Outside,
    /// eth1's index and addresses, and the groups to join.
    Multicast,
    /// A port, and an ICMP error from the front once the program says `ready`.
    ErrorQueue,
    /// Nothing.
    Nothing,
    /// eth1's name (`--iface`).
    Interface,
}

/// One row of [`ESCAPES`].
#[derive(Debug, Clone, Copy, Serialize)]
pub struct EscapeInfo {
    /// Short stable id, e.g. `clone3-cgroup`.
    pub id: &'static str,
    /// One line saying what it does.
    pub title: &'static str,
    /// The attack it runs ([`ATTACKS`]).
    pub attack: &'static str,
    /// The privilege it runs with.
    pub privilege: Privilege,
    /// What `docs/kernel.md` records without the seal: every call accepted, and whether
    /// anything leaves through the front port.
    pub documented: Documented,
    /// Where that is written ([`DOCUMENTED_IN`]).
    pub documented_in: &'static str,
    /// The weakest level that holds against it.
    pub closed_by: Level,
    /// What the demo must give it.
    pub needs: Needs,
    /// Run with `ifpin exec --allow-loopback` (the vector needs an unpinned socket).
    pub allow_loopback: bool,
    /// Whether its steps show it got out (what "got out" means for this vector).
    #[serde(skip)]
    pub got_out: fn(&EscapeReport) -> bool,
}

impl Escape {
    /// Every escape vector, in table order.
    pub const ALL: [Escape; 10] = [
        Self::Clone3Cgroup,
        Self::CorePattern,
        Self::DisableIpv6,
        Self::ProcRootCgroup,
        Self::BorrowFd,
        Self::MulticastJoin,
        Self::ErrorQueue,
        Self::Int80,
        Self::NestedCgroup,
        Self::KillParent,
    ];

    /// The vector's row of [`ESCAPES`].
    pub fn info(self) -> &'static EscapeInfo {
        &ESCAPES[self as usize]
    }

    /// The vector's id.
    pub fn id(self) -> &'static str {
        self.info().id
    }

    /// Looks a vector up by its id.
    pub fn from_id(id: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|e| e.id() == id)
    }
}

impl From<Escape> for &'static str {
    fn from(escape: Escape) -> Self {
        escape.id()
    }
}

impl std::fmt::Display for Escape {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.id())
    }
}

#[allow(
    clippy::too_many_arguments,
    reason = "one row of a table, every column named"
)]
const fn row(
    id: &'static str,
    title: &'static str,
    attack: &'static str,
    documented: Documented,
    closed_by: Level,
    needs: Needs,
    allow_loopback: bool,
    got_out: fn(&EscapeReport) -> bool,
) -> EscapeInfo {
    EscapeInfo {
        id,
        title,
        attack,
        privilege: Privilege::Root,
        documented,
        documented_in: DOCUMENTED_IN,
        closed_by,
        needs,
        allow_loopback,
        got_out,
    }
}

/// Every escape vector, in [`Escape`] order.
#[rustfmt::skip]
pub static ESCAPES: [EscapeInfo; 10] = [
    row("clone3-cgroup", "clone3(CLONE_INTO_CGROUP) into the root cgroup, then connect",
        "clone3-cgroup", Documented::Leaks, Level::Sealed, Needs::Destination, false,
        |r| r.ok("clone3")),
    row("core-pattern", "same-value write of kernel.core_pattern (a usermode helper)",
        "write-same", Documented::Contained, Level::Sealed,
        Needs::Path("/proc/sys/kernel/core_pattern"), false,
        |r| r.ok("write")),
    row("disable-ipv6", "same-value write of net.ipv6.conf.eth1.disable_ipv6",
        "write-same", Documented::Contained, Level::Sealed,
        Needs::Path("/proc/sys/net/ipv6/conf/eth1/disable_ipv6"), false,
        |r| r.ok("write")),
    row("proc-root-cgroup", "setfsuid to an outside uid, /proc/PID/root/…/cgroup.procs, connect",
        "proc-root-cgroup", Documented::Leaks, Level::Sealed, Needs::Outside, false,
        |r| r.ok("write(cgroup.procs)")),
    row("borrow-fd", "pidfd_getfd of an outside process's UDP socket, then send",
        "borrow-fd", Documented::Leaks, Level::Sealed, Needs::Outside, false,
        |r| r.ok("pidfd_getfd")),
    row("mcast-join", "IGMP/MLD joins naming eth1: the host sends the reports",
        "mcast", Documented::Leaks, Level::Enforced, Needs::Multicast, false,
        |r| r.steps.iter().any(|s| s.call.contains("MEMBERSHIP") || s.call.starts_with("MCAST")) && r.steps.iter().any(|s| s.result == "ok")),
    row("errqueue", "IP_RECVERR on an unpinned socket reads an ICMP error sent by the front",
        "errqueue", Documented::Contained, Level::Sealed, Needs::ErrorQueue, true,
        |r| r.extra.get("errqueue_payload").is_some_and(|p| !p.is_null())),
    row("int80-bindtodevice", "int 0x80 setsockopt(SO_BINDTODEVICE, eth1): a 32-bit call",
        "int80-bindtodevice", Documented::Contained, Level::Sealed, Needs::Interface, true,
        |r| r.ok("int80 setsockopt(SO_BINDTODEVICE)")),
    row("nested-cgroup", "unshare(CLONE_NEWUSER), mount cgroup2, make and enter a nested cgroup",
        "nested-cgroup", Documented::Contained, Level::Sealed, Needs::Destination, false,
        |r| r.ok("write(sub/cgroup.procs)")),
    row("kill-parent", "kill(getppid(), SIGKILL): the supervisor dies",
        "kill-parent", Documented::Contained, Level::Sealed, Needs::Nothing, false,
        |r| r.ok("kill(ppid, SIGKILL)") || r.ok("pidfd_send_signal(SIGKILL)")),
];

// ---- the attacks ----

/// The cgroup2 mount point, from `/proc/self/mountinfo`.
fn cgroup2_mount() -> Option<String> {
    let info = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    info.lines().find_map(|line| {
        let (left, right) = line.split_once(" - ")?;
        right
            .starts_with("cgroup2 ")
            .then(|| left.split(' ').nth(4).map(str::to_owned))
            .flatten()
    })
}

/// The cgroup v2 path of this process (`0::PATH` of `/proc/self/cgroup`).
fn own_cgroup() -> String {
    std::fs::read_to_string("/proc/self/cgroup")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("0::"))
                .map(str::to_owned)
        })
        .unwrap_or_default()
}

/// Whether the cgroup2 mount's root holds this process (it does when the mount shows only the
/// confinement: a cgroup namespace rooted at the program's own cgroup).
fn mount_root_holds_me(report: &mut EscapeReport) {
    let me = std::process::id().to_string();
    let holds = cgroup2_mount()
        .and_then(|m| std::fs::read_to_string(format!("{m}/cgroup.procs")).ok())
        .map(|procs| procs.lines().any(|l| l == me));
    report.set("cgroup2_mount", json!(cgroup2_mount()));
    report.set("mount_root_holds_self", json!(holds));
}

/// A plain TCP connect to `dst` (routed by the table); reads the responder's label.
fn tcp_connect(report: &mut EscapeReport, call: &str, dst: SocketAddr) {
    match TcpStream::connect_timeout(&dst, CONNECT_TIMEOUT) {
        Ok(mut stream) => {
            let _ = stream.set_read_timeout(Some(CONNECT_TIMEOUT));
            let mut buf = [0u8; 64];
            let n = stream.read(&mut buf).unwrap_or(0);
            let label = String::from_utf8_lossy(&buf[..n]).trim().to_owned();
            // Close with a RST: no TIME_WAIT whose late ACKs the host would send on its own.
            let _ = socket2::SockRef::from(&stream).set_linger(Some(Duration::ZERO));
            report.step_detail(call, Ok(()), Some(json!(label)));
        }
        Err(e) => {
            report.step(call, Err(e));
        }
    }
}

/// `clone3(CLONE_INTO_CGROUP)` with the cgroup2 mount's root: the child starts in the root
/// cgroup, checks where it is and connects to `--dst`.
fn clone3_cgroup(args: &EscapeArgs, report: &mut EscapeReport) -> Result<(), String> {
    let dst = args.dst()?;
    report.set("cgroup_before", json!(own_cgroup()));
    mount_root_holds_me(report);
    let Some(mount) = cgroup2_mount() else {
        report.step(
            "find-cgroup2",
            Err(std::io::Error::from_raw_os_error(libc::ENOENT)),
        );
        return Ok(());
    };
    let root = match std::fs::File::open(&mount) {
        Ok(root) => {
            report.step("open-cgroup2-root", Ok(()));
            root
        }
        Err(e) => {
            report.step("open-cgroup2-root", Err(e));
            return Ok(());
        }
    };
    let (reader, writer) =
        nix::unistd::pipe2(OFlag::O_CLOEXEC).map_err(|e| format!("pipe2: {e}"))?;
    let mut writer = Some(writer);
    let pid = sys::fork_into_cgroup(root.as_fd(), || {
        // The child: where am I, and can I reach the control address?
        let mut child = EscapeReport::default();
        child.set("cgroup", json!(own_cgroup()));
        tcp_connect(&mut child, "child-connect", dst);
        let out = json!({ "steps": child.steps, "cgroup": child.extra["cgroup"] }).to_string();
        if let Some(writer) = writer.take() {
            let _ = std::fs::File::from(writer).write_all(out.as_bytes());
        }
        0
    });
    drop(writer);
    let pid = match pid {
        Ok(pid) => {
            report.step("clone3", Ok(()));
            pid
        }
        Err(e) => {
            report.step("clone3", Err(e));
            return Ok(());
        }
    };
    let mut text = String::new();
    let _ = std::fs::File::from(reader).read_to_string(&mut text);
    let _ = nix::sys::wait::waitpid(Pid::from_raw(pid), None);
    let child: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
    if let Some(steps) = child["steps"].as_array() {
        report.steps.extend(
            steps
                .iter()
                .filter_map(|s| serde_json::from_value::<Step>(s.clone()).ok()),
        );
    }
    report.set("child_cgroup", child["cgroup"].clone());
    Ok(())
}

/// Reads `--path` and writes the same value back (changes nothing, proves write access).
fn write_same(args: &EscapeArgs, report: &mut EscapeReport) -> Result<(), String> {
    let path = args.get("path")?;
    let current = match std::fs::read(path) {
        Ok(v) => {
            let text = String::from_utf8_lossy(&v).trim().to_owned();
            report.step_detail("read", Ok(()), Some(json!(text)));
            v
        }
        Err(e) => {
            report.step("read", Err(e));
            return Ok(());
        }
    };
    match std::fs::OpenOptions::new().write(true).open(path) {
        Ok(mut f) => {
            report.step("open-write", Ok(()));
            report.step("write", f.write_all(&current));
        }
        Err(e) => {
            report.step("open-write", Err(e));
        }
    }
    Ok(())
}

/// Opens `--path` for writing and closes it without writing.
fn open_write(args: &EscapeArgs, report: &mut EscapeReport) -> Result<(), String> {
    let path = args.get("path")?;
    let result = std::fs::OpenOptions::new().write(true).open(path).map(drop);
    report.step("open-write", result);
    Ok(())
}

/// setfsuid and setfsgid to `id`, recorded: the calls have no error return, so the ids are
/// read back.
fn set_fs_ids(report: &mut EscapeReport, id: u32) -> bool {
    nix::unistd::setfsgid(Gid::from_raw(id));
    nix::unistd::setfsuid(Uid::from_raw(id));
    // setfs*id(-1) changes nothing and returns the current id.
    let now = (
        nix::unistd::setfsuid(Uid::from_raw(u32::MAX)).as_raw(),
        nix::unistd::setfsgid(Gid::from_raw(u32::MAX)).as_raw(),
    );
    let result = if now == (id, id) {
        Ok(())
    } else {
        Err(std::io::Error::from_raw_os_error(libc::EPERM))
    };
    report.step_detail(
        &format!("setfsuid+setfsgid({id})"),
        result,
        Some(json!([now.0, now.1])),
    )
}

/// Takes the filesystem uid and gid of a process outside (`--pid`, running as `--uid`, gid the
/// same), which makes its `/proc/PID/root` reachable without `CAP_SYS_PTRACE`; through it, the
/// outside's cgroup2 mount; writes its own pid into the root cgroup and connects to `--dst`.
fn proc_root_cgroup(args: &EscapeArgs, report: &mut EscapeReport) -> Result<(), String> {
    let pid: u32 = args.parse_as("pid")?;
    let uid: u32 = args.parse_as("uid")?;
    let dst = args.dst()?;
    let mount = cgroup2_mount().unwrap_or_else(|| "/sys/fs/cgroup".into());
    report.set("cgroup_before", json!(own_cgroup()));
    set_fs_ids(report, uid);
    let root = open(
        format!("/proc/{pid}/root").as_str(),
        OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(std::io::Error::from);
    let root = match root {
        Ok(root) => {
            report.step("open(/proc/PID/root)", Ok(()));
            Some(root)
        }
        Err(e) => {
            report.step("open(/proc/PID/root)", Err(e));
            None
        }
    };
    // Back to fsuid 0: the filesystem capabilities come back with it (when still held).
    set_fs_ids(report, 0);
    if let Some(root) = root {
        let procs = format!("{}/cgroup.procs", mount.trim_start_matches('/'));
        match openat(&root, procs.as_str(), OFlag::O_WRONLY, Mode::empty()) {
            Ok(fd) => {
                report.step("openat(root, cgroup.procs)", Ok(()));
                let result =
                    std::fs::File::from(fd).write_all(std::process::id().to_string().as_bytes());
                report.step("write(cgroup.procs)", result);
            }
            Err(e) => {
                report.step("openat(root, cgroup.procs)", Err(e.into()));
            }
        }
    }
    report.set("cgroup_after", json!(own_cgroup()));
    tcp_connect(report, "connect", dst);
    Ok(())
}

/// Becomes `--uid`, takes socket `--fd` of the process `--pid` outside with `pidfd_getfd`,
/// and sends through it; also tries `PTRACE_ATTACH` and `process_vm_readv`.
fn borrow_fd(args: &EscapeArgs, report: &mut EscapeReport) -> Result<(), String> {
    let pid: i32 = args.parse_as("pid")?;
    let target_fd: i32 = args.parse_as("fd")?;
    let uid: u32 = args.parse_as("uid")?;
    let dst = args.dst()?;
    let (gid, uid) = (Gid::from_raw(uid), Uid::from_raw(uid));
    let io = |r: nix::Result<()>| r.map_err(std::io::Error::from);
    report.step("setresgid", io(nix::unistd::setresgid(gid, gid, gid)));
    report.step("setresuid", io(nix::unistd::setresuid(uid, uid, uid)));

    match sys::pidfd_open(pid) {
        Ok(pidfd) => {
            report.step("pidfd_open", Ok(()));
            match sys::pidfd_getfd(pidfd.as_fd(), target_fd) {
                Ok(fd) => {
                    report.step("pidfd_getfd", Ok(()));
                    let socket = UdpSocket::from(fd);
                    for _ in 0..3 {
                        let result = socket.send_to(b"ifpin-demo borrowed socket", dst).map(drop);
                        report.step("sendto(borrowed)", result);
                    }
                }
                Err(e) => {
                    report.step("pidfd_getfd", Err(e));
                }
            }
        }
        Err(e) => {
            report.step("pidfd_open", Err(e));
        }
    }
    report.step("ptrace(PTRACE_ATTACH)", sys::ptrace_attach_and_detach(pid));

    // An address that is mapped in the target, from its maps (0x10000 if unreadable: then
    // EFAULT still means "allowed", EPERM "refused").
    let address = std::fs::read_to_string(format!("/proc/{pid}/maps"))
        .ok()
        .and_then(|m| {
            let first = m.lines().next()?.split('-').next()?.to_owned();
            usize::from_str_radix(&first, 16).ok()
        })
        .unwrap_or(0x10000);
    let mut buf = [0u8; 16];
    let result = nix::sys::uio::process_vm_readv(
        Pid::from_raw(pid),
        &mut [std::io::IoSliceMut::new(&mut buf)],
        &[nix::sys::uio::RemoteIoVec {
            base: address,
            len: 16,
        }],
    );
    report.step("process_vm_readv", result.map(drop).map_err(Into::into));
    Ok(())
}

fn ipv4(s: &str) -> Result<[u8; 4], String> {
    s.parse::<Ipv4Addr>()
        .map(|a| a.octets())
        .map_err(|_| format!("bad IPv4 address {s}"))
}

/// Joins multicast groups on interface `--index`: `IP_ADD_MEMBERSHIP` (`ip_mreqn`),
/// `MCAST_JOIN_SOURCE_GROUP` and `IPV6_ADD_MEMBERSHIP`; with `--iface-addr` (the interface's
/// IPv4 address) also the 8-byte `ip_mreq` form (`--legacy-group`), `MCAST_JOIN_GROUP`
/// (`--join-group`) and `IP_ADD_SOURCE_MEMBERSHIP` (`--source-group`). Keeps the memberships
/// for `--hold-ms` (1500 by default) so the host's reports go out.
fn mcast(args: &EscapeArgs, report: &mut EscapeReport) -> Result<(), String> {
    let index: i32 = args.parse_as("index")?;
    let group4 = ipv4(args.get("group4")?)?;
    let ssm_group = ipv4(args.get("ssm-group")?)?;
    let ssm_source = ipv4(args.get("ssm-source")?)?;
    let group6: Ipv6Addr = args.parse_as("group6")?;
    let hold = Duration::from_millis(args.parse_as("hold-ms").unwrap_or(1500));

    let v4 = UdpSocket::bind("0.0.0.0:0").map_err(|e| format!("udp socket: {e}"))?;
    let join4 = |name: libc::c_int, value: &[u8]| {
        sockopt::setsockopt_bytes(v4.as_fd(), libc::IPPROTO_IP, name, value)
    };
    // struct ip_mreqn { in_addr imr_multiaddr, imr_address; int imr_ifindex; }
    let mreqn = [&group4[..], &[0; 4], &index.to_ne_bytes()].concat();
    report.step(
        "IP_ADD_MEMBERSHIP(ip_mreqn)",
        join4(libc::IP_ADD_MEMBERSHIP, &mreqn),
    );
    // struct group_source_req { u32 gsr_interface; (pad 4) sockaddr_storage gsr_group, gsr_source; }
    let mut gsr = vec![0u8; 8 + 2 * 128];
    gsr[0..4].copy_from_slice(&(index as u32).to_ne_bytes());
    for (offset, addr) in [(8, ssm_group), (8 + 128, ssm_source)] {
        gsr[offset..offset + 2].copy_from_slice(&(libc::AF_INET as u16).to_ne_bytes());
        gsr[offset + 4..offset + 8].copy_from_slice(&addr);
    }
    report.step(
        "MCAST_JOIN_SOURCE_GROUP",
        join4(libc::MCAST_JOIN_SOURCE_GROUP, &gsr),
    );
    // The address-based forms, naming the interface by one of its addresses, when given.
    if let Ok(iface_addr) = args.get("iface-addr").and_then(ipv4) {
        let legacy = ipv4(args.get("legacy-group")?)?;
        let any_group = ipv4(args.get("join-group")?)?;
        let source_group = ipv4(args.get("source-group")?)?;
        // struct ip_mreq { in_addr imr_multiaddr, imr_interface; } (8 bytes)
        let mreq = [legacy, iface_addr].concat();
        report.step(
            "IP_ADD_MEMBERSHIP(ip_mreq)",
            join4(libc::IP_ADD_MEMBERSHIP, &mreq),
        );
        // struct group_req { u32 gr_interface; (pad 4) sockaddr_storage gr_group; }
        let mut gr = vec![0u8; 8 + 128];
        gr[0..4].copy_from_slice(&(index as u32).to_ne_bytes());
        gr[8..10].copy_from_slice(&(libc::AF_INET as u16).to_ne_bytes());
        gr[12..16].copy_from_slice(&any_group);
        report.step("MCAST_JOIN_GROUP", join4(libc::MCAST_JOIN_GROUP, &gr));
        // struct ip_mreq_source { in_addr imr_multiaddr, imr_interface, imr_sourceaddr; }
        let mreq_source = [source_group, iface_addr, ssm_source].concat();
        report.step(
            "IP_ADD_SOURCE_MEMBERSHIP",
            join4(libc::IP_ADD_SOURCE_MEMBERSHIP, &mreq_source),
        );
    }
    let v6 = UdpSocket::bind("[::]:0").map_err(|e| format!("udp6 socket: {e}"))?;
    // struct ipv6_mreq { in6_addr ipv6mr_multiaddr; int ipv6mr_interface; }
    let mreq6 = [&group6.octets()[..], &index.to_ne_bytes()].concat();
    report.step(
        "IPV6_ADD_MEMBERSHIP",
        sockopt::setsockopt_bytes(
            v6.as_fd(),
            libc::IPPROTO_IPV6,
            libc::IPV6_ADD_MEMBERSHIP,
            &mreq6,
        ),
    );
    std::thread::sleep(hold);
    Ok(())
}

/// A UDP socket on the wildcard address (unpinned under `--allow-loopback`) asks for ICMP
/// errors (`IP_RECVERR`), says `ready`, and reads its error queue for `--wait-ms`.
fn errqueue(args: &EscapeArgs, report: &mut EscapeReport) -> Result<(), String> {
    use nix::sys::socket::{MsgFlags, SockaddrStorage, recvmsg};
    let port: u16 = args.parse_as("port")?;
    let wait = Duration::from_millis(args.parse_as("wait-ms")?);
    let socket = UdpSocket::bind(("0.0.0.0", port)).map_err(|e| format!("bind: {e}"))?;
    report.step(
        "setsockopt(IP_RECVERR)",
        sockopt::setsockopt(socket.as_fd(), libc::IPPROTO_IP, libc::IP_RECVERR, &1),
    );
    println!("ready");
    let _ = std::io::stdout().flush();
    let deadline = Instant::now() + wait;
    let mut got = None;
    while got.is_none() && Instant::now() < deadline {
        let mut data = [0u8; 256];
        let mut control = nix::cmsg_space!([u8; 256]);
        let mut iov = [std::io::IoSliceMut::new(&mut data)];
        let received = recvmsg::<SockaddrStorage>(
            socket.as_raw_fd(),
            &mut iov,
            Some(&mut control),
            MsgFlags::MSG_ERRQUEUE | MsgFlags::MSG_DONTWAIT,
        )
        .map(|msg| msg.bytes);
        match received {
            Ok(n) => {
                let payload = String::from_utf8_lossy(&data[..n]).into_owned();
                report.step_detail("recvmsg(MSG_ERRQUEUE)", Ok(()), Some(json!(payload)));
                got = Some(payload);
            }
            Err(nix::errno::Errno::EAGAIN) => std::thread::sleep(Duration::from_millis(20)),
            Err(errno) => {
                report.step("recvmsg(MSG_ERRQUEUE)", Err(errno.into()));
                break;
            }
        }
    }
    report.set("errqueue_payload", json!(got));
    Ok(())
}

/// Signals the supervisor (the parent): `pidfd_send_signal` and `kill`, `SIGKILL` both.
fn kill_parent(_args: &EscapeArgs, report: &mut EscapeReport) -> Result<(), String> {
    let ppid = nix::unistd::getppid();
    println!("pid {} cgroup {}", std::process::id(), own_cgroup());
    let _ = std::io::stdout().flush();
    report.set("ppid", json!(ppid.as_raw()));
    match sys::pidfd_open(ppid.as_raw()) {
        Ok(pidfd) => {
            report.step("pidfd_open(ppid)", Ok(()));
            report.step(
                "pidfd_send_signal(SIGKILL)",
                sys::pidfd_send_signal(pidfd.as_fd(), libc::SIGKILL),
            );
        }
        Err(e) => {
            report.step("pidfd_open(ppid)", Err(e));
        }
    }
    let result = nix::sys::signal::kill(ppid, nix::sys::signal::Signal::SIGKILL);
    report.step("kill(ppid, SIGKILL)", result.map_err(Into::into));
    Ok(())
}

/// The interface index a socket is bound to (`SO_BINDTOIFINDEX`), 0 if none, -1 on error.
fn bound_index(socket: &UdpSocket) -> i64 {
    match super::bound_index(socket) {
        Ok(index) => index.map_or(0, |i| i64::from(i.get())),
        Err(_) => -1,
    }
}

/// `setsockopt(SO_BINDTODEVICE, --iface)` through the 32-bit system call entry (`int 0x80`)
/// from this 64-bit process, then reads the binding back with the 64-bit `getsockopt`.
fn int80_bindtodevice(args: &EscapeArgs, report: &mut EscapeReport) -> Result<(), String> {
    let iface = args.get("iface")?;
    let socket = UdpSocket::bind("0.0.0.0:0").map_err(|e| format!("udp socket: {e}"))?;
    report.set("bound_before", json!(bound_index(&socket)));
    println!("calling int 0x80");
    let _ = std::io::stdout().flush();
    report.step(
        "int80 setsockopt(SO_BINDTODEVICE)",
        sys::int80_bind_to_device(socket.as_fd(), iface),
    );
    report.set("bound_after", json!(bound_index(&socket)));
    Ok(())
}

/// A user namespace (uid 0 mapped to 0) with its own mount and cgroup namespaces: mounts
/// cgroup2 (on `/tmp`, in its own mount namespace only), makes `sub` below its cgroup and
/// moves itself there, then connects to `--dst`.
fn nested_cgroup(args: &EscapeArgs, report: &mut EscapeReport) -> Result<(), String> {
    use nix::mount::{MsFlags, mount};
    use nix::sched::{CloneFlags, unshare};
    let dst = args.dst()?;
    report.set("cgroup_before", json!(own_cgroup()));
    let flags = CloneFlags::CLONE_NEWUSER | CloneFlags::CLONE_NEWNS | CloneFlags::CLONE_NEWCGROUP;
    if !report.step(
        "unshare(NEWUSER|NEWNS|NEWCGROUP)",
        unshare(flags).map_err(Into::into),
    ) {
        return Ok(());
    }
    for (file, text) in [
        ("/proc/self/setgroups", "deny"),
        ("/proc/self/uid_map", "0 0 1"),
        ("/proc/self/gid_map", "0 0 1"),
    ] {
        report.step(&format!("write {file}"), std::fs::write(file, text));
    }
    let none: Option<&str> = None;
    let private = mount(none, "/", none, MsFlags::MS_REC | MsFlags::MS_PRIVATE, none);
    report.step("mount(/, MS_PRIVATE)", private.map_err(Into::into));
    // Not over the old cgroup2 mount point: the kernel refuses to stack the same filesystem
    // on the root of its own mount (EBUSY).
    let target = "/tmp";
    let mounted = mount(
        Some("cgroup2"),
        target,
        Some("cgroup2"),
        MsFlags::empty(),
        none,
    );
    if !report.step("mount(cgroup2)", mounted.map_err(Into::into)) {
        return Ok(());
    }
    let sub = format!("{target}/sub");
    if report.step("mkdir(sub)", std::fs::create_dir(&sub)) {
        let result = std::fs::write(
            format!("{sub}/cgroup.procs"),
            std::process::id().to_string(),
        );
        report.step("write(sub/cgroup.procs)", result);
    }
    report.set("cgroup_after", json!(own_cgroup()));
    tcp_connect(report, "connect", dst);
    Ok(())
}

/// Binds a TCP listener to `--port` on the wildcard address.
fn bind_port(args: &EscapeArgs, report: &mut EscapeReport) -> Result<(), String> {
    let port: u16 = args.parse_as("port")?;
    let result = std::net::TcpListener::bind(("0.0.0.0", port)).map(drop);
    report.step("bind", result);
    Ok(())
}

/// `io_uring_setup` with one entry.
fn io_uring(_args: &EscapeArgs, report: &mut EscapeReport) -> Result<(), String> {
    report.step("io_uring_setup", sys::io_uring_setup());
    Ok(())
}

/// `bpf(BPF_MAP_CREATE)` of a one-entry array map.
fn bpf(_args: &EscapeArgs, report: &mut EscapeReport) -> Result<(), String> {
    report.step("bpf(BPF_MAP_CREATE)", sys::bpf_map_create());
    Ok(())
}

/// A process outside any confinement that holds a UDP socket: becomes `uid` (gid the same, no
/// supplementary groups), prints the socket's descriptor number and waits until stdin closes.
/// The demo starts it for the vectors that reach into a process outside.
pub fn hold_socket(uid: u32) -> std::io::Result<()> {
    let (gid, uid) = (Gid::from_raw(uid), Uid::from_raw(uid));
    nix::unistd::setgroups(&[])?;
    nix::unistd::setresgid(gid, gid, gid)?;
    nix::unistd::setresuid(uid, uid, uid)?;
    // Changing uid made the process non-dumpable, which no plain process of that uid is (and
    // which would refuse every ptrace-class access): back to an ordinary process of `uid`.
    nix::sys::prctl::set_dumpable(true)?;
    let socket = UdpSocket::bind("0.0.0.0:0")?;
    println!("{}", socket.as_raw_fd());
    std::io::stdout().flush()?;
    let mut sink = Vec::new();
    std::io::stdin().read_to_end(&mut sink)?;
    drop(socket);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_is_in_enum_order_and_runs_known_attacks() {
        for (i, escape) in Escape::ALL.into_iter().enumerate() {
            assert_eq!(escape as usize, i, "{escape:?}");
            assert_eq!(Escape::from_id(escape.id()), Some(escape));
            assert!(
                ATTACKS
                    .iter()
                    .any(|(name, _)| *name == escape.info().attack),
                "{escape}"
            );
        }
    }

    #[test]
    fn arguments_round_trip() {
        let args = EscapeArgs::default()
            .with("port", 7)
            .with("dst", "10.0.0.1");
        let back = EscapeArgs::parse(args.to_argv()).unwrap();
        assert_eq!(back.dst().unwrap(), "10.0.0.1:7".parse().unwrap());
        assert!(EscapeArgs::parse(["port".to_owned()]).is_err());
    }

    #[test]
    fn answer_names_the_first_refusal() {
        let mut report = EscapeReport::default();
        report.step("a", Ok(()));
        report.step("b", Err(std::io::Error::from_raw_os_error(libc::EPERM)));
        assert_eq!(report.answer(), "EPERM from b");
        assert!(report.ok("a") && !report.ok("b"));
    }
}
