//! A channel's connection: one socket (multiplexing every call for connection type "single",
//! one call at a time for pooled and short), and the table of call attempts waiting on it.
//!
//! # Invariants
//!
//! - A call's correlation id is the raw value of its [`FiberId`]; the response handler, the
//!   timeout timer and the connection-failure path all *lock* the id, and whoever locks it
//!   first completes the call and destroys the id. Every later attempt finds a stale id and
//!   does nothing: a late or duplicate response is dropped in O(1), a call completes once.
//! - `pending` holds the ids of call attempts written on this connection; when the socket fails,
//!   each is sent `EFAILEDSOCKET` (ids already completed are stale and ignored).

use super::call::{complete, CallData, CompletedOn};
use crate::errors::{ErrorCode, RpcError};
use crate::input_messenger::{default_registry, InputMessenger, MessageSink};
use crate::protocol::{ClientResponse, InputMessage, Protocol, ResponseSink};
use crate::socket::{self, sockaddr, Socket, SocketHandle, SocketId};
use rustc_hash::FxHashSet;
use spindle_runtime::fiber_id::FiberId;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// The calls waiting on one connection.
#[derive(Default)]
pub(crate) struct ClientConn {
    /// Raw ids of calls written and not yet completed (a multiplicative hash: the ids are
    /// ours, not an attacker's, and SipHash was a visible share of a small call's cost).
    pub(crate) pending: Mutex<FxHashSet<u64>>,
    /// The server closes the connection after the current response: never reuse it.
    pub(crate) retired: AtomicBool,
}

impl ClientConn {
    pub(crate) fn add(&self, raw: u64) {
        self.pending
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(raw);
    }

    pub(crate) fn remove(&self, raw: u64) {
        self.pending
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&raw);
    }
}

/// Completes the call `response` answers, from `on`. A stale id (the call already completed:
/// timeout, failure, cancel, a faster attempt, a duplicate) drops the response.
fn complete_response(response: ClientResponse, on: CompletedOn) {
    let raw = response.correlation_id as u64;
    if let Ok(guard) = FiberId::<CallData>::from_raw(raw).lock() {
        complete(guard, response.result, Some(raw), on);
    }
}

impl ResponseSink for ClientConn {
    fn on_response(&self, response: ClientResponse) {
        complete_response(response, CompletedOn::Caller);
    }

    fn retire(&self) {
        self.retired.store(true, Ordering::Release);
    }

    fn pending_correlation_id(&self) -> Option<i64> {
        let pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        let mut ids = pending.iter();
        match (ids.next(), ids.next()) {
            (Some(&raw), None) => Some(raw as i64),
            _ => None,
        }
    }
}

/// A [`ClientConn`] as the connection's reader sees it (responses it processes in place, and
/// the last response of a read): calls complete there, and a completion callback (user code,
/// it may block) gets a fiber of its own, so it never holds up the connection.
struct OnReader<'a>(&'a ClientConn);

impl ResponseSink for OnReader<'_> {
    fn on_response(&self, response: ClientResponse) {
        complete_response(response, CompletedOn::Reader);
    }

    fn retire(&self) {
        self.0.retire();
    }

    fn pending_correlation_id(&self) -> Option<i64> {
        self.0.pending_correlation_id()
    }
}

/// The messages of one client connection go to its [`ClientConn`].
struct ClientSink(Arc<ClientConn>);

/// Hands a response to `to`; a response the protocol cannot process is logged and dropped.
fn process_response(
    protocol: &Arc<dyn Protocol>,
    msg: Box<dyn InputMessage>,
    to: &dyn ResponseSink,
) {
    let id = msg.socket_id();
    if let Err(e) = protocol.process_response(msg, to) {
        eprintln!(
            "spindle-rpc: {} response on connection {id} not processed: {e}",
            protocol.name()
        );
    }
}

impl MessageSink for ClientSink {
    fn in_place(&self, protocol: &dyn Protocol, msg: &dyn InputMessage) -> bool {
        protocol.response_in_place(msg)
    }

    fn process_in_place(&self, protocol: &Arc<dyn Protocol>, msg: Box<dyn InputMessage>) {
        process_response(protocol, msg, &OnReader(&self.0));
    }

    fn process(&self, protocol: &Arc<dyn Protocol>, msg: Box<dyn InputMessage>) {
        process_response(protocol, msg, &*self.0);
    }

    fn on_failed(&self, _id: SocketId) {
        let ids: Vec<u64> = self
            .0
            .pending
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .drain()
            .collect();
        for raw in ids {
            let _ = FiberId::<CallData>::from_raw(raw).error(ErrorCode::FailedSocket.code());
        }
    }
}

/// [`connect`], then with `use_rdma` the RDMA handshake, within the same deadline and before
/// the connection is handed to any call; whatever the handshake decides, the connection is
/// usable (RDMA or TCP).
pub(crate) fn connect_with_transport(
    addr: SocketAddr,
    deadline: Instant,
    timeout_ms: i64,
    use_rdma: bool,
) -> Result<(SocketHandle, Arc<ClientConn>), RpcError> {
    let (s, conn) = connect(addr, deadline, timeout_ms)?;
    if use_rdma {
        crate::policy::rdma_handshake::client_handshake(&s, deadline)?;
    }
    Ok((s, conn))
}

/// Connects to `addr` without blocking the worker: a non-blocking `connect`, then a wait on the
/// socket's `EPOLLOUT` butex until it completes or `deadline` (`connect_timeout_ms`) passes.
pub(crate) fn connect(
    addr: SocketAddr,
    deadline: Instant,
    timeout_ms: i64,
) -> Result<(SocketHandle, Arc<ClientConn>), RpcError> {
    let os_err = |e: io::Error, what: &str| {
        RpcError::new(
            ErrorCode::Other(e.raw_os_error().unwrap_or(libc::EIO)),
            format!("{what} {addr} failed: {e}"),
        )
    };
    let fd = sockaddr::tcp_socket(&addr).map_err(|e| os_err(e, "socket for"))?;
    socket::socket::set_int_opt(fd, libc::IPPROTO_TCP, libc::TCP_NODELAY, 1);
    if let Err(e) = sockaddr::start_connect(fd, &addr) {
        sockaddr::close(fd);
        return Err(os_err(e, "connect to"));
    }
    let conn = Arc::new(ClientConn::default());
    let messenger = Arc::new(InputMessenger::new(
        default_registry().clone(),
        Arc::new(ClientSink(conn.clone())),
    ));
    let s = Socket::create(fd, Some(addr), messenger, true)?;
    // The reader may fail the socket first (it reads the connect error): report its reason.
    let failed = |s: &SocketHandle| {
        let why = s.failure();
        RpcError::new(
            why.as_ref().map_or(ErrorCode::FailedSocket, |e| e.code),
            format!(
                "connect to {addr} failed: {}",
                why.map_or_else(|| "closed".to_owned(), |e| e.text)
            ),
        )
    };
    loop {
        let seq = s.write.epollout_seq();
        if s.failed() {
            return Err(failed(&s));
        }
        if sockaddr::poll_writable(s.fd()) {
            return match socket::socket::take_socket_error(s.fd()) {
                Ok(()) if s.failed() => Err(failed(&s)),
                Ok(()) => Ok((s, conn)),
                Err(e) => {
                    let err = os_err(e, "connect to");
                    Socket::set_failed(&s, err.clone());
                    Err(err)
                }
            };
        }
        if Instant::now() >= deadline {
            let err = RpcError::new(
                ErrorCode::Other(libc::ETIMEDOUT),
                format!("connect to {addr} timed out after connect_timeout_ms={timeout_ms}"),
            );
            Socket::set_failed(&s, err.clone());
            return Err(err);
        }
        s.write.wait_epollout(seq, deadline);
    }
}
