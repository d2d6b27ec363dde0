//! `ifpin guard`: the whole network namespace held to the policy, whoever sends.
//!
//! The guard owns two nftables tables, `ip ifpin` and `ip6 ifpin`, written over netlink in
//! one transaction ([`install`]). Their hooks are the network namespace's own, so they see
//! every packet: every process in every cgroup, the kernel's own answers (TCP resets, ICMP errors, IGMP/MLD
//! reports) and forwarded packets, on every interface, including interfaces created later,
//! from their first packet. The tables stay in the kernel when the guard exits or dies
//! (fail closed); the next start replaces them in one transaction (no gap, no duplicate), and
//! [`remove`] takes them away.
//!
//! For every plane (an interface, its prefixes and its ports), [`ruleset`] builds:
//!
//! - **egress** (`postrouting`: locally sent and forwarded packets alike, after routing):
//!   a packet whose destination *or* source lies in the plane's prefixes, leaving through
//!   anything but the plane's interface, is logged and dropped ([`LogRule::Egress`]);
//! - **spoofed source** (`input` for this host, `forward` for packets routed through it): a
//!   packet arriving through another interface with a source in the plane's prefixes
//!   ([`LogRule::SpoofedSource`]);
//! - **plane port** (`input`): a new TCP connection (SYN) or a UDP datagram to one of the
//!   plane's ports arriving through another interface ([`LogRule::PlanePort`]).
//!
//! "The plane's interface" is matched by index *and* name (`oif` and `oifname`, `iif` and
//! `iifname`): a device that takes a deleted plane interface's index, or a new device with the
//! plane's name at another index, does not pass, with no reaction time. Loopback (`lo`)
//! always passes: it never leaves the host. Each drop is logged to an NFLOG group, which
//! [`nflog`] reads; [`flows`] aggregates the drops per flow and [`owner`] finds who sent them.

pub mod flows;
mod kernel;
pub mod nflog;
pub mod nft;
mod nlmsg;
pub mod notify;
pub mod owner;
pub mod violations;

use std::fmt;
use std::io;

use serde::Serialize;

use crate::interface::{IfIndex, Interface, InterfaceSpec};
use crate::policy::{Plane, Policy};
use nft::{Action, Chain, End, Family, Hook, Match, Rule, Set, SetKind, Table, TableFamily};

/// The name of the guard's tables (families `ip` and `ip6`).
pub const TABLE: &str = "ifpin";

/// The NFLOG group the guard logs drops to, unless told otherwise.
pub const DEFAULT_LOG_GROUP: u16 = 7517;

/// Up to this many prefixes per plane and family are matched inline (load, mask, compare:
/// about 20 ns per prefix and address on the machine of `BENCHMARKS.md`); more go to an
/// interval set, whose lookup costs about 100 ns whatever its size.
const INLINE_PREFIXES: usize = 4;

/// Priority of the guard's base chains. Any priority holds, since in nftables a `drop` in
/// any base chain is final whatever other chains accept.
const PRIO_INPUT: i32 = 0;
const PRIO_FORWARD: i32 = 0;
const PRIO_POSTROUTING: i32 = 0;

/// Errors of the guard's kernel side.
#[derive(Debug, thiserror::Error)]
pub enum GuardError {
    /// A netlink socket call failed.
    #[error("{call} failed")]
    Netlink {
        /// The call.
        call: &'static str,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// The kernel refused a message.
    #[error("the kernel refused to {what}{}", hint(source))]
    Kernel {
        /// What the message asked.
        what: String,
        /// The kernel's answer.
        #[source]
        source: io::Error,
    },
    /// The NFLOG group is taken by another process.
    #[error(
        "NFLOG group {group} is already in use by another process (another `ifpin guard`, \
         ulogd, ...): stop it or choose another group with --log-group"
    )]
    LogGroupBusy {
        /// The group.
        group: u16,
    },
}

impl GuardError {
    /// Whether the error means "not permitted": the caller lacks `CAP_NET_ADMIN`.
    pub fn is_permission(&self) -> bool {
        let source = match self {
            GuardError::Netlink { source, .. } | GuardError::Kernel { source, .. } => source,
            GuardError::LogGroupBusy { .. } => return false,
        };
        source.raw_os_error() == Some(libc::EPERM)
    }
}

fn hint(err: &io::Error) -> &'static str {
    match err.raw_os_error() {
        Some(libc::EPERM) => " (not permitted: run as root, or with CAP_NET_ADMIN)",
        Some(libc::ENOENT) | Some(libc::EOPNOTSUPP) => {
            " (this kernel lacks part of nf_tables the guard needs: nf_tables with the ip and \
             ip6 families, and the meta, cmp, payload, bitwise, lookup, log (nfnetlink_log) and \
             counter expressions)"
        }
        _ => "",
    }
}

/// The rule a drop broke, as logged and reported.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum LogRule {
    /// A packet to or from the plane's prefixes leaving through another interface.
    Egress,
    /// A packet with a source in the plane's prefixes arriving through another interface.
    SpoofedSource,
    /// A new connection or datagram to a plane port arriving through another interface.
    PlanePort,
}

impl LogRule {
    /// The rule's name in events, metrics and log prefixes.
    pub fn as_str(self) -> &'static str {
        match self {
            LogRule::Egress => "egress",
            LogRule::SpoofedSource => "spoofed-source",
            LogRule::PlanePort => "plane-port",
        }
    }

    /// `egress` or `ingress`.
    pub fn direction(self) -> &'static str {
        match self {
            LogRule::Egress => "egress",
            LogRule::SpoofedSource | LogRule::PlanePort => "ingress",
        }
    }

    fn parse(text: &str) -> Option<LogRule> {
        [LogRule::Egress, LogRule::SpoofedSource, LogRule::PlanePort]
            .into_iter()
            .find(|r| r.as_str() == text)
    }
}

impl fmt::Display for LogRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The NFLOG prefix of a drop: `ifpin <rule> <plane>` (at most 127 bytes).
pub fn log_prefix(rule: LogRule, plane: &str) -> String {
    let mut prefix = format!("ifpin {} {plane}", rule.as_str());
    while prefix.len() > 127 {
        prefix.pop();
    }
    prefix
}

/// The rule and plane a log prefix names, if it is one of the guard's.
pub fn parse_log_prefix(prefix: &str) -> Option<(LogRule, &str)> {
    let rest = prefix.strip_prefix("ifpin ")?;
    let (rule, plane) = rest.split_once(' ')?;
    Some((LogRule::parse(rule)?, plane))
}

/// A plane's interface as the guard holds it: the name and index that must both match.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct PlaneBinding {
    /// The plane's name.
    pub plane: String,
    /// The interface name the plane's traffic must use.
    pub name: String,
    /// Its index, or `None` while no such interface exists (then nothing matches: the
    /// plane's traffic is dropped everywhere).
    pub index: Option<u32>,
}

impl PlaneBinding {
    /// Resolves `plane`'s interface in the caller's network namespace. A plane named by
    /// index keeps the name that index has now.
    pub fn resolve(plane: &Plane) -> PlaneBinding {
        let (name, index) = match &plane.interface {
            InterfaceSpec::Name(name) => (
                name.as_str().to_owned(),
                Interface::from_name(name).ok().map(|i| i.index().get()),
            ),
            InterfaceSpec::Index(index) => match Interface::from_index(*index) {
                Ok(i) => (i.name().to_owned(), Some(index.get())),
                Err(_) => (String::new(), None),
            },
        };
        PlaneBinding {
            plane: plane.name.clone(),
            name,
            index,
        }
    }

    /// Every plane of `policy`, resolved.
    pub fn resolve_all(policy: &Policy) -> Vec<PlaneBinding> {
        policy.planes().iter().map(PlaneBinding::resolve).collect()
    }

    /// The index as an [`IfIndex`].
    pub fn if_index(&self) -> Option<IfIndex> {
        self.index.and_then(IfIndex::new)
    }
}

/// How the ruleset behaves.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GuardOptions {
    /// Count and log, but drop nothing.
    pub observe: bool,
    /// The NFLOG group drops are logged to.
    pub log_group: u16,
    /// The table's name.
    pub table: String,
}

impl Default for GuardOptions {
    fn default() -> Self {
        GuardOptions {
            observe: false,
            log_group: DEFAULT_LOG_GROUP,
            table: TABLE.to_owned(),
        }
    }
}

/// A name nft accepts unquoted, unique among the planes.
fn chain_stem(plane: &str, index: usize, taken: &mut Vec<String>) -> String {
    let mut stem: String = plane
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' {
                c
            } else {
                '_'
            }
        })
        .take(32)
        .collect();
    if stem.is_empty() || !stem.starts_with(|c: char| c.is_ascii_alphabetic()) {
        stem = format!("plane{index}_{stem}");
    }
    if taken.contains(&stem) {
        stem = format!("{stem}_{index}");
    }
    taken.push(stem.clone());
    stem
}

/// The guard's tables for `policy` (`ip` and `ip6`), with each plane's interface as
/// `bindings` resolve it.
///
/// Laid out so that traffic the policy does not touch costs little: one table per address
/// family, so a packet never runs the other family's tests (nor a family check per test);
/// each packet passes one of the guard's base chains on the way in (`input` if it is for
/// this host, `forward` if it is routed through) and one on the way out (`postrouting`), and
/// there meets only the tests of its addresses (and ports) per plane. Only a packet that
/// involves a plane jumps to the plane's chain, where the plane's own interface (index and
/// name) and loopback return, and anything else is logged and dropped.
pub fn ruleset(policy: &Policy, bindings: &[PlaneBinding], options: &GuardOptions) -> Vec<Table> {
    [Family::V4, Family::V6]
        .into_iter()
        .map(|family| family_table(policy, bindings, options, family))
        .collect()
}

/// The guard's table of one address family.
fn family_table(
    policy: &Policy,
    bindings: &[PlaneBinding],
    options: &GuardOptions,
    table_family: Family,
) -> Table {
    let mut sets = Vec::new();
    let mut chains = Vec::new();
    let base = |name: &str, hook: Hook, priority: i32| Chain {
        name: name.to_owned(),
        hook: Some((hook, priority)),
        rules: Vec::new(),
    };
    let mut input = base("input", Hook::Input, PRIO_INPUT);
    let mut forward = base("forward", Hook::Forward, PRIO_FORWARD);
    let mut postrouting = base("postrouting", Hook::Postrouting, PRIO_POSTROUTING);
    let mut taken = Vec::new();
    for (i, plane) in policy.planes().iter().enumerate() {
        let binding = bindings
            .iter()
            .find(|b| b.plane == plane.name)
            .cloned()
            .unwrap_or_else(|| PlaneBinding::resolve(plane));
        let stem = chain_stem(&plane.name, i, &mut taken);
        let index = binding.index.unwrap_or(0);
        let v4: Vec<_> = plane
            .prefixes
            .iter()
            .filter(|n| n.addr().is_ipv4())
            .copied()
            .collect();
        let v6: Vec<_> = plane
            .prefixes
            .iter()
            .filter(|n| n.addr().is_ipv6())
            .copied()
            .collect();
        // The plane's chain for one rule: its interface and loopback pass, the rest is
        // logged and dropped (observing: logged, counted and accepted, so that a packet
        // matching twice is reported once).
        let check = |name: String, rule: LogRule, outgoing: bool| {
            let (own, lo) = if outgoing {
                (
                    vec![Match::Oif(index), Match::OifName(binding.name.clone())],
                    vec![Match::Oif(1), Match::OifName("lo".to_owned())],
                )
            } else {
                (
                    vec![Match::Iif(index), Match::IifName(binding.name.clone())],
                    vec![Match::Iif(1), Match::IifName("lo".to_owned())],
                )
            };
            Chain {
                name,
                hook: None,
                rules: vec![
                    Rule {
                        matches: own,
                        action: Action::Return,
                        comment: format!("plane {}: its own interface", plane.name),
                    },
                    Rule {
                        matches: lo,
                        action: Action::Return,
                        comment: "loopback never leaves the host".to_owned(),
                    },
                    Rule {
                        matches: Vec::new(),
                        action: Action::Log {
                            group: options.log_group,
                            prefix: log_prefix(rule, &plane.name),
                            drop: !options.observe,
                        },
                        comment: format!(
                            "plane {}: {}",
                            plane.name,
                            match rule {
                                LogRule::Egress =>
                                    "plane traffic leaving through another interface",
                                LogRule::SpoofedSource =>
                                    "plane source arriving through another interface",
                                LogRule::PlanePort => "plane port opened through another interface",
                            }
                        ),
                    },
                ],
            }
        };
        // How each family's addresses are matched: inline prefixes, or one interval set.
        let mut matchers = Vec::new();
        for (family, nets, suffix) in [(Family::V4, v4, "v4"), (Family::V6, v6, "v6")] {
            if nets.is_empty() || family != table_family {
                continue;
            }
            let merged = nft::merged_prefixes(&nets);
            if merged.len() <= INLINE_PREFIXES {
                matchers.push(AddrMatch::Inline(merged));
            } else {
                let name = format!("{stem}_{suffix}");
                sets.push(Set {
                    name: name.clone(),
                    kind: if family == Family::V4 {
                        SetKind::V4(nets)
                    } else {
                        SetKind::V6(nets)
                    },
                });
                matchers.push(AddrMatch::Set(family, name));
            }
        }
        if !matchers.is_empty() {
            let egress = format!("{stem}_egress");
            let ingress = format!("{stem}_ingress");
            chains.push(check(egress.clone(), LogRule::Egress, true));
            chains.push(check(ingress.clone(), LogRule::SpoofedSource, false));
            for matcher in &matchers {
                for end in [End::Destination, End::Source] {
                    for matches in matcher.rules(end) {
                        postrouting.rules.push(Rule {
                            matches,
                            action: Action::Jump(egress.clone()),
                            comment: format!("plane {}: its prefixes", plane.name),
                        });
                    }
                }
                for matches in matcher.rules(End::Source) {
                    for chain in [&mut input, &mut forward] {
                        chain.rules.push(Rule {
                            matches: matches.clone(),
                            action: Action::Jump(ingress.clone()),
                            comment: format!("plane {}: a source in its prefixes", plane.name),
                        });
                    }
                }
            }
        }
        if !plane.ports.is_empty() {
            let set = format!("{stem}_ports");
            sets.push(Set {
                name: set.clone(),
                kind: SetKind::Ports(plane.ports.clone()),
            });
            let service = format!("{stem}_service");
            chains.push(check(service.clone(), LogRule::PlanePort, false));
            input.rules.push(Rule {
                matches: vec![Match::TcpSynToPort(set.clone())],
                action: Action::Jump(service.clone()),
                comment: format!("plane {}: a connection to its ports", plane.name),
            });
            input.rules.push(Rule {
                matches: vec![Match::UdpToPort(set)],
                action: Action::Jump(service),
                comment: format!("plane {}: a datagram to its ports", plane.name),
            });
        }
    }
    chains.push(input);
    chains.push(forward);
    chains.push(postrouting);
    Table {
        family: match table_family {
            Family::V4 => TableFamily::Ip,
            Family::V6 => TableFamily::Ip6,
        },
        name: options.table.clone(),
        sets,
        chains,
    }
}

/// The families of the guard's tables.
pub const FAMILIES: [TableFamily; 2] = [TableFamily::Ip, TableFamily::Ip6];

/// Where an earlier ifpin kept its rules (one `inet` table): removed by [`install`] and
/// [`remove`] in the same transaction, so an upgrade leaves no duplicate.
const STALE: TableFamily = TableFamily::Inet;

/// How one family's prefixes of a plane are matched.
enum AddrMatch {
    /// One rule per prefix.
    Inline(Vec<ipnet::IpNet>),
    /// One rule with a lookup in this interval set.
    Set(Family, String),
}

impl AddrMatch {
    /// The conditions of each rule that matches address `end`.
    fn rules(&self, end: End) -> Vec<Vec<Match>> {
        match self {
            AddrMatch::Inline(nets) => nets.iter().map(|n| vec![Match::Prefix(end, *n)]).collect(),
            AddrMatch::Set(family, name) => vec![vec![Match::Addr(*family, end, name.clone())]],
        }
    }
}

/// What [`install`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Installed {
    /// A table of that name was there already and was replaced in the same transaction (a
    /// guard that ran before, or one that was killed): no gap, no duplicate.
    pub adopted: bool,
}

/// Installs `tables` in the caller's network namespace, replacing tables of the same names
/// (and an earlier layout's `inet` table) in one transaction.
pub fn install(tables: &[Table]) -> Result<Installed, GuardError> {
    let mut nft = kernel::Nft::open()?;
    let mut adopted = false;
    for table in tables {
        adopted |= nft.table_exists(table.family, &table.name)?;
    }
    let name = tables.first().map_or(TABLE, |t| t.name.as_str());
    adopted |= nft.table_exists(STALE, name)?;
    let seq = nft.next_seq(10_000);
    let batch = nft::replace_batch(tables, &[(STALE, name)], seq);
    nft.transact(&batch)?;
    Ok(Installed { adopted })
}

/// Whether any of the guard's tables called `name` exists in the caller's network namespace.
pub fn installed(name: &str) -> Result<bool, GuardError> {
    let mut nft = kernel::Nft::open()?;
    for family in FAMILIES.into_iter().chain([STALE]) {
        if nft.table_exists(family, name)? {
            return Ok(true);
        }
    }
    Ok(false)
}

/// Whether every one of the guard's tables called `name` (`ip` and `ip6`) exists.
pub fn installed_all(name: &str) -> Result<bool, GuardError> {
    let mut nft = kernel::Nft::open()?;
    for family in FAMILIES {
        if !nft.table_exists(family, name)? {
            return Ok(false);
        }
    }
    Ok(true)
}

/// Removes the guard's tables called `name` (every chain, rule and set in them), in one
/// transaction; `Ok(false)` if there was none.
pub fn remove(name: &str) -> Result<bool, GuardError> {
    let mut nft = kernel::Nft::open()?;
    let mut present = Vec::new();
    for family in FAMILIES.into_iter().chain([STALE]) {
        if nft.table_exists(family, name)? {
            present.push((family, name));
        }
    }
    if !present.is_empty() {
        let seq = nft.next_seq(8);
        nft.transact(&nft::delete_batch(&present, seq))?;
    }
    Ok(!present.is_empty())
}

/// What the kernel counted for one log-and-drop rule since the tables were last installed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct KernelCount {
    /// The table's family (`ip` or `ip6`).
    pub family: &'static str,
    /// The rule.
    pub rule: LogRule,
    /// The plane.
    pub plane: String,
    /// Packets matched (dropped, or observed).
    pub packets: u64,
}

/// The packet counters of the guard's log-and-drop rules, read from the kernel: exact even
/// when the log group overflowed. They restart at 0 whenever the tables are installed again
/// (start, reload, link change).
pub fn kernel_counts(name: &str) -> Result<Vec<KernelCount>, GuardError> {
    let mut nft = kernel::Nft::open()?;
    let mut out = Vec::new();
    for family in FAMILIES {
        for (prefix, packets) in nft.logged_counts(family, name)? {
            if let Some((rule, plane)) = parse_log_prefix(&prefix) {
                out.push(KernelCount {
                    family: family.name(),
                    rule,
                    plane: plane.to_owned(),
                    packets,
                });
            }
        }
    }
    Ok(out)
}

/// The tables in nft's syntax.
pub fn render(tables: &[Table]) -> String {
    tables
        .iter()
        .map(nft::render_table)
        .collect::<Vec<_>>()
        .join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn many_prefixes_go_to_an_interval_set() {
        let prefixes: Vec<String> = (0..5).map(|i| format!("'10.{i}.0.0/16'")).collect();
        let text = format!(
            "[[plane]]\nname='bp'\ninterface='ctl0'\nprefixes=[{}, '10.0.1.0/24']\n",
            prefixes.join(",")
        );
        let policy = Policy::parse(&text, "t.toml").unwrap();
        let table = ruleset(&policy, &[], &GuardOptions::default());
        let text = render(&table);
        assert!(text.contains("ip daddr @bp_v4 jump bp_egress"), "{text}");
        assert!(text.contains("ip saddr @bp_v4 jump bp_ingress"), "{text}");
        assert!(!text.contains("ip daddr 10."), "{text}");
        // Covered prefixes are merged before counting: 10.0.1.0/24 is inside 10.0.0.0/16.
        assert_eq!(nft::merged_prefixes(&policy.planes()[0].prefixes).len(), 5);
    }

    #[test]
    fn prefixes_round_trip() {
        let p = log_prefix(LogRule::SpoofedSource, "back plane");
        assert_eq!(
            parse_log_prefix(&p),
            Some((LogRule::SpoofedSource, "back plane"))
        );
        assert_eq!(parse_log_prefix("other thing"), None);
        assert!(log_prefix(LogRule::Egress, &"x".repeat(300)).len() <= 127);
    }

    #[test]
    fn the_ruleset_matches_index_and_name_and_exempts_loopback() {
        let policy = Policy::parse(
            "[[plane]]\nname='backplane'\ninterface='ctl0'\nprefixes=['10.99.0.0/16','fd99::/16']\nports=[7500]\n",
            "t.toml",
        )
        .unwrap();
        let bindings = vec![PlaneBinding {
            plane: "backplane".into(),
            name: "ctl0".into(),
            index: Some(3),
        }];
        let table = ruleset(&policy, &bindings, &GuardOptions::default());
        let text = render(&table);
        assert!(
            text.contains("meta oif 3 meta oifname \"ctl0\" return"),
            "{text}"
        );
        assert!(
            text.contains("meta iif 3 meta iifname \"ctl0\" return"),
            "{text}"
        );
        assert!(
            text.contains("meta oif 1 meta oifname \"lo\" return"),
            "{text}"
        );
        assert!(
            text.contains("ip daddr 10.99.0.0/16 jump backplane_egress"),
            "{text}"
        );
        assert!(
            text.contains("ip6 saddr fd99::/16 jump backplane_ingress"),
            "{text}"
        );
        assert!(text.contains("tcp dport @backplane_ports"), "{text}");
        assert!(text.contains("log prefix \"ifpin egress backplane\" group 7517 counter drop"));
        let observe = ruleset(
            &policy,
            &bindings,
            &GuardOptions {
                observe: true,
                ..GuardOptions::default()
            },
        );
        assert!(!render(&observe).contains(" drop comment"));
        // A missing interface matches nothing: index 0.
        let missing = vec![PlaneBinding {
            plane: "backplane".into(),
            name: "ctl0".into(),
            index: None,
        }];
        let text = render(&ruleset(&policy, &missing, &GuardOptions::default()));
        assert!(
            text.contains("meta oif 0 meta oifname \"ctl0\" return"),
            "{text}"
        );
    }
}
