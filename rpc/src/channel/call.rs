//! One call in flight: the state its correlation id ([`FiberId`]) owns, and how a call
//! completes exactly once.

use crate::errors::{ErrorCode, RpcError, ERPCTIMEDOUT};
use crate::protocol::ResponseBody;
use spindle_runtime::butex::Butex;
use spindle_runtime::fiber_id::FiberIdGuard;
use spindle_runtime::timer_thread::{self, TimerId};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use super::connection::ClientConn;

/// The outcome of a call.
pub type CallResult = Result<ResponseBody, RpcError>;

/// A completion callback.
pub(crate) type Done = Box<dyn FnOnce(CallResult) + Send>;

/// What a call's correlation id owns.
pub(crate) struct CallData {
    /// Runs once with the outcome.
    pub(crate) done: Option<Done>,
    /// The timeout timer, if the call has a deadline.
    pub(crate) timer: Option<TimerId>,
    /// The connection whose pending table lists the call.
    pub(crate) conn: Option<Arc<ClientConn>>,
}

/// Completes the call whose id `guard` holds: destroys the id (every later response, timeout
/// or failure for it is refused as stale), cancels the timer unless `cancel_timer` is false
/// (when called from the timer itself), and runs the callback — in a new fiber when called
/// from the timer thread, which must not run user code.
pub(crate) fn complete(guard: FiberIdGuard<CallData>, result: CallResult, cancel_timer: bool) {
    let raw = guard.id().as_raw();
    let mut data = guard.unlock_and_destroy();
    if let Some(c) = &data.conn {
        c.remove(raw);
    }
    if cancel_timer {
        if let Some(t) = data.timer.take() {
            timer_thread::unschedule(&t);
        }
    }
    if let Some(done) = data.done.take() {
        if cancel_timer {
            done(result);
        } else {
            spindle_runtime::spawn(move || done(result));
        }
    }
}

/// The on-error handler of call ids: `ERPCTIMEDOUT` from the timer, `EFAILEDSOCKET` from a
/// failed connection.
pub(crate) fn on_error(guard: FiberIdGuard<CallData>, code: i32) {
    let from_timer = code == ERPCTIMEDOUT;
    let text = match ErrorCode::from_code(code) {
        ErrorCode::RpcTimedOut => "the call's deadline (timeout_ms) passed".to_owned(),
        ErrorCode::FailedSocket => "the connection carrying the call failed".to_owned(),
        other => format!("call failed: {other}"),
    };
    complete(
        guard,
        Err(RpcError::new(ErrorCode::from_code(code), text)),
        !from_timer,
    );
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
