//! Cancelling a call from another thread or fiber, synchronous calls included (brpc's
//! `StartCancel(cntl.call_id())`, where the controller's id is known before the call starts).
//!
//! A [`CancelHandle`] is made before the call and put in the call's
//! [`CallContext::cancel`](crate::service::CallContext::cancel); the caller keeps a clone
//! (or hands one to whoever may cancel). The call binds itself to the handle when it starts,
//! before its first attempt is sent.
//!
//! # Invariants
//!
//! - Binding and cancelling take the handle's lock, so they are ordered: a `cancel` before the
//!   bind makes the call end with `ECANCELED` as it starts (nothing is sent); a `cancel` after
//!   it cancels the bound call through [`CallId::cancel`] (which locks the call id: the late
//!   response, if any, finds a stale id and is dropped).
//! - `CallId::cancel` runs outside the handle's lock: it runs the call's completion (which
//!   wakes the synchronous caller) on the canceller.

use super::CallId;
use std::sync::{Arc, Mutex};

/// What a handle knows.
#[derive(Debug, Default)]
struct State {
    /// `cancel` was called: every call bound from now on ends at once.
    cancelled: bool,
    /// The last call bound.
    call: Option<CallId>,
}

/// Cancels the calls made with it, from any thread or fiber (brpc's
/// `StartCancel(cntl.call_id())`). Clones share the handle.
///
/// ```no_run
/// # use spindle_rpc::channel::{CancelHandle, Channel, ChannelOptions};
/// # use spindle_rpc::proto::example::{EchoRequest, EchoServiceStub};
/// # use spindle_rpc::service::CallContext;
/// # let stub = EchoServiceStub::new(Channel::new("127.0.0.1:8000", ChannelOptions::default()).unwrap());
/// let cancel = CancelHandle::new();
/// let mut ctx = CallContext { cancel: Some(cancel.clone()), ..CallContext::default() };
/// std::thread::spawn(move || cancel.cancel());            // from anywhere
/// let r = stub.echo(&mut ctx, &EchoRequest { message: "hi".into() });
/// // Ok if the answer came first, else ECANCELED.
/// ```
#[derive(Debug, Clone, Default)]
pub struct CancelHandle(Arc<Mutex<State>>);

impl CancelHandle {
    /// A handle that cancelled nothing yet.
    pub fn new() -> CancelHandle {
        CancelHandle::default()
    }

    /// Cancels the call made with this handle if it is in flight (it ends now with
    /// `ECANCELED`, its synchronous caller returns, a late response is dropped), and every
    /// call started with this handle from now on (they end with `ECANCELED` before sending
    /// anything). A call that already ended is left alone.
    pub fn cancel(&self) {
        let call = {
            let mut st = self.0.lock().unwrap_or_else(|e| e.into_inner());
            st.cancelled = true;
            st.call.take()
        };
        if let Some(call) = call {
            call.cancel();
        }
    }

    /// Whether [`CancelHandle::cancel`] was called.
    pub fn is_cancelled(&self) -> bool {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).cancelled
    }

    /// Binds a starting call to the handle. `false`: the handle was cancelled, the caller
    /// must cancel the call instead of sending it.
    pub(crate) fn bind(&self, call: &CallId) -> bool {
        let mut st = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if st.cancelled {
            return false;
        }
        st.call = Some(call.clone());
        true
    }
}
