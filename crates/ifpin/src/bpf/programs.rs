//! The confinement programs, written with the assembler.
//!
//! Every program reads the allowed interface from one shared array map (the *config* map,
//! one entry, see [`Config`]), so the interface can change, or the confinement close, without
//! reloading anything: an index of 0 means *closed*. Refusals and drops are counted in a
//! second array map of `u64` counters ([`Counter`]), incremented with an atomic add.
//!
//! | program | type / attach point | what it does |
//! |---|---|---|
//! | [`sock_create`] | `cgroup/sock_create` | binds every new AF_INET/AF_INET6 socket (`bound_dev_if`); refuses the socket while closed |
//! | [`skb_filter`] | `cgroup_skb` egress/ingress | passes only the allowed interface (and `lo` when allowed); in loopback mode also drops 127/8 and `::1` destinations seen on the allowed interface |
//! | [`setsockopt_guard`] | `cgroup/setsockopt` | refuses options that unpin or re-steer a socket |
//! | [`sock_addr_pin`] | `cgroup/connect4`, `connect6`, `sendmsg4`, `sendmsg6`, `bind4`, `bind6` | loopback mode: pins sockets lazily (by name, `bpf_setsockopt(SO_BINDTODEVICE)`) when they go to a non-local address; refuses when the pin fails |
//!
//! Context offsets are those of `struct bpf_sock`, `struct __sk_buff`, `struct bpf_sockopt`
//! and `struct bpf_sock_addr` in `include/uapi/linux/bpf.h`.

use super::asm::{Asm, AsmError, Label};
use super::insn::{AluOp, Cond, Helper, Insn, Reg, Size};

/// Layout of the config map's single value.
pub struct Config;

impl Config {
    /// Offset of the allowed ifindex (`u32`; 0 = closed).
    pub const IFINDEX: i16 = 0;
    /// Offset of the allowed interface's name (16 bytes, NUL-padded).
    pub const NAME: i16 = 8;
    /// Size of the value.
    pub const SIZE: usize = 24;

    /// Encodes a config value.
    pub fn encode(ifindex: u32, name: &str) -> [u8; Config::SIZE] {
        let mut value = [0u8; Config::SIZE];
        value[0..4].copy_from_slice(&ifindex.to_ne_bytes());
        let name = name.as_bytes();
        let len = name.len().min(15);
        value[8..8 + len].copy_from_slice(&name[..len]);
        value
    }
}

/// The counters, as indexes of the counter map.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
pub enum Counter {
    /// Packets dropped by the egress filter.
    EgressBlocked = 0,
    /// Packets dropped by the ingress filter.
    IngressBlocked = 1,
    /// `setsockopt` calls refused by the guard.
    SetsockoptRefused = 2,
    /// `connect` calls refused (loopback mode: the pin failed, or closed).
    ConnectRefused = 3,
    /// `sendmsg` calls refused (loopback mode).
    SendmsgRefused = 4,
    /// `bind` calls refused (link-local bind, or the pin failed).
    BindRefused = 5,
    /// AF_INET/AF_INET6 sockets refused at creation because the confinement was closed.
    SocketRefused = 6,
}

impl Counter {
    /// Every counter, in map order.
    pub const ALL: [Counter; 7] = [
        Counter::EgressBlocked,
        Counter::IngressBlocked,
        Counter::SetsockoptRefused,
        Counter::ConnectRefused,
        Counter::SendmsgRefused,
        Counter::BindRefused,
        Counter::SocketRefused,
    ];
    /// How many counters there are.
    pub const COUNT: u32 = Counter::ALL.len() as u32;
}

/// The maps a program refers to, by raw descriptor (embedded at load time).
#[derive(Clone, Copy, Debug)]
pub struct MapFds {
    /// The config map (array, 1 entry of [`Config::SIZE`] bytes).
    pub config: i32,
    /// The counter map (array of [`Counter::COUNT`] `u64`).
    pub counters: i32,
    /// The host's own addresses (hash, 16-byte IPv6 or v4-mapped keys), loopback mode only.
    pub locals: Option<i32>,
}

// Protocol numbers and options: `libc`'s, which are the kernel's (`linux/in.h`, `linux/in6.h`,
// `asm-generic/socket.h`); the programs compare them with 32-bit immediates.
use libc::{
    AF_INET, AF_INET6, IP_ADD_MEMBERSHIP, IP_DROP_MEMBERSHIP, IP_MSFILTER, IP_MULTICAST_IF,
    IP_RECVERR, IP_UNBLOCK_SOURCE, IP_UNICAST_IF, IPV6_2292PKTOPTIONS, IPV6_ADD_MEMBERSHIP,
    IPV6_DROP_MEMBERSHIP, IPV6_JOIN_ANYCAST, IPV6_LEAVE_ANYCAST, IPV6_MULTICAST_IF, IPV6_PKTINFO,
    IPV6_RECVERR, IPV6_UNICAST_IF, MCAST_JOIN_GROUP, MCAST_MSFILTER, SO_BINDTODEVICE,
    SO_BINDTOIFINDEX, SOL_IP, SOL_IPV6, SOL_SOCKET,
};
const IFNAMSIZ: i32 = libc::IFNAMSIZ as i32;
/// `htons(ETH_P_IP)` as `__sk_buff.protocol` reads on a little-endian machine.
const PROTO_IPV4: i32 = u16::from_ne_bytes(0x0800u16.to_be_bytes()) as i32;
/// `htons(ETH_P_IPV6)`, likewise.
const PROTO_IPV6: i32 = u16::from_ne_bytes(0x86ddu16.to_be_bytes()) as i32;
/// The second half of `::1` read as a native `u64`.
const V6_LOOPBACK_TAIL: u64 = u64::from_ne_bytes([0, 0, 0, 0, 0, 0, 0, 1]);
/// Bytes 8..12 of a v4-mapped address (`::ffff:0:0/96`) read as a native `u32`.
const V4_MAPPED_MARK: u64 = u32::from_ne_bytes([0, 0, 0xff, 0xff]) as u64;
/// The first two bytes of `fe80::/10`, and the mask, read as a native `u16`.
const LINK_LOCAL_PREFIX: i32 = u16::from_ne_bytes([0xfe, 0x80]) as i32;
const LINK_LOCAL_MASK: i32 = u16::from_ne_bytes([0xff, 0xc0]) as i32;

// Context offsets.
mod ctx {
    /// `struct bpf_sock`.
    pub const SOCK_BOUND_DEV_IF: i16 = 0;
    pub const SOCK_FAMILY: i16 = 4;
    /// `struct __sk_buff`.
    pub const SKB_PROTOCOL: i16 = 16;
    pub const SKB_IFINDEX: i16 = 40;
    /// `struct bpf_sockopt`.
    pub const SOCKOPT_SK: i16 = 0;
    pub const SOCKOPT_OPTVAL: i16 = 8;
    pub const SOCKOPT_OPTVAL_END: i16 = 16;
    pub const SOCKOPT_LEVEL: i16 = 24;
    pub const SOCKOPT_OPTNAME: i16 = 28;
    pub const SOCKOPT_OPTLEN: i16 = 32;
    /// `struct bpf_sock_addr`.
    pub const ADDR_USER_IP4: i16 = 4;
    pub const ADDR_USER_IP6: i16 = 8;
    pub const ADDR_SK: i16 = 64;
}

// Stack slots (offsets from r10).
const STACK_CONFIG_KEY: i16 = -4;
const STACK_COUNTER_KEY: i16 = -8;
const STACK_ADDR: i16 = -32; // 16 bytes: a packet's address, or a locals-map key
const STACK_NAME: i16 = -48; // 16 bytes: the interface name for bpf_setsockopt

/// `r0 = &config` or `goto fail` when the lookup fails. Clobbers r1–r5.
fn lookup_config(asm: &mut Asm, maps: MapFds, fail: Label) {
    asm.push(Insn::st_mem(Size::W, Reg::R10, STACK_CONFIG_KEY, 0))
        .extend(Insn::ld_map_fd(Reg::R1, maps.config))
        .push(Insn::mov64_reg(Reg::R2, Reg::R10))
        .push(Insn::alu64_imm(
            AluOp::Add,
            Reg::R2,
            STACK_CONFIG_KEY.into(),
        ))
        .push(Insn::call(Helper::MapLookupElem))
        .jump_imm(Cond::Eq, Reg::R0, 0, fail);
}

/// Adds one to `counter`, then `return verdict`. Clobbers r0–r5.
fn count_and_return(asm: &mut Asm, maps: MapFds, counter: Counter, verdict: i32, done: Label) {
    asm.push(Insn::st_mem(
        Size::W,
        Reg::R10,
        STACK_COUNTER_KEY,
        counter as i32,
    ))
    .extend(Insn::ld_map_fd(Reg::R1, maps.counters))
    .push(Insn::mov64_reg(Reg::R2, Reg::R10))
    .push(Insn::alu64_imm(
        AluOp::Add,
        Reg::R2,
        STACK_COUNTER_KEY.into(),
    ))
    .push(Insn::call(Helper::MapLookupElem))
    .jump_imm(Cond::Eq, Reg::R0, 0, done)
    .push(Insn::mov64_imm(Reg::R1, 1))
    .push(Insn::atomic_add64(Reg::R0, Reg::R1, 0))
    .label(done)
    .ret(verdict);
}

/// `cgroup/sock_create`: sets `bound_dev_if` of every new AF_INET/AF_INET6 socket to the
/// allowed index; refuses the socket (`EPERM`) while the confinement is closed.
pub fn sock_create(maps: MapFds) -> Result<Vec<Insn>, AsmError> {
    let mut asm = Asm::new();
    asm.push(Insn::mov64_reg(Reg::R6, Reg::R1))
        .push(Insn::ldx_mem(Size::W, Reg::R2, Reg::R6, ctx::SOCK_FAMILY))
        .jump_imm(Cond::Eq, Reg::R2, AF_INET, "inet")
        .jump_imm(Cond::Eq, Reg::R2, AF_INET6, "inet")
        .ret(1)
        .label("inet");
    lookup_config(&mut asm, maps, "deny");
    asm.push(Insn::ldx_mem(Size::W, Reg::R7, Reg::R0, Config::IFINDEX))
        .jump_imm(Cond::Eq, Reg::R7, 0, "deny")
        .push(Insn::stx_mem(
            Size::W,
            Reg::R6,
            Reg::R7,
            ctx::SOCK_BOUND_DEV_IF,
        ))
        .ret(1)
        .label("deny");
    count_and_return(&mut asm, maps, Counter::SocketRefused, 0, "counted");
    asm.finish()
}

/// Which way a [`skb_filter`] looks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    /// Packets the cgroup's sockets send.
    Egress,
    /// Packets delivered to the cgroup's sockets.
    Ingress,
}

/// `cgroup_skb` egress or ingress: passes a packet only when `skb->ifindex` is the allowed
/// index, or `loopback` (the index of `lo`) when given; drops and counts everything else.
///
/// With `loopback` set, egress also drops packets to 127/8 or `::1` that would leave
/// through the allowed interface (a socket pinned there that sends to a loopback address
/// would otherwise put that packet on the wire).
pub fn skb_filter(
    direction: Direction,
    maps: MapFds,
    loopback: Option<u32>,
) -> Result<Vec<Insn>, AsmError> {
    let mut asm = Asm::new();
    asm.push(Insn::mov64_reg(Reg::R6, Reg::R1))
        .push(Insn::ldx_mem(Size::W, Reg::R8, Reg::R6, ctx::SKB_IFINDEX));
    if let Some(lo) = loopback {
        asm.jump_imm(Cond::Eq, Reg::R8, lo as i32, "pass");
    }
    lookup_config(&mut asm, maps, "drop");
    asm.push(Insn::ldx_mem(Size::W, Reg::R7, Reg::R0, Config::IFINDEX))
        .jump_imm(Cond::Eq, Reg::R7, 0, "drop")
        .jump_reg(Cond::Ne, Reg::R8, Reg::R7, "drop");
    if loopback.is_some() && direction == Direction::Egress {
        // On the allowed interface: no loopback destinations.
        asm.push(Insn::ldx_mem(Size::W, Reg::R2, Reg::R6, ctx::SKB_PROTOCOL))
            .jump_imm(Cond::Eq, Reg::R2, PROTO_IPV4, "v4")
            .jump_imm(Cond::Eq, Reg::R2, PROTO_IPV6, "v6")
            .jump("pass")
            .label("v4");
        load_packet_bytes(&mut asm, 16, 4); // iphdr.daddr
        asm.push(Insn::ldx_mem(Size::B, Reg::R2, Reg::R10, STACK_ADDR))
            .jump_imm(Cond::Eq, Reg::R2, 127, "drop")
            .jump("pass")
            .label("v6");
        load_packet_bytes(&mut asm, 24, 16); // ipv6hdr.daddr
        asm.push(Insn::ldx_mem(Size::DW, Reg::R2, Reg::R10, STACK_ADDR))
            .jump_imm(Cond::Ne, Reg::R2, 0, "pass")
            .push(Insn::ldx_mem(Size::DW, Reg::R2, Reg::R10, STACK_ADDR + 8))
            .extend(Insn::ld_imm64(Reg::R3, V6_LOOPBACK_TAIL))
            .jump_reg(Cond::Eq, Reg::R2, Reg::R3, "drop");
    }
    asm.label("pass").ret(1).label("drop");
    let counter = match direction {
        Direction::Egress => Counter::EgressBlocked,
        Direction::Ingress => Counter::IngressBlocked,
    };
    count_and_return(&mut asm, maps, counter, 0, "counted");
    asm.finish()
}

/// `bpf_skb_load_bytes(skb, offset, r10 + STACK_ADDR, len)`; a failure drops the packet.
fn load_packet_bytes(asm: &mut Asm, offset: i32, len: i32) {
    asm.push(Insn::mov64_reg(Reg::R1, Reg::R6))
        .push(Insn::mov64_imm(Reg::R2, offset))
        .push(Insn::mov64_reg(Reg::R3, Reg::R10))
        .push(Insn::alu64_imm(AluOp::Add, Reg::R3, STACK_ADDR.into()))
        .push(Insn::mov64_imm(Reg::R4, len))
        .push(Insn::call(Helper::SkbLoadBytes))
        .jump_imm(Cond::Ne, Reg::R0, 0, "drop");
}

/// What a [`setsockopt_guard`] refuses besides multicast memberships on other interfaces.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GuardOptions {
    /// Refuse the options that unpin a socket or steer it out another interface (sealed).
    pub refuse_resteer: bool,
    /// Refuse `IP_RECVERR`/`IPV6_RECVERR` on a socket not bound to the allowed interface
    /// (sealed): ICMP errors reach a socket's error queue without passing the ingress filter.
    pub recverr_pinned_only: bool,
}

// Multicast options: MCAST_JOIN_GROUP..=MCAST_MSFILTER (join, block, unblock, leave, source
// join/leave, filter) name the interface by index at offset 0; IP_UNBLOCK_SOURCE..=IP_MSFILTER
// are the address-based source filters, with no index to check.
/// The largest option value a checked option may have: above a page the kernel hands the
/// program a truncated copy and then reads the caller's buffer again.
const CHECKED_OPTLEN_MAX: i32 = 4096;

/// `cgroup/setsockopt` (`EPERM` and counted, whatever the caller's privileges):
///
/// - always: a multicast membership whose interface is not the allowed one. The kernel sends
///   IGMP/MLD reports for a membership itself, with no socket, so no cgroup filter sees them.
///   `IP_ADD|DROP_MEMBERSHIP` must be the `ip_mreqn` form with `imr_ifindex` allowed (the
///   older `ip_mreq` picks the interface by address or route); `MCAST_*` (both levels) need
///   `gr_interface`/`gsr_interface`/`gf_interface` allowed; `IPV6_ADD|DROP_MEMBERSHIP` and
///   `IPV6_JOIN|LEAVE_ANYCAST` need `ipv6mr_interface` allowed (0 would mean "by route"); the
///   address-based `IP_*_SOURCE*` and `IP_MSFILTER` are refused. These values are checked in
///   the kernel's copy, which the kernel then uses (no second read of the caller's buffer);
/// - with `refuse_resteer`: `SO_BINDTODEVICE`, `SO_BINDTOIFINDEX`, `IP_UNICAST_IF`,
///   `IP_MULTICAST_IF`, `IPV6_UNICAST_IF`, `IPV6_MULTICAST_IF`, `IPV6_PKTINFO` and
///   `IPV6_2292PKTOPTIONS` (which can carry a sticky `IPV6_PKTINFO`);
/// - with `recverr_pinned_only`: `IP_RECVERR`/`IPV6_RECVERR` on a socket not bound to the
///   allowed interface.
///
/// Every option not inspected is let through with `optlen` set to 0, which tells the kernel
/// to use the caller's own buffer: left unchanged, the kernel would copy the (unmodified)
/// value into a fresh allocation on every `setsockopt` of the confined program.
pub fn setsockopt_guard(maps: MapFds, options: GuardOptions) -> Result<Vec<Insn>, AsmError> {
    let mut asm = Asm::new();
    asm.push(Insn::mov64_reg(Reg::R6, Reg::R1))
        .push(Insn::ldx_mem(Size::W, Reg::R2, Reg::R6, ctx::SOCKOPT_LEVEL))
        .push(Insn::ldx_mem(
            Size::W,
            Reg::R3,
            Reg::R6,
            ctx::SOCKOPT_OPTNAME,
        ))
        .jump_imm(Cond::Eq, Reg::R2, SOL_SOCKET, "sol_socket")
        .jump_imm(Cond::Eq, Reg::R2, SOL_IP, "sol_ip")
        .jump_imm(Cond::Eq, Reg::R2, SOL_IPV6, "sol_ipv6")
        .jump("allow")
        .label("sol_socket");
    if options.refuse_resteer {
        asm.jump_imm(Cond::Eq, Reg::R3, SO_BINDTODEVICE, "refuse")
            .jump_imm(Cond::Eq, Reg::R3, SO_BINDTOIFINDEX, "refuse");
    }
    asm.jump("allow").label("sol_ip");
    if options.refuse_resteer {
        asm.jump_imm(Cond::Eq, Reg::R3, IP_UNICAST_IF, "refuse")
            .jump_imm(Cond::Eq, Reg::R3, IP_MULTICAST_IF, "refuse");
    }
    if options.recverr_pinned_only {
        asm.jump_imm(Cond::Eq, Reg::R3, IP_RECVERR, "recverr");
    }
    asm.jump_imm(Cond::Eq, Reg::R3, IP_ADD_MEMBERSHIP, "mreqn")
        .jump_imm(Cond::Eq, Reg::R3, IP_DROP_MEMBERSHIP, "mreqn");
    refuse_range(&mut asm, IP_UNBLOCK_SOURCE, IP_MSFILTER);
    jump_range(&mut asm, MCAST_JOIN_GROUP, MCAST_MSFILTER, "index_at_0");
    asm.jump("allow").label("sol_ipv6");
    if options.refuse_resteer {
        asm.jump_imm(Cond::Eq, Reg::R3, IPV6_UNICAST_IF, "refuse")
            .jump_imm(Cond::Eq, Reg::R3, IPV6_MULTICAST_IF, "refuse")
            .jump_imm(Cond::Eq, Reg::R3, IPV6_PKTINFO, "refuse")
            .jump_imm(Cond::Eq, Reg::R3, IPV6_2292PKTOPTIONS, "refuse");
    }
    if options.recverr_pinned_only {
        asm.jump_imm(Cond::Eq, Reg::R3, IPV6_RECVERR, "recverr");
    }
    asm.jump_imm(Cond::Eq, Reg::R3, IPV6_ADD_MEMBERSHIP, "index_at_16")
        .jump_imm(Cond::Eq, Reg::R3, IPV6_DROP_MEMBERSHIP, "index_at_16")
        .jump_imm(Cond::Eq, Reg::R3, IPV6_JOIN_ANYCAST, "index_at_16")
        .jump_imm(Cond::Eq, Reg::R3, IPV6_LEAVE_ANYCAST, "index_at_16");
    jump_range(&mut asm, MCAST_JOIN_GROUP, MCAST_MSFILTER, "index_at_0");
    asm.label("allow")
        // The verifier takes no immediate stores into the context: through a register.
        .push(Insn::mov64_imm(Reg::R2, 0))
        .push(Insn::stx_mem(
            Size::W,
            Reg::R6,
            Reg::R2,
            ctx::SOCKOPT_OPTLEN,
        ))
        .ret(1);
    // ip_mreqn: imr_ifindex at 8 (12 bytes); group_req and friends: the index at 0;
    // ipv6_mreq: ipv6mr_interface at 16 (20 bytes).
    interface_in_value(&mut asm, maps, "mreqn", 8);
    interface_in_value(&mut asm, maps, "index_at_0", 0);
    interface_in_value(&mut asm, maps, "index_at_16", 16);
    if options.recverr_pinned_only {
        asm.label("recverr")
            .push(Insn::ldx_mem(Size::DW, Reg::R2, Reg::R6, ctx::SOCKOPT_SK))
            .push(Insn::ldx_mem(
                Size::W,
                Reg::R7,
                Reg::R2,
                ctx::SOCK_BOUND_DEV_IF,
            ));
        lookup_config(&mut asm, maps, "refuse");
        asm.push(Insn::ldx_mem(Size::W, Reg::R8, Reg::R0, Config::IFINDEX))
            .jump_imm(Cond::Eq, Reg::R8, 0, "refuse")
            .jump_reg(Cond::Ne, Reg::R7, Reg::R8, "refuse")
            .jump("allow");
    }
    asm.label("refuse");
    count_and_return(&mut asm, maps, Counter::SetsockoptRefused, 0, "counted");
    asm.finish()
}

/// `if first <= r3 <= last goto refuse`.
fn refuse_range(asm: &mut Asm, first: i32, last: i32) {
    for optname in first..=last {
        asm.jump_imm(Cond::Eq, Reg::R3, optname, "refuse");
    }
}

/// `if first <= r3 <= last goto label`.
fn jump_range(asm: &mut Asm, first: i32, last: i32, label: Label) {
    for optname in first..=last {
        asm.jump_imm(Cond::Eq, Reg::R3, optname, label);
    }
}

/// At `label`: the `u32` at `offset` of the option's value (in the kernel's copy) must be
/// the allowed index, or `goto refuse`; then `return 1` with `optlen` untouched, so the
/// kernel uses the very copy checked here.
fn interface_in_value(asm: &mut Asm, maps: MapFds, label: Label, offset: i16) {
    asm.label(label)
        .push(Insn::ldx_mem(
            Size::W,
            Reg::R5,
            Reg::R6,
            ctx::SOCKOPT_OPTLEN,
        ))
        .jump_imm(Cond::Gt, Reg::R5, CHECKED_OPTLEN_MAX, "refuse")
        .push(Insn::ldx_mem(
            Size::DW,
            Reg::R2,
            Reg::R6,
            ctx::SOCKOPT_OPTVAL,
        ))
        .push(Insn::ldx_mem(
            Size::DW,
            Reg::R3,
            Reg::R6,
            ctx::SOCKOPT_OPTVAL_END,
        ))
        .push(Insn::mov64_reg(Reg::R4, Reg::R2))
        .push(Insn::alu64_imm(AluOp::Add, Reg::R4, i32::from(offset) + 4))
        .jump_reg(Cond::Gt, Reg::R4, Reg::R3, "refuse")
        .push(Insn::ldx_mem(Size::W, Reg::R7, Reg::R2, offset));
    lookup_config(asm, maps, "refuse");
    asm.push(Insn::ldx_mem(Size::W, Reg::R8, Reg::R0, Config::IFINDEX))
        .jump_imm(Cond::Eq, Reg::R8, 0, "refuse")
        .jump_reg(Cond::Ne, Reg::R7, Reg::R8, "refuse")
        .ret(1);
}

/// The socket-address hook a [`sock_addr_pin`] program is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AddrHook {
    /// `connect()` of an AF_INET socket.
    Connect4,
    /// `connect()` of an AF_INET6 socket.
    Connect6,
    /// `sendto`/`sendmsg` with an address, AF_INET UDP.
    Sendmsg4,
    /// `sendto`/`sendmsg` with an address, AF_INET6 UDP.
    Sendmsg6,
    /// `bind()` of an AF_INET socket.
    Bind4,
    /// `bind()` of an AF_INET6 socket.
    Bind6,
}

impl AddrHook {
    fn is_v6(self) -> bool {
        matches!(
            self,
            AddrHook::Connect6 | AddrHook::Sendmsg6 | AddrHook::Bind6
        )
    }

    fn is_bind(self) -> bool {
        matches!(self, AddrHook::Bind4 | AddrHook::Bind6)
    }

    fn counter(self) -> Counter {
        match self {
            AddrHook::Connect4 | AddrHook::Connect6 => Counter::ConnectRefused,
            AddrHook::Sendmsg4 | AddrHook::Sendmsg6 => Counter::SendmsgRefused,
            AddrHook::Bind4 | AddrHook::Bind6 => Counter::BindRefused,
        }
    }
}

/// Choices for a [`sock_addr_pin`] program.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PinOptions {
    /// Pin sockets going to non-local addresses (loopback mode). Without it the program
    /// only applies the link-local rule below.
    pub lazy_pin: bool,
    /// `bind6`: refuse any `fe80::/10` address. The hook cannot see `sin6_scope_id`, and the
    /// kernel rebinds the socket to the scope's interface before it checks the address.
    pub refuse_link_local_bind: bool,
    /// `sendmsg`: refuse the datagram whose send pinned the socket, because its route was
    /// chosen before the hook ran. Needed when no egress filter stands behind the hook.
    pub refuse_pinning_datagram: bool,
}

/// `cgroup/connect4|6`, `sendmsg4|6`, `bind4|6` (`CGROUP_SOCK_ADDR`).
///
/// Loopback destinations (127/8, `::1`, `::ffff:127.0.0.0/104`, the unspecified address) and,
/// for connect and sendmsg, the host's own addresses (the locals map) are left alone, so
/// loopback keeps working. Any other address pins the socket to the allowed interface by
/// name with `bpf_setsockopt(SOL_SOCKET, SO_BINDTODEVICE)` unless it is already bound there;
/// when that fails (closed, or an unprivileged socket bound elsewhere) the call is refused
/// with `EPERM` and counted.
pub fn sock_addr_pin(
    hook: AddrHook,
    maps: MapFds,
    options: PinOptions,
) -> Result<Vec<Insn>, AsmError> {
    let mut asm = Asm::new();
    let guards_link_local = hook == AddrHook::Bind6 && options.refuse_link_local_bind;
    if !options.lazy_pin && !guards_link_local {
        // Nothing to do: a program that lets everything through.
        asm.ret(1);
        return asm.finish();
    }
    asm.push(Insn::mov64_reg(Reg::R6, Reg::R1));
    let check_locals = !hook.is_bind() && maps.locals.is_some();
    if hook.is_v6() {
        asm.push(Insn::ldx_mem(
            Size::DW,
            Reg::R2,
            Reg::R6,
            ctx::ADDR_USER_IP6,
        ))
        .push(Insn::ldx_mem(
            Size::DW,
            Reg::R3,
            Reg::R6,
            ctx::ADDR_USER_IP6 + 8,
        ))
        .push(Insn::stx_mem(Size::DW, Reg::R10, Reg::R2, STACK_ADDR))
        .push(Insn::stx_mem(Size::DW, Reg::R10, Reg::R3, STACK_ADDR + 8));
        if hook == AddrHook::Bind6 && options.refuse_link_local_bind {
            asm.push(Insn::mov64_reg(Reg::R4, Reg::R2))
                .push(Insn::alu64_imm(AluOp::And, Reg::R4, LINK_LOCAL_MASK))
                .jump_imm(Cond::Eq, Reg::R4, LINK_LOCAL_PREFIX, "refuse");
        }
        if options.lazy_pin {
            asm.jump_imm(Cond::Ne, Reg::R2, 0, "not_loopback")
                .jump_imm(Cond::Eq, Reg::R3, 0, "leave") // ::
                .extend(Insn::ld_imm64(Reg::R4, V6_LOOPBACK_TAIL))
                .jump_reg(Cond::Eq, Reg::R3, Reg::R4, "leave") // ::1
                .push(Insn::mov64_reg(Reg::R4, Reg::R3))
                .push(Insn::alu64_imm(AluOp::Lsh, Reg::R4, 32))
                .push(Insn::alu64_imm(AluOp::Rsh, Reg::R4, 32))
                .extend(Insn::ld_imm64(Reg::R5, V4_MAPPED_MARK))
                .jump_reg(Cond::Ne, Reg::R4, Reg::R5, "not_loopback")
                .push(Insn::mov64_reg(Reg::R4, Reg::R3))
                .push(Insn::alu64_imm(AluOp::Rsh, Reg::R4, 32))
                .jump_imm(Cond::Eq, Reg::R4, 0, "leave") // ::ffff:0.0.0.0
                .push(Insn::alu64_imm(AluOp::And, Reg::R4, 0xff))
                .jump_imm(Cond::Eq, Reg::R4, 127, "leave") // ::ffff:127/104
                .label("not_loopback");
        }
    } else {
        asm.push(Insn::ldx_mem(Size::W, Reg::R2, Reg::R6, ctx::ADDR_USER_IP4))
            .jump_imm(Cond::Eq, Reg::R2, 0, "leave") // 0.0.0.0
            .push(Insn::mov64_reg(Reg::R3, Reg::R2))
            .push(Insn::alu64_imm(AluOp::And, Reg::R3, 0xff))
            .jump_imm(Cond::Eq, Reg::R3, 127, "leave"); // 127/8
        if check_locals {
            // Key: the v4-mapped form ::ffff:a.b.c.d.
            asm.push(Insn::st_mem(Size::DW, Reg::R10, STACK_ADDR, 0))
                .push(Insn::st_mem(
                    Size::W,
                    Reg::R10,
                    STACK_ADDR + 8,
                    V4_MAPPED_MARK as u32 as i32,
                ))
                .push(Insn::stx_mem(Size::W, Reg::R10, Reg::R2, STACK_ADDR + 12));
        }
    }
    if options.lazy_pin {
        if let (true, Some(locals)) = (check_locals, maps.locals) {
            asm.extend(Insn::ld_map_fd(Reg::R1, locals))
                .push(Insn::mov64_reg(Reg::R2, Reg::R10))
                .push(Insn::alu64_imm(AluOp::Add, Reg::R2, STACK_ADDR.into()))
                .push(Insn::call(Helper::MapLookupElem))
                .jump_imm(Cond::Ne, Reg::R0, 0, "leave");
        }
        // Pin, unless already bound to the allowed interface.
        asm.push(Insn::ldx_mem(Size::DW, Reg::R2, Reg::R6, ctx::ADDR_SK))
            .push(Insn::ldx_mem(
                Size::W,
                Reg::R8,
                Reg::R2,
                ctx::SOCK_BOUND_DEV_IF,
            ));
        lookup_config(&mut asm, maps, "refuse");
        asm.push(Insn::ldx_mem(Size::W, Reg::R7, Reg::R0, Config::IFINDEX))
            .jump_imm(Cond::Eq, Reg::R7, 0, "refuse")
            .jump_reg(Cond::Eq, Reg::R8, Reg::R7, "leave")
            .push(Insn::ldx_mem(Size::DW, Reg::R3, Reg::R0, Config::NAME))
            .push(Insn::stx_mem(Size::DW, Reg::R10, Reg::R3, STACK_NAME))
            .push(Insn::ldx_mem(Size::DW, Reg::R3, Reg::R0, Config::NAME + 8))
            .push(Insn::stx_mem(Size::DW, Reg::R10, Reg::R3, STACK_NAME + 8))
            .push(Insn::mov64_reg(Reg::R1, Reg::R6))
            .push(Insn::mov64_imm(Reg::R2, SOL_SOCKET))
            .push(Insn::mov64_imm(Reg::R3, SO_BINDTODEVICE))
            .push(Insn::mov64_reg(Reg::R4, Reg::R10))
            .push(Insn::alu64_imm(AluOp::Add, Reg::R4, STACK_NAME.into()))
            .push(Insn::mov64_imm(Reg::R5, IFNAMSIZ))
            .push(Insn::call(Helper::Setsockopt))
            .jump_imm(Cond::Ne, Reg::R0, 0, "refuse");
        if options.refuse_pinning_datagram
            && matches!(hook, AddrHook::Sendmsg4 | AddrHook::Sendmsg6)
        {
            asm.jump("refuse");
        }
    }
    asm.label("leave").ret(1).label("refuse");
    count_and_return(&mut asm, maps, hook.counter(), 0, "counted");
    asm.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAPS: MapFds = MapFds {
        config: 3,
        counters: 4,
        locals: Some(5),
    };

    fn all_programs() -> Vec<Vec<Insn>> {
        let mut out = vec![
            sock_create(MAPS).unwrap(),
            setsockopt_guard(
                MAPS,
                GuardOptions {
                    refuse_resteer: true,
                    recverr_pinned_only: true,
                },
            )
            .unwrap(),
            setsockopt_guard(
                MAPS,
                GuardOptions {
                    refuse_resteer: false,
                    recverr_pinned_only: false,
                },
            )
            .unwrap(),
            skb_filter(Direction::Egress, MAPS, None).unwrap(),
            skb_filter(Direction::Egress, MAPS, Some(1)).unwrap(),
            skb_filter(Direction::Ingress, MAPS, Some(1)).unwrap(),
        ];
        for hook in [
            AddrHook::Connect4,
            AddrHook::Connect6,
            AddrHook::Sendmsg4,
            AddrHook::Sendmsg6,
            AddrHook::Bind4,
            AddrHook::Bind6,
        ] {
            for lazy_pin in [false, true] {
                let options = PinOptions {
                    lazy_pin,
                    refuse_link_local_bind: true,
                    refuse_pinning_datagram: true,
                };
                out.push(sock_addr_pin(hook, MAPS, options).unwrap());
            }
        }
        out
    }

    #[test]
    fn every_program_assembles_and_ends_in_exit() {
        for program in all_programs() {
            assert_eq!(program.last().map(|i| i.code()), Some(Insn::exit().code()));
            for (at, insn) in program.iter().enumerate() {
                if insn.is_jump() {
                    let target = at as i64 + 1 + i64::from(insn.off());
                    assert!((0..program.len() as i64).contains(&target), "jump at {at}");
                }
            }
        }
    }

    #[test]
    fn programs_refer_only_to_their_maps() {
        for program in all_programs() {
            for insn in program.iter().filter(|i| i.code() == 0x18 && i.src() == 1) {
                assert!([3, 4, 5].contains(&insn.imm()), "{insn:?}");
            }
        }
    }

    #[test]
    fn sock_create_writes_bound_dev_if_from_the_config() {
        let program = sock_create(MAPS).unwrap();
        let writes: Vec<_> = program
            .iter()
            .filter(|i| *i == &Insn::stx_mem(Size::W, Reg::R6, Reg::R7, 0))
            .collect();
        assert_eq!(writes.len(), 1);
    }

    #[test]
    fn byte_order_constants_match_the_wire() {
        assert_eq!(PROTO_IPV4.to_ne_bytes()[..2], [0x08, 0x00]);
        assert_eq!(PROTO_IPV6.to_ne_bytes()[..2], [0x86, 0xdd]);
        assert_eq!(V6_LOOPBACK_TAIL.to_ne_bytes(), [0, 0, 0, 0, 0, 0, 0, 1]);
        let ll = u16::from_ne_bytes([0xfe, 0xbf]) as i32;
        assert_eq!(
            ll & LINK_LOCAL_MASK,
            LINK_LOCAL_PREFIX,
            "fe80::/10 includes febf::"
        );
        let not_ll = u16::from_ne_bytes([0xfe, 0xc0]) as i32;
        assert_ne!(
            not_ll & LINK_LOCAL_MASK,
            LINK_LOCAL_PREFIX,
            "fec0:: is not link-local"
        );
    }

    #[test]
    fn config_values_carry_index_and_name() {
        let value = Config::encode(7, "ctl0");
        assert_eq!(&value[0..4], &7u32.to_ne_bytes());
        assert_eq!(&value[8..13], b"ctl0\0");
        assert_eq!(value[23], 0);
    }
}
