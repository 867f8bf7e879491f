//! brpc's RDMA handshake as pure encode/decode functions (no I/O), wire-compatible with brpc.
//!
//! # The exchange (DESIGN.md §5)
//!
//! 1. The client connects over TCP and sends its hello: v2 (`"RDMA"` + 36 bytes, see [`v2`]) or,
//!    with `rdma_client_handshake_version=3`, v3 (`"RDM3"` + `pb_size` + an `RdmaHello`
//!    protobuf, see [`v3`]).
//! 2. The server recognises the magic as a protocol of the "magic at front" class and answers
//!    with a hello of the same version. A server that cannot (or will not) use RDMA answers with
//!    a hello the client cannot accept ([`Hello::refusal`]: v2 zero versions, v3 `qp_num` 0).
//! 3. The client answers with a 4-byte ACK ([`ack`]): bit 0 set means both sides use RDMA from
//!    now on; otherwise both stay on TCP, on the same connection.
//!
//! Every function here is total: any byte string yields a value or a [`HelloError`], never a
//! panic, and nothing is allocated for a declared size before those bytes have arrived.
//!
//! # Plugging into spindle-rpc
//!
//! [`parse_hello`] answers exactly what a `Protocol::parse` of the magic-at-front class must:
//! [`HelloError::TryOthers`] (not a hello, nothing consumed), [`HelloError::NotEnoughData`]
//! (a hello so far), [`HelloError::Malformed`] (magic matched, the rest is corrupt: close), or a
//! [`DecodedHello`] with the number of bytes to cut from the read buffer.

pub mod ack;
pub mod v2;
pub mod v3;

use std::fmt;

/// Length of either magic.
pub const MAGIC_LEN: usize = 4;
/// Magic of the v2 (binary) hello.
pub const HELLO_MAGIC_V2: [u8; MAGIC_LEN] = *b"RDMA";
/// Magic of the v3 (protobuf) hello.
pub const HELLO_MAGIC_V3: [u8; MAGIC_LEN] = *b"RDM3";
/// Smallest queue size a peer may announce (brpc's `MIN_QP_SIZE`).
pub const MIN_QP_SIZE: u16 = 16;
/// Smallest receive block size a peer may announce (brpc's `MIN_BLOCK_SIZE`).
pub const MIN_BLOCK_SIZE: u32 = 1024;

/// Which wire format a hello uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum HelloVersion {
    /// `"RDMA"` + 36-byte big-endian body.
    V2,
    /// `"RDM3"` + `pb_size` + `RdmaHello` protobuf.
    V3,
}

impl HelloVersion {
    /// The version as `rdma_client_handshake_version` spells it (2 or 3).
    pub fn number(self) -> i32 {
        match self {
            HelloVersion::V2 => 2,
            HelloVersion::V3 => 3,
        }
    }

    /// The version for a value of `rdma_client_handshake_version`; `None` for anything but 2 or 3.
    pub fn from_number(n: i32) -> Option<HelloVersion> {
        match n {
            2 => Some(HelloVersion::V2),
            3 => Some(HelloVersion::V3),
            _ => None,
        }
    }

    /// The magic that opens a hello of this version.
    pub fn magic(self) -> [u8; MAGIC_LEN] {
        match self {
            HelloVersion::V2 => HELLO_MAGIC_V2,
            HelloVersion::V3 => HELLO_MAGIC_V3,
        }
    }
}

/// ECE (Enhanced Connection Establishment) parameters, v3 only (mirrors `struct ibv_ece`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Ece {
    /// The NIC vendor's id.
    pub vendor_id: u32,
    /// Vendor-specific option bits.
    pub options: u32,
    /// Which fields are valid.
    pub comp_mask: u32,
}

/// What one side announces about its queue pair: enough for the peer to connect to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Hello {
    /// Size of the receive blocks this side posts (the peer never sends more in one message).
    pub block_size: u32,
    /// Send queue depth.
    pub sq_size: u16,
    /// Receive queue depth.
    pub rq_size: u16,
    /// Local identifier of the port (InfiniBand; 0 on RoCE and on the software fabric).
    pub lid: u16,
    /// The port's GID (16 raw bytes, never byte-swapped).
    pub gid: [u8; 16],
    /// Queue pair number.
    pub qp_num: u32,
    /// ECE parameters (v3 only; v2 cannot carry them and drops them).
    pub ece: Option<Ece>,
}

impl Hello {
    /// The hello of a side that falls back to TCP: every field zero, which no peer accepts.
    pub fn refusal() -> Hello {
        Hello::default()
    }

    /// Whether a peer may bring up RDMA with this hello (brpc's validity rules: block size at
    /// least [`MIN_BLOCK_SIZE`], both queues at least [`MIN_QP_SIZE`], a non-zero `qp_num`).
    /// A hello that fails this is a request to fall back to TCP, not a protocol error.
    pub fn is_negotiable(&self) -> bool {
        self.block_size >= MIN_BLOCK_SIZE
            && self.sq_size >= MIN_QP_SIZE
            && self.rq_size >= MIN_QP_SIZE
            && self.qp_num != 0
    }
}

/// A hello cut from the front of a byte stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodedHello {
    /// The wire format it came in.
    pub version: HelloVersion,
    /// The announced values.
    pub hello: Hello,
    /// False when the sender asks to fall back to TCP (or announced values brpc refuses, or a
    /// v2 hello with other versions than 2/1): the answer is then a refusal / an ACK without OK.
    pub negotiable: bool,
    /// Bytes of the stream the hello occupied (magic included); cut exactly these.
    pub consumed: usize,
}

/// Why no hello could be decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HelloError {
    /// The bytes do not start with `"RDMA"` / `"RDM3"` (or the version expected); nothing consumed.
    TryOthers,
    /// A hello so far; wait for more bytes. Nothing consumed.
    NotEnoughData,
    /// The magic matched but the rest is corrupt: close the connection.
    Malformed(String),
}

impl fmt::Display for HelloError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HelloError::TryOthers => f.write_str("not an RDMA hello"),
            HelloError::NotEnoughData => f.write_str("RDMA hello incomplete"),
            HelloError::Malformed(why) => write!(f, "malformed RDMA hello: {why}"),
        }
    }
}

impl std::error::Error for HelloError {}

/// Decodes a hello of either version from the front of `buf` (what the server's protocol parser
/// does). A prefix of a magic (`"RD"`) is [`HelloError::NotEnoughData`].
pub fn parse_hello(buf: &[u8]) -> Result<DecodedHello, HelloError> {
    let n = buf.len().min(MAGIC_LEN);
    if buf[..n] == HELLO_MAGIC_V2[..n] {
        if n < MAGIC_LEN {
            // "R", "RD", "RDM": both magics still possible.
            return Err(HelloError::NotEnoughData);
        }
        return v2::decode(buf);
    }
    if buf[..n] == HELLO_MAGIC_V3[..n] {
        return v3::decode(buf);
    }
    Err(HelloError::TryOthers)
}

/// Decodes the peer's answer when `version` was sent (what the client does): a hello of the
/// other version is [`HelloError::Malformed`] (brpc treats it as a protocol error: fall back).
pub fn parse_hello_expect(buf: &[u8], version: HelloVersion) -> Result<DecodedHello, HelloError> {
    let magic = version.magic();
    let n = buf.len().min(MAGIC_LEN);
    if buf[..n] != magic[..n] {
        return Err(HelloError::Malformed(format!(
            "expected the {:?} magic {:?} in the server's hello",
            version,
            String::from_utf8_lossy(&magic)
        )));
    }
    parse_hello(buf)
}

/// Encodes `hello` in `version`'s wire format, magic included.
pub fn encode_hello(version: HelloVersion, hello: &Hello) -> Vec<u8> {
    match version {
        HelloVersion::V2 => v2::encode(hello).to_vec(),
        HelloVersion::V3 => v3::encode(hello),
    }
}

/// Encodes the hello of a side that falls back to TCP in `version`'s wire format (v2: zero
/// `hello_ver`/`impl_ver` and fields; v3: every field zero, `qp_num` 0).
pub fn encode_refusal(version: HelloVersion) -> Vec<u8> {
    match version {
        HelloVersion::V2 => v2::encode_refusal().to_vec(),
        HelloVersion::V3 => v3::encode(&Hello::refusal()),
    }
}

#[cfg(test)]
mod tests;
