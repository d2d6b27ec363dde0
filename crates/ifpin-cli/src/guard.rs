//! `ifpin guard`: hold the whole network namespace to the policy, say who tried, report.
//!
//! Everything that touches the kernel lives in `ifpin::guard` (the nftables table, the NFLOG
//! reader, owners) and `ifpin::audit`/`ifpin::linkwatch`; this module checks the arguments,
//! binds what can be taken by someone else (the metrics address, the NFLOG group) *before*
//! installing anything, then runs the loop: drops → flows → events, link changes → rules,
//! audit rounds → violations, SIGHUP → reload, and writes events and metrics.

mod metrics;

use std::collections::HashMap;
use std::io::{IsTerminal, Write};
use std::net::SocketAddr;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context, anyhow};
use ifpin::Policy;
use ifpin::audit::AuditOptions;
use ifpin::guard::flows::{FlowKey, FlowTable, Recorded};
use ifpin::guard::nflog::{LogReader, LoggedPacket};
use ifpin::guard::notify::{Notifier, watchdog_interval};
use ifpin::guard::owner::{self, Owner};
use ifpin::guard::violations::{ViolationRecord, ViolationTracker};
use ifpin::guard::{self as g, GuardOptions, PlaneBinding};
use ifpin::linkwatch::{LinkNotice, LinkWatch};
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::signal::{SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use serde_json::{Value, json};

use crate::exit;
use metrics::{
    DropLabels, KernelLabels, Metrics, PlaneEvent, PlaneLabel, PlaneRule, PlaneState, ResultLabel,
};

/// Arguments of `ifpin guard`.
#[derive(clap::Args, Debug)]
#[command(
    about = "Hold this network namespace to the policy: drop plane traffic on other interfaces, name who tried, export metrics",
    after_help = "Run `ifpin guard --help` for what is held, the events and the metrics.",
    after_long_help = LONG_HELP
)]
pub struct Args {
    /// The policy file (TOML) to enforce: the planes, their interfaces, prefixes and ports.
    #[arg(long, value_name = "FILE", required_unless_present_any = ["check", "remove"])]
    policy: Option<PathBuf>,

    /// Validate FILE and print the rules that would be enforced, changing nothing.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["policy", "remove"])]
    check: Option<PathBuf>,

    /// Remove the guard's rules from this network namespace (after the guard has stopped).
    #[arg(long, conflicts_with = "policy")]
    remove: bool,

    /// Count and report what would be dropped, but drop nothing.
    #[arg(long)]
    observe: bool,

    /// How often the socket audit runs (as `ifpin audit --policy`): 500ms, 10s, 1m.
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = parse_interval)]
    audit_interval: Duration,

    /// How often flows with new drops are reported again with their counts.
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = parse_interval)]
    report_interval: Duration,

    /// Serve Prometheus metrics on http://ADDR:PORT/metrics (e.g. 127.0.0.1:9847).
    #[arg(long, value_name = "ADDR:PORT")]
    metrics: Option<SocketAddr>,

    /// Also write the metrics to PATH for node_exporter's textfile collector (atomically,
    /// every second while something changes). PATH should end in `.prom`.
    #[arg(long, value_name = "PATH")]
    textfile: Option<PathBuf>,

    /// The NFLOG group drops are logged to (one reader per group and namespace).
    #[arg(long, value_name = "N", default_value_t = g::DEFAULT_LOG_GROUP)]
    log_group: u16,

    /// How many flows the drop table holds; drops of further flows are still counted, per
    /// plane and rule.
    #[arg(long, value_name = "N", default_value_t = 4096)]
    max_flows: usize,

    /// Print JSON lines even on a terminal (they are the default when stdout is not one).
    #[arg(long)]
    pub(crate) json: bool,
}

const LONG_HELP: &str = r#"What is held, for every plane of the policy, in this network namespace, whoever sends
(every process in every cgroup, the kernel's own resets and ICMP errors, forwarded packets):

  egress          a packet whose destination OR source is in the plane's prefixes, leaving
                  through any interface but the plane's, is dropped
  spoofed-source  a packet arriving through another interface with a source in the plane's
                  prefixes is dropped
  plane-port      a new TCP connection or a UDP datagram to one of the plane's ports,
                  arriving through another interface, is dropped

"The plane's interface" is its index AND its name: a device that takes a deleted interface's
index, or a new device of the same name at another index, does not pass (fail closed, at
once). When the plane's interface comes back, the guard re-points the rules to it. Loopback
always passes.

The rules are two nftables tables, `ip ifpin` and `ip6 ifpin` (see `nft list ruleset`),
written in one transaction. They stay when the guard exits or is killed (fail closed); the
next start replaces them in one transaction (no gap, no duplicate). `ifpin guard --remove`
removes them.

Events: one JSON object per line on stdout (readable lines on a terminal), with a "type":
  started, ready          the rules are in place (adopted: earlier rules were replaced)
  drop                    the first dropped packet of a flow: rule, plane, interface,
                          direction, protocol, addresses, ports, and for a local socket its
                          owner (pids, command, uid, cgroup, systemd unit)
  flow                    a flow's count, first and last seen, every --report-interval
  overflow                drops counted beyond --max-flows flows
  violation, violation-cleared
                          the audit found a socket breaking a rule / it is gone
  link                    a plane's interface is gone, returned, moved or its index taken
  reload, reload-failed   SIGHUP: the new policy is in force / it was refused, the old stays
  rules-restored          the table was deleted by someone else; the guard installed it again
                          (checked every audit round)
  log-overrun             the kernel dropped log messages (the drops themselves still hold)
  error, stopping

Metrics (--metrics, --textfile), prefix ifpin_guard_: drops_total{plane,rule,interface,
direction,action}, kernel_rule_packets{plane,rule,family} (the rules' own counters, read
every audit round), violations{plane,rule}, violations_seen_total, plane_sockets{plane,state},
plane_interface_up{plane}, link_events_total{plane,event}, policy_reloads_total{result},
rules_restored_total, log_overruns_total, audit_errors_total, flows_tracked, up, ready,
observe_mode, last_audit_timestamp_seconds.

Signals: SIGHUP reloads the policy; SIGTERM/SIGINT stop the guard (the rules stay).
Under systemd (Type=notify): READY=1 once the rules hold, WATCHDOG=1 when WatchdogSec is set.

Exit status: 0 stopped by a signal, or --check/--remove done; 2 bad input (policy errors,
the metrics address or log group in use, no privilege, a kernel without nf_tables/NFLOG),
reported before anything is installed."#;

/// The intervals of `guard`: from 50 ms to 24 h, in the syntax of [`crate::duration`].
fn parse_interval(text: &str) -> Result<Duration, String> {
    crate::duration::parse(
        text,
        Duration::from_millis(50)..=Duration::from_secs(86_400),
    )
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    if let Some(path) = &args.check {
        return check(path, &args);
    }
    if args.remove {
        let removed = g::remove(g::TABLE).map_err(kernel_error)?;
        if removed {
            println!("removed the guard's rules (tables {})", tables());
        } else {
            println!(
                "nothing to remove: no table {} in this network namespace",
                tables()
            );
        }
        return Ok(ExitCode::from(exit::OK));
    }
    let path = args.policy.clone().expect("clap requires --policy");
    Guard::start(&path, &args)?.run()
}

/// `ip ifpin and ip6 ifpin`.
fn tables() -> String {
    format!("ip {0} and ip6 {0}", g::TABLE)
}

fn kernel_error(err: g::GuardError) -> anyhow::Error {
    anyhow::Error::new(err)
}

fn options(args: &Args) -> GuardOptions {
    GuardOptions {
        observe: args.observe,
        log_group: args.log_group,
        table: g::TABLE.to_owned(),
    }
}

fn check(path: &Path, args: &Args) -> anyhow::Result<ExitCode> {
    let policy = Policy::load(path).map_err(|e| anyhow!(e))?;
    let bindings = PlaneBinding::resolve_all(&policy);
    let table = g::ruleset(&policy, &bindings, &options(args));
    println!(
        "{}: {} plane(s), valid",
        path.display(),
        policy.planes().len()
    );
    for (plane, b) in policy.planes().iter().zip(&bindings) {
        let at = match b.index {
            Some(i) => format!("{} (index {i})", b.name),
            None => format!(
                "{} (not in this network namespace: its traffic would be dropped on every interface until it appears)",
                if b.name.is_empty() {
                    plane.interface.to_string()
                } else {
                    b.name.clone()
                }
            ),
        };
        println!(
            "  plane {:?}: interface {at}; {} prefix(es), {} port(s)",
            plane.name,
            plane.prefixes.len(),
            plane.ports.len()
        );
    }
    println!(
        "\nwould install{} (nothing was changed):\n",
        if args.observe { ", observing only" } else { "" }
    );
    print!("{}", g::render(&table));
    Ok(ExitCode::from(exit::OK))
}

/// How events are printed.
struct Out {
    json: bool,
}

impl Out {
    fn emit(&self, mut event: Value) {
        let now = SystemTime::now();
        event["time"] = Value::String(rfc3339(now));
        let mut stdout = std::io::stdout().lock();
        if self.json {
            let _ = writeln!(stdout, "{event}");
        } else {
            let _ = writeln!(stdout, "{}", readable(&event));
        }
        let _ = stdout.flush();
    }
}

/// One line for a human: time, type, then the fields.
fn readable(event: &Value) -> String {
    let time = event["time"]
        .as_str()
        .unwrap_or("")
        .get(11..19)
        .unwrap_or("");
    let ty = event["type"].as_str().unwrap_or("?");
    let text = |key: &str| match &event[key] {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    };
    let summary = match ty {
        "drop" | "flow" => {
            let end = |addr: &str, port: &str| {
                let addr = text(addr);
                let port = text(port);
                match (addr.contains(':'), port.is_empty()) {
                    (_, true) => addr,
                    (true, false) => format!("[{addr}]:{port}"),
                    (false, false) => format!("{addr}:{port}"),
                }
            };
            let via = if event["direction"] == "egress" {
                "out"
            } else {
                "in"
            };
            let who = match (&event["owner"], text("sender").as_str()) {
                (Value::Object(o), _) if o.get("command").is_some_and(Value::is_string) => {
                    let mut who = format!(
                        " by {} (pids {}",
                        o["command"].as_str().unwrap_or(""),
                        o["pids"]
                    );
                    if let Some(unit) = o.get("unit").and_then(Value::as_str) {
                        who.push_str(&format!(", unit {unit}"));
                    }
                    who.push(')');
                    who
                }
                (_, sender) => format!(" by {sender}"),
            };
            Some(format!(
                "{} {} plane {}: {} {} -> {} {via} {}{who}; {} packet(s){}",
                text("action"),
                text("rule"),
                text("plane"),
                text("protocol"),
                end("src", "sport"),
                end("dst", "dport"),
                text("interface"),
                text("count"),
                if ty == "flow" {
                    format!(" ({} new)", text("new"))
                } else {
                    String::new()
                },
            ))
        }
        "violation" | "violation-cleared" => Some(format!(
            "{} plane {}: {} {} -> {} ({}): {}",
            text("rule"),
            text("plane"),
            text("protocol"),
            text("local"),
            text("remote"),
            text("command"),
            text("reason"),
        )),
        "link" => Some(format!(
            "plane {}: {} {} (index {}): {}",
            text("plane"),
            text("event"),
            text("interface"),
            text("index"),
            text("detail"),
        )),
        _ => None,
    };
    if let Some(summary) = summary {
        return format!("{time} {ty} {summary}");
    }
    let mut line = format!("{time} {ty}");
    if let Some(map) = event.as_object() {
        for (k, v) in map {
            if k == "type" || k == "time" {
                continue;
            }
            match v {
                Value::String(s) => line.push_str(&format!(" {k}={s}")),
                Value::Null => {}
                other => line.push_str(&format!(" {k}={other}")),
            }
        }
    }
    line
}

/// `YYYY-MM-DDTHH:MM:SS.mmmZ`.
fn rfc3339(t: SystemTime) -> String {
    let d = t.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs();
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = if month <= 2 { y + 1 } else { y };
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        d.subsec_millis()
    )
}

/// The running guard.
struct Guard {
    policy: Policy,
    policy_path: PathBuf,
    options: GuardOptions,
    bindings: Vec<PlaneBinding>,
    out: Out,
    metrics: Arc<Metrics>,
    textfile: Option<PathBuf>,
    log: LogReader,
    links: LinkWatch,
    signals: SignalFd,
    notifier: Option<Notifier>,
    flows: FlowTable,
    pending_owner: Vec<FlowKey>,
    last_owner_lookup: Option<Instant>,
    tracker: ViolationTracker,
    names: HashMap<u32, String>,
    audit_interval: Duration,
    report_interval: Duration,
    metrics_dirty: bool,
    gone_index: HashMap<String, u32>,
}

impl Guard {
    fn start(path: &Path, args: &Args) -> anyhow::Result<Guard> {
        // 1. Everything that can be refused, before anything is installed.
        let policy = Policy::load(path).map_err(|e| anyhow!(e))?;
        let listener = match args.metrics {
            Some(addr) => Some(metrics::bind(addr)?),
            None => None,
        };
        if let Some(textfile) = &args.textfile {
            metrics::check_textfile(textfile)?;
        }
        let log = LogReader::bind(args.log_group).map_err(|e| {
            if e.is_permission() {
                anyhow!(e).context(
                    "ifpin guard needs root (CAP_NET_ADMIN) to read drop logs and install rules",
                )
            } else {
                anyhow!(e)
            }
        })?;
        let links = LinkWatch::new().context("cannot watch link changes")?;
        let mut mask = SigSet::empty();
        for s in [Signal::SIGHUP, Signal::SIGTERM, Signal::SIGINT] {
            mask.add(s);
        }
        mask.thread_block()
            .context("cannot block SIGHUP/SIGTERM/SIGINT")?;
        let signals = SignalFd::with_flags(&mask, SfdFlags::SFD_NONBLOCK | SfdFlags::SFD_CLOEXEC)
            .context("cannot create a signalfd")?;
        let notifier = Notifier::from_env().context("cannot use $NOTIFY_SOCKET")?;

        let metrics = Arc::new(Metrics::new());
        metrics.up.set(1);
        metrics.observe.set(i64::from(args.observe));
        if let Some(listener) = listener {
            metrics::serve(listener, metrics.clone());
        }
        let mut guard = Guard {
            policy,
            policy_path: path.to_owned(),
            options: options(args),
            bindings: Vec::new(),
            out: Out {
                json: args.json || !std::io::stdout().is_terminal(),
            },
            metrics,
            textfile: args.textfile.clone(),
            log,
            links,
            signals,
            notifier,
            flows: FlowTable::new(args.max_flows),
            pending_owner: Vec::new(),
            last_owner_lookup: None,
            tracker: ViolationTracker::new(),
            names: HashMap::new(),
            audit_interval: args.audit_interval,
            report_interval: args.report_interval,
            metrics_dirty: true,
            gone_index: HashMap::new(),
        };
        // 2. Install (one transaction: a failure installs nothing).
        guard.refresh_names();
        guard.bindings = PlaneBinding::resolve_all(&guard.policy);
        let table = g::ruleset(&guard.policy, &guard.bindings, &guard.options);
        let installed = g::install(&table).map_err(|e| {
            if e.is_permission() {
                anyhow!(e).context("ifpin guard needs root (CAP_NET_ADMIN)")
            } else {
                anyhow!(e)
            }
        })?;
        guard.out.emit(json!({
            "type": "started",
            "policy": guard.policy_path.display().to_string(),
            "tables": [format!("ip {}", g::TABLE), format!("ip6 {}", g::TABLE)],
            "adopted": installed.adopted,
            "mode": if guard.options.observe { "observe" } else { "enforce" },
            "log_group": guard.options.log_group,
            "planes": guard.planes_json(),
        }));
        for b in &guard.bindings {
            guard
                .metrics
                .plane_interface_up
                .get_or_create(&PlaneLabel {
                    plane: b.plane.clone(),
                })
                .set(i64::from(b.index.is_some()));
            if b.index.is_none() {
                guard.out.emit(json!({
                    "type": "link", "plane": b.plane, "event": "missing",
                    "interface": b.name,
                    "detail": "the plane's interface does not exist: its traffic is dropped on every interface until it appears",
                }));
            }
        }
        Ok(guard)
    }

    fn planes_json(&self) -> Value {
        Value::Array(
            self.policy
                .planes()
                .iter()
                .zip(&self.bindings)
                .map(|(p, b)| {
                    json!({
                        "plane": p.name, "interface": b.name, "index": b.index,
                        "prefixes": p.prefixes.iter().map(ToString::to_string).collect::<Vec<_>>(),
                        "ports": p.ports,
                    })
                })
                .collect(),
        )
    }

    fn refresh_names(&mut self) {
        self.names.clear();
        if let Ok(list) = nix_ifnames() {
            self.names = list;
        }
    }

    fn ifname(&self, index: Option<u32>) -> String {
        match index {
            None | Some(0) => String::new(),
            Some(i) => self
                .names
                .get(&i)
                .cloned()
                .unwrap_or_else(|| format!("if{i}")),
        }
    }

    fn run(mut self) -> anyhow::Result<ExitCode> {
        self.metrics.ready.set(1);
        if let Some(n) = &self.notifier {
            let _ = n.send("READY=1\nSTATUS=holding the policy");
        }
        self.out.emit(json!({"type": "ready"}));
        let watchdog = watchdog_interval();
        let start = Instant::now();
        let mut next_audit = start;
        let mut next_report = start + self.report_interval;
        let mut next_watchdog = watchdog.map(|w| start + w);
        let mut next_textfile = start;
        loop {
            let now = Instant::now();
            if now >= next_audit {
                self.audit_round();
                next_audit = Instant::now() + self.audit_interval;
            }
            if now >= next_report {
                self.report_flows();
                next_report = now + self.report_interval;
            }
            if let (Some(at), Some(every)) = (next_watchdog, watchdog) {
                if now >= at {
                    if let Some(n) = &self.notifier {
                        let _ = n.send("WATCHDOG=1");
                    }
                    next_watchdog = Some(now + every);
                }
            }
            if !self.pending_owner.is_empty() {
                self.resolve_owners();
            }
            if self.metrics_dirty && now >= next_textfile {
                self.write_textfile();
                next_textfile = now + Duration::from_secs(1);
            }
            let mut wake = next_audit.min(next_report);
            if let Some(at) = next_watchdog {
                wake = wake.min(at);
            }
            if !self.pending_owner.is_empty() {
                wake = wake.min(Instant::now() + Duration::from_millis(100));
            }
            if self.metrics_dirty && self.textfile.is_some() {
                wake = wake.min(next_textfile);
            }
            let timeout = wake.saturating_duration_since(Instant::now());
            let (sig, link, log) = {
                let mut fds = [
                    PollFd::new(self.signals.as_fd(), PollFlags::POLLIN),
                    PollFd::new(self.links.as_fd(), PollFlags::POLLIN),
                    PollFd::new(self.log.as_fd(), PollFlags::POLLIN),
                ];
                let ms = PollTimeout::try_from(timeout.as_millis().min(60_000) as i32 + 1)
                    .unwrap_or(PollTimeout::MAX);
                match poll(&mut fds, ms) {
                    Ok(_) => {}
                    Err(nix::errno::Errno::EINTR) => continue,
                    Err(e) => return Err(anyhow!(e).context("poll")),
                }
                let ready = |f: &PollFd| f.revents().is_some_and(|r| !r.is_empty());
                (ready(&fds[0]), ready(&fds[1]), ready(&fds[2]))
            };
            if log {
                self.read_drops()?;
            }
            if link {
                self.links_changed()?;
            }
            if sig {
                while let Ok(Some(info)) = self.signals.read_signal() {
                    match Signal::try_from(info.ssi_signo as i32) {
                        Ok(Signal::SIGHUP) => self.reload(),
                        Ok(s) => return Ok(self.stop(s)),
                        Err(_) => {}
                    }
                }
            }
        }
    }

    fn stop(mut self, signal: Signal) -> ExitCode {
        if let Some(n) = &self.notifier {
            let _ = n.send("STOPPING=1");
        }
        // Report what is still counted, then leave the rules in force.
        if let Ok(batch) = self.log.read(100_000) {
            self.take_drops(batch.packets);
        }
        self.resolve_owners_now();
        self.report_flows();
        self.kernel_counts();
        self.metrics.ready.set(0);
        self.metrics.up.set(0);
        self.write_textfile();
        self.out.emit(json!({
            "type": "stopping",
            "signal": signal.as_str(),
            "rules": format!("kept: tables {} stay in force (fail closed); `ifpin guard --remove` removes them", tables()),
        }));
        ExitCode::from(exit::OK)
    }

    fn write_textfile(&mut self) {
        self.metrics_dirty = false;
        if let Some(path) = &self.textfile {
            if let Err(e) = metrics::write_textfile(path, &self.metrics) {
                self.out.emit(json!({"type": "error", "what": format!("writing --textfile {}", path.display()), "error": e.to_string()}));
            }
        }
    }

    fn read_drops(&mut self) -> anyhow::Result<()> {
        let batch = self.log.read(20_000).map_err(|e| anyhow!(e))?;
        if batch.overruns > 0 {
            self.metrics.log_overruns.inc_by(batch.overruns);
            self.out.emit(json!({
                "type": "log-overrun",
                "times": batch.overruns,
                "detail": "the kernel dropped drop-log messages (the guard fell behind); the packets were still dropped",
            }));
        }
        self.take_drops(batch.packets);
        Ok(())
    }

    fn take_drops(&mut self, packets: Vec<LoggedPacket>) {
        if packets.is_empty() {
            return;
        }
        let now = SystemTime::now();
        let instant = Instant::now();
        let action = if self.options.observe {
            "observe"
        } else {
            "drop"
        };
        // Counted per (rule, plane, interface) for the batch, then added to the metrics once
        // per label set: a flood costs a hash lookup per packet, not a metric lookup.
        let mut counts: HashMap<(g::LogRule, &str, Option<u32>), u64> = HashMap::new();
        for p in &packets {
            let index = match p.rule {
                g::LogRule::Egress => p.out_index,
                _ => p.in_index,
            };
            *counts.entry((p.rule, p.plane.as_str(), index)).or_default() += 1;
            if let Recorded::New(key) = self.flows.record(p, now, instant) {
                self.pending_owner.push(key);
            }
        }
        for ((rule, plane, index), n) in counts {
            self.metrics
                .drops
                .get_or_create(&DropLabels {
                    plane: plane.to_owned(),
                    rule: rule.as_str().to_owned(),
                    interface: self.ifname(index),
                    direction: rule.direction().to_owned(),
                    action: action.to_owned(),
                })
                .inc_by(n);
        }
        self.metrics.flows_tracked.set(self.flows.len() as i64);
        self.metrics_dirty = true;
    }

    /// Looks up owners for new flows, at most every 200 ms (one sock_diag dump and one /proc
    /// pass each time, for at most 64 flows: the rest are reported without a lookup).
    fn resolve_owners(&mut self) {
        if self
            .last_owner_lookup
            .is_some_and(|t| t.elapsed() < Duration::from_millis(200))
        {
            return;
        }
        self.resolve_owners_now();
    }

    fn resolve_owners_now(&mut self) {
        if self.pending_owner.is_empty() {
            return;
        }
        self.last_owner_lookup = Some(Instant::now());
        let keys = std::mem::take(&mut self.pending_owner);
        let (lookup, skipped): (Vec<_>, Vec<_>) =
            keys.into_iter().enumerate().partition(|(i, _)| *i < 64);
        let local: Vec<LoggedPacket> = lookup
            .iter()
            .filter_map(|(_, k)| self.flows.get(k).map(|f| f.first.clone()))
            .filter(|p| p.rule == g::LogRule::Egress && p.in_index.is_none())
            .collect();
        let refs: Vec<&LoggedPacket> = local.iter().collect();
        let owners = owner::lookup(&refs);
        let mut found: HashMap<FlowKey, Option<Owner>> = HashMap::new();
        for (p, o) in local.iter().zip(owners) {
            found.insert(FlowKey::of(p), o);
        }
        let looked_up = lookup.len();
        for (i, key) in lookup.into_iter().chain(skipped) {
            let owner = found.remove(&key).flatten();
            if let Some(flow) = self.flows.get_mut(&key) {
                flow.owner = owner;
                flow.owner_done = true;
                flow.reported = flow.count;
            }
            let mut event = self.flow_json(&key);
            if event.is_null() {
                continue;
            }
            event["type"] = json!("drop");
            let local = key.rule == g::LogRule::Egress && key.in_index.is_none();
            if local && i >= looked_up {
                event["owner_lookup"] =
                    json!("skipped: more than 64 new flows at once (at most 64 per lookup)");
            }
            self.out.emit(event);
        }
    }

    fn flow_json(&self, key: &FlowKey) -> Value {
        let Some(flow) = self.flows.get(key) else {
            return Value::Null;
        };
        let p = &flow.first;
        let local = p.in_index.is_none();
        let sender = if local {
            match (&flow.owner, p.is_kernel_answer()) {
                (Some(o), _) if !o.pids.is_empty() => "process",
                // The socket was closed before the lookup: NFLOG's uid is what is left.
                (Some(_), _) => "local-socket",
                (None, true) => "kernel",
                (None, false) => "unknown",
            }
        } else {
            "remote"
        };
        let ports = matches!(p.proto, g::nflog::Proto::Tcp | g::nflog::Proto::Udp);
        json!({
            "plane": key.plane,
            "rule": key.rule.as_str(),
            "direction": key.rule.direction(),
            "interface": match key.rule { g::LogRule::Egress => self.ifname(key.out_index), _ => self.ifname(key.in_index) },
            "in_interface": self.ifname(key.in_index),
            "out_interface": self.ifname(key.out_index),
            "protocol": key.proto.name(),
            "src": key.src.to_string(),
            "dst": key.dst.to_string(),
            "sport": if ports { Some(key.sport) } else { None },
            "dport": if ports { Some(key.dport) } else { None },
            "icmp_type": if ports { None } else { Some(key.sport) },
            "tcp_flags": if p.proto == g::nflog::Proto::Tcp { Some(tcp_flags(p.tcp_flags)) } else { None },
            "sender": sender,
            "owner": flow.owner,
            "action": if self.options.observe { "observed" } else { "dropped" },
            "count": flow.count,
            "first_seen": rfc3339(flow.first_seen),
            "last_seen": rfc3339(flow.last_seen),
        })
    }

    fn report_flows(&mut self) {
        let updates = self.flows.take_updates();
        for (key, flow) in updates {
            // The first packet was already reported by its `drop` event.
            if !flow.owner_done {
                continue;
            }
            let mut event = self.flow_json(&key);
            event["type"] = json!("flow");
            event["new"] = json!(flow.count - flow.reported);
            self.out.emit(event);
        }
        for ((rule, plane), o) in self.flows.take_overflow() {
            self.out.emit(json!({
                "type": "overflow", "plane": plane, "rule": rule.as_str(),
                "count": o.count, "new": o.count - o.reported,
                "detail": "drops of flows beyond --max-flows, counted here",
            }));
        }
        self.flows.expire(Instant::now(), self.report_interval * 3);
        self.metrics.flows_tracked.set(self.flows.len() as i64);
    }

    /// Reads the rules' own packet counters into the metrics.
    fn kernel_counts(&mut self) {
        if let Ok(counts) = g::kernel_counts(g::TABLE) {
            for c in counts {
                self.metrics
                    .kernel_drops
                    .get_or_create(&KernelLabels {
                        plane: c.plane,
                        rule: c.rule.as_str().to_owned(),
                        family: c.family.to_owned(),
                    })
                    .set(c.packets as i64);
            }
            self.metrics_dirty = true;
        }
    }

    fn audit_round(&mut self) {
        self.kernel_counts();
        // The rules themselves: someone with CAP_NET_ADMIN may have deleted the table.
        if let Ok(false) = g::installed_all(g::TABLE) {
            let table = g::ruleset(&self.policy, &self.bindings, &self.options);
            let result = g::install(&table);
            self.metrics.rules_restored.inc();
            self.out.emit(json!({
                "type": "rules-restored",
                "detail": format!("the guard's rules (tables {}) were removed by someone else; installed again", tables()),
                "error": result.err().map(|e| chain(&e)),
            }));
        }
        let result = ifpin::audit::snapshot(&AuditOptions::default());
        let audit = match result {
            Ok(a) => a,
            Err(e) => {
                self.metrics.audit_errors.inc();
                self.out
                    .emit(json!({"type": "error", "what": "audit", "error": chain(&e)}));
                return;
            }
        };
        let check = audit.check(&self.policy);
        let round = self.tracker.update(&self.policy, &audit, &check);
        for v in &round.appeared {
            self.metrics
                .violations_seen
                .get_or_create(&PlaneRule {
                    plane: v.plane.clone(),
                    rule: v.rule.as_str().to_owned(),
                })
                .inc();
            self.out.emit(violation_json("violation", v));
        }
        for v in &round.cleared {
            self.out.emit(violation_json("violation-cleared", v));
        }
        for ((plane, rule), n) in &round.current {
            self.metrics
                .violations
                .get_or_create(&PlaneRule {
                    plane: plane.clone(),
                    rule: rule.as_str().to_owned(),
                })
                .set(*n as i64);
        }
        for (plane, s) in &round.sockets {
            for (state, n) in [("pinned", s.pinned), ("unpinned", s.unpinned)] {
                self.metrics
                    .plane_sockets
                    .get_or_create(&PlaneState {
                        plane: plane.clone(),
                        state: state.to_owned(),
                    })
                    .set(n as i64);
            }
        }
        let now = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64());
        self.metrics.last_audit.set(now);
        self.metrics_dirty = true;
    }

    fn links_changed(&mut self) -> anyhow::Result<()> {
        let notices = self.links.read().map_err(|e| anyhow!(e))?;
        if notices.is_empty() {
            return Ok(());
        }
        self.refresh_names();
        let fresh = PlaneBinding::resolve_all(&self.policy);
        let changed = fresh != self.bindings;
        for (old, new) in self.bindings.clone().iter().zip(&fresh) {
            let (event, detail) = match (old.index, new.index) {
                (Some(_), None) => (
                    "gone",
                    "the plane's interface is gone (deleted or renamed): its traffic is dropped on every interface until it returns",
                ),
                (None, Some(_)) => (
                    "returned",
                    "an interface of the plane's name is back: the rules follow it",
                ),
                (Some(a), Some(b)) if a != b => (
                    "moved",
                    "the plane's name is now at another index: the rules follow the name",
                ),
                _ => continue,
            };
            if let (Some(i), None) = (old.index, new.index) {
                self.gone_index.insert(new.plane.clone(), i);
            }
            if new.index.is_some() {
                self.gone_index.remove(&new.plane);
            }
            self.link_event(
                &new.plane,
                event,
                &new.name,
                new.index.or(old.index),
                detail,
            );
            self.metrics
                .plane_interface_up
                .get_or_create(&PlaneLabel {
                    plane: new.plane.clone(),
                })
                .set(i64::from(new.index.is_some()));
        }
        // A plane's old index now carried by a device of another name: the rules refuse it.
        for n in &notices {
            if let LinkNotice::New { index, name } = n {
                let taken: Vec<String> = self
                    .gone_index
                    .iter()
                    .filter(|(plane, i)| {
                        **i == index.get()
                            && self
                                .bindings
                                .iter()
                                .any(|b| &b.plane == *plane && b.name != *name)
                    })
                    .map(|(p, _)| p.clone())
                    .collect();
                for plane in taken {
                    self.gone_index.remove(&plane);
                    self.link_event(
                        &plane,
                        "index-taken-over",
                        name,
                        Some(index.get()),
                        "another device took the plane interface's old index: the rules do not let it carry the plane's traffic",
                    );
                }
            }
        }
        if !changed {
            return Ok(());
        }
        self.bindings = fresh;
        let table = g::ruleset(&self.policy, &self.bindings, &self.options);
        if let Err(e) = g::install(&table) {
            self.out.emit(json!({
                "type": "error",
                "what": "re-pointing the rules after a link change (the previous rules stay)",
                "error": chain(&e),
            }));
        }
        Ok(())
    }

    fn link_event(
        &mut self,
        plane: &str,
        event: &str,
        name: &str,
        index: Option<u32>,
        detail: &str,
    ) {
        self.metrics
            .link_events
            .get_or_create(&PlaneEvent {
                plane: plane.to_owned(),
                event: event.to_owned(),
            })
            .inc();
        self.metrics_dirty = true;
        self.out.emit(json!({
            "type": "link", "plane": plane, "event": event,
            "interface": name, "index": index, "detail": detail,
        }));
    }

    /// SIGHUP: load the policy again; a broken one is an error event and the old rules stay.
    fn reload(&mut self) {
        if let Some(n) = &self.notifier {
            let _ = n.send(&format!(
                "RELOADING=1\nMONOTONIC_USEC={}",
                ifpin::guard::notify::monotonic_usec()
            ));
        }
        let result = Policy::load(&self.policy_path)
            .map_err(|e| anyhow!(e))
            .and_then(|policy| {
                let bindings = PlaneBinding::resolve_all(&policy);
                let table = g::ruleset(&policy, &bindings, &self.options);
                g::install(&table).map_err(|e| anyhow!(e))?;
                Ok((policy, bindings))
            });
        match result {
            Ok((policy, bindings)) => {
                self.policy = policy;
                self.bindings = bindings;
                self.tracker = ViolationTracker::new();
                self.metrics
                    .reloads
                    .get_or_create(&ResultLabel {
                        result: "ok".into(),
                    })
                    .inc();
                self.out.emit(json!({"type": "reload", "policy": self.policy_path.display().to_string(), "planes": self.planes_json()}));
            }
            Err(e) => {
                self.metrics
                    .reloads
                    .get_or_create(&ResultLabel {
                        result: "error".into(),
                    })
                    .inc();
                self.out.emit(json!({
                    "type": "reload-failed",
                    "policy": self.policy_path.display().to_string(),
                    "error": chain(e.as_ref()),
                    "detail": "the previous policy stays in force",
                }));
            }
        }
        self.metrics_dirty = true;
        if let Some(n) = &self.notifier {
            let _ = n.send("READY=1");
        }
    }
}

fn violation_json(ty: &str, v: &ViolationRecord) -> Value {
    let mut value = serde_json::to_value(v).unwrap_or(Value::Null);
    value["type"] = json!(ty);
    value
}

fn chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

fn tcp_flags(flags: u8) -> String {
    let names = [
        (0x02, "syn"),
        (0x10, "ack"),
        (0x01, "fin"),
        (0x04, "rst"),
        (0x08, "psh"),
        (0x20, "urg"),
    ];
    names
        .iter()
        .filter(|(bit, _)| flags & bit != 0)
        .map(|(_, n)| *n)
        .collect::<Vec<_>>()
        .join("|")
}

/// Every interface's name, by index, in this network namespace (`if_nameindex(3)`).
fn nix_ifnames() -> std::io::Result<HashMap<u32, String>> {
    let list = nix::net::if_::if_nameindex()?;
    Ok(list
        .iter()
        .map(|i| (i.index(), i.name().to_string_lossy().into_owned()))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drops_read_as_a_sentence_on_a_terminal() {
        let event = json!({
            "type": "drop", "time": "2026-12-01T07:16:35.313Z", "action": "dropped",
            "rule": "egress", "plane": "backplane", "protocol": "tcp", "direction": "egress",
            "src": "10.20.0.1", "sport": 41522, "dst": "fd99::2", "dport": 7500,
            "interface": "eth1", "count": 3, "sender": "process",
            "owner": {"command": "curl", "pids": [42], "unit": "leaky.service"},
        });
        assert_eq!(
            readable(&event),
            "07:16:35 drop dropped egress plane backplane: tcp 10.20.0.1:41522 -> \
             [fd99::2]:7500 out eth1 by curl (pids [42], unit leaky.service); 3 packet(s)"
        );
        let kernel = json!({
            "type": "drop", "time": "2026-12-01T07:16:35.313Z", "action": "dropped",
            "rule": "egress", "plane": "bp", "protocol": "icmp", "direction": "egress",
            "src": "10.10.0.1", "dst": "10.99.7.2", "interface": "eth1", "count": 1,
            "sender": "kernel", "owner": null,
        });
        assert!(
            readable(&kernel).ends_with("10.10.0.1 -> 10.99.7.2 out eth1 by kernel; 1 packet(s)")
        );
        let other = json!({"type": "ready", "time": "2026-12-01T07:16:35.313Z"});
        assert_eq!(readable(&other), "07:16:35 ready");
    }
}
