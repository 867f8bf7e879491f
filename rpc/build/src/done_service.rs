//! The done-handle ("asynchronous", in brpc's words) flavor of a generated service: for
//! `service EchoService`,
//!
//! - `trait EchoServiceAsync`: one method per rpc, `fn echo(&self, request: EchoRequest, done:
//!   Done<EchoResponse>)`. The method answers with `done.send(..)` — now, or later from any
//!   fiber or thread; the request's context travels in the handle (`done.ctx()`,
//!   `done.ctx_mut()`). Dropping the handle unanswered sends `EINTERNAL`.
//! - `struct EchoServiceAsyncServer<T: EchoServiceAsync>(pub T)`: implements
//!   `spindle_rpc::service::Service`; its `call_with_done` decodes the request and hands the
//!   method a typed handle, its synchronous `call` waits for the handle's answer.
//!
//! The synchronous trait and adapter are generated as before; a service implements whichever
//! flavor it wants.

use prost_build::Service;
use std::fmt::Write as _;

/// Appends the done-handle trait and adapter of `service` to `buf`. `k` is the runtime crate
/// path, `full_name` the service's full name, `desc` its descriptor static.
pub(crate) fn generate(k: &str, full_name: &str, desc: &str, service: &Service, buf: &mut String) {
    // Writing to a String cannot fail; the results are ignored on purpose.
    let name = &service.name;
    let _ = writeln!(
        buf,
        "/// The rpcs of `{full_name}`, answered through a done handle (possibly later, from any \
         fiber or thread); serve it with [`{name}AsyncServer`]."
    );
    let _ = writeln!(
        buf,
        "pub trait {name}Async: ::core::marker::Send + ::core::marker::Sync + 'static {{"
    );
    for m in &service.methods {
        let _ = writeln!(
            buf,
            "    /// Handles `{full_name}.{}`: answer with `done.send(..)`; dropping `done` \
             unanswered sends EINTERNAL.",
            m.proto_name
        );
        let _ = writeln!(
            buf,
            "    fn {}(&self, request: {}, done: {k}::service::Done<{}>);",
            m.name, m.input_type, m.output_type
        );
    }
    let _ = writeln!(buf, "}}\n");

    let (trait_name, adapter) = (format!("{name}Async"), format!("{name}AsyncServer"));
    adapter_head(k, full_name, &trait_name, &adapter, desc, buf);
    let _ = writeln!(
        buf,
        "        {k}::service::call_blocking(ctx, |done| \
         {k}::service::Service::call_with_done(self, method, request, done))"
    );
    let _ = writeln!(buf, "    }}");
    let _ = writeln!(
        buf,
        "    fn call_with_done(&self, method: usize, request: {k}::protocol::IOBuf, \
         done: {k}::service::ServiceDone) {{"
    );
    let _ = writeln!(buf, "        match method {{");
    for (i, m) in service.methods.iter().enumerate() {
        let _ = writeln!(buf, "            {i} => {{");
        let _ = writeln!(
            buf,
            "                match {k}::service::decode_request::<{}>(&{desc}.methods[{i}], request) {{",
            m.input_type
        );
        let _ = writeln!(
            buf,
            "                    ::core::result::Result::Ok(request) => \
             self.0.{}(request, {k}::service::Done::new(done)),",
            m.name
        );
        let _ = writeln!(
            buf,
            "                    ::core::result::Result::Err(e) => done.send(::core::result::Result::Err(e)),"
        );
        let _ = writeln!(buf, "                }}");
        let _ = writeln!(buf, "            }}");
    }
    let _ = writeln!(
        buf,
        "            _ => done.send(::core::result::Result::Err({k}::service::no_such_method(&{desc}, method))),"
    );
    let _ = writeln!(buf, "        }}\n    }}\n}}\n");
}

/// Writes the head of a server adapter shared by both flavors: its doc and struct, the
/// `Service` impl line, `descriptor` and the signature of `call` (up to its opening brace).
pub(crate) fn adapter_head(
    k: &str,
    full_name: &str,
    trait_name: &str,
    adapter: &str,
    desc: &str,
    buf: &mut String,
) {
    let _ = writeln!(
        buf,
        "/// Dispatches `{full_name}` requests to an implementation of [`{trait_name}`]."
    );
    let _ = writeln!(buf, "pub struct {adapter}<T>(pub T);\n");
    let _ = writeln!(
        buf,
        "impl<T: {trait_name}> {k}::service::Service for {adapter}<T> {{"
    );
    let _ = writeln!(
        buf,
        "    fn descriptor(&self) -> &'static {k}::service::ServiceDescriptor {{ &{desc} }}"
    );
    let _ = writeln!(
        buf,
        "    fn call(&self, method: usize, ctx: &mut {k}::service::CallContext, \
         request: {k}::protocol::IOBuf) \
         -> ::core::result::Result<{k}::protocol::IOBuf, {k}::errors::RpcError> {{"
    );
}
