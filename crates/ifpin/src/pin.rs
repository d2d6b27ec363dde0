//! Pinning any socket to one interface, and checking that it stays pinned.
//!
//! [`pin`] sets `SO_BINDTOIFINDEX` on a socket (any `impl AsFd`: `std`, `tokio`, `socket2`)
//! and reads the binding back with `SO_BINDTODEVICE`, which returns the name the kernel
//! resolves for the bound index *now*. The kernel accepts an index that does not exist; the
//! name read-back catches that, and a rename or an index taken over by another device, in one
//! cheap call. [`verify`] reads back both the index and the name at any later time and says
//! what changed.
//!
//! The pinned socket types in [`crate::net`] call these after creation and after every
//! `bind()` and `accept()`.

use std::os::fd::AsFd;

use serde::Serialize;

use crate::error::{Op, PinError};
use crate::interface::{IfIndex, Interface, InterfaceChange};
use crate::sys::socket as sys;

/// Whether a socket is still bound to the interface it was pinned to; see [`verify`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "state", rename_all = "kebab-case")]
pub enum PinState {
    /// Bound to the index of the interface, which still carries the same name.
    Intact,
    /// Not bound to any interface.
    Unbound,
    /// Bound to another index.
    BoundElsewhere {
        /// The index the socket is bound to.
        index: IfIndex,
    },
    /// Bound to the right index, but it carries another name now, and no interface has the
    /// old name: a rename, or a deletion after which another device took the index (names
    /// and indexes alone cannot tell the two apart). Either way the pin no longer means what
    /// it meant.
    Renamed {
        /// The name the index carries now.
        to: String,
    },
    /// Bound to the right index, but another device has it now (the interface was deleted
    /// and a new device took the index): traffic now leaves through that device.
    IndexTakenOver {
        /// The device that has the index now.
        by: String,
    },
    /// The interface is gone; the socket can send nothing.
    Gone,
}

impl PinState {
    /// `true` for [`PinState::Intact`].
    pub fn is_intact(&self) -> bool {
        matches!(self, PinState::Intact)
    }

    /// `Ok` when intact, otherwise the error that describes the change, as noticed by `op`.
    pub fn into_result(self, interface: &Interface, op: Op) -> Result<(), PinError> {
        let interface = interface.clone();
        match self {
            PinState::Intact => Ok(()),
            PinState::Unbound => Err(PinError::BindingChanged {
                interface,
                now: None,
                op,
            }),
            PinState::BoundElsewhere { index } => Err(PinError::BindingChanged {
                interface,
                now: Some(index),
                op,
            }),
            PinState::Renamed { to } => Err(PinError::InterfaceChanged {
                interface,
                change: InterfaceChange::Renamed { to },
                op,
            }),
            PinState::IndexTakenOver { by } => Err(PinError::InterfaceChanged {
                interface,
                change: InterfaceChange::IndexTakenOver {
                    by,
                    name_now_at: None,
                },
                op,
            }),
            PinState::Gone => Err(PinError::InterfaceGone { interface, op }),
        }
    }
}

/// Pins `socket` to `interface` with `SO_BINDTOIFINDEX`, then reads the binding back and
/// checks that the bound index exists and still carries the interface's name.
///
/// Call it right after creating the socket, before `bind()` or `connect()`. Re-pinning a
/// socket already pinned to the same interface is allowed; pinning a socket bound elsewhere
/// needs `CAP_NET_RAW` ([`PinError::Permission`] without it).
///
/// Two system calls: the `setsockopt` and one `getsockopt(SO_BINDTODEVICE)`, which reads the
/// bound index and resolves it to the name it carries *now*, so a missing index (which the
/// kernel accepts unchecked), a rename and a takeover all show up in that one read. (The
/// bound index itself is what the successful `setsockopt` just stored; [`verify`] reads it
/// too.)
///
/// ```
/// use ifpin::{Interface, PinState};
///
/// let lo = Interface::resolve("lo")?;
/// let socket = std::net::UdpSocket::bind("127.0.0.1:0")?; // any `AsFd` socket
/// ifpin::pin(&socket, &lo)?;
/// assert_eq!(ifpin::verify(&socket, &lo)?, PinState::Intact);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[doc(alias = "SO_BINDTOIFINDEX")]
pub fn pin(socket: &impl AsFd, interface: &Interface) -> Result<(), PinError> {
    let fd = socket.as_fd();
    let index = interface.index().get();
    if let Err(err) = sys::bind_device_by_index(fd, index) {
        // Re-pinning to the same index needs privilege too; accept it as already done.
        let already = sys::device_index(fd).ok() == Some(index);
        if !already {
            return Err(PinError::from_io(Op::Pin, interface, None, err));
        }
    }
    match sys::device(fd) {
        Ok(Some(name)) if *name == *interface.name().as_bytes() => Ok(()),
        // Anything else: let the full read-back say what it is.
        _ => check(socket, interface, Op::Pin),
    }
}

/// Reads the binding of a pinned socket back: is it still bound to `interface`, under the
/// same name, at the same index?
///
/// Catches a rebind (for example the IPv6 link-local `bind()` that silently moves a socket to
/// another interface), a rename, the interface's deletion, and its index taken over by
/// another device. Two `getsockopt` calls; more only when something changed.
pub fn verify(socket: &impl AsFd, interface: &Interface) -> Result<PinState, PinError> {
    let fd = socket.as_fd();
    let io = |err| PinError::from_io(Op::Verify, interface, None, err);
    let bound = sys::device_index(fd).map_err(io)?;
    let Some(bound) = IfIndex::new(bound) else {
        return Ok(PinState::Unbound);
    };
    if bound != interface.index() {
        return Ok(PinState::BoundElsewhere { index: bound });
    }
    match sys::device(fd) {
        Ok(Some(name)) if *name == *interface.name().as_bytes() => Ok(PinState::Intact),
        Ok(Some(name)) => {
            let name = String::from_utf8_lossy(&name).into_owned();
            // Tell a rename from a takeover: does the old name live elsewhere now?
            Ok(match interface.check() {
                Ok(InterfaceChange::IndexTakenOver { by, .. }) => PinState::IndexTakenOver { by },
                Ok(InterfaceChange::Renamed { to }) => PinState::Renamed { to },
                _ => PinState::Renamed { to: name },
            })
        }
        Ok(None) => Ok(PinState::Unbound),
        Err(err) if matches!(err.raw_os_error(), Some(libc::ENXIO) | Some(libc::ENODEV)) => {
            Ok(PinState::Gone)
        }
        Err(err) => Err(io(err)),
    }
}

/// [`verify`], turning anything but [`PinState::Intact`] into the matching error.
pub fn check(socket: &impl AsFd, interface: &Interface, op: Op) -> Result<(), PinError> {
    verify(socket, interface)?.into_result(interface, op)
}

/// The bare `SO_BINDTOIFINDEX` (Linux ≥ 5.0), with no check before and no read-back after:
/// the kernel's own cost, for comparison. Prefer [`pin()`], which validates the interface and
/// reads the binding back.
#[doc(alias = "SO_BINDTOIFINDEX")]
pub fn bind_device_by_index(socket: &impl AsFd, index: IfIndex) -> std::io::Result<()> {
    sys::bind_device_by_index(socket.as_fd(), index.get())
}

/// The bare `SO_BINDTODEVICE` read: the current name of the device at the bound index, `None`
/// when the socket is not bound. Allocates nothing.
#[doc(alias = "SO_BINDTODEVICE")]
pub fn device(socket: &impl AsFd) -> std::io::Result<Option<DeviceName>> {
    sys::device(socket.as_fd())
}

pub use crate::sys::socket::DeviceName;

/// The index `socket` is bound to now (`SO_BINDTOIFINDEX`), `None` when it is not bound.
pub fn bound_index(socket: &impl AsFd) -> std::io::Result<Option<IfIndex>> {
    sys::device_index(socket.as_fd()).map(IfIndex::new)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::UdpSocket;

    #[test]
    fn pin_to_lo_is_intact_and_idempotent() {
        let lo = Interface::loopback().unwrap();
        let s = UdpSocket::bind("127.0.0.1:0").unwrap();
        assert_eq!(verify(&s, &lo).unwrap(), PinState::Unbound);
        assert!(matches!(
            check(&s, &lo, Op::Verify),
            Err(PinError::BindingChanged { now: None, .. })
        ));
        pin(&s, &lo).unwrap();
        assert_eq!(verify(&s, &lo).unwrap(), PinState::Intact);
        assert_eq!(bound_index(&s).unwrap(), Some(lo.index()));
        pin(&s, &lo).unwrap();
        assert!(verify(&s, &lo).unwrap().is_intact());
    }

    #[test]
    fn intact_state_serializes_with_a_tag() {
        let json = serde_json::to_string(&PinState::BoundElsewhere {
            index: IfIndex::new(4).unwrap(),
        })
        .unwrap();
        assert_eq!(json, r#"{"state":"bound-elsewhere","index":4}"#);
    }
}
