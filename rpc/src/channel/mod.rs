//! The client channel (brpc's `Channel`) to one server.
//!
//! Connection types: **single** (default for baidu_std) — one connection multiplexes every
//! call, responses matched by correlation id; **pooled** — one call in flight per
//! connection, idle connections kept in a pool, a connection whose call failed is closed (a
//! late response could still arrive on it); **short** — a new connection per call, closed when
//! the call completes.
//!
//! # A call
//!
//! 1. The request is serialized once (`Protocol::serialize_request`).
//! 2. The call gets one `FiberId` (a [`CallId`]) with `max_retry + 2` versions; its data
//!    (`call::CallData`) holds the completion callback, the deadline and backup timers and the
//!    attempts in flight. Attempt `k` (first try, retry, backup request) is framed
//!    (`Protocol::pack_request`) with correlation id `id + k`, listed in its connection's
//!    pending table and written with the lock-free [`Socket::write`].
//! 3. Whoever locks the id first decides: a response of any attempt (input messenger →
//!    `process_response`), the deadline timer (`ERPCTIMEDOUT`), [`CallId::cancel`]
//!    (`ECANCELED`), or the failure of the last attempt in flight (connection failure
//!    `EFAILEDSOCKET`, connect or write error) that is not retried. The call completes once and
//!    the id is destroyed; everything later finds it stale (a late, losing or duplicate
//!    response is dropped). The backup timer adds one attempt while the first is alone in
//!    flight. Details and invariants: `call.rs`.
//! 4. Connection errors are retried — up to `max_retry` times, within the deadline, while the
//!    channel exists — for synchronous and asynchronous calls; never a timeout, a cancel or an
//!    error the server answered. Synchronous calls park the calling fiber (or block the
//!    calling thread) until the callback ran; asynchronous ones return a [`CallId`] at once.
//!
//! The single connection is made on first use and remade after it failed, under a fiber mutex
//! (a connect parks the caller on the socket's `EPOLLOUT` butex, `connect_timeout_ms`).

mod call;
mod cancel;
mod connection;
mod health_check;
mod http_call;

pub use call::{CallId, CallResult};
pub use cancel::CancelHandle;
pub use health_check::HEALTH_CHECK_INTERVAL;

use crate::builtin::method_status::ClientCall;
use crate::errors::{ErrorCode, RpcError};
use crate::input_messenger::default_registry;
use crate::protocol::{Authenticator, CallInfo, ConnectionType, MessageBody, Protocol};
use crate::service::{CallContext, ClientChannel, MethodDescriptor};
use crate::socket::{self, Socket, SocketHandle, SocketId};
use call::{CallPlan, SyncWaiter};
use connection::ClientConn;
use spindle_iobuf::IOBuf;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Options of a [`Channel`] (brpc's `ChannelOptions`; brpc's defaults).
#[derive(Clone)]
pub struct ChannelOptions {
    /// Protocol name: `"baidu_std"` (the default) or `"http"` (pooled or short connections;
    /// see `Channel::http_call`).
    pub protocol: String,
    /// Connection type; `None` = the first of single, pooled, short the protocol supports; an
    /// explicit type the protocol does not support fails at `Channel::new`.
    pub connection_type: Option<ConnectionType>,
    /// Deadline of a whole call, retries included, in ms; `<= 0` = none. Default 500.
    pub timeout_ms: i64,
    /// Deadline of one connect in ms. Default 200.
    pub connect_timeout_ms: i64,
    /// Extra attempts after a connection error. Default 3.
    pub max_retry: u32,
    /// Backup request delay in ms (brpc `backup_request_ms`); `None` = off (the default). When
    /// a call got no response after this long, the same request is sent once more — on
    /// another connection for pooled and short, on the same one for single — and whichever
    /// response comes first completes the call; the other is dropped. The call's deadline is
    /// unchanged, and a delay not shorter than the timeout sends nothing. Negative values are
    /// refused at `Channel::new`.
    pub backup_request_ms: Option<i64>,
    /// Credentials sent with every request (baidu_std `authentication_data`).
    pub authenticator: Option<Arc<dyn Authenticator>>,
    /// Ask for RDMA on every new connection (brpc's `use_rdma`): after the TCP connect the
    /// RDMA handshake runs before the connection carries a call; any failure leaves the
    /// connection on TCP. Default false. See `docs/rdma.md`.
    pub use_rdma: bool,
}

impl Default for ChannelOptions {
    fn default() -> Self {
        ChannelOptions {
            protocol: "baidu_std".to_owned(),
            connection_type: None,
            timeout_ms: 500,
            connect_timeout_ms: 200,
            max_retry: 3,
            backup_request_ms: None,
            authenticator: None,
            use_rdma: false,
        }
    }
}

impl std::fmt::Debug for ChannelOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChannelOptions")
            .field("protocol", &self.protocol)
            .field("connection_type", &self.connection_type)
            .field("timeout_ms", &self.timeout_ms)
            .field("connect_timeout_ms", &self.connect_timeout_ms)
            .field("max_retry", &self.max_retry)
            .field("backup_request_ms", &self.backup_request_ms)
            .field("authenticator", &self.authenticator.is_some())
            .field("use_rdma", &self.use_rdma)
            .finish()
    }
}

struct ChannelInner {
    server: SocketAddr,
    protocol: Arc<dyn Protocol>,
    options: ChannelOptions,
    /// The connection type in use.
    ty: ConnectionType,
    /// Single: the current connection, made on demand.
    conn: spindle_runtime::sync::Mutex<Option<(SocketId, Arc<ClientConn>)>>,
    /// Pooled: idle connections (one call in flight per connection).
    pool: Mutex<Vec<(SocketId, Arc<ClientConn>)>>,
    /// `Some(last connect error)` while the health check runs (`health_check`).
    unreachable: Mutex<Option<RpcError>>,
}

/// Closes the socket `id` on behalf of a channel.
fn close(id: SocketId, why: &str) {
    if let Some(s) = socket::address(id) {
        Socket::set_failed(&s, RpcError::new(ErrorCode::Close, why.to_owned()));
    }
}

impl Drop for ChannelInner {
    fn drop(&mut self) {
        if let Some((id, _)) = self.conn.get_mut().take() {
            close(id, "channel dropped");
        }
        let pool = std::mem::take(self.pool.get_mut().unwrap_or_else(|e| e.into_inner()));
        for (id, _) in pool {
            close(id, "channel dropped");
        }
    }
}

/// A channel to one server. Cheap to clone (clones share the connection); dropping the last
/// clone closes the connections (calls in flight then fail with `EFAILEDSOCKET`, without
/// retry).
#[derive(Clone)]
pub struct Channel {
    inner: Arc<ChannelInner>,
}

impl std::fmt::Debug for Channel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Channel")
            .field("server", &self.inner.server)
            .field("options", &self.inner.options)
            .finish()
    }
}

/// Whether `e` is a connection error worth another attempt.
fn retriable(e: &RpcError) -> bool {
    match e.code {
        ErrorCode::FailedSocket => true,
        ErrorCode::Other(n) => [
            libc::ECONNREFUSED,
            libc::ECONNRESET,
            libc::EPIPE,
            libc::ETIMEDOUT,
            libc::EHOSTUNREACH,
            libc::ENETUNREACH,
        ]
        .contains(&n),
        _ => false,
    }
}

impl Channel {
    /// A channel to `server` (`"ip:port"` or `"host:port"`, resolved now; the first address
    /// wins). Fails for an unknown protocol, an unsupported or unimplemented connection type,
    /// a backup request delay, or an address that does not resolve. Does not connect yet.
    pub fn new(server: &str, options: ChannelOptions) -> Result<Channel, RpcError> {
        let registry = default_registry();
        let protocol = registry
            .find(&options.protocol)
            .and_then(|i| registry.get(i))
            .cloned()
            .ok_or_else(|| {
                RpcError::new(
                    ErrorCode::Internal,
                    format!("unknown protocol=\"{}\"", options.protocol),
                )
            })?;
        let ty = protocol
            .supported_connection_types()
            .select(options.connection_type, protocol.name())
            .map_err(|e| RpcError::new(ErrorCode::Internal, e.to_string()))?;
        if let Some(ms) = options.backup_request_ms.filter(|ms| *ms < 0) {
            return Err(RpcError::new(
                ErrorCode::Internal,
                format!("backup_request_ms={ms} is negative (None turns backup requests off)"),
            ));
        }
        if options.use_rdma {
            // Seed 004: refuse a dispatcher / poller / worker mix that could not serve RDMA.
            spindle_rdma::threading::validate_threading(
                &spindle_rdma::threading::ThreadingConfig::from_flags(),
            )
            .map_err(|e| RpcError::new(ErrorCode::Internal, e.to_string()))?;
        }
        let addr = protocol
            .parse_server_address(server)
            .map_err(|e| RpcError::new(ErrorCode::Internal, e.to_string()))?;
        Ok(Channel {
            inner: Arc::new(ChannelInner {
                server: addr,
                protocol,
                options,
                ty,
                conn: spindle_runtime::sync::Mutex::new(None),
                pool: Mutex::new(Vec::new()),
                unreachable: Mutex::new(None),
            }),
        })
    }

    /// The server's address.
    pub fn server(&self) -> SocketAddr {
        self.inner.server
    }

    /// The call's timeout: `ctx.timeout_ms` if set, else the channel's `timeout_ms`.
    fn timeout_ms(&self, ctx: &CallContext) -> i64 {
        ctx.timeout_ms.unwrap_or(self.inner.options.timeout_ms)
    }

    /// The call's deadline (`None` for a timeout `<= 0`), counted from `now` if the caller
    /// already read the clock.
    fn deadline(timeout_ms: i64, now: Option<Instant>) -> Option<Instant> {
        (timeout_ms > 0)
            .then(|| now.unwrap_or_else(Instant::now) + Duration::from_millis(timeout_ms as u64))
    }

    /// The connection type in use (the one asked for, or the protocol's preferred one).
    pub fn connection_type(&self) -> ConnectionType {
        self.inner.ty
    }

    /// A new connection within `connect_timeout_ms` (and the call's deadline).
    fn connect(
        &self,
        deadline: Option<Instant>,
    ) -> Result<(SocketHandle, Arc<ClientConn>), RpcError> {
        let ms = self.inner.options.connect_timeout_ms.max(1);
        let mut cdl = Instant::now() + Duration::from_millis(ms as u64);
        if let Some(d) = deadline {
            cdl = cdl.min(d);
        }
        connection::connect_with_transport(self.inner.server, cdl, ms, self.inner.options.use_rdma)
    }

    /// A connection for one call: the shared one (single), an idle or new one (pooled), a
    /// new one (short). While the server is marked unreachable (health check, see
    /// `health_check`), fails at once with the last connect error instead of connecting.
    pub(crate) fn connection(
        &self,
        deadline: Option<Instant>,
    ) -> Result<(SocketHandle, Arc<ClientConn>), RpcError> {
        let mut single = None;
        match self.inner.ty {
            ConnectionType::Single => {
                let g = self.inner.conn.lock();
                if let Some((id, cc)) = &*g {
                    if let Some(s) = socket::address(*id) {
                        return Ok((s, cc.clone()));
                    }
                }
                single = Some(g);
            }
            ConnectionType::Short => {}
            ConnectionType::Pooled => loop {
                let idle = self
                    .inner
                    .pool
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .pop();
                let Some((id, cc)) = idle else { break };
                if let Some(s) = socket::address(id) {
                    return Ok((s, cc));
                }
            },
        }
        let marked = self
            .inner
            .unreachable
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        if let Some(last) = marked {
            return Err(health_check::fail_fast(&self.inner, &last));
        }
        match self.connect(deadline) {
            Ok((s, cc)) => {
                if let Some(mut g) = single {
                    *g = Some((s.id(), cc.clone()));
                }
                Ok((s, cc))
            }
            Err(e) => {
                if retriable(&e) {
                    health_check::start(&self.inner, &e);
                }
                Err(e)
            }
        }
    }

    /// The call plan of `method` with `ctx`: the request serialized once; the deadline counts
    /// from `now` (the call's start) when given.
    fn plan(
        &self,
        method: &MethodDescriptor,
        ctx: &CallContext,
        request: &dyn MessageBody,
        now: Option<Instant>,
    ) -> Result<CallPlan, RpcError> {
        let timeout_ms = self.timeout_ms(ctx);
        let deadline = Self::deadline(timeout_ms, now);
        let call = CallInfo {
            service: method.service,
            method: method.name,
            compress_type: ctx.request_compress_type,
            attachment: &ctx.request_attachment,
            log_id: ctx.log_id,
            timeout_ms: deadline.map(|_| timeout_ms.min(i32::MAX as i64) as i32),
            ..CallInfo::default()
        };
        let mut body = IOBuf::new();
        self.inner
            .protocol
            .serialize_request(&mut body, request, &call)?;
        Ok(CallPlan {
            channel: Arc::downgrade(&self.inner),
            service: method.service,
            method: method.name,
            compress_type: ctx.request_compress_type,
            attachment: ctx.request_attachment.clone(),
            log_id: ctx.log_id,
            timeout_ms: call.timeout_ms,
            body,
            deadline,
            max_retry: self.inner.options.max_retry,
            waiter: SyncWaiter::default(),
        })
    }

    /// Calls `method` synchronously: parks the calling fiber (or blocks the thread) until the
    /// response, the deadline (`ERPCTIMEDOUT`; `ctx.timeout_ms` overrides the channel's) or a
    /// final error. Retries connection errors and sends a backup request as the module doc
    /// says.
    pub fn call_method(
        &self,
        method: &MethodDescriptor,
        ctx: &CallContext,
        request: &dyn MessageBody,
    ) -> CallResult {
        let recording = ClientCall::start(method.service, method.name);
        let r = self
            .plan(method, ctx, request, recording.started_at())
            .and_then(|plan| {
                let plan = Arc::new(plan);
                call::start(
                    plan.clone(),
                    self.inner.options.backup_request_ms,
                    call::Done::Sync(plan.clone()),
                    ctx.cancel.as_ref(),
                );
                plan.waiter.wait()
            });
        recording.finish(r.is_ok());
        r
    }

    /// Calls `method` asynchronously: returns a [`CallId`] at once (after connecting, if the
    /// connection is new); `done` runs exactly once with the outcome — in a fiber, or on the
    /// caller if the call fails before it is sent or is cancelled. Retries and backup requests
    /// work as for [`Channel::call_method`]. The handle cancels the call
    /// ([`CallId::cancel`]) or waits for it ([`CallId::join`]).
    pub fn call_method_async(
        &self,
        method: &MethodDescriptor,
        ctx: &CallContext,
        request: &dyn MessageBody,
        done: impl FnOnce(CallResult) + Send + 'static,
    ) -> CallId {
        let recording = ClientCall::start(method.service, method.name);
        let now = recording.started_at();
        let done = recording.wrap(done);
        match self.plan(method, ctx, request, now) {
            Ok(plan) => call::start(
                Arc::new(plan),
                self.inner.options.backup_request_ms,
                call::Done::Callback(Box::new(done)),
                ctx.cancel.as_ref(),
            ),
            Err(e) => {
                done(Err(e));
                CallId::ended()
            }
        }
    }
}

impl ClientChannel for Channel {
    fn call(
        &self,
        method: &'static MethodDescriptor,
        ctx: &mut CallContext,
        request: &dyn MessageBody,
    ) -> Result<IOBuf, RpcError> {
        let r = self.call_method(method, ctx, request)?;
        ctx.response_attachment = r.attachment;
        ctx.response_compress_type = r.compress_type;
        Ok(r.payload)
    }
}
