//! One call in flight (brpc's `Controller` on the client side): the state its correlation id
//! ([`FiberId`]) owns, its attempts (first try, retries, backup request), and how it completes
//! exactly once.
//!
//! # The call id
//!
//! A call creates one [`FiberId`] with a range of `max_retry + 2` versions (brpc's range: the
//! first attempt, `max_retry` retries and one backup request). Attempt `k` is sent with the
//! correlation id `id + k` ([`FiberId::offset`]), so every attempt's response, the deadline
//! timer, the backup timer, a connection failure and [`CallId::cancel`] all lock *the same*
//! state, and whoever locks first decides:
//!
//! - a response (of any attempt) completes the call; the other attempts are abandoned;
//! - `ERPCTIMEDOUT` (deadline timer) or `ECANCELED` (cancel) completes it with that error;
//! - a failed attempt (connect error, write error, `EFAILEDSOCKET`) is dropped from the
//!   attempts in flight; if none is left, a retriable error is retried (within `max_retry`, the
//!   version range and the deadline, while the channel exists), anything else completes the
//!   call;
//! - the backup timer sends one more attempt if the first one is still alone in flight.
//!
//! Completing destroys the id, so everything that comes later (a losing response, a late
//! timer, a second cancel) finds a stale id and is dropped in O(1).
//!
//! # Invariants
//!
//! - `attempts` lists every attempt in flight, including one still connecting (its `conn` is
//!   `None` until it is written); a new attempt's version is reserved under the lock before it
//!   connects, so two failures cannot both decide to retry.
//! - Connecting and writing happen without the lock (a connect parks); an attempt that finds the
//!   call completed when it comes back gives its connection back (`release`).
//! - The callback runs exactly once, never with the lock held, never on the timer thread or on
//!   a connection's reader (it gets a fiber of its own there; a synchronous caller is simply
//!   woken from the reader); `finished` is set after it returned, which is what
//!   [`CallId::join`] waits for.

use super::{connection::ClientConn, retriable, Channel, ChannelInner};
use crate::errors::{ErrorCode, RpcError, EFAILEDSOCKET, ERPCTIMEDOUT};
use crate::protocol::{CallInfo, ResponseBody};
use crate::socket::{self, Socket, SocketId};
use smallvec::SmallVec;
use spindle_iobuf::IOBuf;
use spindle_runtime::butex::Butex;
use spindle_runtime::fiber_id::{FiberId, FiberIdGuard, MAX_RANGE};
use spindle_runtime::timer_thread::{self, TimerId};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

/// The outcome of a call.
pub type CallResult = Result<ResponseBody, RpcError>;

/// What a call does with its outcome.
pub(crate) enum Done {
    /// A synchronous caller parks on the plan's [`SyncWaiter`]: setting it only wakes that
    /// caller. (The waiter lives in the plan, which the call shares anyway: no allocation of
    /// its own.)
    Sync(Arc<CallPlan>),
    /// The user's completion callback: user code, it may block.
    Callback(Box<dyn FnOnce(CallResult) + Send>),
}

impl Done {
    fn run(self, result: CallResult) {
        match self {
            Done::Sync(plan) => plan.waiter.set(result),
            Done::Callback(f) => f(result),
        }
    }
}

/// Where [`complete`] is called from, which decides what it may do there.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum CompletedOn {
    /// A fiber or thread that may run anything.
    Caller,
    /// A connection's reader, processing a response in place: a synchronous caller is woken
    /// there, a completion callback (user code, it may block) gets a fiber of its own so the
    /// reader goes on cutting.
    Reader,
    /// The timer thread (the deadline fired): nothing but the hand-off to a fiber happens
    /// there, and the deadline timer is not cancelled (it is the one running).
    TimerThread,
}

/// What every attempt of a call sends: the request serialized once, and its meta fields.
pub(crate) struct CallPlan {
    /// The channel (weak: dropping the last `Channel` still closes its connections).
    pub(crate) channel: Weak<ChannelInner>,
    /// Full service name.
    pub(crate) service: &'static str,
    /// Method name.
    pub(crate) method: &'static str,
    /// Request meta fields copied from the caller's `CallContext`.
    pub(crate) compress_type: crate::compress::CompressType,
    /// The request attachment.
    pub(crate) attachment: IOBuf,
    /// `log_id` of the request.
    pub(crate) log_id: Option<i64>,
    /// `timeout_ms` sent to the server.
    pub(crate) timeout_ms: Option<i32>,
    /// The serialized request body.
    pub(crate) body: IOBuf,
    /// The call's deadline (retries included); `None` = none.
    pub(crate) deadline: Option<Instant>,
    /// Most retries after connection errors.
    pub(crate) max_retry: u32,
    /// Where a synchronous caller waits for the outcome (unused by asynchronous calls).
    pub(crate) waiter: SyncWaiter,
}

impl CallPlan {
    fn call_info(&self) -> CallInfo<'_> {
        CallInfo {
            service: self.service,
            method: self.method,
            compress_type: self.compress_type,
            attachment: &self.attachment,
            log_id: self.log_id,
            timeout_ms: self.timeout_ms,
            ..CallInfo::default()
        }
    }
}

/// One attempt in flight.
pub(crate) struct Attempt {
    /// Its correlation id (`call id + k`).
    raw: u64,
    /// The connection it was written on; `None` while it connects.
    conn: Option<(SocketId, Arc<ClientConn>)>,
}

/// Set once a call's callback has returned; [`CallId::join`] waits on it.
#[derive(Default)]
pub(crate) struct Finished(Butex);

impl Finished {
    fn set(&self) {
        self.0.value().store(1, Ordering::Release);
        self.0.wake_all();
    }

    fn is_set(&self) -> bool {
        self.0.value().load(Ordering::Acquire) != 0
    }

    fn wait(&self) {
        while !self.is_set() {
            let _ = self.0.wait(0, None);
        }
    }
}

/// What a call's correlation id owns.
pub(crate) struct CallData {
    /// Runs once with the outcome.
    done: Option<Done>,
    /// Set after `done` returned; `None` for a synchronous call, which nobody joins (its
    /// caller waits for the result itself).
    finished: Option<Arc<Finished>>,
    /// The deadline timer.
    timer: Option<TimerId>,
    /// The backup-request timer.
    backup_timer: Option<TimerId>,
    /// Attempts in flight (module doc); inline for the usual one or two (first try, backup).
    attempts: SmallVec<[Attempt; 2]>,
    /// Version offset of the next attempt.
    next_version: u32,
    /// Versions of the id (attempts possible in all).
    range: u32,
    /// Retries made so far.
    retries: u32,
    /// Raw value of version 0 of the call id (attempt `k` is `base + k`).
    base: u64,
    /// What to send.
    plan: Arc<CallPlan>,
}

/// Handle of an asynchronous call (brpc's `CallId`): cancel it, or wait for it to end. Copies
/// of the handle name the same call; once the call ended every operation is a no-op.
#[derive(Clone)]
pub struct CallId {
    /// The call's id (version 0 = the first attempt).
    id: FiberId<CallData>,
    /// Set when the callback returned; `None` for the handle of a synchronous call, which only
    /// a `CancelHandle` holds (to cancel it), never joined.
    finished: Option<Arc<Finished>>,
}

impl std::fmt::Debug for CallId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CallId")
            .field("id", &self.id.as_raw())
            .field("finished", &self.is_finished())
            .finish()
    }
}

impl CallId {
    /// A handle of a call that already ended (it failed before anything was sent).
    pub(crate) fn ended() -> CallId {
        let finished = Arc::new(Finished::default());
        finished.set();
        CallId {
            id: FiberId::from_raw(0),
            finished: Some(finished),
        }
    }

    /// The correlation id of the call's first attempt.
    pub fn as_raw(&self) -> u64 {
        self.id.as_raw()
    }

    /// Cancels the call (brpc's `StartCancel`): if it has not ended yet, it ends now with
    /// `ECANCELED` — its callback runs once, on this caller, before `cancel` returns — and a
    /// response arriving later is dropped. Does nothing for a call that already ended.
    pub fn cancel(&self) {
        let _ = self.id.error(libc::ECANCELED);
    }

    /// Parks the calling fiber (or blocks the thread) until the call ended and its callback
    /// returned (brpc's `Join`). Returns at once for a call that already ended. Must not be
    /// called from the call's own callback (it would wait for itself).
    pub fn join(&self) {
        if let Some(f) = &self.finished {
            f.wait();
        }
    }

    /// Whether the call ended and its callback returned.
    pub fn is_finished(&self) -> bool {
        self.finished.as_ref().is_none_or(|f| f.is_set())
    }
}

/// Starts a call: creates its id, arms the deadline and backup timers, binds it to `cancel`
/// (a cancelled handle ends it with `ECANCELED` before anything is sent) and sends the first
/// attempt (on the caller: it may park while connecting). `done` runs exactly once.
pub(crate) fn start(
    plan: Arc<CallPlan>,
    backup_ms: Option<i64>,
    done: Done,
    cancel: Option<&super::CancelHandle>,
) -> CallId {
    let range = (plan.max_retry.saturating_add(2)).min(MAX_RANGE);
    // Only an asynchronous call's handle can be joined.
    let finished = matches!(done, Done::Callback(_)).then(|| Arc::new(Finished::default()));
    let deadline = plan.deadline;
    let id = FiberId::create_with_on_error(
        CallData {
            done: Some(done),
            finished: finished.clone(),
            timer: None,
            backup_timer: None,
            attempts: SmallVec::new(),
            next_version: 0,
            range,
            retries: 0,
            base: 0,
            plan: plan.clone(),
        },
        range,
        on_error,
    );
    let first = {
        let Ok(mut g) = id.lock() else {
            return CallId { id, finished }; // cannot happen: nobody knows the id yet
        };
        g.base = id.as_raw();
        if let Some(d) = deadline {
            g.timer = Some(timer_thread::schedule(d, move || {
                let _ = id.error(ERPCTIMEDOUT);
            }));
        }
        if let Some(ms) = backup_ms.filter(|ms| *ms >= 0) {
            let at = Instant::now() + Duration::from_millis(ms as u64);
            if deadline.is_none_or(|d| at < d) {
                g.backup_timer = Some(timer_thread::schedule(at, move || {
                    // The timer thread runs no user code and never parks: a fiber sends it.
                    spindle_runtime::spawn(move || send_backup(id));
                }));
            }
        }
        reserve(&mut g)
    };
    let call = CallId { id, finished };
    if cancel.is_some_and(|h| !h.bind(&call)) {
        call.cancel();
        return call;
    }
    issue(first, plan);
    call
}

/// Reserves the next attempt's version (the caller checked that one is left) and lists the
/// attempt as in flight; returns its id.
fn reserve(g: &mut FiberIdGuard<CallData>) -> FiberId<CallData> {
    let k = g.next_version;
    g.next_version += 1;
    let id = FiberId::<CallData>::from_raw(g.base).offset(k);
    g.attempts.push(Attempt {
        raw: id.as_raw(),
        conn: None,
    });
    id
}

/// Sends attempt `id` (a version of a call): gets a connection, registers the attempt on it
/// and writes the request. Any failure goes to [`attempt_failed`].
fn issue(id: FiberId<CallData>, plan: Arc<CallPlan>) {
    let Some(inner) = plan.channel.upgrade() else {
        return fail(
            id,
            RpcError::new(ErrorCode::Close, "the channel was dropped during the call"),
        );
    };
    let channel = Channel { inner };
    let (s, cc) = match channel.connection(plan.deadline) {
        Ok(c) => c,
        Err(e) => return fail(id, e),
    };
    let raw = id.as_raw();
    {
        let Ok(mut g) = id.lock() else {
            // The call ended while this attempt connected: the connection was not used.
            return release(&channel.inner, s.id(), &cc, true);
        };
        match g.attempts.iter_mut().find(|a| a.raw == raw) {
            Some(a) => a.conn = Some((s.id(), cc.clone())),
            None => return release(&channel.inner, s.id(), &cc, true),
        }
        cc.add(raw);
    }
    let mut out = IOBuf::new();
    let auth = channel.inner.options.authenticator.as_deref();
    let packed = channel.inner.protocol.pack_request(
        &mut out,
        raw as i64,
        &plan.body,
        &plan.call_info(),
        auth,
    );
    if let Err(e) = packed.and_then(|()| Socket::write(&s, out)) {
        fail(id, e);
    }
}

/// Attempt `id` failed with `error` (if the call still runs).
fn fail(id: FiberId<CallData>, error: RpcError) {
    if let Ok(g) = id.lock() {
        attempt_failed(g, id.as_raw(), error);
    }
}

/// Attempt `raw` of the call `g` holds failed: drop it; retry or complete if it was the last
/// one in flight (module doc).
fn attempt_failed(mut g: FiberIdGuard<CallData>, raw: u64, error: RpcError) {
    if let Some(pos) = g.attempts.iter().position(|a| a.raw == raw) {
        let a = g.attempts.swap_remove(pos);
        if let Some((sid, cc)) = a.conn {
            cc.remove(raw);
            if let Some(inner) = g.plan.channel.upgrade() {
                release(&inner, sid, &cc, false);
            }
        }
    }
    if !g.attempts.is_empty() {
        return; // another attempt (a backup) may still answer
    }
    let plan = g.plan.clone();
    if retriable(&error)
        && plan.channel.strong_count() > 0
        && g.retries < plan.max_retry
        && g.next_version < g.range
        && plan.deadline.is_none_or(|d| Instant::now() < d)
    {
        g.retries += 1;
        let next = reserve(&mut g);
        drop(g);
        // In a fiber: this may run on the thread that failed a socket.
        spindle_runtime::spawn(move || issue(next, plan));
        return;
    }
    complete(g, Err(error), None, CompletedOn::Caller);
}

/// The backup timer fired: send one more attempt if the first is still alone in flight.
fn send_backup(id: FiberId<CallData>) {
    let Ok(mut g) = id.lock() else { return };
    g.backup_timer = None;
    if g.attempts.len() != 1 || g.next_version >= g.range {
        return;
    }
    let next = reserve(&mut g);
    let plan = g.plan.clone();
    drop(g);
    issue(next, plan);
}

/// Gives back the connection of an attempt that ended: a short connection is closed; a pooled
/// one returns to the pool if `reusable` (its call got its response, or it was never written)
/// and is closed otherwise (a late response could still arrive on it).
fn release(inner: &Arc<ChannelInner>, sid: SocketId, cc: &Arc<ClientConn>, reusable: bool) {
    use crate::protocol::ConnectionType;
    match inner.ty {
        ConnectionType::Single => {}
        ConnectionType::Short => super::close(sid, "short connection: call done"),
        ConnectionType::Pooled => {
            if reusable
                && !cc.retired.load(std::sync::atomic::Ordering::Acquire)
                && socket::address(sid).is_some()
            {
                inner
                    .pool
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push((sid, cc.clone()));
            } else {
                super::close(sid, "pooled connection: call failed or abandoned");
            }
        }
    }
}

/// Completes the call `guard` holds: destroys the id, unregisters every attempt from its
/// connection, cancels the timers (except the deadline timer when called from it), releases
/// the attempts' connections (`winner`'s is reusable if the call succeeded) and runs the
/// callback — both in a new fiber when called from the timer thread, or from a reader for a
/// call with a completion callback.
pub(crate) fn complete(
    guard: FiberIdGuard<CallData>,
    result: CallResult,
    winner: Option<u64>,
    on: CompletedOn,
) {
    let cancel_timer = on != CompletedOn::TimerThread;
    // Kept in its box: the call state is moved into the closure below as one pointer.
    let mut data = guard.unlock_and_destroy_boxed();
    let attempts = std::mem::take(&mut data.attempts);
    for a in &attempts {
        if let Some((_, cc)) = &a.conn {
            cc.remove(a.raw);
        }
    }
    if let Some(t) = data.backup_timer.take() {
        timer_thread::unschedule(&t);
    }
    if cancel_timer {
        if let Some(t) = data.timer.take() {
            timer_thread::unschedule(&t);
        }
    }
    // Where the rest runs: no sockets closed and no user code on the timer thread, no user
    // code on a reader.
    let here = match on {
        CompletedOn::Caller => true,
        CompletedOn::Reader => matches!(data.done, Some(Done::Sync(_))),
        CompletedOn::TimerThread => false,
    };
    // Connections go back (or are closed) before the callback runs, so a caller woken by it
    // finds a pooled connection idle again.
    let ok = result.is_ok();
    let finish = move || {
        let inner = data.plan.channel.upgrade();
        for a in attempts {
            if let Some((sid, cc)) = a.conn {
                match &inner {
                    Some(inner) => release(inner, sid, &cc, ok && winner == Some(a.raw)),
                    None => super::close(sid, "channel dropped"),
                }
            }
        }
        let finished = data.finished.take();
        if let Some(done) = data.done.take() {
            drop(data);
            done.run(result);
        }
        if let Some(f) = finished {
            f.set();
        }
    };
    if here {
        finish();
    } else {
        spindle_runtime::spawn(finish);
    }
}

/// The on-error handler of call ids: `ERPCTIMEDOUT` from the deadline timer, `ECANCELED` from
/// [`CallId::cancel`], `EFAILEDSOCKET` from a failed connection (for the attempt it carried).
fn on_error(guard: FiberIdGuard<CallData>, code: i32) {
    match code {
        ERPCTIMEDOUT => {
            let e = RpcError::new(
                ErrorCode::RpcTimedOut,
                "the call's deadline (timeout_ms) passed",
            );
            complete(guard, Err(e), None, CompletedOn::TimerThread);
        }
        libc::ECANCELED => {
            let e = RpcError::new(ErrorCode::Other(libc::ECANCELED), "the call was cancelled");
            complete(guard, Err(e), None, CompletedOn::Caller);
        }
        EFAILEDSOCKET => {
            let raw = guard.id().as_raw();
            let e = RpcError::new(
                ErrorCode::FailedSocket,
                "the connection carrying the call failed",
            );
            attempt_failed(guard, raw, e);
        }
        other => {
            let e = RpcError::new(
                ErrorCode::from_code(other),
                format!("call failed: {}", ErrorCode::from_code(other)),
            );
            complete(guard, Err(e), None, CompletedOn::Caller);
        }
    }
}

/// Where a synchronous caller waits for its call's callback.
#[derive(Default)]
pub(crate) struct SyncWaiter {
    result: Mutex<Option<CallResult>>,
    /// 0 until the result is stored.
    ready: Butex,
}

impl SyncWaiter {
    /// Stores the result and wakes the waiter.
    pub(crate) fn set(&self, r: CallResult) {
        *self.result.lock().unwrap_or_else(|e| e.into_inner()) = Some(r);
        self.ready.value().store(1, Ordering::Release);
        self.ready.wake_all();
    }

    /// Parks the calling fiber (or blocks the thread) until `set`.
    pub(crate) fn wait(&self) -> CallResult {
        while self.ready.value().load(Ordering::Acquire) == 0 {
            let _ = self.ready.wait(0, None);
        }
        self.result
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
            .unwrap_or_else(|| Err(RpcError::new(ErrorCode::Internal, "call lost its result")))
    }
}
