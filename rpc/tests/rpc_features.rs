//! End-to-end tests on loopback of backup requests, cancellation, start-then-join and
//! done-handle (asynchronous) handlers.
//!
//! The server here is a done-handle service whose slow answers are *held* by the test and
//! released explicitly, so no outcome depends on timing: a call that must be answered by its
//! backup request cannot be answered by its first attempt.

mod common;

use spindle_iobuf::IOBuf;
use spindle_rpc::channel::{CallResult, Channel, ChannelOptions};
use spindle_rpc::errors::{ErrorCode, RpcError};
use spindle_rpc::proto::example::{
    EchoRequest, EchoResponse, EchoServiceAsync, EchoServiceAsyncServer, EchoServiceStub,
    ECHO_SERVICE_DESCRIPTOR,
};
use spindle_rpc::protocol::ConnectionType;
use spindle_rpc::server::{Server, ServerOptions};
use spindle_rpc::service::{CallContext, Done, Service};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

/// A done-handle echo service. By message:
/// - `hold`: the answer is held until [`Held::release`];
/// - `hold-first`: the first such request is held, later ones are answered at once;
/// - `later`: answered by another fiber after 20 ms;
/// - `thread`: answered by a plain thread;
/// - `drop`: the handle is dropped unanswered;
/// - anything else: answered at once.
///
/// Every answer is `"<message> #<n>"`, `n` counting requests from 1, with the attachment
/// echoed.
struct Held {
    /// Requests received.
    count: AtomicUsize,
    /// Answers waiting for `release`.
    held: Mutex<Vec<(Done<EchoResponse>, String)>>,
    /// `hold-first` requests received.
    first: AtomicUsize,
}

impl Held {
    fn new() -> Arc<Held> {
        Arc::new(Held {
            count: AtomicUsize::new(0),
            held: Mutex::new(Vec::new()),
            first: AtomicUsize::new(0),
        })
    }

    /// Answers every held request.
    fn release(&self) {
        let held = std::mem::take(&mut *self.held.lock().unwrap());
        for (done, msg) in held {
            answer(done, msg);
        }
    }

    fn held(&self) -> usize {
        self.held.lock().unwrap().len()
    }
}

fn answer(mut done: Done<EchoResponse>, message: String) {
    let attachment = done.ctx().request_attachment.clone();
    done.ctx_mut().response_attachment = attachment;
    done.send(Ok(EchoResponse { message }));
}

/// Waits (at most 10 s) for `cond`.
fn wait_until(what: &str, cond: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(2));
    }
}

struct HeldEcho(Arc<Held>);

impl EchoServiceAsync for HeldEcho {
    fn echo(&self, request: EchoRequest, done: Done<EchoResponse>) {
        let n = self.0.count.fetch_add(1, Ordering::SeqCst) + 1;
        let msg = format!("{} #{n}", request.message);
        match request.message.as_str() {
            "hold" => self.0.held.lock().unwrap().push((done, msg)),
            "hold-first" if self.0.first.fetch_add(1, Ordering::SeqCst) == 0 => {
                self.0.held.lock().unwrap().push((done, msg))
            }
            "later" => {
                spindle_runtime::spawn(move || {
                    spindle_runtime::sleep(Duration::from_millis(20));
                    answer(done, msg);
                });
            }
            "thread" => {
                std::thread::spawn(move || answer(done, msg));
            }
            "drop" => drop(done),
            _ => answer(done, msg),
        }
    }
}

fn held_server() -> (Server, Arc<Held>) {
    let held = Held::new();
    let mut server = Server::new(ServerOptions::default());
    server
        .add_service(EchoServiceAsyncServer(HeldEcho(held.clone())))
        .unwrap();
    server.start("127.0.0.1:0").unwrap();
    (server, held)
}

fn channel(server: &Server, options: ChannelOptions) -> Channel {
    Channel::new(&server.local_addr().unwrap().to_string(), options).unwrap()
}

fn echo_on(ch: &Channel, msg: &str) -> Result<String, RpcError> {
    common::echo(&EchoServiceStub::new(ch.clone()), msg)
}

fn decode(r: CallResult) -> Result<String, RpcError> {
    r.map(|b| {
        let resp: EchoResponse = prost::Message::decode(b.payload).unwrap();
        resp.message
    })
}

/// A handler answers from another fiber after a sleep and from a plain thread; the
/// attachment set on the handle comes back.
#[test]
fn done_handle_answers_later_from_another_fiber_or_thread() {
    let (server, _held) = held_server();
    let ch = channel(&server, common::opts());
    let stub = EchoServiceStub::new(ch.clone());
    let mut ctx = CallContext {
        request_attachment: IOBuf::from(&b"att"[..]),
        ..CallContext::default()
    };
    let r = stub
        .echo(
            &mut ctx,
            &EchoRequest {
                message: "later".into(),
            },
        )
        .unwrap();
    assert!(r.message.starts_with("later #"), "{}", r.message);
    assert_eq!(ctx.response_attachment.to_vec(), b"att");
    assert!(echo_on(&ch, "thread").unwrap().starts_with("thread #"));
    // Many at once, from fibers: every answer comes back to its own call.
    let handles: Vec<_> = (0..16)
        .map(|_| {
            let ch = ch.clone();
            spindle_runtime::spawn(move || {
                for _ in 0..10 {
                    assert!(echo_on(&ch, "later").unwrap().starts_with("later #"));
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
}

/// Dropping the handle unanswered sends EINTERNAL: the client does not hang.
#[test]
fn dropped_done_handle_sends_an_error() {
    let (server, _held) = held_server();
    let ch = channel(&server, common::opts());
    let e = echo_on(&ch, "drop").unwrap_err();
    assert_eq!(e.code, ErrorCode::Internal, "{e}");
    assert!(e.text.contains("response was never sent"), "{e}");
    assert!(echo_on(&ch, "after").unwrap().starts_with("after #"));
}

/// A done-handle service still works through the synchronous `Service::call` (it waits for
/// the handle), and a held request keeps the server's `join` waiting until it is answered.
#[test]
fn done_handle_service_called_synchronously() {
    let held = Held::new();
    let svc = EchoServiceAsyncServer(HeldEcho(held.clone()));
    let mut ctx = CallContext {
        request_attachment: IOBuf::from(&b"x"[..]),
        ..CallContext::default()
    };
    let body = spindle_rpc::service::encode_message(&EchoRequest {
        message: "thread".into(),
    });
    let out = svc.call(0, &mut ctx, body).unwrap();
    let resp: EchoResponse = prost::Message::decode(out).unwrap();
    assert_eq!(resp.message, "thread #1");
    assert_eq!(ctx.response_attachment.to_vec(), b"x");
    let body = spindle_rpc::service::encode_message(&EchoRequest {
        message: "drop".into(),
    });
    let e = svc.call(0, &mut ctx, body).unwrap_err();
    assert_eq!(e.code, ErrorCode::Internal, "{e}");
    let e = svc.call(7, &mut ctx, IOBuf::new()).unwrap_err();
    assert_eq!(e.code, ErrorCode::NoMethod, "{e}");
}

/// `stop` + `join` wait for a request whose handle is held; answering it lets `join` return
/// and the client gets the answer.
#[test]
fn join_waits_for_held_done_handles() {
    let (server, held) = held_server();
    let ch = channel(&server, common::opts());
    let ch2 = ch.clone();
    let call = spindle_runtime::spawn(move || echo_on(&ch2, "hold"));
    wait_until("the held request", || held.held() == 1);
    server.stop();
    let releaser = {
        let held = held.clone();
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(50));
            held.release();
        })
    };
    server.join(); // returns only once the held request was answered
    releaser.join().unwrap();
    assert_eq!(call.join().unwrap().unwrap(), "hold #1");
}

/// The first attempt is held; the backup request (sent after `backup_request_ms`) answers;
/// the first attempt's late answer is dropped and the channel keeps working — for every
/// connection type (single: the backup goes on the same connection).
#[test]
fn backup_request_answers_when_the_first_is_slow() {
    for ty in [
        ConnectionType::Single,
        ConnectionType::Pooled,
        ConnectionType::Short,
    ] {
        let (server, held) = held_server();
        let ch = channel(
            &server,
            ChannelOptions {
                connection_type: Some(ty),
                backup_request_ms: Some(30),
                ..common::opts()
            },
        );
        assert_eq!(
            echo_on(&ch, "hold-first").unwrap(),
            "hold-first #2",
            "{ty}: the backup request answers"
        );
        assert_eq!(held.held(), 1, "{ty}");
        held.release(); // the first attempt's late answer: dropped by the client
        for i in 0..5 {
            let msg = format!("next{i}");
            let r = echo_on(&ch, &msg).unwrap();
            assert!(r.starts_with(&format!("{msg} #")), "{ty}: {r}");
        }
    }
}

/// A backup request does not extend the deadline: both attempts held → ERPCTIMEDOUT, and the
/// server saw both.
#[test]
fn backup_request_keeps_the_deadline() {
    let (server, held) = held_server();
    let ch = channel(
        &server,
        ChannelOptions {
            connection_type: Some(ConnectionType::Pooled),
            backup_request_ms: Some(20),
            timeout_ms: 1500,
            ..common::opts()
        },
    );
    let e = echo_on(&ch, "hold").unwrap_err();
    assert_eq!(e.code, ErrorCode::RpcTimedOut, "{e}");
    wait_until("two attempts", || held.held() == 2);
    held.release();
    assert!(echo_on(&ch, "after").unwrap().starts_with("after #"));
}

/// A backup delay not shorter than the timeout sends no backup; negative delays are refused.
#[test]
fn backup_request_options() {
    let (server, held) = held_server();
    let ch = channel(
        &server,
        ChannelOptions {
            backup_request_ms: Some(5_000),
            timeout_ms: 200,
            ..common::opts()
        },
    );
    let e = echo_on(&ch, "hold").unwrap_err();
    assert_eq!(e.code, ErrorCode::RpcTimedOut, "{e}");
    assert_eq!(held.count.load(Ordering::SeqCst), 1);
    held.release();
    let e = Channel::new(
        &server.local_addr().unwrap().to_string(),
        ChannelOptions {
            backup_request_ms: Some(-1),
            ..ChannelOptions::default()
        },
    )
    .unwrap_err();
    assert!(e.text.contains("backup_request_ms=-1"), "{e}");
}

/// Cancel (brpc's `StartCancel`): the call ends at once with ECANCELED, its callback runs
/// once, `join` returns, the late response is dropped and the channel keeps working.
#[test]
fn cancel_ends_the_call_once() {
    for ty in [ConnectionType::Single, ConnectionType::Pooled] {
        let (server, held) = held_server();
        let ch = channel(
            &server,
            ChannelOptions {
                connection_type: Some(ty),
                ..common::opts()
            },
        );
        let method = &ECHO_SERVICE_DESCRIPTOR.methods[0];
        let runs = Arc::new(AtomicUsize::new(0));
        let (tx, rx) = mpsc::channel();
        let r2 = runs.clone();
        let id = ch.call_method_async(
            method,
            &CallContext::default(),
            &EchoRequest {
                message: "hold".into(),
            },
            move |r| {
                r2.fetch_add(1, Ordering::SeqCst);
                tx.send(decode(r)).unwrap();
            },
        );
        wait_until("the held request", || held.held() == 1);
        assert!(!id.is_finished());
        id.cancel();
        assert!(
            id.is_finished(),
            "{ty}: cancel runs the callback before it returns"
        );
        id.join();
        let e = rx.recv().unwrap().unwrap_err();
        assert_eq!(e.code, ErrorCode::Other(libc::ECANCELED), "{ty}: {e}");
        id.cancel(); // no-op
        held.release(); // the late answer is dropped
        assert_eq!(runs.load(Ordering::SeqCst), 1, "{ty}: callback ran once");
        for i in 0..3 {
            let msg = format!("after{i}");
            assert!(echo_on(&ch, &msg).unwrap().starts_with(&msg), "{ty}");
        }
        assert_eq!(runs.load(Ordering::SeqCst), 1, "{ty}: callback ran once");
        assert!(rx.try_recv().is_err());
    }
}

/// Start-then-join (brpc's `Join(call_id)`): many asynchronous calls started, then joined;
/// each callback has run when its `join` returns. Cancelling a finished call does nothing.
#[test]
fn start_then_join() {
    fn send_sync<T: Send + Sync>() {}
    fn send<T: Send>() {}
    send_sync::<spindle_rpc::channel::CallId>();
    send::<Done<EchoResponse>>();
    let (server, _held) = held_server();
    let ch = channel(&server, common::opts());
    let method = &ECHO_SERVICE_DESCRIPTOR.methods[0];
    let results = Arc::new(Mutex::new(Vec::new()));
    let ids: Vec<_> = (0..50)
        .map(|i| {
            let results = results.clone();
            let msg = if i % 2 == 0 { "later" } else { "now" };
            ch.call_method_async(
                method,
                &CallContext::default(),
                &EchoRequest {
                    message: msg.into(),
                },
                move |r| results.lock().unwrap().push(decode(r).unwrap()),
            )
        })
        .collect();
    for id in &ids {
        id.join();
        assert!(id.is_finished());
        assert!(!results.lock().unwrap().is_empty());
    }
    assert_eq!(results.lock().unwrap().len(), 50);
    for id in &ids {
        id.cancel();
    }
    assert_eq!(results.lock().unwrap().len(), 50);
    // Join from a fiber parks the fiber.
    let ch2 = ch.clone();
    let got = spindle_runtime::spawn(move || {
        let (tx, rx) = mpsc::channel();
        let id = ch2.call_method_async(
            method,
            &CallContext::default(),
            &EchoRequest {
                message: "later".into(),
            },
            move |r| tx.send(decode(r)).unwrap(),
        );
        id.join();
        rx.try_recv().unwrap()
    })
    .join()
    .unwrap();
    assert!(got.unwrap().starts_with("later #"));
}

/// Cancelling a synchronous caller's peer: a call cancelled from another thread while a
/// timeout is pending ends with ECANCELED, not ERPCTIMEDOUT, and its timer does not fire
/// later.
#[test]
fn cancel_from_another_thread() {
    let (server, held) = held_server();
    let ch = channel(&server, common::opts());
    let (tx, rx) = mpsc::channel();
    let id = ch.call_method_async(
        &ECHO_SERVICE_DESCRIPTOR.methods[0],
        &CallContext {
            timeout_ms: Some(300),
            ..CallContext::default()
        },
        &EchoRequest {
            message: "hold".into(),
        },
        move |r| tx.send(decode(r)).unwrap(),
    );
    wait_until("the held request", || held.held() == 1);
    let id2 = id.clone();
    std::thread::spawn(move || id2.cancel()).join().unwrap();
    let e = rx.recv().unwrap().unwrap_err();
    assert_eq!(e.code, ErrorCode::Other(libc::ECANCELED), "{e}");
    std::thread::sleep(Duration::from_millis(400)); // past the cancelled deadline
    assert!(rx.try_recv().is_err(), "the callback ran twice");
    held.release();
}

/// A "server" that accepts connections, waits for the first bytes of a request and closes the
/// connection: every attempt fails mid-call with EFAILEDSOCKET. Returns its address and the
/// count of connections that carried a request; it stops when `stop` is set.
fn closing_server(stop: Arc<std::sync::atomic::AtomicBool>) -> (String, Arc<AtomicUsize>) {
    use std::io::Read;
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let carried = Arc::new(AtomicUsize::new(0));
    let c2 = carried.clone();
    std::thread::spawn(move || {
        let deadline = Instant::now() + Duration::from_secs(30);
        while !stop.load(Ordering::SeqCst) && Instant::now() < deadline {
            match listener.accept() {
                Ok((mut s, _)) => {
                    s.set_nonblocking(false).unwrap();
                    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
                    let mut buf = [0u8; 12];
                    if s.read(&mut buf).unwrap_or(0) > 0 {
                        c2.fetch_add(1, Ordering::SeqCst);
                    }
                    drop(s); // the call in flight fails with EFAILEDSOCKET
                }
                Err(_) => std::thread::sleep(Duration::from_millis(1)),
            }
        }
    });
    (addr, carried)
}

/// A connection failing mid-call is retried `max_retry` times (new connections), for
/// synchronous and asynchronous calls, then the call fails with EFAILEDSOCKET; the callback of
/// the asynchronous call runs once.
#[test]
fn connection_failures_mid_call_are_retried() {
    for ty in [ConnectionType::Single, ConnectionType::Pooled] {
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (addr, carried) = closing_server(stop.clone());
        let ch = Channel::new(
            &addr,
            ChannelOptions {
                connection_type: Some(ty),
                max_retry: 2,
                ..common::opts()
            },
        )
        .unwrap();
        let e = echo_on(&ch, "x").unwrap_err();
        assert_eq!(e.code, ErrorCode::FailedSocket, "{ty}: {e}");
        assert_eq!(
            carried.load(Ordering::SeqCst),
            3,
            "{ty}: 1 attempt + 2 retries"
        );
        let (tx, rx) = mpsc::channel();
        let id = ch.call_method_async(
            &ECHO_SERVICE_DESCRIPTOR.methods[0],
            &CallContext::default(),
            &EchoRequest {
                message: "y".into(),
            },
            move |r| tx.send(decode(r)).unwrap(),
        );
        id.join();
        let e = rx.recv().unwrap().unwrap_err();
        assert_eq!(e.code, ErrorCode::FailedSocket, "{ty}: {e}");
        assert_eq!(
            carried.load(Ordering::SeqCst),
            6,
            "{ty}: async calls retry too"
        );
        assert!(rx.try_recv().is_err(), "{ty}: callback ran twice");
        stop.store(true, Ordering::SeqCst);
    }
}
