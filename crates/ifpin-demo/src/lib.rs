//! # ifpin-demo: the live demonstration behind `ifpin demo`
//!
//! Builds a throwaway virtual chassis in network namespaces and shows, frame by frame, what
//! leaks out of the front port and what each guarantee level of `ifpin` holds. Everything the
//! `ifpin demo` command needs at run time lives here, and returns data (`Serialize`); the
//! command only formats it.
//!
//! * The lab: [`Netns`] ([`netns`]), one named network namespace, with closures and programs
//!   run inside it; [`Lab`] ([`lab`]), a declarative topology builder; [`Chassis`]
//!   ([`chassis`]), the topology of the demo (a host with the control link `ctl0` and the
//!   front port `eth1`, a peer behind each, a control destination behind both);
//!   [`Responder`] ([`responder`]), TCP/UDP servers answering with their host's name;
//!   [`FrameCounter`] ([`counter`]) and [`Frame`] ([`frame`]), `AF_PACKET` capture, decoded,
//!   direction-aware, noise-filtered.
//! * [`catalogue`]: every vector the demo tries, as tables of data with a small function per
//!   attempt: override vectors against a pinned socket, and escape vectors of a hostile root
//!   program under `ifpin exec`. `docs/kernel.md` is checked against these tables.
//! * [`cases`]: the cases of the demo on a chassis, each judged by the frames it causes, and
//!   the levels section, which runs the vectors under `ifpin exec` at each level.
//!
//! Rules the API keeps: labs, chassis and chassis helpers return only once their links carry
//! frames ([`Netns::wait_link_up`]); responders answer UDP from the address that was asked;
//! counters fail loudly (panic) rather than under-count if frames were lost; everything is
//! removed on drop, also when a caller panics; names are unique per process.
//!
//! All `unsafe` code is in one private module (`sys`), one safe function per system call.
//!
//! Address plan and interface names: see [`chassis`] and the `Chassis::*` constants
//! (`Chassis::CONTROL_V4` = 10.99.7.2, `Chassis::CONTROL_V6` = fd99:7::2, backplane link-local
//! fe80::2, front link-local fe80::3).
#![deny(missing_docs)]
#![deny(unsafe_code)]

pub mod cases;
pub mod catalogue;
pub mod chassis;
pub mod counter;
pub mod error;
pub mod frame;
pub mod lab;
pub mod netns;
pub mod responder;
#[allow(unsafe_code, reason = "the one module with raw system calls")]
mod sys;

pub use chassis::{Chassis, Peer, Served};
pub use counter::{FrameCounter, settle_all};
pub use error::{Error, Result};
pub use frame::{Arp, Direction, Frame, Payload, Transport};
pub use lab::{Lab, LabBuilder, Route};
pub use netns::{Netns, Process};
pub use responder::{Proto, Responder};

use std::sync::OnceLock;

/// Why labs cannot be built here, or `None` if they can (checked once per process): the
/// process must be root, able to create network namespaces, and able to run `ip` (iproute2).
pub fn privilege_problem() -> Option<String> {
    static PROBLEM: OnceLock<Option<String>> = OnceLock::new();
    PROBLEM
        .get_or_init(|| {
            if sys::euid() != 0 {
                return Some(format!("effective uid is {}, not 0", sys::euid()));
            }
            // unshare(CLONE_NEWNET) on a throwaway thread: the namespace dies with it.
            let probe = std::thread::spawn(sys::unshare_net).join();
            match probe {
                Ok(Ok(())) => {}
                Ok(Err(e)) => return Some(format!("cannot create a network namespace: {e}")),
                Err(_) => return Some("namespace probe thread panicked".to_owned()),
            }
            match std::process::Command::new("ip").arg("-V").output() {
                Ok(o) if o.status.success() => None,
                Ok(o) => Some(format!("`ip -V` failed: {}", o.status)),
                Err(e) => Some(format!("cannot run `ip` (install iproute2): {e}")),
            }
        })
        .clone()
}
