//! The client's 4-byte ACK: a big-endian `u32` of flags; bit 0 ([`RDMA_OK`]) set means "use
//! RDMA from now on". Other bits are reserved: written as 0, ignored when read.

use super::HelloError;

/// Length of the ACK.
pub const ACK_LEN: usize = 4;
/// Flag bit: both sides switch to RDMA.
pub const RDMA_OK: u32 = 0x1;

/// Encodes the ACK: [`RDMA_OK`] if `rdma_ok`, else 0.
pub fn encode(rdma_ok: bool) -> [u8; ACK_LEN] {
    let flags = if rdma_ok { RDMA_OK } else { 0 };
    flags.to_be_bytes()
}

/// Decodes the ACK at the front of `buf`: `Ok(true)` when [`RDMA_OK`] is set. Fewer than
/// [`ACK_LEN`] bytes → [`HelloError::NotEnoughData`]. Whether bytes after the ACK are allowed
/// is the caller's business (brpc's server closes the connection if any arrived with it, since
/// the client must wait for the switch before sending RPCs).
pub fn decode(buf: &[u8]) -> Result<bool, HelloError> {
    match buf.get(..ACK_LEN) {
        Some(b) => Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]) & RDMA_OK != 0),
        None => Err(HelloError::NotEnoughData),
    }
}
