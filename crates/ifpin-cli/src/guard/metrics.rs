//! The guard's Prometheus metrics: one registry, served on `--metrics ADDR:PORT` and written
//! to `--textfile PATH` for node_exporter's textfile collector.

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

/// Labels of a drop.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DropLabels {
    pub plane: String,
    pub rule: String,
    pub interface: String,
    pub direction: String,
    /// `drop`, or `observe` in observe mode (counted, let through).
    pub action: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PlaneRule {
    pub plane: String,
    pub rule: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KernelLabels {
    pub plane: String,
    pub rule: String,
    pub family: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PlaneState {
    pub plane: String,
    pub state: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PlaneEvent {
    pub plane: String,
    pub event: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PlaneLabel {
    pub plane: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabel {
    pub result: String,
}

/// Every metric of the guard.
pub struct Metrics {
    pub registry: Registry,
    pub drops: Family<DropLabels, Counter>,
    pub kernel_drops: Family<KernelLabels, Gauge>,
    pub violations: Family<PlaneRule, Gauge>,
    pub violations_seen: Family<PlaneRule, Counter>,
    pub plane_sockets: Family<PlaneState, Gauge>,
    pub plane_interface_up: Family<PlaneLabel, Gauge>,
    pub link_events: Family<PlaneEvent, Counter>,
    pub reloads: Family<ResultLabel, Counter>,
    pub log_overruns: Counter,
    pub rules_restored: Counter,
    pub audit_errors: Counter,
    pub flows_tracked: Gauge,
    pub up: Gauge,
    pub ready: Gauge,
    pub observe: Gauge,
    pub last_audit: Gauge<f64, std::sync::atomic::AtomicU64>,
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("ifpin_guard");
        let m = Metrics {
            drops: Family::default(),
            kernel_drops: Family::default(),
            violations: Family::default(),
            violations_seen: Family::default(),
            plane_sockets: Family::default(),
            plane_interface_up: Family::default(),
            link_events: Family::default(),
            reloads: Family::default(),
            log_overruns: Counter::default(),
            rules_restored: Counter::default(),
            audit_errors: Counter::default(),
            flows_tracked: Gauge::default(),
            up: Gauge::default(),
            ready: Gauge::default(),
            observe: Gauge::default(),
            last_audit: Gauge::default(),
            registry: Registry::default(),
        };
        registry.register(
            "drops",
            "Packets the guard dropped (action=drop) or, in observe mode, would have dropped (action=observe), by plane, rule, interface and direction",
            m.drops.clone(),
        );
        registry.register(
            "kernel_rule_packets",
            "Packets counted by the kernel in each log-and-drop rule since the rules were last installed (exact even if drop logs were lost; restarts at 0 on every install), by plane, rule and table family",
            m.kernel_drops.clone(),
        );
        registry.register(
            "violations",
            "Sockets breaking an audit rule in the last audit round, by plane and rule",
            m.violations.clone(),
        );
        registry.register(
            "violations_seen",
            "Audit violations that appeared, by plane and rule",
            m.violations_seen.clone(),
        );
        registry.register(
            "plane_sockets",
            "Sockets of a plane (a peer in its prefixes or a listener on its ports) in the last audit round, pinned to the plane's interface or not",
            m.plane_sockets.clone(),
        );
        registry.register(
            "plane_interface_up",
            "1 while the plane's interface exists with the name and index the rules hold; 0 while its traffic is dropped everywhere (fail closed)",
            m.plane_interface_up.clone(),
        );
        registry.register(
            "link_events",
            "Changes of a plane's interface (gone, returned, moved, index-taken-over)",
            m.link_events.clone(),
        );
        registry.register(
            "policy_reloads",
            "Policy reloads (SIGHUP) by result (ok, error)",
            m.reloads.clone(),
        );
        registry.register(
            "log_overruns",
            "Times the kernel dropped drop-log messages because the guard fell behind (drops are still enforced, and counted in the table's counters)",
            m.log_overruns.clone(),
        );
        registry.register(
            "audit_errors",
            "Audit rounds that failed",
            m.audit_errors.clone(),
        );
        registry.register(
            "flows_tracked",
            "Flows held in the drop table",
            m.flows_tracked.clone(),
        );
        registry.register("up", "1 while the guard runs", m.up.clone());
        registry.register("ready", "1 once the rules are installed", m.ready.clone());
        registry.register(
            "observe_mode",
            "1 when the guard only observes (drops nothing)",
            m.observe.clone(),
        );
        registry.register(
            "last_audit_timestamp_seconds",
            "When the last audit round finished (Unix time)",
            m.last_audit.clone(),
        );
        Metrics { registry, ..m }
    }

    /// The registry in the Prometheus text format (0.0.4), as node_exporter and promtool read
    /// it: OpenMetrics without `# EOF` and `# UNIT`, counters' HELP and TYPE named with
    /// their `_total` samples.
    pub fn text(&self) -> String {
        let mut open = String::new();
        let _ = prometheus_client::encoding::text::encode_registry(&mut open, &self.registry);
        to_prometheus_text(&open)
    }

    /// The registry in OpenMetrics.
    pub fn openmetrics(&self) -> String {
        let mut out = String::new();
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

/// OpenMetrics text to the Prometheus text format.
pub fn to_prometheus_text(open: &str) -> String {
    let mut counters = std::collections::HashSet::new();
    for line in open.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            if let Some(name) = rest.strip_suffix(" counter") {
                counters.insert(name.to_owned());
            }
        }
    }
    let mut out = String::with_capacity(open.len());
    for line in open.lines() {
        if line == "# EOF" || line.starts_with("# UNIT ") {
            continue;
        }
        let renamed = ["# HELP ", "# TYPE "].iter().find_map(|head| {
            let rest = line.strip_prefix(head)?;
            let (name, tail) = rest.split_once(' ')?;
            counters
                .contains(name)
                .then(|| format!("{head}{name}_total {tail}"))
        });
        out.push_str(renamed.as_deref().unwrap_or(line));
        out.push('\n');
    }
    out
}

/// Binds the metrics address (before anything is installed: an address in use is bad input).
pub fn bind(addr: SocketAddr) -> anyhow::Result<TcpListener> {
    TcpListener::bind(addr).with_context(|| {
        format!("cannot listen on --metrics {addr} (in use, or not an address of this host): choose another ADDR:PORT")
    })
}

/// Serves `/metrics` on `listener` from a thread, for the life of the process.
pub fn serve(listener: TcpListener, metrics: Arc<Metrics>) {
    std::thread::Builder::new()
        .name("metrics".into())
        .spawn(move || {
            for stream in listener.incoming().flatten() {
                let _ = answer(stream, &metrics);
            }
        })
        .expect("spawn the metrics thread");
}

fn answer(stream: TcpStream, metrics: &Metrics) -> std::io::Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    stream.set_write_timeout(Some(Duration::from_secs(5)))?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut request = String::new();
    reader.read_line(&mut request)?;
    let mut openmetrics = false;
    loop {
        let mut header = String::new();
        if reader.read_line(&mut header)? == 0 || header.trim().is_empty() {
            break;
        }
        let lower = header.to_ascii_lowercase();
        if lower.starts_with("accept:") && lower.contains("application/openmetrics-text") {
            openmetrics = true;
        }
    }
    let path = request.split_whitespace().nth(1).unwrap_or("");
    let (status, content_type, body) = if request.starts_with("GET ")
        && (path == "/metrics" || path.starts_with("/metrics?"))
    {
        if openmetrics {
            (
                "200 OK",
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
                metrics.openmetrics(),
            )
        } else {
            (
                "200 OK",
                "text/plain; version=0.0.4; charset=utf-8",
                metrics.text(),
            )
        }
    } else if request.starts_with("GET ") && path == "/" {
        (
            "200 OK",
            "text/html; charset=utf-8",
            "<html><body><a href=\"/metrics\">ifpin guard metrics</a></body></html>\n".to_owned(),
        )
    } else {
        (
            "404 Not Found",
            "text/plain",
            "not found: try /metrics\n".to_owned(),
        )
    };
    let mut stream = stream;
    write!(
        stream,
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )?;
    stream.flush()
}

/// Checks that `path`'s directory exists and is writable, before anything is installed.
pub fn check_textfile(path: &Path) -> anyhow::Result<()> {
    let tmp = temp_of(path);
    std::fs::write(&tmp, b"").with_context(|| {
        format!(
            "cannot write --textfile {} (its directory must exist and be writable)",
            path.display()
        )
    })?;
    let _ = std::fs::remove_file(&tmp);
    Ok(())
}

fn temp_of(path: &Path) -> PathBuf {
    let mut name = path
        .file_name()
        .map(|n| n.to_os_string())
        .unwrap_or_default();
    name.push(format!(".{}.tmp", std::process::id()));
    path.with_file_name(name)
}

/// Writes the metrics to `path` atomically (a temporary file renamed over it).
pub fn write_textfile(path: &Path, metrics: &Metrics) -> std::io::Result<()> {
    let tmp = temp_of(path);
    std::fs::write(&tmp, metrics.text())?;
    std::fs::rename(&tmp, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_are_renamed_for_the_text_format() {
        let m = Metrics::new();
        m.up.set(1);
        m.drops
            .get_or_create(&DropLabels {
                plane: "bp".into(),
                rule: "egress".into(),
                interface: "eth1".into(),
                direction: "egress".into(),
                action: "drop".into(),
            })
            .inc();
        let text = m.text();
        assert!(
            text.contains("# TYPE ifpin_guard_drops_total counter"),
            "{text}"
        );
        assert!(
            text.contains("ifpin_guard_drops_total{plane=\"bp\""),
            "{text}"
        );
        assert!(text.contains("ifpin_guard_up 1"), "{text}");
        assert!(!text.contains("# EOF"));
        assert!(m.openmetrics().ends_with("# EOF\n"));
    }
}
