//! Sends nf_tables batches over `NETLINK_NETFILTER` and reads the kernel's answers.

use std::io;
use std::os::fd::AsFd;
use std::time::{Duration, Instant};

use netlink_sys::{Socket, SocketAddr, protocols::NETLINK_NETFILTER};
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};

use super::GuardError;
use super::nft::{Batch, NFNL_SUBSYS_NFTABLES};
use super::nlmsg::{NLMSG_DONE, NLMSG_ERROR, messages};

/// How long to wait for the kernel's answers to a batch.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(5);

/// An nf_tables netlink socket.
pub(crate) struct Nft {
    socket: Socket,
    seq: u32,
}

impl Nft {
    pub(crate) fn open() -> Result<Nft, GuardError> {
        let err = |call: &'static str| move |source| GuardError::Netlink { call, source };
        let mut socket =
            Socket::new(NETLINK_NETFILTER).map_err(err("socket(NETLINK_NETFILTER)"))?;
        socket.bind(&SocketAddr::new(0, 0)).map_err(err("bind"))?;
        // Error messages from the kernel (which attribute was wrong) when it has them.
        let _ = socket.set_ext_ack(true);
        // A batch is one datagram, refused (EMSGSIZE) beyond the send buffer: room for a
        // policy of tens of thousands of prefixes, and for their acknowledgements.
        let _ = nix::sys::socket::setsockopt(
            &socket,
            nix::sys::socket::sockopt::SndBufForce,
            &(16usize << 20),
        );
        let _ = nix::sys::socket::setsockopt(
            &socket,
            nix::sys::socket::sockopt::RcvBufForce,
            &(4usize << 20),
        );
        let seq = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_secs() as u32);
        Ok(Nft { socket, seq })
    }

    pub(crate) fn next_seq(&mut self, count: usize) -> u32 {
        let first = self.seq;
        self.seq = self.seq.wrapping_add(count as u32 + 8);
        first
    }

    /// Sends a batch and waits for an acknowledgement of every message that asked for one;
    /// the first error names the message it answered.
    pub(crate) fn transact(&mut self, batch: &Batch) -> Result<(), GuardError> {
        self.socket
            .send(batch.bytes(), 0)
            .map_err(|source| GuardError::Netlink {
                call: "send (nf_tables batch)",
                source,
            })?;
        let mut pending: std::collections::BTreeSet<u32> = batch.acked().collect();
        let deadline = Instant::now() + ANSWER_TIMEOUT;
        let mut buf = Vec::with_capacity(64 * 1024);
        let mut first_error: Option<(u32, i32)> = None;
        let mut deadline = deadline;
        while !pending.is_empty() {
            if let Err(err) = self.wait(deadline) {
                if first_error.is_some() {
                    break; // after a failure the kernel need not answer every message
                }
                return Err(err);
            }
            buf.clear();
            self.socket
                .recv(&mut buf, 0)
                .map_err(|source| GuardError::Netlink {
                    call: "recv (nf_tables answer)",
                    source,
                })?;
            for (seq, errno) in messages(&buf).filter_map(|m| Some((m.seq, m.errno()?))) {
                pending.remove(&seq);
                if errno != 0 && first_error.is_none() {
                    first_error = Some((seq, errno));
                    deadline = deadline.min(Instant::now() + Duration::from_millis(200));
                }
            }
        }
        match first_error {
            None => Ok(()),
            Some((seq, errno)) => {
                let what = batch
                    .what
                    .iter()
                    .find(|(s, _)| *s == seq)
                    .map_or_else(|| "the nf_tables batch".to_owned(), |(_, w)| w.clone());
                Err(GuardError::Kernel {
                    what,
                    source: io::Error::from_raw_os_error(errno),
                })
            }
        }
    }

    /// Whether the table exists (a `GETTABLE` answered by the table, or `ENOENT`).
    pub(crate) fn table_exists(
        &mut self,
        family: super::nft::TableFamily,
        name: &str,
    ) -> Result<bool, GuardError> {
        let seq = self.next_seq(1);
        let request = super::nft::get_table(family, name, seq);
        self.socket
            .send(request.bytes(), 0)
            .map_err(|source| GuardError::Netlink {
                call: "send (get table)",
                source,
            })?;
        let deadline = Instant::now() + ANSWER_TIMEOUT;
        let mut buf = Vec::with_capacity(64 * 1024);
        let mut found = false;
        loop {
            self.wait(deadline)?;
            buf.clear();
            self.socket
                .recv(&mut buf, 0)
                .map_err(|source| GuardError::Netlink {
                    call: "recv (get table)",
                    source,
                })?;
            for message in messages(&buf) {
                let ty = message.ty;
                if ty == (NFNL_SUBSYS_NFTABLES << 8) | super::nft::NFT_MSG_NEWTABLE {
                    found = true;
                } else if ty == NLMSG_ERROR {
                    return match message.errno().unwrap_or(0) {
                        0 => Ok(found),
                        e if e == libc::ENOENT => Ok(false),
                        e => Err(GuardError::Kernel {
                            what: format!("get table {} {name}", family.name()),
                            source: io::Error::from_raw_os_error(e),
                        }),
                    };
                } else if ty == NLMSG_DONE {
                    return Ok(found);
                }
            }
        }
    }

    /// The log prefix and packet count of every log-and-count rule of one table (empty when
    /// the table does not exist).
    pub(crate) fn logged_counts(
        &mut self,
        family: super::nft::TableFamily,
        name: &str,
    ) -> Result<Vec<(String, u64)>, GuardError> {
        let seq = self.next_seq(1);
        let request = super::nft::dump_rules(family, name, seq);
        self.socket
            .send(request.bytes(), 0)
            .map_err(|source| GuardError::Netlink {
                call: "send (list rules)",
                source,
            })?;
        let deadline = Instant::now() + ANSWER_TIMEOUT;
        let mut buf = Vec::with_capacity(256 * 1024);
        let mut out = Vec::new();
        loop {
            self.wait(deadline)?;
            buf.clear();
            self.socket
                .recv(&mut buf, 0)
                .map_err(|source| GuardError::Netlink {
                    call: "recv (list rules)",
                    source,
                })?;
            for message in messages(&buf) {
                if message.ty == NLMSG_DONE {
                    return Ok(out);
                }
                if let Some(errno) = message.errno() {
                    return match errno {
                        0 => Ok(out),
                        e if e == libc::ENOENT => Ok(Vec::new()),
                        e => Err(GuardError::Kernel {
                            what: format!("list the rules of table {} {name}", family.name()),
                            source: io::Error::from_raw_os_error(e),
                        }),
                    };
                }
                if message.ty == (NFNL_SUBSYS_NFTABLES << 8) | super::nft::NFT_MSG_NEWRULE {
                    if let Some(count) = message
                        .nfnetlink_attributes()
                        .filter(|a| !a.is_empty())
                        .and_then(super::nft::logged_count)
                    {
                        out.push(count);
                    }
                }
            }
        }
    }

    fn wait(&self, deadline: Instant) -> Result<(), GuardError> {
        let left = deadline.saturating_duration_since(Instant::now());
        let mut fds = [PollFd::new(self.socket.as_fd(), PollFlags::POLLIN)];
        let ms =
            PollTimeout::try_from(left.as_millis().min(60_000) as i32).unwrap_or(PollTimeout::MAX);
        match poll(&mut fds, ms) {
            Ok(0) => Err(GuardError::Netlink {
                call: "waiting for the kernel's answer",
                source: io::Error::from(io::ErrorKind::TimedOut),
            }),
            Ok(_) => Ok(()),
            Err(nix::errno::Errno::EINTR) => Ok(()),
            Err(e) => Err(GuardError::Netlink {
                call: "poll",
                source: e.into(),
            }),
        }
    }
}
