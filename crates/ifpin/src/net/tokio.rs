//! Pinned sockets for Tokio (feature `tokio`): the same guarantees as the `std` types in
//! [`crate::net`], over `tokio::net`.
//!
//! Each socket is created and pinned with `socket2`, switched to non-blocking mode, and only
//! then handed to Tokio, so no unpinned socket ever reaches the runtime. Constructors must
//! run inside a Tokio runtime (they register the socket with its reactor).

use std::io;
use std::net::SocketAddr;
use std::ops::{Deref, DerefMut};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd};
use std::pin::Pin;
use std::task::{Context, Poll};

use ::tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use ::tokio::net::{TcpListener, TcpSocket, TcpStream, UdpSocket};
use socket2::{Socket, Type};

use super::{bind_checked, new_socket, pinned_address};
use crate::error::{Op, PinError};
use crate::interface::Interface;
use crate::pin::{self, PinState};

fn nonblocking(interface: &Interface, socket: &Socket) -> Result<(), PinError> {
    socket
        .set_nonblocking(true)
        .map_err(|err| PinError::from_io(Op::Configure, interface, None, err))
}

/// A Tokio TCP connection pinned to one interface. Derefs to [`tokio::net::TcpStream`]
/// and implements [`AsyncRead`] and [`AsyncWrite`].
#[derive(Debug)]
pub struct PinnedTcpStream {
    inner: TcpStream,
    interface: Interface,
}

impl PinnedTcpStream {
    /// Connects to `addr` through `interface`. Wrap it in `tokio::time::timeout` to bound
    /// the wait.
    pub async fn connect(interface: &Interface, addr: SocketAddr) -> Result<Self, PinError> {
        let addr = pinned_address(interface, addr)?;
        let socket = new_socket(interface, &addr, Type::STREAM)?;
        nonblocking(interface, &socket)?;
        let socket = TcpSocket::from_std_stream(socket.into());
        let stream = socket
            .connect(addr)
            .await
            .map_err(|err| PinError::from_io(Op::Connect, interface, Some(addr), err))?;
        Ok(PinnedTcpStream {
            inner: stream,
            interface: interface.clone(),
        })
    }

    /// The interface the stream is pinned to.
    pub fn interface(&self) -> &Interface {
        &self.interface
    }

    /// Whether the stream is still bound to the same interface; see [`crate::pin::verify`].
    pub fn verify(&self) -> Result<PinState, PinError> {
        pin::verify(&self.inner, &self.interface)
    }

    /// Explains a failed read or write on this stream as what happened on the wire.
    pub fn explain(&self, op: Op, err: io::Error) -> PinError {
        PinError::from_io(op, &self.interface, self.inner.peer_addr().ok(), err)
    }

    /// The Tokio stream; it stays bound to the interface.
    pub fn into_inner(self) -> TcpStream {
        self.inner
    }
}

impl Deref for PinnedTcpStream {
    type Target = TcpStream;
    fn deref(&self) -> &TcpStream {
        &self.inner
    }
}

impl DerefMut for PinnedTcpStream {
    fn deref_mut(&mut self) -> &mut TcpStream {
        &mut self.inner
    }
}

impl AsyncRead for PinnedTcpStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for PinnedTcpStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

impl AsFd for PinnedTcpStream {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.inner.as_fd()
    }
}

impl AsRawFd for PinnedTcpStream {
    fn as_raw_fd(&self) -> RawFd {
        self.inner.as_raw_fd()
    }
}

/// A Tokio TCP listener pinned to one interface; accepted connections are checked pinned.
/// Derefs to [`tokio::net::TcpListener`].
#[derive(Debug)]
pub struct PinnedTcpListener {
    inner: TcpListener,
    interface: Interface,
}

impl PinnedTcpListener {
    /// Binds to `addr` and listens, pinned to `interface`. Sets `SO_REUSEADDR`.
    pub async fn bind(interface: &Interface, addr: SocketAddr) -> Result<Self, PinError> {
        let addr = pinned_address(interface, addr)?;
        let socket = new_socket(interface, &addr, Type::STREAM)?;
        socket
            .set_reuse_address(true)
            .map_err(|err| PinError::from_io(Op::Configure, interface, None, err))?;
        bind_checked(interface, &socket, addr)?;
        socket
            .listen(super::PinnedTcpListener::BACKLOG)
            .map_err(|err| PinError::from_io(Op::Listen, interface, None, err))?;
        nonblocking(interface, &socket)?;
        let inner = TcpListener::from_std(socket.into())
            .map_err(|err| PinError::from_io(Op::Configure, interface, None, err))?;
        Ok(PinnedTcpListener {
            inner,
            interface: interface.clone(),
        })
    }

    /// Accepts a connection and checks that its socket is bound to the interface.
    pub async fn accept(&self) -> Result<(PinnedTcpStream, SocketAddr), PinError> {
        let (stream, peer) = self
            .inner
            .accept()
            .await
            .map_err(|err| PinError::from_io(Op::Accept, &self.interface, None, err))?;
        pin::check(&stream, &self.interface, Op::Accept)?;
        Ok((
            PinnedTcpStream {
                inner: stream,
                interface: self.interface.clone(),
            },
            peer,
        ))
    }

    /// The interface the listener is pinned to.
    pub fn interface(&self) -> &Interface {
        &self.interface
    }

    /// Whether the listener is still bound to the same interface.
    pub fn verify(&self) -> Result<PinState, PinError> {
        pin::verify(&self.inner, &self.interface)
    }

    /// The Tokio listener; it stays bound, and so do the sockets it accepts.
    pub fn into_inner(self) -> TcpListener {
        self.inner
    }
}

impl Deref for PinnedTcpListener {
    type Target = TcpListener;
    fn deref(&self) -> &TcpListener {
        &self.inner
    }
}

impl AsFd for PinnedTcpListener {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.inner.as_fd()
    }
}

/// A Tokio UDP socket pinned to one interface. Like its `std` sibling it does not deref to
/// the inner socket (whose `send_to` would pass a caller's scope id); use its checked methods.
#[derive(Debug)]
pub struct PinnedUdpSocket {
    inner: UdpSocket,
    interface: Interface,
}

impl PinnedUdpSocket {
    /// Binds to `addr` pinned to `interface`, then reads the binding back.
    pub async fn bind(interface: &Interface, addr: SocketAddr) -> Result<Self, PinError> {
        let addr = pinned_address(interface, addr)?;
        let socket = new_socket(interface, &addr, Type::DGRAM)?;
        bind_checked(interface, &socket, addr)?;
        nonblocking(interface, &socket)?;
        let inner = UdpSocket::from_std(socket.into())
            .map_err(|err| PinError::from_io(Op::Configure, interface, None, err))?;
        Ok(PinnedUdpSocket {
            inner,
            interface: interface.clone(),
        })
    }

    /// Sets the default destination; the kernel then reports ICMP errors on this socket.
    pub async fn connect(&self, addr: SocketAddr) -> Result<(), PinError> {
        let addr = pinned_address(&self.interface, addr)?;
        self.inner
            .connect(addr)
            .await
            .map_err(|err| PinError::from_io(Op::Connect, &self.interface, Some(addr), err))?;
        pin::check(&self.inner, &self.interface, Op::Connect)
    }

    /// Sends one datagram to `addr` through the pinned interface.
    pub async fn send_to(&self, buf: &[u8], addr: SocketAddr) -> Result<usize, PinError> {
        let addr = pinned_address(&self.interface, addr)?;
        self.inner
            .send_to(buf, addr)
            .await
            .map_err(|err| PinError::from_io(Op::Send, &self.interface, Some(addr), err))
    }

    /// Sends one datagram to the connected peer.
    pub async fn send(&self, buf: &[u8]) -> Result<usize, PinError> {
        self.inner
            .send(buf)
            .await
            .map_err(|err| self.explain(Op::Send, err))
    }

    /// Receives one datagram and its sender.
    pub async fn recv_from(&self, buf: &mut [u8]) -> Result<(usize, SocketAddr), PinError> {
        self.inner
            .recv_from(buf)
            .await
            .map_err(|err| self.explain(Op::Recv, err))
    }

    /// Receives one datagram from the connected peer.
    pub async fn recv(&self, buf: &mut [u8]) -> Result<usize, PinError> {
        self.inner
            .recv(buf)
            .await
            .map_err(|err| self.explain(Op::Recv, err))
    }

    /// Explains a failed call on this socket as what happened on the wire.
    pub fn explain(&self, op: Op, err: io::Error) -> PinError {
        PinError::from_io(op, &self.interface, self.inner.peer_addr().ok(), err)
    }

    /// The local address.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.inner.local_addr()
    }

    /// The connected peer's address.
    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        self.inner.peer_addr()
    }

    /// The interface the socket is pinned to.
    pub fn interface(&self) -> &Interface {
        &self.interface
    }

    /// Whether the socket is still bound to the same interface; see [`crate::pin::verify`].
    pub fn verify(&self) -> Result<PinState, PinError> {
        pin::verify(&self.inner, &self.interface)
    }

    /// The Tokio socket. Its `send_to`/`connect` do not check scope ids.
    pub fn as_tokio(&self) -> &UdpSocket {
        &self.inner
    }

    /// The Tokio socket, with the same caveat as [`PinnedUdpSocket::as_tokio`].
    pub fn into_inner(self) -> UdpSocket {
        self.inner
    }
}

impl AsFd for PinnedUdpSocket {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.inner.as_fd()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ::tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[::tokio::test]
    async fn loopback_tcp_and_udp() {
        let lo = Interface::loopback().unwrap();
        let any: SocketAddr = "127.0.0.1:0".parse().unwrap();
        let listener = PinnedTcpListener::bind(&lo, any).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (client, accepted) =
            ::tokio::join!(PinnedTcpStream::connect(&lo, addr), listener.accept());
        let (mut client, (mut server, _)) = (client.unwrap(), accepted.unwrap());
        client.write_all(b"ping").await.unwrap();
        let mut buf = [0u8; 4];
        server.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"ping");
        assert!(client.verify().unwrap().is_intact());
        assert!(server.verify().unwrap().is_intact());

        let a = PinnedUdpSocket::bind(&lo, any).await.unwrap();
        let b = PinnedUdpSocket::bind(&lo, any).await.unwrap();
        a.send_to(b"hi", b.local_addr().unwrap()).await.unwrap();
        let (n, from) = b.recv_from(&mut buf).await.unwrap();
        assert_eq!((&buf[..n], from), (&b"hi"[..], a.local_addr().unwrap()));
        assert!(b.verify().unwrap().is_intact());
    }
}
