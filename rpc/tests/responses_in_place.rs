//! Responses are completed by the connection's reader itself (input messenger, step 4): an
//! uncompressed baidu_std response as soon as it is cut, any response when it is the last of a
//! read. A completion callback is user code and must never run there: a callback that blocks
//! would hold up every other response on the connection.

mod common;

use common::{echo, echo_from_fibers, echo_server, opts, stub};
use spindle_rpc::channel::{Channel, ChannelOptions};
use spindle_rpc::proto::example::{EchoRequest, EchoServiceStub, ECHO_SERVICE_DESCRIPTOR};
use spindle_rpc::protocol::ConnectionType;
use spindle_rpc::server::ServerOptions;
use spindle_rpc::service::CallContext;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[test]
fn a_blocked_completion_callback_does_not_hold_up_the_connection() {
    // Processed as soon as it is cut.
    blocked_callback_then_another_call("first");
}

#[test]
fn a_blocked_callback_of_a_compressed_response_does_not_hold_up_the_connection() {
    // Decompressed in a fiber when cut among others; alone in its read, it is the last message
    // and the reader processes it.
    blocked_callback_then_another_call("zip:first");
}

/// Starts an asynchronous call whose callback blocks until a second, synchronous call on the
/// same connection is answered, then makes that call: it can only be answered if the callback
/// did not run on the connection's reader.
fn blocked_callback_then_another_call(first: &str) {
    let server = echo_server(ServerOptions::default());
    let addr = server.local_addr().unwrap().to_string();
    let options = ChannelOptions {
        connection_type: Some(ConnectionType::Single),
        timeout_ms: 3_000,
        ..opts()
    };
    let channel = Channel::new(&addr, options).unwrap();
    // Opens the channel's one connection, which both calls below share.
    let s = EchoServiceStub::new(channel.clone());
    echo(&s, "warm-up").unwrap();

    let started = Arc::new(AtomicBool::new(false));
    let second_done = Arc::new(AtomicBool::new(false));
    let saw_second = Arc::new(AtomicBool::new(false));
    let finished = Arc::new(AtomicBool::new(false));
    let (st, sd, saw, fin) = (
        started.clone(),
        second_done.clone(),
        saw_second.clone(),
        finished.clone(),
    );
    let method = &ECHO_SERVICE_DESCRIPTOR.methods[0];
    let req = EchoRequest {
        message: first.into(),
    };
    channel.call_method_async(method, &CallContext::default(), &req, move |r| {
        assert!(r.is_ok(), "the first call failed: {:?}", r.err());
        st.store(true, Ordering::Release);
        // Blocks (its fiber) until the second call, on the same connection, is answered.
        let deadline = Instant::now() + Duration::from_secs(8);
        while !sd.load(Ordering::Acquire) && Instant::now() < deadline {
            spindle_runtime::sleep(Duration::from_millis(1));
        }
        saw.store(sd.load(Ordering::Acquire), Ordering::Release);
        fin.store(true, Ordering::Release);
    });
    let deadline = Instant::now() + Duration::from_secs(10);
    while !started.load(Ordering::Acquire) {
        assert!(Instant::now() < deadline, "the first callback never ran");
        std::thread::sleep(Duration::from_millis(1));
    }
    // The first callback is blocked now. Had it run on the reader, this answer could not be
    // read and the call would time out.
    assert_eq!(echo(&s, "second").unwrap(), "second");
    second_done.store(true, Ordering::Release);
    while !finished.load(Ordering::Acquire) {
        assert!(
            Instant::now() < deadline,
            "the first callback never returned"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
    assert!(saw_second.load(Ordering::Acquire));
}

#[test]
fn pipelined_synchronous_calls_on_one_connection_are_each_answered() {
    let server = echo_server(ServerOptions::default());
    let s = Arc::new(stub(
        &server,
        ChannelOptions {
            connection_type: Some(ConnectionType::Single),
            ..opts()
        },
    ));
    // 64 calls in flight: reads carry many responses, each completed by the reader.
    echo_from_fibers(&s, 64, 50, |f, i| format!("{f}-{i}"));
}
