//! Code generation for Spindle services, for use in a `build.rs`.
//!
//! prost-build turns protobuf messages into Rust structs; this crate adds a
//! [`prost_build::ServiceGenerator`] that turns each `service` into (for `service EchoService`
//! in `package example`):
//!
//! - `trait EchoService`: one method per rpc, `fn echo(&self, ctx: &mut CallContext, request:
//!   EchoRequest) -> Result<EchoResponse, RpcError>` — what the user implements;
//! - `static ECHO_SERVICE_DESCRIPTOR: ServiceDescriptor`: full name `example.EchoService` and
//!   the methods in declaration order (the index is what a server dispatches on);
//! - `struct EchoServiceServer<T: EchoService>(pub T)`: implements
//!   `spindle_rpc::service::Service` (decode request → call → encode response), which a server
//!   registers;
//! - `struct EchoServiceStub<C: ClientChannel>`: one method per rpc that encodes the request,
//!   calls the channel and decodes the response.
//!
//! Streaming rpcs (`stream` in the .proto) have no baidu_std mapping; a service that declares
//! one generates a `compile_error!` naming it.
//!
//! In `build.rs`, inside `fn main`:
//!
//! ```no_run
//! spindle_rpc_build::compile_protos(&["proto/echo.proto"], &["proto"]).unwrap();
//! ```
//!
//! and in the crate: `include!(concat!(env!("OUT_DIR"), "/example.rs"));`.

#![warn(missing_docs)]

pub mod descriptors;

use prost_build::{Method, Service};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// Emits a server trait, a descriptor, a dispatch adapter and a client stub per service.
#[derive(Debug, Clone)]
pub struct ServiceGenerator {
    /// Path of the spindle-rpc crate in generated code (`::spindle_rpc`, or `crate` inside it).
    crate_path: String,
    /// Expression of the `descriptor_set` field of generated descriptors ([`descriptors`]).
    descriptor_set: Option<String>,
}

impl Default for ServiceGenerator {
    fn default() -> Self {
        ServiceGenerator {
            crate_path: "::spindle_rpc".to_owned(),
            descriptor_set: None,
        }
    }
}

impl ServiceGenerator {
    /// A generator whose code refers to the runtime as `::spindle_rpc`.
    pub fn new() -> ServiceGenerator {
        ServiceGenerator::default()
    }

    /// Refers to the runtime crate as `path` instead (e.g. a re-export).
    pub fn with_crate_path(path: impl Into<String>) -> ServiceGenerator {
        ServiceGenerator {
            crate_path: path.into(),
            descriptor_set: None,
        }
    }

    /// Generated descriptors embed a file descriptor set with `expr` (an expression of type
    /// `Option<&'static [u8]>`; see [`descriptors::emit_descriptor_set`]).
    pub fn with_descriptor_set(mut self, expr: String) -> ServiceGenerator {
        self.descriptor_set = Some(expr);
        self
    }
}

/// Writes the .proto comments as docs, or `fallback` when there are none.
fn doc_or(comments: &prost_build::Comments, indent: u8, fallback: &str, buf: &mut String) {
    if comments.leading.is_empty() && comments.trailing.is_empty() {
        for _ in 0..indent {
            buf.push_str("    ");
        }
        let _ = writeln!(buf, "/// {fallback}");
    } else {
        comments.append_with_indent(indent, buf);
    }
}

/// `EchoService` → `ECHO_SERVICE`.
fn screaming_snake(name: &str) -> String {
    let mut out = String::with_capacity(name.len() + 4);
    let mut prev_lower = false;
    for c in name.chars() {
        if c.is_ascii_uppercase() && prev_lower {
            out.push('_');
        }
        prev_lower = c.is_ascii_lowercase() || c.is_ascii_digit();
        out.push(c.to_ascii_uppercase());
    }
    out
}

/// `.example.EchoRequest` → `example.EchoRequest`.
fn proto_type_name(t: &str) -> &str {
    t.strip_prefix('.').unwrap_or(t)
}

impl prost_build::ServiceGenerator for ServiceGenerator {
    fn generate(&mut self, service: Service, buf: &mut String) {
        // Writing to a String cannot fail; the results are ignored on purpose.
        let k = &self.crate_path;
        let full_name = if service.package.is_empty() {
            service.proto_name.clone()
        } else {
            format!("{}.{}", service.package, service.proto_name)
        };
        let name = &service.name;
        let desc = format!("{}_DESCRIPTOR", screaming_snake(name));

        let streaming: Vec<&Method> = service
            .methods
            .iter()
            .filter(|m| m.client_streaming || m.server_streaming)
            .collect();
        for m in &streaming {
            let _ = writeln!(
                buf,
                "compile_error!(\"spindle-rpc-build: streaming rpc {full_name}.{} is not supported\");",
                m.proto_name
            );
        }
        if !streaming.is_empty() {
            return;
        }

        // The trait users implement.
        doc_or(
            &service.comments,
            0,
            &format!("The rpcs of `{full_name}`; implement it and serve it with [`{name}Server`]."),
            buf,
        );
        let _ = writeln!(
            buf,
            "pub trait {name}: ::core::marker::Send + ::core::marker::Sync + 'static {{"
        );
        for m in &service.methods {
            doc_or(
                &m.comments,
                1,
                &format!("Handles `{full_name}.{}`.", m.proto_name),
                buf,
            );
            let _ = writeln!(
                buf,
                "    fn {}(&self, ctx: &mut {k}::service::CallContext, request: {}) \
                 -> ::core::result::Result<{}, {k}::errors::RpcError>;",
                m.name, m.input_type, m.output_type
            );
        }
        let _ = writeln!(buf, "}}\n");

        // The descriptor.
        let _ = writeln!(buf, "/// Name and methods of `{full_name}`.");
        let _ = writeln!(
            buf,
            "pub static {desc}: {k}::service::ServiceDescriptor = {k}::service::ServiceDescriptor {{"
        );
        let _ = writeln!(buf, "    full_name: \"{full_name}\",");
        let _ = writeln!(buf, "    name: \"{}\",", service.proto_name);
        let _ = writeln!(buf, "    methods: &[");
        for (i, m) in service.methods.iter().enumerate() {
            let _ = writeln!(
                buf,
                "        {k}::service::MethodDescriptor {{ service: \"{full_name}\", name: \"{}\", \
                 index: {i}, input_type: \"{}\", output_type: \"{}\" }},",
                m.proto_name,
                proto_type_name(&m.input_proto_type),
                proto_type_name(&m.output_proto_type)
            );
        }
        let _ = writeln!(buf, "    ],");
        let _ = writeln!(
            buf,
            "    descriptor_set: {},\n}};\n",
            self.descriptor_set
                .as_deref()
                .unwrap_or("::core::option::Option::None")
        );

        // The server-side adapter.
        let _ = writeln!(
            buf,
            "/// Dispatches `{full_name}` requests to an implementation of [`{name}`]."
        );
        let _ = writeln!(buf, "pub struct {name}Server<T>(pub T);\n");
        let _ = writeln!(
            buf,
            "impl<T: {name}> {k}::service::Service for {name}Server<T> {{"
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
        let _ = writeln!(buf, "        match method {{");
        for (i, m) in service.methods.iter().enumerate() {
            let _ = writeln!(buf, "            {i} => {{");
            let _ = writeln!(
                buf,
                "                let request = {k}::service::decode_request::<{}>(&{desc}.methods[{i}], request)?;",
                m.input_type
            );
            let _ = writeln!(
                buf,
                "                let response = self.0.{}(ctx, request)?;",
                m.name
            );
            let _ = writeln!(
                buf,
                "                ::core::result::Result::Ok({k}::service::encode_message(&response))"
            );
            let _ = writeln!(buf, "            }}");
        }
        let _ = writeln!(
            buf,
            "            _ => ::core::result::Result::Err({k}::service::no_such_method(&{desc}, method)),"
        );
        let _ = writeln!(buf, "        }}\n    }}\n}}\n");

        // The client stub.
        let _ = writeln!(
            buf,
            "/// Calls `{full_name}` through a channel.\n#[derive(Debug, Clone)]\n\
             pub struct {name}Stub<C> {{\n    channel: C,\n}}\n"
        );
        let _ = writeln!(buf, "impl<C: {k}::service::ClientChannel> {name}Stub<C> {{");
        let _ = writeln!(
            buf,
            "    /// A stub calling through `channel`.\n    pub fn new(channel: C) -> Self {{ {name}Stub {{ channel }} }}"
        );
        let _ = writeln!(
            buf,
            "    /// The channel calls go through.\n    pub fn channel(&self) -> &C {{ &self.channel }}"
        );
        for (i, m) in service.methods.iter().enumerate() {
            doc_or(
                &m.comments,
                1,
                &format!("Calls `{full_name}.{}`.", m.proto_name),
                buf,
            );
            let _ = writeln!(
                buf,
                "    pub fn {}(&self, ctx: &mut {k}::service::CallContext, request: &{}) \
                 -> ::core::result::Result<{}, {k}::errors::RpcError> {{",
                m.name, m.input_type, m.output_type
            );
            let _ = writeln!(buf, "        let method = &{desc}.methods[{i}];");
            let _ = writeln!(
                buf,
                "        let body = self.channel.call(method, ctx, request)?;"
            );
            let _ = writeln!(
                buf,
                "        {k}::service::decode_response::<{}>(method, body)",
                m.output_type
            );
            let _ = writeln!(buf, "    }}");
        }
        let _ = writeln!(buf, "}}");
    }
}

/// The protoc binary: `$PROTOC` if set, else the one vendored by `protoc-bin-vendored`.
pub fn protoc_path() -> Result<PathBuf, String> {
    match std::env::var_os("PROTOC") {
        Some(p) => Ok(PathBuf::from(p)),
        None => protoc_bin_vendored::protoc_bin_path()
            .map_err(|e| format!("no vendored protoc for this platform ({e}); set PROTOC")),
    }
}

/// A prost-build configuration with the vendored protoc and the service generator installed;
/// adjust it further before calling `compile_protos`.
pub fn configure() -> Result<prost_build::Config, String> {
    let mut config = prost_build::Config::new();
    config.protoc_executable(protoc_path()?);
    config.service_generator(Box::new(ServiceGenerator::new()));
    Ok(config)
}

/// Compiles `protos` (searching `includes` for imports) into `$OUT_DIR/<package>.rs`, messages
/// and services both; service descriptors embed the files' descriptor set ([`descriptors`]).
pub fn compile_protos(
    protos: &[impl AsRef<Path>],
    includes: &[impl AsRef<Path>],
) -> std::io::Result<()> {
    descriptors::configure_with_descriptors(protos)
        .map_err(std::io::Error::other)?
        .compile_protos(protos, includes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost_build::{Comments, ServiceGenerator as _};

    fn method(name: &str, proto: &str, streaming: bool) -> Method {
        Method {
            name: name.into(),
            proto_name: proto.into(),
            comments: Comments::default(),
            input_type: "EchoRequest".into(),
            output_type: "EchoResponse".into(),
            input_proto_type: ".example.EchoRequest".into(),
            output_proto_type: ".example.EchoResponse".into(),
            options: Default::default(),
            client_streaming: streaming,
            server_streaming: false,
        }
    }

    fn service(methods: Vec<Method>) -> Service {
        Service {
            name: "EchoService".into(),
            proto_name: "EchoService".into(),
            package: "example".into(),
            comments: Comments::default(),
            methods,
            options: Default::default(),
        }
    }

    #[test]
    fn names() {
        assert_eq!(screaming_snake("EchoService"), "ECHO_SERVICE");
        assert_eq!(screaming_snake("HTTPEcho2Service"), "HTTPECHO2_SERVICE");
        assert_eq!(proto_type_name(".a.B"), "a.B");
    }

    #[test]
    fn generates_trait_descriptor_server_and_stub() {
        let mut out = String::new();
        ServiceGenerator::new().generate(
            service(vec![
                method("echo", "Echo", false),
                method("ping", "Ping", false),
            ]),
            &mut out,
        );
        for needle in [
            "pub trait EchoService:",
            "fn echo(&self, ctx: &mut ::spindle_rpc::service::CallContext, request: EchoRequest)",
            "pub static ECHO_SERVICE_DESCRIPTOR:",
            "full_name: \"example.EchoService\"",
            "name: \"Ping\", index: 1, input_type: \"example.EchoRequest\"",
            "impl<T: EchoService> ::spindle_rpc::service::Service for EchoServiceServer<T>",
            "pub struct EchoServiceStub<C>",
            "let method = &ECHO_SERVICE_DESCRIPTOR.methods[1];",
        ] {
            assert!(out.contains(needle), "missing {needle:?} in:\n{out}");
        }
    }

    #[test]
    fn streaming_is_refused_at_compile_time() {
        let mut out = String::new();
        ServiceGenerator::with_crate_path("crate")
            .generate(service(vec![method("echo", "Echo", true)]), &mut out);
        assert!(out.starts_with("compile_error!"));
        assert!(out.contains("example.EchoService.Echo"));
        assert!(!out.contains("pub trait"));
    }
}
