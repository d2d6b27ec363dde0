//! `netlab-escape`: a hostile program for `ifpin exec` tests. Run as uid 0 under `ifpin exec`,
//! it tries one named way of getting traffic out of another interface or out of its
//! confinement, and prints one JSON line saying what the kernel answered to each step:
//!
//! ```text
//! {"attack": NAME, "steps": [{"call": "...", "result": "ok" | "EPERM" | ..., "detail": ...}], ...}
//! ```
//!
//! It counts no frames itself; the test around it does. Some attacks print plain lines first
//! (`pid N`, `ready`) so the test can act while they run; the JSON line is always the last.
//!
//! ```text
//! netlab-escape clone3-cgroup    --dst ADDR --port N
//! netlab-escape write-same       --path FILE              (writes back the current value)
//! netlab-escape open-write       --path FILE              (opens for writing, writes nothing)
//! netlab-escape proc-root-cgroup --pid P --uid U --dst ADDR --port N
//! netlab-escape borrow-fd        --pid P --fd N --uid U --dst ADDR --port N
//! netlab-escape mcast            --index I --group4 G --ssm-group G --ssm-source S --group6 G
//!                                [--iface-addr A --legacy-group G --join-group G --source-group G]
//! netlab-escape errqueue         --port N --wait-ms MS
//! netlab-escape kill-parent
//! netlab-escape int80-bindtodevice --iface NAME
//! netlab-escape nested-cgroup    --dst ADDR --port N
//! netlab-escape bind-port        --port N
//! netlab-escape io-uring
//! netlab-escape bpf
//! ```
//! Exit status 0 whatever the kernel answered (a refusal is an outcome), 2 on bad arguments.

use std::collections::HashMap;
use std::ffi::CString;
use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream, UdpSocket};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

/// `CLONE_INTO_CGROUP` (not in every libc version).
const CLONE_INTO_CGROUP: u64 = 0x2_0000_0000;
/// `SO_BINDTOIFINDEX`.
const SO_BINDTOIFINDEX: libc::c_int = 62;
/// i386 `setsockopt` system call number (`int 0x80`).
const I386_SETSOCKOPT: u32 = 366;
/// How long a TCP connect may take.
const CONNECT_TIMEOUT: Duration = Duration::from_millis(1500);

/// The steps tried so far, and extra fields of the result.
#[derive(Default)]
struct Report {
    steps: Vec<Value>,
    extra: serde_json::Map<String, Value>,
}

impl Report {
    /// Records a call and its outcome.
    fn step(&mut self, call: &str, result: Result<(), i32>) -> bool {
        self.step_detail(call, result, Value::Null)
    }

    /// Records a call, its outcome and a detail (what it returned).
    fn step_detail(&mut self, call: &str, result: Result<(), i32>, detail: Value) -> bool {
        let ok = result.is_ok();
        let mut step = json!({ "call": call, "result": outcome(result) });
        if !detail.is_null() {
            step["detail"] = detail;
        }
        self.steps.push(step);
        ok
    }

    fn set(&mut self, key: &str, value: Value) {
        self.extra.insert(key.to_owned(), value);
    }

    fn print(self, attack: &str) {
        let mut out = json!({ "attack": attack, "steps": self.steps });
        for (k, v) in self.extra {
            out[k] = v;
        }
        println!("{out}");
    }
}

fn outcome(result: Result<(), i32>) -> String {
    match result {
        Ok(()) => "ok".to_owned(),
        Err(errno) => errno_name(errno),
    }
}

fn errno_name(errno: i32) -> String {
    format!("{:?}", nix::errno::Errno::from_raw(errno))
}

fn last_errno() -> i32 {
    std::io::Error::last_os_error().raw_os_error().unwrap_or(0)
}

fn io_errno(e: &std::io::Error) -> i32 {
    e.raw_os_error().unwrap_or(libc::EIO)
}

/// A libc return value: negative means "see errno".
fn check(rc: libc::c_long) -> Result<libc::c_long, i32> {
    if rc < 0 { Err(last_errno()) } else { Ok(rc) }
}

fn cstr(s: &str) -> CString {
    CString::new(s).expect("no NUL in paths")
}

struct Args {
    attack: String,
    named: HashMap<String, String>,
}

impl Args {
    fn parse() -> Result<Args, String> {
        let mut args = std::env::args().skip(1);
        let attack = args
            .next()
            .ok_or("usage: netlab-escape ATTACK [--key value]...")?;
        let mut named = HashMap::new();
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
        Ok(Args { attack, named })
    }

    fn get(&self, key: &str) -> Result<&str, String> {
        self.named
            .get(key)
            .map(String::as_str)
            .ok_or_else(|| format!("{} needs --{key}", self.attack))
    }

    fn parse_as<T: std::str::FromStr>(&self, key: &str) -> Result<T, String> {
        self.get(key)?
            .parse()
            .map_err(|_| format!("--{key}: bad value {:?}", self.get(key).unwrap_or("")))
    }

    fn dst(&self) -> Result<SocketAddr, String> {
        Ok(SocketAddr::new(
            self.parse_as::<IpAddr>("dst")?,
            self.parse_as("port")?,
        ))
    }
}

fn main() -> ExitCode {
    let args = match Args::parse() {
        Ok(args) => args,
        Err(e) => {
            eprintln!("netlab-escape: {e}");
            return ExitCode::from(2);
        }
    };
    let mut report = Report::default();
    let result = match args.attack.as_str() {
        "clone3-cgroup" => clone3_cgroup(&args, &mut report),
        "write-same" => write_same(&args, &mut report),
        "open-write" => open_write(&args, &mut report),
        "proc-root-cgroup" => proc_root_cgroup(&args, &mut report),
        "borrow-fd" => borrow_fd(&args, &mut report),
        "mcast" => mcast(&args, &mut report),
        "errqueue" => errqueue(&args, &mut report),
        "kill-parent" => kill_parent(&mut report),
        "int80-bindtodevice" => int80_bindtodevice(&args, &mut report),
        "nested-cgroup" => nested_cgroup(&args, &mut report),
        "bind-port" => bind_port(&args, &mut report),
        "io-uring" => io_uring(&mut report),
        "bpf" => bpf(&mut report),
        other => Err(format!("unknown attack {other}")),
    };
    match result {
        Ok(()) => {
            report.print(&args.attack);
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("netlab-escape: {e}");
            ExitCode::from(2)
        }
    }
}

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
fn mount_root_holds_me(report: &mut Report) {
    let me = std::process::id().to_string();
    let holds = cgroup2_mount()
        .and_then(|m| std::fs::read_to_string(format!("{m}/cgroup.procs")).ok())
        .map(|procs| procs.lines().any(|l| l == me));
    report.set("cgroup2_mount", json!(cgroup2_mount()));
    report.set("mount_root_holds_self", json!(holds));
}

/// A plain TCP connect to `dst` (routed by the table); reads the responder's label.
fn tcp_connect(report: &mut Report, call: &str, dst: SocketAddr) {
    match TcpStream::connect_timeout(&dst, CONNECT_TIMEOUT) {
        Ok(mut stream) => {
            let _ = stream.set_read_timeout(Some(CONNECT_TIMEOUT));
            let mut buf = [0u8; 64];
            let n = stream.read(&mut buf).unwrap_or(0);
            let label = String::from_utf8_lossy(&buf[..n]).trim().to_owned();
            // Close with a RST: no TIME_WAIT whose late ACKs the host would send on its own.
            let _ = socket2::SockRef::from(&stream).set_linger(Some(Duration::ZERO));
            report.step_detail(call, Ok(()), json!(label));
        }
        Err(e) => {
            report.step(call, Err(io_errno(&e)));
        }
    }
}

/// `clone3(CLONE_INTO_CGROUP)` with the cgroup2 mount's root: the child starts in the root
/// cgroup, checks where it is and connects to `--dst`.
fn clone3_cgroup(args: &Args, report: &mut Report) -> Result<(), String> {
    let dst = args.dst()?;
    report.set("cgroup_before", json!(own_cgroup()));
    mount_root_holds_me(report);
    let Some(mount) = cgroup2_mount() else {
        report.step("find-cgroup2", Err(libc::ENOENT));
        return Ok(());
    };
    let path = cstr(&mount);
    // SAFETY: a valid NUL-terminated path; the returned fd is owned below.
    let fd = unsafe { libc::open(path.as_ptr(), libc::O_RDONLY | libc::O_DIRECTORY) };
    if !report.step("open-cgroup2-root", check(fd.into()).map(drop)) {
        return Ok(());
    }
    // SAFETY: fd was just returned by open and is not owned elsewhere.
    let root = unsafe { OwnedFd::from_raw_fd(fd) };
    let mut pipe = [0 as RawFd; 2];
    // SAFETY: pipe points to two ints.
    if unsafe { libc::pipe2(pipe.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err("pipe2 failed".into());
    }
    // SAFETY: both fds were just created by pipe2.
    let (reader, writer) =
        unsafe { (OwnedFd::from_raw_fd(pipe[0]), OwnedFd::from_raw_fd(pipe[1])) };
    #[repr(C)]
    #[derive(Default)]
    struct CloneArgs {
        flags: u64,
        pidfd: u64,
        child_tid: u64,
        parent_tid: u64,
        exit_signal: u64,
        stack: u64,
        stack_size: u64,
        tls: u64,
        set_tid: u64,
        set_tid_size: u64,
        cgroup: u64,
    }
    let clone_args = CloneArgs {
        flags: CLONE_INTO_CGROUP,
        exit_signal: libc::SIGCHLD as u64,
        cgroup: root.as_raw_fd() as u64,
        ..CloneArgs::default()
    };
    // SAFETY: clone3 without a new stack behaves like fork: the child continues on a copy of
    // this (single-threaded) process and leaves with _exit below, never returning here.
    let pid = unsafe {
        libc::syscall(
            libc::SYS_clone3,
            &clone_args as *const CloneArgs,
            std::mem::size_of::<CloneArgs>(),
        )
    };
    if pid == 0 {
        // The child: where am I, and can I reach the control address?
        let mut child = Report::default();
        child.set("cgroup", json!(own_cgroup()));
        tcp_connect(&mut child, "child-connect", dst);
        let out = json!({ "steps": child.steps, "cgroup": child.extra["cgroup"] }).to_string();
        let mut w = std::fs::File::from(writer);
        let _ = w.write_all(out.as_bytes());
        drop(w);
        // SAFETY: leaves the child at once, without running the parent's exit handlers.
        unsafe { libc::_exit(0) };
    }
    drop(writer);
    if !report.step("clone3", check(pid).map(drop)) {
        return Ok(());
    }
    let mut text = String::new();
    let _ = std::fs::File::from(reader).read_to_string(&mut text);
    let mut status = 0;
    // SAFETY: waits for the child just created.
    unsafe { libc::waitpid(pid as libc::pid_t, &mut status, 0) };
    let child: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
    if let Some(steps) = child["steps"].as_array() {
        report.steps.extend(steps.iter().cloned());
    }
    report.set("child_cgroup", child["cgroup"].clone());
    Ok(())
}

/// Reads FILE and writes the same value back (changes nothing, proves write access).
fn write_same(args: &Args, report: &mut Report) -> Result<(), String> {
    let path = args.get("path")?;
    let current = match std::fs::read(path) {
        Ok(v) => {
            report.step_detail("read", Ok(()), json!(String::from_utf8_lossy(&v).trim()));
            v
        }
        Err(e) => {
            report.step("read", Err(io_errno(&e)));
            return Ok(());
        }
    };
    match std::fs::OpenOptions::new().write(true).open(path) {
        Ok(mut f) => {
            report.step("open-write", Ok(()));
            report.step("write", f.write_all(&current).map_err(|e| io_errno(&e)));
        }
        Err(e) => {
            report.step("open-write", Err(io_errno(&e)));
        }
    }
    Ok(())
}

/// Opens FILE for writing and closes it without writing.
fn open_write(args: &Args, report: &mut Report) -> Result<(), String> {
    let path = args.get("path")?;
    let result = std::fs::OpenOptions::new()
        .write(true)
        .open(path)
        .map(drop)
        .map_err(|e| io_errno(&e));
    report.step("open-write", result);
    Ok(())
}

/// The current fsuid (setfsuid with an invalid id changes nothing and returns it).
fn fsuid() -> u32 {
    // SAFETY: setfsuid(-1) only reads the current fsuid.
    unsafe { libc::setfsuid(u32::MAX) as u32 }
}

/// The current fsgid.
fn fsgid() -> u32 {
    // SAFETY: setfsgid(-1) only reads the current fsgid.
    unsafe { libc::setfsgid(u32::MAX) as u32 }
}

/// setfsuid and setfsgid to `id`, recorded: the calls have no error return, so the result
/// is read back.
fn set_fs_ids(report: &mut Report, id: u32) -> bool {
    // SAFETY: changes this thread's filesystem gid and uid only.
    unsafe {
        libc::setfsgid(id);
        libc::setfsuid(id);
    }
    let now = (fsuid(), fsgid());
    report.step_detail(
        &format!("setfsuid+setfsgid({id})"),
        if now == (id, id) {
            Ok(())
        } else {
            Err(libc::EPERM)
        },
        json!([now.0, now.1]),
    )
}

/// Takes the filesystem uid and gid of a process outside (`--pid`, running as `--uid`, gid the
/// same), which makes its `/proc/PID/root` reachable without `CAP_SYS_PTRACE`; through it, the outside's cgroup2 mount; writes its own pid
/// into the root cgroup and connects to `--dst` from there.
fn proc_root_cgroup(args: &Args, report: &mut Report) -> Result<(), String> {
    let pid: u32 = args.parse_as("pid")?;
    let uid: u32 = args.parse_as("uid")?;
    let dst = args.dst()?;
    let mount = cgroup2_mount().unwrap_or_else(|| "/sys/fs/cgroup".into());
    report.set("cgroup_before", json!(own_cgroup()));
    set_fs_ids(report, uid);
    let root_path = cstr(&format!("/proc/{pid}/root"));
    // SAFETY: a valid path; the fd is owned below.
    let fd = unsafe {
        libc::open(
            root_path.as_ptr(),
            libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC,
        )
    };
    let opened = report.step("open(/proc/PID/root)", check(fd.into()).map(drop));
    // Back to fsuid 0: the filesystem capabilities come back with it (when still held).
    set_fs_ids(report, 0);
    if opened {
        // SAFETY: fd was just returned by open.
        let root = unsafe { OwnedFd::from_raw_fd(fd) };
        let procs = cstr(&format!("{}/cgroup.procs", mount.trim_start_matches('/')));
        // SAFETY: a valid relative path under a directory fd we own.
        let pfd = unsafe { libc::openat(root.as_raw_fd(), procs.as_ptr(), libc::O_WRONLY) };
        if report.step("openat(root, cgroup.procs)", check(pfd.into()).map(drop)) {
            // SAFETY: pfd was just returned by openat.
            let mut file = std::fs::File::from(unsafe { OwnedFd::from_raw_fd(pfd) });
            let result = file
                .write_all(std::process::id().to_string().as_bytes())
                .map_err(|e| io_errno(&e));
            report.step("write(cgroup.procs)", result);
        }
    }
    report.set("cgroup_after", json!(own_cgroup()));
    tcp_connect(report, "connect", dst);
    Ok(())
}

/// Becomes `--uid`, takes socket `--fd` of the process `--pid` outside with `pidfd_getfd`,
/// and sends through it; also tries `PTRACE_ATTACH` and `process_vm_readv`.
fn borrow_fd(args: &Args, report: &mut Report) -> Result<(), String> {
    let pid: i32 = args.parse_as("pid")?;
    let target_fd: i32 = args.parse_as("fd")?;
    let uid: u32 = args.parse_as("uid")?;
    let dst = args.dst()?;
    // SAFETY: plain credential change of this process.
    let rc = unsafe { libc::setresgid(uid, uid, uid) };
    report.step("setresgid", check(rc.into()).map(drop));
    // SAFETY: plain credential change of this process.
    let rc = unsafe { libc::setresuid(uid, uid, uid) };
    report.step("setresuid", check(rc.into()).map(drop));

    // SAFETY: pidfd_open takes a pid and flags; the fd is owned below.
    let pidfd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if report.step("pidfd_open", check(pidfd).map(drop)) {
        // SAFETY: pidfd was just returned by pidfd_open.
        let pidfd = unsafe { OwnedFd::from_raw_fd(pidfd as RawFd) };
        // SAFETY: pidfd_getfd takes a pidfd, a target fd and flags; the fd is owned below.
        let fd = unsafe { libc::syscall(libc::SYS_pidfd_getfd, pidfd.as_raw_fd(), target_fd, 0) };
        if report.step("pidfd_getfd", check(fd).map(drop)) {
            // SAFETY: fd was just returned by pidfd_getfd; it is a UDP socket (the test says so).
            let socket = unsafe { UdpSocket::from_raw_fd(fd as RawFd) };
            for _ in 0..3 {
                let result = socket
                    .send_to(b"netlab-escape borrowed socket", dst)
                    .map(drop)
                    .map_err(|e| io_errno(&e));
                report.step("sendto(borrowed)", result);
            }
        }
    }

    // SAFETY: PTRACE_ATTACH on a pid; detached below if it worked.
    let rc = unsafe {
        libc::ptrace(
            libc::PTRACE_ATTACH,
            pid,
            std::ptr::null_mut::<libc::c_void>(),
            std::ptr::null_mut::<libc::c_void>(),
        )
    };
    if report.step("ptrace(PTRACE_ATTACH)", check(rc).map(drop)) {
        let mut status = 0;
        // SAFETY: waits for the attach stop of the tracee, then lets it go.
        unsafe {
            libc::waitpid(pid, &mut status, libc::__WALL);
            libc::ptrace(
                libc::PTRACE_DETACH,
                pid,
                std::ptr::null_mut::<libc::c_void>(),
                std::ptr::null_mut::<libc::c_void>(),
            );
        }
    }

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
    let local = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    let remote = libc::iovec {
        iov_base: address as *mut libc::c_void,
        iov_len: buf.len(),
    };
    // SAFETY: reads at most 16 bytes into buf; the remote side is checked by the kernel.
    let rc = unsafe { libc::process_vm_readv(pid, &local, 1, &remote, 1, 0) };
    report.step("process_vm_readv", check(rc as libc::c_long).map(drop));
    Ok(())
}

fn ipv4(s: &str) -> Result<[u8; 4], String> {
    s.parse::<std::net::Ipv4Addr>()
        .map(|a| a.octets())
        .map_err(|_| format!("bad IPv4 address {s}"))
}

fn setsockopt_raw(fd: RawFd, level: i32, name: i32, value: &[u8]) -> Result<(), i32> {
    // SAFETY: value is a valid buffer of the given length for the duration of the call.
    let rc = unsafe {
        libc::setsockopt(
            fd,
            level,
            name,
            value.as_ptr().cast(),
            value.len() as libc::socklen_t,
        )
    };
    check(rc.into()).map(drop)
}

/// Joins multicast groups on interface `--index`: `IP_ADD_MEMBERSHIP` (`ip_mreqn`),
/// `MCAST_JOIN_SOURCE_GROUP` and `IPV6_ADD_MEMBERSHIP`; with `--iface-addr` (the interface's
/// IPv4 address) also the 8-byte `ip_mreq` form (`--legacy-group`), `MCAST_JOIN_GROUP`
/// (`--join-group`) and `IP_ADD_SOURCE_MEMBERSHIP` (`--source-group`). Keeps the memberships
/// long enough for the host's reports to go out.
fn mcast(args: &Args, report: &mut Report) -> Result<(), String> {
    let index: i32 = args.parse_as("index")?;
    let group4 = ipv4(args.get("group4")?)?;
    let ssm_group = ipv4(args.get("ssm-group")?)?;
    let ssm_source = ipv4(args.get("ssm-source")?)?;
    let group6: std::net::Ipv6Addr = args.parse_as("group6")?;
    let hold = Duration::from_millis(args.parse_as("hold-ms").unwrap_or(1500));

    let v4 = UdpSocket::bind("0.0.0.0:0").map_err(|e| format!("udp socket: {e}"))?;
    // struct ip_mreqn { in_addr imr_multiaddr, imr_address; int imr_ifindex; }
    let mut mreqn = Vec::new();
    mreqn.extend_from_slice(&group4);
    mreqn.extend_from_slice(&[0; 4]);
    mreqn.extend_from_slice(&index.to_ne_bytes());
    report.step(
        "IP_ADD_MEMBERSHIP(ip_mreqn)",
        setsockopt_raw(
            v4.as_raw_fd(),
            libc::IPPROTO_IP,
            libc::IP_ADD_MEMBERSHIP,
            &mreqn,
        ),
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
        setsockopt_raw(
            v4.as_raw_fd(),
            libc::IPPROTO_IP,
            libc::MCAST_JOIN_SOURCE_GROUP,
            &gsr,
        ),
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
            setsockopt_raw(
                v4.as_raw_fd(),
                libc::IPPROTO_IP,
                libc::IP_ADD_MEMBERSHIP,
                &mreq,
            ),
        );
        // struct group_req { u32 gr_interface; (pad 4) sockaddr_storage gr_group; }
        let mut gr = vec![0u8; 8 + 128];
        gr[0..4].copy_from_slice(&(index as u32).to_ne_bytes());
        gr[8..10].copy_from_slice(&(libc::AF_INET as u16).to_ne_bytes());
        gr[12..16].copy_from_slice(&any_group);
        report.step(
            "MCAST_JOIN_GROUP",
            setsockopt_raw(
                v4.as_raw_fd(),
                libc::IPPROTO_IP,
                libc::MCAST_JOIN_GROUP,
                &gr,
            ),
        );
        // struct ip_mreq_source { in_addr imr_multiaddr, imr_interface, imr_sourceaddr; }
        let mreq_source = [source_group, iface_addr, ssm_source].concat();
        report.step(
            "IP_ADD_SOURCE_MEMBERSHIP",
            setsockopt_raw(
                v4.as_raw_fd(),
                libc::IPPROTO_IP,
                libc::IP_ADD_SOURCE_MEMBERSHIP,
                &mreq_source,
            ),
        );
    }
    let v6 = UdpSocket::bind("[::]:0").map_err(|e| format!("udp6 socket: {e}"))?;
    // struct ipv6_mreq { in6_addr ipv6mr_multiaddr; int ipv6mr_interface; }
    let mut mreq6 = group6.octets().to_vec();
    mreq6.extend_from_slice(&index.to_ne_bytes());
    report.step(
        "IPV6_ADD_MEMBERSHIP",
        setsockopt_raw(
            v6.as_raw_fd(),
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
fn errqueue(args: &Args, report: &mut Report) -> Result<(), String> {
    let port: u16 = args.parse_as("port")?;
    let wait = Duration::from_millis(args.parse_as("wait-ms")?);
    let socket = UdpSocket::bind(("0.0.0.0", port)).map_err(|e| format!("bind: {e}"))?;
    let fd = socket.as_raw_fd();
    report.step(
        "setsockopt(IP_RECVERR)",
        setsockopt_raw(fd, libc::IPPROTO_IP, libc::IP_RECVERR, &1i32.to_ne_bytes()),
    );
    println!("ready");
    let _ = std::io::stdout().flush();
    let deadline = Instant::now() + wait;
    let mut got = None;
    while got.is_none() && Instant::now() < deadline {
        let mut pfd = libc::pollfd {
            fd,
            events: 0,
            revents: 0,
        };
        // SAFETY: one valid pollfd.
        unsafe { libc::poll(&mut pfd, 1, 100) };
        if pfd.revents & libc::POLLERR == 0 {
            continue;
        }
        let mut data = [0u8; 256];
        let mut control = [0u8; 256];
        let mut iov = libc::iovec {
            iov_base: data.as_mut_ptr().cast(),
            iov_len: data.len(),
        };
        // SAFETY: msghdr is plain data; zero is a valid initial value.
        let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = control.as_mut_ptr().cast();
        msg.msg_controllen = control.len();
        // SAFETY: msg points at live buffers of the stated sizes.
        let n = unsafe { libc::recvmsg(fd, &mut msg, libc::MSG_ERRQUEUE) };
        match check(n as libc::c_long) {
            Ok(n) => {
                let payload = String::from_utf8_lossy(&data[..n as usize]).into_owned();
                report.step_detail("recvmsg(MSG_ERRQUEUE)", Ok(()), json!(payload));
                got = Some(payload);
            }
            Err(errno) => {
                report.step("recvmsg(MSG_ERRQUEUE)", Err(errno));
                break;
            }
        }
    }
    report.set("errqueue_payload", json!(got));
    Ok(())
}

/// Signals the supervisor (the parent): `pidfd_send_signal` and `kill`, `SIGKILL` both.
fn kill_parent(report: &mut Report) -> Result<(), String> {
    // SAFETY: getppid cannot fail.
    let ppid = unsafe { libc::getppid() };
    println!("pid {} cgroup {}", std::process::id(), own_cgroup());
    let _ = std::io::stdout().flush();
    report.set("ppid", json!(ppid));
    // SAFETY: pidfd_open takes a pid and flags; the fd is owned below.
    let pidfd = unsafe { libc::syscall(libc::SYS_pidfd_open, ppid, 0) };
    if report.step("pidfd_open(ppid)", check(pidfd).map(drop)) {
        // SAFETY: pidfd was just returned by pidfd_open.
        let pidfd = unsafe { OwnedFd::from_raw_fd(pidfd as RawFd) };
        // SAFETY: sends SIGKILL through the pidfd, no siginfo.
        let rc = unsafe {
            libc::syscall(
                libc::SYS_pidfd_send_signal,
                pidfd.as_raw_fd(),
                libc::SIGKILL,
                std::ptr::null::<libc::siginfo_t>(),
                0,
            )
        };
        report.step("pidfd_send_signal(SIGKILL)", check(rc).map(drop));
    }
    // SAFETY: kill takes a pid and a signal.
    let rc = unsafe { libc::kill(ppid, libc::SIGKILL) };
    report.step("kill(ppid, SIGKILL)", check(rc.into()).map(drop));
    Ok(())
}

/// `setsockopt(SO_BINDTODEVICE, --iface)` through the 32-bit system call entry (`int 0x80`)
/// from this 64-bit process, then reads the binding back with the 64-bit `getsockopt`.
fn int80_bindtodevice(args: &Args, report: &mut Report) -> Result<(), String> {
    let iface = args.get("iface")?;
    let socket = UdpSocket::bind("0.0.0.0:0").map_err(|e| format!("udp socket: {e}"))?;
    report.set("bound_before", json!(bound_index(socket.as_raw_fd())));
    // SAFETY: an anonymous private page below 4 GiB (MAP_32BIT), unmapped below.
    let page = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            4096,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_32BIT,
            -1,
            0,
        )
    };
    if page == libc::MAP_FAILED {
        return Err("mmap(MAP_32BIT) failed".into());
    }
    let name = iface.as_bytes();
    // SAFETY: the page is 4096 writable bytes; an interface name is at most 15.
    unsafe {
        std::ptr::copy_nonoverlapping(name.as_ptr(), page.cast::<u8>(), name.len().min(15));
    }
    let ptr = page as u64;
    if ptr > u64::from(u32::MAX) {
        return Err("MAP_32BIT page above 4 GiB".into());
    }
    println!("calling int 0x80");
    let _ = std::io::stdout().flush();
    let ret: i32;
    // SAFETY: i386 setsockopt(fd, SOL_SOCKET, SO_BINDTODEVICE, ptr, len) through int 0x80:
    // every argument fits in 32 bits (the pointer is below 4 GiB). rbx is reserved by the
    // compiler, so it is swapped in and out around the call; r8-r11 are declared clobbered.
    unsafe {
        core::arch::asm!(
            "xchg {b}, rbx",
            "int 0x80",
            "xchg {b}, rbx",
            b = inout(reg) u64::from(socket.as_raw_fd() as u32) => _,
            inlateout("eax") I386_SETSOCKOPT => ret,
            in("ecx") libc::SOL_SOCKET as u32,
            in("edx") libc::SO_BINDTODEVICE as u32,
            in("esi") ptr as u32,
            in("edi") name.len() as u32,
            out("r8") _, out("r9") _, out("r10") _, out("r11") _,
        );
    }
    report.step(
        "int80 setsockopt(SO_BINDTODEVICE)",
        if ret < 0 { Err(-ret) } else { Ok(()) },
    );
    report.set("bound_after", json!(bound_index(socket.as_raw_fd())));
    // SAFETY: the page mapped above, not used any more.
    unsafe { libc::munmap(page, 4096) };
    Ok(())
}

/// The interface index a socket is bound to (`SO_BINDTOIFINDEX`), 0 if none.
fn bound_index(fd: RawFd) -> i64 {
    let mut value: libc::c_int = -1;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: value and len are valid for the call.
    let rc = unsafe {
        libc::getsockopt(
            fd,
            libc::SOL_SOCKET,
            SO_BINDTOIFINDEX,
            (&mut value as *mut libc::c_int).cast(),
            &mut len,
        )
    };
    if rc == 0 { i64::from(value) } else { -1 }
}

/// A user namespace (uid 0 mapped to 0) with its own mount and cgroup namespaces: mounts
/// cgroup2 (on `/tmp`, in its own mount namespace only), makes `sub` below its cgroup and
/// moves itself there.
fn nested_cgroup(args: &Args, report: &mut Report) -> Result<(), String> {
    let dst = args.dst()?;
    report.set("cgroup_before", json!(own_cgroup()));
    // SAFETY: unshare with namespace flags only affects this (single-threaded) process.
    let rc =
        unsafe { libc::unshare(libc::CLONE_NEWUSER | libc::CLONE_NEWNS | libc::CLONE_NEWCGROUP) };
    if !report.step(
        "unshare(NEWUSER|NEWNS|NEWCGROUP)",
        check(rc.into()).map(drop),
    ) {
        return Ok(());
    }
    for (file, text) in [
        ("/proc/self/setgroups", "deny"),
        ("/proc/self/uid_map", "0 0 1"),
        ("/proc/self/gid_map", "0 0 1"),
    ] {
        let result = std::fs::write(file, text).map_err(|e| io_errno(&e));
        report.step(&format!("write {file}"), result);
    }
    let root = cstr("/");
    // SAFETY: valid paths; makes every mount of this new namespace private.
    let rc = unsafe {
        libc::mount(
            std::ptr::null(),
            root.as_ptr(),
            std::ptr::null(),
            libc::MS_REC | libc::MS_PRIVATE,
            std::ptr::null(),
        )
    };
    report.step("mount(/, MS_PRIVATE)", check(rc.into()).map(drop));
    // Not over the old cgroup2 mount point: the kernel refuses to stack the same filesystem
    // on the root of its own mount (EBUSY).
    let target = "/tmp".to_owned();
    let (fs, dir) = (cstr("cgroup2"), cstr(&target));
    // SAFETY: valid paths; mounts this cgroup namespace's view over the old mount point.
    let rc = unsafe { libc::mount(fs.as_ptr(), dir.as_ptr(), fs.as_ptr(), 0, std::ptr::null()) };
    if !report.step("mount(cgroup2)", check(rc.into()).map(drop)) {
        return Ok(());
    }
    let sub = format!("{target}/sub");
    let result = std::fs::create_dir(&sub).map_err(|e| io_errno(&e));
    if report.step("mkdir(sub)", result) {
        let result = std::fs::write(
            format!("{sub}/cgroup.procs"),
            std::process::id().to_string(),
        )
        .map_err(|e| io_errno(&e));
        report.step("write(sub/cgroup.procs)", result);
    }
    report.set("cgroup_after", json!(own_cgroup()));
    tcp_connect(report, "connect", dst);
    Ok(())
}

/// Binds a TCP listener to `--port` on the wildcard address.
fn bind_port(args: &Args, report: &mut Report) -> Result<(), String> {
    let port: u16 = args.parse_as("port")?;
    let result = std::net::TcpListener::bind(("0.0.0.0", port))
        .map(drop)
        .map_err(|e| io_errno(&e));
    report.step("bind", result);
    Ok(())
}

/// `io_uring_setup` with one entry.
fn io_uring(report: &mut Report) -> Result<(), String> {
    // struct io_uring_params is 120 bytes; all zero asks for the defaults.
    let mut params = [0u8; 120];
    // SAFETY: params is a writable buffer of the size the kernel expects.
    let fd = unsafe { libc::syscall(libc::SYS_io_uring_setup, 1u32, params.as_mut_ptr()) };
    if report.step("io_uring_setup", check(fd).map(drop)) {
        // SAFETY: fd was just returned by io_uring_setup.
        drop(unsafe { OwnedFd::from_raw_fd(fd as RawFd) });
    }
    Ok(())
}

/// `bpf(BPF_MAP_CREATE)` of a one-entry array map.
fn bpf(report: &mut Report) -> Result<(), String> {
    // union bpf_attr, map-create part: map_type, key_size, value_size, max_entries (u32 each).
    let mut attr = [0u8; 128];
    for (i, v) in [2u32 /* BPF_MAP_TYPE_ARRAY */, 4, 4, 1].iter().enumerate() {
        attr[i * 4..i * 4 + 4].copy_from_slice(&v.to_ne_bytes());
    }
    // SAFETY: attr is a buffer of the stated size.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            0, /* BPF_MAP_CREATE */
            attr.as_mut_ptr(),
            attr.len() as u32,
        )
    };
    if report.step("bpf(BPF_MAP_CREATE)", check(fd).map(drop)) {
        // SAFETY: fd was just returned by bpf.
        drop(unsafe { OwnedFd::from_raw_fd(fd as RawFd) });
    }
    Ok(())
}
