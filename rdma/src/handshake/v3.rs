//! The v3 hello: `"RDM3"`, `pb_size` (`u32` big-endian, 1..=8192), then `pb_size` bytes of the
//! protobuf message `brpc.rdma.RdmaHello` (proto2):
//!
//! ```text
//! message RdmaHello {
//!     required uint32 block_size = 1;
//!     required uint32 sq_size    = 2;
//!     required uint32 rq_size    = 3;
//!     required uint32 lid        = 4;
//!     required bytes  gid        = 5;   // exactly 16 bytes
//!     required uint32 qp_num     = 6;
//!     optional RdmaEce ece       = 7;
//! }
//! message RdmaEce { required uint32 vendor_id = 1; required uint32 options = 2;
//!                   required uint32 comp_mask = 3; }
//! ```
//!
//! The messages are declared with prost's derive (below) rather than generated from a `.proto`:
//! they are two small fixed messages, and declaring each field `optional` lets the decoder tell
//! a missing `required` field (a protocol error, as protobuf's C++ parser reports it) from a
//! zero. Encoding writes every field, in field order, as proto2 does for `required` fields.

use super::{DecodedHello, Ece, Hello, HelloError, HelloVersion, HELLO_MAGIC_V3, MAGIC_LEN};
use prost::Message;

/// Length of the `pb_size` field.
pub const PB_SIZE_LEN: usize = 4;
/// Largest `pb_size` accepted.
pub const MAX_PB_SIZE: usize = 8192;
/// Length of a GID.
pub const GID_LEN: usize = 16;

/// `brpc.rdma.RdmaHello` as it travels (presence tracked per field).
#[derive(Clone, PartialEq, Message)]
pub struct RdmaHello {
    /// Field 1.
    #[prost(uint32, optional, tag = "1")]
    pub block_size: Option<u32>,
    /// Field 2.
    #[prost(uint32, optional, tag = "2")]
    pub sq_size: Option<u32>,
    /// Field 3.
    #[prost(uint32, optional, tag = "3")]
    pub rq_size: Option<u32>,
    /// Field 4.
    #[prost(uint32, optional, tag = "4")]
    pub lid: Option<u32>,
    /// Field 5: 16 raw bytes.
    #[prost(bytes = "vec", optional, tag = "5")]
    pub gid: Option<Vec<u8>>,
    /// Field 6.
    #[prost(uint32, optional, tag = "6")]
    pub qp_num: Option<u32>,
    /// Field 7.
    #[prost(message, optional, tag = "7")]
    pub ece: Option<RdmaEce>,
}

/// `brpc.rdma.RdmaEce` as it travels.
#[derive(Clone, PartialEq, Message)]
pub struct RdmaEce {
    /// Field 1.
    #[prost(uint32, optional, tag = "1")]
    pub vendor_id: Option<u32>,
    /// Field 2.
    #[prost(uint32, optional, tag = "2")]
    pub options: Option<u32>,
    /// Field 3.
    #[prost(uint32, optional, tag = "3")]
    pub comp_mask: Option<u32>,
}

impl From<&Hello> for RdmaHello {
    fn from(h: &Hello) -> RdmaHello {
        RdmaHello {
            block_size: Some(h.block_size),
            sq_size: Some(u32::from(h.sq_size)),
            rq_size: Some(u32::from(h.rq_size)),
            lid: Some(u32::from(h.lid)),
            gid: Some(h.gid.to_vec()),
            qp_num: Some(h.qp_num),
            ece: h.ece.map(|e| RdmaEce {
                vendor_id: Some(e.vendor_id),
                options: Some(e.options),
                comp_mask: Some(e.comp_mask),
            }),
        }
    }
}

/// Encodes `hello`: magic, `pb_size`, protobuf. (At most ~50 bytes: always under
/// [`MAX_PB_SIZE`].)
pub fn encode(hello: &Hello) -> Vec<u8> {
    let pb = RdmaHello::from(hello);
    let len = pb.encoded_len();
    let mut out = Vec::with_capacity(MAGIC_LEN + PB_SIZE_LEN + len);
    out.extend_from_slice(&HELLO_MAGIC_V3);
    // `len` is tiny (bounded by the fixed fields), so the cast cannot truncate.
    out.extend_from_slice(&(len as u32).to_be_bytes());
    pb.encode(&mut out)
        .expect("a Vec grows as needed, so encoding cannot run out of space");
    out
}

fn required<T>(v: Option<T>, field: &str) -> Result<T, HelloError> {
    v.ok_or_else(|| HelloError::Malformed(format!("RdmaHello misses required field {field}")))
}

/// Decodes a v3 hello from the front of `buf`. Not `"RDM3"` → [`HelloError::TryOthers`]; short →
/// [`HelloError::NotEnoughData`]; `pb_size` 0 or above 8192, an unparsable protobuf or a
/// missing required field → [`HelloError::Malformed`]. A parsed hello with a GID other than 16
/// bytes, a queue size or lid above 65535, or values [`Hello::is_negotiable`] refuses is
/// returned with `negotiable == false` (fall back to TCP, as brpc does).
pub fn decode(buf: &[u8]) -> Result<DecodedHello, HelloError> {
    let n = buf.len().min(MAGIC_LEN);
    if buf[..n] != HELLO_MAGIC_V3[..n] {
        return Err(HelloError::TryOthers);
    }
    let header = MAGIC_LEN + PB_SIZE_LEN;
    if buf.len() < header {
        return Err(HelloError::NotEnoughData);
    }
    let pb_size = u32::from_be_bytes([buf[4], buf[5], buf[6], buf[7]]) as usize;
    if pb_size == 0 || pb_size > MAX_PB_SIZE {
        return Err(HelloError::Malformed(format!(
            "v3 pb_size={pb_size} outside 1..={MAX_PB_SIZE}"
        )));
    }
    let total = header + pb_size;
    let Some(body) = buf.get(header..total) else {
        return Err(HelloError::NotEnoughData);
    };
    let pb = RdmaHello::decode(body)
        .map_err(|e| HelloError::Malformed(format!("RdmaHello does not parse: {e}")))?;
    let block_size = required(pb.block_size, "block_size")?;
    let sq_size = required(pb.sq_size, "sq_size")?;
    let rq_size = required(pb.rq_size, "rq_size")?;
    let lid = required(pb.lid, "lid")?;
    let gid_bytes = required(pb.gid, "gid")?;
    let qp_num = required(pb.qp_num, "qp_num")?;
    let ece = match pb.ece {
        None => None,
        Some(e) => Some(Ece {
            vendor_id: required(e.vendor_id, "ece.vendor_id")?,
            options: required(e.options, "ece.options")?,
            comp_mask: required(e.comp_mask, "ece.comp_mask")?,
        }),
    };
    let fits = |v: u32| u16::try_from(v).ok();
    let mut gid = [0u8; GID_LEN];
    let gid_ok = gid_bytes.len() == GID_LEN;
    if gid_ok {
        gid.copy_from_slice(&gid_bytes);
    }
    let (sq, rq, l) = (fits(sq_size), fits(rq_size), fits(lid));
    let hello = Hello {
        block_size,
        sq_size: sq.unwrap_or(0),
        rq_size: rq.unwrap_or(0),
        lid: l.unwrap_or(0),
        gid,
        qp_num,
        ece,
    };
    let negotiable = gid_ok && sq.is_some() && rq.is_some() && l.is_some() && hello.is_negotiable();
    Ok(DecodedHello {
        version: HelloVersion::V3,
        hello,
        negotiable,
        consumed: total,
    })
}
