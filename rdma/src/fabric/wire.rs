//! Frames the fabric sends over its Unix-domain streams.
//!
//! A connection between two queue pairs is two streams, one per direction. On each stream the
//! requester writes [`RequestHeader`] + payload per work request, and the responder answers each
//! request, in order, with one [`Response`] byte. The first bytes of a stream are the
//! [`ConnectHeader`] (answered by one [`ConnectReply`] byte).

use crate::verbs::{QpAddress, WcStatus};
use std::io::{self, Read, Write};

/// Opens every fabric stream.
pub const CONNECT_MAGIC: [u8; 4] = *b"SPFC";
/// Largest message the fabric carries (RC's limit is 2^31; smaller keeps a corrupt length from
/// looking plausible).
pub const MAX_MESSAGE: u32 = 1 << 30;

/// First bytes of a stream: which queue pair it is for and who is calling.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectHeader {
    /// Queue pair number at the listening device.
    pub target_qpn: u32,
    /// The caller's queue pair.
    pub source: QpAddress,
}

impl ConnectHeader {
    /// Encoded length.
    pub const LEN: usize = 4 + 4 + QpAddress::LEN;

    /// Encodes the header.
    pub fn encode(&self) -> [u8; Self::LEN] {
        let mut out = [0u8; Self::LEN];
        out[..4].copy_from_slice(&CONNECT_MAGIC);
        out[4..8].copy_from_slice(&self.target_qpn.to_be_bytes());
        out[8..].copy_from_slice(&self.source.to_bytes());
        out
    }

    /// Reads one header; a wrong magic is `InvalidData`.
    pub fn read_from(r: &mut impl Read) -> io::Result<ConnectHeader> {
        let mut b = [0u8; Self::LEN];
        r.read_exact(&mut b)?;
        if b[..4] != CONNECT_MAGIC {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "not a fabric connection",
            ));
        }
        let source = QpAddress::from_bytes(&b[8..])
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "bad source address"))?;
        Ok(ConnectHeader {
            target_qpn: u32::from_be_bytes([b[4], b[5], b[6], b[7]]),
            source,
        })
    }
}

/// The listener's answer to a [`ConnectHeader`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum ConnectReply {
    /// Attached to the queue pair.
    Accepted = 0,
    /// No queue pair with that number.
    NoSuchQp = 1,
    /// The queue pair already has a peer, or is in error.
    Refused = 2,
}

impl ConnectReply {
    /// From the wire byte; unknown values are [`ConnectReply::Refused`].
    pub fn from_byte(b: u8) -> ConnectReply {
        match b {
            0 => ConnectReply::Accepted,
            1 => ConnectReply::NoSuchQp,
            _ => ConnectReply::Refused,
        }
    }
}

/// Operation codes of [`RequestHeader::op`].
pub mod op {
    /// Send.
    pub const SEND: u8 = 1;
    /// Send with immediate.
    pub const SEND_IMM: u8 = 2;
    /// RDMA write.
    pub const WRITE: u8 = 3;
    /// RDMA write with immediate.
    pub const WRITE_IMM: u8 = 4;
}

/// Flag bit of [`RequestHeader::flags`]: the request is solicited.
pub const FLAG_SOLICITED: u8 = 1;

/// One work request on the wire (payload of `len` bytes follows).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestHeader {
    /// One of [`op`].
    pub op: u8,
    /// [`FLAG_SOLICITED`] or 0.
    pub flags: u8,
    /// Immediate (with `SEND_IMM` / `WRITE_IMM`).
    pub imm: u32,
    /// Target address (writes).
    pub remote_addr: u64,
    /// Target region's remote key (writes).
    pub rkey: u32,
    /// Payload length.
    pub len: u32,
}

impl RequestHeader {
    /// Encoded length.
    pub const LEN: usize = 24;

    /// Encodes the header.
    pub fn encode(&self) -> [u8; Self::LEN] {
        let mut b = [0u8; Self::LEN];
        b[0] = self.op;
        b[1] = self.flags;
        b[4..8].copy_from_slice(&self.imm.to_be_bytes());
        b[8..16].copy_from_slice(&self.remote_addr.to_be_bytes());
        b[16..20].copy_from_slice(&self.rkey.to_be_bytes());
        b[20..24].copy_from_slice(&self.len.to_be_bytes());
        b
    }

    /// Reads one header. `Ok(None)` on a clean end of stream before its first byte; an unknown
    /// op or a length above [`MAX_MESSAGE`] is `InvalidData`.
    pub fn read_from(r: &mut impl Read) -> io::Result<Option<RequestHeader>> {
        let mut b = [0u8; Self::LEN];
        let mut got = 0;
        while got < Self::LEN {
            match r.read(&mut b[got..]) {
                Ok(0) if got == 0 => return Ok(None),
                Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
                Ok(n) => got += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        let h = RequestHeader {
            op: b[0],
            flags: b[1],
            imm: u32::from_be_bytes([b[4], b[5], b[6], b[7]]),
            remote_addr: u64::from_be_bytes([b[8], b[9], b[10], b[11], b[12], b[13], b[14], b[15]]),
            rkey: u32::from_be_bytes([b[16], b[17], b[18], b[19]]),
            len: u32::from_be_bytes([b[20], b[21], b[22], b[23]]),
        };
        if !(op::SEND..=op::WRITE_IMM).contains(&h.op) || h.len > MAX_MESSAGE {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("bad fabric request op={} len={}", h.op, h.len),
            ));
        }
        Ok(Some(h))
    }

    /// Writes the header and the payload (gathered from `parts`).
    pub fn write_with(&self, w: &mut impl Write, parts: &[u8]) -> io::Result<()> {
        w.write_all(&self.encode())?;
        w.write_all(parts)
    }
}

/// The responder's verdict on one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Response {
    /// Done.
    Ack = 0,
    /// No receive posted through every RNR retry.
    RnrNak = 1,
    /// Bad remote key, range or access.
    RemoteAccess = 2,
    /// Longer than the posted receive, or otherwise unacceptable.
    InvalidRequest = 3,
}

impl Response {
    /// From the wire byte; unknown values are [`Response::InvalidRequest`].
    pub fn from_byte(b: u8) -> Response {
        match b {
            0 => Response::Ack,
            1 => Response::RnrNak,
            2 => Response::RemoteAccess,
            _ => Response::InvalidRequest,
        }
    }

    /// The requester's completion status for this verdict.
    pub fn status(self) -> WcStatus {
        match self {
            Response::Ack => WcStatus::Success,
            Response::RnrNak => WcStatus::RnrRetryExceeded,
            Response::RemoteAccess => WcStatus::RemoteAccessError,
            Response::InvalidRequest => WcStatus::RemoteInvalidRequest,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::verbs::PortAddress;

    #[test]
    fn headers_roundtrip_and_reject_garbage() {
        let h = RequestHeader {
            op: op::WRITE_IMM,
            flags: FLAG_SOLICITED,
            imm: 7,
            remote_addr: 0x1122_3344_5566_7788,
            rkey: 9,
            len: 3,
        };
        let mut buf = Vec::new();
        h.write_with(&mut buf, b"abc").unwrap();
        let mut r = &buf[..];
        assert_eq!(RequestHeader::read_from(&mut r).unwrap(), Some(h));
        assert_eq!(r, b"abc");
        assert_eq!(RequestHeader::read_from(&mut &[][..]).unwrap(), None);
        assert!(RequestHeader::read_from(&mut &buf[..5]).is_err());
        let mut bad = buf.clone();
        bad[0] = 99;
        assert!(RequestHeader::read_from(&mut &bad[..]).is_err());
        let c = ConnectHeader {
            target_qpn: 5,
            source: QpAddress {
                port: PortAddress::default(),
                qp_num: 6,
            },
        };
        assert_eq!(ConnectHeader::read_from(&mut &c.encode()[..]).unwrap(), c);
        assert!(ConnectHeader::read_from(&mut &[0u8; ConnectHeader::LEN][..]).is_err());
        assert_eq!(Response::from_byte(200), Response::InvalidRequest);
    }
}
