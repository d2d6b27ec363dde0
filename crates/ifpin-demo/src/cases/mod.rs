//! The live cases behind `ifpin demo`: each one does something on the chassis's host and counts,
//! on the wire, the frames it caused on each link.
//!
//! A [`DemoLab`] is a [`Chassis`](crate::Chassis) with TCP and UDP responders on both peers and a
//! [`FrameCounter`](crate::FrameCounter) on the far end of each link. [`DemoLab::run`] runs the
//! cases of [`plan`] one after the other; around each case the counters are settled and cleared,
//! so the frames a case reports are the ones it caused. Four sections:
//!
//! - [`Section::NegativeControl`]: `bind()` to ctl0's address only. It leaks out of the front
//!   panel; if the counter saw nothing, the counter is blind and nothing else can be trusted.
//! - [`Section::Pinned`]: honest sockets pinned by the [`Pinning`] under test (the `ifpin`
//!   library in the demo) reach the control peer over ctl0 with zero frames on the front link.
//! - [`Section::Ingress`]: a pinned listener/socket refuses what arrives on the front link and
//!   still accepts what arrives on ctl0 (the positive control in the same case).
//! - [`Section::KernelFinding`]: every override vector of [`crate::catalogue`] against a pinned
//!   socket, measured on this kernel. These are findings about the kernel, not promises of the
//!   library: they are why the enforced level exists.
//!
//! Then the levels section ([`levels`]): every vector that got out, and the escape vectors of a
//! root program, run under `ifpin exec` at each level.
//!
//! The cases never decide from what `docs/kernel.md` says: the verdict comes from the frame
//! counts and the kernel's answers; the documented answer (the catalogue's, which the doc is
//! checked against) is only compared with it and shown next to it.
//!
//! How sockets get pinned is a parameter ([`Pinning`]): `ifpin demo` passes
//! [`LibraryPinning`] (the `ifpin` library); the fixture tests can pass [`BarePinning`] (plain
//! `SO_BINDTOIFINDEX`) to measure the kernel alone.

mod lab;
pub mod levels;
mod pinning;

use std::fmt;
use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::os::fd::BorrowedFd;
use std::time::Duration;

use serde::Serialize;

use crate::catalogue::{Attempt, Documented, Privilege, Vector};
use crate::sys::interrupt as sys;

pub use lab::{DemoLab, read_answer};
pub use levels::{AnyVector, ChildCommand, LevelCase, LevelsReport};
pub use pinning::LibraryPinning;

/// Where `docs/kernel.md` records the lifecycle of a binding.
pub const LIFECYCLE_DOC: &str = "docs/kernel.md#the-lifecycle-of-a-binding";

/// The error type the [`Pinning`] implementations return: whatever the pinning library says.
pub type PinningError = Box<dyn std::error::Error + Send + Sync>;

/// The port every peer serves TCP and UDP on, and every egress case talks to.
pub const SERVICE_PORT: u16 = 7000;
/// The port the ingress cases listen on in the host.
pub const INGRESS_PORT: u16 = 7100;
/// How long an egress exchange (connect + answer) may take.
pub const EXCHANGE_TIMEOUT: Duration = Duration::from_millis(800);
/// How long a link must be quiet before a case's frames are counted.
pub const SETTLE: Duration = Duration::from_millis(50);

/// How the cases pin sockets. Every method is called on a thread inside the host namespace.
pub trait Pinning: Sync {
    /// What pins the sockets, for the report (e.g. `ifpin library (SO_BINDTOIFINDEX, verified)`).
    fn describe(&self) -> String;
    /// Pins an existing socket to `interface`.
    fn pin(&self, socket: BorrowedFd<'_>, interface: &str) -> Result<(), PinningError>;
    /// Connects a TCP stream pinned to `interface` to `peer` and returns what the peer wrote
    /// before closing (the responders write their name and a newline).
    fn tcp_exchange(
        &self,
        interface: &str,
        peer: SocketAddr,
        timeout: Duration,
    ) -> Result<String, PinningError>;
    /// [`Pinning::tcp_exchange`] from a socket bound to `local` first (a `bind()` before the
    /// `connect()`).
    fn tcp_exchange_from(
        &self,
        interface: &str,
        local: SocketAddr,
        peer: SocketAddr,
        timeout: Duration,
    ) -> Result<String, PinningError>;
    /// Sends one datagram from a UDP socket pinned to `interface` to `peer` and returns the
    /// answer.
    fn udp_exchange(
        &self,
        interface: &str,
        peer: SocketAddr,
        timeout: Duration,
    ) -> Result<String, PinningError>;
    /// A TCP listener pinned to `interface`, bound to `addr`.
    fn tcp_listener(&self, interface: &str, addr: SocketAddr) -> Result<TcpListener, PinningError>;
    /// A UDP socket pinned to `interface`, bound to `addr`.
    fn udp_socket(&self, interface: &str, addr: SocketAddr) -> Result<UdpSocket, PinningError>;
}

pub use lab::BarePinning;

/// The part of the demo a case belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Section {
    /// `bind()` to an address only: expected to leak; proves the counters see a leak.
    NegativeControl,
    /// Honest sockets pinned by the library: promised not to leak.
    Pinned,
    /// Traffic arriving on the front panel: promised to be refused by pinned sockets.
    Ingress,
    /// Override vectors against a pinned socket: measured kernel behaviour, not a promise.
    KernelFinding,
    /// The binding is an interface index: measured kernel behaviour when the index changes
    /// hands (runs last: it deletes ctl0).
    Lifecycle,
}

impl Section {
    /// The heading the demo prints for the section.
    pub fn heading(self) -> &'static str {
        match self {
            Self::NegativeControl => {
                "negative controls: bind() to ctl0's address only (expected to leak)"
            }
            Self::Pinned => "pinned sockets (what the library promises: nothing on the front link)",
            Self::Ingress => "ingress: traffic arriving on the front panel (promised: refused)",
            Self::KernelFinding => {
                "kernel findings: why the enforced level exists (override vectors against a pinned socket)"
            }
            Self::Lifecycle => {
                "kernel finding: the binding is an interface index, not a name (run last: deletes ctl0)"
            }
        }
    }

    /// Whether the library promises this section's outcome (and the exit code depends on it).
    pub fn is_promise(self) -> bool {
        matches!(self, Self::Pinned | Self::Ingress)
    }
}

/// One case of the demo, before it runs.
#[derive(Debug, Clone, Serialize)]
pub struct CaseSpec {
    /// Stable id, e.g. `pinned-tcp4` or `finding-udp4-pktinfo`.
    pub id: String,
    /// Its section.
    pub section: Section,
    /// One line saying what it does.
    pub title: String,
    /// The privilege the case's code runs with on the host.
    pub privilege: Privilege,
    #[serde(skip)]
    kind: CaseKind,
}

#[derive(Debug, Clone, Copy)]
enum CaseKind {
    BindOnly { tcp: bool, v6: bool },
    BindOnlyIngress,
    Pinned { tcp: bool, family: Family },
    PinnedMisuse { bind_own_front_link_local: bool },
    IngressTcp,
    IngressUdp,
    Vector(Vector),
    IndexReuse,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Family {
    V4,
    V6,
    LinkLocal,
}

/// Every case of the demo, in the order it runs. The last one, `finding-ifindex-reuse`,
/// deletes `ctl0`: nothing can run on the lab after it.
pub fn plan() -> Vec<CaseSpec> {
    let mut cases = Vec::new();
    let mut add = |id: String, section, title: String, privilege, kind| {
        cases.push(CaseSpec {
            id,
            section,
            title,
            privilege,
            kind,
        });
    };
    for (tcp, v6) in [(true, false), (false, false), (true, true), (false, true)] {
        let (proto, family) = (if tcp { "tcp" } else { "udp" }, if v6 { "6" } else { "4" });
        add(
            format!("bind-only-{proto}{family}"),
            Section::NegativeControl,
            format!(
                "{} bound to ctl0's IPv{family} address, to the control address",
                proto.to_uppercase()
            ),
            Privilege::None,
            CaseKind::BindOnly { tcp, v6 },
        );
    }
    add(
        "bind-only-ingress-tcp".into(),
        Section::NegativeControl,
        "TCP listener bound to ctl0's address; the front peer connects to it".into(),
        Privilege::None,
        CaseKind::BindOnlyIngress,
    );
    for family in [Family::V4, Family::V6, Family::LinkLocal] {
        for tcp in [true, false] {
            let proto = if tcp { "tcp" } else { "udp" };
            let (suffix, what) = match family {
                Family::V4 => ("4", "the control address over IPv4"),
                Family::V6 => ("6", "the control address over IPv6"),
                Family::LinkLocal => ("-linklocal", "the backplane's fe80:: address, no scope"),
            };
            add(
                format!("pinned-{proto}{suffix}"),
                Section::Pinned,
                format!("{} pinned to ctl0, to {what}", proto.to_uppercase()),
                Privilege::None,
                CaseKind::Pinned { tcp, family },
            );
        }
    }
    add(
        "pinned-foreign-scope".into(),
        Section::Pinned,
        "TCP pinned to ctl0, to the front's fe80:: address with scope eth1 (must be refused)"
            .into(),
        Privilege::None,
        CaseKind::PinnedMisuse {
            bind_own_front_link_local: false,
        },
    );
    add(
        "pinned-bind-linklocal".into(),
        Section::Pinned,
        "TCP pinned to ctl0, bind() to fe80::…%eth1 then connect (must be refused)".into(),
        Privilege::None,
        CaseKind::PinnedMisuse {
            bind_own_front_link_local: true,
        },
    );
    add(
        "ingress-tcp".into(),
        Section::Ingress,
        "TCP listener pinned to ctl0; front and backplane peers connect".into(),
        Privilege::None,
        CaseKind::IngressTcp,
    );
    add(
        "ingress-udp".into(),
        Section::Ingress,
        "UDP socket pinned to ctl0; front and backplane peers send a datagram".into(),
        Privilege::None,
        CaseKind::IngressUdp,
    );
    for vector in Vector::ALL {
        let info = vector.info();
        add(
            format!("finding-{}", info.id),
            Section::KernelFinding,
            info.title.to_owned(),
            info.privilege,
            CaseKind::Vector(vector),
        );
    }
    add(
        "finding-ifindex-reuse".into(),
        Section::Lifecycle,
        "ctl0 deleted, a new device to the front gets its index; the pinned socket sends again"
            .into(),
        Privilege::NetAdmin,
        CaseKind::IndexReuse,
    );
    cases
}

/// Frames the far end of each link received from the host during a case (background noise
/// such as MLD and router solicitations excluded).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct LinkFrames {
    /// On the ctl0 link (counted at the backplane's end).
    pub ctl0: usize,
    /// On the front-panel link (counted at the front peer's end).
    pub front: usize,
}

/// What a case showed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Verdict {
    /// Frames left through the front panel (or the front got in, for ingress).
    Leaked,
    /// Nothing left through the front panel (and, for promises, the control peer was reached).
    NoLeak,
    /// Ingress: the front's traffic was refused, the backplane's accepted. Pinned: a request
    /// naming another interface was refused before anything was sent.
    Refused,
    /// A promised case could not do its job (no answer from the control peer, an error).
    Failed,
    /// A negative control that did not leak: the counters cannot be trusted.
    Blind,
}

impl Verdict {
    /// Whether the verdict is what the case's section needs for the promise to hold.
    pub fn is_good_for(self, section: Section) -> bool {
        match section {
            Section::NegativeControl => self == Self::Leaked,
            Section::Pinned => matches!(self, Self::NoLeak | Self::Refused),
            Section::Ingress => self == Self::Refused,
            Section::KernelFinding | Section::Lifecycle => true,
        }
    }
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Leaked => "LEAKS",
            Self::NoLeak => "no leak",
            Self::Refused => "refused",
            Self::Failed => "FAILED",
            Self::Blind => "BLIND (counter saw nothing)",
        })
    }
}

/// The result of one case.
#[derive(Debug, Clone, Serialize)]
pub struct CaseReport {
    /// The case.
    #[serde(flatten)]
    pub spec: CaseSpec,
    /// What happened, in words: the kernel's answer, who answered.
    pub outcome: String,
    /// Frames counted on each link.
    pub frames: LinkFrames,
    /// The verdict, from the frames (and, for promises, whether the job was done).
    pub verdict: Verdict,
    /// Whether the verdict is the one the section needs (always true for findings).
    pub ok: bool,
    /// For override vectors: the kernel's answer and the binding read back afterwards.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub attempt: Option<Attempt>,
    /// For override vectors: what `docs/kernel.md` records (the catalogue's expected answer).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub documented: Option<Documented>,
    /// For override vectors: where in `docs/kernel.md` that is written.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub documented_in: Option<&'static str>,
    /// For override vectors: whether this kernel behaved as `docs/kernel.md` records.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub as_documented: Option<bool>,
    /// For override vectors: how many of the front-link frames are the vector's own packets
    /// (its UDP/TCP port, ICMP echo, EtherType), as opposed to ARP, replies or ICMP errors.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vector_frames_on_front: Option<usize>,
    /// The frames seen on the front link, decoded (at most a few).
    pub front_frames: Vec<String>,
}

impl CaseReport {
    fn empty(spec: CaseSpec) -> Self {
        Self {
            spec,
            outcome: String::new(),
            frames: LinkFrames::default(),
            verdict: Verdict::Failed,
            ok: false,
            attempt: None,
            documented: None,
            documented_in: None,
            as_documented: None,
            vector_frames_on_front: None,
            front_frames: Vec::new(),
        }
    }
}

/// What a run reports as it goes.
#[derive(Debug, Clone, Copy)]
pub enum Progress<'a> {
    /// A case finished.
    Case(&'a CaseReport),
    /// The levels section starts; the text is the command each run is.
    LevelsStart(&'a str),
    /// A vector finished at a level.
    Level(&'a LevelCase),
    /// The levels section could not run; the text says why.
    LevelsSkipped(&'a str),
}

/// Totals over a run.
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    /// Promised cases (pinned + ingress) that held.
    pub promises_kept: usize,
    /// Promised cases run.
    pub promises: usize,
    /// Negative controls that leaked, as they must.
    pub controls_leaked: usize,
    /// Negative controls run.
    pub controls: usize,
    /// Override vectors that left through the front panel on this kernel.
    pub vectors_leaking: Vec<String>,
    /// Override vectors that did not.
    pub vectors_contained: Vec<String>,
    /// Vectors that behaved differently from the documented answer (`docs/kernel.md`, checked
    /// against the catalogue): `ID` for a kernel finding, `ID@LEVEL` for a level run.
    pub differs_from_documented: Vec<String>,
    /// Every promise held and every negative control leaked.
    pub ok: bool,
}

/// A whole demo run.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// The running kernel (`/proc/sys/kernel/osrelease`).
    pub kernel: String,
    /// What pinned the sockets.
    pub pinning: String,
    /// Every case, in order.
    pub cases: Vec<CaseReport>,
    /// What each guarantee level blocks, when run ([`DemoLab::run_with_levels`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub levels: Option<LevelsReport>,
    /// Why the levels section was not run, when it was asked for and could not be.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub levels_skipped: Option<String>,
    /// Totals.
    pub summary: Summary,
}

impl Summary {
    fn of(cases: &[CaseReport], levels: Option<&LevelsReport>) -> Self {
        let count = |f: &dyn Fn(&CaseReport) -> bool| cases.iter().filter(|c| f(c)).count();
        let findings = || {
            cases
                .iter()
                .filter(|c| matches!(c.spec.section, Section::KernelFinding | Section::Lifecycle))
        };
        let ids = |f: &dyn Fn(&CaseReport) -> bool| {
            findings()
                .filter(|c| f(c))
                .map(|c| c.spec.id.trim_start_matches("finding-").to_owned())
                .collect::<Vec<_>>()
        };
        let promises = count(&|c| c.spec.section.is_promise());
        let promises_kept = count(&|c| c.spec.section.is_promise() && c.ok);
        let controls = count(&|c| c.spec.section == Section::NegativeControl);
        let controls_leaked = count(&|c| c.spec.section == Section::NegativeControl && c.ok);
        Summary {
            promises_kept,
            promises,
            controls_leaked,
            controls,
            vectors_leaking: ids(&|c| c.verdict == Verdict::Leaked),
            vectors_contained: ids(&|c| c.verdict != Verdict::Leaked),
            differs_from_documented: ids(&|c| c.as_documented == Some(false))
                .into_iter()
                .chain(levels.into_iter().flat_map(|l| {
                    l.cases
                        .iter()
                        .filter(|c| c.exec && !c.as_documented)
                        .map(|c| format!("{}@{}", c.vector, c.level))
                }))
                .collect(),
            ok: promises_kept == promises && controls_leaked == controls,
        }
    }
}

/// An error that stops a demo run (building the lab, a namespace, an interrupt).
#[derive(Debug, thiserror::Error)]
pub enum CaseError {
    /// The lab could not be built or used.
    #[error("the virtual chassis failed: {0}")]
    Lab(#[from] crate::Error),
    /// A case's set-up (not its measured outcome) failed.
    #[error("case {case}: {what}")]
    Setup {
        /// The case id.
        case: String,
        /// What failed.
        what: String,
    },
    /// `SIGINT`/`SIGTERM` arrived; the lab was torn down.
    #[error("interrupted; the virtual chassis was removed")]
    Interrupted,
    /// The signal handler could not be installed.
    #[error("installing the SIGINT handler failed: {0}")]
    Signal(#[source] std::io::Error),
}

/// Makes `SIGINT`/`SIGTERM` stop a run between cases (so every namespace is removed) instead of
/// killing the process. A second signal kills it the usual way.
pub fn handle_interrupts() -> Result<(), CaseError> {
    sys::install_interrupt_handler().map_err(CaseError::Signal)
}

/// Whether an interrupt arrived (after [`handle_interrupts`]).
pub fn interrupted() -> bool {
    sys::interrupted()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plan_has_every_section_and_unique_ids() {
        let plan = plan();
        let mut ids: Vec<_> = plan.iter().map(|c| c.id.clone()).collect();
        ids.sort();
        ids.dedup();
        assert_eq!(ids.len(), plan.len());
        for section in [
            Section::NegativeControl,
            Section::Pinned,
            Section::Ingress,
            Section::KernelFinding,
        ] {
            assert!(plan.iter().any(|c| c.section == section), "{section:?}");
        }
        assert_eq!(
            plan.iter()
                .filter(|c| c.section == Section::KernelFinding)
                .count(),
            Vector::ALL.len()
        );
    }

    #[test]
    fn findings_never_break_a_promise() {
        for verdict in [Verdict::Leaked, Verdict::NoLeak, Verdict::Failed] {
            assert!(verdict.is_good_for(Section::KernelFinding));
        }
        assert!(!Verdict::Leaked.is_good_for(Section::Pinned));
        assert!(!Verdict::Failed.is_good_for(Section::Pinned));
        assert!(!Verdict::NoLeak.is_good_for(Section::NegativeControl));
        assert!(!Verdict::Leaked.is_good_for(Section::Ingress));
    }
}
