//! HTTP calls on a channel of protocol `"http"`: any request ([`Channel::http_call`]) and
//! protobuf methods with JSON bodies ([`Channel::call_json`]). Protobuf calls with binary
//! bodies go through [`Channel::call_method`] and generated stubs as with any protocol.
//!
//! The request is serialized here, whole, and passed through the ordinary call path (deadline,
//! retries of connection errors, pooled or short connections) under a method with an empty
//! name, which the HTTP protocol writes as it is.

use super::Channel;
use crate::errors::{ErrorCode, RpcError};
use crate::policy::http::{self, pb, HttpRequest, HttpResponse};
use crate::protocol::{IOBuf, MessageBody};
use crate::service::{CallContext, MethodDescriptor};

/// The pseudo-method of a request serialized by the caller.
static RAW_REQUEST: MethodDescriptor = MethodDescriptor {
    service: "",
    name: http::RAW_REQUEST_METHOD,
    index: 0,
    input_type: "",
    output_type: "",
};

/// A serialized request as a message body.
struct Serialized(IOBuf);

impl MessageBody for Serialized {
    fn encode_body(&self, out: &mut IOBuf) {
        out.append_iobuf(&self.0);
    }
}

impl Channel {
    /// Sends `request` and returns the response (synchronous; the channel's deadline and
    /// retries apply). A `Host` header naming the server is added when the request has none,
    /// and the channel's credential as `Authorization` when it has an authenticator.
    /// A status other than 2xx fails the call: with the code and text of `x-bd-error-code`
    /// when the server sent one, else `EHTTP` naming the status and the start of the body.
    /// Fails with `EREQUEST` on a channel whose protocol is not `http`.
    pub fn http_call(&self, request: &HttpRequest) -> Result<HttpResponse, RpcError> {
        self.http_call_with(request, &CallContext::default())
    }

    /// [`Channel::http_call`] with per-call options (`ctx.timeout_ms`).
    pub fn http_call_with(
        &self,
        request: &HttpRequest,
        ctx: &CallContext,
    ) -> Result<HttpResponse, RpcError> {
        if self.inner.protocol.name() != http::Http::NAME {
            return Err(RpcError::new(
                ErrorCode::Request,
                format!(
                    "http_call on a channel of protocol {}",
                    self.inner.protocol.name()
                ),
            ));
        }
        let mut framed = IOBuf::new();
        let auth = self.inner.options.authenticator.as_deref();
        let host = request.header("host").is_none();
        if host || auth.is_some() {
            let mut req = request.clone();
            if host {
                req.add_header("Host", &self.server().to_string());
            }
            if let Some(auth) = auth {
                req.add_header("Authorization", &http::credential(auth)?);
            }
            http::serialize_request(&mut framed, &req, &request.body);
        } else {
            http::serialize_request(&mut framed, request, &request.body);
        }
        let r = self.call_method(&RAW_REQUEST, ctx, &Serialized(framed))?;
        let mut resp = r.http.map(|b| *b).unwrap_or_default();
        resp.body = r.payload;
        Ok(resp)
    }

    /// Calls protobuf method `method` of `service` (full or short name) with the request as
    /// JSON (the protobuf JSON mapping) and returns the response as JSON. Errors as
    /// [`Channel::http_call`]; a server error carries the server's code (e.g. `ENOMETHOD`,
    /// `EREQUEST` for JSON that does not fit the request message).
    pub fn call_json(&self, service: &str, method: &str, json: &str) -> Result<String, RpcError> {
        let req = HttpRequest::new("POST", &format!("/{service}/{method}"))
            .with_header("Content-Type", pb::BodyFormat::Json.content_type())
            .with_body(json.as_bytes());
        let resp = self.http_call(&req)?;
        String::from_utf8(resp.body.to_vec()).map_err(|e| {
            RpcError::new(
                ErrorCode::Response,
                format!("JSON response of {service}/{method} is not UTF-8: {e}"),
            )
        })
    }
}
