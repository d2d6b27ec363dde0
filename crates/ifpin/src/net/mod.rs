//! Sockets pinned to one interface, usable where `std::net` (and, with the `tokio` feature,
//! `tokio::net`) sockets are.
//!
//! Every type here is created pinned ([`crate::pin::pin`] right after `socket()`, which reads
//! the binding back), and reads its binding back again after every `bind()` (a link-local
//! `bind()` can silently move a socket to another interface), after a UDP `connect()` and
//! after every `accept()`: a socket that is not bound to its interface is an error, never a
//! socket that carries on unpinned. A TCP `connect()` cannot move a bound socket (the kernel
//! refuses a scope that conflicts with the binding, and scopes are checked before anyway), so
//! the connect path, which is hot, adds no further read-back.
//!
//! Addresses given to these types are checked before they reach the kernel: an IPv6
//! link-local (or link/interface-local multicast) address without a scope gets the pinned
//! interface's index as its scope, and a scope naming any other interface is refused with
//! [`PinError::ForeignScope`] before anything is sent. No method passes a caller's interface
//! index or scope id to the kernel.
//!
//! - [`PinnedTcpStream`], [`PinnedTcpListener`]: deref to `std::net::TcpStream` /
//!   `TcpListener` (their methods take no addresses, so nothing can go around the pin).
//! - [`PinnedUdpSocket`]: does *not* deref to `std::net::UdpSocket`, whose `send_to` would
//!   pass a caller's scope id; it has its own checked methods and an explicit `as_std()`.
//! - [`tokio`] (feature `tokio`): the same three types over `tokio::net`.
//!
//! ```no_run
//! use std::io::Read;
//! use std::time::Duration;
//! use ifpin::{Interface, PinError, PinnedTcpStream};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let ctl0 = Interface::resolve("ctl0")?;
//! match PinnedTcpStream::connect_timeout(&ctl0, "10.99.7.2:7000".parse()?, Duration::from_secs(3)) {
//!     Ok(mut stream) => {
//!         let mut answer = String::new();
//!         stream.read_to_string(&mut answer)?;
//!         assert!(stream.verify()?.is_intact());
//!     }
//!     // Said as what happened on the wire, never retried through another interface.
//!     Err(PinError::NoRoute { .. }) => eprintln!("no way to the peer through ctl0"),
//!     Err(PinError::InterfaceDown { .. }) => eprintln!("ctl0 is down"),
//!     Err(other) => return Err(other.into()),
//! }
//! # Ok(()) }
//! ```

mod tcp;
#[cfg(feature = "tokio")]
pub mod tokio;
mod udp;

use std::net::{Ipv6Addr, SocketAddr};

use socket2::{Domain, Socket, Type};

use crate::error::{Op, PinError};
use crate::interface::Interface;
use crate::pin;

pub use tcp::{PinnedTcpListener, PinnedTcpStream};
pub use udp::PinnedUdpSocket;

/// The address `addr` as it may be handed to the kernel on a socket pinned to `interface`.
///
/// - An IPv6 address that needs a scope (unicast link-local `fe80::/10`, interface- or
///   link-local multicast `ff01::/16`, `ff02::/16`) gets `interface`'s index as its scope,
///   when it has none or already names `interface`.
/// - Any other IPv6 address gets scope 0.
/// - A nonzero scope naming another interface is [`PinError::ForeignScope`].
/// - IPv4 addresses pass unchanged.
pub fn pinned_address(interface: &Interface, addr: SocketAddr) -> Result<SocketAddr, PinError> {
    let SocketAddr::V6(mut v6) = addr else {
        return Ok(addr);
    };
    let own = interface.index().get();
    let scope = v6.scope_id();
    if scope != 0 && scope != own {
        return Err(PinError::ForeignScope {
            interface: interface.clone(),
            address: *v6.ip(),
            scope,
            scope_name: crate::sys::iface::if_indextoname(scope).ok().flatten(),
        });
    }
    v6.set_scope_id(if needs_scope(v6.ip()) { own } else { 0 });
    Ok(SocketAddr::V6(v6))
}

/// Whether the kernel reads `sin6_scope_id` for this destination.
fn needs_scope(ip: &Ipv6Addr) -> bool {
    let first = ip.segments()[0];
    let multicast_scope = first & 0x000f;
    ip.is_unicast_link_local() || (ip.is_multicast() && multicast_scope <= 2)
}

/// A new socket of `addr`'s family and type `ty`, pinned to `interface`.
fn new_socket(interface: &Interface, addr: &SocketAddr, ty: Type) -> Result<Socket, PinError> {
    let socket = Socket::new(Domain::for_address(*addr), ty, None)
        .map_err(|err| PinError::from_io(Op::Create, interface, None, err))?;
    pin::pin(&socket, interface)?;
    Ok(socket)
}

/// `bind()` `socket` to `addr` (already passed through [`pinned_address`]) and read the
/// binding back: a link-local `bind()` can silently move a socket to another interface.
fn bind_checked(interface: &Interface, socket: &Socket, addr: SocketAddr) -> Result<(), PinError> {
    socket
        .bind(&addr.into())
        .map_err(|err| PinError::from_io(Op::Bind, interface, None, err))?;
    pin::check(socket, interface, Op::Bind)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lo() -> Interface {
        Interface::loopback().unwrap()
    }

    fn v6(text: &str, scope: u32) -> SocketAddr {
        SocketAddr::V6(std::net::SocketAddrV6::new(
            text.parse().unwrap(),
            7,
            0,
            scope,
        ))
    }

    fn scope_of(addr: SocketAddr) -> u32 {
        match addr {
            SocketAddr::V6(v6) => v6.scope_id(),
            SocketAddr::V4(_) => panic!("not v6"),
        }
    }

    #[test]
    fn link_local_without_scope_gets_the_pinned_interface() {
        let lo = lo();
        let own = lo.index().get();
        assert_eq!(
            scope_of(pinned_address(&lo, v6("fe80::1", 0)).unwrap()),
            own
        );
        assert_eq!(
            scope_of(pinned_address(&lo, v6("fe80::1", own)).unwrap()),
            own
        );
        assert_eq!(
            scope_of(pinned_address(&lo, v6("ff02::1", 0)).unwrap()),
            own
        );
        assert_eq!(
            scope_of(pinned_address(&lo, v6("ff01::1", 0)).unwrap()),
            own
        );
    }

    #[test]
    fn global_addresses_carry_no_scope() {
        let lo = lo();
        let own = lo.index().get();
        assert_eq!(
            scope_of(pinned_address(&lo, v6("2001:db8::1", 0)).unwrap()),
            0
        );
        assert_eq!(
            scope_of(pinned_address(&lo, v6("2001:db8::1", own)).unwrap()),
            0
        );
        assert_eq!(scope_of(pinned_address(&lo, v6("ff05::1", 0)).unwrap()), 0);
        let v4: SocketAddr = "192.0.2.1:7".parse().unwrap();
        assert_eq!(pinned_address(&lo, v4).unwrap(), v4);
    }

    #[test]
    fn a_foreign_scope_is_refused() {
        let lo = lo();
        let other = lo.index().get() + 1000;
        for addr in [
            v6("fe80::1", other),
            v6("2001:db8::1", other),
            v6("ff02::1", other),
        ] {
            match pinned_address(&lo, addr) {
                Err(PinError::ForeignScope { scope, .. }) => assert_eq!(scope, other),
                res => panic!("{addr}: {res:?}"),
            }
        }
    }
}
