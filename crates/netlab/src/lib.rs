//! # netlab: test fixtures for ifpin
//!
//! Used by the tests and benchmarks of the workspace (a dev-dependency, never a dependency of
//! the shipped `ifpin` binary). The lab itself (namespaces, veth links, the chassis,
//! responders, frame counters, the vector catalogue and the demo's cases) lives in the shipped
//! crate `ifpin-demo`, which `ifpin demo` runs; netlab re-exports it under the names the tests
//! use, and adds what only tests need:
//!
//! * [`require_privileged`]: the skip-or-fail guard for tests that need root.
//! * [`systemd::Container`] ([`systemd`]): a real systemd booted with `systemd-nspawn` in a
//!   namespace (the host of a chassis, say), from a Debian tree built once with debootstrap
//!   and cached ([`systemd::Tree`]); commands run inside with [`systemd::Container::command`].
//! * The helper programs `netlab-vectors` (tries override vectors, prints the kernel's
//!   answers) and `netlab-escape` (a hostile program for `ifpin exec` tests: one attack of
//!   [`vectors::escape`] per run).
//!
//! Re-exported from `ifpin-demo`: [`Netns`] ([`netns`]), [`Lab`] ([`lab`]), [`Chassis`]
//! ([`chassis`]), [`Responder`] ([`responder`]), [`FrameCounter`] ([`counter`]) and [`Frame`]
//! ([`frame`]), the vector catalogue as [`vectors`], and the demo's [`cases`].
//!
//! ## Usage
//!
//! ```
//! use std::net::{SocketAddr, TcpStream};
//! use std::io::Read;
//! use netlab::{Chassis, Peer, Proto};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! if !netlab::require_privileged() {
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
//! # if !netlab::require_privileged() { return Ok(()); }
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
#![forbid(unsafe_code)]

pub mod systemd;

pub use ifpin_demo::catalogue as vectors;
pub use ifpin_demo::{
    Arp, Chassis, Direction, Error, Frame, FrameCounter, Lab, LabBuilder, Netns, Payload, Peer,
    Process, Proto, Responder, Result, Route, Served, Transport, cases, chassis, counter, error,
    frame, lab, netns, privilege_problem, responder, settle_all,
};

/// The name of the test running on this thread (the test harness names each test's thread
/// after it), without its module path: what messages call the test, so no test types its own
/// name.
pub fn test_name() -> String {
    let thread = std::thread::current();
    let name = thread.name().unwrap_or("this test");
    name.rsplit("::").next().unwrap_or(name).to_owned()
}

/// Environment variable that turns a privilege skip into a test failure (set by CI).
pub const REQUIRE_PRIVILEGED_ENV: &str = "IFPIN_REQUIRE_PRIVILEGED";

/// Whether this process can build labs: it is root, network namespaces can be created and
/// `ip` (iproute2) runs.
///
/// If it cannot, prints `SKIPPED (needs root): <test>` and the reason to stderr and returns
/// `false` (the caller returns early), or panics when `IFPIN_REQUIRE_PRIVILEGED=1` is set,
/// so CI cannot pass by skipping. The test is named from the thread the test harness runs it
/// on, so no test types its own name.
pub fn require_privileged() -> bool {
    let test = test_name();
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
