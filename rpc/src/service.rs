//! Services as generated code sees them (brpc's `google::protobuf::Service` + descriptors).
//!
//! `spindle-rpc-build` generates, for each protobuf `service Foo`:
//! - a trait `Foo` with one method per rpc, taking `&mut CallContext` and the decoded request;
//! - `FOO_DESCRIPTOR: ServiceDescriptor` (full name, method names in declaration order);
//! - `FooServer<T: Foo>`, an adapter implementing [`Service`] (decode, call, encode), which a
//!   server registers and dispatches to by method index;
//! - `FooStub<C: ClientChannel>`, a client stub whose methods encode the request, call the
//!   channel and decode the response;
//! - `trait FooAsync` and `FooAsyncServer<T: FooAsync>`: the done-handle flavor, whose methods
//!   get the request and a [`Done`] handle and may answer later from any fiber or thread
//!   (brpc's asynchronous service); the adapter overrides [`Service::call_with_done`].
//!
//! [`Service`] and [`ClientChannel`] are object-safe so a server keeps `Box<dyn Service>`s and a
//! stub works over any channel (single server, load-balanced, or an in-process loopback in
//! tests). [`CallContext`] carries the per-call state the method may read or set; the
//! server/channel work grows it into brpc's `Controller`.

use crate::compress::CompressType;
use crate::errors::{ErrorCode, RpcError};
use crate::protocol::MessageBody;
use spindle_iobuf::IOBuf;
use std::marker::PhantomData;

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
    /// Client: a handle another thread or fiber may cancel this call with, synchronous calls
    /// included (brpc's `StartCancel(cntl.call_id())`); see
    /// [`CancelHandle`](crate::channel::CancelHandle). Server: unused.
    pub cancel: Option<crate::channel::CancelHandle>,
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

    /// Runs method `method` on `request` and answers through `done` — now or later, from any
    /// fiber or thread (brpc's `done->Run()`). This is what a server calls. The default runs
    /// [`Service::call`] and answers at once; done-handle services (generated `FooAsyncServer`
    /// adapters) override it.
    fn call_with_done(&self, method: usize, request: IOBuf, mut done: ServiceDone) {
        let result = self.call(method, done.ctx_mut(), request);
        done.send(result);
    }
}

/// Sends the answer of one request; the server implements it (one per request).
pub trait Responder: Send {
    /// Sends `result` (the serialized response, or the error) with `ctx`'s response attachment
    /// and compression. Called exactly once.
    fn respond(self: Box<Self>, ctx: CallContext, result: Result<IOBuf, RpcError>);
}

/// The untyped "done" handle of one request (brpc's `done` closure): the request's
/// [`CallContext`] plus the way back to the client. Answer with [`ServiceDone::send`], from
/// any fiber or thread, at any time; dropping it unanswered sends `EINTERNAL` ("response was
/// never sent"), so a client never waits for an answer that cannot come. Generated code wraps
/// it in the typed [`Done`].
pub struct ServiceDone {
    /// The request's context; its response fields are sent with the answer.
    ctx: CallContext,
    /// `None` once answered.
    responder: Option<Box<dyn Responder>>,
}

impl std::fmt::Debug for ServiceDone {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServiceDone")
            .field("ctx", &self.ctx)
            .field("answered", &self.responder.is_none())
            .finish()
    }
}

impl ServiceDone {
    /// A handle answering through `responder` (for servers and tests).
    pub fn new(ctx: CallContext, responder: Box<dyn Responder>) -> ServiceDone {
        ServiceDone {
            ctx,
            responder: Some(responder),
        }
    }

    /// The request's context (request attachment, log id, ...).
    pub fn ctx(&self) -> &CallContext {
        &self.ctx
    }

    /// The context to fill before answering (response attachment, compression).
    pub fn ctx_mut(&mut self) -> &mut CallContext {
        &mut self.ctx
    }

    /// Sends the answer: the serialized response or an error.
    pub fn send(mut self, result: Result<IOBuf, RpcError>) {
        if let Some(r) = self.responder.take() {
            r.respond(std::mem::take(&mut self.ctx), result);
        }
    }
}

impl Drop for ServiceDone {
    fn drop(&mut self) {
        if let Some(r) = self.responder.take() {
            r.respond(
                std::mem::take(&mut self.ctx),
                Err(RpcError::new(
                    ErrorCode::Internal,
                    "response was never sent: the handler dropped its done handle",
                )),
            );
        }
    }
}

/// The typed "done" handle a done-handle (asynchronous) method gets: keep it, answer later
/// with [`Done::send`] from any fiber or thread. Dropping it unanswered sends `EINTERNAL`
/// ("response was never sent").
pub struct Done<M> {
    inner: ServiceDone,
    _response: PhantomData<fn(M)>,
}

impl<M> std::fmt::Debug for Done<M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.inner.fmt(f)
    }
}

impl<M: MessageBody> Done<M> {
    /// Wraps an untyped handle (generated code does this).
    pub fn new(inner: ServiceDone) -> Done<M> {
        Done {
            inner,
            _response: PhantomData,
        }
    }

    /// The request's context (request attachment, log id, ...).
    pub fn ctx(&self) -> &CallContext {
        self.inner.ctx()
    }

    /// The context to fill before answering (response attachment, compression).
    pub fn ctx_mut(&mut self) -> &mut CallContext {
        self.inner.ctx_mut()
    }

    /// Sends the response, or an error.
    pub fn send(self, result: Result<M, RpcError>) {
        self.inner
            .send(result.map(|response| encode_message(&response)));
    }
}

/// Runs a done-handle method and waits for its answer: the synchronous [`Service::call`] of a
/// done-handle service. `start` gets a [`ServiceDone`] over a copy of `ctx`; the answer's
/// context is copied back. Parks the calling fiber (or blocks the thread) until the handle
/// answers or is dropped.
pub fn call_blocking(
    ctx: &mut CallContext,
    start: impl FnOnce(ServiceDone),
) -> Result<IOBuf, RpcError> {
    use spindle_runtime::butex::Butex;
    use std::sync::atomic::Ordering;
    use std::sync::{Arc, Mutex};

    type Slot = Mutex<Option<(CallContext, Result<IOBuf, RpcError>)>>;
    struct Waiter {
        slot: Slot,
        ready: Butex,
    }
    struct Back(Arc<Waiter>);
    impl Responder for Back {
        fn respond(self: Box<Self>, ctx: CallContext, result: Result<IOBuf, RpcError>) {
            *self.0.slot.lock().unwrap_or_else(|e| e.into_inner()) = Some((ctx, result));
            self.0.ready.value().store(1, Ordering::Release);
            self.0.ready.wake_all();
        }
    }
    let waiter = Arc::new(Waiter {
        slot: Mutex::new(None),
        ready: Butex::new(0),
    });
    start(ServiceDone::new(
        ctx.clone(),
        Box::new(Back(waiter.clone())),
    ));
    while waiter.ready.value().load(Ordering::Acquire) == 0 {
        let _ = waiter.ready.wait(0, None);
    }
    let answer = waiter.slot.lock().unwrap_or_else(|e| e.into_inner()).take();
    match answer {
        Some((back, result)) => {
            *ctx = back;
            result
        }
        None => Err(RpcError::new(
            ErrorCode::Internal,
            "response was never sent",
        )),
    }
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
