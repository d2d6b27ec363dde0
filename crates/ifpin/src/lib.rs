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
//! - [`policy`] reads the policy file: control planes (interface, prefixes, ports).
//! - [`sys`] is the only place with `unsafe` and raw syscalls; everything else is safe and typed.
//!
//! The library never carries on unpinned: every failure is an error naming what failed.
#![deny(missing_docs)]

pub mod interface;
mod level;
pub mod policy;
pub mod sys;

pub use interface::{
    IfIndex, IfName, Interface, InterfaceAddress, InterfaceChange, InterfaceError, InterfaceFlags,
    InterfaceSpec,
};
pub use level::Level;
pub use policy::{Plane, Policy, PolicyError};
