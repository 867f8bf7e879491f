//! Closing idle connections (brpc's `ServerOptions::idle_timeout_sec`).
//!
//! A connection is *active* when a whole message arrived on it, a message was written to it,
//! or one of its requests is being processed; it is idle otherwise. One fiber per server (not a
//! timer per read) sweeps the server's connections every `idle_timeout_sec / 4` (between
//! 100 ms and 1 s) and closes each one that stayed idle for `idle_timeout_sec` seconds, so a
//! connection is closed between `idle_timeout_sec` and `idle_timeout_sec` + one period after
//! its last activity.
//!
//! # What counts as activity
//!
//! - The socket's `messages_in` and `messages_out` counters (kept by the input messenger and
//!   the writer anyway), compared with their values at the previous sweep: nothing is added to
//!   the read or write path. Bytes do not count — a client sending a request head one byte at a
//!   time (slowloris) never completes a message and is closed like a silent one.
//! - [`ConnActivity::busy`]: requests of the connection whose processing has started and not
//!   returned (a synchronous handler running longer than the timeout keeps its connection).
//!   A done-handle handler that keeps its handle and answers later is not counted once the
//!   dispatch returned: its connection may be closed before the answer if it waits longer than
//!   the timeout, as in brpc.
//!
//! Closed connections are counted in `rpc_server_<port>_idle_closed_connections`.
//!
//! # Invariants
//!
//! - The sweeper holds the server until it stops: `stop` (which dropping a `Server` runs)
//!   wakes the server's `idle` butex, which the sweeper sleeps on, and the sweeper exits.
//! - Its table of last activities is private to the sweeper fiber: no lock on it.

use super::ServerInner;
use crate::errors::{ErrorCode, RpcError};
use crate::socket::{self, Socket, SocketId};
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Per-connection state shared by the connection's message sink and the sweeper.
#[derive(Debug)]
pub(crate) struct ConnActivity {
    /// Requests of the connection being processed now (incremented before a message is
    /// processed, decremented after).
    pub(crate) busy: AtomicUsize,
    /// When the connection was accepted: its first "last activity".
    pub(crate) created: Instant,
}

impl Default for ConnActivity {
    fn default() -> Self {
        ConnActivity {
            busy: AtomicUsize::new(0),
            created: Instant::now(),
        }
    }
}

/// Decrements [`ConnActivity::busy`] when dropped (so a panicking handler cannot leave its
/// connection busy forever).
pub(crate) struct Busy<'a>(&'a ConnActivity);

impl ConnActivity {
    /// Marks one request as being processed until the guard drops.
    pub(crate) fn busy(&self) -> Busy<'_> {
        self.busy.fetch_add(1, Ordering::Relaxed);
        Busy(self)
    }
}

impl Drop for Busy<'_> {
    fn drop(&mut self) {
        self.0.busy.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The sweep period for a timeout: a quarter of it, between 100 ms and 1 s.
fn period(timeout: Duration) -> Duration {
    (timeout / 4).clamp(Duration::from_millis(100), Duration::from_secs(1))
}

/// Starts the sweeper of `server` if its `idle_timeout_sec` is positive.
pub(super) fn start(server: &Arc<ServerInner>) {
    let secs = server.options.idle_timeout_sec;
    if secs <= 0 {
        return;
    }
    let timeout = Duration::from_secs(secs as u64);
    let server = server.clone();
    // The handle is dropped: the fiber runs detached until the server stops.
    let _ = spindle_runtime::spawn(move || sweep_loop(server, timeout));
}

/// The last activity seen of one connection.
struct Seen {
    /// `messages_in + messages_out` at that time.
    messages: u64,
    /// When they last changed (or the connection was busy).
    at: Instant,
}

fn sweep_loop(server: Arc<ServerInner>, timeout: Duration) {
    let period = period(timeout);
    let mut seen: HashMap<SocketId, Seen> = HashMap::new();
    loop {
        let seq = server.idle.value().load(Ordering::Acquire);
        if !server.is_running() {
            return;
        }
        sweep(&server, timeout, &mut seen);
        let _ = server.idle.wait(seq, Some(Instant::now() + period));
    }
}

/// One pass: closes the connections idle for `timeout`, forgets the ones that are gone.
fn sweep(server: &ServerInner, timeout: Duration, seen: &mut HashMap<SocketId, Seen>) {
    let conns: Vec<(SocketId, Arc<ConnActivity>)> = server
        .connections
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .iter()
        .map(|(id, a)| (*id, a.clone()))
        .collect();
    let now = Instant::now();
    seen.retain(|id, _| conns.iter().any(|(c, _)| c == id));
    for (id, activity) in conns {
        let Some(s) = socket::address(id) else {
            // Failed before it was listed (its `on_failed` found nothing to remove).
            server
                .connections
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(&id);
            continue;
        };
        let messages = s.stats.messages_in.load(Ordering::Relaxed)
            + s.stats.messages_out.load(Ordering::Relaxed);
        let entry = seen.entry(id).or_insert(Seen {
            messages,
            at: activity.created,
        });
        if entry.messages != messages || activity.busy.load(Ordering::Relaxed) > 0 {
            *entry = Seen { messages, at: now };
            continue;
        }
        if now.duration_since(entry.at) >= timeout {
            server.idle_closed.fetch_add(1, Ordering::Relaxed);
            Socket::set_failed(
                &s,
                RpcError::new(
                    ErrorCode::Close,
                    format!(
                        "no message on connection from {:?} for {} s (idle_timeout_sec)",
                        s.remote(),
                        timeout.as_secs()
                    ),
                ),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn period_is_a_quarter_within_bounds() {
        assert_eq!(period(Duration::from_secs(1)), Duration::from_millis(250));
        assert_eq!(period(Duration::from_secs(60)), Duration::from_secs(1));
        assert_eq!(
            period(Duration::from_millis(200)),
            Duration::from_millis(100)
        );
    }
}
