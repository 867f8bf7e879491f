//! baidu_std (brpc's `policy/baidu_rpc_protocol`): brpc's native protocol, `"PRPC"` frames
//! carrying an [`RpcMeta`](crate::proto::brpc::policy::RpcMeta) protobuf, the (optionally
//! compressed) protobuf payload and a raw attachment. Byte-compatible with brpc C++ in both
//! directions.
//!
//! - [`frame`]: the codec (parse / write one frame).
//! - [`BaiduStd`]: the [`Protocol`] implementation: parse, serialize / pack requests, pack
//!   responses, and the processing hooks that hand decoded requests to the server and decoded
//!   responses to the channel.
//!
//! What Spindle writes into the meta, like brpc: requests carry `request` (service full name,
//! method, optional log_id / trace ids / request_id / timeout_ms), `compress_type` (always,
//! even 0), `correlation_id`, `attachment_size` (only when non-zero) and
//! `authentication_data` (first message of a connection, when an authenticator is set).
//! Responses carry `response.error_code` (always, 0 on success), `response.error_text` (only
//! when non-empty), `correlation_id`, `compress_type`, and `attachment_size` when non-zero; a
//! failed response has no payload or attachment. Newer brpc versions also write
//! `content_type` and `checksum_*` defaults; Spindle leaves them absent, which every brpc
//! version reads the same way. Checksums are not verified yet.

pub mod frame;
mod meta_decode;

use crate::compress::{self, CompressType};
use crate::errors::{ErrorCode, RpcError};
use crate::protocol::{
    Authenticator, CallInfo, ClientResponse, ConnectionTypes, IOBuf, InputMessage, MessageBody,
    ParseContext, ParseResult, Protocol, ProtocolClass, RequestSink, ResponseBody, ResponseSink,
    ServerRequest,
};
use crate::socket::SocketId;
use frame::Frame;

/// A baidu_std message cut from a socket (brpc's `MostCommonMessage`, with the meta decoded).
#[derive(Debug, Clone, PartialEq)]
pub struct BaiduStdMessage {
    /// The socket it was read from.
    pub socket_id: SocketId,
    /// Meta, payload and attachment.
    pub frame: Frame,
    /// The `max_body_size` in force when it was parsed; bounds decompression.
    pub max_body_size: usize,
}

impl InputMessage for BaiduStdMessage {
    fn socket_id(&self) -> SocketId {
        self.socket_id
    }
}

/// A response as a server hands it to [`BaiduStd::pack_response`].
#[derive(Debug, Clone, Copy)]
pub struct ResponseFrame<'a> {
    /// The request's correlation id, echoed back.
    pub correlation_id: i64,
    /// The failure to report, or `None` for success. A failed response carries no body.
    pub error: Option<&'a RpcError>,
    /// Compression already applied to `body` (see [`BaiduStd::serialize_response`]).
    pub compress_type: CompressType,
    /// The serialized (and compressed) response message.
    pub body: &'a IOBuf,
    /// The response attachment.
    pub attachment: &'a IOBuf,
}

/// The baidu_std protocol. Stateless; register one instance.
#[derive(Debug, Clone, Copy, Default)]
pub struct BaiduStd;

impl BaiduStd {
    /// The protocol's name in options and logs.
    pub const NAME: &'static str = "baidu_std";

    /// Serializes `message` and compresses it with `compress_type`, appending to `out` (the
    /// server's half of brpc's `SerializeRpcMessage`).
    pub fn serialize_response(
        out: &mut IOBuf,
        message: &dyn MessageBody,
        compress_type: CompressType,
    ) -> Result<(), RpcError> {
        serialize_body(out, message, compress_type, ErrorCode::Internal)
    }

    /// Appends a response frame to `out` (brpc `SendRpcResponse`'s framing).
    pub fn pack_response(out: &mut IOBuf, response: &ResponseFrame<'_>) -> Result<(), RpcError> {
        let (code, text) = match response.error {
            // brpc never answers "-1"; it reports EINTERNAL instead.
            Some(e) if e.code.code() == -1 => (ErrorCode::Internal.code(), e.text.as_str()),
            Some(e) => (e.code.code(), e.text.as_str()),
            None => (0, ""),
        };
        let empty = IOBuf::new();
        let (body, attachment) = match response.error {
            Some(_) => (&empty, &empty),
            None => (response.body, response.attachment),
        };
        let meta = frame::ResponseMetaRef {
            error_code: Some(code),
            error_text: (!text.is_empty()).then_some(text),
            correlation_id: Some(response.correlation_id),
            compress_type: Some(response.compress_type.code()),
            attachment_size: None, // set from the attachment by the writer
        };
        frame::write_response_frame(out, &meta, body, attachment)
    }
}

fn serialize_body(
    out: &mut IOBuf,
    message: &dyn MessageBody,
    compress_type: CompressType,
    code: ErrorCode,
) -> Result<(), RpcError> {
    if compress_type == CompressType::None {
        message.encode_body(out);
        return Ok(());
    }
    let mut raw = IOBuf::new();
    message.encode_body(&mut raw);
    compress::compress_iobuf(compress_type, &raw, out)
        .map_err(|e| RpcError::new(code, format!("failed to compress body: {e}")))
}

/// Downcasts a message from the cut loop; only baidu_std's own messages reach its hooks. The
/// message stays in its box: the hooks take its fields out one by one.
fn downcast(msg: Box<dyn InputMessage>) -> Result<Box<BaiduStdMessage>, RpcError> {
    msg.downcast::<BaiduStdMessage>()
        .ok_or_else(|| RpcError::new(ErrorCode::Internal, "not a baidu_std message"))
}

/// Undoes `compress_type` on `payload`, bounded by `max_body_size`.
fn decompress_payload(
    compress_type: Option<i32>,
    payload: IOBuf,
    max_body_size: usize,
) -> Result<(CompressType, IOBuf), String> {
    let ty = CompressType::from_code(compress_type.unwrap_or(0)).map_err(|e| e.to_string())?;
    if ty == CompressType::None {
        return Ok((ty, payload));
    }
    let plain =
        compress::decompress_iobuf(ty, &payload, max_body_size).map_err(|e| e.to_string())?;
    Ok((ty, plain))
}

impl Protocol for BaiduStd {
    fn name(&self) -> &'static str {
        Self::NAME
    }

    fn class(&self) -> ProtocolClass {
        ProtocolClass::MagicAtFront
    }

    fn parse(&self, source: &mut IOBuf, ctx: &ParseContext) -> ParseResult<Box<dyn InputMessage>> {
        let sizes = frame::check_header(source, ctx.max_body_size)?;
        // The whole frame is here: decode it straight into the message's box, so the meta is
        // not moved (it is 400 bytes) on its way to the box. The box is allocated first and
        // filled after, so the 600-byte message is built in it rather than on the stack and
        // then copied. (`Box::write` would say it without `unsafe`, but needs Rust 1.87; the
        // MSRV is 1.86.)
        let mut slot = Box::<BaiduStdMessage>::new_uninit();
        slot.write(BaiduStdMessage {
            socket_id: ctx.socket_id,
            frame: Frame::default(),
            max_body_size: ctx.max_body_size,
        });
        // SAFETY: `write` just initialised the whole message.
        let mut msg = unsafe { slot.assume_init() };
        frame::cut_frame(source, sizes, &mut msg.frame)?;
        Ok(msg)
    }

    fn supported_connection_types(&self) -> ConnectionTypes {
        ConnectionTypes::ALL
    }

    fn serves(&self) -> bool {
        true
    }

    fn serialize_request(
        &self,
        out: &mut IOBuf,
        request: &dyn MessageBody,
        call: &CallInfo<'_>,
    ) -> Result<(), RpcError> {
        serialize_body(out, request, call.compress_type, ErrorCode::Request)
    }

    fn pack_request(
        &self,
        out: &mut IOBuf,
        correlation_id: i64,
        body: &IOBuf,
        call: &CallInfo<'_>,
        auth: Option<&dyn Authenticator>,
    ) -> Result<(), RpcError> {
        if call.method.is_empty() {
            return Err(RpcError::new(
                ErrorCode::NoMethod,
                "baidu_std request without a method name",
            ));
        }
        let credential = match auth {
            Some(a) => Some(a.generate_credential().map_err(|e| {
                RpcError::new(
                    ErrorCode::Request,
                    format!("failed to generate credential: {e}"),
                )
            })?),
            None => None,
        };
        // Borrowed fields: no `String` copies of the names per call.
        let meta = frame::RequestMetaRef {
            service_name: call.service,
            method_name: call.method,
            log_id: call.log_id,
            trace_id: call.trace_id,
            span_id: call.span_id,
            parent_span_id: call.parent_span_id,
            request_id: call.request_id,
            timeout_ms: call.timeout_ms.filter(|t| *t > 0),
            compress_type: Some(call.compress_type.code()),
            correlation_id: Some(correlation_id),
            attachment_size: None, // set from the attachment by the writer
            authentication_data: credential.as_deref(),
        };
        frame::write_request_frame(out, &meta, body, call.attachment)
    }

    fn process_request(
        &self,
        msg: Box<dyn InputMessage>,
        server: &dyn RequestSink,
    ) -> Result<(), RpcError> {
        let mut msg = downcast(msg)?;
        let payload = std::mem::take(&mut msg.frame.payload);
        let attachment = std::mem::take(&mut msg.frame.attachment);
        let meta = &mut msg.frame.meta;
        let correlation_id = meta.correlation_id.unwrap_or(0);
        let Some(request) = meta.request.take() else {
            server.reply_error(
                msg.socket_id,
                correlation_id,
                RpcError::new(ErrorCode::Request, "baidu_std request has no request meta"),
            );
            return Ok(());
        };
        let (compress_type, payload) =
            match decompress_payload(meta.compress_type, payload, msg.max_body_size) {
                Ok(p) => p,
                Err(why) => {
                    server.reply_error(
                        msg.socket_id,
                        correlation_id,
                        RpcError::new(ErrorCode::Request, format!("bad request body: {why}")),
                    );
                    return Ok(());
                }
            };
        server.on_request(ServerRequest {
            socket_id: msg.socket_id,
            correlation_id,
            service: request.service_name,
            method: request.method_name,
            payload,
            attachment,
            compress_type,
            log_id: request.log_id,
            timeout_ms: request.timeout_ms,
            trace_id: request.trace_id,
            span_id: request.span_id,
            parent_span_id: request.parent_span_id,
            request_id: request.request_id,
            user_fields: std::mem::take(&mut meta.user_fields),
        });
        Ok(())
    }

    fn process_response(
        &self,
        msg: Box<dyn InputMessage>,
        client: &dyn ResponseSink,
    ) -> Result<(), RpcError> {
        let mut msg = downcast(msg)?;
        let payload = std::mem::take(&mut msg.frame.payload);
        let attachment = std::mem::take(&mut msg.frame.attachment);
        let meta = &mut msg.frame.meta;
        let correlation_id = meta.correlation_id.unwrap_or(0);
        let response = meta.response.take().unwrap_or_default();
        let result = match response.error_code.unwrap_or(0) {
            0 => decompress_payload(meta.compress_type, payload, msg.max_body_size)
                .map(|(compress_type, payload)| ResponseBody {
                    payload,
                    attachment,
                    compress_type,
                    http: None,
                })
                .map_err(|why| {
                    RpcError::new(ErrorCode::Response, format!("bad response body: {why}"))
                }),
            code => Err(RpcError::new(
                ErrorCode::from_code(code),
                response.error_text.unwrap_or_default(),
            )),
        };
        client.on_response(ClientResponse {
            socket_id: msg.socket_id,
            correlation_id,
            result,
        });
        Ok(())
    }

    /// An uncompressed response only moves its buffers and completes its call: short enough
    /// for the reader. A compressed one is decompressed in a fiber of its own.
    fn response_in_place(&self, msg: &dyn InputMessage) -> bool {
        msg.downcast_ref::<BaiduStdMessage>()
            .is_some_and(|m| m.frame.meta.compress_type.unwrap_or(0) == CompressType::None.code())
    }

    fn verify(&self, msg: &dyn InputMessage, auth: &dyn Authenticator) -> Result<(), RpcError> {
        let msg = msg
            .downcast_ref::<BaiduStdMessage>()
            .ok_or_else(|| RpcError::new(ErrorCode::Internal, "not a baidu_std message"))?;
        match &msg.frame.meta.authentication_data {
            Some(credential) => auth.verify_credential(credential, None),
            None => Err(RpcError::new(
                ErrorCode::RpcAuth,
                "first baidu_std message carries no authentication_data",
            )),
        }
    }
}

#[cfg(test)]
mod tests;
