//! Services as generated code sees them (brpc's `google::protobuf::Service` + descriptors).
//!
//! `spindle-rpc-build` generates, for each protobuf `service Foo`:
//! - a trait `Foo` with one method per rpc, taking `&mut CallContext` and the decoded request;
//! - `FOO_DESCRIPTOR: ServiceDescriptor` (full name, method names in declaration order);
//! - `FooServer<T: Foo>`, an adapter implementing [`Service`] (decode, call, encode), which a
//!   server registers and dispatches to by method index;
//! - `FooStub<C: ClientChannel>`, a client stub whose methods encode the request, call the
//!   channel and decode the response.
//!
//! [`Service`] and [`ClientChannel`] are object-safe so a server keeps `Box<dyn Service>`s and a
//! stub works over any channel (single server, load-balanced, or an in-process loopback in
//! tests). [`CallContext`] carries the per-call state the method may read or set; the
//! server/channel work grows it into brpc's `Controller`.

use crate::compress::CompressType;
use crate::errors::{ErrorCode, RpcError};
use crate::protocol::MessageBody;
use spindle_iobuf::IOBuf;

/// One rpc of a service.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MethodDescriptor {
    /// The service's full name, e.g. `example.EchoService` (what baidu_std sends).
    pub service: &'static str,
    /// The method name as in the .proto file, e.g. `Echo`.
    pub name: &'static str,
    /// Position in the service, in declaration order; [`Service::call`] dispatches on it.
    pub index: usize,
    /// Full name of the request message, e.g. `example.EchoRequest`.
    pub input_type: &'static str,
    /// Full name of the response message.
    pub output_type: &'static str,
}

/// A service's name and methods.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServiceDescriptor {
    /// Full name with package, e.g. `example.EchoService`.
    pub full_name: &'static str,
    /// Name without package, e.g. `EchoService`.
    pub name: &'static str,
    /// Methods in declaration order (`methods[i].index == i`).
    pub methods: &'static [MethodDescriptor],
    /// The serialized `FileDescriptorSet` of the .proto files that define the service (imports
    /// included), when the build step embedded it (`spindle_rpc_build::descriptors`): lets a
    /// server find the message descriptors of its methods (JSON over HTTP).
    pub descriptor_set: Option<&'static [u8]>,
}

impl ServiceDescriptor {
    /// The method called `name` (as in the .proto file).
    pub fn method(&self, name: &str) -> Option<&'static MethodDescriptor> {
        self.methods.iter().find(|m| m.name == name)
    }
}

/// Per-call state visible to a method (server) or set by the caller (client).
#[derive(Debug, Clone, Default)]
pub struct CallContext {
    /// The request's `log_id`, if any.
    pub log_id: Option<i64>,
    /// Bytes sent after the request body (not part of the message).
    pub request_attachment: IOBuf,
    /// Bytes to send (server) or received (client) after the response body.
    pub response_attachment: IOBuf,
    /// How the request body is (client: will be) compressed.
    pub request_compress_type: CompressType,
    /// How the response body is (server: will be) compressed.
    pub response_compress_type: CompressType,
    /// Client: this call's deadline in ms, overriding the channel's `timeout_ms` (brpc
    /// `Controller::set_timeout_ms`); `<= 0` = none. Server: unused.
    pub timeout_ms: Option<i64>,
}

/// A service a server can dispatch to; implemented by generated `FooServer` adapters.
pub trait Service: Send + Sync + 'static {
    /// The service's name and methods.
    fn descriptor(&self) -> &'static ServiceDescriptor;

    /// Runs method `method` (its [`MethodDescriptor::index`]) on the serialized `request`,
    /// returning the serialized response. `ENOMETHOD` for an index out of range, `EREQUEST` for
    /// a request that does not decode; other errors come from the method itself.
    fn call(&self, method: usize, ctx: &mut CallContext, request: IOBuf)
        -> Result<IOBuf, RpcError>;
}

/// What a client stub calls through; the channel implements it.
pub trait ClientChannel {
    /// Sends `request` to `method` and returns the serialized response body (decompressed), or
    /// the call's error. `ctx` carries the attachment out and back.
    fn call(
        &self,
        method: &'static MethodDescriptor,
        ctx: &mut CallContext,
        request: &dyn MessageBody,
    ) -> Result<IOBuf, RpcError>;
}

impl<C: ClientChannel + ?Sized> ClientChannel for &C {
    fn call(
        &self,
        method: &'static MethodDescriptor,
        ctx: &mut CallContext,
        request: &dyn MessageBody,
    ) -> Result<IOBuf, RpcError> {
        (**self).call(method, ctx, request)
    }
}

impl<C: ClientChannel + ?Sized> ClientChannel for std::sync::Arc<C> {
    fn call(
        &self,
        method: &'static MethodDescriptor,
        ctx: &mut CallContext,
        request: &dyn MessageBody,
    ) -> Result<IOBuf, RpcError> {
        (**self).call(method, ctx, request)
    }
}

/// Decodes a request body for a generated server adapter; `EREQUEST` naming the method if it
/// does not decode.
pub fn decode_request<M: prost::Message + Default>(
    method: &MethodDescriptor,
    body: IOBuf,
) -> Result<M, RpcError> {
    M::decode(body).map_err(|e| {
        RpcError::new(
            ErrorCode::Request,
            format!(
                "request of {}.{} is not a valid {}: {e}",
                method.service, method.name, method.input_type
            ),
        )
    })
}

/// Decodes a response body for a generated client stub; `ERESPONSE` naming the method if it
/// does not decode.
pub fn decode_response<M: prost::Message + Default>(
    method: &MethodDescriptor,
    body: IOBuf,
) -> Result<M, RpcError> {
    M::decode(body).map_err(|e| {
        RpcError::new(
            ErrorCode::Response,
            format!(
                "response of {}.{} is not a valid {}: {e}",
                method.service, method.name, method.output_type
            ),
        )
    })
}

/// Serializes a message into a new IOBuf.
pub fn encode_message(message: &dyn MessageBody) -> IOBuf {
    let mut out = IOBuf::new();
    message.encode_body(&mut out);
    out
}

/// The error a server adapter returns for a method index it does not have.
pub fn no_such_method(service: &ServiceDescriptor, index: usize) -> RpcError {
    RpcError::new(
        ErrorCode::NoMethod,
        format!("{} has no method #{index}", service.full_name),
    )
}
