//! The baidu_std frame codec, byte-compatible with brpc C++.
//!
//! ```text
//! +------+-----------+-----------+---------+---------+------------+
//! | PRPC | body_size | meta_size | RpcMeta | payload | attachment |
//! +------+-----------+-----------+---------+---------+------------+
//!   4 B    u32 BE      u32 BE      meta_size bytes  \_ attachment_size bytes
//!          \______ body_size = meta_size + payload + attachment ______/
//! ```
//!
//! Parsing checks, in order, with the answer for each failure:
//! 1. the first `min(len, 4)` bytes equal the magic, else `TryOthers` (so `"PR"` waits and
//!    `"HTTP"` moves on);
//! 2. 12 header bytes are present, else `NotEnoughData`;
//! 3. `body_size <= max_body_size`, else `TooBigData` — checked before waiting for the body,
//!    and nothing is allocated for it;
//! 4. the whole body is present, else `NotEnoughData`;
//! 5. `meta_size <= body_size`, the meta decodes, and `0 <= attachment_size <= body_size -
//!    meta_size`, else `AbsolutelyWrong`. (brpc C++ skips a frame whose `meta_size` is too big
//!    and reports "try others", which closes the connection all the same; Spindle reports the
//!    corruption directly.)
//!
//! Only step 5's success consumes input: the header and meta are popped, payload and
//! attachment are cut off the buffer by reference (no copy). The meta is decoded through a
//! non-consuming cursor before anything is popped.

use crate::errors::{ErrorCode, RpcError};
use crate::proto::brpc::policy::RpcMeta;
use crate::protocol::{IOBuf, ParseError, ParseResult};
use bytes::Buf;
use prost::Message;

/// The 4-byte magic at the start of every frame.
pub const MAGIC: [u8; 4] = *b"PRPC";

/// Bytes before the meta: magic, `body_size`, `meta_size`.
pub const HEADER_LEN: usize = 12;

/// One parsed frame: the decoded meta and the body split into payload and attachment.
#[derive(Debug, Clone, PartialEq)]
pub struct Frame {
    /// The decoded `RpcMeta`.
    pub meta: RpcMeta,
    /// The body after the meta, minus the attachment (still compressed if
    /// `meta.compress_type` says so).
    pub payload: IOBuf,
    /// The last `meta.attachment_size` bytes of the body.
    pub attachment: IOBuf,
}

/// Cuts one frame off the front of `source` (see the module doc for the checks). Consumes input
/// only on `Ok`; never panics; never allocates more than the bytes that arrived.
pub fn parse_frame(source: &mut IOBuf, max_body_size: usize) -> ParseResult<Frame> {
    let mut header = [0u8; HEADER_LEN];
    let n = source.copy_to(&mut header, 0);
    let magic_len = n.min(MAGIC.len());
    if header[..magic_len] != MAGIC[..magic_len] {
        return Err(ParseError::TryOthers);
    }
    if n < HEADER_LEN {
        return Err(ParseError::NotEnoughData);
    }
    let body_size = u32::from_be_bytes([header[4], header[5], header[6], header[7]]) as usize;
    let meta_size = u32::from_be_bytes([header[8], header[9], header[10], header[11]]) as usize;
    if body_size > max_body_size {
        return Err(ParseError::TooBigData {
            declared: body_size as u64,
            limit: max_body_size,
        });
    }
    if source.len() < HEADER_LEN + body_size {
        return Err(ParseError::NotEnoughData);
    }
    if meta_size > body_size {
        return Err(ParseError::AbsolutelyWrong(format!(
            "baidu_std meta_size={meta_size} is larger than body_size={body_size}"
        )));
    }
    let mut cursor = source.cursor();
    cursor.advance(HEADER_LEN);
    let meta = RpcMeta::decode(cursor.take(meta_size))
        .map_err(|e| ParseError::AbsolutelyWrong(format!("baidu_std meta does not decode: {e}")))?;
    let rest = body_size - meta_size;
    let attachment_size = match meta.attachment_size {
        None => 0,
        Some(a) if a >= 0 && a as usize <= rest => a as usize,
        Some(a) => {
            return Err(ParseError::AbsolutelyWrong(format!(
                "baidu_std attachment_size={a} does not fit the {rest} bytes after the meta"
            )))
        }
    };
    source.pop_front(HEADER_LEN + meta_size);
    let payload = source.split_to(rest - attachment_size);
    let attachment = source.split_to(attachment_size);
    Ok(Frame {
        meta,
        payload,
        attachment,
    })
}

/// Appends one frame to `out`: header, `meta`, `payload`, `attachment` (the last two by
/// reference: their blocks are shared, not copied). The caller sets
/// `meta.attachment_size` (see [`set_attachment_size`]); this function checks it matches.
/// Fails with `EREQUEST` if the body does not fit the 32-bit `body_size`, leaving `out`
/// unchanged.
pub fn write_frame(
    out: &mut IOBuf,
    meta: &RpcMeta,
    payload: &IOBuf,
    attachment: &IOBuf,
) -> Result<(), RpcError> {
    let declared = meta.attachment_size.unwrap_or(0);
    if usize::try_from(declared).ok() != Some(attachment.len()) {
        return Err(RpcError::new(
            ErrorCode::Internal,
            format!(
                "baidu_std meta says attachment_size={declared} but the attachment has {} bytes",
                attachment.len()
            ),
        ));
    }
    let meta_size = meta.encoded_len();
    let body_size = meta_size as u64 + payload.len() as u64 + attachment.len() as u64;
    let Ok(body_size) = u32::try_from(body_size) else {
        return Err(RpcError::new(
            ErrorCode::Request,
            format!("baidu_std body of {body_size} bytes does not fit a frame (max 4 GiB)"),
        ));
    };
    let mut header = [0u8; HEADER_LEN];
    header[..4].copy_from_slice(&MAGIC);
    header[4..8].copy_from_slice(&body_size.to_be_bytes());
    header[8..].copy_from_slice(&(meta_size as u32).to_be_bytes());
    out.append(&header);
    meta.encode_raw(out);
    out.append_iobuf(payload);
    out.append_iobuf(attachment);
    Ok(())
}

/// Sets `meta.attachment_size` as brpc does: present only for a non-empty attachment. Fails
/// with `EREQUEST` for attachments over 2 GiB (the field is an `int32`).
pub fn set_attachment_size(meta: &mut RpcMeta, attachment: &IOBuf) -> Result<(), RpcError> {
    meta.attachment_size = match attachment.len() {
        0 => None,
        n => Some(i32::try_from(n).map_err(|_| {
            RpcError::new(
                ErrorCode::Request,
                format!("attachment of {n} bytes exceeds baidu_std's 2 GiB limit"),
            )
        })?),
    };
    Ok(())
}
