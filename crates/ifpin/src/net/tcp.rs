//! Pinned TCP: [`PinnedTcpStream`] and [`PinnedTcpListener`].

use std::io::{self, IoSlice, IoSliceMut, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::ops::Deref;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd};
use std::time::Duration;

use socket2::Type;

use super::{bind_checked, new_socket, pinned_address};
use crate::error::{Op, PinError};
use crate::interface::Interface;
use crate::pin::{self, PinState};

/// A TCP connection whose socket is bound to one interface: its packets leave and arrive
/// only through that interface.
///
/// Derefs to [`std::net::TcpStream`] and implements [`Read`] and [`Write`].
///
/// ```
/// use std::io::{Read, Write};
/// use ifpin::{Interface, PinnedTcpListener, PinnedTcpStream};
///
/// let lo = Interface::resolve("lo")?;
/// let listener = PinnedTcpListener::bind(&lo, "127.0.0.1:0".parse()?)?;
/// let mut client = PinnedTcpStream::connect(&lo, listener.local_addr()?)?;
/// let (mut server, _peer) = listener.accept()?; // checked to be pinned too
/// client.write_all(b"hello")?;
/// let mut got = [0u8; 5];
/// server.read_exact(&mut got)?;
/// assert_eq!(&got, b"hello");
/// assert!(client.verify()?.is_intact());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct PinnedTcpStream {
    inner: TcpStream,
    interface: Interface,
}

impl PinnedTcpStream {
    /// Connects to `addr` through `interface`, waiting as long as the kernel does.
    pub fn connect(interface: &Interface, addr: SocketAddr) -> Result<Self, PinError> {
        Self::connect_inner(interface, None, addr, None)
    }

    /// Connects to `addr` through `interface`, giving up after `timeout`.
    pub fn connect_timeout(
        interface: &Interface,
        addr: SocketAddr,
        timeout: Duration,
    ) -> Result<Self, PinError> {
        Self::connect_inner(interface, None, addr, Some(timeout))
    }

    /// Binds to `local` (address and port; checked like any address here), then connects to
    /// `remote` through `interface`.
    ///
    /// Binding to an address chooses the source address only; the pin chooses the interface.
    pub fn connect_from(
        interface: &Interface,
        local: SocketAddr,
        remote: SocketAddr,
        timeout: Option<Duration>,
    ) -> Result<Self, PinError> {
        Self::connect_inner(interface, Some(local), remote, timeout)
    }

    fn connect_inner(
        interface: &Interface,
        local: Option<SocketAddr>,
        remote: SocketAddr,
        timeout: Option<Duration>,
    ) -> Result<Self, PinError> {
        let remote = pinned_address(interface, remote)?;
        let local = local.map(|l| pinned_address(interface, l)).transpose()?;
        let socket = new_socket(interface, &remote, Type::STREAM)?;
        if let Some(local) = local {
            bind_checked(interface, &socket, local)?;
        }
        let connected = match timeout {
            Some(timeout) => socket.connect_timeout(&remote.into(), timeout),
            None => socket.connect(&remote.into()),
        };
        connected.map_err(|err| {
            PinError::from_io(Op::Connect, interface, Some(remote), err)
                .with_timeout(timeout.unwrap_or_default())
        })?;
        Ok(PinnedTcpStream {
            inner: socket.into(),
            interface: interface.clone(),
        })
    }

    /// Wraps a stream that is already pinned to `interface`, checking that it is.
    pub fn from_std(stream: TcpStream, interface: &Interface) -> Result<Self, PinError> {
        pin::check(&stream, interface, Op::Verify)?;
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

    /// The `std` stream.
    pub fn as_std(&self) -> &TcpStream {
        &self.inner
    }

    /// The `std` stream; it stays bound to the interface.
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

impl Read for PinnedTcpStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.inner.read(buf)
    }
    fn read_vectored(&mut self, bufs: &mut [IoSliceMut<'_>]) -> io::Result<usize> {
        self.inner.read_vectored(bufs)
    }
}

impl Read for &PinnedTcpStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        (&self.inner).read(buf)
    }
}

impl Write for PinnedTcpStream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.inner.write(buf)
    }
    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        self.inner.write_vectored(bufs)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

impl Write for &PinnedTcpStream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        (&self.inner).write(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        (&self.inner).flush()
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

/// A TCP listener bound to one interface: connections arriving through any other interface
/// are refused by the kernel (the client sees `ECONNREFUSED`), whatever address they are for.
///
/// Every accepted connection is checked to be pinned too. Derefs to
/// [`std::net::TcpListener`].
#[derive(Debug)]
pub struct PinnedTcpListener {
    inner: TcpListener,
    interface: Interface,
}

impl PinnedTcpListener {
    /// The backlog passed to `listen(2)`.
    pub const BACKLOG: i32 = 1024;

    /// Binds to `addr` (use the unspecified address for "any address on this interface")
    /// and listens, pinned to `interface`. Sets `SO_REUSEADDR`.
    pub fn bind(interface: &Interface, addr: SocketAddr) -> Result<Self, PinError> {
        let addr = pinned_address(interface, addr)?;
        let socket = new_socket(interface, &addr, Type::STREAM)?;
        socket
            .set_reuse_address(true)
            .map_err(|err| PinError::from_io(Op::Configure, interface, None, err))?;
        bind_checked(interface, &socket, addr)?;
        socket
            .listen(Self::BACKLOG)
            .map_err(|err| PinError::from_io(Op::Listen, interface, None, err))?;
        Ok(PinnedTcpListener {
            inner: socket.into(),
            interface: interface.clone(),
        })
    }

    /// Accepts a connection and checks that its socket is bound to the interface.
    pub fn accept(&self) -> Result<(PinnedTcpStream, SocketAddr), PinError> {
        let (stream, peer) = self
            .inner
            .accept()
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

    /// An endless iterator over [`PinnedTcpListener::accept`].
    pub fn incoming(&self) -> impl Iterator<Item = Result<PinnedTcpStream, PinError>> + '_ {
        std::iter::repeat_with(|| self.accept().map(|(stream, _)| stream))
    }

    /// The interface the listener is pinned to.
    pub fn interface(&self) -> &Interface {
        &self.interface
    }

    /// Whether the listener is still bound to the same interface.
    pub fn verify(&self) -> Result<PinState, PinError> {
        pin::verify(&self.inner, &self.interface)
    }

    /// The `std` listener.
    pub fn as_std(&self) -> &TcpListener {
        &self.inner
    }

    /// The `std` listener; it stays bound, and so do the sockets it accepts.
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

impl AsRawFd for PinnedTcpListener {
    fn as_raw_fd(&self) -> RawFd {
        self.inner.as_raw_fd()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_round_trip_is_pinned_both_ends() {
        let lo = Interface::loopback().unwrap();
        let listener = PinnedTcpListener::bind(&lo, "127.0.0.1:0".parse().unwrap()).unwrap();
        let addr = listener.local_addr().unwrap();
        let mut client = PinnedTcpStream::connect(&lo, addr).unwrap();
        let (mut server, peer) = listener.accept().unwrap();
        assert_eq!(peer, client.local_addr().unwrap());
        client.write_all(b"ping").unwrap();
        let mut buf = [0u8; 4];
        server.read_exact(&mut buf).unwrap();
        assert_eq!(&buf, b"ping");
        assert!(client.verify().unwrap().is_intact());
        assert!(server.verify().unwrap().is_intact());
        assert!(listener.verify().unwrap().is_intact());
    }

    #[test]
    fn refused_is_reported_as_refused() {
        let lo = Interface::loopback().unwrap();
        // A port nothing listens on: bind, note the port, close.
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let err = PinnedTcpStream::connect_timeout(
            &lo,
            SocketAddr::from(([127, 0, 0, 1], port)),
            Duration::from_secs(2),
        )
        .unwrap_err();
        assert!(matches!(err, PinError::Refused { .. }), "{err:?}");
    }

    #[test]
    fn connect_from_binds_the_source_and_checks_scopes() {
        let lo = Interface::loopback().unwrap();
        let listener = PinnedTcpListener::bind(&lo, "127.0.0.1:0".parse().unwrap()).unwrap();
        let remote = listener.local_addr().unwrap();
        let local: SocketAddr = "127.0.0.2:0".parse().unwrap();
        let stream = PinnedTcpStream::connect_from(&lo, local, remote, None).unwrap();
        assert_eq!(stream.local_addr().unwrap().ip(), local.ip());
        let (_, peer) = listener.accept().unwrap();
        assert_eq!(peer.ip(), local.ip());
        // A local address scoped to another interface never reaches bind().
        let foreign = SocketAddr::V6(std::net::SocketAddrV6::new(
            "fe80::1".parse().unwrap(),
            0,
            0,
            lo.index().get() + 1000,
        ));
        let err = PinnedTcpStream::connect_from(&lo, foreign, remote, None).unwrap_err();
        assert!(matches!(err, PinError::ForeignScope { .. }), "{err:?}");
    }

    #[test]
    fn from_std_refuses_an_unpinned_stream() {
        let lo = Interface::loopback().unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let stream = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let err = PinnedTcpStream::from_std(stream, &lo).unwrap_err();
        assert!(
            matches!(err, PinError::BindingChanged { now: None, .. }),
            "{err:?}"
        );
    }
}
