//! What processing hooks deliver: a decoded request to the server, a decoded response to the
//! channel. The server and channel implement the sink traits.

use crate::compress::CompressType;
use crate::errors::RpcError;
use crate::policy::http::{HttpDispatch, HttpResponse};
use crate::socket::SocketId;
use spindle_iobuf::IOBuf;
use std::collections::HashMap;

/// A request ready for method lookup (what brpc's `ProcessRpcRequest` fills into the
/// controller before calling the method).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ServerRequest {
    /// Where the request came from; the response goes back there.
    pub socket_id: SocketId,
    /// Echoed in the response so the client can match it.
    pub correlation_id: i64,
    /// Full service name.
    pub service: String,
    /// Method name.
    pub method: String,
    /// The request body, already decompressed.
    pub payload: IOBuf,
    /// The attachment (never compressed).
    pub attachment: IOBuf,
    /// How the request body was compressed; a server answers in kind by default.
    pub compress_type: CompressType,
    /// `log_id` from the client, if any.
    pub log_id: Option<i64>,
    /// The client's timeout, if it sent one.
    pub timeout_ms: Option<i32>,
    /// Tracing: the trace this call belongs to.
    pub trace_id: Option<i64>,
    /// Tracing: the client's span of this call.
    pub span_id: Option<i64>,
    /// Tracing: the span the client's span descends from.
    pub parent_span_id: Option<i64>,
    /// `request_id` from the client, if any.
    pub request_id: Option<String>,
    /// Free-form key/values (`RpcMeta.user_fields`).
    pub user_fields: HashMap<String, String>,
}

/// Receives decoded requests: implemented by the server.
pub trait RequestSink: Send + Sync {
    /// Handles one request. Called in the fiber that processes the message; may block it.
    fn on_request(&self, request: ServerRequest);

    /// Answers a request that failed before reaching a method (undecodable body, unknown
    /// compression, missing request meta) with `error`, usually `EREQUEST`.
    fn reply_error(&self, socket_id: SocketId, correlation_id: i64, error: RpcError);

    /// Where HTTP requests go (plain handlers and protobuf methods); `None` (the default): the
    /// sink serves no HTTP and every HTTP request is answered 404.
    fn http_dispatch(&self) -> Option<&dyn HttpDispatch> {
        None
    }

    /// Whether the sink accepts the RDMA handshake (the server's `ServerOptions::rdma`);
    /// `false` (the default): a client's hello is answered with a refusal.
    fn rdma_enabled(&self) -> bool {
        false
    }
}

/// A successful response body.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ResponseBody {
    /// The response body, already decompressed.
    pub payload: IOBuf,
    /// The attachment.
    pub attachment: IOBuf,
    /// How the server compressed the body.
    pub compress_type: CompressType,
    /// HTTP: the response's status and headers (its body is `payload`); `None` for other
    /// protocols.
    pub http: Option<Box<HttpResponse>>,
}

/// A response for the call waiting on `correlation_id`.
#[derive(Debug, Clone, PartialEq)]
pub struct ClientResponse {
    /// The connection it arrived on.
    pub socket_id: SocketId,
    /// Which call it answers.
    pub correlation_id: i64,
    /// The body, or the error the server reported (or a decoding error).
    pub result: Result<ResponseBody, RpcError>,
}

/// Receives decoded responses: implemented by the channel's correlation table, which refuses
/// stale or duplicate correlation ids in O(1).
pub trait ResponseSink: Send + Sync {
    /// Completes the call waiting on `response.correlation_id`, if it still waits.
    fn on_response(&self, response: ClientResponse);

    /// The correlation id of the one call waiting on this connection, for protocols whose
    /// responses carry none (HTTP/1.1 over pooled and short connections, where one call is in
    /// flight per connection). `None` when no call or several wait.
    fn pending_correlation_id(&self) -> Option<i64> {
        None
    }

    /// The server closes this connection after the response being processed (HTTP's
    /// `Connection: close`): it must not carry another call. Called before
    /// [`ResponseSink::on_response`], so the connection is never handed to a new call between
    /// the response and the close.
    fn retire(&self) {}
}
