//! The netlink message walk both of the guard's sockets need (nf_tables answers, NFLOG
//! packets): the messages of one datagram, each with its type, sequence number and payload,
//! borrowed, nothing allocated.

/// `NLMSG_ERROR`: an error, or with errno 0 an acknowledgement.
pub(crate) const NLMSG_ERROR: u16 = libc::NLMSG_ERROR as u16;
/// `NLMSG_DONE`: the end of a dump.
pub(crate) const NLMSG_DONE: u16 = libc::NLMSG_DONE as u16;

/// The size of `struct nlmsghdr`.
const HEADER: usize = 16;

/// One message of a netlink datagram.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Message<'a> {
    /// `nlmsg_type`.
    pub ty: u16,
    /// `nlmsg_seq`.
    pub seq: u32,
    /// What follows the header, up to the message's length.
    pub payload: &'a [u8],
}

impl Message<'_> {
    /// For an `NLMSG_ERROR` that carries its code: the errno (0 for an acknowledgement).
    pub fn errno(&self) -> Option<i32> {
        let code = self.payload.get(..4)?;
        (self.ty == NLMSG_ERROR).then(|| -i32::from_ne_bytes([code[0], code[1], code[2], code[3]]))
    }

    /// The attributes of an nfnetlink message: the payload after its `nfgenmsg` (4 bytes).
    pub fn nfnetlink_attributes(&self) -> Option<&[u8]> {
        self.payload.get(4..)
    }
}

/// The messages of `bytes`, in order; the walk stops at the first malformed length.
pub(crate) fn messages(mut bytes: &[u8]) -> impl Iterator<Item = Message<'_>> {
    std::iter::from_fn(move || {
        if bytes.len() < HEADER {
            return None;
        }
        let len = u32::from_ne_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]) as usize;
        if len < HEADER || len > bytes.len() {
            return None;
        }
        let message = Message {
            ty: u16::from_ne_bytes([bytes[4], bytes[5]]),
            seq: u32::from_ne_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]),
            payload: &bytes[HEADER..len],
        };
        bytes = bytes.get((len + 3) & !3..).unwrap_or(&[]);
        Some(message)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(ty: u16, seq: u32, payload: &[u8]) -> Vec<u8> {
        let len = (HEADER + payload.len()) as u32;
        let mut out = Vec::new();
        out.extend_from_slice(&len.to_ne_bytes());
        out.extend_from_slice(&ty.to_ne_bytes());
        out.extend_from_slice(&[0, 0]);
        out.extend_from_slice(&seq.to_ne_bytes());
        out.extend_from_slice(&[0; 4]);
        out.extend_from_slice(payload);
        while out.len() % 4 != 0 {
            out.push(0);
        }
        out
    }

    #[test]
    fn walks_aligned_messages_and_stops_at_a_bad_length() {
        let mut datagram = message(0x0a06, 7, &[1, 2, 3, 4, 5]);
        datagram.extend(message(NLMSG_ERROR, 8, &(-libc::ENOENT).to_ne_bytes()));
        datagram.extend(message(NLMSG_ERROR, 9, &0i32.to_ne_bytes()));
        datagram.extend([0xff; 16]); // a length larger than what is left
        let all: Vec<_> = messages(&datagram).collect();
        assert_eq!(all.len(), 3);
        assert_eq!(
            (all[0].ty, all[0].seq, all[0].payload),
            (0x0a06, 7, &[1, 2, 3, 4, 5][..])
        );
        assert_eq!(all[0].errno(), None);
        assert_eq!(all[0].nfnetlink_attributes(), Some(&[5][..]));
        assert_eq!((all[1].seq, all[1].errno()), (8, Some(libc::ENOENT)));
        assert_eq!((all[2].seq, all[2].errno()), (9, Some(0)));
        assert_eq!(messages(&datagram[..10]).count(), 0);
    }
}
