//! Drops aggregated per flow, in a bounded table: a flood is one line with a count, not a
//! line per packet, and cannot grow the guard's memory.
//!
//! A flow is what one conversation attempt looks like on the wire: rule, plane, interfaces,
//! protocol, addresses and ports. The table holds at most `capacity` flows; when it is full,
//! the packets of further new flows are still counted, per rule and plane, in an overflow
//! count (reported by [`FlowTable::take_overflow`]), so no drop is ever lost from the totals.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::time::{Duration, Instant, SystemTime};

use serde::Serialize;

use super::LogRule;
use super::nflog::{LoggedPacket, Proto};
use super::owner::Owner;

/// What identifies a flow.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FlowKey {
    /// The rule.
    pub rule: LogRule,
    /// The plane.
    pub plane: String,
    /// The interface it arrived through.
    pub in_index: Option<u32>,
    /// The interface it was leaving through.
    pub out_index: Option<u32>,
    /// The protocol.
    pub proto: Proto,
    /// Source address.
    pub src: IpAddr,
    /// Destination address.
    pub dst: IpAddr,
    /// Source port (ICMP: type).
    pub sport: u16,
    /// Destination port (ICMP: code).
    pub dport: u16,
}

impl FlowKey {
    /// The flow a packet belongs to.
    pub fn of(p: &LoggedPacket) -> FlowKey {
        FlowKey {
            rule: p.rule,
            plane: p.plane.clone(),
            in_index: p.in_index,
            out_index: p.out_index,
            proto: p.proto,
            src: p.src,
            dst: p.dst,
            sport: p.sport,
            dport: p.dport,
        }
    }
}

/// One flow's counts.
#[derive(Clone, Debug)]
pub struct Flow {
    /// Packets so far.
    pub count: u64,
    /// Packets already reported in an event.
    pub reported: u64,
    /// When its first packet was read.
    pub first_seen: SystemTime,
    /// When its last packet was read.
    pub last_seen: SystemTime,
    /// The same, for expiry.
    pub last_instant: Instant,
    /// The first packet (uid, gid, flags).
    pub first: LoggedPacket,
    /// Who sent it, once looked up.
    pub owner: Option<Owner>,
    /// Whether the owner lookup was done.
    pub owner_done: bool,
}

/// Drops beyond the table's capacity, per rule and plane.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Overflow {
    /// Packets counted here.
    pub count: u64,
    /// Packets already reported.
    pub reported: u64,
}

/// The bounded flow table.
#[derive(Debug)]
pub struct FlowTable {
    flows: HashMap<FlowKey, Flow>,
    capacity: usize,
    overflow: BTreeMap<(LogRule, String), Overflow>,
}

/// What [`FlowTable::record`] did with a packet.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Recorded {
    /// The first packet of a new flow.
    New(FlowKey),
    /// Counted in an existing flow.
    Counted,
    /// The table is full: counted in the overflow of its rule and plane.
    Overflow,
}

impl FlowTable {
    /// A table of at most `capacity` flows.
    pub fn new(capacity: usize) -> FlowTable {
        FlowTable {
            flows: HashMap::with_capacity(capacity.min(4096)),
            capacity: capacity.max(1),
            overflow: BTreeMap::new(),
        }
    }

    /// Counts one packet.
    pub fn record(&mut self, p: &LoggedPacket, now: SystemTime, instant: Instant) -> Recorded {
        let key = FlowKey::of(p);
        if let Some(flow) = self.flows.get_mut(&key) {
            flow.count += 1;
            flow.last_seen = now;
            flow.last_instant = instant;
            return Recorded::Counted;
        }
        if self.flows.len() >= self.capacity {
            self.overflow
                .entry((p.rule, p.plane.clone()))
                .or_default()
                .count += 1;
            return Recorded::Overflow;
        }
        self.flows.insert(
            key.clone(),
            Flow {
                count: 1,
                reported: 0,
                first_seen: now,
                last_seen: now,
                last_instant: instant,
                first: p.clone(),
                owner: None,
                owner_done: false,
            },
        );
        Recorded::New(key)
    }

    /// A flow.
    pub fn get(&self, key: &FlowKey) -> Option<&Flow> {
        self.flows.get(key)
    }

    /// A flow, to fill in its owner.
    pub fn get_mut(&mut self, key: &FlowKey) -> Option<&mut Flow> {
        self.flows.get_mut(key)
    }

    /// How many flows are held.
    pub fn len(&self) -> usize {
        self.flows.len()
    }

    /// Whether no flow is held.
    pub fn is_empty(&self) -> bool {
        self.flows.is_empty()
    }

    /// Flows with packets not yet reported (and whose first drop was reported, with its
    /// owner); marks them reported.
    pub fn take_updates(&mut self) -> Vec<(FlowKey, Flow)> {
        let mut out = Vec::new();
        for (key, flow) in &mut self.flows {
            if flow.owner_done && flow.count > flow.reported {
                out.push((key.clone(), flow.clone()));
                flow.reported = flow.count;
            }
        }
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }

    /// Overflow counts with packets not yet reported; marks them reported.
    pub fn take_overflow(&mut self) -> Vec<((LogRule, String), Overflow)> {
        let mut out = Vec::new();
        for (key, o) in &mut self.overflow {
            if o.count > o.reported {
                out.push((key.clone(), o.clone()));
                o.reported = o.count;
            }
        }
        out
    }

    /// Forgets flows idle for `idle` whose packets were all reported, making room.
    pub fn expire(&mut self, now: Instant, idle: Duration) -> usize {
        let before = self.flows.len();
        self.flows.retain(|_, f| {
            f.count > f.reported || now.saturating_duration_since(f.last_instant) < idle
        });
        before - self.flows.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn packet(sport: u16) -> LoggedPacket {
        LoggedPacket {
            rule: LogRule::Egress,
            plane: "bp".into(),
            hook: 4,
            in_index: None,
            out_index: Some(3),
            proto: Proto::Udp,
            src: "10.0.0.1".parse().unwrap(),
            dst: "10.99.0.1".parse().unwrap(),
            sport,
            dport: 7500,
            tcp_flags: 0,
            uid: None,
            gid: None,
        }
    }

    #[test]
    fn a_flood_is_bounded_and_every_packet_counted() {
        let mut t = FlowTable::new(10);
        let now = SystemTime::now();
        let instant = Instant::now();
        let mut total = 0;
        for i in 0..1000u16 {
            for _ in 0..3 {
                t.record(&packet(i), now, instant);
                total += 1;
            }
        }
        assert_eq!(t.len(), 10);
        for f in t.flows.values_mut() {
            f.owner_done = true;
        }
        let flows: u64 = t.take_updates().iter().map(|(_, f)| f.count).sum();
        let over: u64 = t.take_overflow().iter().map(|(_, o)| o.count).sum();
        assert_eq!(flows + over, total);
        assert!(t.take_updates().is_empty());
        assert_eq!(
            t.expire(instant + Duration::from_secs(60), Duration::from_secs(30)),
            10
        );
        assert_eq!(
            t.record(&packet(5000), now, instant),
            Recorded::New(FlowKey::of(&packet(5000)))
        );
    }
}
