//! Pinned UDP: [`PinnedUdpSocket`].

use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd};
use std::time::Duration;

use socket2::Type;

use super::{bind_checked, new_socket, pinned_address};
use crate::error::{Op, PinError};
use crate::interface::Interface;
use crate::pin::{self, PinState};

/// A UDP socket bound to one interface: datagrams leave and arrive only through it.
///
/// Unlike the TCP types it does not deref to [`std::net::UdpSocket`]: that type's `send_to`
/// and `connect` would hand a caller's IPv6 scope id to the kernel, and a link-local
/// destination scoped to another interface leaves through that interface even on a bound
/// socket (see `docs/kernel.md`, override vectors). Use the checked methods here; [`PinnedUdpSocket::as_std`]
/// is the explicit escape hatch.
#[derive(Debug)]
pub struct PinnedUdpSocket {
    inner: UdpSocket,
    interface: Interface,
}

impl PinnedUdpSocket {
    /// Binds to `addr` pinned to `interface` (the unspecified address with port 0 for "any
    /// local address and port on this interface"), then reads the binding back.
    pub fn bind(interface: &Interface, addr: SocketAddr) -> Result<Self, PinError> {
        let addr = pinned_address(interface, addr)?;
        let socket = new_socket(interface, &addr, Type::DGRAM)?;
        bind_checked(interface, &socket, addr)?;
        Ok(PinnedUdpSocket {
            inner: socket.into(),
            interface: interface.clone(),
        })
    }

    /// Sets the default destination (`connect(2)`); also makes the kernel report ICMP errors
    /// (port unreachable, host unreachable) on later sends and receives.
    pub fn connect(&self, addr: SocketAddr) -> Result<(), PinError> {
        let addr = pinned_address(&self.interface, addr)?;
        self.inner
            .connect(addr)
            .map_err(|err| PinError::from_io(Op::Connect, &self.interface, Some(addr), err))?;
        pin::check(&self.inner, &self.interface, Op::Connect)
    }

    /// Sends one datagram to `addr` through the pinned interface.
    pub fn send_to(&self, buf: &[u8], addr: SocketAddr) -> Result<usize, PinError> {
        let addr = pinned_address(&self.interface, addr)?;
        self.inner
            .send_to(buf, addr)
            .map_err(|err| PinError::from_io(Op::Send, &self.interface, Some(addr), err))
    }

    /// Sends one datagram to the connected peer.
    pub fn send(&self, buf: &[u8]) -> Result<usize, PinError> {
        self.inner
            .send(buf)
            .map_err(|err| self.explain(Op::Send, err))
    }

    /// Receives one datagram and its sender. With a read timeout set, waiting longer is
    /// [`PinError::TimedOut`].
    pub fn recv_from(&self, buf: &mut [u8]) -> Result<(usize, SocketAddr), PinError> {
        self.inner
            .recv_from(buf)
            .map_err(|err| self.explain(Op::Recv, err))
    }

    /// Receives one datagram from the connected peer.
    pub fn recv(&self, buf: &mut [u8]) -> Result<usize, PinError> {
        self.inner
            .recv(buf)
            .map_err(|err| self.explain(Op::Recv, err))
    }

    /// Explains a failed call on this socket as what happened on the wire.
    pub fn explain(&self, op: Op, err: io::Error) -> PinError {
        let peer = self.inner.peer_addr().ok();
        let timeout = match op {
            Op::Recv => self.inner.read_timeout().ok().flatten(),
            _ => self.inner.write_timeout().ok().flatten(),
        };
        match timeout {
            Some(after) if err.kind() == io::ErrorKind::WouldBlock => PinError::TimedOut {
                interface: self.interface.clone(),
                op,
                destination: peer,
                after,
            },
            _ => PinError::from_io(op, &self.interface, peer, err),
        }
    }

    /// The local address.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.inner.local_addr()
    }

    /// The connected peer's address.
    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        self.inner.peer_addr()
    }

    /// `SO_RCVTIMEO`; see [`UdpSocket::set_read_timeout`].
    pub fn set_read_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        self.inner.set_read_timeout(timeout)
    }

    /// `SO_SNDTIMEO`; see [`UdpSocket::set_write_timeout`].
    pub fn set_write_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        self.inner.set_write_timeout(timeout)
    }

    /// See [`UdpSocket::set_nonblocking`].
    pub fn set_nonblocking(&self, nonblocking: bool) -> io::Result<()> {
        self.inner.set_nonblocking(nonblocking)
    }

    /// `SO_BROADCAST`; see [`UdpSocket::set_broadcast`].
    pub fn set_broadcast(&self, broadcast: bool) -> io::Result<()> {
        self.inner.set_broadcast(broadcast)
    }

    /// `SO_ERROR`: the pending error, cleared by the read.
    pub fn take_error(&self) -> io::Result<Option<io::Error>> {
        self.inner.take_error()
    }

    /// A second handle to the same socket (same binding).
    pub fn try_clone(&self) -> io::Result<Self> {
        Ok(PinnedUdpSocket {
            inner: self.inner.try_clone()?,
            interface: self.interface.clone(),
        })
    }

    /// The interface the socket is pinned to.
    pub fn interface(&self) -> &Interface {
        &self.interface
    }

    /// Whether the socket is still bound to the same interface; see [`crate::pin::verify`].
    pub fn verify(&self) -> Result<PinState, PinError> {
        pin::verify(&self.inner, &self.interface)
    }

    /// The `std` socket. Its `send_to`/`connect` do not check scope ids: a link-local
    /// destination scoped to another interface leaves through that interface.
    pub fn as_std(&self) -> &UdpSocket {
        &self.inner
    }

    /// The `std` socket, with the same caveat as [`PinnedUdpSocket::as_std`].
    pub fn into_inner(self) -> UdpSocket {
        self.inner
    }
}

impl AsFd for PinnedUdpSocket {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.inner.as_fd()
    }
}

impl AsRawFd for PinnedUdpSocket {
    fn as_raw_fd(&self) -> RawFd {
        self.inner.as_raw_fd()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_datagrams_round_trip() {
        let lo = Interface::loopback().unwrap();
        let any: SocketAddr = "127.0.0.1:0".parse().unwrap();
        let a = PinnedUdpSocket::bind(&lo, any).unwrap();
        let b = PinnedUdpSocket::bind(&lo, any).unwrap();
        a.send_to(b"hi", b.local_addr().unwrap()).unwrap();
        let mut buf = [0u8; 8];
        b.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        let (n, from) = b.recv_from(&mut buf).unwrap();
        assert_eq!((&buf[..n], from), (&b"hi"[..], a.local_addr().unwrap()));
        assert!(a.verify().unwrap().is_intact());
    }

    #[test]
    fn waiting_too_long_is_a_timeout() {
        let lo = Interface::loopback().unwrap();
        let s = PinnedUdpSocket::bind(&lo, "127.0.0.1:0".parse().unwrap()).unwrap();
        s.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
        let err = s.recv_from(&mut [0u8; 8]).unwrap_err();
        assert!(
            matches!(err, PinError::TimedOut { after, .. } if after >= Duration::from_millis(50)),
            "{err:?}"
        );
    }

    #[test]
    fn connected_socket_reports_port_unreachable_as_refused() {
        let lo = Interface::loopback().unwrap();
        let closed = UdpSocket::bind("127.0.0.1:0").unwrap();
        let target = closed.local_addr().unwrap();
        drop(closed);
        let s = PinnedUdpSocket::bind(&lo, "127.0.0.1:0".parse().unwrap()).unwrap();
        s.connect(target).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        s.send(b"x").unwrap();
        let err = s.recv(&mut [0u8; 8]).unwrap_err();
        assert!(matches!(err, PinError::Refused { .. }), "{err:?}");
    }
}
