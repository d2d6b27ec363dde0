//! The packet filters run by the kernel on hand-made packets (`BPF_PROG_TEST_RUN`): each
//! branch of `skb_filter` (allowed interface, other interface, closed, loopback destinations
//! on the allowed interface, non-IP) gives the verdict it should and counts what it drops.
//! No network, no cgroup: the test runs set the packet's device to `lo` (index 1), so "the
//! allowed interface" is index 1 here.

use ifpin::bpf::programs::{self, Config, Counter, Direction, MapFds};
use ifpin::bpf::{AttachType, ProgType};
use ifpin::bpf::{Map, Program};

const PASS: u32 = 1;
const DROP: u32 = 0;
/// The device test runs use (`lo`).
const TEST_DEVICE: u32 = 1;
/// A loopback index that matches nothing, so packets on `TEST_DEVICE` take the
/// "allowed interface" path in loopback mode.
const NO_SUCH_LOOPBACK: u32 = 999_999;

fn frame(ethertype: u16, l3: &[u8]) -> Vec<u8> {
    let mut f = vec![0x02, 0, 0, 0, 0, 1, 0x02, 0, 0, 0, 0, 2];
    f.extend_from_slice(&ethertype.to_be_bytes());
    f.extend_from_slice(l3);
    f
}

fn ipv4(dst: [u8; 4]) -> Vec<u8> {
    let mut h = vec![0x45, 0, 0, 28, 0, 0, 0x40, 0, 64, 17, 0, 0, 10, 10, 0, 1];
    h.extend_from_slice(&dst);
    h.extend_from_slice(&[0x30, 0x39, 0x1b, 0x9e, 0, 8, 0, 0]); // UDP header
    frame(0x0800, &h)
}

fn ipv6(dst: std::net::Ipv6Addr) -> Vec<u8> {
    let mut h = vec![0x60, 0, 0, 0, 0, 8, 17, 64];
    h.extend_from_slice(&"fd10::1".parse::<std::net::Ipv6Addr>().unwrap().octets());
    h.extend_from_slice(&dst.octets());
    h.extend_from_slice(&[0x30, 0x39, 0x1b, 0x9e, 0, 8, 0, 0]);
    frame(0x86dd, &h)
}

fn arp() -> Vec<u8> {
    frame(
        0x0806,
        &[0, 1, 8, 0, 6, 4, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
    )
}

struct Filter {
    config: Map,
    counters: Map,
    program: Program,
}

impl Filter {
    fn new(direction: Direction, loopback: Option<u32>) -> Filter {
        let config = Map::array("test_config", Config::SIZE, 1).unwrap();
        let counters = Map::array("test_counters", 8, Counter::COUNT).unwrap();
        let maps = MapFds {
            config: config.raw_fd(),
            counters: counters.raw_fd(),
            locals: None,
        };
        let attach = match direction {
            Direction::Egress => AttachType::CgroupInetEgress,
            Direction::Ingress => AttachType::CgroupInetIngress,
        };
        let program = Program::load(
            "test_filter",
            ProgType::CgroupSkb,
            attach,
            programs::skb_filter(direction, maps, loopback),
        )
        .unwrap();
        Filter {
            config,
            counters,
            program,
        }
    }

    fn allow(&self, ifindex: u32) {
        self.config
            .update(&0u32.to_ne_bytes(), &Config::encode(ifindex, "lo"))
            .unwrap();
    }

    fn verdict(&self, packet: &[u8]) -> u32 {
        self.program.test_run(packet, 1).unwrap().retval
    }

    fn count(&self, counter: Counter) -> u64 {
        self.counters.lookup_u64(counter as u32).unwrap()
    }
}

fn privileged() -> bool {
    netlab::require_privileged()
}

#[test]
fn egress_filter_passes_only_the_allowed_interface_and_counts_drops() {
    if !privileged() {
        return;
    }
    let filter = Filter::new(Direction::Egress, None);
    let control = ipv4([10, 99, 7, 2]);
    let control6 = ipv6("fd99:7::2".parse().unwrap());

    filter.allow(TEST_DEVICE);
    assert_eq!(filter.verdict(&control), PASS);
    assert_eq!(filter.verdict(&control6), PASS);
    // Without loopback mode, no destination parsing: 127.0.0.1 on the interface passes.
    assert_eq!(filter.verdict(&ipv4([127, 0, 0, 1])), PASS);
    assert_eq!(filter.count(Counter::EgressBlocked), 0);

    filter.allow(TEST_DEVICE + 1);
    assert_eq!(filter.verdict(&control), DROP);
    assert_eq!(filter.verdict(&control6), DROP);
    assert_eq!(filter.verdict(&arp()), DROP);
    assert_eq!(filter.count(Counter::EgressBlocked), 3);

    filter.allow(0); // closed
    assert_eq!(filter.verdict(&control), DROP);
    assert_eq!(filter.count(Counter::EgressBlocked), 4);
    assert_eq!(filter.count(Counter::IngressBlocked), 0);
}

#[test]
fn ingress_filter_counts_separately() {
    if !privileged() {
        return;
    }
    let filter = Filter::new(Direction::Ingress, None);
    filter.allow(TEST_DEVICE);
    assert_eq!(filter.verdict(&ipv4([10, 10, 0, 1])), PASS);
    filter.allow(TEST_DEVICE + 1);
    assert_eq!(filter.verdict(&ipv4([10, 10, 0, 1])), DROP);
    assert_eq!(filter.count(Counter::IngressBlocked), 1);
    assert_eq!(filter.count(Counter::EgressBlocked), 0);
}

#[test]
fn loopback_mode_drops_loopback_destinations_on_the_allowed_interface() {
    if !privileged() {
        return;
    }
    let filter = Filter::new(Direction::Egress, Some(NO_SUCH_LOOPBACK));
    filter.allow(TEST_DEVICE);
    assert_eq!(filter.verdict(&ipv4([10, 99, 7, 2])), PASS);
    assert_eq!(filter.verdict(&ipv4([127, 0, 0, 1])), DROP);
    assert_eq!(filter.verdict(&ipv4([127, 255, 3, 4])), DROP);
    assert_eq!(filter.verdict(&ipv4([128, 0, 0, 1])), PASS);
    assert_eq!(filter.verdict(&ipv6("fd99:7::2".parse().unwrap())), PASS);
    assert_eq!(filter.verdict(&ipv6("::1".parse().unwrap())), DROP);
    assert_eq!(filter.verdict(&ipv6("::2".parse().unwrap())), PASS);
    assert_eq!(filter.verdict(&ipv6("1::1".parse().unwrap())), PASS);
    // Not IP (ARP): nothing to parse, passes on the allowed interface.
    assert_eq!(filter.verdict(&arp()), PASS);
    assert_eq!(filter.count(Counter::EgressBlocked), 3);

    // The loopback index itself always passes, even when closed.
    let filter = Filter::new(Direction::Egress, Some(TEST_DEVICE));
    filter.allow(0);
    assert_eq!(filter.verdict(&ipv4([127, 0, 0, 1])), PASS);
    assert_eq!(filter.verdict(&ipv4([10, 99, 7, 2])), PASS);
}
