//! Cutting one HTTP/1.x message off a read buffer: httparse for the head, then the body's
//! framing (`Content-Length`, `Transfer-Encoding: chunked`, or — responses only — until the
//! connection closes).
//!
//! # Contract (the [`ParseResult`] one)
//!
//! - Nothing is consumed unless a whole message (or a whole decision, see below) is cut.
//! - `TryOthers` only when the first bytes cannot start an HTTP message (no known method and no
//!   `HTTP/`), so a binary protocol's bytes are never claimed; a prefix of a method waits.
//! - Nothing is allocated for a size the peer declared: a `Content-Length` over the limit is
//!   answered before its bytes arrive, a chunked body is bounded as it is scanned.
//! - Bad requests are not parse errors: once the first bytes are those of an HTTP request, a
//!   malformed head is cut as a [`Cut::Reject`] (400, 413, 431) so the server can answer it
//!   before it closes the connection, as an HTTP server must.
//!
//! A head must fit in `max_header` bytes (431 otherwise); the contiguous view httparse needs is
//! the buffer's first block when the head lies in it (the common case: no copy), else a copy
//! of at most `max_header` bytes.

use super::message::{HttpRequest, HttpResponse, Span};
use crate::protocol::{IOBuf, ParseError, ParseResult};
use std::borrow::Cow;

/// Most headers in one head; more is answered 431.
pub const MAX_HEADERS: usize = 64;

/// Longest chunk-size line (size and extensions).
const MAX_CHUNK_LINE: usize = 1024;

/// The methods a request may start with (`TryOthers` for anything else).
const METHODS: [&[u8]; 9] = [
    b"GET ",
    b"POST ",
    b"PUT ",
    b"DELETE ",
    b"HEAD ",
    b"OPTIONS ",
    b"PATCH ",
    b"TRACE ",
    b"CONNECT ",
];

/// What the first bytes are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// A request line (`GET /...`).
    Request,
    /// A status line (`HTTP/1.1 200 OK`).
    Response,
}

/// Tells a request from a response from anything else by the first bytes: `TryOthers` if no
/// method and no `HTTP/` can start them, `NotEnoughData` for a prefix of one.
pub(crate) fn classify(source: &IOBuf) -> ParseResult<Kind> {
    let mut first = [0u8; 8];
    let got = source.copy_to(&mut first, 0);
    // The common cases first, without walking the table.
    if got >= 5 && (first[..4] == *b"GET " || first[..5] == *b"POST ") {
        return Ok(Kind::Request);
    }
    let first = &first[..got];
    let mut prefix = false;
    for (pattern, kind) in METHODS
        .iter()
        .map(|m| (*m, Kind::Request))
        .chain([(&b"HTTP/"[..], Kind::Response)])
    {
        let n = got.min(pattern.len());
        if first[..n] == pattern[..n] {
            if n == pattern.len() {
                return Ok(kind);
            }
            prefix = true;
        }
    }
    Err(if prefix && got > 0 {
        ParseError::NotEnoughData
    } else {
        ParseError::TryOthers
    })
}

/// Size limits of one message.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    /// Largest head (start line + headers + blank line).
    pub(crate) max_header: usize,
    /// Largest body (de-chunked).
    pub(crate) max_body: usize,
}

/// Per-connection parse state of a server connection (touched by its reader only).
#[derive(Debug, Default)]
pub(crate) struct ParseSide {
    /// Bytes of a refused body still to be discarded (413 with `Content-Length`).
    pub(crate) skip: u64,
    /// A request that closes the connection was cut: everything after it is discarded.
    pub(crate) closing: bool,
    /// `100 Continue` was already sent for the request being received.
    pub(crate) continue_sent: bool,
    /// Set by the parser: the request being received wants `100 Continue` now.
    pub(crate) send_continue: bool,
}

/// What a request's head says about the exchange.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RequestMeta {
    /// Keep the connection open after the response.
    pub(crate) keep_alive: bool,
    /// `HEAD`: the response carries no body.
    pub(crate) head_only: bool,
}

/// One cut.
#[derive(Debug)]
pub(crate) enum Cut {
    /// A whole request.
    Request(HttpRequest, RequestMeta),
    /// A whole response, and whether the server closes the connection after it
    /// (`Connection: close`, HTTP/1.0 without keep-alive, a body delimited by the close).
    Response(HttpResponse, bool),
    /// A request answered without a handler: 400 (malformed), 413 (body too large),
    /// 431 (head too large).
    Reject {
        /// The status to answer.
        status: u16,
        /// Why, for the response body.
        why: String,
        /// Close the connection after the answer.
        close: bool,
        /// HTTP/1.`minor` of the request, when its head was read.
        minor_version: u8,
    },
    /// Bytes were discarded (a refused body, input after a closing request, an interim
    /// response): nothing to process.
    Skip,
}

/// A contiguous view of the first `min(len, max)` bytes of `source`: its first block when that
/// holds them, else a copy.
fn head_view(source: &IOBuf, max: usize) -> Cow<'_, [u8]> {
    let n = source.len().min(max);
    if let Some(first) = source.slices().next() {
        if first.len() >= n {
            return Cow::Borrowed(&first[..n]);
        }
    }
    let mut v = vec![0u8; n];
    source.copy_to(&mut v, 0);
    Cow::Owned(v)
}

/// Offset of `part` (a sub-slice of `base`) as a span.
fn span_of(base: &[u8], part: &str) -> Span {
    let start = (part.as_ptr() as usize).saturating_sub(base.as_ptr() as usize) as u32;
    start..start + part.len() as u32
}

/// What the framing headers say.
#[derive(Debug, Default)]
struct Framing {
    content_length: Option<u64>,
    transfer_encoding: bool,
    chunked: bool,
    close: bool,
    keep_alive: bool,
    expect_continue: bool,
}

fn framing<'h>(headers: impl Iterator<Item = (&'h str, &'h [u8])>) -> Result<Framing, String> {
    let mut f = Framing::default();
    // Only the values of the headers below are looked at (and checked to be text).
    fn text(v: &[u8]) -> &str {
        std::str::from_utf8(v).unwrap_or("").trim()
    }
    for (name, value) in headers {
        if name.eq_ignore_ascii_case("content-length") {
            let value = text(value);
            let n: u64 = value
                .parse()
                .map_err(|_| format!("bad Content-Length \"{value}\""))?;
            if f.content_length.is_some_and(|m| m != n) {
                return Err("conflicting Content-Length headers".to_owned());
            }
            f.content_length = Some(n);
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            let value = text(value);
            f.transfer_encoding = true;
            f.chunked = value
                .rsplit(',')
                .next()
                .is_some_and(|t| t.trim().eq_ignore_ascii_case("chunked"));
        } else if name.eq_ignore_ascii_case("connection") {
            for t in text(value).split(',') {
                let t = t.trim();
                f.close |= t.eq_ignore_ascii_case("close");
                f.keep_alive |= t.eq_ignore_ascii_case("keep-alive");
            }
        } else if name.eq_ignore_ascii_case("expect") {
            f.expect_continue |= text(value).eq_ignore_ascii_case("100-continue");
        }
    }
    Ok(f)
}

/// Offset of the first `\n` in `buf[from..from + limit]`.
fn find_lf(buf: &IOBuf, from: usize, limit: usize) -> Option<usize> {
    let end = from.saturating_add(limit);
    let mut base = 0usize;
    for s in buf.slices() {
        let s_end = base + s.len();
        if s_end > from {
            let lo = from.max(base) - base;
            let hi = end.min(s_end).saturating_sub(base);
            if lo < hi {
                if let Some(i) = s[lo..hi].iter().position(|&b| b == b'\n') {
                    return Some(base + lo + i);
                }
            }
            if s_end >= end {
                return None;
            }
        }
        base = s_end;
    }
    None
}

/// One line starting at `pos`: `Ok(Some((content_len, next)))` where `next` is past the line
/// end (`\r\n` or a bare `\n`), `Ok(None)` when incomplete, `Err` when longer than `max`.
fn line_at(buf: &IOBuf, pos: usize, max: usize) -> Result<Option<(usize, usize)>, ()> {
    match find_lf(buf, pos, max) {
        Some(lf) => {
            let mut len = lf - pos;
            if len > 0 {
                let mut cr = [0u8; 1];
                buf.copy_to(&mut cr, lf - 1);
                if cr[0] == b'\r' {
                    len -= 1;
                }
            }
            Ok(Some((len, lf + 1)))
        }
        None if buf.len() >= pos.saturating_add(max) => Err(()),
        None => Ok(None),
    }
}

/// The result of scanning a chunked body.
#[derive(Debug, PartialEq, Eq)]
enum Chunks {
    /// Whole: the data segments `(offset, len)` and the offset past the trailers.
    Complete(Vec<(usize, usize)>, usize),
    /// More bytes are needed.
    Incomplete,
    /// The body is over the limit (the size so far).
    TooBig(u64),
    /// Not valid chunked encoding.
    Malformed(String),
}

/// Scans a chunked body starting at `pos` without consuming anything.
fn scan_chunked(buf: &IOBuf, mut pos: usize, limits: &Limits) -> Chunks {
    let mut segments = Vec::new();
    let mut total: u64 = 0;
    loop {
        let (len, next) = match line_at(buf, pos, MAX_CHUNK_LINE) {
            Ok(Some(l)) => l,
            Ok(None) => return Chunks::Incomplete,
            Err(()) => {
                return Chunks::Malformed(format!(
                    "chunk size line longer than {MAX_CHUNK_LINE} bytes"
                ))
            }
        };
        let mut line = [0u8; MAX_CHUNK_LINE];
        let line = &mut line[..len];
        buf.copy_to(line, pos);
        let text = std::str::from_utf8(line).unwrap_or("");
        let hex = text.split(';').next().unwrap_or("").trim();
        let size = match u64::from_str_radix(hex, 16) {
            Ok(s) if !hex.is_empty() && hex.len() <= 16 && !hex.starts_with('+') => s,
            _ => return Chunks::Malformed(format!("bad chunk size \"{}\"", text.escape_debug())),
        };
        pos = next;
        if size == 0 {
            // Trailers: lines up to an empty one, bounded like a head.
            let start = pos;
            loop {
                match line_at(buf, pos, limits.max_header) {
                    Ok(Some((0, next))) => return Chunks::Complete(segments, next),
                    Ok(Some((_, next))) => pos = next,
                    Ok(None) => return Chunks::Incomplete,
                    Err(()) => return Chunks::Malformed("trailer line too long".to_owned()),
                }
                if pos - start > limits.max_header {
                    return Chunks::Malformed("trailers too long".to_owned());
                }
            }
        }
        total = total.saturating_add(size);
        if total > limits.max_body as u64 {
            return Chunks::TooBig(total);
        }
        let size = size as usize;
        if buf.len() < pos + size + 2 {
            return Chunks::Incomplete;
        }
        let mut crlf = [0u8; 2];
        buf.copy_to(&mut crlf, pos + size);
        if &crlf != b"\r\n" {
            return Chunks::Malformed("chunk data not followed by CRLF".to_owned());
        }
        segments.push((pos, size));
        pos += size + 2;
    }
}

/// Cuts the head (`head_len` bytes) and the chunked body described by `segments`/`end` off
/// `source`, returning the de-chunked body.
fn cut_chunked(source: &mut IOBuf, segments: &[(usize, usize)], end: usize) -> IOBuf {
    let mut body = IOBuf::new();
    let mut pos = 0;
    for &(off, len) in segments {
        source.pop_front(off - pos);
        body.append_owned(source.split_to(len));
        pos = off + len;
    }
    source.pop_front(end - pos);
    body
}

fn reject(status: u16, why: impl Into<String>, close: bool, minor_version: u8) -> Cut {
    Cut::Reject {
        status,
        why: why.into(),
        close,
        minor_version,
    }
}

/// Consumes everything in `source` (a request the connection cannot recover from).
fn drain_reject(source: &mut IOBuf, status: u16, why: String, minor: u8) -> ParseResult<Cut> {
    source.clear();
    Ok(reject(status, why, true, minor))
}

/// Server side: cuts one request (or a decision about the input) off `source`. `source`
/// starts with a request line or a prefix of one unless `state` says bytes are to be
/// discarded. After a cut that closes the connection, everything is discarded.
pub(crate) fn parse_request(
    source: &mut IOBuf,
    limits: &Limits,
    state: &mut ParseSide,
) -> ParseResult<Cut> {
    let cut = cut_request(source, limits, state)?;
    if matches!(cut, Cut::Reject { close: true, .. }) {
        state.closing = true;
    }
    Ok(cut)
}

fn cut_request(source: &mut IOBuf, limits: &Limits, state: &mut ParseSide) -> ParseResult<Cut> {
    if state.closing {
        if source.is_empty() {
            return Err(ParseError::NotEnoughData);
        }
        source.clear();
        return Ok(Cut::Skip);
    }
    if state.skip > 0 {
        if source.is_empty() {
            return Err(ParseError::NotEnoughData);
        }
        let n = usize::try_from(state.skip)
            .unwrap_or(usize::MAX)
            .min(source.len());
        source.pop_front(n);
        state.skip -= n as u64;
        return Ok(Cut::Skip);
    }
    let view = head_view(source, limits.max_header);
    // Uninitialised: httparse writes the headers it finds, and 64 empty headers would cost a
    // 2 KiB memset per request.
    let mut headers =
        [const { std::mem::MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut []);
    let parsed = req.parse_with_uninit_headers(&view, &mut headers);
    let minor = req.version.unwrap_or(1);
    let head_len = match parsed {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) if source.len() >= limits.max_header => {
            let why = format!(
                "request head larger than http_max_header_size={}",
                limits.max_header
            );
            return drain_reject(source, 431, why, minor);
        }
        Ok(httparse::Status::Partial) => return Err(ParseError::NotEnoughData),
        Err(httparse::Error::TooManyHeaders) => {
            let why = format!("more than {MAX_HEADERS} headers");
            return drain_reject(source, 431, why, minor);
        }
        Err(e) => {
            return drain_reject(source, 400, format!("malformed request head: {e}"), minor);
        }
    };
    let (Some(method), Some(path)) = (req.method, req.path) else {
        return drain_reject(source, 400, "request line incomplete".to_owned(), minor);
    };
    let f = match framing(req.headers.iter().map(|h| (h.name, h.value))) {
        Ok(f) => f,
        Err(why) => return drain_reject(source, 400, why, minor),
    };
    if f.transfer_encoding && (!f.chunked || f.content_length.is_some()) {
        let why = "Transfer-Encoding must end with chunked and exclude Content-Length";
        return drain_reject(source, 400, why.to_owned(), minor);
    }
    let keep_alive = if minor >= 1 {
        !f.close
    } else {
        f.keep_alive && !f.close
    };
    let meta = RequestMeta {
        keep_alive,
        head_only: method == "HEAD",
    };
    let method_span = span_of(&view, method);
    let target = span_of(&view, path);
    let base = view.as_ptr() as usize;
    let header_spans: Vec<(Span, Span)> = req
        .headers
        .iter()
        .map(|h| {
            let vs = (h.value.as_ptr() as usize).saturating_sub(base) as u32;
            (span_of(&view, h.name), vs..vs + h.value.len() as u32)
        })
        .collect();
    let head = view[..head_len].to_vec();
    drop(view);

    let wait = |state: &mut ParseSide| {
        if f.expect_continue && !state.continue_sent {
            state.send_continue = true;
        }
        Err(ParseError::NotEnoughData)
    };
    let body = if f.chunked {
        match scan_chunked(source, head_len, limits) {
            // The head goes with the first segment's offset.
            Chunks::Complete(segments, end) => cut_chunked(source, &segments, end),
            Chunks::Incomplete => return wait(state),
            Chunks::TooBig(n) => {
                let why = format!(
                    "chunked body of more than {n} bytes exceeds max_body_size={}",
                    limits.max_body
                );
                return drain_reject(source, 413, why, minor);
            }
            Chunks::Malformed(why) => return drain_reject(source, 400, why, minor),
        }
    } else if let Some(n) = f.content_length {
        if n > limits.max_body as u64 {
            // Refuse now; discard the body as it arrives and keep the connection.
            let have = (source.len() - head_len) as u64;
            let now = have.min(n);
            source.pop_front(head_len + now as usize);
            state.skip = n - now;
            state.continue_sent = false;
            let why = format!(
                "Content-Length {n} exceeds max_body_size={}",
                limits.max_body
            );
            if !keep_alive {
                state.closing = true;
            }
            return Ok(reject(413, why, !keep_alive, minor));
        }
        let n = n as usize;
        if source.len() < head_len + n {
            return wait(state);
        }
        source.pop_front(head_len);
        source.split_to(n)
    } else {
        source.pop_front(head_len);
        IOBuf::new()
    };
    state.continue_sent = false;
    state.send_continue = false;
    if !keep_alive {
        state.closing = true;
    }
    Ok(Cut::Request(
        HttpRequest {
            head,
            method: method_span,
            target,
            headers: header_spans,
            minor_version: minor,
            body,
            remote: None,
            socket_id: Default::default(),
        },
        meta,
    ))
}

/// Client side: cuts one response off `source` (which starts with `HTTP/`). `read_eof`: the
/// server closed, so a body delimited by the close is complete.
pub(crate) fn parse_response(
    source: &mut IOBuf,
    limits: &Limits,
    read_eof: bool,
) -> ParseResult<Cut> {
    let view = head_view(source, limits.max_header);
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut resp = httparse::Response::new(&mut headers);
    let head_len = match resp.parse(&view) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) if source.len() < limits.max_header && !read_eof => {
            return Err(ParseError::NotEnoughData)
        }
        Ok(httparse::Status::Partial) => {
            return Err(ParseError::AbsolutelyWrong(format!(
                "response head incomplete within http_max_header_size={}",
                limits.max_header
            )))
        }
        Err(e) => {
            return Err(ParseError::AbsolutelyWrong(format!(
                "malformed response head: {e}"
            )))
        }
    };
    let status = resp.code.unwrap_or(0);
    let minor = resp.version.unwrap_or(1);
    let f = framing(resp.headers.iter().map(|h| (h.name, h.value)))
        .map_err(ParseError::AbsolutelyWrong)?;
    let header_list: Vec<(String, String)> = resp
        .headers
        .iter()
        .map(|h| {
            (
                h.name.to_owned(),
                String::from_utf8_lossy(h.value).trim().to_owned(),
            )
        })
        .collect();
    drop(view);
    if (100..200).contains(&status) && status != 101 {
        // An interim response (100 Continue): skip it.
        source.pop_front(head_len);
        return Ok(Cut::Skip);
    }
    let too_big = |declared: u64| ParseError::TooBigData {
        declared,
        limit: limits.max_body,
    };
    let mut close = false;
    let body = if status == 204 || status == 304 {
        source.pop_front(head_len);
        IOBuf::new()
    } else if f.chunked {
        match scan_chunked(source, head_len, limits) {
            Chunks::Complete(segments, end) => cut_chunked(source, &segments, end),
            Chunks::Incomplete => return Err(ParseError::NotEnoughData),
            Chunks::TooBig(n) => return Err(too_big(n)),
            Chunks::Malformed(why) => return Err(ParseError::AbsolutelyWrong(why)),
        }
    } else if let Some(n) = f.content_length {
        if n > limits.max_body as u64 {
            return Err(too_big(n));
        }
        if source.len() < head_len + n as usize {
            return Err(ParseError::NotEnoughData);
        }
        source.pop_front(head_len);
        source.split_to(n as usize)
    } else {
        let have = source.len() - head_len;
        if have > limits.max_body {
            return Err(too_big(have as u64));
        }
        if !read_eof {
            return Err(ParseError::NotEnoughData);
        }
        close = true;
        source.pop_front(head_len);
        source.split_to(have)
    };
    close |= f.close || (minor == 0 && !f.keep_alive);
    Ok(Cut::Response(
        HttpResponse {
            status,
            headers: header_list,
            body,
            chunked: f.chunked,
        },
        close,
    ))
}

#[cfg(test)]
mod tests;
