//! The whole `exec` run: resolve, watch, confine, start, supervise, close, report.

use std::path::Path;
use std::process::ExitStatus;
use std::time::Duration;

use super::supervise::{Follow, SignalForwarding, Started, exit_code};
use super::{ExecError, ExitSummary, Program, Report, check_privileges, seal};
use crate::confine::{ConfineOptions, Confinement, StaleCleanup};
use crate::interface::{Interface, InterfaceChange};
use crate::level::Level;
use crate::linkwatch::{LinkEventKind, LinkTracker, LinkWatch, PinChange};

/// How long a failed supervisor waits for a killed cgroup to empty before giving up (and
/// leaving the programs attached: fail closed).
const DRAIN: Duration = Duration::from_secs(5);

/// What to run the program under: the confinement, and what `exec` adds to it.
#[derive(Clone, Debug)]
pub struct ExecOptions {
    /// The interface (resolved in the caller's network namespace), the level, loopback.
    pub confine: ConfineOptions,
    /// At `sealed`: the capabilities the program keeps (none by default; never one of
    /// [`seal::SEAL_BREAKING`]).
    pub keep_caps: Vec<caps::Capability>,
    /// The account to run the program as (`--user`/`--group`), any level.
    pub identity: Option<seal::Identity>,
}

impl ExecOptions {
    /// Options for `level` on `interface`: loopback closed, no capability kept, same account.
    pub fn new(interface: Interface, level: Level) -> ExecOptions {
        ExecOptions {
            confine: ConfineOptions {
                interface,
                level,
                allow_loopback: false,
            },
            keep_caps: Vec::new(),
            identity: None,
        }
    }
}

/// How a run ended.
#[derive(Debug)]
pub struct Outcome {
    /// The program's own exit status.
    pub status: ExitStatus,
    /// The report.
    pub report: Report,
}

impl Outcome {
    /// What to exit with: the program's code, or 128 + the signal that killed it.
    pub fn exit_code(&self) -> u8 {
        exit_code(self.status)
    }
}

/// Runs `program` confined by `options` until it and every process it started have exited.
///
/// Pass `signals` (made with [`SignalForwarding::new`] before any thread was started) to
/// forward `SIGINT`, `SIGTERM`, `SIGHUP`, `SIGQUIT`, `SIGUSR1` and `SIGUSR2` to the program.
/// On any error before the program started, nothing is left behind.
///
/// Every inheritable `AF_INET`, `AF_INET6` and `AF_PACKET` socket of the calling process at
/// fd 3 and above is marked close-on-exec first (listed in [`Report::withheld_sockets`]): the
/// confinement could not hold it. If fd 0, 1 or 2 is such a socket, the run is refused
/// ([`ExecError::InheritedStdioSocket`]).
pub fn run(
    options: &ExecOptions,
    program: &Program,
    signals: Option<&SignalForwarding>,
) -> Result<Outcome, ExecError> {
    check_privileges(options.confine.level)?;
    if !options.keep_caps.is_empty() && options.confine.level != Level::Sealed {
        return Err(ExecError::BadCapability {
            name: options.keep_caps[0].to_string(),
            reason: "--keep-cap belongs to level sealed (below it, capabilities are not dropped)"
                .into(),
        });
    }
    // Everything the sealed child will do is decided here, before anything is created: a
    // missing layer is an error that leaves nothing behind.
    let (seal_steps, seal_layers) = match options.confine.level {
        Level::Sealed => {
            seal::check_native_abi(&program.path)?;
            let (steps, layers) = seal::prepare(&options.keep_caps)?;
            (Some(steps), Some(layers))
        }
        _ => (None, None),
    };
    let caps = match options.confine.level {
        Level::Sealed => Some(seal::cap_sets(&options.keep_caps)?),
        _ => None,
    };
    // Before anything is created: a refusal leaves nothing behind.
    let withheld_sockets = super::inherited::withhold_inherited_sockets()?;
    // What earlier runs left when their ifpin was killed, once their processes are gone. A
    // failure here must not stop this run: the leftovers stay confined, and are reported by
    // `ifpin exec --cleanup`.
    let stale = Confinement::cleanup_stale()
        .map(|cleanup| cleanup.removed)
        .unwrap_or_default();
    // The watch first, then the last check: any change after the check is a notice.
    let watch = LinkWatch::new()?;
    match options.confine.interface.check()? {
        InterfaceChange::Same => {}
        change => {
            return Err(ExecError::InterfaceChanged {
                interface: options.confine.interface.to_string(),
                change: format!("{change:?}"),
            });
        }
    }
    let confinement = Confinement::create(options.confine.clone())?;
    let cgroup = confinement.cgroup_path().to_owned();
    let started = match Started::spawn(
        program.command(),
        &cgroup,
        seal_steps,
        options.identity.clone(),
        caps,
        signals,
    ) {
        Ok(started) => started,
        Err(err) => {
            // The child may have been created and failed between fork and exec; it is gone
            // (std reaps it), so the cgroup is empty and can go.
            let _ = confinement.close();
            return Err(err);
        }
    };
    let pid = started.pid();

    let mut apply = |change: &PinChange| -> Result<(), ExecError> {
        match change {
            PinChange::Close => confinement.set_interface(None, None)?,
            PinChange::Reopen { index, name } => {
                confinement.set_interface(Some(*index), Some(name))?
            }
        }
        Ok(())
    };
    // Every level with a filter follows the interface's life: the filter closes when it
    // goes away or its index changes hands. `pinned` has no filter, and only records.
    let filtered = options.confine.level >= Level::Enforced;
    let tracker = LinkTracker::new(&options.confine.interface);
    let follow = Follow {
        watch,
        tracker: if filtered {
            tracker
        } else {
            tracker.watching_only()
        },
        apply: if filtered { Some(&mut apply) } else { None },
    };
    let supervised = started.supervise(signals, Some(follow));
    let supervised = match supervised {
        Ok(supervised) => supervised,
        Err(err) => {
            // Never detach while a process may still be inside: kill them all, and close only
            // once the cgroup is empty; otherwise the programs stay attached (fail closed).
            if kill_and_drain(&cgroup) {
                let _ = confinement.close();
            }
            return Err(err);
        }
    };
    // At pinned the link watch only records: the sockets stay bound to the first index.
    let open_for = if filtered {
        supervised.open_for.map(|i| i.get())
    } else {
        Some(options.confine.interface.index().get())
    };
    let counters = confinement.close()?;
    // Pinned sockets are bound to a number: once the interface has gone, the pin no longer
    // names it. The filtered levels closed their filter at that moment, and hold.
    let pin_lost = supervised.link_events.iter().any(|e| {
        matches!(
            e.kind,
            LinkEventKind::Deleted | LinkEventKind::Renamed | LinkEventKind::IndexTakenOver
        )
    });
    let level_held = (filtered || !pin_lost).then_some(options.confine.level);

    use std::os::unix::process::ExitStatusExt;
    let status = supervised.status;
    let report = Report {
        program: program.name.to_string_lossy().into_owned(),
        pid,
        level: options.confine.level,
        level_held,
        interface: options.confine.interface.clone(),
        allow_loopback: options.confine.allow_loopback,
        cgroup,
        open_for_index_at_exit: open_for,
        exit: ExitSummary {
            code: status.code(),
            signal: status.signal().map(signal_name),
            status: exit_code(status),
        },
        elapsed_ms: supervised.elapsed.as_millis() as u64,
        waited_for_descendants: supervised.waited_for_descendants,
        blocked: counters,
        link_events: supervised.link_events,
        stale_cgroups_removed: stale,
        withheld_sockets,
        signals_forwarded: supervised.signals,
        seal: seal_layers,
        user: options.identity.as_ref().map(|id| id.uid),
        group: options.identity.as_ref().map(|id| id.gid),
    };
    Ok(Outcome { status, report })
}

/// Removes the cgroups of earlier runs whose supervisor is gone (detaching their programs);
/// cgroups that still hold processes stay, confined, and are listed.
pub fn cleanup_stale() -> Result<StaleCleanup, ExecError> {
    Ok(Confinement::cleanup_stale()?)
}

fn signal_name(signal: i32) -> String {
    nix::sys::signal::Signal::try_from(signal)
        .map(|s| s.as_str().to_owned())
        .unwrap_or_else(|_| format!("signal {signal}"))
}

/// Kills every process in `cgroup` and waits up to [`DRAIN`] for it to be empty.
fn kill_and_drain(cgroup: &Path) -> bool {
    let Ok(cgroup) = crate::cgroup::Cgroup::open(cgroup) else {
        return false;
    };
    cgroup.kill().is_ok() && cgroup.wait_empty(DRAIN).unwrap_or(false)
}
