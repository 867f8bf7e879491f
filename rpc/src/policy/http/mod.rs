//! HTTP/1.1 (brpc's `policy/http_rpc_protocol`): served on the same port as baidu_std, and
//! spoken by channels with `protocol: "http"` (pooled and short connections).
//!
//! - [`message`]: [`HttpRequest`] / [`HttpResponse`], what handlers and clients see.
//! - `parse`: cutting requests and responses off a read buffer (httparse for the head).
//! - `conn`: a server connection's state: parser state and the ordered writer that keeps
//!   pipelined responses in request order.
//! - [`pb`]: protobuf methods over HTTP (JSON or binary bodies, error mapping).
//!
//! # Server side
//!
//! The protocol is of class [`ProtocolClass::NoMagic`]: it is asked after the magic-at-front
//! protocols, so a baidu_std connection never pays for it (and once HTTP parsed on a connection
//! it is that connection's preferred protocol and is asked first). It answers `TryOthers` as
//! soon as the first bytes cannot start a method name or `HTTP/`.
//!
//! Each request cut gets a sequence number; [`Protocol::process_request`] hands it to the
//! server's [`HttpDispatch`] (plain handlers, then protobuf methods) and writes the response in
//! sequence order. The connection is kept alive (HTTP/1.1 by default, HTTP/1.0 with
//! `Connection: keep-alive`) or closed after the response: see `conn` for how. Requests
//! announcing `Expect: 100-continue` get `100 Continue` once their head was read and the body
//! has not arrived. Bad input is answered before the connection closes: 400 (malformed head or
//! chunked body), 431 (head over [`HTTP_MAX_HEADER_SIZE`] or over 64 headers), 413 (body over
//! `max_body_size`; with a `Content-Length` the body is discarded as it arrives and the
//! connection survives).
//!
//! # Client side
//!
//! HTTP/1.1 has no correlation id, so a channel uses pooled or short connections (one call in
//! flight per connection) and a response completes the one call waiting on its connection
//! ([`ResponseSink::pending_correlation_id`]). A protobuf call (`Channel::call_method`, or a
//! generated stub over an `http` channel) is `POST /<package.Service>/<Method>` with a binary
//! body; `Channel::http_call` sends any request ([`HttpRequest`]) and returns the
//! [`HttpResponse`]. A response other than 2xx is a failed call: the code and text of
//! `x-bd-error-code` when present (brpc and Spindle servers), else `EHTTP` naming the status.

pub mod message;
pub mod pb;

mod conn;
mod head;
mod parse;

pub use message::{percent_decode, reason_phrase, HttpRequest, HttpResponse};

use crate::errors::{ErrorCode, RpcError};
use crate::protocol::{
    Authenticator, CallInfo, ClientResponse, ConnectionType, ConnectionTypes, IOBuf, InputMessage,
    MessageBody, ParseContext, ParseError, ParseResult, Protocol, ProtocolClass, RequestSink,
    ResponseBody, ResponseSink,
};
use crate::socket::{self, SocketId};
use conn::HttpConn;
use head::HeadBuf;
use parse::{Cut, Kind, Limits, ParseSide};
use spindle_runtime::define_flag;

define_flag!(
    /// Largest HTTP request head.
    pub static HTTP_MAX_HEADER_SIZE: u64 = 64 * 1024,
    "largest HTTP head (request line, headers and blank line) in bytes; a larger request is \
     answered 431 and its connection closed",
    validator = |v| if *v < 64 { Err("must be at least 64".into()) } else { Ok(()) },
    reloadable = true
);

/// Where a server sends HTTP requests: implemented by the server (plain handlers, then
/// protobuf methods).
pub trait HttpDispatch: Send + Sync {
    /// Answers `request` (in the fiber processing it; may block it).
    fn dispatch(&self, request: &HttpRequest) -> HttpResponse;
}

/// An HTTP message cut from a socket.
#[derive(Debug)]
pub struct HttpMessage {
    /// The socket it was read from.
    socket_id: SocketId,
    /// Server side: the request's place in the connection's response order.
    seq: u64,
    /// What was cut.
    cut: Cut,
}

impl InputMessage for HttpMessage {
    fn socket_id(&self) -> SocketId {
        self.socket_id
    }
}

/// The HTTP/1.1 protocol. Stateless; per-connection state lives in the socket.
#[derive(Debug, Clone, Copy, Default)]
pub struct Http;

impl Http {
    /// The protocol's name in options and logs.
    pub const NAME: &'static str = "http";
}

fn limits(ctx: &ParseContext) -> Limits {
    Limits {
        max_header: usize::try_from(HTTP_MAX_HEADER_SIZE.get()).unwrap_or(usize::MAX),
        max_body: ctx.max_body_size,
    }
}

/// Appends a response head and body to `out`. `close`: announce `Connection: close`;
/// `keep_alive_1_0`: announce `Connection: keep-alive` (an HTTP/1.0 client that asked);
/// `head_only`: no body (HEAD); chunked framing only for HTTP/1.1 clients.
///
/// The head is built on the stack and copied once ([`HeadBuf`]); a body up to
/// [`COPY_BODY_MAX`] bytes is copied behind it, so a small response is one piece of one block
/// (one iovec, and the request's read block is not kept alive by the response); a larger body
/// is appended by reference.
pub(crate) fn serialize_response(
    out: &mut IOBuf,
    resp: &HttpResponse,
    minor_version: u8,
    close: bool,
    head_only: bool,
) {
    let mut head = HeadBuf::new();
    head.push(b"HTTP/1.1 ");
    head.push_decimal(u64::from(resp.status));
    head.push(b" ");
    head.push_str(reason_phrase(resp.status));
    head.push(b"\r\n");
    for (n, v) in &resp.headers {
        if ["content-length", "transfer-encoding", "connection"]
            .iter()
            .any(|h| n.eq_ignore_ascii_case(h))
        {
            continue;
        }
        head.push_header(n, v);
    }
    if close {
        head.push(b"Connection: close\r\n");
    } else if minor_version == 0 {
        head.push(b"Connection: keep-alive\r\n");
    }
    let no_body = (100..200).contains(&resp.status) || resp.status == 204 || resp.status == 304;
    let chunked = resp.chunked && minor_version >= 1 && !no_body;
    if chunked {
        head.push(b"Transfer-Encoding: chunked\r\n\r\n");
    } else if !no_body {
        head.push(b"Content-Length: ");
        head.push_decimal(resp.body.len() as u64);
        head.push(b"\r\n\r\n");
    } else {
        head.push(b"\r\n");
    }
    if head_only || no_body {
        head.flush_to(out);
        return;
    }
    if !chunked {
        let n = resp.body.len();
        if n <= COPY_BODY_MAX {
            let mut small = [0u8; COPY_BODY_MAX];
            resp.body.copy_to(&mut small[..n], 0);
            head.push(&small[..n]);
            head.flush_to(out);
        } else {
            head.flush_to(out);
            out.append_iobuf(&resp.body);
        }
        return;
    }
    // One chunk per piece of the body, sharing its blocks.
    let mut pos = 0;
    for piece in resp.body.slices() {
        head.push_hex(piece.len() as u64);
        head.push(b"\r\n");
        head.flush_to(out);
        resp.body.append_to(out, piece.len(), pos);
        head.push(b"\r\n");
        pos += piece.len();
    }
    head.push(b"0\r\n\r\n");
    head.flush_to(out);
}

/// Bodies up to this size are copied behind the response head instead of being appended by
/// reference: copying 128 bytes costs less than an extra iovec and block reference.
pub(crate) const COPY_BODY_MAX: usize = 128;

/// Appends a request to `out`: `req`'s method, target and headers, `Content-Length` (unless the
/// request is chunked by its own header), and `body`.
pub(crate) fn serialize_request(out: &mut IOBuf, req: &HttpRequest, body: &IOBuf) {
    let mut head = HeadBuf::new();
    head.push_str(req.method());
    head.push(b" ");
    head.push_str(req.uri());
    head.push(b" HTTP/1.1\r\n");
    let mut chunked = false;
    for (n, v) in req.headers() {
        if n.eq_ignore_ascii_case("content-length") {
            continue;
        }
        chunked |= n.eq_ignore_ascii_case("transfer-encoding");
        head.push_header(n, v);
    }
    if !chunked {
        head.push(b"Content-Length: ");
        head.push_decimal(body.len() as u64);
        head.push(b"\r\n");
    }
    head.push(b"\r\n");
    head.flush_to(out);
    out.append_iobuf(body);
}

/// Marks a request body serialized by `Channel::http_call` (a whole request, head included).
pub(crate) const RAW_REQUEST_METHOD: &str = "";

impl Protocol for Http {
    fn name(&self) -> &'static str {
        Self::NAME
    }

    fn class(&self) -> ProtocolClass {
        ProtocolClass::NoMagic
    }

    fn parse(&self, source: &mut IOBuf, ctx: &ParseContext) -> ParseResult<Box<dyn InputMessage>> {
        let limits = limits(ctx);
        let wrap = |seq: u64, cut: Cut| -> Box<dyn InputMessage> {
            Box::new(HttpMessage {
                socket_id: ctx.socket_id,
                seq,
                cut,
            })
        };
        let sock = socket::address(ctx.socket_id);
        // A server connection discarding input (a refused body, after a closing request)
        // takes every byte, whatever it looks like.
        let existing = sock
            .as_ref()
            .and_then(|s| s.parsing_context.get())
            .and_then(|c| c.downcast_ref::<HttpConn>());
        let discarding = existing.is_some_and(|c| {
            let p = c.parse.lock().unwrap_or_else(|e| e.into_inner());
            p.skip > 0 || p.closing
        });
        let kind = if discarding {
            Kind::Request
        } else {
            parse::classify(source)?
        };
        if kind == Kind::Response {
            return parse::parse_response(source, &limits, ctx.read_eof).map(|c| wrap(0, c));
        }
        let Some(s) = sock else {
            // No socket (it failed meanwhile, or a test): parse with a fresh state.
            let mut state = ParseSide::default();
            return parse::parse_request(source, &limits, &mut state).map(|c| wrap(0, c));
        };
        let Some(conn) = HttpConn::of(&s) else {
            return Err(ParseError::TryOthers);
        };
        let mut state = conn.parse.lock().unwrap_or_else(|e| e.into_inner());
        match parse::parse_request(source, &limits, &mut state) {
            Ok(Cut::Skip) => Ok(wrap(0, Cut::Skip)),
            Ok(cut) => Ok(wrap(conn.take_seq(), cut)),
            Err(ParseError::NotEnoughData) => {
                if std::mem::take(&mut state.send_continue)
                    && conn.write_interim(
                        &s,
                        conn.peek_seq(),
                        IOBuf::from(&b"HTTP/1.1 100 Continue\r\n\r\n"[..]),
                    )
                {
                    state.continue_sent = true;
                }
                Err(ParseError::NotEnoughData)
            }
            Err(e) => Err(e),
        }
    }

    fn supported_connection_types(&self) -> ConnectionTypes {
        ConnectionTypes::of(&[ConnectionType::Pooled, ConnectionType::Short])
    }

    fn serves(&self) -> bool {
        true
    }

    fn serialize_request(
        &self,
        out: &mut IOBuf,
        request: &dyn MessageBody,
        _call: &CallInfo<'_>,
    ) -> Result<(), RpcError> {
        request.encode_body(out);
        Ok(())
    }

    fn pack_request(
        &self,
        out: &mut IOBuf,
        _correlation_id: i64,
        body: &IOBuf,
        call: &CallInfo<'_>,
        auth: Option<&dyn Authenticator>,
    ) -> Result<(), RpcError> {
        if call.method == RAW_REQUEST_METHOD {
            // Channel::http_call serialized the whole request.
            out.append_iobuf(body);
            return Ok(());
        }
        if !call.attachment.is_empty() {
            return Err(RpcError::new(
                ErrorCode::Request,
                "protocol http does not carry attachments",
            ));
        }
        let mut req = HttpRequest::new("POST", &format!("/{}/{}", call.service, call.method))
            .with_header("Content-Type", pb::BodyFormat::Proto.content_type());
        if let Some(id) = call.log_id {
            req.add_header("log-id", &id.to_string());
        }
        if let Some(auth) = auth {
            req.add_header("Authorization", &credential(auth)?);
        }
        if let Some(id) = call.request_id {
            req.add_header("x-request-id", id);
        }
        serialize_request(out, &req, body);
        Ok(())
    }

    fn process_request(
        &self,
        msg: Box<dyn InputMessage>,
        server: &dyn RequestSink,
    ) -> Result<(), RpcError> {
        let msg = downcast(msg)?;
        let Some(s) = socket::address(msg.socket_id) else {
            return Ok(()); // the connection is gone: nobody to answer
        };
        let Some(conn) = HttpConn::of(&s) else {
            return Err(RpcError::new(ErrorCode::Internal, "not an HTTP connection"));
        };
        let (resp, minor, close, head_only) = match msg.cut {
            Cut::Skip => return Ok(()),
            Cut::Reject {
                status,
                why,
                close,
                minor_version,
            } => (
                HttpResponse::text(status, format!("{why}\n")),
                minor_version,
                close,
                false,
            ),
            Cut::Response(..) => (
                HttpResponse::text(400, "an HTTP response was sent to a server\n"),
                1,
                true,
                false,
            ),
            Cut::Request(mut req, meta) => {
                req.remote = s.remote();
                req.socket_id = msg.socket_id;
                let resp = match server.http_dispatch() {
                    // A panicking handler must not leave a hole in the response order (every
                    // later response of the connection would wait for it): answer 500.
                    Some(d) => {
                        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| d.dispatch(&req)))
                            .unwrap_or_else(|_| {
                                HttpResponse::text(
                                    500,
                                    format!("the handler of {} panicked\n", req.path()),
                                )
                            })
                    }
                    None => HttpResponse::text(404, "this server serves no HTTP\n"),
                };
                (resp, req.minor_version, !meta.keep_alive, meta.head_only)
            }
        };
        let mut out = IOBuf::new();
        serialize_response(&mut out, &resp, minor, close, head_only);
        conn.respond(&s, msg.seq, out, close);
        Ok(())
    }

    fn process_response(
        &self,
        msg: Box<dyn InputMessage>,
        client: &dyn ResponseSink,
    ) -> Result<(), RpcError> {
        let msg = downcast(msg)?;
        let (mut resp, close) = match msg.cut {
            Cut::Skip => return Ok(()),
            Cut::Response(r, close) => (r, close),
            Cut::Request(..) | Cut::Reject { .. } => {
                return Err(RpcError::new(
                    ErrorCode::Response,
                    "an HTTP request arrived on a client connection",
                ))
            }
        };
        let Some(correlation_id) = client.pending_correlation_id() else {
            return Ok(()); // no call waits (it timed out): drop
        };
        let result = match pb::response_error(&resp) {
            Some(e) => Err(e),
            None => {
                let payload = std::mem::take(&mut resp.body);
                Ok(ResponseBody {
                    payload,
                    http: Some(Box::new(resp)),
                    ..ResponseBody::default()
                })
            }
        };
        if close {
            // Before the call completes: its pooled connection must not go back to the pool,
            // where the next call could take it before the close below.
            client.retire();
        }
        client.on_response(ClientResponse {
            socket_id: msg.socket_id,
            correlation_id,
            result,
        });
        if close {
            // The call is complete: fail the connection now, so that it is closed on our side
            // too (the server closes it after this response).
            if let Some(s) = socket::address(msg.socket_id) {
                crate::socket::Socket::set_failed(
                    &s,
                    RpcError::new(ErrorCode::Close, "the HTTP server closes the connection"),
                );
            }
        }
        Ok(())
    }

    fn method_name(&self, service: &str, method: &str) -> String {
        format!("{service}.{method}")
    }

    /// The credential of an HTTP connection is the first request's `Authorization` header
    /// (as brpc's HTTP server reads it). A first message that is not a well-formed request
    /// fails verification, which closes the connection.
    fn verify(&self, msg: &dyn InputMessage, auth: &dyn Authenticator) -> Result<(), RpcError> {
        let msg = msg
            .downcast_ref::<HttpMessage>()
            .ok_or_else(|| RpcError::new(ErrorCode::Internal, "not an HTTP message"))?;
        let peer = socket::address(msg.socket_id).and_then(|s| s.remote());
        match &msg.cut {
            Cut::Request(req, _) => match req.header("authorization") {
                Some(credential) => auth.verify_credential(credential.as_bytes(), peer),
                None => Err(RpcError::new(
                    ErrorCode::RpcAuth,
                    "first HTTP request carries no Authorization header",
                )),
            },
            _ => Err(RpcError::new(
                ErrorCode::RpcAuth,
                "first HTTP message is not a well-formed request",
            )),
        }
    }
}

/// The client's credential as an `Authorization` header value.
pub(crate) fn credential(auth: &dyn Authenticator) -> Result<String, RpcError> {
    let bytes = auth.generate_credential().map_err(|e| {
        RpcError::new(
            ErrorCode::Request,
            format!("failed to generate credential: {e}"),
        )
    })?;
    String::from_utf8(bytes).map_err(|_| {
        RpcError::new(
            ErrorCode::Request,
            "an HTTP credential must be text (it is sent as the Authorization header)",
        )
    })
}

/// Downcasts a message from the cut loop; only HTTP's own messages reach its hooks.
fn downcast(msg: Box<dyn InputMessage>) -> Result<HttpMessage, RpcError> {
    msg.downcast::<HttpMessage>()
        .map(|m| *m)
        .ok_or_else(|| RpcError::new(ErrorCode::Internal, "not an HTTP message"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(b: &IOBuf) -> String {
        String::from_utf8(b.to_vec()).unwrap()
    }

    #[test]
    fn response_serialization() {
        let mut out = IOBuf::new();
        let r = HttpResponse::text(200, "hello").with_header("Content-Length", "99");
        serialize_response(&mut out, &r, 1, false, false);
        assert_eq!(
            text(&out),
            "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n\r\nhello"
        );
        let mut out = IOBuf::new();
        serialize_response(&mut out, &r.clone().with_chunked(), 1, true, false);
        assert_eq!(
            text(&out),
            "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nConnection: close\r\n\
             Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"
        );
        // HTTP/1.0 keep-alive gets Content-Length, not chunks; HEAD gets no body.
        let mut out = IOBuf::new();
        serialize_response(&mut out, &r.clone().with_chunked(), 0, false, true);
        assert_eq!(
            text(&out),
            "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nConnection: keep-alive\r\n\
             Content-Length: 5\r\n\r\n"
        );
        let mut out = IOBuf::new();
        serialize_response(&mut out, &HttpResponse::new(204), 1, false, false);
        assert_eq!(text(&out), "HTTP/1.1 204 No Content\r\n\r\n");
    }

    /// With the real protocols: HTTP never claims baidu_std bytes (nor any prefix of them), a
    /// baidu_std connection keeps baidu_std preferred, and an HTTP request makes HTTP the
    /// preferred protocol of its connection.
    #[test]
    fn probing_with_baidu_std() {
        use crate::policy::baidu_std::BaiduStd;
        use crate::protocol::{cut_input_message, CutResult, ProtocolRegistry};
        use std::sync::Arc;
        let mut r = ProtocolRegistry::new();
        let http = r.register(Arc::new(Http)).unwrap();
        let baidu = r.register(Arc::new(BaiduStd)).unwrap();
        let ctx = ParseContext::new(SocketId::new(u32::MAX - 1, 1)); // resolves to no socket
        let mut frame = IOBuf::new();
        let call = CallInfo {
            service: "example.EchoService",
            method: "Echo",
            ..CallInfo::default()
        };
        BaiduStd
            .pack_request(&mut frame, 1, &IOBuf::from(&b"\x0a\x00"[..]), &call, None)
            .unwrap();
        let frame = frame.to_vec();
        // "P" could still be POST / PUT / PATCH (baidu_std, asked first, claims it); from "PR"
        // on HTTP says no.
        for n in 1..=frame.len() {
            let mut b = IOBuf::from(&frame[..n]);
            let want = if n == 1 {
                ParseError::NotEnoughData
            } else {
                ParseError::TryOthers
            };
            assert_eq!(Http.parse(&mut b, &ctx).unwrap_err(), want, "{n}");
            assert_eq!(b.len(), n);
        }
        let mut pref = None;
        let mut b = IOBuf::from(&frame[..]);
        assert!(matches!(
            cut_input_message(&mut b, &mut pref, &r, &ctx),
            CutResult::Message { protocol, .. } if protocol == baidu
        ));
        assert_eq!(pref, Some(baidu));
        let mut b = IOBuf::from(&b"GET /x HTTP/1.1\r\n\r\n"[..]);
        assert!(matches!(
            cut_input_message(&mut b, &mut pref, &r, &ctx),
            CutResult::Message { protocol, .. } if protocol == http
        ));
        assert_eq!(pref, Some(http));
        assert!(b.is_empty());
    }

    #[test]
    fn pb_request_packing() {
        let call = CallInfo {
            service: "example.EchoService",
            method: "Echo",
            log_id: Some(5),
            ..CallInfo::default()
        };
        let mut out = IOBuf::new();
        Http.pack_request(&mut out, 1, &IOBuf::from(&b"\x0a\x00"[..]), &call, None)
            .unwrap();
        assert_eq!(
            out.to_vec(),
            b"POST /example.EchoService/Echo HTTP/1.1\r\nContent-Type: application/proto\r\n\
              log-id: 5\r\nContent-Length: 2\r\n\r\n\x0a\x00"
                .to_vec()
        );
        let att = IOBuf::from(&b"x"[..]);
        let call = CallInfo {
            attachment: &att,
            ..call
        };
        let e = Http
            .pack_request(&mut out, 1, &IOBuf::new(), &call, None)
            .unwrap_err();
        assert_eq!(e.code, ErrorCode::Request);
    }
}
