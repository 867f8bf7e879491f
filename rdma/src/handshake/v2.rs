//! The v2 hello: `"RDMA"` + 36 bytes, all integers big-endian.
//!
//! ```text
//! offset  size  field
//!  0      4     magic "RDMA"
//!  4      2     msg_len     (whole message incl. magic: 40; up to 4096 with extension bytes)
//!  6      2     hello_ver   (2; 0 in a refusal)
//!  8      2     impl_ver    (1; 0 in a refusal)
//! 10      4     block_size
//! 14      2     sq_size
//! 16      2     rq_size
//! 18      2     lid
//! 20     16     gid         (raw bytes)
//! 36      4     qp_num
//! ```
//!
//! A `msg_len` above 40 announces extension bytes after `qp_num`; v2 readers consume and ignore
//! them, so a later version can append fields without breaking older peers.

use super::{DecodedHello, Hello, HelloError, HelloVersion, HELLO_MAGIC_V2, MAGIC_LEN};

/// Length of a v2 hello without extension bytes (magic included).
pub const HELLO_LEN: usize = 40;
/// Largest `msg_len` accepted.
pub const MAX_MSG_LEN: usize = 4096;
/// `hello_ver` of a v2 hello.
pub const HELLO_VERSION: u16 = 2;
/// `impl_ver` of a v2 hello.
pub const IMPL_VERSION: u16 = 1;

/// Encodes `hello` (its `ece` is dropped: v2 cannot carry it).
pub fn encode(hello: &Hello) -> [u8; HELLO_LEN] {
    encode_with_versions(hello, HELLO_VERSION, IMPL_VERSION)
}

/// The hello of a server that falls back to TCP: versions and every field zero.
pub fn encode_refusal() -> [u8; HELLO_LEN] {
    encode_with_versions(&Hello::refusal(), 0, 0)
}

fn encode_with_versions(hello: &Hello, hello_ver: u16, impl_ver: u16) -> [u8; HELLO_LEN] {
    let mut out = [0u8; HELLO_LEN];
    out[0..4].copy_from_slice(&HELLO_MAGIC_V2);
    out[4..6].copy_from_slice(&(HELLO_LEN as u16).to_be_bytes());
    out[6..8].copy_from_slice(&hello_ver.to_be_bytes());
    out[8..10].copy_from_slice(&impl_ver.to_be_bytes());
    out[10..14].copy_from_slice(&hello.block_size.to_be_bytes());
    out[14..16].copy_from_slice(&hello.sq_size.to_be_bytes());
    out[16..18].copy_from_slice(&hello.rq_size.to_be_bytes());
    out[18..20].copy_from_slice(&hello.lid.to_be_bytes());
    out[20..36].copy_from_slice(&hello.gid);
    out[36..40].copy_from_slice(&hello.qp_num.to_be_bytes());
    out
}

fn be16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

fn be32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

/// Decodes a v2 hello from the front of `buf`. Not `"RDMA"` → [`HelloError::TryOthers`]; short →
/// [`HelloError::NotEnoughData`]; `msg_len` outside 40..=4096 → [`HelloError::Malformed`].
pub fn decode(buf: &[u8]) -> Result<DecodedHello, HelloError> {
    let n = buf.len().min(MAGIC_LEN);
    if buf[..n] != HELLO_MAGIC_V2[..n] {
        return Err(HelloError::TryOthers);
    }
    if buf.len() < MAGIC_LEN + 2 {
        return Err(HelloError::NotEnoughData);
    }
    let msg_len = usize::from(be16(buf, 4));
    if !(HELLO_LEN..=MAX_MSG_LEN).contains(&msg_len) {
        return Err(HelloError::Malformed(format!(
            "v2 msg_len={msg_len} outside {HELLO_LEN}..={MAX_MSG_LEN}"
        )));
    }
    if buf.len() < msg_len {
        return Err(HelloError::NotEnoughData);
    }
    let hello_ver = be16(buf, 6);
    let impl_ver = be16(buf, 8);
    let mut gid = [0u8; 16];
    gid.copy_from_slice(&buf[20..36]);
    let hello = Hello {
        block_size: be32(buf, 10),
        sq_size: be16(buf, 14),
        rq_size: be16(buf, 16),
        lid: be16(buf, 18),
        gid,
        qp_num: be32(buf, 36),
        ece: None,
    };
    let negotiable =
        hello_ver == HELLO_VERSION && impl_ver == IMPL_VERSION && hello.is_negotiable();
    Ok(DecodedHello {
        version: HelloVersion::V2,
        hello,
        negotiable,
        consumed: msg_len,
    })
}
