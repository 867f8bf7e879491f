//! Cancelling a synchronous call from another thread or fiber (brpc's
//! `StartCancel(cntl.call_id())`): a [`CancelHandle`] made before the call ends it with
//! `ECANCELED` while the server still holds the request; the late response is dropped and the
//! channel goes on. A handle cancelled before the call ends it before anything is sent.
//! Outcomes never depend on timing: the server holds requests until the test releases them.

mod common;

use common::{opts, Gate};
use spindle_rpc::channel::{CancelHandle, Channel, ChannelOptions};
use spindle_rpc::errors::{ErrorCode, RpcError};
use spindle_rpc::proto::example::{EchoRequest, EchoServiceServer, EchoServiceStub};
use spindle_rpc::protocol::ConnectionType;
use spindle_rpc::server::{Server, ServerOptions};
use spindle_rpc::service::CallContext;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

struct Fixture {
    server: Server,
    received: Arc<AtomicUsize>,
    release: Arc<AtomicBool>,
}

fn fixture() -> Fixture {
    let gate = Gate::default();
    let (received, release) = (gate.received.clone(), gate.release.clone());
    let mut server = Server::new(ServerOptions::default());
    server.add_service(EchoServiceServer(gate)).unwrap();
    server.start("127.0.0.1:0").unwrap();
    Fixture {
        server,
        received,
        release,
    }
}

impl Fixture {
    fn stub(&self, ty: ConnectionType) -> EchoServiceStub<Channel> {
        let addr = self.server.local_addr().unwrap().to_string();
        let options = ChannelOptions {
            connection_type: Some(ty),
            ..opts()
        };
        EchoServiceStub::new(Channel::new(&addr, options).unwrap())
    }

    /// Waits (at most 10 s) until the server received `n` requests in all.
    fn wait_received(&self, n: usize) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.received.load(Ordering::SeqCst) < n {
            assert!(
                Instant::now() < deadline,
                "the server never got request {n}"
            );
            std::thread::sleep(Duration::from_millis(1));
        }
    }
}

fn call(
    stub: &EchoServiceStub<Channel>,
    msg: &str,
    cancel: &CancelHandle,
) -> Result<String, RpcError> {
    let mut ctx = CallContext {
        cancel: Some(cancel.clone()),
        ..CallContext::default()
    };
    stub.echo(
        &mut ctx,
        &EchoRequest {
            message: msg.into(),
        },
    )
    .map(|r| r.message)
}

fn assert_cancelled(r: Result<String, RpcError>) {
    let e = r.unwrap_err();
    assert_eq!(e.code, ErrorCode::Other(libc::ECANCELED), "{e}");
}

#[test]
fn cancel_sync_call_from_another_thread() {
    for ty in [
        ConnectionType::Single,
        ConnectionType::Pooled,
        ConnectionType::Short,
    ] {
        let f = fixture();
        let stub = Arc::new(f.stub(ty));
        let cancel = CancelHandle::new();
        let (s, c) = (stub.clone(), cancel.clone());
        let caller = std::thread::spawn(move || call(&s, "hold", &c));
        f.wait_received(1);
        assert!(!cancel.is_cancelled());
        std::thread::spawn(move || cancel.cancel()).join().unwrap();
        // The caller returns while the server still holds its request.
        assert_cancelled(caller.join().unwrap());
        f.release.store(true, Ordering::SeqCst);
        // The late response is dropped; the channel serves the next call.
        let fresh = CancelHandle::new();
        assert_eq!(call(&stub, "next", &fresh).unwrap(), "next", "{ty:?}");
    }
}

#[test]
fn cancel_sync_call_from_another_fiber() {
    let f = fixture();
    let stub = Arc::new(f.stub(ConnectionType::Single));
    let cancel = CancelHandle::new();
    let (s, c) = (stub.clone(), cancel.clone());
    let caller = spindle_runtime::spawn(move || call(&s, "hold", &c));
    f.wait_received(1);
    let canceller = spindle_runtime::spawn(move || cancel.cancel());
    canceller.join().unwrap();
    assert_cancelled(caller.join().unwrap());
    f.release.store(true, Ordering::SeqCst);
    let next = spindle_runtime::spawn(move || call(&stub, "next", &CancelHandle::new()));
    assert_eq!(next.join().unwrap().unwrap(), "next");
}

#[test]
fn handle_cancelled_before_the_call_sends_nothing() {
    let f = fixture();
    let stub = f.stub(ConnectionType::Pooled);
    assert_eq!(call(&stub, "warm", &CancelHandle::new()).unwrap(), "warm");
    let cancel = CancelHandle::new();
    cancel.cancel();
    assert!(cancel.is_cancelled());
    assert_cancelled(call(&stub, "never", &cancel));
    // A cancelled handle cancels every later call made with it.
    assert_cancelled(call(&stub, "never again", &cancel));
    assert_eq!(call(&stub, "after", &CancelHandle::new()).unwrap(), "after");
    assert_eq!(
        f.received.load(Ordering::SeqCst),
        2,
        "a cancelled call was sent"
    );
}

#[test]
fn cancel_after_the_call_ended_is_a_no_op() {
    let f = fixture();
    let stub = f.stub(ConnectionType::Single);
    let cancel = CancelHandle::new();
    assert_eq!(call(&stub, "done", &cancel).unwrap(), "done");
    cancel.cancel();
    assert_eq!(call(&stub, "other", &CancelHandle::new()).unwrap(), "other");
}

/// An asynchronous call made with a handle is cancelled through it too.
#[test]
fn cancel_handle_cancels_async_calls() {
    let f = fixture();
    let addr = f.server.local_addr().unwrap().to_string();
    let ch = Channel::new(&addr, opts()).unwrap();
    let cancel = CancelHandle::new();
    let ctx = CallContext {
        cancel: Some(cancel.clone()),
        ..CallContext::default()
    };
    let got = Arc::new(std::sync::Mutex::new(None));
    let g = got.clone();
    let id = ch.call_method_async(
        &spindle_rpc::proto::example::ECHO_SERVICE_DESCRIPTOR.methods[0],
        &ctx,
        &EchoRequest {
            message: "hold".into(),
        },
        move |r| *g.lock().unwrap() = Some(r.map(|_| ())),
    );
    f.wait_received(1);
    cancel.cancel();
    id.join();
    let e = got.lock().unwrap().take().unwrap().unwrap_err();
    assert_eq!(e.code, ErrorCode::Other(libc::ECANCELED), "{e}");
    f.release.store(true, Ordering::SeqCst);
}
