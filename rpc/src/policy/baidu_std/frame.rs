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
use bytes::{Buf, BufMut};
use prost::encoding::{encode_key, encode_varint, encoded_len_varint, key_len, WireType};
use prost::Message;

/// The 4-byte magic at the start of every frame.
pub const MAGIC: [u8; 4] = *b"PRPC";

/// Bytes before the meta: magic, `body_size`, `meta_size`.
pub const HEADER_LEN: usize = 12;

/// One parsed frame: the decoded meta and the body split into payload and attachment.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Frame {
    /// The decoded `RpcMeta`.
    pub meta: RpcMeta,
    /// The body after the meta, minus the attachment (still compressed if
    /// `meta.compress_type` says so).
    pub payload: IOBuf,
    /// The last `meta.attachment_size` bytes of the body.
    pub attachment: IOBuf,
}

/// The sizes the header of a frame declares, checked against each other and against what
/// arrived: the whole frame is in the buffer ([`check_header`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameSizes {
    /// `body_size`: meta, payload and attachment.
    pub body: usize,
    /// `meta_size`.
    pub meta: usize,
}

/// Cuts one frame off the front of `source` (see the module doc for the checks). Consumes input
/// only on `Ok`; never panics; never allocates more than the bytes that arrived.
pub fn parse_frame(source: &mut IOBuf, max_body_size: usize) -> ParseResult<Frame> {
    let sizes = check_header(source, max_body_size)?;
    let mut frame = Frame::default();
    cut_frame(source, sizes, &mut frame)?;
    Ok(frame)
}

/// Checks 1 to 4 of the module doc and `meta_size <= body_size`: what can be said before the
/// meta is decoded. Consumes nothing and allocates nothing (but the text of a corruption).
pub fn check_header(source: &IOBuf, max_body_size: usize) -> ParseResult<FrameSizes> {
    let header: [u8; HEADER_LEN] = match source.fetch_array() {
        Some(h) => h,
        None => {
            // Fewer than 12 bytes: what did arrive must be a prefix of the magic.
            let mut partial = [0u8; HEADER_LEN];
            let n = source.copy_to(&mut partial, 0).min(MAGIC.len());
            if partial[..n] != MAGIC[..n] {
                return Err(ParseError::TryOthers);
            }
            return Err(ParseError::NotEnoughData);
        }
    };
    if header[..MAGIC.len()] != MAGIC {
        return Err(ParseError::TryOthers);
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
    Ok(FrameSizes {
        body: body_size,
        meta: meta_size,
    })
}

/// Metas up to this size are decoded from one slice: a view into the block when they lie in
/// one (the common case), else a copy on the stack. A typical request meta is 30–60 bytes, a
/// response meta about 10. Larger ones are decoded through a cursor over the pieces.
const SMALL_META_DECODE: usize = 128;

/// Decodes the meta of the frame at the front of `source`, which [`check_header`] measured as
/// `sizes`, into `frame` (`frame.meta` must be the default: see `meta_decode`), and cuts the
/// payload and attachment into `frame` by reference. Consumes the frame only on `Ok`.
///
/// Decoding in place lets a caller put the frame where it will stay (in the box of a parsed
/// message) instead of moving a 400-byte `RpcMeta` through every return.
pub fn cut_frame(source: &mut IOBuf, sizes: FrameSizes, frame: &mut Frame) -> ParseResult<()> {
    let FrameSizes {
        body: body_size,
        meta: meta_size,
    } = sizes;
    let decoded = if meta_size <= SMALL_META_DECODE {
        let mut aux = [0u8; SMALL_META_DECODE];
        let bytes = source
            .fetch_at(HEADER_LEN, &mut aux[..meta_size])
            .expect("the whole body is present");
        super::meta_decode::decode(bytes, &mut frame.meta)
    } else {
        let mut cursor = source.cursor();
        cursor.advance(HEADER_LEN);
        frame.meta.merge(cursor.take(meta_size))
    };
    if let Err(e) = decoded {
        return Err(ParseError::AbsolutelyWrong(format!(
            "baidu_std meta does not decode: {e}"
        )));
    }
    let rest = body_size - meta_size;
    let attachment_size = match frame.meta.attachment_size {
        None => 0,
        Some(a) if a >= 0 && a as usize <= rest => a as usize,
        Some(a) => {
            return Err(ParseError::AbsolutelyWrong(format!(
                "baidu_std attachment_size={a} does not fit the {rest} bytes after the meta"
            )))
        }
    };
    source.pop_front(HEADER_LEN + meta_size);
    frame.payload = source.split_to(rest - attachment_size);
    frame.attachment = source.split_to(attachment_size);
    Ok(())
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
    append_frame(out, meta.encoded_len(), payload, attachment, |w| {
        meta.encode_raw(w)
    })
}

/// Appends a frame whose meta of `meta_size` bytes `encode` writes, then `payload` and
/// `attachment` by reference. Fails with `EREQUEST` if the body does not fit the 32-bit
/// `body_size`, leaving `out` unchanged.
fn append_frame(
    out: &mut IOBuf,
    meta_size: usize,
    payload: &IOBuf,
    attachment: &IOBuf,
    encode: impl FnOnce(&mut &mut [u8]),
) -> Result<(), RpcError> {
    let body_size = meta_size as u64 + payload.len() as u64 + attachment.len() as u64;
    let Ok(body_size) = u32::try_from(body_size) else {
        return Err(RpcError::new(
            ErrorCode::Request,
            format!("baidu_std body of {body_size} bytes does not fit a frame (max 4 GiB)"),
        ));
    };
    append_header_and_meta(out, body_size, meta_size, encode);
    out.append_iobuf(payload);
    out.append_iobuf(attachment);
    Ok(())
}

/// Metas up to this size are encoded on the stack and appended with one copy (a typical
/// request meta is 30–60 bytes, a response meta about 10).
const SMALL_META_ENCODE: usize = 116;

/// Appends the 12-byte header and a meta of `meta_size` bytes written by `encode`, in one
/// piece: encoding straight into the IOBuf would append every varint separately. A small meta
/// is encoded on the stack, a larger one (rare: big credentials or user fields) into a `Vec`.
fn append_header_and_meta(
    out: &mut IOBuf,
    body_size: u32,
    meta_size: usize,
    encode: impl FnOnce(&mut &mut [u8]),
) {
    let mut stack = [0u8; HEADER_LEN + SMALL_META_ENCODE];
    let mut heap = Vec::new();
    let buf: &mut [u8] = if meta_size <= SMALL_META_ENCODE {
        &mut stack[..HEADER_LEN + meta_size]
    } else {
        heap.resize(HEADER_LEN + meta_size, 0);
        &mut heap[..]
    };
    buf[..4].copy_from_slice(&MAGIC);
    buf[4..8].copy_from_slice(&body_size.to_be_bytes());
    buf[8..HEADER_LEN].copy_from_slice(&(meta_size as u32).to_be_bytes());
    let mut w: &mut [u8] = &mut buf[HEADER_LEN..];
    encode(&mut w);
    debug_assert!(w.is_empty(), "the meta fills exactly its encoded length");
    out.append(buf);
}

/// The fields of a request's `RpcMeta` as Spindle sends them, borrowed: encoding it allocates
/// nothing (building an [`RpcMeta`] would copy the service and method names into `String`s).
/// [`write_request_frame`] writes the same bytes as `RpcMeta::encode` of the equivalent meta.
#[derive(Debug, Clone, Copy, Default)]
pub struct RequestMetaRef<'a> {
    /// `request.service_name`.
    pub service_name: &'a str,
    /// `request.method_name`.
    pub method_name: &'a str,
    /// `request.log_id`.
    pub log_id: Option<i64>,
    /// `request.trace_id`.
    pub trace_id: Option<i64>,
    /// `request.span_id`.
    pub span_id: Option<i64>,
    /// `request.parent_span_id`.
    pub parent_span_id: Option<i64>,
    /// `request.request_id`.
    pub request_id: Option<&'a str>,
    /// `request.timeout_ms`.
    pub timeout_ms: Option<i32>,
    /// `compress_type`.
    pub compress_type: Option<i32>,
    /// `correlation_id`.
    pub correlation_id: Option<i64>,
    /// `attachment_size` (set by the writer from the attachment: present when non-empty).
    pub attachment_size: Option<i32>,
    /// `authentication_data`.
    pub authentication_data: Option<&'a [u8]>,
}

/// Tags and wire types of the fields [`RequestMetaRef`] writes.
mod tag {
    pub const META_REQUEST: u32 = 1;
    pub const META_COMPRESS_TYPE: u32 = 3;
    pub const META_CORRELATION_ID: u32 = 4;
    pub const META_ATTACHMENT_SIZE: u32 = 5;
    pub const META_AUTHENTICATION_DATA: u32 = 7;
    pub const REQ_SERVICE_NAME: u32 = 1;
    pub const REQ_METHOD_NAME: u32 = 2;
    pub const REQ_LOG_ID: u32 = 3;
    pub const REQ_TRACE_ID: u32 = 4;
    pub const REQ_SPAN_ID: u32 = 5;
    pub const REQ_PARENT_SPAN_ID: u32 = 6;
    pub const REQ_REQUEST_ID: u32 = 7;
    pub const REQ_TIMEOUT_MS: u32 = 8;
    pub const META_RESPONSE: u32 = 2;
    pub const RESP_ERROR_CODE: u32 = 1;
    pub const RESP_ERROR_TEXT: u32 = 2;
}

/// Length of a varint field (`int32` / `int64`: negative values take 10 bytes, as in prost).
fn varint_field_len(tag: u32, v: Option<i64>) -> usize {
    v.map_or(0, |v| key_len(tag) + encoded_len_varint(v as u64))
}

/// Length of a length-delimited field of `n` bytes.
fn bytes_field_len(tag: u32, n: Option<usize>) -> usize {
    n.map_or(0, |n| key_len(tag) + encoded_len_varint(n as u64) + n)
}

fn put_varint_field(w: &mut impl BufMut, tag: u32, v: Option<i64>) {
    if let Some(v) = v {
        encode_key(tag, WireType::Varint, w);
        encode_varint(v as u64, w);
    }
}

fn put_bytes_field(w: &mut impl BufMut, tag: u32, b: Option<&[u8]>) {
    if let Some(b) = b {
        encode_key(tag, WireType::LengthDelimited, w);
        encode_varint(b.len() as u64, w);
        w.put_slice(b);
    }
}

/// Length of the fields both borrowed metas write after their nested meta (tags 3 to 5).
fn common_fields_len(
    compress_type: Option<i32>,
    correlation_id: Option<i64>,
    attachment_size: Option<i32>,
) -> usize {
    use tag::*;
    varint_field_len(META_COMPRESS_TYPE, compress_type.map(i64::from))
        + varint_field_len(META_CORRELATION_ID, correlation_id)
        + varint_field_len(META_ATTACHMENT_SIZE, attachment_size.map(i64::from))
}

/// Writes the fields [`common_fields_len`] measures, in tag order.
fn put_common_fields(
    w: &mut impl BufMut,
    compress_type: Option<i32>,
    correlation_id: Option<i64>,
    attachment_size: Option<i32>,
) {
    use tag::*;
    put_varint_field(w, META_COMPRESS_TYPE, compress_type.map(i64::from));
    put_varint_field(w, META_CORRELATION_ID, correlation_id);
    put_varint_field(w, META_ATTACHMENT_SIZE, attachment_size.map(i64::from));
}

impl RequestMetaRef<'_> {
    /// Encoded length of the nested `RpcRequestMeta`.
    fn request_len(&self) -> usize {
        use tag::*;
        // Both names are `required`: always written, even when empty.
        bytes_field_len(REQ_SERVICE_NAME, Some(self.service_name.len()))
            + bytes_field_len(REQ_METHOD_NAME, Some(self.method_name.len()))
            + varint_field_len(REQ_LOG_ID, self.log_id)
            + varint_field_len(REQ_TRACE_ID, self.trace_id)
            + varint_field_len(REQ_SPAN_ID, self.span_id)
            + varint_field_len(REQ_PARENT_SPAN_ID, self.parent_span_id)
            + bytes_field_len(REQ_REQUEST_ID, self.request_id.map(str::len))
            + varint_field_len(REQ_TIMEOUT_MS, self.timeout_ms.map(i64::from))
    }

    /// Encoded length of the whole `RpcMeta`.
    pub fn encoded_len(&self) -> usize {
        use tag::*;
        bytes_field_len(META_REQUEST, Some(self.request_len()))
            + common_fields_len(
                self.compress_type,
                self.correlation_id,
                self.attachment_size,
            )
            + bytes_field_len(
                META_AUTHENTICATION_DATA,
                self.authentication_data.map(<[u8]>::len),
            )
    }

    /// Writes the `RpcMeta` (fields in tag order, as prost does).
    fn encode(&self, w: &mut impl BufMut) {
        use tag::*;
        encode_key(META_REQUEST, WireType::LengthDelimited, w);
        encode_varint(self.request_len() as u64, w);
        put_bytes_field(w, REQ_SERVICE_NAME, Some(self.service_name.as_bytes()));
        put_bytes_field(w, REQ_METHOD_NAME, Some(self.method_name.as_bytes()));
        put_varint_field(w, REQ_LOG_ID, self.log_id);
        put_varint_field(w, REQ_TRACE_ID, self.trace_id);
        put_varint_field(w, REQ_SPAN_ID, self.span_id);
        put_varint_field(w, REQ_PARENT_SPAN_ID, self.parent_span_id);
        put_bytes_field(w, REQ_REQUEST_ID, self.request_id.map(str::as_bytes));
        put_varint_field(w, REQ_TIMEOUT_MS, self.timeout_ms.map(i64::from));
        put_common_fields(
            w,
            self.compress_type,
            self.correlation_id,
            self.attachment_size,
        );
        put_bytes_field(w, META_AUTHENTICATION_DATA, self.authentication_data);
    }
}

/// The fields of a response's `RpcMeta` as Spindle sends them, borrowed: encoding it builds no
/// [`RpcMeta`] (400 bytes to set up and move, and prost's walk over every field of it).
/// [`write_response_frame`] writes the same bytes as `RpcMeta::encode` of the equivalent meta.
#[derive(Debug, Clone, Copy, Default)]
pub struct ResponseMetaRef<'a> {
    /// `response.error_code`.
    pub error_code: Option<i32>,
    /// `response.error_text`.
    pub error_text: Option<&'a str>,
    /// `compress_type`.
    pub compress_type: Option<i32>,
    /// `correlation_id`.
    pub correlation_id: Option<i64>,
    /// `attachment_size` (set by the writer from the attachment: present when non-empty).
    pub attachment_size: Option<i32>,
}

impl ResponseMetaRef<'_> {
    /// Encoded length of the nested `RpcResponseMeta`.
    fn response_len(&self) -> usize {
        use tag::*;
        varint_field_len(RESP_ERROR_CODE, self.error_code.map(i64::from))
            + bytes_field_len(RESP_ERROR_TEXT, self.error_text.map(str::len))
    }

    /// Encoded length of the whole `RpcMeta`.
    pub fn encoded_len(&self) -> usize {
        use tag::*;
        bytes_field_len(META_RESPONSE, Some(self.response_len()))
            + common_fields_len(
                self.compress_type,
                self.correlation_id,
                self.attachment_size,
            )
    }

    /// Writes the `RpcMeta` (fields in tag order, as prost does).
    fn encode(&self, w: &mut impl BufMut) {
        use tag::*;
        encode_key(META_RESPONSE, WireType::LengthDelimited, w);
        encode_varint(self.response_len() as u64, w);
        put_varint_field(w, RESP_ERROR_CODE, self.error_code.map(i64::from));
        put_bytes_field(w, RESP_ERROR_TEXT, self.error_text.map(str::as_bytes));
        put_common_fields(
            w,
            self.compress_type,
            self.correlation_id,
            self.attachment_size,
        );
    }
}

/// Appends one response frame to `out` like [`write_frame`] with the `RpcMeta` `meta`
/// describes; `meta.attachment_size` is set from `attachment` (present only when non-empty).
/// Fails with `EREQUEST` for an attachment over 2 GiB or a body over 4 GiB, leaving `out`
/// unchanged.
pub fn write_response_frame(
    out: &mut IOBuf,
    meta: &ResponseMetaRef<'_>,
    payload: &IOBuf,
    attachment: &IOBuf,
) -> Result<(), RpcError> {
    let mut meta = *meta;
    meta.attachment_size = attachment_size_field(attachment)?;
    append_frame(out, meta.encoded_len(), payload, attachment, |w| {
        meta.encode(w)
    })
}

/// Appends one request frame to `out` like [`write_frame`] with the `RpcMeta` `meta`
/// describes; `meta.attachment_size` is set from `attachment` (brpc's rule: present only when
/// non-empty). Fails with `EREQUEST` for an attachment over 2 GiB or a body over 4 GiB, leaving
/// `out` unchanged.
pub fn write_request_frame(
    out: &mut IOBuf,
    meta: &RequestMetaRef<'_>,
    payload: &IOBuf,
    attachment: &IOBuf,
) -> Result<(), RpcError> {
    let mut meta = *meta;
    meta.attachment_size = attachment_size_field(attachment)?;
    append_frame(out, meta.encoded_len(), payload, attachment, |w| {
        meta.encode(w)
    })
}

/// Sets `meta.attachment_size` as brpc does: present only for a non-empty attachment. Fails
/// with `EREQUEST` for attachments over 2 GiB (the field is an `int32`).
pub fn set_attachment_size(meta: &mut RpcMeta, attachment: &IOBuf) -> Result<(), RpcError> {
    meta.attachment_size = attachment_size_field(attachment)?;
    Ok(())
}

/// The `attachment_size` field for `attachment` (see [`set_attachment_size`]).
fn attachment_size_field(attachment: &IOBuf) -> Result<Option<i32>, RpcError> {
    Ok(match attachment.len() {
        0 => None,
        n => Some(i32::try_from(n).map_err(|_| {
            RpcError::new(
                ErrorCode::Request,
                format!("attachment of {n} bytes exceeds baidu_std's 2 GiB limit"),
            )
        })?),
    })
}
