//! HTTP on a server: plain handlers registered by method and path pattern, and the protobuf
//! methods of the server's services (`POST /<package.Service>/<Method>` or
//! `/<Service>/<Method>`, JSON or binary bodies; see [`crate::policy::http::pb`]).
//!
//! # Routing ([`HttpDispatch::dispatch`] on the server)
//!
//! 1. An exact path pattern (`/status`) registered for the request's method or for any method.
//! 2. The longest prefix pattern (`/vars/*` matches `/vars`, `/vars/` and `/vars/a/b`; `/*`
//!    matches everything) with a matching method.
//! 3. A path of a handler registered only for other methods: 405 with `Allow`.
//! 4. A protobuf method path: the service's method, counted and limited like a baidu_std call
//!    (`max_concurrency`, `ELOGOFF` while stopping).
//! 5. 404.
//!
//! Handlers run in the fiber that processes the request (they may block it, as methods may).
//! They are counted as requests in flight, so `join` waits for them, and answered 503 once the
//! server is stopping.
//!
//! # Concurrency limits
//!
//! A user's handler holds one unit of the server-wide `max_concurrency` while it runs, like a
//! method (over the limit: 503 with `ELIMIT`). The builtin pages (`/status`, `/health`,
//! `/vars`, ...) do not, as brpc's builtin services do not: a server at its limit can still be
//! looked at.

use super::{Server, ServerInner};
use crate::compress::CompressType;
use crate::errors::{ErrorCode, RpcError};
use crate::policy::http::pb::{self, BodyFormat};
use crate::policy::http::{HttpDispatch, HttpRequest, HttpResponse};
use crate::protocol::{IOBuf, ServerRequest};
use spindle_runtime::butex::Butex;
use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, RwLock};

/// A plain HTTP handler: answers a request with a response. Implemented for every
/// `Fn(&HttpRequest) -> HttpResponse + Send + Sync + 'static`.
pub trait HttpHandler: Send + Sync + 'static {
    /// Answers `request`; runs in a fiber and may block it.
    fn handle(&self, request: &HttpRequest) -> HttpResponse;
}

impl<F> HttpHandler for F
where
    F: Fn(&HttpRequest) -> HttpResponse + Send + Sync + 'static,
{
    fn handle(&self, request: &HttpRequest) -> HttpResponse {
        self(request)
    }
}

/// A registered handler with the method it answers (`None`: any).
struct Route {
    method: Option<String>,
    handler: Arc<dyn HttpHandler>,
    /// A builtin page: not counted in `max_concurrency` (module doc).
    builtin: bool,
}

/// The handler table of one server.
#[derive(Default)]
pub(crate) struct HttpRoutes {
    /// Exact paths.
    exact: HashMap<String, Vec<Route>>,
    /// Prefixes (pattern without the trailing `/*`), longest first.
    prefix: Vec<(String, Vec<Route>)>,
}

/// What a lookup found.
enum Found {
    /// The handler, and whether it is a builtin page.
    Handler(Arc<dyn HttpHandler>, bool),
    /// The path has handlers, none for this method: the methods it has.
    WrongMethod(String),
    None,
}

fn pick(routes: &[Route], method: &str) -> Found {
    if let Some(r) = routes
        .iter()
        .find(|r| r.method.as_deref().is_none_or(|m| m == method))
    {
        return Found::Handler(r.handler.clone(), r.builtin);
    }
    let allow: Vec<&str> = routes.iter().filter_map(|r| r.method.as_deref()).collect();
    Found::WrongMethod(allow.join(", "))
}

impl HttpRoutes {
    fn add(
        &mut self,
        method: &str,
        pattern: &str,
        handler: Arc<dyn HttpHandler>,
        builtin: bool,
    ) -> Result<(), String> {
        if !pattern.starts_with('/') {
            return Err(format!("path pattern \"{pattern}\" must start with '/'"));
        }
        let method = match method {
            "" | "*" => None,
            m if m.bytes().all(|b| b.is_ascii_uppercase()) => Some(m.to_owned()),
            m => {
                return Err(format!(
                    "method \"{m}\" must be upper case, or \"*\" for any"
                ))
            }
        };
        let (list, key) = match pattern.strip_suffix("/*") {
            Some(prefix) => {
                let at = match self.prefix.iter().position(|(p, _)| p == prefix) {
                    Some(i) => i,
                    None => {
                        self.prefix.push((prefix.to_owned(), Vec::new()));
                        self.prefix.sort_by_key(|p| std::cmp::Reverse(p.0.len()));
                        self.prefix
                            .iter()
                            .position(|(p, _)| p == prefix)
                            .unwrap_or_default()
                    }
                };
                (&mut self.prefix[at].1, pattern)
            }
            None if pattern.contains('*') => {
                return Err(format!(
                    "path pattern \"{pattern}\": '*' is only allowed as a final \"/*\""
                ))
            }
            None => (self.exact.entry(pattern.to_owned()).or_default(), pattern),
        };
        if list
            .iter()
            .any(|r| r.method.is_none() || method.is_none() || r.method == method)
        {
            return Err(format!(
                "a handler for {} {key} overlaps one already added",
                method.as_deref().unwrap_or("*")
            ));
        }
        list.push(Route {
            method,
            handler,
            builtin,
        });
        Ok(())
    }

    fn find(&self, method: &str, path: &str) -> Found {
        let mut wrong = None;
        if let Some(routes) = self.exact.get(path) {
            match pick(routes, method) {
                Found::WrongMethod(allow) => wrong = Some(allow),
                found => return found,
            }
        }
        for (prefix, routes) in &self.prefix {
            let matches = path
                .strip_prefix(prefix.as_str())
                .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'));
            if matches {
                match pick(routes, method) {
                    Found::WrongMethod(allow) => {
                        wrong.get_or_insert(allow);
                    }
                    found => return found,
                }
            }
        }
        wrong.map_or(Found::None, Found::WrongMethod)
    }

    /// True when no handler is registered.
    fn is_empty(&self) -> bool {
        self.exact.is_empty() && self.prefix.is_empty()
    }
}

/// The routes of a server (in [`ServerInner`]).
pub(crate) type SharedRoutes = RwLock<HttpRoutes>;

impl Server {
    /// Registers a plain HTTP handler for `method` (`"GET"`, `"POST"`, ...; `"*"` for any)
    /// and a path `pattern`: exact (`"/status"`) or a prefix ending in `/*` (`"/vars/*"`
    /// matches `/vars`, `/vars/` and everything below). Plain handlers win over protobuf
    /// method paths. Fails (before `start` only) for a malformed pattern or method, or one
    /// that overlaps a registered handler.
    pub fn add_http_handler(
        &mut self,
        method: &str,
        pattern: &str,
        handler: impl HttpHandler,
    ) -> Result<(), RpcError> {
        self.add_route(method, pattern, Arc::new(handler), false)
    }

    /// [`Server::add_http_handler`] for a builtin page (`builtin`: not counted in
    /// `max_concurrency`).
    pub(super) fn add_route(
        &mut self,
        method: &str,
        pattern: &str,
        handler: Arc<dyn HttpHandler>,
        builtin: bool,
    ) -> Result<(), RpcError> {
        if self.inner.state.load(Ordering::Acquire) != super::READY {
            return Err(RpcError::new(
                ErrorCode::Internal,
                "add_http_handler after the server started",
            ));
        }
        self.inner
            .http_routes
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .add(method, pattern, handler, builtin)
            .map_err(|why| RpcError::new(ErrorCode::Internal, why))
    }
}

impl ServerInner {
    /// Calls a protobuf method named by an HTTP request.
    fn call_pb(&self, req: &HttpRequest, service: &str, method: &str) -> HttpResponse {
        let format = BodyFormat::of_request(req);
        match self.call_pb_inner(req, service, method, format) {
            Ok(body) => HttpResponse::new(200)
                .with_header("Content-Type", format.content_type())
                .with_body(body),
            Err(e) => pb::error_response(&e),
        }
    }

    fn call_pb_inner(
        &self,
        req: &HttpRequest,
        service: &str,
        method: &str,
        format: BodyFormat,
    ) -> Result<IOBuf, RpcError> {
        let entry = {
            let services = self.services.read().unwrap_or_else(|e| e.into_inner());
            services
                .get(service)
                .or_else(|| {
                    services
                        .values()
                        .find(|e| e.service.descriptor().name == service)
                })
                .cloned()
        };
        let Some(entry) = entry else {
            return Err(RpcError::new(
                ErrorCode::NoService,
                format!("no service named \"{service}\""),
            ));
        };
        let d = entry.service.descriptor();
        let m = d.method(method).ok_or_else(|| {
            RpcError::new(
                ErrorCode::NoMethod,
                format!("service {} has no method \"{method}\"", d.full_name),
            )
        })?;
        let json = match (format, d.descriptor_set) {
            (BodyFormat::Proto, _) => None,
            (BodyFormat::Json, Some(set)) => Some(pb::pool_of(set)?),
            (BodyFormat::Json, None) => {
                return Err(RpcError::new(
                    ErrorCode::Request,
                    format!(
                        "{} was generated without a descriptor set: send application/proto",
                        d.full_name
                    ),
                ))
            }
        };
        let payload = match &json {
            Some(pool) => pb::json_to_proto(&pb::message_of(pool, m.input_type)?, &req.body)?,
            None => req.body.clone(),
        };
        let request = ServerRequest {
            socket_id: Default::default(),
            service: d.full_name.to_owned(),
            method: m.name.to_owned(),
            payload,
            log_id: req.header("log-id").and_then(|v| v.trim().parse().ok()),
            request_id: req.header("x-request-id").map(str::to_owned),
            ..ServerRequest::default()
        };
        let (body, _attachment, _compress) = self.call_method_now(request)?;
        match &json {
            Some(pool) => {
                let desc = pb::message_of(pool, m.output_type)?;
                pb::proto_to_json(&desc, body, ErrorCode::Internal).map(|s| s.into_bytes().into())
            }
            None => Ok(body),
        }
    }
}

/// One unit of the server-wide concurrency (`max_concurrency`), released when dropped.
struct Slot<'a>(&'a ServerInner);

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        self.0.concurrency.fetch_sub(1, Ordering::AcqRel);
    }
}

impl ServerInner {
    /// Takes a unit of the server-wide concurrency for a user's plain handler; `ELIMIT` over
    /// `max_concurrency`. Without a limit nothing is counted (`None`): the count is only read
    /// against the limit, and a counter shared by every worker costs a cache-line transfer
    /// per request.
    fn take_slot(&self) -> Result<Option<Slot<'_>>, RpcError> {
        let max = self.options.max_concurrency;
        if max == 0 {
            return Ok(None);
        }
        let now = self.concurrency.fetch_add(1, Ordering::AcqRel) + 1;
        let slot = Slot(self);
        if now > max {
            return Err(RpcError::new(
                ErrorCode::Limit,
                format!("{now} requests in flight exceed the server's max_concurrency={max}"),
            ));
        }
        Ok(Some(slot))
    }
}

/// A method's answer: body, attachment and compression, or the error.
type MethodResult = Result<(IOBuf, IOBuf, CompressType), RpcError>;

/// Where the fiber running an HTTP request waits for its method's answer (which may come
/// from another fiber: done handles).
#[derive(Default)]
struct Answer {
    result: std::sync::Mutex<Option<MethodResult>>,
    /// 0 until the result is stored.
    ready: Butex,
}

/// The seam with the server's request path: what HTTP needs from it (with `count_request`).
impl ServerInner {
    /// Runs a protobuf method on a decoded request with the server's checks (state,
    /// `max_concurrency`, names) and waits (parking the fiber) for its answer: the response
    /// body, attachment and compression (the caller counted the request).
    fn call_method_now(&self, request: ServerRequest) -> MethodResult {
        let answer = Arc::new(Answer::default());
        let a = answer.clone();
        // The responder's own unit: this fiber's (`dispatch`) covers the HTTP write.
        let mut unit = Some(self.count_request());
        self.dispatch_with(
            request,
            Some(Box::new(move |r| {
                *a.result.lock().unwrap_or_else(|e| e.into_inner()) = Some(r);
                a.ready.value().store(1, Ordering::Release);
                a.ready.wake_all();
            })),
            &mut unit,
        )?;
        while answer.ready.value().load(Ordering::Acquire) == 0 {
            let _ = answer.ready.wait(0, None);
        }
        let result = answer
            .result
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        result.unwrap_or_else(|| Err(RpcError::new(ErrorCode::Internal, "method lost its answer")))
    }
}

impl HttpDispatch for ServerInner {
    fn dispatch(&self, req: &HttpRequest) -> HttpResponse {
        let _inflight = self.count_request();
        let path = req.path();
        let found = {
            let routes = self.http_routes.read().unwrap_or_else(|e| e.into_inner());
            if routes.is_empty() {
                Found::None
            } else {
                routes.find(req.method(), path)
            }
        };
        if !matches!(found, Found::None) && !self.is_running() {
            return HttpResponse::text(503, "the server is stopping\n");
        }
        match found {
            Found::Handler(h, true) => h.handle(req),
            Found::Handler(h, false) => match self.take_slot() {
                Ok(_slot) => h.handle(req),
                Err(e) => pb::error_response(&e),
            },
            Found::WrongMethod(allow) => {
                HttpResponse::text(405, format!("{} is not allowed on {path}\n", req.method()))
                    .with_header("Allow", allow)
            }
            Found::None => match pb::split_method_path(path) {
                Some((service, method)) => self.call_pb(req, service, method),
                None => HttpResponse::text(404, format!("no handler for {path}\n")),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(tag: &'static str) -> Arc<dyn HttpHandler> {
        Arc::new(move |_: &HttpRequest| HttpResponse::text(200, tag))
    }

    fn tag(f: Found) -> String {
        match f {
            Found::Handler(h, _) => h.handle(&HttpRequest::new("GET", "/")).body_text(),
            Found::WrongMethod(a) => format!("405 {a}"),
            Found::None => "404".to_owned(),
        }
    }

    #[test]
    fn exact_prefix_and_methods() {
        let mut r = HttpRoutes::default();
        r.add("GET", "/status", h("status"), false).unwrap();
        r.add("*", "/vars/*", h("vars"), false).unwrap();
        r.add("GET", "/vars/rpc/*", h("rpc"), false).unwrap();
        r.add("POST", "/flags", h("flags"), false).unwrap();
        r.add("*", "/*", h("all"), false).unwrap();
        assert_eq!(tag(r.find("GET", "/status")), "status");
        assert_eq!(tag(r.find("GET", "/vars")), "vars");
        assert_eq!(tag(r.find("PUT", "/vars/x/y")), "vars");
        assert_eq!(tag(r.find("GET", "/vars/rpc/q")), "rpc");
        assert_eq!(tag(r.find("POST", "/vars/rpc/q")), "vars");
        assert_eq!(tag(r.find("GET", "/variables")), "all");
        assert_eq!(tag(r.find("GET", "/flags")), "all");
        assert!(r.add("GET", "/status", h("again"), false).is_err());
        assert!(r.add("*", "/vars/*", h("again"), false).is_err());
        assert!(r.add("get", "/x", h("x"), false).is_err());
        assert!(r.add("GET", "x", h("x"), false).is_err());
        assert!(r.add("GET", "/a*b", h("x"), false).is_err());

        let mut r = HttpRoutes::default();
        r.add("POST", "/flags", h("flags"), false).unwrap();
        r.add("PUT", "/flags", h("put"), false).unwrap();
        assert_eq!(tag(r.find("GET", "/flags")), "405 POST, PUT");
        assert_eq!(tag(r.find("GET", "/nothing")), "404");
    }
}
