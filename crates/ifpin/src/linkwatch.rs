//! Following an interface through its life: the netlink link watch of the `sealed` level.
//!
//! A socket pin and a cgroup filter name an interface by *index*, but an index is only a
//! number: when the interface is deleted, the kernel may give the same index to a different
//! device, and everything still pinned to the number follows the new device (see
//! `docs/kernel.md`, "The lifecycle of a binding"). People mean the interface by *name*.
//!
//! This module closes that gap in two parts:
//! - [`LinkWatch`] is a netlink socket subscribed to `RTNLGRP_LINK`: the kernel tells it of
//!   every link created, changed, renamed and deleted in the watching thread's network
//!   namespace, as [`LinkNotice`]s.
//! - [`LinkTracker`] is pure logic: given the notices, it decides when the pin must close
//!   (the interface went away, was renamed, or its index now carries another device) and when
//!   it may reopen (an interface of the pinned name is back, at whatever index), returning
//!   [`PinChange`]s for the caller to apply to the confinement, and keeps a log of
//!   [`LinkEvent`]s for the report.
//!
//! If the kernel drops notices (the socket's buffer overflowed, `ENOBUFS`), the watch says so
//! with [`LinkNotice::Overrun`]: the tracker closes the pin and the caller re-resolves the
//! name ([`LinkTracker::resync`]), so a lost notice can never leave the pin open on a stranger.

use std::io;
use std::os::fd::{AsFd, BorrowedFd};
use std::time::Instant;

use netlink_packet_core::{NetlinkMessage, NetlinkPayload};
use netlink_packet_route::RouteNetlinkMessage;
use netlink_packet_route::link::{LinkAttribute, LinkMessage};
use netlink_sys::{Socket, SocketAddr, protocols::NETLINK_ROUTE};
use serde::Serialize;

use crate::error::SyscallError;
use crate::interface::{IfIndex, Interface};

/// `RTNLGRP_LINK`: the rtnetlink multicast group announcing link changes (`rtnetlink(7)`).
const RTNLGRP_LINK: u32 = libc::RTNLGRP_LINK;

/// The receive buffer asked of the kernel: room for thousands of link messages, so a burst of
/// changes does not overflow before the watcher reads.
const RECEIVE_BUFFER: usize = 1 << 20;

/// Errors of the link watch.
#[derive(Debug, thiserror::Error)]
pub enum LinkWatchError {
    /// A netlink socket call failed.
    #[error("link watch: on the rtnetlink socket, {0}")]
    Socket(#[source] crate::error::SyscallError),
}

/// What the kernel announced about one link.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LinkNotice {
    /// `RTM_NEWLINK`: a link was created or changed (flags, name, ...); its state now.
    New {
        /// The link's index.
        index: IfIndex,
        /// The link's name now.
        name: String,
    },
    /// `RTM_DELLINK`: the link was deleted.
    Deleted {
        /// The index it had.
        index: IfIndex,
        /// The name it had, if the kernel said.
        name: Option<String>,
    },
    /// The kernel dropped notices (`ENOBUFS`): the state must be read again.
    Overrun,
}

/// A netlink socket subscribed to link changes (`RTNLGRP_LINK`) in the network namespace of
/// the thread that created it. Non-blocking: poll its file descriptor, then [`LinkWatch::read`].
#[derive(Debug)]
pub struct LinkWatch {
    socket: Socket,
    buf: Vec<u8>,
}

impl LinkWatch {
    /// Opens the socket and joins `RTNLGRP_LINK`. Create the watch *before* reading the
    /// interface's state, so no change can fall between the read and the subscription.
    pub fn new() -> Result<Self, LinkWatchError> {
        let err = |call| move |source| LinkWatchError::Socket(SyscallError::new(call, source));
        let mut socket = Socket::new(NETLINK_ROUTE).map_err(err("socket(AF_NETLINK)"))?;
        socket.bind(&SocketAddr::new(0, 0)).map_err(err("bind"))?;
        socket
            .add_membership(RTNLGRP_LINK)
            .map_err(err("setsockopt(NETLINK_ADD_MEMBERSHIP, RTNLGRP_LINK)"))?;
        // A larger buffer makes overruns rarer; failing to get it is not fatal (an overrun is
        // still detected and handled by a resync).
        let _ = socket.set_rx_buf_sz(RECEIVE_BUFFER);
        socket
            .set_non_blocking(true)
            .map_err(err("fcntl(O_NONBLOCK)"))?;
        Ok(LinkWatch {
            socket,
            buf: Vec::with_capacity(64 * 1024),
        })
    }

    /// Reads every notice waiting on the socket, without blocking (an empty list when none).
    pub fn read(&mut self) -> Result<Vec<LinkNotice>, LinkWatchError> {
        let mut notices = Vec::new();
        loop {
            self.buf.clear();
            match self.socket.recv(&mut self.buf, 0) {
                Ok(_) => notices.extend(decode_datagram(&self.buf)),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(notices),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if e.raw_os_error() == Some(libc::ENOBUFS) => {
                    notices.push(LinkNotice::Overrun)
                }
                Err(source) => {
                    return Err(LinkWatchError::Socket(SyscallError::new("recv", source)));
                }
            }
        }
    }
}

impl AsFd for LinkWatch {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.socket.as_fd()
    }
}

/// Decodes the link notices in one netlink datagram (which may hold several messages);
/// anything that is not a link message, or does not parse, is skipped.
pub fn decode_datagram(mut bytes: &[u8]) -> Vec<LinkNotice> {
    let mut notices = Vec::new();
    while bytes.len() >= 16 {
        let len = u32::from_ne_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]) as usize;
        if len < 16 || len > bytes.len() {
            break;
        }
        if let Ok(msg) = NetlinkMessage::<RouteNetlinkMessage>::deserialize(&bytes[..len]) {
            match msg.payload {
                NetlinkPayload::InnerMessage(RouteNetlinkMessage::NewLink(link)) => {
                    if let (Some(index), Some(name)) =
                        (IfIndex::new(link.header.index), name(&link))
                    {
                        notices.push(LinkNotice::New { index, name });
                    }
                }
                NetlinkPayload::InnerMessage(RouteNetlinkMessage::DelLink(link)) => {
                    if let Some(index) = IfIndex::new(link.header.index) {
                        notices.push(LinkNotice::Deleted {
                            index,
                            name: name(&link),
                        });
                    }
                }
                NetlinkPayload::Overrun(_) => notices.push(LinkNotice::Overrun),
                _ => {}
            }
        }
        // Netlink messages are 4-byte aligned (`NLMSG_ALIGN`).
        let step = (len + 3) & !3;
        bytes = bytes.get(step..).unwrap_or(&[]);
    }
    notices
}

fn name(link: &LinkMessage) -> Option<String> {
    link.attributes.iter().find_map(|attr| match attr {
        LinkAttribute::IfName(name) => Some(name.clone()),
        _ => None,
    })
}

/// What the confinement must do after a link change.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PinChange {
    /// Close the filter: nothing passes but loopback (if allowed); new sockets have no
    /// interface to be pinned to.
    Close,
    /// The pinned name is back (or still there) at this index: pin new sockets to it and
    /// reopen the filter for it only.
    Reopen {
        /// The interface's index now.
        index: IfIndex,
        /// Its name (the pinned name).
        name: String,
    },
}

/// What happened to the pinned interface, as shown in the report.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum LinkEventKind {
    /// The interface was deleted.
    Deleted,
    /// The pinned index carries another name now: the interface was renamed, or (if its
    /// deletion was not seen) another device took the index. The pinned name is gone.
    Renamed,
    /// After the pin closed, another device appeared with the old index (the pin did not
    /// follow it).
    IndexTakenOver,
    /// An interface of the pinned name appeared (again).
    Returned,
    /// Notices were lost; the state was read again.
    Resync,
}

/// What the tracker did about an event.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum PinAction {
    /// The filter was closed.
    Closed,
    /// The filter was reopened for the interface at `index`.
    Reopened,
    /// Nothing needed doing (for example the pin was already closed).
    None,
}

/// One change of the pinned interface, for the report.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct LinkEvent {
    /// Milliseconds since the tracker started.
    pub at_ms: u64,
    /// What happened.
    pub kind: LinkEventKind,
    /// The name in the notice (for [`LinkEventKind::Renamed`], the new name).
    pub name: String,
    /// The index in the notice.
    pub index: Option<u32>,
    /// What the tracker did.
    pub action: PinAction,
}

/// Decides, from link notices, whether the pin on a *name* must close or may reopen.
///
/// The rule, fail closed: the pin is open only while the pinned name and the pinned index
/// belong to the same device as far as the kernel has told. Any notice that breaks the pair
/// (deletion of the index, another name at the index, the name at another index) closes it or
/// moves it to the name's new index; an overrun closes it until [`LinkTracker::resync`].
#[derive(Debug)]
pub struct LinkTracker {
    name: String,
    current: Option<IfIndex>,
    /// The last index the pin was open for (kept while closed, to notice a takeover).
    last: IfIndex,
    acting: bool,
    started: Instant,
    events: Vec<LinkEvent>,
}

impl LinkTracker {
    /// Tracks `interface`, pinned (open) at its current index.
    pub fn new(interface: &Interface) -> Self {
        Self::pinned(interface.name(), interface.index())
    }

    /// Tracks the interface called `name`, pinned (open) at `index`.
    pub fn pinned(name: &str, index: IfIndex) -> Self {
        LinkTracker {
            name: name.to_owned(),
            current: Some(index),
            last: index,
            acting: true,
            started: Instant::now(),
            events: Vec::new(),
        }
    }

    /// A tracker whose decisions are not applied (levels below `sealed`): it still follows the
    /// interface and records what happened, with [`PinAction::None`] as the action.
    pub fn watching_only(mut self) -> Self {
        self.acting = false;
        self
    }

    /// The index the pin is open for, or `None` while closed.
    pub fn current(&self) -> Option<IfIndex> {
        self.current
    }

    /// The pinned name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The events seen so far.
    pub fn events(&self) -> &[LinkEvent] {
        &self.events
    }

    /// Takes the events seen so far.
    pub fn into_events(self) -> Vec<LinkEvent> {
        self.events
    }

    /// Applies one notice; returns the change to make, if any.
    pub fn observe(&mut self, notice: &LinkNotice) -> Option<PinChange> {
        match notice {
            LinkNotice::New { index, name } if *name == self.name => {
                if self.current == Some(*index) {
                    return None; // flags or state changed; same device, same pin
                }
                self.current = Some(*index);
                self.last = *index;
                self.log(
                    LinkEventKind::Returned,
                    name,
                    Some(*index),
                    PinAction::Reopened,
                );
                Some(PinChange::Reopen {
                    index: *index,
                    name: name.clone(),
                })
            }
            LinkNotice::New { index, name } if self.current == Some(*index) => {
                // The pinned index carries another name now: renamed, or a new device took
                // the number. Either way the name we pin is not there: close.
                let kind = LinkEventKind::Renamed;
                self.close(kind, name, Some(*index))
            }
            LinkNotice::New { index, name } if self.current.is_none() && self.last == *index => {
                // Closed already; a different device now carries the old index. Recorded, so
                // the report shows the pin did not follow the number. Logged once per device, not
                // for each of its state changes.
                let seen = self
                    .events
                    .last()
                    .is_some_and(|e| e.kind == LinkEventKind::IndexTakenOver && e.name == *name);
                if !seen {
                    self.log(
                        LinkEventKind::IndexTakenOver,
                        name,
                        Some(*index),
                        PinAction::None,
                    );
                }
                None
            }
            LinkNotice::New { .. } => None,
            LinkNotice::Deleted { index, name } if self.current == Some(*index) => {
                let name = name.clone().unwrap_or_else(|| self.name.clone());
                self.close(LinkEventKind::Deleted, &name, Some(*index))
            }
            LinkNotice::Deleted { index, name } if name.as_deref() == Some(self.name.as_str()) => {
                // The pinned name was deleted at an index we were not open for: record it.
                let name = self.name.clone();
                self.log(LinkEventKind::Deleted, &name, Some(*index), PinAction::None);
                None
            }
            LinkNotice::Deleted { .. } => None,
            LinkNotice::Overrun => {
                let name = self.name.clone();
                self.close(LinkEventKind::Resync, &name, None)
            }
        }
    }

    /// After an overrun: `now` is where the pinned name lives now (resolved by the caller
    /// after the overrun was read), `None` if nowhere. Reopens for it, or stays closed.
    pub fn resync(&mut self, now: Option<(IfIndex, &str)>) -> Option<PinChange> {
        match now {
            Some((index, name)) if name == self.name => {
                if self.current == Some(index) {
                    return None;
                }
                self.current = Some(index);
                self.last = index;
                let name = self.name.clone();
                self.log(
                    LinkEventKind::Resync,
                    &name,
                    Some(index),
                    PinAction::Reopened,
                );
                Some(PinChange::Reopen { index, name })
            }
            _ => {
                let name = self.name.clone();
                self.close(LinkEventKind::Resync, &name, None)
            }
        }
    }

    /// Whether an overrun left the tracker waiting for [`LinkTracker::resync`].
    pub fn needs_resync(notices: &[LinkNotice]) -> bool {
        notices.contains(&LinkNotice::Overrun)
    }

    fn close(
        &mut self,
        kind: LinkEventKind,
        name: &str,
        index: Option<IfIndex>,
    ) -> Option<PinChange> {
        let was_open = self.current.take().is_some();
        let action = if was_open {
            PinAction::Closed
        } else {
            PinAction::None
        };
        self.log(kind, name, index, action);
        was_open.then_some(PinChange::Close)
    }

    fn log(&mut self, kind: LinkEventKind, name: &str, index: Option<IfIndex>, action: PinAction) {
        let action = if self.acting { action } else { PinAction::None };
        self.events.push(LinkEvent {
            at_ms: self.started.elapsed().as_millis() as u64,
            kind,
            name: name.to_owned(),
            index: index.map(IfIndex::get),
            action,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reopen(name: &str, index: u32) -> Option<PinChange> {
        Some(PinChange::Reopen {
            index: IfIndex::new(index).unwrap(),
            name: name.into(),
        })
    }

    fn tracker() -> LinkTracker {
        LinkTracker::pinned("ctl0", IfIndex::new(4).unwrap())
    }

    fn new(name: &str, index: u32) -> LinkNotice {
        LinkNotice::New {
            index: IfIndex::new(index).unwrap(),
            name: name.into(),
        }
    }

    fn del(name: &str, index: u32) -> LinkNotice {
        LinkNotice::Deleted {
            index: IfIndex::new(index).unwrap(),
            name: Some(name.into()),
        }
    }

    #[test]
    fn state_changes_of_the_pinned_interface_keep_the_pin() {
        let mut t = tracker();
        assert_eq!(t.observe(&new("ctl0", 4)), None);
        assert_eq!(t.current(), IfIndex::new(4));
        assert!(t.events().is_empty());
    }

    #[test]
    fn other_interfaces_are_ignored() {
        let mut t = tracker();
        assert_eq!(t.observe(&new("eth1", 5)), None);
        assert_eq!(t.observe(&del("eth1", 5)), None);
        assert_eq!(t.current(), IfIndex::new(4));
        assert!(t.events().is_empty());
    }

    #[test]
    fn deletion_closes_then_return_reopens_at_the_new_index() {
        let mut t = tracker();
        assert_eq!(t.observe(&del("ctl0", 4)), Some(PinChange::Close));
        assert_eq!(t.current(), None);
        // Another device takes index 4: nothing to reopen, the pin stays closed.
        assert_eq!(t.observe(&new("intruder", 4)), None);
        assert_eq!(t.observe(&new("intruder", 4)), None);
        assert_eq!(t.current(), None);
        // The name comes back at 9.
        assert_eq!(t.observe(&new("ctl0", 9)), reopen("ctl0", 9));
        assert_eq!(t.current(), IfIndex::new(9));
        let kinds: Vec<_> = t.events().iter().map(|e| (e.kind, e.action)).collect();
        assert_eq!(
            kinds,
            [
                (LinkEventKind::Deleted, PinAction::Closed),
                (LinkEventKind::IndexTakenOver, PinAction::None),
                (LinkEventKind::Returned, PinAction::Reopened)
            ]
        );
    }

    #[test]
    fn missed_deletion_and_takeover_of_the_index_closes() {
        // The DELLINK was lost; the first thing seen is another name at the pinned index.
        let mut t = tracker();
        assert_eq!(t.observe(&new("intruder", 4)), Some(PinChange::Close));
        assert_eq!(t.current(), None);
    }

    #[test]
    fn rename_closes_and_renaming_back_reopens() {
        let mut t = tracker();
        assert_eq!(t.observe(&new("old-ctl0", 4)), Some(PinChange::Close));
        assert_eq!(t.observe(&new("ctl0", 4)), reopen("ctl0", 4));
    }

    #[test]
    fn overrun_closes_until_resync() {
        let mut t = tracker();
        assert_eq!(t.observe(&LinkNotice::Overrun), Some(PinChange::Close));
        assert_eq!(t.resync(None), None);
        assert_eq!(t.current(), None);
        assert_eq!(
            t.resync(Some((IfIndex::new(7).unwrap(), "ctl0"))),
            reopen("ctl0", 7)
        );
    }

    #[test]
    fn decodes_recorded_newlink_and_dellink() {
        use netlink_packet_core::{NetlinkHeader, NetlinkMessage};
        use netlink_packet_route::link::{LinkAttribute, LinkMessage};
        let mut datagram = Vec::new();
        for (kind, index, name) in [("new", 4u32, "ctl0"), ("del", 5, "eth1")] {
            let mut link = LinkMessage::default();
            link.header.index = index;
            link.attributes.push(LinkAttribute::IfName(name.into()));
            let inner = if kind == "new" {
                RouteNetlinkMessage::NewLink(link)
            } else {
                RouteNetlinkMessage::DelLink(link)
            };
            let mut msg = NetlinkMessage::new(NetlinkHeader::default(), inner.into());
            msg.finalize();
            let mut bytes = vec![0; msg.buffer_len()];
            msg.serialize(&mut bytes);
            datagram.extend_from_slice(&bytes);
        }
        assert_eq!(
            decode_datagram(&datagram),
            [
                new("ctl0", 4),
                LinkNotice::Deleted {
                    index: IfIndex::new(5).unwrap(),
                    name: Some("eth1".into())
                }
            ]
        );
    }
}
