//! # ifpin: keep traffic on one network interface, and prove it
//!
//! On Linux, `bind()` to an interface's address does not choose the interface a packet leaves
//! through: the kernel routes by destination. `SO_BINDTODEVICE`/`SO_BINDTOIFINDEX` pin a socket
//! to one device, but only for honest code, only by index, and only per socket. This crate
//! closes those gaps in three guarantee levels, [`Level::Pinned`], [`Level::Enforced`] and
//! [`Level::Sealed`], and reports which one holds.
//!
//! How the parts connect:
//! - [`interface`] resolves a name or index into a checked [`Interface`].
//! - [`pin()`] pins any socket to an interface and reads it back; [`verify()`] re-checks it.
//! - [`net`] has pinned TCP/UDP sockets (`std`, and `tokio` with the feature), whose errors
//!   ([`PinError`]) say what happened on the wire.
//! - [`probe`] parses `tcp://`/`udp://` targets and probes them through one interface.
//! - [`audit`] lists every socket with its interface and owners and checks it against a policy.
//! - [`policy`] reads the policy file: control planes (interface, prefixes, ports).
//! - [`confine`] holds whole programs to one interface with a cgroup v2 and BPF programs
//!   ([`bpf`] builds and loads them, [`cgroup`] makes the cgroup).
//! - [`sockdiag`] lists a network namespace's TCP/UDP sockets with their bound interface.
//! - `sys` (private) is the only place with `unsafe` and raw syscalls; everything else is
//!   safe and typed, and no public function relies on its caller for memory safety.
//!
//! The library never carries on unpinned: every failure is an error naming what failed.
#![deny(missing_docs)]
// Every `unsafe` block lives in `sys`, the one module allowed them.
#![deny(unsafe_code)]

pub mod audit;
pub mod bpf;
pub mod cgroup;
pub mod confine;
mod error;
pub mod exec;
pub mod guard;
pub mod interface;
mod level;
pub mod linkwatch;
pub mod net;
pub mod pin;
pub mod policy;
pub mod probe;
pub mod sockdiag;
#[allow(unsafe_code)]
mod sys;

pub use confine::{ConfineError, ConfineOptions, Confinement, Counters, StaleCleanup};
pub use error::{Op, PinError, SyscallError};
pub use interface::{
    IfIndex, IfName, Interface, InterfaceAddress, InterfaceChange, InterfaceError, InterfaceFlags,
    InterfaceSpec,
};
pub use level::Level;
pub use net::{PinnedTcpListener, PinnedTcpStream, PinnedUdpSocket};
pub use pin::{PinState, pin, verify};
pub use policy::{Plane, Policy, PolicyError};
