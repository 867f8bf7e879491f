//! `/connections` (the server's listeners and connections, then every other socket of the
//! process — channels' connections; the transport column says `tcp` or `rdma <endpoint>`) and `/fibers` (runtime and event-dispatcher counters).

use super::doc::{Block, Doc};
use super::Reply;
use crate::event_dispatcher;
use crate::input_messenger::default_registry;
use crate::policy::http::HttpRequest;
use crate::server::ServerInner;
use crate::socket::{self, sockaddr, Socket, SocketId, SOCKET_MAP};
use std::collections::HashSet;
use std::sync::atomic::Ordering;

/// The protocol a connection speaks: the one that parsed its last message. `-` before the
/// first message; `?` while its reader holds the read state (it is never waited for).
fn protocol_of(s: &Socket) -> String {
    match s.read.try_lock() {
        Ok(rs) => rs
            .preferred
            .and_then(|i| default_registry().get(i).map(|p| p.name().to_owned()))
            .unwrap_or_else(|| "-".to_owned()),
        Err(_) => "?".to_owned(),
    }
}

/// One table row for socket `s`.
fn row(id: SocketId, s: &Socket, kind: &str) -> Vec<String> {
    let st = &s.stats;
    let local = sockaddr::local_addr(s.fd()).map_or("-".to_owned(), |a| a.to_string());
    let remote = s.remote().map_or("-".to_owned(), |a| a.to_string());
    let (protocol, remote) = if kind == "listener" {
        ("-".to_owned(), "-".to_owned())
    } else {
        (protocol_of(s), remote)
    };
    vec![
        id.as_u64().to_string(),
        kind.to_owned(),
        protocol,
        remote,
        local,
        st.bytes_in.load(Ordering::Relaxed).to_string(),
        st.bytes_out.load(Ordering::Relaxed).to_string(),
        st.messages_in.load(Ordering::Relaxed).to_string(),
        st.messages_out.load(Ordering::Relaxed).to_string(),
        st.writes.load(Ordering::Relaxed).to_string(),
        if kind == "listener" {
            "-".to_owned()
        } else {
            s.transport.describe()
        },
    ]
}

/// `/connections`.
pub(super) fn connections(s: &ServerInner, _: &HttpRequest) -> Reply {
    let head: Vec<String> = [
        "id",
        "type",
        "protocol",
        "remote",
        "local",
        "bytes_in",
        "bytes_out",
        "msgs_in",
        "msgs_out",
        "writes",
        "transport",
    ]
    .map(str::to_owned)
    .to_vec();
    let ours: Vec<(SocketId, bool)> = s.builtin_sockets();
    let mut mine = Vec::new();
    for (id, listener) in &ours {
        if let Some(h) = socket::address(*id) {
            mine.push(row(
                h.id(),
                &h,
                if *listener { "listener" } else { "server" },
            ));
        }
    }
    let known: HashSet<SocketId> = ours.iter().map(|(id, _)| *id).collect();
    let mut others = Vec::new();
    SOCKET_MAP.for_each_live(|h| {
        if !known.contains(&h.id()) {
            others.push(row(h.id(), &h, "other"));
        }
    });
    let mut doc = Doc::new("connections")
        .block(Block::Heading("this server".into()))
        .block(Block::Table(head.clone(), mine));
    doc.push(Block::Heading(
        "other sockets (channels, other servers)".into(),
    ));
    doc.push(Block::Table(head, others));
    Reply::Doc(200, doc)
}

/// `/fibers`.
pub(super) fn fibers(_: &ServerInner, _: &HttpRequest) -> Reply {
    let r = spindle_runtime::stats();
    let d = event_dispatcher::stats();
    let rows = [
        ("fiber_workers", r.workers as u64),
        ("fibers_alive", r.fibers_alive),
        ("fibers_created", r.fibers_created),
        ("context_switches", r.context_switches),
        ("steals", r.steals),
        ("parks", r.parks),
        (
            "event_dispatchers",
            event_dispatcher::dispatcher_count() as u64,
        ),
        ("dispatcher_worker_polls", d.worker_polls),
        ("dispatcher_worker_events", d.worker_events),
        ("dispatcher_thread_events", d.thread_events),
    ];
    let text: String = rows.iter().map(|(n, v)| format!("{n} : {v}\n")).collect();
    Reply::Doc(200, Doc::new("fibers").text(text))
}
