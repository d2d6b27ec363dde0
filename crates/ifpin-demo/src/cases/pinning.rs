//! [`LibraryPinning`]: every pinned socket of the demo is made by the `ifpin` library, so the
//! demo shows what the library does, not what a bare socket option does.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, UdpSocket};
use std::os::fd::BorrowedFd;
use std::time::Duration;

use super::{Pinning, PinningError, read_answer};
use ifpin::{Interface, PinnedTcpListener, PinnedTcpStream, PinnedUdpSocket};

/// Pins with `ifpin::pin` and the library's pinned socket types.
#[derive(Debug, Default, Clone, Copy)]
pub struct LibraryPinning;

fn resolve(interface: &str) -> Result<Interface, PinningError> {
    Ok(Interface::resolve(interface)?)
}

impl Pinning for LibraryPinning {
    fn describe(&self) -> String {
        "ifpin library (SO_BINDTOIFINDEX, read back at creation and after every bind)".into()
    }

    fn pin(&self, socket: BorrowedFd<'_>, interface: &str) -> Result<(), PinningError> {
        Ok(ifpin::pin(&socket, &resolve(interface)?)?)
    }

    fn tcp_exchange(
        &self,
        interface: &str,
        peer: SocketAddr,
        timeout: Duration,
    ) -> Result<String, PinningError> {
        let stream = PinnedTcpStream::connect_timeout(&resolve(interface)?, peer, timeout)?;
        Ok(read_answer(stream.into_inner(), timeout)?)
    }

    fn tcp_exchange_from(
        &self,
        interface: &str,
        local: SocketAddr,
        peer: SocketAddr,
        timeout: Duration,
    ) -> Result<String, PinningError> {
        let stream =
            PinnedTcpStream::connect_from(&resolve(interface)?, local, peer, Some(timeout))?;
        Ok(read_answer(stream.into_inner(), timeout)?)
    }

    fn udp_exchange(
        &self,
        interface: &str,
        peer: SocketAddr,
        timeout: Duration,
    ) -> Result<String, PinningError> {
        let any: SocketAddr = match peer {
            SocketAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
            SocketAddr::V6(_) => (Ipv6Addr::UNSPECIFIED, 0).into(),
        };
        let socket = PinnedUdpSocket::bind(&resolve(interface)?, any)?;
        socket.set_read_timeout(Some(timeout))?;
        socket.send_to(b"who are you?", peer)?;
        let mut buf = [0u8; 256];
        let (len, _) = socket.recv_from(&mut buf)?;
        Ok(String::from_utf8_lossy(&buf[..len]).into_owned())
    }

    fn tcp_listener(&self, interface: &str, addr: SocketAddr) -> Result<TcpListener, PinningError> {
        Ok(PinnedTcpListener::bind(&resolve(interface)?, addr)?.into_inner())
    }

    fn udp_socket(&self, interface: &str, addr: SocketAddr) -> Result<UdpSocket, PinningError> {
        Ok(PinnedUdpSocket::bind(&resolve(interface)?, addr)?.into_inner())
    }
}
