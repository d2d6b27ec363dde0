//! # netlab: throwaway virtual networks in Linux network namespaces
//!
//! Used by ifpin's tests, benchmarks and `ifpin demo` to build small topologies (hosts, veth
//! links, addresses, routes), run code inside them, and count the frames crossing each link.
//! Everything is removed on drop, also when a test panics; names are unique per process, so
//! tests run in parallel.
//!
//! * [`Netns`] ([`netns`]): one named namespace; run closures ([`Netns::run`]) or programs
//!   ([`Netns::command`], [`Netns::spawn`]) inside it; `ip -n` ([`Netns::ip`]); sysctls.
//! * [`Lab`] ([`lab`]): a declarative topology builder.
//! * [`Chassis`] ([`chassis`]): the `kernel-facts.md` topology (host with `ctl0` and `eth1`,
//!   peers `backplane` and `front`, a control destination behind both).
//! * [`Responder`] ([`responder`]): TCP/UDP servers answering with their host's name.
//! * [`FrameCounter`] ([`counter`]) and [`Frame`] ([`frame`]): `AF_PACKET` capture, decoded,
//!   direction-aware, noise-filtered. Query with [`FrameCounter::count`] /
//!   [`FrameCounter::frames`] / [`FrameCounter::count_involving`] after
//!   [`FrameCounter::settle`] (or [`settle_all`]); [`FrameCounter::take`] reads and clears in
//!   one step; [`FrameCounter::describe`] lists the frames for assertion messages.
//! * [`systemd::Container`] ([`systemd`]): a real systemd booted with `systemd-nspawn` in a
//!   namespace (the host of a chassis, say), from a Debian tree built once with debootstrap
//!   and cached ([`systemd::Tree`]); commands run inside with [`systemd::Container::command`].
//! * [`require_privileged`]: the skip-or-fail guard for tests that need root.
//! * [`vectors`]: the override vectors of `kernel-facts.md`, each a function of a pinned socket
//!   returning the kernel's answer (also as the `netlab-vectors` helper binary).
//! * [`cases`]: the live cases of `ifpin demo` on a chassis, judged by the frames they cause.
//! * [`bench`]: paired A/B ratios with a confidence interval, and CPU placement, for the
//!   benchmarks.
//!
//! Rules the API keeps for you: labs, chassis and chassis helpers return only once their links
//! carry frames ([`Netns::wait_link_up`]); responders answer UDP from the address that was
//! asked; counters fail loudly (panic) rather than under-count if frames were lost.
//!
//! ## Usage
//!
//! ```
//! use std::net::{SocketAddr, TcpStream};
//! use std::io::Read;
//! use netlab::{Chassis, Peer, Proto};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! if !netlab::require_privileged("my_test") {
//!     return Ok(()); // loud skip already printed; panics instead under IFPIN_REQUIRE_PRIVILEGED=1
//! }
//! let chassis = Chassis::new()?;                       // host/backplane/front namespaces
//! let served = chassis.serve(Proto::Tcp, 7000)?;       // both peers answer on port 7000
//! let front = chassis.front_counter()?;                // capture on the front peer's end of eth1
//!
//! // Code inside the host namespace (a thread that setns'd into it):
//! let dst = SocketAddr::new(chassis.control_v4(), 7000);
//! let answer = chassis.host().run(|| -> std::io::Result<String> {
//!     let mut s = TcpStream::connect(dst)?;            // unbound: the default route is eth1
//!     let mut text = String::new();
//!     s.read_to_string(&mut text)?;
//!     Ok(text)
//! })??;
//! assert_eq!(answer, "front\n");                       // it leaked, and the front answered
//!
//! front.settle();                                      // everything sent so far is recorded
//! assert!(front.count_involving(chassis.control_v4()) > 0, "{}", front.describe());
//! assert_eq!(served.hits(Peer::Front), 1);
//!
//! // A program inside the namespace (setns in pre_exec, no `ip netns exec`):
//! let out = chassis.host().command("ip").args(["-brief", "addr"]).output()?;
//! assert!(out.status.success());
//!
//! // Lifecycle: a different device with ctl0's old index, leading to the front peer.
//! let old = chassis.ctl0_index()?;
//! chassis.delete_ctl0()?;
//! chassis.add_host_link("evil0", Some(old), Peer::Front, "peer-evil0")?;
//! let evil = netlab::FrameCounter::open(chassis.front(), "peer-evil0")?;
//! # drop(evil);
//! # Ok(()) }
//! ```
//!
//! A custom topology, and a process running inside it:
//!
//! ```
//! use netlab::{Lab, Responder, Route};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # if !netlab::require_privileged("netlab crate doc: custom topology") { return Ok(()); }
//! let lab = Lab::builder()
//!     .host("client")
//!     .host("server")
//!     .link(("client", "eth0"), ("server", "eth0"))
//!     .addr("client", "eth0", "10.1.0.1/24")
//!     .addr("client", "eth0", "fd01::1/64")
//!     .addr("server", "eth0", "10.1.0.2/24")
//!     .addr("server", "lo", "192.0.2.1/32")
//!     .route("client", Route::new("192.0.2.0/24").via("10.1.0.2").metric(10))
//!     .sysctl("server", "net.ipv4.ip_forward", "1")
//!     .build()?;
//! let server = Responder::udp(lab.host("server"), "192.0.2.1:5353".parse()?)?;
//! let mut dig = lab.host("client").command("python3");
//! dig.args(["-c", "import socket; s=socket.socket(socket.AF_INET, socket.SOCK_DGRAM); \
//!                  s.settimeout(2); s.sendto(b'?', ('192.0.2.1', 5353)); print(s.recv(64))"]);
//! let out = dig.output()?;                                 // b'server\n'
//! assert!(String::from_utf8_lossy(&out.stdout).contains("server"));
//! assert_eq!(server.hits(), 1);
//! // Long-running programs: lab.host("x").spawn(&mut cmd)? is killed when the lab drops.
//! # Ok(()) }
//! ```
//!
//! Address plan and interface names: see [`chassis`] and the `Chassis::*` constants
//! (`Chassis::CONTROL_V4` = 10.99.7.2, `Chassis::CONTROL_V6` = fd99:7::2, backplane link-local
//! fe80::2, front link-local fe80::3).
#![deny(missing_docs)]

pub mod bench;
pub mod cases;
pub mod chassis;
pub mod counter;
pub mod error;
pub mod frame;
pub mod lab;
pub mod netns;
pub mod responder;
mod sys;
pub mod systemd;
pub mod vectors;

pub use chassis::{Chassis, Peer, Served};
pub use counter::{FrameCounter, settle_all};
pub use error::{Error, Result};
pub use frame::{Arp, Direction, Frame, Payload, Transport};
pub use lab::{Lab, LabBuilder, Route};
pub use netns::{Netns, Process};
pub use responder::{Proto, Responder};

use std::sync::OnceLock;

/// Environment variable that turns a privilege skip into a test failure (set by CI).
pub const REQUIRE_PRIVILEGED_ENV: &str = "IFPIN_REQUIRE_PRIVILEGED";

/// Whether this process can build labs: it is root, network namespaces can be created and
/// `ip` (iproute2) runs.
///
/// If it cannot, prints `SKIPPED (needs root): <test>` and the reason to stderr and returns
/// `false` (the caller returns early), or panics when `IFPIN_REQUIRE_PRIVILEGED=1` is set,
/// so CI cannot pass by skipping.
pub fn require_privileged(test: &str) -> bool {
    match privilege_problem() {
        None => true,
        Some(reason) => {
            if std::env::var(REQUIRE_PRIVILEGED_ENV).is_ok_and(|v| v == "1") {
                panic!(
                    "{test} needs root and network namespaces ({REQUIRE_PRIVILEGED_ENV}=1): {reason}"
                );
            }
            eprintln!();
            eprintln!("**************************************************************");
            eprintln!("SKIPPED (needs root): {test}");
            eprintln!("  reason: {reason}");
            eprintln!(
                "  run as root to execute it; {REQUIRE_PRIVILEGED_ENV}=1 makes this a failure"
            );
            eprintln!("**************************************************************");
            false
        }
    }
}

/// Why labs cannot be built here, or `None` if they can (checked once per process).
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
