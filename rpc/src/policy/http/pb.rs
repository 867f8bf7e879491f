//! Protobuf methods over HTTP (brpc's "pb over http"): the URL names the method, the body is
//! the request message as JSON (the protobuf JSON mapping, via prost-reflect) or as binary
//! protobuf (`Content-Type: application/proto`), and errors map to HTTP statuses with brpc's
//! error code and text in the `x-bd-error-code` header and the body.
//!
//! Message descriptors come from the `FileDescriptorSet` the build step embeds in every
//! generated [`ServiceDescriptor`](crate::service::ServiceDescriptor); each set is decoded
//! once per process into a [`DescriptorPool`] and cached by its address.

use super::message::{HttpRequest, HttpResponse};
use crate::errors::{ErrorCode, RpcError};
use crate::protocol::IOBuf;
use prost::Message as _;
use prost_reflect::{DescriptorPool, DynamicMessage, MessageDescriptor, SerializeOptions};
use std::collections::HashMap;
use std::sync::{LazyLock, Mutex};

/// The header carrying brpc's error code in a failed response (the body carries the text).
pub const ERROR_CODE_HEADER: &str = "x-bd-error-code";

/// Content types of binary protobuf bodies; anything else is read as JSON.
const PROTO_TYPES: [&str; 3] = [
    "application/proto",
    "application/x-protobuf",
    "application/protobuf",
];

/// How a protobuf body is encoded on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyFormat {
    /// The protobuf JSON mapping (`application/json`).
    Json,
    /// Binary protobuf (`application/proto`).
    Proto,
}

impl BodyFormat {
    /// The format of a request with this `Content-Type` (no or an unknown type: JSON, as brpc).
    pub fn of_request(req: &HttpRequest) -> BodyFormat {
        match req.content_type() {
            Some(t) if PROTO_TYPES.iter().any(|p| t.eq_ignore_ascii_case(p)) => BodyFormat::Proto,
            _ => BodyFormat::Json,
        }
    }

    /// The `Content-Type` value.
    pub fn content_type(self) -> &'static str {
        match self {
            BodyFormat::Json => "application/json",
            BodyFormat::Proto => "application/proto",
        }
    }
}

/// Splits a protobuf method path: `/example.EchoService/Echo` → `("example.EchoService",
/// "Echo")` (a short service name is resolved by the server). `None` for other shapes.
pub fn split_method_path(path: &str) -> Option<(&str, &str)> {
    let rest = path.strip_prefix('/')?;
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    let (service, method) = rest.split_once('/')?;
    if service.is_empty() || method.is_empty() || method.contains('/') {
        return None;
    }
    Some((service, method))
}

/// The HTTP status for a brpc error code (as brpc's HTTP server maps them).
pub fn status_of(code: ErrorCode) -> u16 {
    match code {
        ErrorCode::NoService | ErrorCode::NoMethod => 404,
        ErrorCode::Request => 400,
        ErrorCode::RpcAuth => 401,
        ErrorCode::Limit | ErrorCode::LogOff => 503,
        ErrorCode::RpcTimedOut => 504,
        ErrorCode::Other(n) if n == libc::EPERM => 403,
        ErrorCode::Other(n) if n == libc::EINVAL => 400,
        ErrorCode::Other(n) if n == libc::ETIMEDOUT => 504,
        _ => 500,
    }
}

/// The response for a failed call: the mapped status, `x-bd-error-code`, and the error text
/// as a `text/plain` body.
pub fn error_response(e: &RpcError) -> HttpResponse {
    let code = match e.code.code() {
        -1 => ErrorCode::Internal.code(),
        c => c,
    };
    HttpResponse::text(status_of(e.code), &e.text).with_header(ERROR_CODE_HEADER, code.to_string())
}

/// The decoded pool of an embedded descriptor set (cached per process by the set's address).
pub fn pool_of(set: &'static [u8]) -> Result<DescriptorPool, RpcError> {
    static POOLS: LazyLock<Mutex<HashMap<usize, DescriptorPool>>> =
        LazyLock::new(|| Mutex::new(HashMap::new()));
    let key = set.as_ptr() as usize;
    let mut pools = POOLS.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(p) = pools.get(&key) {
        return Ok(p.clone());
    }
    let pool = DescriptorPool::decode(set).map_err(|e| {
        RpcError::new(
            ErrorCode::Internal,
            format!("embedded descriptor set does not decode: {e}"),
        )
    })?;
    pools.insert(key, pool.clone());
    Ok(pool)
}

/// The descriptor of message `name` (full name) in `pool`.
pub fn message_of(pool: &DescriptorPool, name: &str) -> Result<MessageDescriptor, RpcError> {
    pool.get_message_by_name(name).ok_or_else(|| {
        RpcError::new(
            ErrorCode::Internal,
            format!("message {name} is not in the service's descriptor set"),
        )
    })
}

/// Converts a JSON body to the binary encoding of message `desc`; an empty body is the empty
/// message. `EREQUEST` naming the message when the JSON does not fit it.
pub fn json_to_proto(desc: &MessageDescriptor, json: &IOBuf) -> Result<IOBuf, RpcError> {
    let bytes = json.to_vec();
    let text: &[u8] = if bytes.iter().all(u8::is_ascii_whitespace) {
        b"{}"
    } else {
        &bytes
    };
    let bad = |e: serde_json::Error| {
        RpcError::new(
            ErrorCode::Request,
            format!("JSON body is not a valid {}: {e}", desc.full_name()),
        )
    };
    let mut de = serde_json::Deserializer::from_slice(text);
    let msg = DynamicMessage::deserialize(desc.clone(), &mut de).map_err(bad)?;
    de.end().map_err(bad)?;
    let mut out = IOBuf::new();
    msg.encode_raw(&mut out);
    Ok(out)
}

/// Converts the binary encoding of message `desc` to JSON (protobuf JSON mapping: lowerCamelCase
/// names, default values omitted). `code` is the error to report when the bytes do not decode
/// (`EINTERNAL` for a server's own response, `ERESPONSE` for a client).
pub fn proto_to_json(
    desc: &MessageDescriptor,
    proto: IOBuf,
    code: ErrorCode,
) -> Result<String, RpcError> {
    let msg = DynamicMessage::decode(desc.clone(), proto).map_err(|e| {
        RpcError::new(
            code,
            format!("body is not a valid {}: {e}", desc.full_name()),
        )
    })?;
    let mut out = Vec::with_capacity(64);
    let mut ser = serde_json::Serializer::new(&mut out);
    msg.serialize_with_options(&mut ser, &SerializeOptions::new())
        .map_err(|e| RpcError::new(code, format!("cannot write JSON: {e}")))?;
    String::from_utf8(out).map_err(|e| RpcError::new(code, e.to_string()))
}

/// The outcome a client reads from a response: 2xx is success; otherwise the error from
/// `x-bd-error-code` and the body (a brpc or Spindle server), or `EHTTP` naming the status.
pub fn response_error(resp: &HttpResponse) -> Option<RpcError> {
    if resp.is_success() {
        return None;
    }
    let mut text = resp.body_text();
    if let Some(code) = resp
        .header(ERROR_CODE_HEADER)
        .and_then(|c| c.trim().parse::<i32>().ok())
    {
        return Some(RpcError::new(ErrorCode::from_code(code), text));
    }
    const MAX_TEXT: usize = 256;
    if text.len() > MAX_TEXT {
        let mut end = MAX_TEXT;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
        text.push_str("...");
    }
    Some(RpcError::new(
        ErrorCode::Http,
        format!(
            "HTTP {} {}: {}",
            resp.status,
            super::message::reason_phrase(resp.status),
            text.trim_end()
        ),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::example::{EchoRequest, ECHO_SERVICE_DESCRIPTOR};

    #[test]
    fn paths_and_statuses() {
        assert_eq!(
            split_method_path("/example.EchoService/Echo"),
            Some(("example.EchoService", "Echo"))
        );
        assert_eq!(
            split_method_path("/EchoService/Echo/"),
            Some(("EchoService", "Echo"))
        );
        assert_eq!(split_method_path("/a/b/c"), None);
        assert_eq!(split_method_path("/a"), None);
        assert_eq!(split_method_path("//b"), None);
        assert_eq!(status_of(ErrorCode::NoMethod), 404);
        assert_eq!(status_of(ErrorCode::Limit), 503);
        assert_eq!(status_of(ErrorCode::Other(12345)), 500);
        let r = error_response(&RpcError::new(ErrorCode::Request, "bad"));
        assert_eq!(r.status, 400);
        assert_eq!(r.header(ERROR_CODE_HEADER), Some("1003"));
        assert_eq!(response_error(&r).unwrap().code, ErrorCode::Request);
        let e = response_error(&HttpResponse::text(404, "nope")).unwrap();
        assert_eq!(e.code, ErrorCode::Http);
        assert_eq!(e.text, "HTTP 404 Not Found: nope");
    }

    #[test]
    fn json_round_trip_through_embedded_descriptors() {
        let pool = pool_of(ECHO_SERVICE_DESCRIPTOR.descriptor_set.unwrap()).unwrap();
        let desc = message_of(&pool, "example.EchoRequest").unwrap();
        let pb = json_to_proto(&desc, &IOBuf::from(&br#"{"message":"hi"}"#[..])).unwrap();
        let m = EchoRequest::decode(pb.clone()).unwrap();
        assert_eq!(m.message, "hi");
        assert_eq!(
            proto_to_json(&desc, pb, ErrorCode::Internal).unwrap(),
            r#"{"message":"hi"}"#
        );
        let e = json_to_proto(&desc, &IOBuf::from(&br#"{"nope":1}"#[..])).unwrap_err();
        assert_eq!(e.code, ErrorCode::Request);
        assert!(e.text.contains("example.EchoRequest"), "{e}");
        let e = json_to_proto(&desc, &IOBuf::from(&b"{} x"[..])).unwrap_err();
        assert_eq!(e.code, ErrorCode::Request);
        // An empty body is the empty message.
        assert!(json_to_proto(&desc, &IOBuf::from(&b" "[..]))
            .unwrap()
            .is_empty());
        let e =
            proto_to_json(&desc, IOBuf::from(&b"\xff\xff"[..]), ErrorCode::Response).unwrap_err();
        assert_eq!(e.code, ErrorCode::Response);
    }
}
