//! The confinement engine: a cgroup v2 with BPF programs that hold every socket of the
//! processes inside to one interface.
//!
//! A [`Confinement`] owns a fresh cgroup (`<cgroup2>/ifpin/run-<pid>-<start>-<n>`), the maps
//! its programs share with user space, and the programs it attached. Processes moved in (and
//! all their children, static binaries included) are held at the chosen [`Level`]:
//!
//! | level | programs (without `allow_loopback`) |
//! |---|---|
//! | pinned | `sock_create` sets `bound_dev_if` on every AF_INET/AF_INET6 socket |
//! | enforced | + `cgroup_skb` egress and ingress filters passing only the interface, + `setsockopt` guard refusing multicast memberships on other interfaces |
//! | sealed | + the guard also refuses unpinning and re-steering options and error queues of unpinned sockets, + `bind6` guard refusing `fe80::/10` binds |
//!
//! With `allow_loopback`, sockets are not pinned at creation (that breaks loopback, and
//! unpinning from BPF needs `CAP_NET_RAW` of the task): `connect4|6`, `sendmsg4|6` and
//! `bind4|6` programs pin them by name when they first go to a non-local address, and the
//! egress filter passes `lo` as well. The holes that remain are listed on
//! [`ConfineOptions::allow_loopback`].
//!
//! The allowed interface lives in a map: [`Confinement::set_interface`] changes it, or closes
//! the confinement (nothing passes but `lo` when allowed), without reloading anything. This
//! is what a link watch calls when the interface disappears or its index changes hands.
//!
//! Fail closed: [`Confinement::create`] undoes everything on any failure. Programs are
//! attached to the cgroup (not through links), so they stay attached if this process dies;
//! dropping a `Confinement` whose cgroup still has processes leaves everything in place, and
//! [`Confinement::cleanup_stale`] removes what dead owners left behind.
//!
//! Capabilities are not dropped here, and no process is started here: `ifpin exec` does both.
//!
//! What the programs cannot hold, and who must close it (each measured in this crate's tests):
//! - **Sockets created outside the cgroup** (inherited descriptors, `SCM_RIGHTS`): every
//!   cgroup BPF hook runs for the cgroup that *created* the socket, so such a socket is held
//!   by none of them, even at sealed. The process starter must not pass any in.
//! - **Leaving the cgroup**: a root process inside can write its pid into an ancestor's
//!   `cgroup.procs` (a file-permission check, no capability needed), or start a child in
//!   another cgroup with `clone3(CLONE_INTO_CGROUP)`. `ifpin exec --level sealed` closes
//!   both (see [`crate::exec::seal`]).
//! - **AF_PACKET and raw sockets** with `CAP_NET_RAW`: packet sockets bypass IP entirely;
//!   drop the capability (sealed).
//! - **Other processes** the program asks to send for it (a local resolver, a proxy) are
//!   outside the confinement by definition.
//! - **Interface changes** are followed only as fast as the caller calls
//!   [`Confinement::set_interface`] after a link event.

use std::fs;
use std::net::IpAddr;
use std::os::fd::{AsFd, BorrowedFd};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};

use serde::Serialize;

use crate::bpf::programs::{
    self, AddrHook, Config, Counter, Direction, GuardOptions, MapFds, PinOptions,
};
use crate::bpf::{LoadError, Map, Program};
use crate::cgroup::{self, Cgroup, CgroupError};
use crate::sys::bpf::{self as sys, AttachType, ProgType, SyscallError};
use crate::{IfIndex, IfName, Interface, InterfaceChange, InterfaceError, Level};

/// The directory under the cgroup2 mount that holds every confinement.
pub const PARENT_DIR: &str = "ifpin";

/// What to confine to, and how strongly.
#[derive(Clone, Debug)]
pub struct ConfineOptions {
    /// The one interface traffic may use.
    pub interface: Interface,
    /// The guarantee level.
    pub level: Level,
    /// Keep loopback (127.0.0.0/8, `::1`, and the host's own addresses) working.
    ///
    /// Without it every AF_INET/AF_INET6 socket is bound at creation, and a socket bound to
    /// an interface cannot reach 127.0.0.1 (the kernel looks for it on that interface).
    ///
    /// With it, sockets are pinned lazily. Holes that remain:
    /// - the datagram whose `sendto` pins a UDP socket was routed before the pin: at
    ///   `pinned` it is refused (`EPERM`); at `enforced` and above the egress filter drops it
    ///   (`EPERM`) unless its route already used the interface;
    /// - ping and raw sockets, and listeners that never `bind()` or bind the wildcard
    ///   address, run no pinning hook: only the egress/ingress filters (enforced and above)
    ///   hold them, so at `pinned` such a listener accepts connections from any interface;
    /// - `bind()` to any `fe80::/10` address is refused: the hook cannot see the scope id;
    /// - the host's own addresses are read when the confinement is made and on
    ///   [`Confinement::set_interface`]; a connect to an address added later is pinned.
    pub allow_loopback: bool,
}

/// What the programs blocked or refused so far.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Counters {
    /// Packets the egress filter dropped.
    pub egress_blocked: u64,
    /// Packets the ingress filter dropped.
    pub ingress_blocked: u64,
    /// `setsockopt` calls the guard refused.
    pub setsockopt_refused: u64,
    /// `connect` calls refused (loopback mode: the socket could not be pinned, or closed).
    pub connect_refused: u64,
    /// `sendto`/`sendmsg` calls refused (loopback mode).
    pub sendmsg_refused: u64,
    /// `bind` calls refused (link-local addresses, or the socket could not be pinned).
    pub bind_refused: u64,
    /// AF_INET/AF_INET6 `socket()` calls refused while closed (without loopback mode).
    pub socket_refused: u64,
}

/// What [`Confinement::cleanup_stale`] did.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct StaleCleanup {
    /// Stale cgroups whose programs were detached and which were removed.
    pub removed: Vec<PathBuf>,
    /// Stale cgroups left alone because processes are still inside (they stay confined).
    pub left_populated: Vec<PathBuf>,
    /// Stale cgroups that could not be removed, and why (they stay, programs attached).
    pub failed: Vec<StaleFailure>,
}

/// A stale cgroup [`Confinement::cleanup_stale`] could not remove.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct StaleFailure {
    /// The cgroup.
    pub path: PathBuf,
    /// What failed.
    pub reason: String,
}

/// Errors of the confinement engine.
#[derive(Debug, thiserror::Error)]
pub enum ConfineError {
    /// The process lacks capabilities the kernel requires.
    #[error(
        "missing privilege: {} (cgroup BPF needs CAP_BPF or CAP_SYS_ADMIN, and CAP_NET_ADMIN); run as root",
        missing.join(", ")
    )]
    NoPrivilege {
        /// The capabilities missing from the effective set.
        missing: Vec<&'static str>,
    },
    /// No cgroup v2 hierarchy.
    #[error(
        "no cgroup v2 hierarchy is mounted; ifpin needs cgroup v2 (mount one, e.g. `mount -t cgroup2 none /sys/fs/cgroup`)"
    )]
    NoCgroup2,
    /// The kernel does not support a program type or attach point.
    #[error(
        "this kernel does not support {what} (needs cgroup BPF, CONFIG_CGROUP_BPF, Linux 5.8 or newer)"
    )]
    KernelUnsupported {
        /// The program or attach point.
        what: String,
        /// The failure.
        #[source]
        source: SyscallError,
    },
    /// The verifier rejected a program.
    #[error("the kernel's BPF verifier rejected program {program}; its log ends with:\n{log}")]
    VerifierRejected {
        /// The program's name.
        program: &'static str,
        /// The end of the verifier log.
        log: String,
    },
    /// The interface is not what it was when resolved.
    #[error("interface {interface} is gone or changed ({change:?}); resolve it again")]
    InterfaceGone {
        /// The interface as resolved.
        interface: String,
        /// What it is now.
        change: InterfaceChange,
    },
    /// An interface name or lookup problem.
    #[error(transparent)]
    Interface(#[from] InterfaceError),
    /// A cgroup operation failed.
    #[error(transparent)]
    Cgroup(CgroupError),
    /// Another BPF call failed.
    #[error("{what}")]
    Bpf {
        /// What was being done.
        what: String,
        /// The failed call.
        #[source]
        source: SyscallError,
    },
    /// The cgroup still has processes, so it cannot be removed.
    #[error(
        "cgroup {path} still has processes; it stays confined (run the cleanup again once they exit)"
    )]
    StillPopulated {
        /// The cgroup.
        path: PathBuf,
    },
}

impl From<CgroupError> for ConfineError {
    fn from(err: CgroupError) -> Self {
        match err {
            CgroupError::NotMounted => ConfineError::NoCgroup2,
            other => ConfineError::Cgroup(other),
        }
    }
}

impl ConfineError {
    fn from_syscall(what: impl Into<String>, source: SyscallError) -> ConfineError {
        let what = what.into();
        match source.errno() {
            Some(libc::EPERM) | Some(libc::EACCES) => ConfineError::NoPrivilege {
                missing: missing_capabilities(),
            },
            Some(libc::EINVAL) | Some(libc::EOPNOTSUPP) => {
                ConfineError::KernelUnsupported { what, source }
            }
            _ => ConfineError::Bpf { what, source },
        }
    }

    fn from_load(err: LoadError) -> ConfineError {
        match err {
            LoadError::Verifier { program, log, .. } => {
                ConfineError::VerifierRejected { program, log }
            }
            LoadError::Syscall { program, source } => {
                ConfineError::from_syscall(format!("loading BPF program {program}"), source)
            }
            LoadError::Assemble { program, source } => ConfineError::VerifierRejected {
                program,
                log: format!("the program does not assemble: {source}"),
            },
        }
    }
}

/// The capabilities cgroup BPF needs that the calling thread's effective set lacks.
/// Empty when the set cannot be read.
pub fn missing_capabilities() -> Vec<&'static str> {
    use caps::{CapSet, Capability};
    let Ok(effective) = caps::read(None, CapSet::Effective) else {
        return Vec::new();
    };
    let mut missing = Vec::new();
    if !effective.contains(&Capability::CAP_BPF) && !effective.contains(&Capability::CAP_SYS_ADMIN)
    {
        missing.push("CAP_BPF");
    }
    if !effective.contains(&Capability::CAP_NET_ADMIN) {
        missing.push("CAP_NET_ADMIN");
    }
    missing
}

/// A confined cgroup: see the module docs.
#[derive(Debug)]
pub struct Confinement {
    /// `None` once torn down.
    cgroup: Option<Cgroup>,
    attached: Vec<Program>,
    config: Map,
    counters: Map,
    locals: Option<Map>,
    level: Level,
    allow_loopback: bool,
}

static SEQUENCE: AtomicU32 = AtomicU32::new(0);

impl Confinement {
    /// Makes a fresh cgroup, loads and attaches the programs of `opts.level`.
    ///
    /// Call it in the network namespace of the interface (the one the confined processes
    /// create their sockets in): the interface is checked, and the host's own addresses are
    /// read, in the calling thread's namespace. Needs `CAP_BPF` (or `CAP_SYS_ADMIN`) and
    /// `CAP_NET_ADMIN`, cgroup v2, and Linux 5.8 or newer (5.12 for loopback mode, whose
    /// `sendmsg` hooks call `bpf_setsockopt`).
    ///
    /// Fails closed: on any error, whatever was attached is detached and the cgroup removed.
    pub fn create(opts: ConfineOptions) -> Result<Confinement, ConfineError> {
        let missing = missing_capabilities();
        if !missing.is_empty() {
            return Err(ConfineError::NoPrivilege { missing });
        }
        match opts.interface.check()? {
            InterfaceChange::Same => {}
            change => {
                return Err(ConfineError::InterfaceGone {
                    interface: opts.interface.to_string(),
                    change,
                });
            }
        }
        let parent = cgroup::cgroup2_mount()?.join(PARENT_DIR);
        let name = format!(
            "run-{}-{}-{}-{}",
            std::process::id(),
            own_start_time().unwrap_or(0),
            SEQUENCE.fetch_add(1, Ordering::Relaxed),
            opts.level
        );
        let cgroup = Cgroup::create_in(&parent, &name)?;

        let map_err = |what: &str| {
            let what = format!("creating BPF map {what}");
            move |e| ConfineError::from_syscall(what, e)
        };
        let config = Map::array("ifpin_config", Config::SIZE, 1).map_err(map_err("config"));
        let counters = Map::array("ifpin_counters", 8, Counter::COUNT).map_err(map_err("counters"));
        let locals = if opts.allow_loopback {
            Some(Map::hash("ifpin_locals", 16, 4, LOCALS_MAX).map_err(map_err("locals")))
        } else {
            None
        };
        let (config, counters, locals) = match (config, counters, locals.transpose()) {
            (Ok(config), Ok(counters), Ok(locals)) => (config, counters, locals),
            (Err(e), _, _) | (_, Err(e), _) | (_, _, Err(e)) => {
                let _ = cgroup.remove();
                return Err(e);
            }
        };
        // From here on, dropping `confinement` undoes everything.
        let mut confinement = Confinement {
            cgroup: Some(cgroup),
            attached: Vec::new(),
            config,
            counters,
            locals,
            level: opts.level,
            allow_loopback: opts.allow_loopback,
        };
        confinement.set_interface(Some(opts.interface.index()), Some(opts.interface.name()))?;
        confinement.attach_programs()?;
        Ok(confinement)
    }

    fn attach_programs(&mut self) -> Result<(), ConfineError> {
        let maps = MapFds {
            config: self.config.raw_fd(),
            counters: self.counters.raw_fd(),
            locals: self.locals.as_ref().map(Map::raw_fd),
        };
        let mut wanted: Vec<(&'static str, ProgType, AttachType, _)> = Vec::new();
        if self.allow_loopback {
            let options = PinOptions {
                lazy_pin: true,
                refuse_link_local_bind: true,
                refuse_pinning_datagram: self.level == Level::Pinned,
            };
            for (name, attach, hook) in [
                (
                    "ifpin_connect4",
                    AttachType::CgroupInet4Connect,
                    AddrHook::Connect4,
                ),
                (
                    "ifpin_connect6",
                    AttachType::CgroupInet6Connect,
                    AddrHook::Connect6,
                ),
                (
                    "ifpin_sendmsg4",
                    AttachType::CgroupUdp4Sendmsg,
                    AddrHook::Sendmsg4,
                ),
                (
                    "ifpin_sendmsg6",
                    AttachType::CgroupUdp6Sendmsg,
                    AddrHook::Sendmsg6,
                ),
                ("ifpin_bind4", AttachType::CgroupInet4Bind, AddrHook::Bind4),
                ("ifpin_bind6", AttachType::CgroupInet6Bind, AddrHook::Bind6),
            ] {
                wanted.push((
                    name,
                    ProgType::CgroupSockAddr,
                    attach,
                    programs::sock_addr_pin(hook, maps, options),
                ));
            }
        } else {
            wanted.push((
                "ifpin_sock",
                ProgType::CgroupSock,
                AttachType::CgroupInetSockCreate,
                programs::sock_create(maps),
            ));
        }
        if self.level >= Level::Enforced {
            let lo = if self.allow_loopback {
                Some(Interface::loopback()?.index().get())
            } else {
                None
            };
            wanted.push((
                "ifpin_egress",
                ProgType::CgroupSkb,
                AttachType::CgroupInetEgress,
                programs::skb_filter(Direction::Egress, maps, lo),
            ));
            wanted.push((
                "ifpin_ingress",
                ProgType::CgroupSkb,
                AttachType::CgroupInetIngress,
                programs::skb_filter(Direction::Ingress, maps, lo),
            ));
        }
        if self.level >= Level::Enforced {
            // At enforced: multicast memberships on other interfaces (the kernel's own
            // IGMP/MLD reports pass no cgroup filter). At sealed: also every option that
            // unpins or re-steers a socket, and error queues of unpinned sockets.
            let sealed = self.level >= Level::Sealed;
            wanted.push((
                "ifpin_sockopt",
                ProgType::CgroupSockopt,
                AttachType::CgroupSetsockopt,
                programs::setsockopt_guard(
                    maps,
                    GuardOptions {
                        refuse_resteer: sealed,
                        recverr_pinned_only: sealed,
                    },
                ),
            ));
        }
        if self.level >= Level::Sealed && !self.allow_loopback {
            let options = PinOptions {
                lazy_pin: false,
                refuse_link_local_bind: true,
                refuse_pinning_datagram: false,
            };
            wanted.push((
                "ifpin_bind6",
                ProgType::CgroupSockAddr,
                AttachType::CgroupInet6Bind,
                programs::sock_addr_pin(AddrHook::Bind6, maps, options),
            ));
        }
        // Load everything first, then attach: a verifier rejection leaves nothing attached.
        let mut loaded = Vec::with_capacity(wanted.len());
        for (name, prog_type, attach, insns) in wanted {
            loaded.push(
                Program::load(name, prog_type, attach, insns).map_err(ConfineError::from_load)?,
            );
        }
        let cgroup = self.cgroup.as_ref().expect("cgroup present until teardown");
        for program in loaded {
            sys::prog_attach(
                cgroup.as_fd(),
                program.as_fd(),
                program.attach_type(),
                sys::BPF_F_ALLOW_MULTI,
            )
            .map_err(|e| {
                ConfineError::from_syscall(
                    format!(
                        "attaching BPF program {} to cgroup {}",
                        program.name(),
                        cgroup.path().display()
                    ),
                    e,
                )
            })?;
            self.attached.push(program);
        }
        Ok(())
    }

    /// The cgroup directory.
    pub fn cgroup_path(&self) -> &Path {
        self.cgroup().path()
    }

    /// The open cgroup directory, for `clone3(CLONE_INTO_CGROUP)`.
    pub fn cgroup_dir(&self) -> BorrowedFd<'_> {
        self.cgroup().as_fd()
    }

    fn cgroup(&self) -> &Cgroup {
        self.cgroup
            .as_ref()
            .expect("a live Confinement always has its cgroup")
    }

    /// The level the programs enforce.
    pub fn level(&self) -> Level {
        self.level
    }

    /// Whether loopback is allowed.
    pub fn allows_loopback(&self) -> bool {
        self.allow_loopback
    }

    /// Moves process `pid` (all its threads) into the cgroup. Its children follow.
    #[doc(alias = "cgroup.procs")]
    pub fn add_process(&self, pid: u32) -> Result<(), ConfineError> {
        Ok(self.cgroup().add_process(pid)?)
    }

    /// Points every program at another interface, or closes the confinement (`None`):
    /// then nothing passes but `lo` when allowed, new sockets are refused (without
    /// `allow_loopback`) and connections to non-local addresses are refused (with it).
    ///
    /// `name` is needed by the loopback mode (the kernel pins by name there); when `None`
    /// it is looked up from the index.
    pub fn set_interface(
        &self,
        index: Option<IfIndex>,
        name: Option<&str>,
    ) -> Result<(), ConfineError> {
        let value = match index {
            None => Config::encode(0, ""),
            Some(index) => {
                let name = match name {
                    Some(name) => IfName::new(name)?,
                    None => IfName::new(Interface::from_index(index)?.name())?,
                };
                Config::encode(index.get(), name.as_str())
            }
        };
        self.config
            .update(&0u32.to_ne_bytes(), &value)
            .map_err(|e| ConfineError::from_syscall("writing the allowed interface", e))?;
        if index.is_some() {
            self.refresh_local_addresses()?;
        }
        Ok(())
    }

    /// Reads the host's own addresses into the locals map (loopback mode; a no-op
    /// otherwise). Connections to them stay unpinned and go over `lo`.
    pub fn refresh_local_addresses(&self) -> Result<(), ConfineError> {
        let Some(locals) = &self.locals else {
            return Ok(());
        };
        let addrs = nix::ifaddrs::getifaddrs().map_err(|errno| {
            ConfineError::Interface(InterfaceError::Sys {
                call: "getifaddrs",
                interface: "(all)".to_owned(),
                source: errno.into(),
            })
        })?;
        let mut now: Vec<[u8; 16]> = Vec::new();
        for ifa in addrs {
            let Some(address) = ifa.address else { continue };
            if let Some(v4) = address.as_sockaddr_in() {
                now.push(local_key(IpAddr::V4(v4.ip())));
            } else if let Some(v6) = address.as_sockaddr_in6() {
                now.push(local_key(IpAddr::V6(v6.ip())));
            }
        }
        let map_err = |e| ConfineError::from_syscall("recording the host's addresses", e);
        for key in &now {
            locals.update(key, &1u32.to_ne_bytes()).map_err(map_err)?;
        }
        // Forget addresses the host no longer has: a connection to them must be pinned.
        for key in locals.keys().map_err(map_err)? {
            if !now.iter().any(|k| k[..] == key[..]) {
                locals.delete(&key).map_err(map_err)?;
            }
        }
        Ok(())
    }

    /// The counters so far.
    pub fn counters(&self) -> Result<Counters, ConfineError> {
        let read = |counter: Counter| {
            self.counters
                .lookup_u64(counter as u32)
                .map_err(|e| ConfineError::from_syscall("reading the counters", e))
        };
        Ok(Counters {
            egress_blocked: read(Counter::EgressBlocked)?,
            ingress_blocked: read(Counter::IngressBlocked)?,
            setsockopt_refused: read(Counter::SetsockoptRefused)?,
            connect_refused: read(Counter::ConnectRefused)?,
            sendmsg_refused: read(Counter::SendmsgRefused)?,
            bind_refused: read(Counter::BindRefused)?,
            socket_refused: read(Counter::SocketRefused)?,
        })
    }

    /// Whether any process is still in the cgroup (`cgroup.events`).
    #[doc(alias = "cgroup.events")]
    pub fn is_populated(&self) -> Result<bool, ConfineError> {
        Ok(self.cgroup().is_populated()?)
    }

    /// Detaches every program and removes the cgroup, returning the final counters.
    ///
    /// Fails with [`ConfineError::StillPopulated`] while processes are inside; the
    /// confinement then stays in force (and [`Confinement::cleanup_stale`] handles it once
    /// this process is gone).
    pub fn close(mut self) -> Result<Counters, ConfineError> {
        let counters = self.counters()?;
        if self.is_populated()? {
            return Err(ConfineError::StillPopulated {
                path: self.cgroup_path().to_owned(),
            });
        }
        self.teardown()?;
        Ok(counters)
    }

    fn teardown(&mut self) -> Result<(), ConfineError> {
        let Some(cgroup) = self.cgroup.take() else {
            return Ok(());
        };
        let mut first_error = None;
        for program in self.attached.drain(..) {
            if let Err(e) = sys::prog_detach(cgroup.as_fd(), program.as_fd(), program.attach_type())
            {
                first_error.get_or_insert(ConfineError::from_syscall(
                    format!("detaching BPF program {}", program.name()),
                    e,
                ));
            }
        }
        let parent = cgroup.path().parent().map(Path::to_owned);
        match cgroup.remove() {
            Ok(()) => {
                if let Some(parent) = parent {
                    cgroup::remove_parent_if_empty(&parent);
                }
            }
            Err(e) => {
                first_error.get_or_insert(e.into());
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    /// Finds confinements under `<cgroup2>/ifpin` whose creating process is gone, detaches
    /// their programs and removes them. Cgroups that still hold processes are left in place,
    /// programs attached (fail closed), and listed in [`StaleCleanup::left_populated`].
    /// Nothing is killed.
    pub fn cleanup_stale() -> Result<StaleCleanup, ConfineError> {
        let parent = cgroup::cgroup2_mount()?.join(PARENT_DIR);
        let mut report = StaleCleanup::default();
        let entries = match fs::read_dir(&parent) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(report),
            Err(source) => {
                return Err(CgroupError::Io {
                    op: "read directory",
                    path: parent,
                    source,
                }
                .into());
            }
        };
        for entry in entries.flatten() {
            let name = entry.file_name();
            let Some(run) = name.to_str().and_then(RunName::parse) else {
                continue;
            };
            if process_alive(run.pid, run.start) {
                continue;
            }
            let path = entry.path();
            match remove_stale(&path) {
                Ok(true) => report.removed.push(path),
                Ok(false) => report.left_populated.push(path),
                Err(err) => {
                    let mut reason = err.to_string();
                    let mut source = std::error::Error::source(&err);
                    while let Some(cause) = source {
                        reason.push_str(&format!(": {cause}"));
                        source = cause.source();
                    }
                    report.failed.push(StaleFailure { path, reason });
                }
            }
        }
        cgroup::remove_parent_if_empty(&parent);
        Ok(report)
    }

    /// The ids of the programs attached directly to this confinement's cgroup, per attach
    /// point (`BPF_PROG_QUERY`): what a check for leftovers compares against.
    pub fn attached_program_ids(path: &Path) -> Result<Vec<(AttachType, u32)>, ConfineError> {
        let cgroup = Cgroup::open(path)?;
        let mut out = Vec::new();
        for attach in AttachType::ALL {
            let ids = sys::prog_query(cgroup.as_fd(), attach).map_err(|e| {
                ConfineError::from_syscall(format!("querying {}", path.display()), e)
            })?;
            out.extend(ids.into_iter().map(|id| (attach, id)));
        }
        Ok(out)
    }
}

/// Detaches the programs of a stale run's cgroup and removes it (nested cgroups included):
/// `Ok(false)` when processes are still inside (left alone, confined).
fn remove_stale(path: &Path) -> Result<bool, ConfineError> {
    let cgroup = Cgroup::open(path)?;
    if cgroup.is_populated()? {
        return Ok(false);
    }
    for attach in AttachType::ALL {
        let ids = sys::prog_query(cgroup.as_fd(), attach)
            .map_err(|e| ConfineError::from_syscall(format!("querying {}", path.display()), e))?;
        for id in ids {
            let prog = sys::prog_get_fd_by_id(id)
                .map_err(|e| ConfineError::from_syscall(format!("opening BPF program {id}"), e))?;
            sys::prog_detach(cgroup.as_fd(), prog.as_fd(), attach).map_err(|e| {
                ConfineError::from_syscall(
                    format!("detaching BPF program {id} from {}", path.display()),
                    e,
                )
            })?;
        }
    }
    cgroup.remove()?;
    Ok(true)
}

impl Drop for Confinement {
    /// Tears down a confinement nobody closed, unless processes are still inside: then the
    /// programs stay attached (fail closed) for [`Confinement::cleanup_stale`].
    fn drop(&mut self) {
        if self.cgroup.is_none() {
            return;
        }
        if matches!(self.cgroup().is_populated(), Ok(false)) {
            let _ = self.teardown();
        }
    }
}

/// The most addresses the locals map holds.
const LOCALS_MAX: u32 = 4096;

/// The locals-map key of an address: IPv6, or v4-mapped IPv4.
fn local_key(ip: IpAddr) -> [u8; 16] {
    match ip {
        IpAddr::V4(v4) => v4.to_ipv6_mapped().octets(),
        IpAddr::V6(v6) => v6.octets(),
    }
}

/// The parts of a run's cgroup name, `run-<pid>-<start time>-<n>-<level>`: the process that
/// made it (pid and start time, to tell whether it still runs) and the level it enforces.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RunName {
    /// The supervisor's pid.
    pub pid: u32,
    /// The supervisor's start time (clock ticks since boot, `/proc/PID/stat` field 22).
    pub start: u64,
    /// The level the run's programs enforce (`None` for the names of earlier versions,
    /// `run-<pid>-<start time>-<n>`, which did not record it).
    pub level: Option<Level>,
}

impl RunName {
    /// Parses a run's cgroup directory name; `None` for anything else.
    pub fn parse(name: &str) -> Option<RunName> {
        let mut parts = name.strip_prefix("run-")?.split('-');
        let pid = parts.next()?.parse().ok()?;
        let start = parts.next()?.parse().ok()?;
        parts.next()?.parse::<u32>().ok()?;
        let level = match parts.next() {
            None => None,
            Some(level) => Some(level.parse().ok()?),
        };
        parts
            .next()
            .is_none()
            .then_some(RunName { pid, start, level })
    }
}

/// Field 22 of `/proc/<pid>/stat`: the start time in clock ticks since boot.
fn start_time(pid: &str) -> Option<u64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_start_time(&stat)
}

fn parse_start_time(stat: &str) -> Option<u64> {
    let after_comm = &stat[stat.rfind(')')? + 1..];
    after_comm.split_whitespace().nth(19)?.parse().ok()
}

fn own_start_time() -> Option<u64> {
    start_time("self")
}

/// Whether the process that made a confinement still runs (same pid, same start time).
fn process_alive(pid: u32, start: u64) -> bool {
    start_time(&pid.to_string()) == Some(start)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_names_round_trip() {
        assert_eq!(
            RunName::parse("run-123-456-7-sealed"),
            Some(RunName {
                pid: 123,
                start: 456,
                level: Some(Level::Sealed)
            })
        );
        assert_eq!(
            RunName::parse("run-1-2-3-enforced").map(|r| r.level),
            Some(Some(Level::Enforced))
        );
        assert_eq!(RunName::parse("run-123-456-7").map(|r| r.level), Some(None));
        assert_eq!(RunName::parse("run-123-456-7-hopeful"), None);
        assert_eq!(RunName::parse("run-123-456-7-pinned-8"), None);
        assert_eq!(RunName::parse("other"), None);
    }

    #[test]
    fn start_time_skips_odd_command_names() {
        let stat = "42 (a) b) c) S 1 42 42 0 -1 4194560 100 0 0 0 0 0 0 0 20 0 1 0 98765 1000 0";
        assert_eq!(parse_start_time(stat), Some(98765));
        assert!(own_start_time().is_some());
        assert!(process_alive(std::process::id(), own_start_time().unwrap()));
        assert!(!process_alive(
            std::process::id(),
            own_start_time().unwrap() + 1
        ));
    }

    #[test]
    fn local_keys_are_v4_mapped() {
        let key = local_key("10.0.0.1".parse().unwrap());
        assert_eq!(key, [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 10, 0, 0, 1]);
    }
}
