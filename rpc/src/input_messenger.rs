//! The input messenger (brpc's `InputMessenger`): reads a connection, cuts messages, and hands
//! them to the server or the channel.
//!
//! # One read round ([`InputMessenger::on_input`], in the socket's single reader fiber)
//!
//! 1. Read into the socket's `IOPortal` with an adaptive size: 16 × the average message size
//!    seen on the connection, clamped to 4 KiB..512 KiB (brpc's rule: a few messages per read,
//!    big messages in few syscalls).
//! 2. Cut messages with [`cut_input_message`], trying the protocol that parsed last first.
//!    `TooBigData` (over `max_body_size`), `NoResource`, `AbsolutelyWrong` or "every protocol
//!    said TryOthers" close **this connection only**, with a log line naming the peer, the
//!    protocol and the reason.
//! 3. Before the first message of a connection is processed, a server with an authenticator
//!    runs the protocol's `verify` on it; a refusal closes the connection.
//! 4. Of the messages cut in one round, all but the last are processed in new fibers spawned
//!    with `spawn_no_signal`, then one flush; the last is processed in place (no hand-off for
//!    the common one-message read). The flush is deferred (`flush_deferred`, delay
//!    [`BATCH_WAKEUP_DELAY_US`], 300 µs): the reader's worker runs the fibers one after the
//!    other (workers that are awake may steal some), and sleeping workers are woken only if
//!    some of them still wait after the delay, or, when the worker is held by a long handler,
//!    by the runtime's watchdog within about 1 ms more. For short handlers that is cheaper than
//!    brpc's immediate flush: a wake-up (a futex call, a context switch and, on a virtual
//!    machine, an inter-processor interrupt) costs more than the handler, and handlers run on
//!    one worker answer in one `writev` (on `c1_d64_16B`: about 30% less CPU per call,
//!    `docs/benchmarks.md`). Setting the flag to 0 restores the immediate flush.
//!
//!    One exception: a message the sink accepts with [`MessageSink::in_place`] is processed by
//!    the reader as soon as it is cut. A channel's connection accepts responses whose protocol
//!    says their processing is short and never blocks (`Protocol::response_in_place`: for
//!    baidu_std, an uncompressed response, which only completes its call and wakes the
//!    synchronous caller; a completion callback still gets a fiber of its own). A fiber per
//!    such response would cost more than the processing itself. The callers it wakes owe their
//!    signals (`defer_wake_signals`) and are paid for by the same deferred flush as the
//!    spawned fibers: without that, each wake in a burst would push the previous caller out of
//!    the worker's next-to-run slot and wake a sleeping worker for it.
//! 5. Repeat until `EAGAIN` or a short read (one that filled less than it offered, unless the
//!    dispatcher saw the peer hang up); EOF or a read error fails the socket after the messages
//!    already cut were handed out, including those cut from bytes the transport delivered
//!    together with its error (an RDMA peer's last message before a failed completion). A
//!    connection reset by the peer is closed like EOF, without a log line.

use crate::errors::{ErrorCode, RpcError};
use crate::policy::baidu_std::BaiduStd;
use crate::protocol::{
    cut_input_message, Authenticator, CutResult, InputMessage, ParseContext, Protocol,
    ProtocolIndex, ProtocolRegistry,
};
use crate::socket::{InputHandler, Socket, SocketHandle, SocketId};
use spindle_runtime::define_flag;
use std::io;
use std::sync::atomic::Ordering;
use std::sync::{Arc, LazyLock};
use std::time::Duration;

define_flag!(
    /// Largest message body accepted.
    pub static MAX_BODY_SIZE: u64 = 64 * 1024 * 1024,
    "largest body in bytes a message may declare; larger ones close the connection",
    validator = |v| if *v == 0 { Err("must be positive".into()) } else { Ok(()) },
    reloadable = true
);

define_flag!(
    /// How long the other messages of a read may wait for the reader's worker before sleeping
    /// workers are woken for them (module doc, step 4); 0 wakes them at once, as brpc does.
    pub static BATCH_WAKEUP_DELAY_US: u64 = 300,
    "microseconds the n-1 messages of a read may wait on the reader's worker before sleeping \
     workers are woken to share them; 0 wakes them at once (brpc's behaviour)",
    validator = |v| if *v > 10_000 { Err("at most 10000 (10 ms)".into()) } else { Ok(()) },
    reloadable = true
);

/// Smallest adaptive read (bytes).
pub const MIN_READ_SIZE: usize = 4096;
/// Largest adaptive read (bytes): 64 blocks of 8 KiB, what one `readv` of an `IOPortal` fills.
pub const MAX_READ_SIZE: usize = 512 * 1024;

/// The read size for a connection whose messages average `avg` bytes.
pub fn read_size(avg: usize) -> usize {
    avg.saturating_mul(16).clamp(MIN_READ_SIZE, MAX_READ_SIZE)
}

/// The protocols Spindle servers and channels speak: the RDMA handshake, baidu_std and HTTP.
pub fn default_registry() -> &'static Arc<ProtocolRegistry> {
    static REGISTRY: LazyLock<Arc<ProtocolRegistry>> = LazyLock::new(|| {
        let mut r = ProtocolRegistry::new();
        // The RDMA handshake is probed first (brpc registers it before baidu_std).
        r.register(Arc::new(crate::policy::rdma_handshake::RdmaHandshake))
            .expect("an empty registry accepts rdma_handshake");
        r.register(Arc::new(BaiduStd))
            .expect("baidu_std is registered once");
        r.register(Arc::new(crate::policy::http::Http))
            .expect("http is registered once");
        Arc::new(r)
    });
    &REGISTRY
}

/// Who processes the messages of a connection: the server or a channel's connection.
pub trait MessageSink: Send + Sync + 'static {
    /// Processes one message parsed by `protocol` (in a fiber; may block it).
    fn process(&self, protocol: &Arc<dyn Protocol>, msg: Box<dyn InputMessage>);

    /// Whether the reader may process `msg` itself as soon as it is cut, instead of in a fiber
    /// (module doc, step 4): only for processing that is short and never blocks. Default: no.
    fn in_place(&self, protocol: &dyn Protocol, msg: &dyn InputMessage) -> bool {
        let _ = (protocol, msg);
        false
    }

    /// Processes `msg` on the connection's reader: a message [`MessageSink::in_place`]
    /// accepted, as soon as it is cut, and the last message of a read (step 4). Default:
    /// [`MessageSink::process`].
    fn process_in_place(&self, protocol: &Arc<dyn Protocol>, msg: Box<dyn InputMessage>) {
        self.process(protocol, msg);
    }

    /// The authenticator whose `verify` must accept a connection's first message (servers).
    fn authenticator(&self) -> Option<&dyn Authenticator> {
        None
    }

    /// The connection `id` failed (called once).
    fn on_failed(&self, id: SocketId) {
        let _ = id;
    }
}

/// Reads connections for one [`MessageSink`].
pub struct InputMessenger {
    /// Protocols tried on the input.
    registry: Arc<ProtocolRegistry>,
    /// Where messages go.
    sink: Arc<dyn MessageSink>,
}

impl InputMessenger {
    /// A messenger cutting with `registry` and delivering to `sink`.
    pub fn new(registry: Arc<ProtocolRegistry>, sink: Arc<dyn MessageSink>) -> InputMessenger {
        InputMessenger { registry, sink }
    }

    /// Whether `index` is the RDMA handshake (which leaves the connection unverified).
    fn is_handshake(&self, index: ProtocolIndex) -> bool {
        self.registry
            .get(index)
            .is_some_and(|p| p.name() == "rdma_handshake")
    }

    fn spawn_process(&self, index: ProtocolIndex, msg: Box<dyn InputMessage>) {
        let Some(protocol) = self.registry.get(index).cloned() else {
            return;
        };
        let sink = self.sink.clone();
        spindle_runtime::spawn_no_signal(move || sink.process(&protocol, msg));
    }
}

/// Why a read round ends the connection.
enum Close {
    /// The peer closed: no log line.
    Eof,
    /// Anything else: logged.
    Error(RpcError),
}

impl InputHandler for InputMessenger {
    fn on_input(&self, s: &SocketHandle) {
        let mut ctx = ParseContext::new(s.id());
        ctx.max_body_size = usize::try_from(MAX_BODY_SIZE.get()).unwrap_or(usize::MAX);
        let mut last: Option<(ProtocolIndex, Box<dyn InputMessage>)> = None;
        // Fibers spawned or woken without their signal (step 4): a flush is owed.
        let mut flush_owed = false;
        let mut close: Option<Close> = None;
        {
            let mut guard = s.read.lock().unwrap_or_else(|e| e.into_inner());
            let rs = &mut *guard;
            'read: loop {
                // TCP, or the RDMA endpoint once the handshake switched the socket.
                let got = s
                    .transport
                    .read(s, &mut rs.portal, read_size(rs.avg_message_size));
                // `failed`: the read ended the connection, but what the transport placed in
                // the portal before its error (RDMA: data, then a failed completion) is still
                // cut and handed out first.
                let (eof, drained, failed) = match got {
                    Ok(r) if r.bytes == 0 => (true, true, None),
                    Ok(r) => {
                        s.stats
                            .bytes_in
                            .fetch_add(r.bytes as u64, Ordering::Relaxed);
                        // A short read drained the socket unless the stream is ending (a FIN
                        // raises no later edge): module doc of `event_dispatcher`.
                        (false, r.short && !s.input_hup.load(Ordering::Acquire), None)
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => (false, true, None),
                    // A reset is how many clients end a connection (a load generator that
                    // stops, a pooled client that drops idle connections): like EOF, no log.
                    Err(e) if e.kind() == io::ErrorKind::ConnectionReset => {
                        (false, true, Some(Close::Eof))
                    }
                    Err(e) => (
                        false,
                        true,
                        Some(Close::Error(RpcError::new(
                            ErrorCode::Other(e.raw_os_error().unwrap_or(0)),
                            format!("read from {:?} failed: {e}", s.remote()),
                        ))),
                    ),
                };
                ctx.read_eof = eof;
                loop {
                    let before = rs.portal.len();
                    match cut_input_message(&mut rs.portal, &mut rs.preferred, &self.registry, &ctx)
                    {
                        CutResult::Message { protocol, message } => {
                            let size = before - rs.portal.len();
                            rs.avg_message_size = if rs.avg_message_size == 0 {
                                size
                            } else {
                                (rs.avg_message_size * 7 + size) / 8
                            };
                            s.stats.messages_in.fetch_add(1, Ordering::Relaxed);
                            // The RDMA handshake carries no credentials: the first RPC verifies.
                            if !rs.verified && !self.is_handshake(protocol) {
                                if let (Some(auth), Some(p)) =
                                    (self.sink.authenticator(), self.registry.get(protocol))
                                {
                                    if let Err(e) = p.verify(&*message, auth) {
                                        close = Some(Close::Error(RpcError::new(
                                            ErrorCode::RpcAuth,
                                            format!(
                                                "authentication of {:?} failed: {e}",
                                                s.remote()
                                            ),
                                        )));
                                        break 'read;
                                    }
                                }
                                rs.verified = true;
                            }
                            if let Some(p) = self
                                .registry
                                .get(protocol)
                                .filter(|p| self.sink.in_place(&***p, &*message))
                            {
                                // The callers it wakes wait their turn on this worker like
                                // the spawned fibers (step 4), paid by the same flush.
                                spindle_runtime::defer_wake_signals(|| {
                                    self.sink.process_in_place(p, message)
                                });
                                flush_owed = true;
                                continue;
                            }
                            if let Some((i, m)) = last.replace((protocol, message)) {
                                self.spawn_process(i, m);
                                flush_owed = true;
                            }
                        }
                        CutResult::NotEnoughData => break,
                        CutResult::Failed(e) => {
                            close = Some(Close::Error(RpcError::new(
                                ErrorCode::Request,
                                format!("bad input from {:?}: {e}", s.remote()),
                            )));
                            break 'read;
                        }
                    }
                }
                if failed.is_some() {
                    close = failed;
                    break;
                }
                if eof {
                    close = Some(Close::Eof);
                    break;
                }
                if drained {
                    break;
                }
            }
        }
        if flush_owed {
            // 0 flushes at once (brpc's behaviour); the default defers (module doc, step 4).
            spindle_runtime::flush_deferred(Duration::from_micros(BATCH_WAKEUP_DELAY_US.get()));
        }
        if let Some((i, m)) = last {
            if let Some(p) = self.registry.get(i) {
                self.sink.process_in_place(p, m);
            }
        }
        match close {
            None => {}
            Some(Close::Eof) => Socket::set_failed(
                s,
                RpcError::new(ErrorCode::Close, "the peer closed the connection"),
            ),
            Some(Close::Error(e)) => {
                eprintln!("spindle-rpc: closing connection {}: {e}", s.id());
                Socket::set_failed(s, e);
            }
        }
    }

    fn on_failed(&self, id: SocketId) {
        self.sink.on_failed(id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn read_size_is_sixteen_messages_clamped() {
        assert_eq!(read_size(0), MIN_READ_SIZE);
        assert_eq!(read_size(100), MIN_READ_SIZE);
        assert_eq!(read_size(1000), 16000);
        assert_eq!(read_size(1 << 20), MAX_READ_SIZE);
        assert_eq!(read_size(usize::MAX), MAX_READ_SIZE);
    }
}
