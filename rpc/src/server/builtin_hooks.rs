//! Where the server meets [`crate::builtin`]: registering the builtin pages, exposing the
//! statistics of its methods under its port, the `internal_port` listener, and a read-only
//! view of the server for the pages.
//!
//! Kept apart from `server/mod.rs`, which only calls [`add_pages`] and [`on_start`] from
//! `start`, and [`on_stop`] from `stop`.

use super::{acceptor, Server, ServerInner};
use crate::builtin::{self, MethodInfo, ServerSummary, ServiceInfo};
use crate::errors::{ErrorCode, RpcError};
use crate::policy::http::HttpRequest;
use crate::socket::{self, sockaddr, Socket, SocketId};
use spindle_metrics::{Exposable, PassiveStatus};
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::Instant;

/// The builtin side of a server.
#[derive(Default)]
pub(crate) struct State {
    /// The address `start` listened on.
    local: OnceLock<SocketAddr>,
    /// The `internal_port` listener's address.
    internal: OnceLock<SocketAddr>,
    /// The `internal_port` listener, until `stop`.
    internal_listener: Mutex<Option<SocketId>>,
    /// When the server started.
    started: OnceLock<Instant>,
    /// Server-wide variables (`rpc_server_<port>_connection_count`, ...), exposed while the
    /// server lives.
    vars: Mutex<Vec<PassiveStatus<i64>>>,
}

/// Registers the builtin pages as plain HTTP handlers for GET and HEAD (unless disabled). A page whose path
/// the user already took is left to the user's handler.
pub(super) fn add_pages(server: &mut Server) {
    if server.inner.options.disable_builtin_services {
        return;
    }
    let weak = Arc::downgrade(&server.inner);
    for page in builtin::PAGES {
        for method in ["GET", "HEAD"] {
            let w: Weak<ServerInner> = weak.clone();
            let serve = move |req: &HttpRequest| builtin::serve(&w, page, req);
            // An overlap is the user's own handler for that path: it wins. Pages are not
            // counted in `max_concurrency` (brpc's builtin services are not either).
            let _ = server.add_route(method, page.pattern, Arc::new(serve), true);
        }
    }
}

/// After the server listens on `local`: exposes the statistics of its methods and of the
/// server under `rpc_server_<port>`, and opens the `internal_port` listener.
pub(super) fn on_start(inner: &Arc<ServerInner>, local: SocketAddr) -> Result<(), RpcError> {
    let st = &inner.builtin;
    let _ = st.local.set(local);
    let _ = st.started.set(Instant::now());
    // Process and fiber variables, once per process; already exposed is fine.
    let _ = spindle_metrics::expose_default_variables();
    let prefix = format!("rpc_server_{}", local.port());
    for entry in inner
        .services
        .read()
        .unwrap_or_else(|e| e.into_inner())
        .values()
    {
        let d = entry.service.descriptor();
        for (m, e) in d.methods.iter().zip(&entry.methods) {
            // A taken name (another server on this port in the same process) leaves the method
            // counting but unexposed.
            let _ = e
                .status
                .expose(&format!("{prefix}_{}.{}", d.full_name, m.name));
        }
    }
    let server_var = |name: &str, get: fn(&ServerInner) -> i64| {
        let w = Arc::downgrade(inner);
        let var = PassiveStatus::new(move || w.upgrade().map_or(0, |s| get(&s)));
        let _ = var.expose(&format!("{prefix}_{name}"));
        var
    };
    let vars = vec![
        server_var("connection_count", |s| connection_count(s) as i64),
        server_var("concurrency", |s| s.inflight.load(Ordering::Relaxed) as i64),
        server_var("idle_closed_connections", |s| {
            s.idle_closed.load(Ordering::Relaxed) as i64
        }),
        server_var("service_count", |s| {
            s.services.read().unwrap_or_else(|e| e.into_inner()).len() as i64
        }),
    ];
    *st.vars.lock().unwrap_or_else(|e| e.into_inner()) = vars;
    if let Some(port) = inner.options.internal_port {
        if port != 0 && port == local.port() {
            return Err(RpcError::new(
                ErrorCode::Internal,
                format!("internal_port={port} is the port the server listens on"),
            ));
        }
        let addr = SocketAddr::new(local.ip(), port);
        let (fd, bound) = sockaddr::listen(&addr, 1024).map_err(|e| {
            RpcError::new(
                ErrorCode::Other(e.raw_os_error().unwrap_or(0)),
                format!("cannot listen on internal_port {addr}: {e}"),
            )
        })?;
        let acceptor = Arc::new(acceptor::Acceptor::new(inner.clone()));
        let id = Socket::create(fd, Some(bound), acceptor, false)?.id();
        *st.internal_listener
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = Some(id);
        let _ = st.internal.set(bound);
    }
    Ok(())
}

/// Closes the `internal_port` listener.
pub(super) fn on_stop(inner: &ServerInner) {
    let id = inner
        .builtin
        .internal_listener
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .take();
    if let Some(s) = id.and_then(socket::address) {
        Socket::set_failed(&s, RpcError::new(ErrorCode::LogOff, "server stopped"));
    }
}

fn connection_count(s: &ServerInner) -> usize {
    s.connections
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .len()
}

impl Server {
    /// The address of the `internal_port` listener (after `start`, when the option is set).
    pub fn internal_addr(&self) -> Option<SocketAddr> {
        self.inner.builtin.internal.get().copied()
    }
}

/// The read-only view of a server that the builtin pages render.
impl ServerInner {
    /// Whether `req` may see builtin pages: always without `internal_port`; with it, only when
    /// it arrived on a connection to that port.
    pub(crate) fn builtin_allowed(&self, req: &HttpRequest) -> Result<(), String> {
        let Some(internal) = self.options.internal_port else {
            return Ok(());
        };
        let want = self.builtin.internal.get().map_or(internal, |a| a.port());
        let local = socket::address(req.socket_id).and_then(|s| sockaddr::local_addr(s.fd()).ok());
        match local {
            Some(a) if a.port() == want => Ok(()),
            _ => Err(format!(
                "builtin pages are served on internal_port={want} only\n"
            )),
        }
    }

    /// The server's options and counters for `/status`.
    pub(crate) fn builtin_summary(&self) -> ServerSummary {
        ServerSummary {
            version: self.options.version.clone(),
            listen: self.builtin.local.get().copied(),
            internal: self.builtin.internal.get().copied(),
            uptime: self
                .builtin
                .started
                .get()
                .map(Instant::elapsed)
                .unwrap_or_default(),
            running: self.is_running(),
            connection_count: connection_count(self),
            concurrency: self.inflight.load(Ordering::Relaxed),
            max_concurrency: self.options.max_concurrency,
        }
    }

    /// Every service with its methods' statistics, sorted by name.
    pub(crate) fn builtin_services(&self) -> Vec<ServiceInfo> {
        let mut out: Vec<ServiceInfo> = self
            .services
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .map(|entry| {
                let d = *entry.service.descriptor();
                ServiceInfo {
                    descriptor: d,
                    methods: d
                        .methods
                        .iter()
                        .zip(&entry.methods)
                        .map(|(m, e)| MethodInfo {
                            descriptor: *m,
                            status: e.status.snapshot(),
                        })
                        .collect(),
                }
            })
            .collect();
        out.sort_by_key(|s| s.descriptor.full_name);
        out
    }

    /// The server's connections and listeners: `(id, is_listener)`.
    pub(crate) fn builtin_sockets(&self) -> Vec<(SocketId, bool)> {
        let mut out: Vec<(SocketId, bool)> = Vec::new();
        let listeners = [
            *self.listener.lock().unwrap_or_else(|e| e.into_inner()),
            *self
                .builtin
                .internal_listener
                .lock()
                .unwrap_or_else(|e| e.into_inner()),
        ];
        out.extend(listeners.into_iter().flatten().map(|id| (id, true)));
        let mut conns: Vec<SocketId> = self
            .connections
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .keys()
            .copied()
            .collect();
        conns.sort();
        out.extend(conns.into_iter().map(|id| (id, false)));
        out
    }
}
