//! The pinned interface's life while a confined program runs, and ifpin's own death.
//!
//! - `ctl0` is deleted and a different device, leading out of the front, takes its index:
//!   at `sealed` and at `enforced` not one frame of the program reaches that device (the link
//!   watch closed the filter); at `pinned` (sockets bound to a number, no filter: the negative
//!   control) they do. When `ctl0` comes back under its name, at a new index, new
//!   connections work again.

#[path = "support/mod.rs"]
mod support;

use std::time::Duration;

use netlab::{Chassis, Proto};
use support::{Looping, assert_cgroup_gone, link_events as event_kinds, take_over_ctl0_index};

const PORT: u16 = 7_501;

#[test]
fn sealed_follows_the_interface_by_name() {
    if !netlab::require_privileged() {
        return;
    }
    follows_the_interface_by_name("sealed");
}

#[test]
fn enforced_follows_the_interface_by_name() {
    if !netlab::require_privileged() {
        return;
    }
    follows_the_interface_by_name("enforced");
}

fn follows_the_interface_by_name(level: &str) {
    let chassis = Chassis::new().unwrap();
    let _tcp = chassis.serve(Proto::Tcp, PORT).unwrap();
    let connect = [
        "connect".to_owned(),
        Chassis::CONTROL_V4.to_string(),
        PORT.to_string(),
    ];
    let looping = Looping::start(&chassis, level, &connect);
    assert!(
        looping.wait_for(0, "ok backplane", Duration::from_secs(5)),
        "{:?}",
        looping.lines_since(0)
    );

    let intruder = take_over_ctl0_index(&chassis);
    let mark = looping.len();
    std::thread::sleep(Duration::from_millis(1500));
    intruder.settle();
    assert_eq!(
        intruder.count(support::is_program_frame),
        0,
        "frames on the device that took ctl0's index: {}",
        intruder.describe()
    );
    let during = looping.lines_since(mark);
    assert!(during.len() >= 3, "the program kept trying: {during:?}");
    assert!(
        during.iter().all(|l| l.starts_with("err")),
        "nothing got through: {during:?}"
    );

    // ctl0 returns under its name, at a new index: new connections work again.
    chassis.host().ip(&["link", "del", "intruder"]).unwrap();
    chassis.recreate_ctl0(None).unwrap();
    let mark = looping.len();
    assert!(
        looping.wait_for(mark, "ok backplane", Duration::from_secs(10)),
        "no connection after ctl0 returned: {:?}",
        looping.lines_since(mark)
    );
    let run = looping.finish();
    assert_eq!(run.status.code(), Some(0), "{}", run.stderr);
    let kinds = event_kinds(run.report());
    let expect = [
        ("deleted", "closed"),
        ("index-taken-over", "none"),
        ("returned", "reopened"),
    ];
    for (kind, action) in expect {
        assert!(
            kinds.iter().any(|(k, a)| k == kind && a == action),
            "expected a {kind}/{action} link event in {kinds:?}"
        );
    }
    assert_eq!(
        run.report()["open_for_index_at_exit"].as_u64(),
        Some(u64::from(chassis.ctl0_index().unwrap()))
    );
    assert_eq!(run.report()["level_held"], level);
    assert_cgroup_gone(&run.cgroup());
}

#[test]
fn pinned_does_not_follow_the_name_negative_control() {
    if !netlab::require_privileged() {
        return;
    }
    let chassis = Chassis::new().unwrap();
    let _tcp = chassis.serve(Proto::Tcp, PORT).unwrap();
    let connect = [
        "connect".to_owned(),
        Chassis::CONTROL_V4.to_string(),
        PORT.to_string(),
    ];
    let looping = Looping::start(&chassis, "pinned", &connect);
    assert!(looping.wait_for(0, "ok backplane", Duration::from_secs(5)));
    let intruder = take_over_ctl0_index(&chassis);
    std::thread::sleep(Duration::from_millis(1500));
    intruder.settle();
    assert!(
        intruder.count(support::is_program_frame) > 0,
        "at pinned the pin is a number: the program's traffic should follow it to the intruder"
    );
    let run = looping.finish();
    assert_eq!(run.status.code(), Some(0), "{}", run.stderr);
    // The events were seen and recorded, but not acted on; and the report does not claim
    // a level that the takeover broke.
    let kinds = event_kinds(run.report());
    assert!(
        kinds.iter().any(|(k, a)| k == "deleted" && a == "none"),
        "{kinds:?}"
    );
    assert_eq!(run.report()["level"], "pinned");
    assert!(run.report()["level_held"].is_null(), "{}", run.report());
    assert_cgroup_gone(&run.cgroup());
}
