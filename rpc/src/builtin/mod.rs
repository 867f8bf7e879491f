//! Builtin pages (brpc's `src/brpc/builtin/`): what makes a running server observable, served
//! over HTTP on the server's own port — or only on `internal_port` — as plain HTTP handlers.
//!
//! | path | shows |
//! |---|---|
//! | `/` | links to every page |
//! | `/status` | the server, and per method: count, qps, errors, latency percentiles, concurrency |
//! | `/vars`, `/vars/<filter>` | exposed variables (`?filter=` too; `*`, `$` for one character) |
//! | `/flags`, `/flags/<filter>` | flags with value, default, reloadable; `?setvalue=` changes one |
//! | `/connections` | sockets: protocol, remote and local side, bytes and messages in/out |
//! | `/fibers` | runtime and event-dispatcher counters |
//! | `/health` | `OK` |
//! | `/version` | the server's version |
//! | `/protobufs`, `/protobufs/<name>` | services and messages, from the embedded descriptors |
//! | `/list` | services and their methods |
//! | `/brpc_metrics` | every numeric variable in Prometheus text format |
//!
//! Every page answers plain text, or HTML when the request's `Accept` names `text/html` (a
//! browser); see [`doc`]. The statistics themselves are recorded by [`method_status`].
//!
//! # Access
//!
//! The server registers each page as a plain handler at `start` (a path the user registered
//! first keeps the user's handler; `ServerOptions::disable_builtin_services` registers none).
//! With `ServerOptions::internal_port` set, a page asked for on any other port answers 403
//! (brpc answers `EPERM` there), so the public port shows nothing of the server's insides.

mod connections;
pub mod doc;
mod flags;
pub mod method_status;
mod services;
mod vars;

pub use method_status::{MethodSnapshot, MethodStatus};

use crate::policy::http::{HttpRequest, HttpResponse};
use crate::server::ServerInner;
use crate::service::{MethodDescriptor, ServiceDescriptor};
use doc::{Block, Doc};
use std::net::SocketAddr;
use std::sync::Weak;
use std::time::Duration;

/// What a page renders from: the server and the request.
type Render = fn(&ServerInner, &HttpRequest) -> Reply;

/// One builtin page.
pub(crate) struct Page {
    /// The handler's path pattern (`/vars/*` also matches `/vars`).
    pub(crate) pattern: &'static str,
    /// The path the index links to.
    path: &'static str,
    /// One line about the page, for the index.
    about: &'static str,
    /// Builds the answer.
    render: Render,
}

/// A page's answer: a document (text or HTML by the request's `Accept`) or a finished response.
pub(crate) enum Reply {
    /// Rendered for the client with this status.
    Doc(u16, Doc),
    /// Sent as is.
    Raw(HttpResponse),
}

/// Every builtin page, in the index's order.
pub(crate) static PAGES: &[Page] = &[
    Page {
        pattern: "/",
        path: "/",
        about: "this index",
        render: index,
    },
    Page {
        pattern: "/status",
        path: "/status",
        about: "services and methods: qps, latency, errors, concurrency",
        render: services::status,
    },
    Page {
        pattern: "/vars/*",
        path: "/vars",
        about: "exposed variables; /vars/<wildcards> or ?filter= to pick some",
        render: vars::vars,
    },
    Page {
        pattern: "/flags/*",
        path: "/flags",
        about: "flags; /flags/<name>?setvalue=<v> changes a reloadable one",
        render: flags::flags,
    },
    Page {
        pattern: "/connections",
        path: "/connections",
        about: "sockets with protocol, remote side, bytes and messages in/out",
        render: connections::connections,
    },
    Page {
        pattern: "/fibers",
        path: "/fibers",
        about: "fiber runtime and event dispatcher counters",
        render: connections::fibers,
    },
    Page {
        pattern: "/health",
        path: "/health",
        about: "OK while the server runs",
        render: health,
    },
    Page {
        pattern: "/version",
        path: "/version",
        about: "the server's version",
        render: version,
    },
    Page {
        pattern: "/protobufs/*",
        path: "/protobufs",
        about: "services and messages; /protobufs/<full name> shows one",
        render: services::protobufs,
    },
    Page {
        pattern: "/list",
        path: "/list",
        about: "services and their methods",
        render: services::list,
    },
    Page {
        pattern: "/brpc_metrics",
        path: "/brpc_metrics",
        about: "variables in Prometheus text format",
        render: vars::brpc_metrics,
    },
];

/// The server as `/status` shows it (filled by the server).
#[derive(Clone, Debug)]
pub(crate) struct ServerSummary {
    /// `ServerOptions::version`.
    pub(crate) version: Option<String>,
    /// The address `start` listened on.
    pub(crate) listen: Option<SocketAddr>,
    /// The `internal_port` listener.
    pub(crate) internal: Option<SocketAddr>,
    /// Time since `start`.
    pub(crate) uptime: Duration,
    /// Started and not stopped.
    pub(crate) running: bool,
    /// Open connections.
    pub(crate) connection_count: usize,
    /// Requests in flight.
    pub(crate) concurrency: usize,
    /// The server's limit; 0 = none.
    pub(crate) max_concurrency: usize,
}

/// A service with its methods' statistics (filled by the server).
#[derive(Clone, Debug)]
pub(crate) struct ServiceInfo {
    /// Names and methods.
    pub(crate) descriptor: ServiceDescriptor,
    /// Per method, in declaration order.
    pub(crate) methods: Vec<MethodInfo>,
}

/// One method and its statistics.
#[derive(Clone, Debug)]
pub(crate) struct MethodInfo {
    /// Names and message types.
    pub(crate) descriptor: MethodDescriptor,
    /// What its status recorded.
    pub(crate) status: MethodSnapshot,
}

/// The version `/version` reports without `ServerOptions::version`.
fn default_version() -> String {
    format!("spindle-rpc {}", env!("CARGO_PKG_VERSION"))
}

/// Answers `req` with `page` of the server behind `server` (the handler of every page).
pub(crate) fn serve(server: &Weak<ServerInner>, page: &Page, req: &HttpRequest) -> HttpResponse {
    let Some(s) = server.upgrade() else {
        return HttpResponse::text(503, "the server is gone\n");
    };
    if let Err(why) = s.builtin_allowed(req) {
        return HttpResponse::text(403, why);
    }
    match (page.render)(&s, req) {
        Reply::Raw(resp) => resp,
        Reply::Doc(status, d) => d.respond(status, req),
    }
}

fn index(_: &ServerInner, req: &HttpRequest) -> Reply {
    if req.path() != "/" {
        return Reply::Doc(
            404,
            Doc::new("not found").text(format!("no builtin page at {}\n", req.path())),
        );
    }
    let links = PAGES
        .iter()
        .map(|p| (p.path.to_owned(), p.about.to_owned()))
        .collect();
    Reply::Doc(200, Doc::new("spindle").block(Block::Links(links)))
}

fn health(s: &ServerInner, _: &HttpRequest) -> Reply {
    if s.builtin_summary().running {
        Reply::Raw(HttpResponse::text(200, "OK\n"))
    } else {
        Reply::Raw(HttpResponse::text(503, "stopping\n"))
    }
}

fn version(s: &ServerInner, _: &HttpRequest) -> Reply {
    let v = s.builtin_summary().version.unwrap_or_else(default_version);
    Reply::Raw(HttpResponse::text(200, format!("{v}\n")))
}
