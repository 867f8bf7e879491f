//! Per-connection state of an HTTP server connection, kept in the socket's
//! `parsing_context`: the parser's state and the **ordered writer** that makes pipelined
//! responses leave in request order.
//!
//! # Ordering
//!
//! The input messenger processes the messages of one read concurrently (all but the last in new
//! fibers), so the responses to pipelined requests can be ready in any order. Each request gets
//! a sequence number when it is cut (`next_seq`, by the connection's single reader, so the
//! numbers follow the byte order); [`HttpConn::respond`] writes response `seq` only when every
//! earlier one was written, parking it otherwise, and a write releases the parked responses
//! that follow it — together, in one write. Writes happen under the `out` lock, so the socket's
//! write list receives them in sequence order.
//!
//! # Closing
//!
//! A response that ends the connection (`Connection: close`, HTTP/1.0 without keep-alive, a
//! malformed request) is the last one written: later responses are dropped. After it, the
//! parser discards all input; once the response left the socket, the write side is shut down
//! (the client reads the response, then EOF) and the connection is failed when the client
//! closes its side, or after [`LINGER`] at the latest. Shutting down only the write side first
//! avoids the reset a close with unread input would send, which could destroy the response
//! before the client read it.

use super::parse::ParseSide;
use crate::errors::{ErrorCode, RpcError};
use crate::protocol::IOBuf;
use crate::socket::{self, Socket, SocketHandle, SocketId};
use spindle_runtime::timer_thread;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How long a closing connection waits for the client to close before it is failed.
pub const LINGER: Duration = Duration::from_secs(5);

/// The write side.
#[derive(Debug, Default)]
struct OutSide {
    /// The sequence number of the next response to write.
    next: u64,
    /// Responses ready before their turn: `seq → (bytes, close after)`.
    parked: BTreeMap<u64, (IOBuf, bool)>,
    /// A closing response was written: nothing more is.
    closed: bool,
}

/// The HTTP state of one server connection.
#[derive(Debug, Default)]
pub(crate) struct HttpConn {
    /// The parser's state (locked only by the connection's reader: never contended).
    pub(crate) parse: Mutex<ParseSide>,
    /// Sequence number of the next request cut (reader only; atomic for `Sync`).
    next_seq: AtomicU64,
    /// The ordered writer.
    out: Mutex<OutSide>,
}

impl HttpConn {
    /// The state of `socket`, created on first use. `None` if the socket carries another
    /// protocol's state.
    pub(crate) fn of(socket: &Socket) -> Option<&HttpConn> {
        socket
            .parsing_context
            .get_or_init(|| Box::new(HttpConn::default()))
            .downcast_ref::<HttpConn>()
    }

    /// A sequence number for the request just cut.
    pub(crate) fn take_seq(&self) -> u64 {
        self.next_seq.fetch_add(1, Ordering::Relaxed)
    }

    /// The sequence number the next request will get (for `100 Continue`).
    pub(crate) fn peek_seq(&self) -> u64 {
        self.next_seq.load(Ordering::Relaxed)
    }

    /// Writes an interim response (`100 Continue`) for the request that will get `seq`, only
    /// if it is that request's turn (otherwise the client sends its body after its own
    /// timeout, which HTTP allows). Returns whether it was written.
    pub(crate) fn write_interim(&self, s: &SocketHandle, seq: u64, bytes: IOBuf) -> bool {
        let out = self.out.lock().unwrap_or_else(|e| e.into_inner());
        if out.closed || out.next != seq || !out.parked.is_empty() {
            return false;
        }
        Socket::write(s, bytes).is_ok()
    }

    /// Writes response `seq` in its turn (see the module doc); `close`: the connection ends
    /// after it. The responses parked behind it that are ready in sequence go out with it in
    /// one write (pipelined responses are batched into one `writev`).
    pub(crate) fn respond(&self, s: &SocketHandle, seq: u64, bytes: IOBuf, close: bool) {
        let mut out = self.out.lock().unwrap_or_else(|e| e.into_inner());
        if out.closed {
            return;
        }
        if seq != out.next {
            out.parked.insert(seq, (bytes, close));
            return;
        }
        let mut batch = bytes;
        let mut closing = close;
        out.next += 1;
        while !closing {
            let next = out.next;
            let Some((more, close)) = out.parked.remove(&next) else {
                break;
            };
            batch.append_owned(more);
            closing = close;
            out.next += 1;
        }
        let failed = Socket::write(s, batch).is_err();
        if failed || closing {
            out.closed = true;
            out.parked.clear();
        }
        if closing && !failed {
            drop(out);
            close_after_write(s);
        }
    }
}

/// Shuts the write side of `s` down once its queued bytes were written, and fails it when the
/// peer closes or after [`LINGER`] (module doc). Runs in a new fiber; returns at once.
fn close_after_write(s: &SocketHandle) {
    let id = s.id();
    let deadline = Instant::now() + LINGER;
    spindle_runtime::spawn(move || {
        let Some(s) = socket::address(id) else { return };
        while s.write.unwritten_bytes() > 0 && Instant::now() < deadline && !s.failed() {
            spindle_runtime::sleep(Duration::from_millis(1));
        }
        if !s.failed() {
            // SAFETY: `s` holds the socket, so its fd is open; shutdown does not release it.
            unsafe { libc::shutdown(s.fd(), libc::SHUT_WR) };
        }
        drop(s);
        timer_thread::schedule(deadline, move || fail(id));
    });
}

/// Fails the socket `id` if it still lives.
fn fail(id: SocketId) {
    if let Some(s) = socket::address(id) {
        Socket::set_failed(
            &s,
            RpcError::new(
                ErrorCode::Close,
                "HTTP connection closed after its response",
            ),
        );
    }
}
