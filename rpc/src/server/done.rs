//! The server side of a "done" handle: how one request's answer goes back (brpc's
//! `SendRpcResponse` run by `done->Run()`).
//!
//! A dispatched request owns a [`ServerResponder`] inside the handler's
//! [`ServiceDone`](crate::service::ServiceDone). It holds, for as long as the request is
//! unanswered:
//! - one unit of the server's `inflight` count (what `join` waits for), released when the
//!   responder is dropped — *after* the response was written, so `join` never closes a
//!   connection under a response being written;
//! - one unit of the server's and the method's concurrency counts (`max_concurrency`),
//!   released *before* the response is written, so a client that got its answer and calls
//!   again is never refused by its own finished request.
//!
//! The responder may travel to another fiber or thread and answer there; the server stays
//! alive meanwhile (it holds an `Arc`).

use super::{ServerInner, ServiceEntry};
use crate::compress;
use crate::errors::{ErrorCode, RpcError};
use crate::service::{CallContext, Responder};
use crate::socket::SocketId;
use spindle_iobuf::IOBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;

/// Answers one dispatched request.
pub(crate) struct ServerResponder {
    /// The server (counts, and the response path).
    pub(super) server: Arc<ServerInner>,
    /// The service and the method index whose concurrency slot this request holds.
    pub(super) entry: Arc<ServiceEntry>,
    /// The method's index in `entry`.
    pub(super) method: usize,
    /// Where the answer goes.
    pub(super) socket_id: SocketId,
    /// Echoed in the answer.
    pub(super) correlation_id: i64,
    /// Whether the server-wide concurrency slot (counted only under a `max_concurrency`) is
    /// still held. The method's slot is its statistics' concurrency, released by `record`.
    pub(super) holds_server_slot: bool,
    /// When the method's statistics started counting this request (`/status`, `/vars`);
    /// taken when the outcome is recorded.
    pub(super) started: Option<std::time::Instant>,
    /// Where the answer goes instead of a baidu_std frame to `socket_id` (HTTP: back to the
    /// fiber that writes the HTTP response).
    pub(super) reply: Option<Reply>,
}

/// A response path other than baidu_std's: receives the compressed body, the attachment and
/// the compression, or the error.
pub(crate) type Reply =
    Box<dyn FnOnce(Result<(IOBuf, IOBuf, compress::CompressType), RpcError>) + Send>;

impl ServerResponder {
    /// Records the request's outcome in the method's statistics (once).
    fn record(&mut self, ok: bool) {
        if let Some(started) = self.started.take() {
            self.entry.methods[self.method]
                .status
                .on_responded(started, ok);
        }
    }

    /// Releases the server-wide concurrency slot (once).
    fn release_slots(&mut self) {
        if std::mem::take(&mut self.holds_server_slot) {
            self.server.concurrency.fetch_sub(1, Ordering::AcqRel);
        }
    }
}

impl Responder for ServerResponder {
    fn respond(mut self: Box<Self>, ctx: CallContext, result: Result<IOBuf, RpcError>) {
        let result = result.and_then(|plain| {
            let body =
                compress::compress_owned(ctx.response_compress_type, plain).map_err(|e| {
                    let d = self.entry.service.descriptor();
                    RpcError::new(
                        ErrorCode::Internal,
                        format!(
                            "cannot compress the response of {}.{}: {e}",
                            d.full_name, d.methods[self.method].name
                        ),
                    )
                })?;
            Ok((body, ctx.response_attachment, ctx.response_compress_type))
        });
        // Both slots go before the answer is written (module doc).
        self.release_slots();
        self.record(result.is_ok());
        match self.reply.take() {
            Some(reply) => reply(result),
            None => self
                .server
                .respond(self.socket_id, self.correlation_id, result),
        }
        // Dropping `self` now releases the request's `inflight` unit.
    }
}

impl Drop for ServerResponder {
    fn drop(&mut self) {
        self.record(false);
        self.release_slots();
        self.server.request_done();
    }
}
