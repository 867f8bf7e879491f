//! The request and response types of HTTP/1.1: what a plain handler receives and returns, and
//! what a client sends and gets back.
//!
//! A parsed request keeps its head (start line and headers) as one byte buffer plus offsets,
//! so parsing costs one copy of the head and no allocation per header; the body is an
//! [`IOBuf`] cut from the connection's read buffer by reference.

use spindle_iobuf::IOBuf;
use std::borrow::Cow;
use std::fmt;
use std::net::SocketAddr;
use std::ops::Range;

/// A byte range of a request head (u32 offsets: heads are bounded by `http_max_header_size`).
pub(crate) type Span = Range<u32>;

/// An HTTP request as the server parsed it (or as a client builds it, see
/// [`HttpRequest::new`]).
#[derive(Clone, PartialEq, Eq)]
pub struct HttpRequest {
    /// The head's bytes: method, target and header names/values are spans of it.
    pub(crate) head: Vec<u8>,
    /// The method (`GET`, `POST`, ...).
    pub(crate) method: Span,
    /// The request target: path and optional `?query`.
    pub(crate) target: Span,
    /// Name and value of each header, in order.
    pub(crate) headers: Vec<(Span, Span)>,
    /// HTTP/1.`minor`.
    pub(crate) minor_version: u8,
    /// The body, de-chunked.
    pub body: IOBuf,
    /// The peer's address (server side), if known.
    pub remote: Option<SocketAddr>,
    /// The connection it arrived on (server side; the default id otherwise).
    pub socket_id: crate::socket::SocketId,
}

fn span_str<'a>(head: &'a [u8], s: &Span) -> &'a str {
    // Spans are taken from `&str`s that httparse validated (or from strings the builder
    // appended), so they always lie on UTF-8 boundaries of valid text; fall back to "" anyway.
    head.get(s.start as usize..s.end as usize)
        .and_then(|b| std::str::from_utf8(b).ok())
        .unwrap_or("")
}

/// Appends `text` to `head` and returns its span.
fn push_span(head: &mut Vec<u8>, text: &str) -> Span {
    let start = head.len() as u32;
    head.extend_from_slice(text.as_bytes());
    start..head.len() as u32
}

impl HttpRequest {
    /// A request built by a client: `method` (e.g. `"GET"`) and `target` (path and optional
    /// query, e.g. `"/vars?filter=rpc*"`), HTTP/1.1, no headers, empty body.
    pub fn new(method: &str, target: &str) -> HttpRequest {
        let mut head = Vec::with_capacity(method.len() + target.len() + 64);
        let method = push_span(&mut head, method);
        let target = push_span(&mut head, target);
        HttpRequest {
            head,
            method,
            target,
            headers: Vec::new(),
            minor_version: 1,
            body: IOBuf::new(),
            remote: None,
            socket_id: Default::default(),
        }
    }

    /// Adds a header (builder style).
    pub fn with_header(mut self, name: &str, value: &str) -> HttpRequest {
        self.add_header(name, value);
        self
    }

    /// Sets the body (builder style).
    pub fn with_body(mut self, body: impl Into<IOBuf>) -> HttpRequest {
        self.body = body.into();
        self
    }

    /// Adds a header.
    pub fn add_header(&mut self, name: &str, value: &str) {
        let n = push_span(&mut self.head, name);
        let v = push_span(&mut self.head, value);
        self.headers.push((n, v));
    }

    /// The method, e.g. `GET`.
    pub fn method(&self) -> &str {
        span_str(&self.head, &self.method)
    }

    /// The request target as sent: path and optional `?query`.
    pub fn uri(&self) -> &str {
        span_str(&self.head, &self.target)
    }

    /// The path (the target up to `?`), e.g. `/vars/rpc_server`.
    pub fn path(&self) -> &str {
        let t = self.uri();
        t.split_once('?').map_or(t, |(p, _)| p)
    }

    /// The raw query string (after `?`), if any.
    pub fn query(&self) -> Option<&str> {
        self.uri().split_once('?').map(|(_, q)| q)
    }

    /// The query parameters in order, percent-decoded (`+` is a space).
    pub fn query_params(&self) -> impl Iterator<Item = (Cow<'_, str>, Cow<'_, str>)> {
        self.query()
            .unwrap_or("")
            .split('&')
            .filter(|kv| !kv.is_empty())
            .map(|kv| {
                let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
                (percent_decode(k), percent_decode(v))
            })
    }

    /// The first query parameter called `name`, percent-decoded. `Some("")` for `?name` or
    /// `?name=`.
    pub fn query_param(&self, name: &str) -> Option<Cow<'_, str>> {
        self.query_params().find(|(k, _)| k == name).map(|(_, v)| v)
    }

    /// HTTP/1.`minor`: 0 or 1.
    pub fn minor_version(&self) -> u8 {
        self.minor_version
    }

    /// The headers in order, as sent.
    pub fn headers(&self) -> impl Iterator<Item = (&str, &str)> {
        self.headers
            .iter()
            .map(|(n, v)| (span_str(&self.head, n), span_str(&self.head, v)))
    }

    /// The first header called `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v)
    }

    /// Whether the client prefers HTML: its `Accept` header names `text/html`, as browsers'
    /// do (curl sends `*/*`). Builtin pages answer HTML when true, plain text otherwise.
    pub fn wants_html(&self) -> bool {
        self.header("accept").is_some_and(|a| {
            a.split(',')
                .any(|t| t.trim().to_ascii_lowercase().starts_with("text/html"))
        })
    }

    /// The `Content-Type` header without parameters (`; charset=...`), lower-cased
    /// comparisons are up to the caller.
    pub fn content_type(&self) -> Option<&str> {
        self.header("content-type")
            .map(|v| v.split(';').next().unwrap_or("").trim())
    }
}

impl fmt::Debug for HttpRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpRequest")
            .field("method", &self.method())
            .field("uri", &self.uri())
            .field("version", &format_args!("HTTP/1.{}", self.minor_version))
            .field("headers", &self.headers().collect::<Vec<_>>())
            .field("body_len", &self.body.len())
            .finish()
    }
}

/// Decodes `%XX` escapes and `+` (a space in query strings); invalid escapes stay as they are,
/// invalid UTF-8 becomes U+FFFD.
pub fn percent_decode(s: &str) -> Cow<'_, str> {
    if !s.bytes().any(|b| b == b'%' || b == b'+') {
        return Cow::Borrowed(s);
    }
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < b.len() => {
                let hex = |c: u8| (c as char).to_digit(16);
                match (hex(b[i + 1]), hex(b[i + 2])) {
                    (Some(h), Some(l)) => {
                        out.push((h * 16 + l) as u8);
                        i += 2;
                    }
                    _ => out.push(b'%'),
                }
            }
            c => out.push(c),
        }
        i += 1;
    }
    Cow::Owned(String::from_utf8_lossy(&out).into_owned())
}

/// An HTTP response: what a handler returns (server) or what a call got back (client).
///
/// The server adds `Content-Length` (or chunked framing when [`HttpResponse::chunked`] is set
/// and the client speaks HTTP/1.1) and `Connection` itself; a handler sets the rest.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct HttpResponse {
    /// Status code, e.g. 200.
    pub status: u16,
    /// Headers in order (client side: as received).
    pub headers: Vec<(String, String)>,
    /// The body (client side: de-chunked).
    pub body: IOBuf,
    /// Server side: send the body with `Transfer-Encoding: chunked` (HTTP/1.1 clients only;
    /// an HTTP/1.0 client gets `Content-Length`). Client side: whether it came chunked.
    pub chunked: bool,
}

impl HttpResponse {
    /// A response with `status`, no headers and an empty body.
    pub fn new(status: u16) -> HttpResponse {
        HttpResponse {
            status,
            ..HttpResponse::default()
        }
    }

    /// A `text/plain` response.
    pub fn text(status: u16, body: impl AsRef<str>) -> HttpResponse {
        HttpResponse::new(status)
            .with_header("Content-Type", "text/plain")
            .with_body(body.as_ref().as_bytes())
    }

    /// A `text/html` response.
    pub fn html(status: u16, body: impl AsRef<str>) -> HttpResponse {
        HttpResponse::new(status)
            .with_header("Content-Type", "text/html")
            .with_body(body.as_ref().as_bytes())
    }

    /// An `application/json` response with an already serialized body.
    pub fn json(status: u16, body: impl AsRef<str>) -> HttpResponse {
        HttpResponse::new(status)
            .with_header("Content-Type", "application/json")
            .with_body(body.as_ref().as_bytes())
    }

    /// Adds a header (builder style).
    pub fn with_header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// Sets the body (builder style): bytes are copied into an IOBuf, an IOBuf is shared.
    pub fn with_body(mut self, body: impl Into<IOBuf>) -> HttpResponse {
        self.body = body.into();
        self
    }

    /// Sends the body chunked (builder style; see [`HttpResponse::chunked`]).
    pub fn with_chunked(mut self) -> HttpResponse {
        self.chunked = true;
        self
    }

    /// The first header called `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The body as UTF-8 text (lossy), for logs and tests.
    pub fn body_text(&self) -> String {
        String::from_utf8_lossy(&self.body.to_vec()).into_owned()
    }

    /// Whether the status is 2xx.
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }
}

impl fmt::Debug for HttpResponse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpResponse")
            .field("status", &self.status)
            .field("headers", &self.headers)
            .field("body_len", &self.body.len())
            .field("chunked", &self.chunked)
            .finish()
    }
}

/// The reason phrase of a status code ("" for codes without a standard one).
pub fn reason_phrase(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        101 => "Switching Protocols",
        200 => "OK",
        201 => "Created",
        202 => "Accepted",
        204 => "No Content",
        206 => "Partial Content",
        301 => "Moved Permanently",
        302 => "Found",
        304 => "Not Modified",
        307 => "Temporary Redirect",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        411 => "Length Required",
        413 => "Payload Too Large",
        415 => "Unsupported Media Type",
        417 => "Expectation Failed",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        505 => "HTTP Version Not Supported",
        _ => "",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_accessors() {
        let r = HttpRequest::new("GET", "/vars/a%20b?filter=rpc*&x=1+2&flag&e=%zz")
            .with_header("Host", "h")
            .with_header("Content-Type", "application/json; charset=utf-8");
        assert_eq!(r.method(), "GET");
        assert_eq!(r.path(), "/vars/a%20b");
        assert_eq!(r.query_param("filter").as_deref(), Some("rpc*"));
        assert_eq!(r.query_param("x").as_deref(), Some("1 2"));
        assert_eq!(r.query_param("flag").as_deref(), Some(""));
        assert_eq!(r.query_param("e").as_deref(), Some("%zz"));
        assert_eq!(r.query_param("nope"), None);
        assert_eq!(r.header("host"), Some("h"));
        assert_eq!(r.content_type(), Some("application/json"));
        assert!(!r.wants_html());
        let browser = HttpRequest::new("GET", "/").with_header(
            "Accept",
            "application/xhtml+xml, Text/HTML;q=0.9, */*;q=0.8",
        );
        assert!(browser.wants_html());
        assert_eq!(
            HttpResponse::html(200, "<p>").header("content-type"),
            Some("text/html")
        );
        assert_eq!(percent_decode("a%2Fb%"), "a/b%");
        assert_eq!(percent_decode("%e4%b8%ad"), "中");
    }

    #[test]
    fn response_builders() {
        let r = HttpResponse::text(404, "nope").with_header("X-A", "1");
        assert_eq!(r.header("content-type"), Some("text/plain"));
        assert_eq!(r.header("x-a"), Some("1"));
        assert_eq!(r.body_text(), "nope");
        assert!(!r.is_success());
        assert_eq!(reason_phrase(431), "Request Header Fields Too Large");
    }
}
