//! `/status`, `/list` and `/protobufs`: the server's services, their methods' statistics and
//! their message definitions.

use super::doc::{Block, Doc};
use super::{default_version, MethodInfo, Reply, ServiceInfo};
use crate::policy::http::{pb, HttpRequest};
use crate::server::ServerInner;
use prost_reflect::{Cardinality, DescriptorPool, Kind, MessageDescriptor};
use std::fmt::Write;

/// `n`, or `unlimited` for 0.
fn limit(n: usize) -> String {
    if n == 0 {
        "unlimited".to_owned()
    } else {
        n.to_string()
    }
}

/// `Echo(example.EchoRequest) returns (example.EchoResponse)`.
fn signature(m: &MethodInfo) -> String {
    let d = &m.descriptor;
    format!("{}({}) returns ({})", d.name, d.input_type, d.output_type)
}

/// `/status`: the server, then each service's methods with brpc's `MethodStatus` fields.
pub(super) fn status(s: &ServerInner, _: &HttpRequest) -> Reply {
    let sum = s.builtin_summary();
    let show = |a: Option<std::net::SocketAddr>| a.map_or("-".to_owned(), |a| a.to_string());
    let mut doc = Doc::new("status").block(Block::Heading("server".into()));
    doc.push(Block::Text(format!(
        "version: {}\nlisten: {}\ninternal_port: {}\nrunning: {}\nuptime: {}s\n\
         connection_count: {}\nconcurrency: {}\nmax_concurrency: {}\n",
        sum.version.unwrap_or_else(default_version),
        show(sum.listen),
        show(sum.internal),
        sum.running,
        sum.uptime.as_secs(),
        sum.connection_count,
        sum.concurrency,
        limit(sum.max_concurrency),
    )));
    for svc in s.builtin_services() {
        doc.push(Block::Heading(svc.descriptor.full_name.to_owned()));
        let mut t = String::new();
        for m in &svc.methods {
            let st = &m.status;
            let _ = writeln!(t, "{}", signature(m));
            let _ = writeln!(t, "  count: {}", st.count);
            let _ = writeln!(t, "  qps: {}", round(st.qps));
            let _ = writeln!(t, "  error: {}", st.errors);
            let _ = writeln!(t, "  eps: {}", round(st.eps));
            let _ = writeln!(t, "  latency: {}", round(st.latency));
            for (name, v) in &st.percentiles {
                let _ = writeln!(t, "  {name}: {v}");
            }
            let _ = writeln!(t, "  max_latency: {}", st.max_latency);
            let _ = writeln!(t, "  concurrency: {}", st.concurrency);
            let _ = writeln!(t, "  max_concurrency: {}", limit(st.max_concurrency));
        }
        doc.push(Block::Text(t));
    }
    Reply::Doc(200, doc)
}

/// A rate or mean with at most three decimals.
fn round(v: f64) -> f64 {
    (v * 1000.0).round() / 1000.0
}

/// `/list`: services and their methods.
pub(super) fn list(s: &ServerInner, _: &HttpRequest) -> Reply {
    let mut doc = Doc::new("list");
    for svc in s.builtin_services() {
        let mut t = format!("{}\n", svc.descriptor.full_name);
        for m in &svc.methods {
            let _ = writeln!(t, "  {}", signature(m));
        }
        doc.push(Block::Text(t));
    }
    Reply::Doc(200, doc)
}

/// The descriptor pools of the services that embedded one.
fn pools(services: &[ServiceInfo]) -> Vec<DescriptorPool> {
    let mut out: Vec<DescriptorPool> = Vec::new();
    for svc in services {
        if let Some(set) = svc.descriptor.descriptor_set {
            if let Ok(p) = pb::pool_of(set) {
                out.push(p);
            }
        }
    }
    out
}

/// `/protobufs`: every service and the messages its methods take and return, as links;
/// `/protobufs/<full name>`: that service or message in .proto syntax.
pub(super) fn protobufs(s: &ServerInner, req: &HttpRequest) -> Reply {
    let services = s.builtin_services();
    let name = req
        .path()
        .strip_prefix("/protobufs")
        .unwrap_or("")
        .trim_matches('/');
    if name.is_empty() {
        let mut links = Vec::new();
        let mut messages: Vec<&str> = Vec::new();
        for svc in &services {
            links.push((
                format!("/protobufs/{}", svc.descriptor.full_name),
                "service".to_owned(),
            ));
            for m in &svc.methods {
                messages.push(m.descriptor.input_type);
                messages.push(m.descriptor.output_type);
            }
        }
        messages.sort_unstable();
        messages.dedup();
        links.extend(
            messages
                .into_iter()
                .map(|m| (format!("/protobufs/{m}"), "message".to_owned())),
        );
        return Reply::Doc(200, Doc::new("protobufs").block(Block::Links(links)));
    }
    let pools = pools(&services);
    if let Some(svc) = services.iter().find(|s| s.descriptor.full_name == name) {
        let mut t = format!("service {} {{\n", svc.descriptor.name);
        for m in &svc.methods {
            let d = &m.descriptor;
            let _ = writeln!(
                t,
                "  rpc {}({}) returns ({});",
                d.name, d.input_type, d.output_type
            );
        }
        t.push_str("}\n");
        return Reply::Doc(200, Doc::new(name).text(t));
    }
    if let Some(m) = pools.iter().find_map(|p| p.get_message_by_name(name)) {
        return Reply::Doc(200, Doc::new(name).text(message_text(&m)));
    }
    if let Some(e) = pools.iter().find_map(|p| p.get_enum_by_name(name)) {
        let mut t = format!("enum {} {{\n", e.name());
        for v in e.values() {
            let _ = writeln!(t, "  {} = {};", v.name(), v.number());
        }
        t.push_str("}\n");
        return Reply::Doc(200, Doc::new(name).text(t));
    }
    Reply::Doc(
        404,
        Doc::new("not found").text(format!(
            "no service or message named \"{name}\" (messages are known only for services \
             built with an embedded descriptor set)\n"
        )),
    )
}

/// A message in .proto syntax (fields only; nested types are linked by full name).
fn message_text(m: &MessageDescriptor) -> String {
    let mut t = format!("message {} {{\n", m.name());
    for f in m.fields() {
        let label = if f.is_map() {
            ""
        } else {
            match f.cardinality() {
                Cardinality::Required => "required ",
                Cardinality::Repeated => "repeated ",
                Cardinality::Optional
                    if f.supports_presence() && f.containing_oneof().is_none() =>
                {
                    "optional "
                }
                Cardinality::Optional => "",
            }
        };
        let ty = if f.is_map() {
            match f.kind() {
                Kind::Message(entry) => format!(
                    "map<{}, {}>",
                    kind_name(&entry.map_entry_key_field().kind()),
                    kind_name(&entry.map_entry_value_field().kind())
                ),
                k => kind_name(&k),
            }
        } else {
            kind_name(&f.kind())
        };
        let _ = writeln!(t, "  {label}{ty} {} = {};", f.name(), f.number());
    }
    t.push_str("}\n");
    t
}

/// The .proto spelling of a field type.
fn kind_name(k: &Kind) -> String {
    match k {
        Kind::Double => "double".into(),
        Kind::Float => "float".into(),
        Kind::Int32 => "int32".into(),
        Kind::Int64 => "int64".into(),
        Kind::Uint32 => "uint32".into(),
        Kind::Uint64 => "uint64".into(),
        Kind::Sint32 => "sint32".into(),
        Kind::Sint64 => "sint64".into(),
        Kind::Fixed32 => "fixed32".into(),
        Kind::Fixed64 => "fixed64".into(),
        Kind::Sfixed32 => "sfixed32".into(),
        Kind::Sfixed64 => "sfixed64".into(),
        Kind::Bool => "bool".into(),
        Kind::String => "string".into(),
        Kind::Bytes => "bytes".into(),
        Kind::Message(m) => m.full_name().to_owned(),
        Kind::Enum(e) => e.full_name().to_owned(),
    }
}
