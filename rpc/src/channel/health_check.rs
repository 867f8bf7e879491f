//! Health checking of a channel's server (brpc's `HealthCheckTask`), for every connection type.
//!
//! When connecting to the server fails with a connection error, the channel marks the server
//! unreachable and starts one health-check fiber. While the mark is set, calls fail at once
//! with the last connect error (no connect storm against a dead server). Every
//! `health_check_interval` seconds the fiber tries to connect; on success it clears the mark
//! and puts the connection to use: the channel's connection (single), an idle connection of
//! the pool (pooled), or closes it (short: the next call connects anew). The fiber holds only a weak reference: it
//! ends at its next wake-up once the channel is dropped, or when the flag is set to 0.
//!
//! Invariant: at most one health-check fiber per channel — it is spawned only by the caller
//! that moved the mark from `None` to `Some`, and only that fiber clears it.

use super::connection;
use super::ChannelInner;
use crate::errors::RpcError;
use crate::protocol::ConnectionType;
use spindle_runtime::define_flag;
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

define_flag!(
    /// Seconds between reconnect attempts to an unreachable server.
    pub static HEALTH_CHECK_INTERVAL: i64 = 3,
    "seconds between attempts to reconnect to a server a channel found unreachable; calls fail \
     fast meanwhile; <= 0 disables health checking (every call tries to connect)",
    reloadable = true
);

/// Marks the server unreachable with `error` and starts the health-check fiber, unless one
/// runs already (then only the error is updated) or health checking is off.
pub(super) fn start(inner: &Arc<ChannelInner>, error: &RpcError) {
    if HEALTH_CHECK_INTERVAL.get() <= 0 {
        return;
    }
    {
        let mut mark = inner.unreachable.lock().unwrap_or_else(|e| e.into_inner());
        let first = mark.is_none();
        *mark = Some(error.clone());
        if !first {
            return;
        }
    }
    let weak = Arc::downgrade(inner);
    spindle_runtime::spawn(move || run(weak));
}

/// The health-check fiber.
fn run(weak: Weak<ChannelInner>) {
    loop {
        let secs = HEALTH_CHECK_INTERVAL.get();
        if secs > 0 {
            spindle_runtime::sleep(Duration::from_secs(secs as u64));
        }
        let Some(inner) = weak.upgrade() else {
            return;
        };
        if secs <= 0 {
            *inner.unreachable.lock().unwrap_or_else(|e| e.into_inner()) = None;
            return;
        }
        let ms = inner.options.connect_timeout_ms.max(1);
        let deadline = Instant::now() + Duration::from_millis(ms as u64);
        match connection::connect(inner.server, deadline, ms) {
            Ok((s, cc)) => {
                match inner.ty {
                    ConnectionType::Single => *inner.conn.lock() = Some((s.id(), cc)),
                    ConnectionType::Pooled => inner
                        .pool
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .push((s.id(), cc)),
                    ConnectionType::Short => super::close(s.id(), "health check done"),
                }
                *inner.unreachable.lock().unwrap_or_else(|e| e.into_inner()) = None;
                return;
            }
            Err(e) => {
                *inner.unreachable.lock().unwrap_or_else(|e| e.into_inner()) = Some(e);
            }
        }
    }
}

/// The error of a call while the server is marked unreachable: the last connect error's code.
pub(super) fn fail_fast(inner: &ChannelInner, last: &RpcError) -> RpcError {
    RpcError::new(
        last.code,
        format!(
            "{}; server {} marked unreachable, reconnecting every {}s (health_check_interval)",
            last.text,
            inner.server,
            HEALTH_CHECK_INTERVAL.get()
        ),
    )
}
