//! The server (brpc's `Server`): services on one port, requests processed in fibers.
//!
//! # Life cycle
//!
//! `Server::new(options)` → [`Server::add_service`] (any number, before `start`) →
//! [`Server::start`]`("ip:port")` → serving → [`Server::stop`] → [`Server::join`].
//!
//! - `start` binds a non-blocking listening socket, registers it with an event dispatcher as a
//!   [`Socket`] whose input handler is the `acceptor`; each accepted connection becomes a
//!   `Socket` read by an [`InputMessenger`] that delivers to this server.
//! - A request ([`RequestSink::on_request`], in a fiber) is counted in `inflight` **before**
//!   the state is checked, so `join` (which waits for `inflight == 0` after `stop`) never misses
//!   one: a request counted after `stop` sees the stopped state and is answered `ELOGOFF`.
//! - `max_concurrency` (server-wide) and per-method limits answer `ELIMIT` when exceeded.
//! - `stop` closes the listening socket (no new connections) and makes new requests fail with
//!   `ELOGOFF`; `join` waits for in-flight requests, then closes every connection.
//!
//! - A dispatched request is answered through a [`ServiceDone`] handle that owns the request's
//!   counts (`inflight`, the server's and the method's concurrency, see `done`). Synchronous
//!   handlers answer before they return; a done-handle handler may keep the handle and answer
//!   later from any fiber or thread, and a handle dropped unanswered sends `EINTERNAL`. `join`
//!   waits for every handle.
//!
//! Handlers run in fibers and may block (fiber primitives, nested synchronous calls).

mod acceptor;
mod builtin_hooks;
mod done;
mod http_handlers;
mod idle;

pub use http_handlers::HttpHandler;

use crate::compress;
use crate::errors::{ErrorCode, RpcError};
use crate::input_messenger::{default_registry, InputMessenger, MessageSink};
use crate::policy::baidu_std::{BaiduStd, ResponseFrame};
use crate::protocol::{Authenticator, InputMessage, Protocol, RequestSink, ServerRequest};
use crate::service::{CallContext, Service, ServiceDone};
use crate::socket::{self, sockaddr, Socket, SocketId};
use done::ServerResponder;
use rustc_hash::FxHashMap;
use spindle_iobuf::IOBuf;
use spindle_runtime::butex::Butex;
use std::borrow::Cow;
use std::collections::HashMap;
use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock, RwLock, Weak};
use std::time::{Duration, Instant};

/// Options of a [`Server`] (brpc's `ServerOptions`, the part implemented so far).
#[derive(Clone, Default)]
pub struct ServerOptions {
    /// Most requests processed at once by the whole server; 0 = unlimited. Excess requests are
    /// answered `ELIMIT`.
    pub max_concurrency: usize,
    /// Per-method limits, keyed `"package.Service.Method"` (e.g.
    /// `"example.EchoService.Echo"`); absent or 0 = unlimited.
    pub method_max_concurrency: HashMap<String, usize>,
    /// Checks the credentials of each connection's first message; `None` = no authentication.
    pub authenticator: Option<Arc<dyn Authenticator>>,
    /// brpc's `internal_port`: when set, the builtin pages (`/status`, `/vars`, ...) are served
    /// only on connections to this second port (0 picks a free one, see
    /// [`Server::internal_addr`]); the port given to `start` answers them 403. Both ports
    /// serve every service. See `docs/builtin.md`.
    pub internal_port: Option<u16>,
    /// No builtin pages at all (brpc's `has_builtin_services = false`); method statistics are
    /// still recorded and exposed.
    pub disable_builtin_services: bool,
    /// What `/version` answers; `None`: `spindle-rpc <crate version>`.
    pub version: Option<String>,
    /// Accept the RDMA handshake (brpc's `use_rdma`): a client that asks for RDMA gets it
    /// when an endpoint can be made; otherwise (and always when false, the default) it is
    /// answered with a refusal and stays on TCP. See `docs/rdma.md`.
    pub rdma: bool,
    /// brpc's `idle_timeout_sec`: a connection on which no whole message arrived, none was
    /// written and no request was processed for this many seconds is closed (a client that
    /// never finishes its request head, too); ≤ 0 = never (the default; brpc's is -1). See
    /// `idle`.
    pub idle_timeout_sec: i32,
}

impl std::fmt::Debug for ServerOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerOptions")
            .field("max_concurrency", &self.max_concurrency)
            .field("method_max_concurrency", &self.method_max_concurrency)
            .field("authenticator", &self.authenticator.is_some())
            .field("internal_port", &self.internal_port)
            .field("disable_builtin_services", &self.disable_builtin_services)
            .field("version", &self.version)
            .field("rdma", &self.rdma)
            .field("idle_timeout_sec", &self.idle_timeout_sec)
            .finish()
    }
}

/// Server states.
const READY: u8 = 0;
const RUNNING: u8 = 1;
const STOPPING: u8 = 2;
const STOPPED: u8 = 3;

/// A method with its concurrency limit.
struct MethodEntry {
    /// Limit; 0 = unlimited.
    max: usize,
    /// Latency, errors and concurrency (`/status`, `/vars`); its concurrency is also what
    /// `max` is checked against.
    status: crate::builtin::MethodStatus,
}

/// A registered service.
pub(crate) struct ServiceEntry {
    service: Box<dyn Service>,
    /// By method index.
    methods: Vec<MethodEntry>,
}

/// State shared by the server handle, its acceptor and its connections.
pub(crate) struct ServerInner {
    /// This server itself (for the `Arc` a request's done handle keeps).
    me: Weak<ServerInner>,
    options: ServerOptions,
    /// Services by full name (looked up per request: a multiplicative hash, not SipHash; the
    /// names are the server's own, fixed before it starts).
    services: RwLock<FxHashMap<String, Arc<ServiceEntry>>>,
    /// `services` as it is once `start` succeeded (no service is added after that): looked
    /// up per request without the lock, whose count is a cache line every worker would write.
    serving: OnceLock<FxHashMap<String, Arc<ServiceEntry>>>,
    /// `READY`, `RUNNING`, `STOPPING`, `STOPPED`.
    state: AtomicU8,
    /// Requests counted and not yet answered (module doc).
    inflight: AtomicUsize,
    /// Requests dispatched to a method and not yet answered, counted only when
    /// `max_concurrency` is set (the only reader).
    concurrency: AtomicUsize,
    /// Bumped when `inflight` drops to 0 while stopping; `join` waits on it.
    idle: Butex,
    /// The listening socket.
    listener: Mutex<Option<SocketId>>,
    /// Open connections (closed by `join`), with what the idle sweeper reads of them.
    connections: Mutex<HashMap<SocketId, Arc<idle::ConnActivity>>>,
    /// Connections closed for `idle_timeout_sec`.
    idle_closed: AtomicU64,
    /// Whether `join` already closed everything.
    joined: AtomicBool,
    /// Plain HTTP handlers (`http_handlers`).
    http_routes: http_handlers::SharedRoutes,
    /// Builtin pages and exposed statistics (`builtin_hooks`).
    builtin: builtin_hooks::State,
}

/// An RPC server. Dropping a started server stops and joins it.
pub struct Server {
    inner: Arc<ServerInner>,
    /// The bound address, once started.
    local_addr: Option<SocketAddr>,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("local_addr", &self.local_addr)
            .field("state", &self.inner.state.load(Ordering::Relaxed))
            .finish()
    }
}

impl Server {
    /// A server with `options`, serving nothing yet.
    pub fn new(options: ServerOptions) -> Server {
        Server {
            inner: Arc::new_cyclic(|me| ServerInner {
                me: me.clone(),
                options,
                services: RwLock::new(FxHashMap::default()),
                serving: OnceLock::new(),
                state: AtomicU8::new(READY),
                inflight: AtomicUsize::new(0),
                concurrency: AtomicUsize::new(0),
                idle: Butex::new(0),
                listener: Mutex::new(None),
                connections: Mutex::new(HashMap::new()),
                idle_closed: AtomicU64::new(0),
                joined: AtomicBool::new(false),
                http_routes: Default::default(),
                builtin: Default::default(),
            }),
            local_addr: None,
        }
    }

    /// Adds a service (a generated `FooServer<T>` adapter). Fails if the server was started or
    /// a service of the same full name was added.
    pub fn add_service(&mut self, service: impl Service) -> Result<(), RpcError> {
        if self.inner.state.load(Ordering::Acquire) != READY {
            return Err(RpcError::new(
                ErrorCode::Internal,
                "add_service after the server started",
            ));
        }
        let d = service.descriptor();
        let methods = d
            .methods
            .iter()
            .map(|m| {
                let max = self
                    .inner
                    .options
                    .method_max_concurrency
                    .get(&format!("{}.{}", d.full_name, m.name))
                    .copied()
                    .unwrap_or(0);
                MethodEntry {
                    max,
                    status: crate::builtin::MethodStatus::new(max),
                }
            })
            .collect();
        let mut services = self
            .inner
            .services
            .write()
            .unwrap_or_else(|e| e.into_inner());
        if services.contains_key(d.full_name) {
            return Err(RpcError::new(
                ErrorCode::Internal,
                format!("service {} was already added", d.full_name),
            ));
        }
        services.insert(
            d.full_name.to_owned(),
            Arc::new(ServiceEntry {
                service: Box::new(service),
                methods,
            }),
        );
        Ok(())
    }

    /// Listens on `addr` (`"ip:port"` or `"host:port"`; port 0 picks a free port, see
    /// [`Server::local_addr`]) and starts serving.
    pub fn start(&mut self, addr: &str) -> Result<(), RpcError> {
        let bad = |why: String| RpcError::new(ErrorCode::Internal, why);
        let sa = addr
            .to_socket_addrs()
            .map_err(|e| bad(format!("bad listen address \"{addr}\": {e}")))?
            .next()
            .ok_or_else(|| bad(format!("listen address \"{addr}\" resolves to nothing")))?;
        if self.inner.options.rdma {
            // Seed 004: refuse a dispatcher / poller / worker mix that could not serve RDMA.
            spindle_rdma::threading::validate_threading(
                &spindle_rdma::threading::ThreadingConfig::from_flags(),
            )
            .map_err(|e| bad(e.to_string()))?;
        }
        builtin_hooks::add_pages(self);
        if self
            .inner
            .state
            .compare_exchange(READY, RUNNING, Ordering::AcqRel, Ordering::Acquire)
            .is_err()
        {
            return Err(bad("start on a server that was already started".to_owned()));
        }
        let (fd, local) = sockaddr::listen(&sa, 1024).map_err(|e| {
            self.inner.state.store(READY, Ordering::Release);
            RpcError::new(
                ErrorCode::Other(e.raw_os_error().unwrap_or(0)),
                format!("cannot listen on {addr}: {e}"),
            )
        })?;
        let acceptor = Arc::new(acceptor::Acceptor::new(self.inner.clone()));
        let id = Socket::create(fd, Some(local), acceptor, false)
            .inspect_err(|_| {
                self.inner.state.store(READY, Ordering::Release);
            })?
            .id();
        *self
            .inner
            .listener
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = Some(id);
        self.local_addr = Some(local);
        if let Err(e) = builtin_hooks::on_start(&self.inner, local) {
            self.stop();
            return Err(e);
        }
        idle::start(&self.inner);
        // Requests that came before this see `serving` unset and read `services` locked.
        let frozen = self
            .inner
            .services
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let _ = self.inner.serving.set(frozen);
        Ok(())
    }

    /// The address the server listens on (after `start`).
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.local_addr
    }

    /// Whether the server is started and not stopped.
    pub fn is_running(&self) -> bool {
        self.inner.state.load(Ordering::Acquire) == RUNNING
    }

    /// Stops accepting: closes the listening socket; requests arriving from now on are answered
    /// `ELOGOFF`; in-flight requests go on. Idempotent.
    pub fn stop(&self) {
        if self
            .inner
            .state
            .compare_exchange(RUNNING, STOPPING, Ordering::AcqRel, Ordering::Acquire)
            .is_err()
        {
            return;
        }
        let listener = self
            .inner
            .listener
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        if let Some(s) = listener.and_then(socket::address) {
            Socket::set_failed(&s, RpcError::new(ErrorCode::LogOff, "server stopped"));
        }
        builtin_hooks::on_stop(&self.inner);
        self.inner.wake_idle();
    }

    /// Waits until every in-flight request was answered (after [`Server::stop`]), then closes
    /// all connections. Returns at once if the server was never started.
    pub fn join(&self) {
        let st = self.inner.state.load(Ordering::Acquire);
        if st == READY || self.inner.joined.swap(true, Ordering::AcqRel) {
            return;
        }
        loop {
            let seq = self.inner.idle.value().load(Ordering::Acquire);
            if self.inner.state.load(Ordering::Acquire) != RUNNING
                && self.inner.inflight.load(Ordering::Acquire) == 0
            {
                break;
            }
            let _ = self
                .inner
                .idle
                .wait(seq, Some(Instant::now() + Duration::from_millis(50)));
        }
        let conns: Vec<SocketId> = self
            .inner
            .connections
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .drain()
            .map(|(id, _)| id)
            .collect();
        for id in conns {
            if let Some(s) = socket::address(id) {
                Socket::set_failed(&s, RpcError::new(ErrorCode::LogOff, "server stopped"));
            }
        }
        self.inner.state.store(STOPPED, Ordering::Release);
    }

    /// Serves until the process gets SIGINT or SIGTERM, then stops and joins.
    pub fn run_until_asked_to_quit(&self) {
        quit::install();
        while !quit::asked() && self.is_running() {
            spindle_runtime::sleep(Duration::from_millis(50));
        }
        self.stop();
        self.join();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop();
        self.join();
    }
}

/// SIGINT / SIGTERM → a flag (the handler only stores an atomic: async-signal-safe).
mod quit {
    use std::sync::atomic::{AtomicBool, Ordering};

    static ASKED: AtomicBool = AtomicBool::new(false);

    extern "C" fn on_signal(_: libc::c_int) {
        ASKED.store(true, Ordering::SeqCst);
    }

    pub(super) fn install() {
        for sig in [libc::SIGINT, libc::SIGTERM] {
            // SAFETY: the handler only performs an atomic store, which is async-signal-safe.
            unsafe {
                libc::signal(
                    sig,
                    on_signal as extern "C" fn(libc::c_int) as libc::sighandler_t,
                )
            };
        }
    }

    pub(super) fn asked() -> bool {
        ASKED.load(Ordering::SeqCst)
    }
}

/// One unit of a server's `inflight` count, released (`request_done`) when dropped, unless
/// handed over to a request's responder, which then releases it.
pub(super) struct Counted<'a>(&'a ServerInner);

impl Counted<'_> {
    /// The responder now owns the unit.
    fn hand_over(self) {
        std::mem::forget(self);
    }
}

impl Drop for Counted<'_> {
    fn drop(&mut self) {
        self.0.request_done();
    }
}

impl ServerInner {
    /// A request counted in `inflight` was answered.
    fn request_done(&self) {
        if self.inflight.fetch_sub(1, Ordering::AcqRel) == 1
            && self.state.load(Ordering::Acquire) != RUNNING
        {
            self.wake_idle();
        }
    }

    fn wake_idle(&self) {
        self.idle.value().fetch_add(1, Ordering::Release);
        self.idle.wake_all();
    }

    /// A messenger for a new connection of this server, and the connection's activity (give
    /// it to [`ServerInner::add_connection`]).
    pub(crate) fn messenger(self: &Arc<Self>) -> (Arc<InputMessenger>, Arc<idle::ConnActivity>) {
        let activity = Arc::new(idle::ConnActivity::default());
        let sink = ServerSink {
            server: self.clone(),
            activity: activity.clone(),
        };
        let messenger = InputMessenger::new(default_registry().clone(), Arc::new(sink));
        (Arc::new(messenger), activity)
    }

    pub(crate) fn is_running(&self) -> bool {
        self.state.load(Ordering::Acquire) == RUNNING
    }

    pub(crate) fn add_connection(&self, id: SocketId, activity: Arc<idle::ConnActivity>) {
        self.connections
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(id, activity);
    }

    /// Frames and writes a response (or an error) back to `socket_id`; dropped silently if the
    /// connection is gone.
    pub(crate) fn respond(
        &self,
        socket_id: SocketId,
        correlation_id: i64,
        result: Result<(IOBuf, IOBuf, compress::CompressType), RpcError>,
    ) {
        let empty = IOBuf::new();
        let frame = match &result {
            Ok((body, attachment, ty)) => ResponseFrame {
                correlation_id,
                error: None,
                compress_type: *ty,
                body,
                attachment,
            },
            Err(e) => ResponseFrame {
                correlation_id,
                error: Some(e),
                compress_type: compress::CompressType::None,
                body: &empty,
                attachment: &empty,
            },
        };
        let mut out = IOBuf::new();
        if let Err(e) = BaiduStd::pack_response(&mut out, &frame) {
            // Only an oversized attachment fails here: answer with that error instead.
            out.clear();
            let frame = ResponseFrame {
                correlation_id,
                error: Some(&e),
                compress_type: compress::CompressType::None,
                body: &empty,
                attachment: &empty,
            };
            if BaiduStd::pack_response(&mut out, &frame).is_err() {
                return;
            }
        }
        if let Some(s) = socket::address(socket_id) {
            // A failed write means the connection failed; the client learns that itself.
            let _ = Socket::write(&s, out);
        }
    }

    /// Counts one request in flight until the unit drops or is handed to a responder (`join`
    /// waits for it).
    fn count_request(&self) -> Counted<'_> {
        self.inflight.fetch_add(1, Ordering::AcqRel);
        Counted(self)
    }

    /// The service named `name`: borrowed from `serving` once the server started, else cloned
    /// out of `services` under its lock.
    fn service(&self, name: &str) -> Option<Cow<'_, Arc<ServiceEntry>>> {
        match self.serving.get() {
            Some(map) => map.get(name).map(Cow::Borrowed),
            None => self
                .services
                .read()
                .unwrap_or_else(|e| e.into_inner())
                .get(name)
                .cloned()
                .map(Cow::Owned),
        }
    }

    /// Dispatches one request: checks the state, the limits and the names, then hands the
    /// method a done handle owning the request's counts, the `inflight` unit taken out of
    /// `unit` included (a new one is counted if `unit` is empty). The answer goes through
    /// `reply` when given (HTTP) instead of a baidu_std frame. `Err` = answer this error now
    /// (`unit` is still the caller's).
    fn dispatch_with(
        &self,
        req: ServerRequest,
        reply: Option<done::Reply>,
        unit: &mut Option<Counted<'_>>,
    ) -> Result<(), RpcError> {
        if !self.is_running() {
            return Err(RpcError::new(ErrorCode::LogOff, "the server is stopping"));
        }
        let server = self
            .me
            .upgrade()
            .ok_or_else(|| RpcError::new(ErrorCode::LogOff, "the server is gone"))?;
        let entry = self.service(&req.service).ok_or_else(|| {
            RpcError::new(
                ErrorCode::NoService,
                format!("no service named \"{}\"", req.service),
            )
        })?;
        let d = entry.service.descriptor();
        let method = d.method(&req.method).ok_or_else(|| {
            RpcError::new(
                ErrorCode::NoMethod,
                format!("service {} has no method \"{}\"", d.full_name, req.method),
            )
        })?;
        // Shared counters cost a cache-line transfer per request between workers: the
        // server-wide one is kept only for a limit, the method's is its statistics' own.
        let max = self.options.max_concurrency;
        let now = if max > 0 {
            self.concurrency.fetch_add(1, Ordering::AcqRel) + 1
        } else {
            0
        };
        let me = &entry.methods[method.index];
        let (started, now_method) = me.status.begin_counted();
        // From here on the responder owns the counts, `inflight` included.
        if let Some(u) = unit.take() {
            u.hand_over();
        } else {
            self.inflight.fetch_add(1, Ordering::AcqRel);
        }
        let responder = Box::new(ServerResponder {
            server,
            entry: Arc::clone(&entry),
            method: method.index,
            socket_id: req.socket_id,
            correlation_id: req.correlation_id,
            holds_server_slot: max > 0,
            started: Some(started),
            reply,
        });
        let ctx = CallContext {
            log_id: req.log_id,
            request_attachment: req.attachment,
            response_compress_type: req.compress_type,
            request_compress_type: req.compress_type,
            ..CallContext::default()
        };
        let done = ServiceDone::new(ctx, responder);
        if max > 0 && now > max {
            done.send(Err(RpcError::new(
                ErrorCode::Limit,
                format!("{now} requests in flight exceed the server's max_concurrency={max}"),
            )));
        } else if me.max > 0 && now_method > me.max as i64 {
            done.send(Err(RpcError::new(
                ErrorCode::Limit,
                format!(
                    "{now_method} requests of {}.{} in flight exceed its max_concurrency={}",
                    d.full_name, method.name, me.max
                ),
            )));
        } else {
            entry
                .service
                .call_with_done(method.index, req.payload, done);
        }
        Ok(())
    }
}

impl RequestSink for ServerInner {
    fn rdma_enabled(&self) -> bool {
        self.options.rdma
    }

    fn on_request(&self, request: ServerRequest) {
        // Counted before the state is checked (module doc); a dispatched request's done handle
        // takes the unit over.
        let mut unit = Some(self.count_request());
        let (socket_id, correlation_id) = (request.socket_id, request.correlation_id);
        if let Err(e) = self.dispatch_with(request, None, &mut unit) {
            self.respond(socket_id, correlation_id, Err(e));
        }
        // Still here if the request was not dispatched: released after its answer was written.
        drop(unit);
    }

    fn reply_error(&self, socket_id: SocketId, correlation_id: i64, error: RpcError) {
        self.respond(socket_id, correlation_id, Err(error));
    }

    fn http_dispatch(&self) -> Option<&dyn crate::policy::http::HttpDispatch> {
        Some(self)
    }
}

/// The server as one connection's [`MessageSink`].
struct ServerSink {
    server: Arc<ServerInner>,
    /// The connection's activity (`idle`): busy while a message is processed.
    activity: Arc<idle::ConnActivity>,
}

impl MessageSink for ServerSink {
    fn process(&self, protocol: &Arc<dyn Protocol>, msg: Box<dyn InputMessage>) {
        let id = msg.socket_id();
        let _busy = self.activity.busy();
        if let Err(e) = protocol.process_request(msg, &*self.server) {
            eprintln!(
                "spindle-rpc: {} request on connection {id} not processed: {e}",
                protocol.name()
            );
        }
    }

    fn authenticator(&self) -> Option<&dyn Authenticator> {
        self.server.options.authenticator.as_deref()
    }

    fn on_failed(&self, id: SocketId) {
        self.server
            .connections
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&id);
    }
}
