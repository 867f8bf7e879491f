//! What carries a socket's bytes (DESIGN.md §1, §5): TCP until the RDMA handshake
//! (`policy::rdma_handshake`) switches the socket to an [`RdmaEndpoint`], RDMA from then on.
//!
//! # States
//!
//! `Tcp` → (server: a hello was cut) `ServerHelloReceived` → (its answer was written)
//! `ServerAwaitingAck` → (the ACK was cut) `Tcp` or `Rdma`; an ACK that arrives before the
//! answer (a client that gave up waiting) is taken in `ServerHelloReceived` too, and the answer
//! is then never written;
//! `Tcp` → (client: a hello was sent) `ClientAwaitingHello` → `Tcp` or `Rdma`. `Rdma` is final:
//! the endpoint is set once (a `OnceLock`) before the state says `Rdma` (Release), so a writer
//! or reader that sees `Rdma` sees the endpoint.
//!
//! # Bytes on an RDMA socket
//!
//! - **Write** (`write::drain`): [`RdmaEndpoint::cut_from_iobufs`] instead of `writev`;
//!   `WouldBlock` (no window) waits on the socket's `EPOLLOUT` butex, which the reader (event
//!   mode) or the poller (polling mode) bumps when a completion opens the window.
//! - **Read** (`Transport::read`, called by the input messenger): the endpoint fills the read
//!   buffer — event mode `poll` (ack, poll, re-arm, poll again), polling mode `take_received` —
//!   and once it has nothing more the TCP fd is read: EOF or a reset closes the connection, any
//!   byte is a protocol error, `EAGAIN` ends the round.
//! - **Completions**: event mode registers [`RdmaEndpoint::completion_fd`] in the socket's
//!   event dispatcher with the socket id as epoll data, so a completion starts the socket's
//!   reader like any input event. Polling mode (`rdma_use_polling`) adds the endpoint's
//!   completion queue to the process-wide [`PollerGroup`]; its handler runs `on_completions`,
//!   wakes writers when the window opened and starts the reader (the dispatcher's `nevent`
//!   0→1 path) when bytes arrived. A handler error is stored and reported by the reader, which
//!   fails the socket (a handler must not drop its own registration).
//! - `Transport::on_failed` (from `Socket::set_failed`) shuts the endpoint down and removes
//!   its completion fd or poller registration.

use super::rdma_api::{EndpointError, PollOutcome, RdmaEndpoint};
use super::{SocketHandle, SocketId};
use crate::event_dispatcher;
use spindle_iobuf::IOPortal;
use spindle_rdma::handshake::{DecodedHello, HelloVersion};
use spindle_rdma::poller::{PollerGroup, PollerRegistration};
use spindle_runtime::butex::Butex;
use std::io;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Instant;

/// The state of a socket's transport (module doc).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransportState {
    /// Plain TCP (also the state after any fallback).
    Tcp,
    /// Server: a client's hello was cut and is being answered; the next 4 bytes are its ACK.
    ServerHelloReceived,
    /// Server: our hello was written; the next 4 bytes are the client's ACK.
    ServerAwaitingAck,
    /// Client: our hello was written; the next bytes are the server's hello.
    ClientAwaitingHello,
    /// Switched to RDMA.
    Rdma,
}

const TCP: u8 = 0;
const SERVER_AWAITING_ACK: u8 = 1;
const CLIENT_AWAITING_HELLO: u8 = 2;
const RDMA: u8 = 3;
const SERVER_HELLO_RECEIVED: u8 = 4;

/// The handshake's hand-over slots.
#[derive(Default)]
struct Handshake {
    /// Server: the endpoint connected to the client's queue pair, switched to on an OK ACK
    /// (`None` when a refusal was answered).
    server_endpoint: Option<Arc<RdmaEndpoint>>,
    /// Client: the hello version sent (the answer must be of the same version).
    client_version: Option<HelloVersion>,
    /// Client: the server's answer, decoded or why not.
    client_reply: Option<Result<DecodedHello, String>>,
}

/// What one [`Transport::read`] got.
#[derive(Debug, Clone, Copy)]
pub(crate) struct TransportRead {
    /// Bytes appended to the portal (0: end of file).
    pub bytes: usize,
    /// A TCP read that filled less than it offered: nothing more was queued, so the reader
    /// may end its round without another `readv` (see the `nevent` protocol in
    /// [`crate::event_dispatcher`]). Never set on RDMA, which is read until it is empty.
    pub short: bool,
}

/// A socket's transport. See the module doc.
pub struct Transport {
    /// `TCP`, `SERVER_HELLO_RECEIVED`, `SERVER_AWAITING_ACK`, `CLIENT_AWAITING_HELLO` or
    /// `RDMA`.
    state: AtomicU8,
    /// This is a channel's connection that sent a hello (a hello it reads is a late answer).
    client: AtomicBool,
    /// Set once, before `state` becomes `RDMA`.
    endpoint: OnceLock<Arc<RdmaEndpoint>>,
    /// Completions are reaped by pollers (else by the dispatcher through the completion fd).
    polling: AtomicBool,
    /// Handshake hand-over.
    handshake: Mutex<Handshake>,
    /// Bumped when the client's reply is stored; the connecting fiber waits on it.
    reply_seq: Butex,
    /// Polling mode: the endpoint's place in the poller group.
    poller: Mutex<Option<PollerRegistration>>,
    /// Polling mode: an error the completion handler met, reported by the reader.
    completion_error: Mutex<Option<String>>,
}

impl std::fmt::Debug for Transport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Transport")
            .field("state", &self.state())
            .finish_non_exhaustive()
    }
}

impl Default for Transport {
    fn default() -> Self {
        Transport {
            state: AtomicU8::new(TCP),
            client: AtomicBool::new(false),
            endpoint: OnceLock::new(),
            polling: AtomicBool::new(false),
            handshake: Mutex::new(Handshake::default()),
            reply_seq: Butex::new(0),
            poller: Mutex::new(None),
            completion_error: Mutex::new(None),
        }
    }
}

/// The process's pollers (polling mode), started by the first RDMA switch in that mode.
fn pollers() -> Result<&'static PollerGroup, String> {
    static POLLERS: OnceLock<Result<PollerGroup, String>> = OnceLock::new();
    POLLERS
        .get_or_init(|| match PollerGroup::from_flags() {
            Ok(Some(g)) => Ok(g),
            Ok(None) => Err("rdma_use_polling is false".to_owned()),
            Err(e) => Err(e.to_string()),
        })
        .as_ref()
        .map_err(Clone::clone)
}

impl Transport {
    fn lock(&self) -> std::sync::MutexGuard<'_, Handshake> {
        self.handshake.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The current state.
    pub fn state(&self) -> TransportState {
        match self.state.load(Ordering::Acquire) {
            SERVER_HELLO_RECEIVED => TransportState::ServerHelloReceived,
            SERVER_AWAITING_ACK => TransportState::ServerAwaitingAck,
            CLIENT_AWAITING_HELLO => TransportState::ClientAwaitingHello,
            RDMA => TransportState::Rdma,
            _ => TransportState::Tcp,
        }
    }

    /// The endpoint, once the socket runs on RDMA.
    pub fn rdma_endpoint(&self) -> Option<&Arc<RdmaEndpoint>> {
        if self.state.load(Ordering::Acquire) == RDMA {
            self.endpoint.get()
        } else {
            None
        }
    }

    /// `tcp`, `rdma <endpoint>`, or `tcp (rdma handshake)` while one runs (`/connections`).
    pub fn describe(&self) -> String {
        match self.state() {
            TransportState::Tcp => "tcp".to_owned(),
            TransportState::Rdma => match self.endpoint.get() {
                Some(ep) => ep.describe(),
                None => "rdma".to_owned(),
            },
            _ => "tcp (rdma handshake)".to_owned(),
        }
    }

    /// Server (reader side): a hello was cut on this socket; `false` if this is a client's
    /// connection (then the hello is a late answer, to drop) or a handshake already ran.
    pub(crate) fn server_hello_cut(&self) -> bool {
        !self.client.load(Ordering::Acquire)
            && self
                .state
                .compare_exchange(
                    TCP,
                    SERVER_HELLO_RECEIVED,
                    Ordering::AcqRel,
                    Ordering::Acquire,
                )
                .is_ok()
    }

    /// Server: our hello is about to be written; the next 4 bytes are the ACK. `endpoint` is
    /// the one to switch to on an OK ACK (`None` after a refusal). Returns `false` (and shuts
    /// `endpoint` down) when the client's ACK came first: the answer must not be written.
    pub(crate) fn server_await_ack(&self, endpoint: Option<Arc<RdmaEndpoint>>) -> bool {
        self.lock().server_endpoint = endpoint;
        let ok = self
            .state
            .compare_exchange(
                SERVER_HELLO_RECEIVED,
                SERVER_AWAITING_ACK,
                Ordering::AcqRel,
                Ordering::Acquire,
            )
            .is_ok();
        if !ok {
            if let Some(ep) = self.lock().server_endpoint.take() {
                ep.shutdown();
            }
        }
        ok
    }

    /// Server (reader side): the ACK was cut; the bytes after it are not an ACK.
    pub(crate) fn server_ack_parsed(&self) {
        for from in [SERVER_AWAITING_ACK, SERVER_HELLO_RECEIVED] {
            let _ = self
                .state
                .compare_exchange(from, TCP, Ordering::AcqRel, Ordering::Acquire);
        }
    }

    /// Server: the ACK was processed; returns the endpoint to switch to (if any).
    pub(crate) fn server_take_endpoint(&self) -> Option<Arc<RdmaEndpoint>> {
        self.server_ack_parsed();
        self.lock().server_endpoint.take()
    }

    /// Client: our hello (of `version`) is about to be written.
    pub(crate) fn client_expect_hello(&self, version: HelloVersion) {
        self.client.store(true, Ordering::Release);
        {
            let mut h = self.lock();
            h.client_version = Some(version);
            h.client_reply = None;
        }
        self.state.store(CLIENT_AWAITING_HELLO, Ordering::Release);
    }

    /// Client: the hello version we sent, while waiting for the answer.
    pub(crate) fn client_version(&self) -> Option<HelloVersion> {
        self.lock().client_version
    }

    /// Client (reader side): the server's answer arrived (or could not be decoded); back to
    /// TCP until the connecting fiber decides, and wake it.
    pub(crate) fn client_deliver(&self, reply: Result<DecodedHello, String>) {
        {
            let mut h = self.lock();
            h.client_reply = Some(reply);
            h.client_version = None;
        }
        self.state.store(TCP, Ordering::Release);
        self.reply_seq.value().fetch_add(1, Ordering::Release);
        self.reply_seq.wake_all();
    }

    /// Client: waits for the server's answer until `deadline` or the socket's failure
    /// (`failed` is polled between waits); `None` if none came.
    pub(crate) fn client_wait(
        &self,
        deadline: Instant,
        failed: &dyn Fn() -> bool,
    ) -> Option<Result<DecodedHello, String>> {
        loop {
            let seq = self.reply_seq.value().load(Ordering::Acquire);
            if let Some(r) = self.lock().client_reply.take() {
                return Some(r);
            }
            let now = Instant::now();
            if now >= deadline || failed() {
                self.lock().client_version = None;
                self.state.store(TCP, Ordering::Release);
                return None;
            }
            let step = deadline.min(now + std::time::Duration::from_millis(20));
            let _ = self.reply_seq.wait(seq, Some(step));
        }
    }

    /// Switches socket `s` to `endpoint`: completions go to the dispatcher (event mode) or the
    /// pollers (`rdma_use_polling`), then a reader is started so that anything that arrived
    /// before the registration is picked up. On error the socket is left on TCP.
    pub(crate) fn switch_to_rdma(
        s: &SocketHandle,
        endpoint: Arc<RdmaEndpoint>,
    ) -> Result<(), String> {
        let t = &s.transport;
        let id = s.id();
        let polling = spindle_rdma::flags::RDMA_USE_POLLING.get();
        if polling {
            let group = pollers()?;
            let ep = endpoint.clone();
            let reg = group.add(
                endpoint.completion_queue().clone(),
                Box::new(move |wcs| on_polled(id, ep.on_completions(wcs))),
            );
            *t.poller.lock().unwrap_or_else(|e| e.into_inner()) = Some(reg);
        } else {
            event_dispatcher::register(endpoint.completion_fd(), id, false).map_err(|e| {
                format!(
                    "cannot add the completion fd {} to the event dispatcher: {e}",
                    endpoint.completion_fd()
                )
            })?;
        }
        t.polling.store(polling, Ordering::Relaxed);
        if t.endpoint.set(endpoint).is_err() {
            return Err("the socket already switched to RDMA".to_owned());
        }
        t.state.store(RDMA, Ordering::Release);
        if s.failed() {
            // set_failed ran before the endpoint was visible: clean up here.
            t.on_failed(id);
        }
        event_dispatcher::start_input_event(id);
        s.write.wake_writers();
        Ok(())
    }

    /// Reads what arrived into `portal`, as `IOPortal::append_from_fd` answers: `bytes == 0` =
    /// EOF, `WouldBlock` = nothing more for now. On RDMA, bytes on the TCP fd are an error.
    pub(crate) fn read(
        &self,
        s: &SocketHandle,
        portal: &mut IOPortal,
        max: usize,
    ) -> io::Result<TransportRead> {
        let Some(ep) = self.rdma_endpoint() else {
            let r = portal.read_from_fd(s.fd(), max)?;
            return Ok(TransportRead {
                bytes: r.read,
                short: r.is_short(),
            });
        };
        self.read_rdma(s, ep, portal).map(|bytes| TransportRead {
            bytes,
            short: false,
        })
    }

    /// [`read`](Self::read) once the socket switched to RDMA: drains the endpoint, then probes
    /// the TCP fd.
    fn read_rdma(
        &self,
        s: &SocketHandle,
        ep: &RdmaEndpoint,
        portal: &mut IOPortal,
    ) -> io::Result<usize> {
        let got = if self.polling.load(Ordering::Relaxed) {
            // Bytes a poller received before a completion failed come first: the messenger
            // cuts them, and the error ends the connection on the next read.
            let got = ep.take_received(portal);
            if got == 0 {
                if let Some(why) = self
                    .completion_error
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .take()
                {
                    return Err(peer_closed(s).unwrap_or_else(|| io::Error::other(why)));
                }
            }
            got
        } else {
            let outcome = match ep.poll(portal) {
                Ok(o) => o,
                Err(e) => {
                    return Err(peer_closed(s).unwrap_or_else(|| io::Error::other(e.to_string())))
                }
            };
            if outcome.window_opened {
                s.write.wake_writers();
            }
            outcome.bytes_received
        };
        if got > 0 {
            return Ok(got);
        }
        // The endpoint is drained: only now look at the TCP fd (one syscall per read round).
        let mut probe = [0u8; 64];
        // SAFETY: reads at most `probe.len()` bytes into the live stack buffer `probe`.
        let n = unsafe { libc::read(s.fd(), probe.as_mut_ptr().cast(), probe.len()) };
        if n == 0 {
            return Ok(0);
        }
        if n > 0 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{n} bytes arrived over TCP after the switch to RDMA"),
            ));
        }
        Err(io::Error::last_os_error())
    }

    /// The socket failed: shut the endpoint down and stop watching its completions.
    pub(crate) fn on_failed(&self, id: SocketId) {
        if let Some(ep) = self.lock().server_endpoint.take() {
            ep.shutdown();
        }
        let Some(ep) = self.endpoint.get() else {
            return;
        };
        ep.shutdown();
        if self.polling.load(Ordering::Relaxed) {
            drop(self.poller.lock().unwrap_or_else(|e| e.into_inner()).take());
        } else {
            event_dispatcher::deregister(ep.completion_fd(), id);
        }
    }
}

/// After an endpoint error: whether the peer closed the TCP connection (its queue pair then
/// flushes ours), reported as a reset so that the messenger closes without a log line.
fn peer_closed(s: &SocketHandle) -> Option<io::Error> {
    let mut probe = [0u8; 1];
    // SAFETY: peeks at most one byte into the live stack buffer `probe`.
    let n = unsafe {
        libc::recv(
            s.fd(),
            probe.as_mut_ptr().cast(),
            1,
            libc::MSG_PEEK | libc::MSG_DONTWAIT,
        )
    };
    let reset = n < 0 && io::Error::last_os_error().kind() == io::ErrorKind::ConnectionReset;
    (n == 0 || reset).then(|| io::ErrorKind::ConnectionReset.into())
}

/// Polling mode: what the poller does with one batch of socket `id`'s completions.
fn on_polled(id: SocketId, outcome: Result<PollOutcome, EndpointError>) {
    let Some(s) = super::address(id) else {
        return;
    };
    match outcome {
        Ok(o) => {
            if o.window_opened {
                s.write.wake_writers();
            }
            if o.bytes_received > 0 {
                drop(s);
                event_dispatcher::start_input_event(id);
            }
        }
        Err(e) => {
            *s.transport
                .completion_error
                .lock()
                .unwrap_or_else(|e| e.into_inner()) = Some(e.to_string());
            drop(s);
            event_dispatcher::start_input_event(id);
        }
    }
}
