//! A small nf_tables netlink encoder: the guard's ruleset as one atomic batch.
//!
//! nf_tables is programmed over `NETLINK_NETFILTER` with messages of subsystem
//! `NFNL_SUBSYS_NFTABLES`: each carries a `nfgenmsg` header (family, version, resource id)
//! and netlink attributes. A *batch* (`NFNL_MSG_BATCH_BEGIN` ... `NFNL_MSG_BATCH_END` in one
//! datagram) is one transaction: the kernel applies all of it or none, and packets see the old
//! ruleset or the new one, never a mix or nothing. That is how the guard replaces its table
//! without a gap: "create the table if missing, delete it, create it again with its content"
//! in one batch.
//!
//! Only what the guard uses is encoded: tables, base and regular chains, interval and plain
//! sets with their elements, and rules made of `meta`, `cmp`, `payload`, `bitwise`, `lookup`,
//! `log`, `counter` and verdicts. Everything here is pure byte building, tested against the
//! layouts the kernel expects; the private `kernel` module sends it.

use std::fmt::Write as _;
use std::net::{Ipv4Addr, Ipv6Addr};

use ipnet::IpNet;

// Numbers the `libc` crate has are taken from it; the attribute numbers it lacks are written
// out, in the order of their kernel enums.
// --- netlink and nfnetlink numbers (linux/netlink.h, linux/netfilter/nfnetlink.h) ---
pub(crate) const NLM_F_REQUEST: u16 = libc::NLM_F_REQUEST as u16;
pub(crate) const NLM_F_ACK: u16 = libc::NLM_F_ACK as u16;
const NLM_F_EXCL: u16 = libc::NLM_F_EXCL as u16;
const NLM_F_CREATE: u16 = libc::NLM_F_CREATE as u16;
const NLM_F_APPEND: u16 = libc::NLM_F_APPEND as u16;
const NLA_F_NESTED: u16 = libc::NLA_F_NESTED as u16;
const NFNL_MSG_BATCH_BEGIN: u16 = libc::NFNL_MSG_BATCH_BEGIN as u16;
const NFNL_MSG_BATCH_END: u16 = libc::NFNL_MSG_BATCH_END as u16;
pub(crate) const NFNL_SUBSYS_NFTABLES: u16 = libc::NFNL_SUBSYS_NFTABLES as u16;
pub(crate) const NFPROTO_INET: u8 = libc::NFPROTO_INET as u8;
const NFPROTO_IPV4: u8 = libc::NFPROTO_IPV4 as u8;
const NFPROTO_IPV6: u8 = libc::NFPROTO_IPV6 as u8;

// --- nf_tables message types (linux/netfilter/nf_tables.h) ---
pub(crate) const NFT_MSG_NEWTABLE: u16 = libc::NFT_MSG_NEWTABLE as u16;
const NFT_MSG_GETTABLE: u16 = libc::NFT_MSG_GETTABLE as u16;
const NFT_MSG_DELTABLE: u16 = libc::NFT_MSG_DELTABLE as u16;
const NFT_MSG_NEWCHAIN: u16 = libc::NFT_MSG_NEWCHAIN as u16;
pub(crate) const NFT_MSG_NEWRULE: u16 = libc::NFT_MSG_NEWRULE as u16;
pub(crate) const NFT_MSG_GETRULE: u16 = libc::NFT_MSG_GETRULE as u16;
pub(crate) const NLM_F_DUMP: u16 = libc::NLM_F_DUMP as u16;
const NFT_MSG_NEWSET: u16 = libc::NFT_MSG_NEWSET as u16;
const NFT_MSG_NEWSETELEM: u16 = libc::NFT_MSG_NEWSETELEM as u16;

// --- attributes ---
const NFTA_TABLE_NAME: u16 = 1;
const NFTA_CHAIN_TABLE: u16 = 1;
const NFTA_CHAIN_NAME: u16 = 3;
const NFTA_CHAIN_HOOK: u16 = 4;
const NFTA_CHAIN_POLICY: u16 = 5;
const NFTA_CHAIN_TYPE: u16 = 7;
const NFTA_HOOK_HOOKNUM: u16 = 1;
const NFTA_HOOK_PRIORITY: u16 = 2;
const NFTA_RULE_TABLE: u16 = 1;
const NFTA_RULE_CHAIN: u16 = 2;
const NFTA_RULE_EXPRESSIONS: u16 = 4;
const NFTA_RULE_USERDATA: u16 = 7;
const NFTA_LIST_ELEM: u16 = 1;
const NFTA_EXPR_NAME: u16 = 1;
const NFTA_EXPR_DATA: u16 = 2;
const NFTA_SET_TABLE: u16 = 1;
const NFTA_SET_NAME: u16 = 2;
const NFTA_SET_FLAGS: u16 = 3;
const NFTA_SET_KEY_TYPE: u16 = 4;
const NFTA_SET_KEY_LEN: u16 = 5;
const NFTA_SET_ID: u16 = 10;
const NFTA_SET_ELEM_LIST_TABLE: u16 = 1;
const NFTA_SET_ELEM_LIST_SET: u16 = 2;
const NFTA_SET_ELEM_LIST_ELEMENTS: u16 = 3;
const NFTA_SET_ELEM_LIST_SET_ID: u16 = 4;
const NFTA_SET_ELEM_KEY: u16 = 1;
const NFTA_SET_ELEM_FLAGS: u16 = 3;
const NFTA_DATA_VALUE: u16 = 1;
const NFTA_DATA_VERDICT: u16 = 2;
const NFTA_VERDICT_CODE: u16 = 1;
const NFTA_VERDICT_CHAIN: u16 = 2;
const NFTA_META_DREG: u16 = 1;
const NFTA_META_KEY: u16 = 2;
const NFTA_CMP_SREG: u16 = 1;
const NFTA_CMP_OP: u16 = 2;
const NFTA_CMP_DATA: u16 = 3;
const NFTA_PAYLOAD_DREG: u16 = 1;
const NFTA_PAYLOAD_BASE: u16 = 2;
const NFTA_PAYLOAD_OFFSET: u16 = 3;
const NFTA_PAYLOAD_LEN: u16 = 4;
const NFTA_BITWISE_SREG: u16 = 1;
const NFTA_BITWISE_DREG: u16 = 2;
const NFTA_BITWISE_LEN: u16 = 3;
const NFTA_BITWISE_MASK: u16 = 4;
const NFTA_BITWISE_XOR: u16 = 5;
const NFTA_LOOKUP_SET: u16 = 1;
const NFTA_LOOKUP_SREG: u16 = 2;
const NFTA_LOOKUP_SET_ID: u16 = 4;
const NFTA_LOG_GROUP: u16 = 1;
const NFTA_LOG_PREFIX: u16 = 2;
const NFTA_LOG_SNAPLEN: u16 = 3;
const NFTA_LOG_QTHRESHOLD: u16 = 4;
const NFTA_COUNTER_BYTES: u16 = 1;
const NFTA_COUNTER_PACKETS: u16 = 2;
const NFTA_IMMEDIATE_DREG: u16 = 1;
const NFTA_IMMEDIATE_DATA: u16 = 2;

// --- values ---
const NFT_REG_VERDICT: u32 = libc::NFT_REG_VERDICT as u32;
const NFT_REG_1: u32 = libc::NFT_REG_1 as u32;
const NFT_CMP_EQ: u32 = libc::NFT_CMP_EQ as u32;
const NFT_META_IIF: u32 = libc::NFT_META_IIF as u32;
const NFT_META_OIF: u32 = libc::NFT_META_OIF as u32;
const NFT_META_IIFNAME: u32 = libc::NFT_META_IIFNAME as u32;
const NFT_META_OIFNAME: u32 = libc::NFT_META_OIFNAME as u32;
const NFT_META_NFPROTO: u32 = libc::NFT_META_NFPROTO as u32;
const NFT_META_L4PROTO: u32 = libc::NFT_META_L4PROTO as u32;
const NFT_PAYLOAD_NETWORK_HEADER: u32 = libc::NFT_PAYLOAD_NETWORK_HEADER as u32;
const NFT_PAYLOAD_TRANSPORT_HEADER: u32 = libc::NFT_PAYLOAD_TRANSPORT_HEADER as u32;
const NFT_SET_INTERVAL: u32 = libc::NFT_SET_INTERVAL as u32;
const NFT_SET_ELEM_INTERVAL_END: u32 = libc::NFT_SET_ELEM_INTERVAL_END as u32;
const NF_DROP: u32 = libc::NF_DROP as u32;
const NF_ACCEPT: u32 = libc::NF_ACCEPT as u32;
const NFT_JUMP: i32 = libc::NFT_JUMP;
const NFT_GOTO: i32 = libc::NFT_GOTO;
const NFT_RETURN: i32 = libc::NFT_RETURN;
// nft's data types, so `nft list ruleset` prints the sets' elements as addresses and ports.
const TYPE_IPADDR: u32 = 7;
const TYPE_IP6ADDR: u32 = 8;
const TYPE_INET_SERVICE: u32 = 13;

/// Netfilter hook numbers (`NF_INET_*`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Hook {
    /// Every packet that arrives, before routing (`NF_INET_PRE_ROUTING`).
    Prerouting,
    /// Packets routed through this host, after routing (`NF_INET_FORWARD`).
    Forward,
    /// Packets for this host, after routing (`NF_INET_LOCAL_IN`).
    Input,
    /// Every packet that leaves, local or forwarded, after routing (`NF_INET_POST_ROUTING`).
    Postrouting,
}

impl Hook {
    fn number(self) -> u32 {
        match self {
            Hook::Prerouting => 0,
            Hook::Input => 1,
            Hook::Forward => 2,
            Hook::Postrouting => 4,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Hook::Prerouting => "prerouting",
            Hook::Input => "input",
            Hook::Forward => "forward",
            Hook::Postrouting => "postrouting",
        }
    }
}

/// An address family of a set or a match.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Family {
    /// IPv4.
    V4,
    /// IPv6.
    V6,
}

/// Which end of the IP header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum End {
    /// The source address.
    Source,
    /// The destination address.
    Destination,
}

/// One condition of a rule; a rule's conditions must all hold.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Match {
    /// The input interface has this index (`meta iif`).
    Iif(u32),
    /// The input interface has this name (`meta iifname`).
    IifName(String),
    /// The output interface has this index (`meta oif`).
    Oif(u32),
    /// The output interface has this name (`meta oifname`).
    OifName(String),
    /// The packet's family and one of its addresses is in a set (`ip daddr @set`).
    Addr(Family, End, String),
    /// The packet's family and one of its addresses is in a prefix (`ip daddr 10.0.0.0/8`).
    Prefix(End, IpNet),
    /// A TCP segment that opens a connection (SYN without ACK, RST or FIN) to a port in a
    /// set.
    TcpSynToPort(String),
    /// A UDP datagram to a port in a set.
    UdpToPort(String),
}

/// What a rule does when it matches.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Let the packet through this chain (`accept`).
    Accept,
    /// Back to the calling chain (`return`).
    Return,
    /// Run a chain, then come back (`jump`).
    Jump(String),
    /// Continue in a chain, never come back here (`goto`).
    Goto(String),
    /// Log to an NFLOG group with a prefix, count, and drop (or, observing, let it go on).
    Log {
        /// The NFLOG group.
        group: u16,
        /// The prefix the log message carries (what rule, which plane).
        prefix: String,
        /// Drop after logging; `false` in observe mode.
        drop: bool,
    },
}

/// A rule: conditions, an action, and a comment for humans.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rule {
    /// All must hold.
    pub matches: Vec<Match>,
    /// What happens then.
    pub action: Action,
    /// Why the rule is there (stored in the rule's user data as an nft comment).
    pub comment: String,
}

/// A chain, with its hook if it is a base chain.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Chain {
    /// The chain's name.
    pub name: String,
    /// For a base chain: the hook and priority (policy accept).
    pub hook: Option<(Hook, i32)>,
    /// Its rules, in order.
    pub rules: Vec<Rule>,
}

/// What a set holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SetKind {
    /// IPv4 prefixes (an interval set).
    V4(Vec<IpNet>),
    /// IPv6 prefixes (an interval set).
    V6(Vec<IpNet>),
    /// Ports.
    Ports(Vec<u16>),
}

/// A named set.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Set {
    /// The set's name.
    pub name: String,
    /// Its elements.
    pub kind: SetKind,
}

/// The family of a table: which packets its base chains see.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TableFamily {
    /// IPv4 and IPv6 (`inet`): each address test must first check the packet's family.
    Inet,
    /// IPv4 only (`ip`).
    Ip,
    /// IPv6 only (`ip6`).
    Ip6,
}

impl TableFamily {
    /// The family's `NFPROTO_*` number.
    pub fn nfproto(self) -> u8 {
        match self {
            TableFamily::Inet => NFPROTO_INET,
            TableFamily::Ip => NFPROTO_IPV4,
            TableFamily::Ip6 => NFPROTO_IPV6,
        }
    }

    /// The family as nft names it.
    pub fn name(self) -> &'static str {
        match self {
            TableFamily::Inet => "inet",
            TableFamily::Ip => "ip",
            TableFamily::Ip6 => "ip6",
        }
    }
}

/// A whole table: what the guard installs (one per address family).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Table {
    /// The table's family.
    pub family: TableFamily,
    /// The table's name.
    pub name: String,
    /// Its sets.
    pub sets: Vec<Set>,
    /// Its chains (regular chains before the base chains that jump to them is not required:
    /// all chains are created before any rule).
    pub chains: Vec<Chain>,
}

/// Builds netlink messages into one buffer.
#[derive(Default)]
pub(crate) struct Batch {
    buf: Vec<u8>,
    msg_start: usize,
    nests: Vec<usize>,
    seq: u32,
    /// What each message (by sequence number) was for, to name a failure.
    pub what: Vec<(u32, String)>,
}

fn align4(n: usize) -> usize {
    (n + 3) & !3
}

impl Batch {
    pub(crate) fn new(first_seq: u32) -> Batch {
        Batch {
            seq: first_seq,
            ..Batch::default()
        }
    }

    pub(crate) fn bytes(&self) -> &[u8] {
        &self.buf
    }

    /// The sequence number of every message that asked for an acknowledgement.
    pub(crate) fn acked(&self) -> impl Iterator<Item = u32> + '_ {
        self.what.iter().map(|(seq, _)| *seq)
    }

    /// Starts a message; returns its sequence number.
    pub(crate) fn begin(&mut self, ty: u16, flags: u16, family: u8, res_id: u16) -> u32 {
        self.seq = self.seq.wrapping_add(1);
        self.msg_start = self.buf.len();
        self.buf.extend_from_slice(&[0; 4]); // length, patched in end()
        self.buf.extend_from_slice(&ty.to_ne_bytes());
        self.buf.extend_from_slice(&flags.to_ne_bytes());
        self.buf.extend_from_slice(&self.seq.to_ne_bytes());
        self.buf.extend_from_slice(&0u32.to_ne_bytes()); // port id: the kernel's
        self.buf.push(family);
        self.buf.push(0); // NFNETLINK_V0
        self.buf.extend_from_slice(&res_id.to_be_bytes());
        self.seq
    }

    pub(crate) fn end(&mut self) {
        let len = (self.buf.len() - self.msg_start) as u32;
        self.buf[self.msg_start..self.msg_start + 4].copy_from_slice(&len.to_ne_bytes());
    }

    pub(crate) fn attr(&mut self, ty: u16, data: &[u8]) {
        let len = 4 + data.len();
        self.buf.extend_from_slice(&(len as u16).to_ne_bytes());
        self.buf.extend_from_slice(&ty.to_ne_bytes());
        self.buf.extend_from_slice(data);
        self.buf.resize(align4(self.buf.len()), 0);
    }

    pub(crate) fn str(&mut self, ty: u16, text: &str) {
        let mut data = text.as_bytes().to_vec();
        data.push(0);
        self.attr(ty, &data);
    }

    pub(crate) fn u32be(&mut self, ty: u16, value: u32) {
        self.attr(ty, &value.to_be_bytes());
    }

    fn nest(&mut self, ty: u16) {
        self.nests.push(self.buf.len());
        self.buf.extend_from_slice(&[0, 0]);
        self.buf
            .extend_from_slice(&(ty | NLA_F_NESTED).to_ne_bytes());
    }

    fn unnest(&mut self) {
        let start = self.nests.pop().expect("balanced nests");
        let len = (self.buf.len() - start) as u16;
        self.buf[start..start + 2].copy_from_slice(&len.to_ne_bytes());
    }

    fn nft(&mut self, family: TableFamily, ty: u16, flags: u16, what: String) {
        let seq = self.begin(
            (NFNL_SUBSYS_NFTABLES << 8) | ty,
            NLM_F_REQUEST | NLM_F_ACK | flags,
            family.nfproto(),
            0,
        );
        self.what.push((seq, what));
    }

    fn batch_marker(&mut self, ty: u16) {
        self.begin(ty, NLM_F_REQUEST, 0, NFNL_SUBSYS_NFTABLES);
        self.end();
    }
}

/// Sets in a batch are numbered per table from `table index << 12`, so ids never collide.
fn id_base(table_index: usize) -> u32 {
    (table_index as u32) << 12
}

/// The batch that makes `tables` the only content of the tables of those names, and deletes
/// the tables `stale` (an earlier layout's), whether or not they exist: each table is created
/// if missing, deleted, and created again with everything in it, all in one transaction.
pub(crate) fn replace_batch(
    tables: &[Table],
    stale: &[(TableFamily, &str)],
    first_seq: u32,
) -> Batch {
    let mut b = Batch::new(first_seq);
    b.batch_marker(NFNL_MSG_BATCH_BEGIN);
    for (family, name) in stale {
        delete_table(&mut b, *family, name);
    }
    for table in tables {
        delete_table(&mut b, table.family, &table.name);
        b.nft(
            table.family,
            NFT_MSG_NEWTABLE,
            NLM_F_CREATE | NLM_F_EXCL,
            format!("create table {} {}", table.family.name(), table.name),
        );
        b.str(NFTA_TABLE_NAME, &table.name);
        b.end();
    }
    for (t, table) in tables.iter().enumerate() {
        for (i, set) in table.sets.iter().enumerate() {
            encode_set(&mut b, table, set, id_base(t) + i as u32 + 1);
        }
        for chain in &table.chains {
            encode_chain(&mut b, table, chain);
        }
    }
    for (t, table) in tables.iter().enumerate() {
        for chain in &table.chains {
            for rule in &chain.rules {
                encode_rule(&mut b, table, id_base(t), &chain.name, rule);
            }
        }
    }
    b.batch_marker(NFNL_MSG_BATCH_END);
    b
}

/// Create-if-missing then delete: the table is gone, whether or not it existed.
fn delete_table(b: &mut Batch, family: TableFamily, name: &str) {
    b.nft(
        family,
        NFT_MSG_NEWTABLE,
        NLM_F_CREATE,
        format!("create table {} {name}", family.name()),
    );
    b.str(NFTA_TABLE_NAME, name);
    b.end();
    b.nft(
        family,
        NFT_MSG_DELTABLE,
        0,
        format!("delete table {} {name}", family.name()),
    );
    b.str(NFTA_TABLE_NAME, name);
    b.end();
}

/// The batch that deletes the tables `tables` whether or not they exist, in one transaction.
pub(crate) fn delete_batch(tables: &[(TableFamily, &str)], first_seq: u32) -> Batch {
    let mut b = Batch::new(first_seq);
    b.batch_marker(NFNL_MSG_BATCH_BEGIN);
    for (family, name) in tables {
        delete_table(&mut b, *family, name);
    }
    b.batch_marker(NFNL_MSG_BATCH_END);
    b
}

/// A `GETRULE` dump request for every rule of one table.
pub(crate) fn dump_rules(family: TableFamily, name: &str, seq: u32) -> Batch {
    let mut b = Batch::new(seq.wrapping_sub(1));
    b.nft(
        family,
        NFT_MSG_GETRULE,
        NLM_F_DUMP,
        format!("list the rules of table {} {name}", family.name()),
    );
    b.str(NFTA_RULE_TABLE, name);
    b.end();
    b
}

/// The netlink attributes in `bytes`: (type without flags, payload).
fn attrs(mut bytes: &[u8]) -> Vec<(u16, &[u8])> {
    let mut out = Vec::new();
    while bytes.len() >= 4 {
        let len = u16::from_ne_bytes([bytes[0], bytes[1]]) as usize;
        let ty = u16::from_ne_bytes([bytes[2], bytes[3]]) & 0x3fff;
        if len < 4 || len > bytes.len() {
            break;
        }
        out.push((ty, &bytes[4..len]));
        bytes = bytes.get(align4(len)..).unwrap_or(&[]);
    }
    out
}

/// What one rule of a dump says about a log-and-count rule: its log prefix and its counter.
/// `None` for any other rule. `payload` is a `NEWRULE` message after its `nfgenmsg` header.
pub(crate) fn logged_count(payload: &[u8]) -> Option<(String, u64)> {
    let exprs = attrs(payload)
        .into_iter()
        .find(|(ty, _)| *ty == NFTA_RULE_EXPRESSIONS)?
        .1;
    let mut prefix = None;
    let mut packets = None;
    for (ty, elem) in attrs(exprs) {
        if ty != NFTA_LIST_ELEM {
            continue;
        }
        let fields = attrs(elem);
        let name = fields
            .iter()
            .find(|(t, _)| *t == NFTA_EXPR_NAME)
            .map(|(_, v)| *v);
        let data = fields
            .iter()
            .find(|(t, _)| *t == NFTA_EXPR_DATA)
            .map(|(_, v)| *v);
        let (Some(name), Some(data)) = (name, data) else {
            continue;
        };
        let text = |v: &[u8]| {
            let end = v.iter().position(|&c| c == 0).unwrap_or(v.len());
            String::from_utf8_lossy(&v[..end]).into_owned()
        };
        match text(name).as_str() {
            "log" => {
                prefix = attrs(data)
                    .into_iter()
                    .find(|(t, _)| *t == NFTA_LOG_PREFIX)
                    .map(|(_, v)| text(v));
            }
            "counter" => {
                packets = attrs(data)
                    .into_iter()
                    .find(|(t, _)| *t == NFTA_COUNTER_PACKETS)
                    .and_then(|(_, v)| Some(u64::from_be_bytes(v.get(..8)?.try_into().ok()?)));
            }
            _ => {}
        }
    }
    Some((prefix?, packets?))
}

/// A `GETTABLE` request for one table (answered by the table or `ENOENT`).
pub(crate) fn get_table(family: TableFamily, name: &str, seq: u32) -> Batch {
    let mut b = Batch::new(seq.wrapping_sub(1));
    b.nft(
        family,
        NFT_MSG_GETTABLE,
        0,
        format!("get table {} {name}", family.name()),
    );
    b.str(NFTA_TABLE_NAME, name);
    b.end();
    b
}

fn set_id_of(table: &Table, id_base: u32, name: &str) -> u32 {
    table
        .sets
        .iter()
        .position(|s| s.name == name)
        .map_or(0, |i| id_base + i as u32 + 1)
}

fn encode_set(b: &mut Batch, t: &Table, set: &Set, id: u32) {
    let table = t.name.as_str();
    let (flags, key_type, key_len) = match &set.kind {
        SetKind::V4(_) => (NFT_SET_INTERVAL, TYPE_IPADDR, 4),
        SetKind::V6(_) => (NFT_SET_INTERVAL, TYPE_IP6ADDR, 16),
        SetKind::Ports(_) => (0, TYPE_INET_SERVICE, 2),
    };
    b.nft(
        t.family,
        NFT_MSG_NEWSET,
        NLM_F_CREATE,
        format!("create set {}", set.name),
    );
    b.str(NFTA_SET_TABLE, table);
    b.str(NFTA_SET_NAME, &set.name);
    b.u32be(NFTA_SET_FLAGS, flags);
    b.u32be(NFTA_SET_KEY_TYPE, key_type);
    b.u32be(NFTA_SET_KEY_LEN, key_len);
    b.u32be(NFTA_SET_ID, id);
    b.end();
    let elements = set_elements(&set.kind);
    // A few hundred elements per message keeps each message far below the socket's limits.
    for chunk in elements.chunks(256) {
        b.nft(
            t.family,
            NFT_MSG_NEWSETELEM,
            NLM_F_CREATE,
            format!("add {} elements to set {}", chunk.len(), set.name),
        );
        b.str(NFTA_SET_ELEM_LIST_TABLE, table);
        b.str(NFTA_SET_ELEM_LIST_SET, &set.name);
        b.u32be(NFTA_SET_ELEM_LIST_SET_ID, id);
        b.nest(NFTA_SET_ELEM_LIST_ELEMENTS);
        for (key, end) in chunk {
            b.nest(NFTA_LIST_ELEM);
            b.nest(NFTA_SET_ELEM_KEY);
            b.attr(NFTA_DATA_VALUE, key);
            b.unnest();
            if *end {
                b.u32be(NFTA_SET_ELEM_FLAGS, NFT_SET_ELEM_INTERVAL_END);
            }
            b.unnest();
        }
        b.unnest();
        b.end();
    }
}

/// The elements of a set as (key, interval end) pairs: each prefix range `[start, end]` is
/// the element `start` and, unless `end` is the last address, the element `end + 1` marked
/// as the end of an interval (half-open intervals, as nf_tables stores them). Overlapping and
/// adjacent prefixes are merged first.
pub(crate) fn set_elements(kind: &SetKind) -> Vec<(Vec<u8>, bool)> {
    match kind {
        SetKind::Ports(ports) => {
            let mut ports = ports.clone();
            ports.sort_unstable();
            ports.dedup();
            ports
                .iter()
                .map(|p| (p.to_be_bytes().to_vec(), false))
                .collect()
        }
        SetKind::V4(nets) => {
            let ranges = merge(nets.iter().filter_map(|n| match n {
                IpNet::V4(v4) => Some((
                    u32::from(v4.network()) as u128,
                    u32::from(v4.broadcast()) as u128,
                )),
                IpNet::V6(_) => None,
            }));
            interval_elements(&ranges, u32::MAX as u128, |v| {
                Ipv4Addr::from(v as u32).octets().to_vec()
            })
        }
        SetKind::V6(nets) => {
            let ranges = merge(nets.iter().filter_map(|n| match n {
                IpNet::V6(v6) => Some((u128::from(v6.network()), u128::from(v6.broadcast()))),
                IpNet::V4(_) => None,
            }));
            interval_elements(&ranges, u128::MAX, |v| Ipv6Addr::from(v).octets().to_vec())
        }
    }
}

/// `nets` without the prefixes another one covers (each address range once), in address
/// order. Two prefixes either nest or do not overlap, so after sorting by first address (the
/// shorter prefix first) a prefix is covered exactly when the last one kept covers it.
pub fn merged_prefixes(nets: &[IpNet]) -> Vec<IpNet> {
    let mut sorted = nets.to_vec();
    sorted.sort_by(|a, b| {
        (a.addr().is_ipv6(), a.network(), a.prefix_len()).cmp(&(
            b.addr().is_ipv6(),
            b.network(),
            b.prefix_len(),
        ))
    });
    let mut out: Vec<IpNet> = Vec::with_capacity(sorted.len());
    for net in sorted {
        if !out.last().is_some_and(|last| last.contains(&net)) {
            out.push(net);
        }
    }
    out
}

fn merge(ranges: impl Iterator<Item = (u128, u128)>) -> Vec<(u128, u128)> {
    let mut ranges: Vec<(u128, u128)> = ranges.collect();
    ranges.sort_unstable();
    let mut merged: Vec<(u128, u128)> = Vec::with_capacity(ranges.len());
    for (start, end) in ranges {
        match merged.last_mut() {
            Some(last) if start <= last.1.saturating_add(1) => last.1 = last.1.max(end),
            _ => merged.push((start, end)),
        }
    }
    merged
}

fn interval_elements(
    ranges: &[(u128, u128)],
    max: u128,
    bytes: impl Fn(u128) -> Vec<u8>,
) -> Vec<(Vec<u8>, bool)> {
    let mut out = Vec::with_capacity(ranges.len() * 2);
    for &(start, end) in ranges {
        out.push((bytes(start), false));
        if end != max {
            out.push((bytes(end + 1), true));
        }
    }
    out
}

fn encode_chain(b: &mut Batch, t: &Table, chain: &Chain) {
    let table = t.name.as_str();
    b.nft(
        t.family,
        NFT_MSG_NEWCHAIN,
        NLM_F_CREATE,
        format!("create chain {}", chain.name),
    );
    b.str(NFTA_CHAIN_TABLE, table);
    b.str(NFTA_CHAIN_NAME, &chain.name);
    if let Some((hook, priority)) = chain.hook {
        b.nest(NFTA_CHAIN_HOOK);
        b.u32be(NFTA_HOOK_HOOKNUM, hook.number());
        b.u32be(NFTA_HOOK_PRIORITY, priority as u32);
        b.unnest();
        b.u32be(NFTA_CHAIN_POLICY, NF_ACCEPT);
        b.str(NFTA_CHAIN_TYPE, "filter");
    }
    b.end();
}

/// One expression of a rule, in kernel terms.
enum Expr<'a> {
    Meta(u32),
    Cmp(Vec<u8>),
    Payload(u32, u32, u32),
    Bitwise(Vec<u8>),
    Lookup(&'a str, u32),
    Log(u16, &'a str),
    Counter,
    Verdict(i32, Option<&'a str>),
}

fn ifname_bytes(name: &str) -> Vec<u8> {
    let mut bytes = name.as_bytes().to_vec();
    bytes.resize(16, 0);
    bytes
}

fn exprs_of<'a>(table: &Table, id_base: u32, rule: &'a Rule) -> Vec<Expr<'a>> {
    // In an `inet` table an address test first checks the packet's family; an `ip` or `ip6`
    // table only sees its own.
    let check_family = table.family == TableFamily::Inet;
    let mut out = Vec::new();
    for m in &rule.matches {
        match m {
            Match::Iif(index) => {
                out.push(Expr::Meta(NFT_META_IIF));
                out.push(Expr::Cmp(index.to_ne_bytes().to_vec()));
            }
            Match::Oif(index) => {
                out.push(Expr::Meta(NFT_META_OIF));
                out.push(Expr::Cmp(index.to_ne_bytes().to_vec()));
            }
            Match::IifName(name) => {
                out.push(Expr::Meta(NFT_META_IIFNAME));
                out.push(Expr::Cmp(ifname_bytes(name)));
            }
            Match::OifName(name) => {
                out.push(Expr::Meta(NFT_META_OIFNAME));
                out.push(Expr::Cmp(ifname_bytes(name)));
            }
            Match::Addr(family, end, set) => {
                let (proto, offset, len) = match (family, end) {
                    (Family::V4, End::Source) => (NFPROTO_IPV4, 12, 4),
                    (Family::V4, End::Destination) => (NFPROTO_IPV4, 16, 4),
                    (Family::V6, End::Source) => (NFPROTO_IPV6, 8, 16),
                    (Family::V6, End::Destination) => (NFPROTO_IPV6, 24, 16),
                };
                if check_family {
                    out.push(Expr::Meta(NFT_META_NFPROTO));
                    out.push(Expr::Cmp(vec![proto]));
                }
                out.push(Expr::Payload(NFT_PAYLOAD_NETWORK_HEADER, offset, len));
                out.push(Expr::Lookup(set, set_id_of(table, id_base, set)));
            }
            Match::Prefix(end, net) => {
                let (proto, offset, network, mask) = match net {
                    IpNet::V4(n) => (
                        NFPROTO_IPV4,
                        if *end == End::Source { 12 } else { 16 },
                        n.network().octets().to_vec(),
                        n.netmask().octets().to_vec(),
                    ),
                    IpNet::V6(n) => (
                        NFPROTO_IPV6,
                        if *end == End::Source { 8 } else { 24 },
                        n.network().octets().to_vec(),
                        n.netmask().octets().to_vec(),
                    ),
                };
                if check_family {
                    out.push(Expr::Meta(NFT_META_NFPROTO));
                    out.push(Expr::Cmp(vec![proto]));
                }
                // Only the bytes the prefix covers are loaded and compared.
                let bytes = (net.prefix_len() as usize).div_ceil(8);
                if bytes > 0 {
                    out.push(Expr::Payload(
                        NFT_PAYLOAD_NETWORK_HEADER,
                        offset,
                        bytes as u32,
                    ));
                    if net.prefix_len() % 8 != 0 {
                        out.push(Expr::Bitwise(mask[..bytes].to_vec()));
                    }
                    out.push(Expr::Cmp(network[..bytes].to_vec()));
                }
            }
            Match::TcpSynToPort(set) => {
                out.push(Expr::Meta(NFT_META_L4PROTO));
                out.push(Expr::Cmp(vec![libc::IPPROTO_TCP as u8]));
                // flags & (FIN|SYN|RST|ACK) == SYN first: most segments fail it, before the
                // port lookup.
                out.push(Expr::Payload(NFT_PAYLOAD_TRANSPORT_HEADER, 13, 1));
                out.push(Expr::Bitwise(vec![0x17]));
                out.push(Expr::Cmp(vec![0x02]));
                out.push(Expr::Payload(NFT_PAYLOAD_TRANSPORT_HEADER, 2, 2));
                out.push(Expr::Lookup(set, set_id_of(table, id_base, set)));
            }
            Match::UdpToPort(set) => {
                out.push(Expr::Meta(NFT_META_L4PROTO));
                out.push(Expr::Cmp(vec![libc::IPPROTO_UDP as u8]));
                out.push(Expr::Payload(NFT_PAYLOAD_TRANSPORT_HEADER, 2, 2));
                out.push(Expr::Lookup(set, set_id_of(table, id_base, set)));
            }
        }
    }
    match &rule.action {
        Action::Accept => out.push(Expr::Verdict(NF_ACCEPT as i32, None)),
        Action::Return => out.push(Expr::Verdict(NFT_RETURN, None)),
        Action::Jump(chain) => out.push(Expr::Verdict(NFT_JUMP, Some(chain))),
        Action::Goto(chain) => out.push(Expr::Verdict(NFT_GOTO, Some(chain))),
        Action::Log {
            group,
            prefix,
            drop,
        } => {
            out.push(Expr::Log(*group, prefix));
            out.push(Expr::Counter);
            if *drop {
                out.push(Expr::Verdict(NF_DROP as i32, None));
            }
        }
    }
    out
}

fn encode_rule(b: &mut Batch, table: &Table, id_base: u32, chain: &str, rule: &Rule) {
    b.nft(
        table.family,
        NFT_MSG_NEWRULE,
        NLM_F_CREATE | NLM_F_APPEND,
        format!("add rule to chain {chain}: {}", render_rule(rule)),
    );
    b.str(NFTA_RULE_TABLE, &table.name);
    b.str(NFTA_RULE_CHAIN, chain);
    b.nest(NFTA_RULE_EXPRESSIONS);
    for expr in exprs_of(table, id_base, rule) {
        b.nest(NFTA_LIST_ELEM);
        let name = match expr {
            Expr::Meta(_) => "meta",
            Expr::Cmp(_) => "cmp",
            Expr::Payload(..) => "payload",
            Expr::Bitwise(_) => "bitwise",
            Expr::Lookup(..) => "lookup",
            Expr::Log(..) => "log",
            Expr::Counter => "counter",
            Expr::Verdict(..) => "immediate",
        };
        b.str(NFTA_EXPR_NAME, name);
        b.nest(NFTA_EXPR_DATA);
        match expr {
            Expr::Meta(key) => {
                b.u32be(NFTA_META_KEY, key);
                b.u32be(NFTA_META_DREG, NFT_REG_1);
            }
            Expr::Cmp(data) => {
                b.u32be(NFTA_CMP_SREG, NFT_REG_1);
                b.u32be(NFTA_CMP_OP, NFT_CMP_EQ);
                b.nest(NFTA_CMP_DATA);
                b.attr(NFTA_DATA_VALUE, &data);
                b.unnest();
            }
            Expr::Payload(base, offset, len) => {
                b.u32be(NFTA_PAYLOAD_DREG, NFT_REG_1);
                b.u32be(NFTA_PAYLOAD_BASE, base);
                b.u32be(NFTA_PAYLOAD_OFFSET, offset);
                b.u32be(NFTA_PAYLOAD_LEN, len);
            }
            Expr::Bitwise(mask) => {
                b.u32be(NFTA_BITWISE_SREG, NFT_REG_1);
                b.u32be(NFTA_BITWISE_DREG, NFT_REG_1);
                b.u32be(NFTA_BITWISE_LEN, mask.len() as u32);
                b.nest(NFTA_BITWISE_MASK);
                b.attr(NFTA_DATA_VALUE, &mask);
                b.unnest();
                b.nest(NFTA_BITWISE_XOR);
                b.attr(NFTA_DATA_VALUE, &vec![0; mask.len()]);
                b.unnest();
            }
            Expr::Lookup(set, id) => {
                b.str(NFTA_LOOKUP_SET, set);
                b.u32be(NFTA_LOOKUP_SREG, NFT_REG_1);
                b.u32be(NFTA_LOOKUP_SET_ID, id);
            }
            Expr::Log(group, prefix) => {
                b.attr(NFTA_LOG_GROUP, &group.to_be_bytes());
                b.str(NFTA_LOG_PREFIX, prefix);
                // The headers are all the guard reads: 128 bytes hold IPv6 with a few
                // extension headers and the transport header.
                b.u32be(NFTA_LOG_SNAPLEN, 128);
                // Let the kernel batch log messages under a flood: one datagram per this many
                // (or per the group's flush timeout, 100 ms, whichever comes first).
                b.attr(NFTA_LOG_QTHRESHOLD, &128u16.to_be_bytes());
            }
            Expr::Counter => {
                b.attr(NFTA_COUNTER_BYTES, &0u64.to_be_bytes());
                b.attr(NFTA_COUNTER_PACKETS, &0u64.to_be_bytes());
            }
            Expr::Verdict(code, chain) => {
                b.u32be(NFTA_IMMEDIATE_DREG, NFT_REG_VERDICT);
                b.nest(NFTA_IMMEDIATE_DATA);
                b.nest(NFTA_DATA_VERDICT);
                b.u32be(NFTA_VERDICT_CODE, code as u32);
                if let Some(chain) = chain {
                    b.str(NFTA_VERDICT_CHAIN, chain);
                }
                b.unnest();
                b.unnest();
            }
        }
        b.unnest();
        b.unnest();
    }
    b.unnest();
    // nft's comment format in the rule's user data: type 0 (comment), length, text + NUL.
    let comment = rule.comment.as_bytes();
    let len = comment.len().min(127);
    let mut udata = vec![0u8, (len + 1) as u8];
    udata.extend_from_slice(&comment[..len]);
    udata.push(0);
    b.attr(NFTA_RULE_USERDATA, &udata);
    b.end();
}

/// A rule in nft's syntax, for `--check` and error messages.
pub fn render_rule(rule: &Rule) -> String {
    let mut parts: Vec<String> = Vec::new();
    for m in &rule.matches {
        parts.push(match m {
            Match::Iif(i) => format!("meta iif {i}"),
            Match::IifName(n) => format!("meta iifname \"{n}\""),
            Match::Oif(i) => format!("meta oif {i}"),
            Match::OifName(n) => format!("meta oifname \"{n}\""),
            Match::Addr(family, end, set) => format!(
                "{} {} @{set}",
                match family {
                    Family::V4 => "ip",
                    Family::V6 => "ip6",
                },
                match end {
                    End::Source => "saddr",
                    End::Destination => "daddr",
                }
            ),
            Match::Prefix(end, net) => format!(
                "{} {} {net}",
                if net.addr().is_ipv4() { "ip" } else { "ip6" },
                match end {
                    End::Source => "saddr",
                    End::Destination => "daddr",
                }
            ),
            Match::TcpSynToPort(set) => {
                format!("tcp flags & (fin|syn|rst|ack) == syn tcp dport @{set}")
            }
            Match::UdpToPort(set) => format!("udp dport @{set}"),
        });
    }
    parts.push(match &rule.action {
        Action::Accept => "accept".to_owned(),
        Action::Return => "return".to_owned(),
        Action::Jump(c) => format!("jump {c}"),
        Action::Goto(c) => format!("goto {c}"),
        Action::Log {
            group,
            prefix,
            drop,
        } => format!(
            "log prefix \"{prefix}\" group {group} counter{}",
            if *drop { " drop" } else { "" }
        ),
    });
    parts.join(" ")
}

/// The table in nft's syntax (what `nft list table FAMILY NAME` would show, without
/// counters).
pub fn render_table(table: &Table) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "table {} {} {{", table.family.name(), table.name);
    for set in &table.sets {
        let (ty, flags, elements): (&str, &str, Vec<String>) = match &set.kind {
            SetKind::V4(n) | SetKind::V6(n) => (
                if matches!(set.kind, SetKind::V4(_)) {
                    "ipv4_addr"
                } else {
                    "ipv6_addr"
                },
                "\t\tflags interval\n",
                n.iter().map(ToString::to_string).collect(),
            ),
            SetKind::Ports(p) => (
                "inet_service",
                "",
                p.iter().map(ToString::to_string).collect(),
            ),
        };
        let _ = writeln!(out, "\tset {} {{\n\t\ttype {ty}\n{flags}", set.name);
        if !elements.is_empty() {
            let _ = writeln!(out, "\t\telements = {{ {} }}", elements.join(", "));
        }
        let _ = writeln!(out, "\t}}\n");
    }
    for chain in &table.chains {
        let _ = writeln!(out, "\tchain {} {{", chain.name);
        if let Some((hook, priority)) = chain.hook {
            let _ = writeln!(
                out,
                "\t\ttype filter hook {} priority {priority}; policy accept;",
                hook.name()
            );
        }
        for rule in &chain.rules {
            let _ = writeln!(
                out,
                "\t\t{} comment \"{}\"",
                render_rule(rule),
                rule.comment
            );
        }
        let _ = writeln!(out, "\t}}\n");
    }
    out.push_str("}\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(s: &str) -> IpNet {
        s.parse().unwrap()
    }

    #[test]
    fn prefixes_become_half_open_intervals_merged() {
        let els = set_elements(&SetKind::V4(vec![
            net("10.99.0.0/16"),
            net("10.98.0.0/16"),
            net("192.0.2.0/24"),
            net("10.99.7.0/24"),
        ]));
        let shown: Vec<(String, bool)> = els
            .iter()
            .map(|(k, e)| {
                (
                    Ipv4Addr::from(<[u8; 4]>::try_from(k.as_slice()).unwrap()).to_string(),
                    *e,
                )
            })
            .collect();
        assert_eq!(
            shown,
            vec![
                ("10.98.0.0".into(), false),
                ("10.100.0.0".into(), true),
                ("192.0.2.0".into(), false),
                ("192.0.3.0".into(), true),
            ]
        );
        // The whole space has no end element.
        assert_eq!(
            set_elements(&SetKind::V4(vec![net("0.0.0.0/0")])),
            vec![(vec![0, 0, 0, 0], false)]
        );
        let v6 = set_elements(&SetKind::V6(vec![net("fd99::/16")]));
        assert_eq!(v6.len(), 2);
        assert_eq!(&v6[1].0[..2], &[0xfd, 0x9a]);
        assert!(v6[1].1);
    }

    #[test]
    fn covered_prefixes_are_dropped() {
        let nets: Vec<IpNet> = [
            "10.1.0.0/16",
            "10.0.0.0/8",
            "10.2.3.0/24",
            "192.0.2.0/24",
            "fd99::/16",
            "fd99:1::/32",
            "11.0.0.0/8",
        ]
        .iter()
        .map(|s| s.parse().unwrap())
        .collect();
        let merged: Vec<String> = merged_prefixes(&nets)
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(
            merged,
            ["10.0.0.0/8", "11.0.0.0/8", "192.0.2.0/24", "fd99::/16"]
        );
    }

    #[test]
    fn messages_are_well_formed() {
        let table = Table {
            family: TableFamily::Inet,
            name: "t".into(),
            sets: vec![Set {
                name: "s".into(),
                kind: SetKind::Ports(vec![7500, 7500, 22]),
            }],
            chains: vec![Chain {
                name: "c".into(),
                hook: Some((Hook::Input, 0)),
                rules: vec![Rule {
                    matches: vec![Match::UdpToPort("s".into()), Match::Iif(3)],
                    action: Action::Log {
                        group: 5,
                        prefix: "p".into(),
                        drop: true,
                    },
                    comment: "why".into(),
                }],
            }],
        };
        let batch = replace_batch(std::slice::from_ref(&table), &[], 100);
        let mut bytes = batch.bytes();
        let mut count = 0;
        while !bytes.is_empty() {
            let len = u32::from_ne_bytes(bytes[..4].try_into().unwrap()) as usize;
            assert!(len >= 20 && len % 4 == 0 && len <= bytes.len(), "{len}");
            bytes = &bytes[len..];
            count += 1;
        }
        // begin, newtable, deltable, newtable, newset, newsetelem, newchain, newrule, end
        assert_eq!(count, 9);
        assert_eq!(batch.what.len(), 7);
        assert!(render_table(&table).contains("udp dport @s meta iif 3 log prefix \"p\""));
    }
}
