//! What a client call hands to a protocol to be framed: the encoded body and the call's
//! request-side fields (the part of brpc's `Controller` that `PackRequest` reads).

use crate::compress::CompressType;
use spindle_iobuf::IOBuf;

/// The attachment of a call that has none.
static NO_ATTACHMENT: IOBuf = IOBuf::new();

/// A request or response body that can encode itself; implemented for every prost message.
/// Object-safe, so protocols take `&dyn MessageBody`.
pub trait MessageBody {
    /// Appends the serialized body to `out`.
    fn encode_body(&self, out: &mut IOBuf);
}

/// Bodies up to this size are encoded on the stack and appended with one copy.
const SMALL_BODY_ENCODE: usize = 256;

impl<M: prost::Message> MessageBody for M {
    fn encode_body(&self, out: &mut IOBuf) {
        // Encoding straight into an IOBuf appends every varint and tag on its own; a small
        // body is written to the stack first and appended in one piece.
        let len = self.encoded_len();
        if len <= SMALL_BODY_ENCODE {
            let mut stack = [0u8; SMALL_BODY_ENCODE];
            let mut w: &mut [u8] = &mut stack[..len];
            self.encode_raw(&mut w);
            out.append(&stack[..len]);
        } else {
            // An IOBuf grows block by block, so encoding cannot run out of space.
            self.encode_raw(out);
        }
    }
}

/// The request-side fields of one call. Borrowed, so building one per attempt is free.
#[derive(Debug, Clone, Copy)]
pub struct CallInfo<'a> {
    /// Full service name, e.g. `example.EchoService`.
    pub service: &'a str,
    /// Method name, e.g. `Echo`.
    pub method: &'a str,
    /// Compression of the request body.
    pub compress_type: CompressType,
    /// Bytes sent after the body, uncompressed (`RpcMeta.attachment_size`).
    pub attachment: &'a IOBuf,
    /// `RpcRequestMeta.log_id`.
    pub log_id: Option<i64>,
    /// `RpcRequestMeta.timeout_ms`: the client's deadline, so the server can drop late work.
    pub timeout_ms: Option<i32>,
    /// `RpcRequestMeta.trace_id`.
    pub trace_id: Option<i64>,
    /// `RpcRequestMeta.span_id`.
    pub span_id: Option<i64>,
    /// `RpcRequestMeta.parent_span_id`.
    pub parent_span_id: Option<i64>,
    /// `RpcRequestMeta.request_id` (HTTP's `x-request-id`).
    pub request_id: Option<&'a str>,
}

impl Default for CallInfo<'_> {
    /// Empty names, no compression, no attachment, no optional fields.
    fn default() -> Self {
        CallInfo {
            service: "",
            method: "",
            compress_type: CompressType::None,
            attachment: &NO_ATTACHMENT,
            log_id: None,
            timeout_ms: None,
            trace_id: None,
            span_id: None,
            parent_span_id: None,
            request_id: None,
        }
    }
}
