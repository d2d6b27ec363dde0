//! [`DemoLab`]: the chassis, its responders and counters, and how each case kind is run and
//! judged. Also [`BarePinning`], the library-free [`Pinning`] the fixture tests use.

use std::io::Read;
use std::net::{
    IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV6, TcpListener, TcpStream, UdpSocket,
};
use std::os::fd::{AsFd, BorrowedFd};
use std::time::{Duration, Instant};

use socket2::{Domain, Protocol, SockAddr, SockRef, Socket, Type};

use std::os::unix::process::ExitStatusExt;

use ifpin::Level;

use super::levels::{
    self, AnyVector, ChildAnswer, ChildCommand, LevelCase, LevelError, LevelsReport, Outside,
};
use super::{
    CaseError, CaseKind, CaseReport, CaseSpec, EXCHANGE_TIMEOUT, Family, INGRESS_PORT, LinkFrames,
    Pinning, PinningError, Progress, Report, SERVICE_PORT, SETTLE, Section, Summary, Verdict,
};
use crate::catalogue::escape::Needs;
use crate::catalogue::{
    self as vectors, Documented, Escape, EscapeReport, LinkIndex, Target, VECTOR_MARK, Vector,
};
use crate::chassis::{Chassis, Peer, Served};
use crate::counter::FrameCounter;
use crate::frame::Frame;
use crate::responder::Proto;

/// The device `finding-ifindex-reuse` creates with ctl0's old index, and its far end (in front).
const REUSE_IF: &str = "reuse0";
const REUSE_PEER_IF: &str = "peer-reuse0";
/// Seconds a STALE neighbour entry waits before it is probed (the kernel's default is 5).
const NEIGHBOUR_PROBE_DELAY: &str = "600";
/// How many decoded front-link frames a report keeps per case.
const FRAMES_SHOWN: usize = 6;
/// The routing table [`vectors::VECTOR_MARK`] is sent to (out of the front panel).
const MARK_TABLE: &str = "1701";

/// A [`Chassis`] set up for the demo: TCP and UDP responders on [`SERVICE_PORT`] on both peers,
/// a frame counter at the far end of each link, unprivileged ping sockets allowed on the host,
/// and a fwmark rule that routes [`VECTOR_MARK`] out of the front panel. Removed on drop.
#[derive(Debug)]
pub struct DemoLab {
    // Field order is drop order: counters and responders before the namespaces.
    backplane: FrameCounter,
    front: FrameCounter,
    _tcp: Served,
    _udp: Served,
    chassis: Chassis,
}

impl DemoLab {
    /// Builds the lab.
    pub fn new() -> Result<Self, CaseError> {
        let chassis = Chassis::new()?;
        let host = chassis.host();
        host.sysctl("net.ipv4.ping_group_range", "0 2147483647")?;
        // A neighbour entry left STALE by one case (e.g. created by a peer's solicitation) is
        // probed 5 s after its next use, which would land in a later case's window. Delay those
        // probes past the end of the demo, so every frame a case counts is its own.
        for family in ["ipv4", "ipv6"] {
            for dev in [Chassis::CTL0, Chassis::ETH1] {
                host.sysctl(
                    &format!("net/{family}/neigh/{dev}/delay_first_probe_time"),
                    NEIGHBOUR_PROBE_DELAY,
                )?;
            }
        }
        // IGMPv2 and MLDv1 address each report to its group, so the multicast vector's reports
        // are told apart from the host's own background reports.
        for dev in [Chassis::CTL0, Chassis::ETH1] {
            host.sysctl(&format!("net/ipv4/conf/{dev}/force_igmp_version"), "2")?;
            host.sysctl(&format!("net/ipv6/conf/{dev}/force_mld_version"), "1")?;
        }
        host.ip(&[
            "rule",
            "add",
            "fwmark",
            &VECTOR_MARK.to_string(),
            "lookup",
            MARK_TABLE,
        ])?;
        host.ip(&[
            "route",
            "add",
            "default",
            "via",
            &Chassis::FRONT_V4.to_string(),
            "dev",
            Chassis::ETH1,
            "table",
            MARK_TABLE,
        ])?;
        let tcp = chassis.serve(Proto::Tcp, SERVICE_PORT)?;
        let udp = chassis.serve(Proto::Udp, SERVICE_PORT)?;
        let backplane = chassis.backplane_counter()?;
        let front = chassis.front_counter()?;
        Ok(Self {
            backplane,
            front,
            _tcp: tcp,
            _udp: udp,
            chassis,
        })
    }

    /// The chassis.
    pub fn chassis(&self) -> &Chassis {
        &self.chassis
    }

    /// What the override vectors aim at: the front panel and the control-plane addresses.
    pub fn target(&self) -> Result<Target, CaseError> {
        let index = self.chassis.eth1_index()?;
        let index = LinkIndex::new(index).ok_or_else(|| CaseError::Setup {
            case: "target".into(),
            what: "eth1 has index 0".into(),
        })?;
        Ok(chassis_target(index))
    }

    /// Runs every case of `cases` (normally [`super::plan`]) with `pinning`, calling `progress`
    /// after each. Stops with [`CaseError::Interrupted`] if a signal arrived (see
    /// [`super::handle_interrupts`]).
    pub fn run(
        &self,
        cases: &[CaseSpec],
        pinning: &dyn Pinning,
        progress: &mut dyn FnMut(&CaseReport),
    ) -> Result<Report, CaseError> {
        self.run_inner(cases, pinning, None, &mut |p| {
            if let Progress::Case(case) = p {
                progress(case);
            }
        })
    }

    /// [`DemoLab::run`], plus the levels section ([`super::levels`]): the override vectors that
    /// got out of a pinned socket, run again under `ifpin exec` at the enforced and sealed
    /// levels, and the escape vectors at every level, just before the lifecycle cases (which
    /// delete ctl0). If the levels cannot run (no cgroup v2, no BPF), the report says why in
    /// [`Report::levels_skipped`] and the rest still runs.
    pub fn run_with_levels(
        &self,
        cases: &[CaseSpec],
        pinning: &dyn Pinning,
        child: &ChildCommand,
        progress: &mut dyn FnMut(Progress<'_>),
    ) -> Result<Report, CaseError> {
        self.run_inner(cases, pinning, Some(child), progress)
    }

    fn run_inner(
        &self,
        cases: &[CaseSpec],
        pinning: &dyn Pinning,
        levels: Option<&ChildCommand>,
        progress: &mut dyn FnMut(Progress<'_>),
    ) -> Result<Report, CaseError> {
        let target = self.target()?;
        // Forget whatever building the lab put on the wire.
        self.settle_and_clear();
        let mut reports: Vec<CaseReport> = Vec::with_capacity(cases.len());
        let mut levels_report = None;
        let mut levels_skipped = None;
        let mut levels_pending = levels;
        for case in cases.iter().map(Some).chain([None]) {
            if super::interrupted() {
                return Err(CaseError::Interrupted);
            }
            let lifecycle_or_end = case.is_none_or(|c| c.section == Section::Lifecycle);
            let child = if lifecycle_or_end {
                levels_pending.take()
            } else {
                None
            };
            if let Some(child) = child {
                progress(Progress::LevelsStart(levels::COMMAND));
                match self.run_levels(&reports, &target, child, progress) {
                    Ok(report) => levels_report = Some(report),
                    Err(_) if super::interrupted() => return Err(CaseError::Interrupted),
                    Err(e) => {
                        let reason = e.to_string();
                        progress(Progress::LevelsSkipped(&reason));
                        levels_skipped = Some(reason);
                    }
                }
                self.settle_and_clear();
            }
            let Some(case) = case else { break };
            let report = self.run_case(case, pinning, &target)?;
            progress(Progress::Case(&report));
            reports.push(report);
        }
        let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .map(|s| s.trim().to_owned())
            .unwrap_or_else(|e| format!("unknown ({e})"));
        let summary = Summary::of(&reports, levels_report.as_ref());
        Ok(Report {
            kernel,
            pinning: pinning.describe(),
            cases: reports,
            levels: levels_report,
            levels_skipped,
            summary,
        })
    }

    /// The levels section; see [`super::levels`].
    fn run_levels(
        &self,
        findings: &[CaseReport],
        target: &Target,
        child: &ChildCommand,
        progress: &mut dyn FnMut(Progress<'_>),
    ) -> Result<LevelsReport, LevelError> {
        let mut cases = Vec::new();
        let mut push = |case: LevelCase, progress: &mut dyn FnMut(Progress<'_>)| {
            progress(Progress::Level(&case));
            cases.push(case);
        };
        self.settle_and_clear();
        let leaked = findings.iter().filter_map(|r| match r.spec.kind {
            CaseKind::Vector(vector) if r.verdict == Verdict::Leaked => Some((vector, r)),
            _ => None,
        });
        for (vector, finding) in leaked {
            push(pinned_finding(vector, finding), progress);
            for &level in AnyVector::Override(vector).levels() {
                if super::interrupted() {
                    return Err(LevelError::Interrupted);
                }
                push(self.level_override(vector, level, child)?, progress);
            }
        }
        let outside = Outside::start(self.chassis.host(), child)?;
        for escape in Escape::ALL {
            for &level in AnyVector::Escape(escape).levels() {
                if super::interrupted() {
                    return Err(LevelError::Interrupted);
                }
                let case = self.level_escape(escape, level, target.other_index, &outside, child)?;
                push(case, progress);
            }
        }
        drop(outside);
        Ok(LevelsReport {
            command: levels::COMMAND.to_owned(),
            cases,
        })
    }

    /// One override vector at one level, under `ifpin exec`.
    fn level_override(
        &self,
        vector: Vector,
        level: Level,
        child: &ChildCommand,
    ) -> Result<LevelCase, LevelError> {
        let run = levels::exec_vector(
            self.chassis.host(),
            child,
            &levels::VectorRun {
                vector: vector.id(),
                args: &[],
                level,
                allow_loopback: false,
            },
            &mut |_| {},
            // The socket stays open while its answers arrive (see `vector`).
            &mut || self.settle(),
        )?;
        let (frames, front_frames) = self.count_run(|_| false);
        let answer: Option<ChildAnswer> = run
            .result()
            .and_then(|value| serde_json::from_value(value).ok());
        let Some(answer) = answer else {
            return Err(refused(vector.id(), level, &run));
        };
        let got_out = frames.front > 0;
        let documented_out = AnyVector::Override(vector).documented_out(level);
        Ok(LevelCase {
            vector: vector.id(),
            kind: "override",
            level,
            exec: true,
            run_as: answer.run_as,
            answer: answer.answer,
            frames,
            blocked: run.blocked(),
            got_out,
            documented_out,
            as_documented: got_out == documented_out,
            ifpin_exit: run.exit(),
            steps: None,
            front_frames,
        })
    }

    /// One escape vector at one level, under `ifpin exec`.
    fn level_escape(
        &self,
        escape: Escape,
        level: Level,
        eth1: LinkIndex,
        outside: &Outside,
        child: &ChildCommand,
    ) -> Result<LevelCase, LevelError> {
        let info = escape.info();
        let args = levels::escape_args(escape, eth1, Some(outside)).to_argv();
        let mut stimulus = Ok(());
        let mut on_line = |line: &str| {
            if line == "ready" && info.needs == Needs::ErrorQueue {
                let icmp =
                    levels::port_unreachable(levels::errqueue_port(), levels::ERRQUEUE_PAYLOAD);
                stimulus = levels::send_from_front(self.chassis.front(), &icmp);
            }
        };
        let run = levels::exec_vector(
            self.chassis.host(),
            child,
            &levels::VectorRun {
                vector: escape.id(),
                args: &args,
                level,
                allow_loopback: info.allow_loopback,
            },
            &mut on_line,
            &mut || {},
        )?;
        stimulus?;
        let killed = run.status.signal().is_some();
        if killed {
            // The vector killed its supervisor: remove what it left once the program is gone.
            levels::cleanup(child)?;
        }
        let joins = info.needs == Needs::Multicast;
        let (frames, front_frames) = self.count_run(|f| joins && levels::is_join_report(f));
        let steps: Option<EscapeReport> = run
            .result()
            .and_then(|value| serde_json::from_value(value).ok());
        if steps.is_none() && run.report.is_none() && !killed {
            return Err(refused(escape.id(), level, &run));
        }
        let answer = match (&steps, run.program_signal()) {
            (_, Some(signal)) => format!("the program was {signal}"),
            (Some(steps), None) => steps.answer(),
            (None, None) => format!("no answer ({})", run.stderr.trim()),
        };
        let got_out = frames.front > 0 || steps.as_ref().is_some_and(|s| (info.got_out)(s));
        let documented_out = AnyVector::Escape(escape).documented_out(level);
        Ok(LevelCase {
            vector: escape.id(),
            kind: "escape",
            level,
            exec: true,
            run_as: run_as_root(level),
            answer,
            frames,
            blocked: run.blocked(),
            got_out,
            documented_out,
            as_documented: got_out == documented_out,
            ifpin_exit: run.exit(),
            steps,
            front_frames,
        })
    }

    /// Settles both links and returns the frames of a run: the frames counted on each link
    /// (plus, on the front link, those of the noise `extra` picks out: membership reports), the
    /// front's decoded; then clears both counters.
    fn count_run(&self, extra: impl Fn(&Frame) -> bool) -> (LinkFrames, Vec<String>) {
        self.settle();
        let extra: Vec<Frame> = self
            .front
            .all_frames()
            .into_iter()
            .filter(|f| f.is_noise() && extra(f))
            .collect();
        let frames = LinkFrames {
            ctl0: self.backplane.total(),
            front: self.front.total() + extra.len(),
        };
        let front_frames = self
            .front
            .frames()
            .iter()
            .chain(&extra)
            .take(FRAMES_SHOWN)
            .map(ToString::to_string)
            .collect();
        self.backplane.clear();
        self.front.clear();
        (frames, front_frames)
    }

    /// Runs one case and judges it.
    pub fn run_case(
        &self,
        case: &CaseSpec,
        pinning: &dyn Pinning,
        target: &Target,
    ) -> Result<CaseReport, CaseError> {
        let mut report = CaseReport::empty(case.clone());
        match case.kind {
            CaseKind::BindOnly { tcp, v6 } => {
                let answer = self.measure(&mut report, || bind_only_exchange(tcp, v6))?;
                report.outcome = describe_answer(&answer);
                report.verdict = if report.frames.front > 0 {
                    Verdict::Leaked
                } else {
                    Verdict::Blind
                };
            }
            CaseKind::BindOnlyIngress => {
                let accepted = self.bind_only_ingress(&mut report)?;
                report.outcome = format!(
                    "listener bound to {} accepted {accepted} connection(s) from the front peer",
                    Chassis::HOST_CTL0_V4
                );
                report.verdict = if accepted > 0 && report.frames.front > 0 {
                    Verdict::Leaked
                } else {
                    Verdict::Blind
                };
            }
            CaseKind::Pinned { tcp, family } => {
                let peer = match family {
                    Family::V4 => SocketAddr::new(IpAddr::V4(Chassis::CONTROL_V4), SERVICE_PORT),
                    Family::V6 => SocketAddr::new(IpAddr::V6(Chassis::CONTROL_V6), SERVICE_PORT),
                    Family::LinkLocal => {
                        SocketAddr::V6(SocketAddrV6::new(Chassis::BACKPLANE_LL, SERVICE_PORT, 0, 0))
                    }
                };
                let answer = self.measure(&mut report, || {
                    if tcp {
                        pinning.tcp_exchange(Chassis::CTL0, peer, EXCHANGE_TIMEOUT)
                    } else {
                        pinning.udp_exchange(Chassis::CTL0, peer, EXCHANGE_TIMEOUT)
                    }
                })?;
                report.outcome = describe_answer(&answer.map_err(|e| e.to_string()));
                report.verdict = if report.frames.front > 0 {
                    Verdict::Leaked
                } else if report.outcome == "answered by backplane" {
                    Verdict::NoLeak
                } else {
                    Verdict::Failed
                };
            }
            CaseKind::PinnedMisuse {
                bind_own_front_link_local,
            } => {
                let eth1 = target.other_index.get();
                let answer = self.measure(&mut report, || {
                    if bind_own_front_link_local {
                        let local = SocketAddrV6::new(Chassis::HOST_ETH1_LL, 0, 0, eth1);
                        let peer = SocketAddr::new(IpAddr::V6(Chassis::CONTROL_V6), SERVICE_PORT);
                        pinning.tcp_exchange_from(
                            Chassis::CTL0,
                            local.into(),
                            peer,
                            EXCHANGE_TIMEOUT,
                        )
                    } else {
                        let peer = SocketAddrV6::new(Chassis::FRONT_LL, SERVICE_PORT, 0, eth1);
                        pinning.tcp_exchange(Chassis::CTL0, peer.into(), EXCHANGE_TIMEOUT)
                    }
                })?;
                report.verdict = match (&answer, report.frames.front) {
                    (_, 1..) => Verdict::Leaked,
                    (Err(_), 0) => Verdict::Refused,
                    (Ok(_), 0) => Verdict::Failed,
                };
                report.outcome = match answer {
                    Ok(text) => format!("answered by {}", text.trim()),
                    Err(e) => format!("refused: {e}"),
                };
            }
            CaseKind::IngressTcp => self.ingress_tcp(&mut report, pinning)?,
            CaseKind::IngressUdp => self.ingress_udp(&mut report, pinning)?,
            CaseKind::Vector(vector) => self.vector(&mut report, vector, pinning, target)?,
            CaseKind::IndexReuse => self.index_reuse(&mut report, pinning)?,
        }
        report.ok = report.verdict.is_good_for(case.section);
        Ok(report)
    }

    /// Runs `f` on a thread in the host namespace and records the frames it caused.
    fn measure<T: Send>(
        &self,
        report: &mut CaseReport,
        f: impl FnOnce() -> T + Send,
    ) -> Result<T, CaseError> {
        let out = self.chassis.host().run(f)?;
        self.count_into(report);
        Ok(out)
    }

    /// Waits until both links have been quiet for [`SETTLE`] (both counters at once).
    fn settle(&self) {
        std::thread::scope(|scope| {
            scope.spawn(|| self.backplane.settle_for(SETTLE));
            self.front.settle_for(SETTLE);
        });
    }

    fn count_into(&self, report: &mut CaseReport) {
        self.count_matching(report, |_| false);
    }

    /// [`DemoLab::count_into`], also returning how many front-link frames match `own`.
    fn count_matching(&self, report: &mut CaseReport, own: impl Fn(&Frame) -> bool) -> usize {
        self.settle();
        let own = self.front.count(own);
        report.frames = LinkFrames {
            ctl0: self.backplane.total(),
            front: self.front.total(),
        };
        report.front_frames = self
            .front
            .frames()
            .iter()
            .take(FRAMES_SHOWN)
            .map(ToString::to_string)
            .collect();
        self.backplane.clear();
        self.front.clear();
        own
    }

    fn settle_and_clear(&self) {
        self.settle();
        self.backplane.clear();
        self.front.clear();
    }

    fn bind_only_ingress(&self, report: &mut CaseReport) -> Result<usize, CaseError> {
        let addr = SocketAddr::new(IpAddr::V4(Chassis::HOST_CTL0_V4), INGRESS_PORT);
        let listener = self
            .chassis
            .host()
            .run(|| nonblocking_listener(TcpListener::bind(addr)))?
            .map_err(|e| setup(report, format!("listening on {addr}: {e}")))?;
        self.chassis
            .front()
            .run(|| TcpStream::connect_timeout(&addr, EXCHANGE_TIMEOUT).map(drop))?
            .ok();
        let accepted = drain_accepts(&listener);
        drop(listener);
        self.count_into(report);
        Ok(accepted.len())
    }

    fn ingress_tcp(&self, report: &mut CaseReport, pinning: &dyn Pinning) -> Result<(), CaseError> {
        let any = SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), INGRESS_PORT);
        let listener = self
            .chassis
            .host()
            .run(|| {
                pinning
                    .tcp_listener(Chassis::CTL0, any)
                    .and_then(|l| nonblocking_listener(Ok(l)).map_err(Into::into))
            })?
            .map_err(|e| setup(report, format!("pinned listener on {any}: {e}")))?;
        let via_front = SocketAddr::new(IpAddr::V4(Chassis::HOST_ETH1_V4), INGRESS_PORT);
        let via_ctl0 = SocketAddr::new(IpAddr::V4(Chassis::HOST_CTL0_V4), INGRESS_PORT);
        let front = self
            .chassis
            .front()
            .run(|| TcpStream::connect_timeout(&via_front, EXCHANGE_TIMEOUT).map(drop))?;
        let backplane = self
            .chassis
            .backplane()
            .run(|| TcpStream::connect_timeout(&via_ctl0, EXCHANGE_TIMEOUT).map(drop))?;
        let accepted = drain_accepts(&listener);
        drop(listener);
        self.count_into(report);
        let from_front = accepted.iter().filter(|p| from_front(p)).count();
        let from_backplane = accepted.len() - from_front;
        report.outcome = format!(
            "front -> {via_front}: {}; backplane -> {via_ctl0}: {}; accepted {from_front} from front, {from_backplane} from backplane",
            describe_connect(&front),
            describe_connect(&backplane),
        );
        report.verdict = judge_ingress(from_front, from_backplane);
        Ok(())
    }

    fn ingress_udp(&self, report: &mut CaseReport, pinning: &dyn Pinning) -> Result<(), CaseError> {
        let any = SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), INGRESS_PORT);
        let socket = self
            .chassis
            .host()
            .run(|| pinning.udp_socket(Chassis::CTL0, any))?
            .map_err(|e| setup(report, format!("pinned UDP socket on {any}: {e}")))?;
        let via_front = SocketAddr::new(IpAddr::V4(Chassis::HOST_ETH1_V4), INGRESS_PORT);
        let via_ctl0 = SocketAddr::new(IpAddr::V4(Chassis::HOST_CTL0_V4), INGRESS_PORT);
        let send = |to: SocketAddr| {
            move || -> std::io::Result<()> {
                let s = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0))?;
                s.send_to(b"ingress", to).map(drop)
            }
        };
        let front = self.chassis.front().run(send(via_front))?;
        let backplane = self.chassis.backplane().run(send(via_ctl0))?;
        let received = drain_datagrams(&socket);
        drop(socket);
        self.count_into(report);
        let from_front = received.iter().filter(|p| from_front(p)).count();
        let from_backplane = received.len() - from_front;
        report.outcome = format!(
            "front -> {via_front}: {}; backplane -> {via_ctl0}: {}; delivered {from_front} from front, {from_backplane} from backplane",
            describe_send(&front),
            describe_send(&backplane),
        );
        report.verdict = judge_ingress(from_front, from_backplane);
        Ok(())
    }

    fn vector(
        &self,
        report: &mut CaseReport,
        vector: Vector,
        pinning: &dyn Pinning,
        target: &Target,
    ) -> Result<(), CaseError> {
        let info = vector.info();
        let result = self.chassis.host().run(|| {
            vectors::with_privilege(info.privilege, || -> Result<_, String> {
                let socket = info
                    .socket
                    .open()
                    .map_err(|e| format!("socket() for {}: {e}", info.id))?;
                pinning
                    .pin(socket.as_fd(), Chassis::CTL0)
                    .map_err(|e| format!("pinning the socket to ctl0: {e}"))?;
                let attempt = vector
                    .attempt(socket.as_fd(), target)
                    .map_err(|e| format!("{e}: {}", e.source))?;
                Ok((attempt, socket))
            })
        })?;
        let (attempt, socket) = result
            .map_err(|e| setup(report, format!("dropping capabilities: {e}")))?
            .map_err(|e| setup(report, e))?;
        // Keep the socket open until the answers have arrived: closed, its port would make
        // the kernel send ICMP port-unreachables, routed by the table (out of the front), which
        // are the kernel's frames, not the vector's. Closing (a TCP FIN) still counts.
        self.settle();
        drop(socket);
        let own = self.count_matching(report, |frame| info.signature.matches(frame, target.port));
        report.vector_frames_on_front = Some(own);
        let leaked = report.frames.front > 0;
        report.verdict = if leaked {
            Verdict::Leaked
        } else {
            Verdict::NoLeak
        };
        let front_index = target.other_index;
        report.outcome = match attempt.bound_after {
            Some(index) if index == front_index => {
                format!("{}; socket now bound to eth1", attempt.answer)
            }
            Some(_) => attempt.answer.to_string(),
            None => format!("{}; socket now unbound", attempt.answer),
        };
        report.as_documented = Some(match info.documented {
            Documented::Leaks => leaked,
            Documented::Contained => !leaked,
            Documented::Refused(errno) => {
                !leaked
                    && matches!(&attempt.answer, vectors::Answer::Refused { errno: e, .. } if e.name() == errno)
            }
        });
        report.documented = Some(info.documented);
        report.documented_in = Some(info.documented_in);
        report.attempt = Some(attempt);
        Ok(())
    }
}

impl DemoLab {
    /// The lifecycle of a binding (`docs/kernel.md`): a socket is bound to an index, so once the
    /// interface is gone and another device takes its index, the socket sends through that
    /// device. A UDP socket pinned to ctl0 sends once
    /// (out of ctl0), ctl0 is deleted, a new veth whose far end is in the front namespace is
    /// created with ctl0's old index, and the same socket sends again. The frames on that new
    /// link (counted at its front end) are reported in the front column, with those on eth1
    /// (the kernel's ICMP error when the front's answer comes back through eth1).
    fn index_reuse(&self, report: &mut CaseReport, pinning: &dyn Pinning) -> Result<(), CaseError> {
        let any = SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0);
        let to = SocketAddr::new(IpAddr::V4(Chassis::CONTROL_V4), SERVICE_PORT);
        let socket = self
            .chassis
            .host()
            .run(|| pinning.udp_socket(Chassis::CTL0, any))?
            .map_err(|e| setup(report, format!("pinned UDP socket: {e}")))?;
        let before = socket.send_to(vectors::PAYLOAD, to);
        self.count_into(report);
        let on_ctl0_before = report.frames.ctl0;
        let old_index = self.chassis.ctl0_index()?;
        self.chassis.delete_ctl0()?;
        self.chassis
            .add_host_link(REUSE_IF, Some(old_index), Peer::Front, REUSE_PEER_IF)?;
        let new_link = FrameCounter::open(self.chassis.front(), REUSE_PEER_IF)?;
        let after = socket.send_to(vectors::PAYLOAD, to);
        // Keep the socket open while the answers arrive (see `vector`).
        new_link.settle_for(SETTLE);
        self.front.settle_for(SETTLE);
        let device = SockRef::from(&socket)
            .device()
            .ok()
            .flatten()
            .map(|name| String::from_utf8_lossy(&name).into_owned())
            .unwrap_or_else(|| "nothing".into());
        drop(socket);
        new_link.settle_for(SETTLE);
        let on_new_link = new_link.total();
        report.frames = LinkFrames {
            ctl0: on_ctl0_before,
            front: on_new_link + self.front.total(),
        };
        report.front_frames = new_link
            .frames()
            .iter()
            .map(|f| format!("{REUSE_IF}: {f}"))
            .chain(self.front.frames().iter().map(|f| format!("eth1: {f}")))
            .take(FRAMES_SHOWN)
            .collect();
        self.front.clear();
        let answer = |r: &std::io::Result<usize>| match r {
            Ok(_) => "accepted".to_owned(),
            Err(e) => vectors::Errno::from_io_error(e).to_string(),
        };
        report.outcome = format!(
            "before: {} ({on_ctl0_before} frame(s) on ctl0); after ctl0 was deleted and {REUSE_IF} \
             took index {old_index}: {}, socket now bound to {device}, {on_new_link} frame(s) \
             on the new link to the front",
            answer(&before),
            answer(&after),
        );
        let leaked = report.frames.front > 0;
        report.verdict = if leaked {
            Verdict::Leaked
        } else {
            Verdict::NoLeak
        };
        report.documented = Some(Documented::Leaks);
        report.documented_in = Some(super::LIFECYCLE_DOC);
        report.as_documented = Some(leaked);
        Ok(())
    }
}

/// What the override vectors aim at in the chassis, given eth1's index.
pub(super) fn chassis_target(eth1: LinkIndex) -> Target {
    Target {
        other_index: eth1,
        other_name: Chassis::ETH1.to_owned(),
        v4: Chassis::CONTROL_V4,
        v6: Chassis::CONTROL_V6,
        other_peer_link_local: Chassis::FRONT_LL,
        other_link_local: Chassis::HOST_ETH1_LL,
        port: SERVICE_PORT,
    }
}

/// The pinned column of an override vector: its kernel finding (a socket pinned by the
/// library, no confinement).
fn pinned_finding(vector: Vector, finding: &CaseReport) -> LevelCase {
    let got_out = finding.verdict == Verdict::Leaked;
    let documented_out = AnyVector::Override(vector).documented_out(Level::Pinned);
    LevelCase {
        vector: vector.id(),
        kind: "override",
        level: Level::Pinned,
        exec: false,
        run_as: vector.info().privilege.to_string(),
        answer: finding.outcome.clone(),
        frames: finding.frames,
        blocked: Default::default(),
        got_out,
        documented_out,
        as_documented: got_out == documented_out,
        ifpin_exit: "not run: the kernel finding above".to_owned(),
        steps: None,
        front_frames: finding.front_frames.clone(),
    }
}

/// What an escape vector runs as: root, with every capability it keeps at `level`.
fn run_as_root(level: Level) -> String {
    match level {
        Level::Sealed => "root, no capabilities".to_owned(),
        _ => "root".to_owned(),
    }
}

fn refused(vector: &'static str, level: Level, run: &levels::ExecRun) -> LevelError {
    LevelError::Refused {
        vector,
        level,
        stderr: format!("{}: {}", run.exit(), run.stderr.trim()),
    }
}

fn setup(report: &CaseReport, what: String) -> CaseError {
    CaseError::Setup {
        case: report.spec.id.clone(),
        what,
    }
}

fn judge_ingress(from_front: usize, from_backplane: usize) -> Verdict {
    if from_front > 0 {
        Verdict::Leaked
    } else if from_backplane > 0 {
        Verdict::Refused
    } else {
        // Nothing got in at all: the positive control failed, so "refused" proves nothing.
        Verdict::Failed
    }
}

fn from_front(peer: &SocketAddr) -> bool {
    peer.ip() == IpAddr::V4(Chassis::FRONT_V4)
}

fn describe_answer(answer: &Result<String, String>) -> String {
    match answer {
        Ok(text) => format!("answered by {}", text.trim()),
        Err(e) => format!("no answer: {e}"),
    }
}

fn describe_connect(result: &std::io::Result<()>) -> String {
    match result {
        Ok(()) => "connected".into(),
        Err(e) => match e.raw_os_error() {
            Some(libc::ECONNREFUSED) => "ECONNREFUSED".into(),
            _ => e.to_string(),
        },
    }
}

fn describe_send(result: &std::io::Result<()>) -> String {
    match result {
        Ok(()) => "sent".into(),
        Err(e) => e.to_string(),
    }
}

fn nonblocking_listener(listener: std::io::Result<TcpListener>) -> std::io::Result<TcpListener> {
    let listener = listener?;
    listener.set_nonblocking(true)?;
    Ok(listener)
}

/// Accepts every connection already queued on a non-blocking listener.
fn drain_accepts(listener: &TcpListener) -> Vec<SocketAddr> {
    let mut peers = Vec::new();
    while let Ok((_stream, peer)) = listener.accept() {
        peers.push(peer);
    }
    peers
}

/// Receives every datagram that arrives within a short wait.
fn drain_datagrams(socket: &UdpSocket) -> Vec<SocketAddr> {
    let mut peers = Vec::new();
    let deadline = Instant::now() + Duration::from_millis(200);
    let mut buf = [0u8; 64];
    while Instant::now() < deadline {
        if socket
            .set_read_timeout(Some(Duration::from_millis(50)))
            .is_err()
        {
            break;
        }
        if let Ok((_, peer)) = socket.recv_from(&mut buf) {
            peers.push(peer);
        }
    }
    peers
}

/// The negative control: a socket bound to ctl0's address (no `SO_BINDTODEVICE`), talking to
/// the control address, which the routing table sends out of the front panel.
fn bind_only_exchange(tcp: bool, v6: bool) -> Result<String, String> {
    let (local, peer): (IpAddr, IpAddr) = if v6 {
        (Chassis::HOST_CTL0_V6.into(), Chassis::CONTROL_V6.into())
    } else {
        (Chassis::HOST_CTL0_V4.into(), Chassis::CONTROL_V4.into())
    };
    let peer = SocketAddr::new(peer, SERVICE_PORT);
    let local = SocketAddr::new(local, 0);
    let text = |e: std::io::Error| e.to_string();
    if tcp {
        let socket = Socket::new(Domain::for_address(peer), Type::STREAM, Some(Protocol::TCP))
            .map_err(text)?;
        socket.bind(&local.into()).map_err(text)?;
        socket
            .connect_timeout(&peer.into(), EXCHANGE_TIMEOUT)
            .map_err(text)?;
        read_answer(TcpStream::from(socket), EXCHANGE_TIMEOUT)
    } else {
        let socket = UdpSocket::bind(local).map_err(text)?;
        udp_round_trip(&socket, peer)
    }
}

/// Reads what the peer of `stream` writes before closing, waiting at most `timeout` per read
/// (the responders write their name and a newline).
pub fn read_answer(mut stream: TcpStream, timeout: Duration) -> Result<String, String> {
    stream
        .set_read_timeout(Some(timeout))
        .map_err(|e| e.to_string())?;
    let mut text = String::new();
    stream
        .read_to_string(&mut text)
        .map_err(|e| format!("reading the answer: {e}"))?;
    Ok(text)
}

fn udp_round_trip(socket: &UdpSocket, peer: SocketAddr) -> Result<String, String> {
    socket
        .set_read_timeout(Some(EXCHANGE_TIMEOUT))
        .map_err(|e| e.to_string())?;
    socket
        .send_to(b"who are you?", peer)
        .map_err(|e| format!("send_to {peer}: {e}"))?;
    let mut buf = [0u8; 256];
    let (len, _) = socket
        .recv_from(&mut buf)
        .map_err(|e| format!("waiting for an answer: {e}"))?;
    Ok(String::from_utf8_lossy(&buf[..len]).into_owned())
}

/// Pins with a bare `SO_BINDTOIFINDEX`, read back, and nothing else: no link-local scope
/// handling, no check after `bind()`. For the fixture tests that measure the kernel alone;
/// `ifpin demo` uses the library ([`super::LibraryPinning`]) instead.
#[derive(Debug, Default, Clone, Copy)]
pub struct BarePinning;

impl BarePinning {
    fn index(interface: &str) -> Result<LinkIndex, PinningError> {
        let index = nix::net::if_::if_nametoindex(interface)
            .map_err(|e| format!("interface {interface}: {e}"))?;
        LinkIndex::new(index).ok_or_else(|| format!("interface {interface}: index 0").into())
    }

    fn socket(interface: &str, peer: SocketAddr, ty: Type) -> Result<Socket, PinningError> {
        let socket = Socket::new(Domain::for_address(peer), ty, None)?;
        vectors::pin_to_index(&socket, Self::index(interface)?)?;
        Ok(socket)
    }

    /// A link-local peer without a scope gets the pinned interface's index (the kernel would
    /// refuse it otherwise).
    fn scoped(interface: &str, peer: SocketAddr) -> Result<SocketAddr, PinningError> {
        Ok(match peer {
            SocketAddr::V6(v6) if v6.ip().is_unicast_link_local() && v6.scope_id() == 0 => {
                SocketAddr::V6(SocketAddrV6::new(
                    *v6.ip(),
                    v6.port(),
                    0,
                    Self::index(interface)?.get(),
                ))
            }
            other => other,
        })
    }
}

impl Pinning for BarePinning {
    fn describe(&self) -> String {
        "bare SO_BINDTOIFINDEX (netlab)".into()
    }

    fn pin(&self, socket: BorrowedFd<'_>, interface: &str) -> Result<(), PinningError> {
        Ok(vectors::pin_to_index(socket, Self::index(interface)?)?)
    }

    fn tcp_exchange(
        &self,
        interface: &str,
        peer: SocketAddr,
        timeout: Duration,
    ) -> Result<String, PinningError> {
        let peer = Self::scoped(interface, peer)?;
        let socket = Self::socket(interface, peer, Type::STREAM)?;
        socket.connect_timeout(&SockAddr::from(peer), timeout)?;
        Ok(read_answer(TcpStream::from(socket), EXCHANGE_TIMEOUT)?)
    }

    fn tcp_exchange_from(
        &self,
        interface: &str,
        local: SocketAddr,
        peer: SocketAddr,
        timeout: Duration,
    ) -> Result<String, PinningError> {
        let peer = Self::scoped(interface, peer)?;
        let socket = Self::socket(interface, peer, Type::STREAM)?;
        socket.bind(&local.into())?;
        socket.connect_timeout(&SockAddr::from(peer), timeout)?;
        Ok(read_answer(TcpStream::from(socket), EXCHANGE_TIMEOUT)?)
    }

    fn udp_exchange(
        &self,
        interface: &str,
        peer: SocketAddr,
        _timeout: Duration,
    ) -> Result<String, PinningError> {
        let peer = Self::scoped(interface, peer)?;
        let socket = Self::socket(interface, peer, Type::DGRAM)?;
        let any: SocketAddr = match peer {
            SocketAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
            SocketAddr::V6(_) => (Ipv6Addr::UNSPECIFIED, 0).into(),
        };
        socket.bind(&any.into())?;
        Ok(udp_round_trip(&UdpSocket::from(socket), peer)?)
    }

    fn tcp_listener(&self, interface: &str, addr: SocketAddr) -> Result<TcpListener, PinningError> {
        let socket = Self::socket(interface, addr, Type::STREAM)?;
        socket.set_reuse_address(true)?;
        socket.bind(&addr.into())?;
        socket.listen(16)?;
        Ok(socket.into())
    }

    fn udp_socket(&self, interface: &str, addr: SocketAddr) -> Result<UdpSocket, PinningError> {
        let socket = Self::socket(interface, addr, Type::DGRAM)?;
        socket.bind(&addr.into())?;
        Ok(socket.into())
    }
}
