//! `ifpin probe`: can this host reach that peer through this interface, and only through it?
//!
//! Parses the interface and URL, resolves them (the interface must exist, a `%scope` must name
//! it), then hands over to [`ifpin::probe::probe`], which does the work over a pinned socket.
//! This file only parses, prints and picks the exit code.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use ifpin::probe::{ProbeReport, ProbeTarget};
use ifpin::{Interface, InterfaceSpec};

use crate::exit;

const EXAMPLES: &str = "\
Examples:
  ifpin probe -i ctl0 tcp://10.0.0.2:7000
      Connect over a TCP socket pinned to ctl0. Exit 0 if it connects.
  ifpin probe -i ctl0 udp://10.0.0.2:7000 --timeout 500ms
      Send one datagram through ctl0 and wait half a second for a reply.
  ifpin probe -i ctl0 'tcp://[fe80::2%ctl0]:7000'
      IPv6 link-local. Without %scope the pinned interface is the scope; a scope naming
      another interface is refused before anything is sent.
  ifpin probe -i 3 tcp://[2001:db8::2]:7000 --json
      Pin by index, report as JSON.

What the outcomes mean:
  connected / reply received   reached, through the interface: exit 0
  refused                      the peer answered through the interface that nothing listens
                               there (or its listener is pinned to another interface): exit 1
  no route on that interface   the kernel has no way to the peer via the interface (IPv4: no
                               neighbour answered ARP; IPv6: no route); it did NOT try another
                               interface: exit 1
  no reply / timed out         nothing came back in time: exit 1
  interface down / gone        the interface is down or was deleted: exit 1
Bad URL, unknown interface, name over 15 bytes, foreign %scope: exit 2.

The socket is pinned with SO_BINDTOIFINDEX when it is created and the binding is read back
(again after a bind or a UDP connect), so a probe never leaves through another interface,
whatever the routing table says.";

/// Arguments of `ifpin probe`.
#[derive(clap::Args, Debug)]
#[command(after_long_help = EXAMPLES)]
pub struct Args {
    /// The interface to pin the socket to: a name (ctl0) or an index (3).
    #[arg(short = 'i', long = "interface", value_name = "IFACE")]
    interface: String,

    /// What to probe: tcp://HOST:PORT or udp://HOST:PORT. HOST is an IP address (names are
    /// not resolved); IPv6 goes in brackets, with an optional %scope: tcp://[fe80::1%ctl0]:7000.
    #[arg(value_name = "URL")]
    url: String,

    /// How long to wait for the connection or the reply: 500ms, 3s, 1m, or plain seconds.
    /// IPv4 needs about 3 s to conclude that no neighbour answers on the link.
    #[arg(long, value_name = "DURATION", default_value = "5s", value_parser = parse_timeout)]
    timeout: Duration,

    /// Print the report as JSON on stdout.
    #[arg(long)]
    pub(crate) json: bool,
}

/// Runs `ifpin probe`.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    match probe(&args) {
        Ok(report) => {
            if args.json {
                exit::print_line(&serde_json::to_string_pretty(&report)?)?;
            } else {
                print_human(&report)?;
            }
            Ok(ExitCode::from(if report.reachable {
                exit::OK
            } else {
                exit::FOUND
            }))
        }
        Err(err) => Err(err),
    }
}

/// Parse, resolve, act.
fn probe(args: &Args) -> anyhow::Result<ProbeReport> {
    let spec: InterfaceSpec = args
        .interface
        .parse()
        .with_context(|| format!("bad interface {:?} given to -i", args.interface))?;
    let target: ProbeTarget = args.url.parse()?;
    let interface: Interface = spec
        .resolve()
        .with_context(|| format!("cannot pin to {:?}", args.interface))?;
    let report = ifpin::probe::probe(&interface, &target, args.timeout)
        .with_context(|| format!("cannot probe {target} through {interface}"))?;
    Ok(report)
}

fn print_human(report: &ProbeReport) -> std::io::Result<()> {
    use std::fmt::Write;
    let elapsed = report.elapsed.as_secs_f64() * 1e3;
    let mut text = String::new();
    let _ = writeln!(
        text,
        "{} via {}: {} after {elapsed:.1} ms",
        report.target, report.interface, report.outcome
    );
    let _ = writeln!(text, "  destination: {}", report.destination);
    if let Some(local) = report.local {
        let _ = writeln!(text, "  local:       {local}");
    }
    if let Some(reply) = &report.reply {
        // The peer chose these bytes: no control character reaches the terminal.
        let _ = writeln!(text, "  reply:       {}", crate::text::Escaped(reply));
    }
    if let Some(detail) = &report.detail {
        let _ = writeln!(text, "  why:         {detail}");
    }
    let _ = write!(
        text,
        "reachable: {}",
        if report.reachable { "yes" } else { "no" }
    );
    exit::print_line(&text)
}

/// `--timeout`: from 1 ms to 1 h, in the syntax of [`crate::duration`].
fn parse_timeout(text: &str) -> Result<Duration, String> {
    crate::duration::parse(text, Duration::from_millis(1)..=Duration::from_secs(3600))
}
