//! The link watch against a real kernel: in a throwaway namespace, links are created,
//! renamed, deleted and re-created with the old index, and the tracker, fed only what the
//! netlink socket received, closes and reopens the pin as `ifpin exec --level sealed` would.

use std::time::{Duration, Instant};

use ifpin::linkwatch::{LinkEventKind, LinkNotice, LinkTracker, LinkWatch, PinAction, PinChange};
use ifpin::{IfIndex, Interface};
use netlab::Netns;

/// Reads notices until `done` says the wanted one came, or 3 s pass.
fn read_until(watch: &mut LinkWatch, done: impl Fn(&[LinkNotice]) -> bool) -> Vec<LinkNotice> {
    let deadline = Instant::now() + Duration::from_secs(3);
    let mut all = Vec::new();
    while Instant::now() < deadline {
        all.extend(watch.read().expect("read notices"));
        if done(&all) {
            return all;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("the expected notice never came; got {all:?}");
}

fn new_named(name: &str) -> impl Fn(&[LinkNotice]) -> bool + '_ {
    move |all| {
        all.iter()
            .any(|n| matches!(n, LinkNotice::New { name: got, .. } if got == name))
    }
}

#[test]
fn the_tracker_follows_the_name_through_real_notices() {
    if !netlab::require_privileged() {
        return;
    }
    let host = Netns::new("lw-host").unwrap();
    let peer = Netns::new("lw-peer").unwrap();
    // The watch and the lookups run in the host namespace.
    let mut watch = host.run(LinkWatch::new).unwrap().expect("link watch");
    host.add_veth("ctl0", None, &peer, "p-ctl0").unwrap();
    host.link_up("ctl0").unwrap();
    let ctl0 = host
        .run(|| Interface::resolve("ctl0"))
        .unwrap()
        .expect("ctl0");
    let old = ctl0.index();
    read_until(&mut watch, new_named("ctl0"));
    let mut tracker = LinkTracker::new(&ctl0);
    let mut changes = Vec::new();

    // Deleted, then a different device takes the index.
    host.ip(&["link", "del", "ctl0"]).unwrap();
    host.add_veth("intruder", Some(old.get()), &peer, "p-intr")
        .unwrap();
    let notices = read_until(&mut watch, new_named("intruder"));
    changes.extend(notices.iter().filter_map(|n| tracker.observe(n)));
    assert_eq!(changes, [PinChange::Close], "{notices:?}");
    assert_eq!(tracker.current(), None);

    // ctl0 comes back under its name, at a new index.
    host.add_veth("ctl0", None, &peer, "p-ctl0").unwrap();
    let notices = read_until(&mut watch, new_named("ctl0"));
    let back = host
        .run(|| Interface::resolve("ctl0"))
        .unwrap()
        .expect("ctl0 again");
    assert_ne!(back.index(), old);
    let reopened: Vec<_> = notices.iter().filter_map(|n| tracker.observe(n)).collect();
    assert_eq!(
        reopened,
        [PinChange::Reopen {
            index: back.index(),
            name: "ctl0".into()
        }]
    );

    // A rename closes; renaming back reopens at the same index.
    host.ip(&["link", "set", "ctl0", "name", "ctl0-old"])
        .unwrap();
    let notices = read_until(&mut watch, new_named("ctl0-old"));
    let renamed: Vec<_> = notices.iter().filter_map(|n| tracker.observe(n)).collect();
    assert_eq!(renamed, [PinChange::Close]);
    host.ip(&["link", "set", "ctl0-old", "name", "ctl0"])
        .unwrap();
    let notices = read_until(&mut watch, new_named("ctl0"));
    let again: Vec<_> = notices.iter().filter_map(|n| tracker.observe(n)).collect();
    assert_eq!(
        again,
        [PinChange::Reopen {
            index: back.index(),
            name: "ctl0".into()
        }]
    );

    let kinds: Vec<_> = tracker
        .events()
        .iter()
        .map(|e| (e.kind, e.action))
        .collect();
    assert_eq!(
        kinds,
        [
            (LinkEventKind::Deleted, PinAction::Closed),
            (LinkEventKind::IndexTakenOver, PinAction::None),
            (LinkEventKind::Returned, PinAction::Reopened),
            (LinkEventKind::Renamed, PinAction::Closed),
            (LinkEventKind::Returned, PinAction::Reopened),
        ]
    );
    assert_eq!(tracker.events()[1].index, Some(old.get()));
    assert_eq!(IfIndex::new(tracker.events()[1].index.unwrap()), Some(old));
}
