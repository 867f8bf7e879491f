//! End-to-end tests on loopback: the generated echo service over a real `Server` and `Channel`.

mod common;

use common::{async_echo_each_answered_once, echo, echo_from_fibers, echo_server, stub, Token};
use spindle_iobuf::IOBuf;
use spindle_rpc::channel::{Channel, ChannelOptions};
use spindle_rpc::errors::ErrorCode;
use spindle_rpc::proto::example::{EchoRequest, ECHO_SERVICE_DESCRIPTOR};
use spindle_rpc::server::ServerOptions;
use spindle_rpc::service::{CallContext, MethodDescriptor};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::time::Duration;

#[test]
fn echo_from_thread_and_fiber_with_attachment() {
    let server = echo_server(ServerOptions::default());
    let stub = stub(&server, common::opts());
    assert_eq!(echo(&stub, "hello").unwrap(), "hello");

    let mut ctx = CallContext {
        request_attachment: IOBuf::from(&b"attached bytes"[..]),
        ..CallContext::default()
    };
    let r = stub
        .echo(
            &mut ctx,
            &EchoRequest {
                message: "with attachment".into(),
            },
        )
        .unwrap();
    assert_eq!(r.message, "with attachment");
    assert_eq!(ctx.response_attachment.to_vec(), b"attached bytes");

    let stub = Arc::new(stub);
    let s2 = stub.clone();
    let from_fiber = spindle_runtime::spawn(move || echo(&s2, "from a fiber"))
        .join()
        .unwrap();
    assert_eq!(from_fiber.unwrap(), "from a fiber");

    let err = echo(&stub, "fail").unwrap_err();
    assert_eq!(err.code, ErrorCode::Internal);
    assert!(err.text.contains("asked to fail"), "{err}");
}

/// Many client fibers share one channel (one multiplexed connection): every answer matches its
/// request, so responses are matched by correlation id even when pipelined.
#[test]
fn many_concurrent_fibers_pipelined_on_one_connection() {
    let server = echo_server(ServerOptions::default());
    let stub = Arc::new(stub(&server, common::opts()));
    echo_from_fibers(&stub, 32, 100, |f, i| {
        format!("fiber {f} call {i} {}", "x".repeat(i * 7))
    });
}

#[test]
fn async_calls_run_their_callback_once() {
    let server = echo_server(ServerOptions::default());
    let addr = server.local_addr().unwrap().to_string();
    let ch = Channel::new(&addr, common::opts()).unwrap();
    async_echo_each_answered_once(&ch, 200);
}

/// A slow handler: the call times out with ERPCTIMEDOUT; the late response is dropped and the
/// connection keeps working.
#[test]
fn timeout_then_late_response_is_dropped() {
    let server = echo_server(ServerOptions::default());
    let stub = stub(&server, common::opts());
    let mut ctx = CallContext {
        timeout_ms: Some(100),
        ..CallContext::default()
    };
    let req = EchoRequest {
        message: "sleep:600".into(),
    };
    let err = stub.echo(&mut ctx, &req).unwrap_err();
    assert_eq!(err.code, ErrorCode::RpcTimedOut, "{err}");
    std::thread::sleep(Duration::from_millis(800)); // the late response arrives meanwhile
    assert_eq!(echo(&stub, "after").unwrap(), "after");
}

fn read_until_closed(mut s: TcpStream) -> bool {
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut buf = [0u8; 1024];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return true,
            Err(_) => return false,
        }
    }
}

/// Garbage, a corrupt baidu_std frame and an oversized one each close only their own
/// connection; a channel on another connection keeps working.
#[test]
fn bad_input_closes_only_its_connection() {
    let server = echo_server(ServerOptions::default());
    let stub = stub(&server, common::opts());
    assert_eq!(echo(&stub, "before").unwrap(), "before");
    let addr = server.local_addr().unwrap();
    let mut oversized = b"PRPC".to_vec();
    oversized.extend_from_slice(&u32::MAX.to_be_bytes());
    oversized.extend_from_slice(&4u32.to_be_bytes());
    let mut corrupt = b"PRPC".to_vec();
    corrupt.extend_from_slice(&4u32.to_be_bytes());
    corrupt.extend_from_slice(&100u32.to_be_bytes()); // meta_size > body_size
    corrupt.extend_from_slice(b"abcd");
    for bad in [
        b"GET-ish garbage that no protocol claims\r\n\r\n".to_vec(),
        oversized,
        corrupt,
    ] {
        let mut s = TcpStream::connect(addr).unwrap();
        s.write_all(&bad).unwrap();
        assert!(
            read_until_closed(s),
            "server did not close the bad connection"
        );
        assert_eq!(echo(&stub, "still alive").unwrap(), "still alive");
    }
}

#[test]
fn unknown_service_and_method() {
    static NO_SERVICE: MethodDescriptor = MethodDescriptor {
        service: "example.NoSuchService",
        name: "Echo",
        index: 0,
        input_type: "example.EchoRequest",
        output_type: "example.EchoResponse",
    };
    static NO_METHOD: MethodDescriptor = MethodDescriptor {
        service: "example.EchoService",
        name: "NoSuchMethod",
        index: 1,
        input_type: "example.EchoRequest",
        output_type: "example.EchoResponse",
    };
    let server = echo_server(ServerOptions::default());
    let addr = server.local_addr().unwrap().to_string();
    let ch = Channel::new(&addr, common::opts()).unwrap();
    let req = EchoRequest {
        message: "x".into(),
    };
    let e = ch
        .call_method(&NO_SERVICE, &CallContext::default(), &req)
        .unwrap_err();
    assert_eq!(e.code, ErrorCode::NoService, "{e}");
    let e = ch
        .call_method(&NO_METHOD, &CallContext::default(), &req)
        .unwrap_err();
    assert_eq!(e.code, ErrorCode::NoMethod, "{e}");
}

#[test]
fn method_max_concurrency_answers_elimit() {
    let mut options = ServerOptions::default();
    options
        .method_max_concurrency
        .insert("example.EchoService.Echo".into(), 1);
    let (server, sleeping) = common::echo_server_counting(options);
    // Two connections: a handler blocking in place delays later reads of its own connection.
    let stub = stub(&server, common::opts());
    let s2 = common::stub(&server, common::opts());
    let slow = spindle_runtime::spawn(move || echo(&s2, "sleep:1000"));
    common::wait_for_sleeper(&sleeping);
    let e = echo(&stub, "second").unwrap_err();
    assert_eq!(e.code, ErrorCode::Limit, "{e}");
    assert!(e.text.contains("max_concurrency=1"), "{e}");
    assert_eq!(slow.join().unwrap().unwrap(), "sleep:1000");
    assert_eq!(echo(&stub, "third").unwrap(), "third");
}

#[test]
fn connection_refused_fails_after_retries() {
    // A port nobody listens on: bind, read the port, close.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let ch = Channel::new(&format!("127.0.0.1:{port}"), common::opts()).unwrap();
    let stub = spindle_rpc::proto::example::EchoServiceStub::new(ch);
    let e = echo(&stub, "x").unwrap_err();
    assert_eq!(e.code, ErrorCode::Other(libc::ECONNREFUSED), "{e}");
}

/// Stop under load: every call ends with a reply or a clear error, `join` returns, nothing
/// hangs; after stop, new connections are refused.
#[test]
fn stop_under_load() {
    let server = echo_server(ServerOptions::default());
    let addr = server.local_addr().unwrap().to_string();
    let ch = Channel::new(
        &addr,
        ChannelOptions {
            max_retry: 0,
            ..common::opts()
        },
    )
    .unwrap();
    let method = &ECHO_SERVICE_DESCRIPTOR.methods[0];
    // Connect and get accepted first: stopping resets connections still in the accept backlog.
    let warm = ch.call_method(
        method,
        &CallContext::default(),
        &EchoRequest {
            message: "warm".into(),
        },
    );
    assert!(warm.is_ok(), "{warm:?}");
    let (tx, rx) = mpsc::channel();
    let ok = Arc::new(AtomicUsize::new(0));
    let answered = Arc::new(AtomicUsize::new(0));
    for i in 0..400 {
        let tx = tx.clone();
        let answered2 = answered.clone();
        let msg = if i % 4 == 0 {
            "sleep:50".to_owned()
        } else {
            format!("m{i}")
        };
        ch.call_method_async(
            method,
            &CallContext::default(),
            &EchoRequest { message: msg },
            move |r| {
                answered2.fetch_add(1, Ordering::SeqCst);
                tx.send(r.map(|_| ()).map_err(|e| (e.code, e.text)))
                    .unwrap();
            },
        );
        if i == 200 {
            // Stop once some calls were answered (bounded wait).
            let deadline = std::time::Instant::now() + Duration::from_secs(10);
            while answered.load(Ordering::SeqCst) == 0 && std::time::Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(1));
            }
            server.stop();
        }
    }
    drop(tx);
    server.join();
    let mut n = 0;
    for r in rx.iter() {
        n += 1;
        match r {
            Ok(()) => {
                ok.fetch_add(1, Ordering::Relaxed);
            }
            Err((code, text)) => assert!(
                matches!(code, ErrorCode::LogOff | ErrorCode::FailedSocket),
                "unexpected error {code}: {text}"
            ),
        }
    }
    assert_eq!(n, 400, "every call completed");
    assert!(ok.load(Ordering::Relaxed) > 0);
    assert!(!server.is_running());
    let e = echo(&stub_for(&addr), "after stop").unwrap_err();
    assert!(
        matches!(e.code, ErrorCode::Other(_) | ErrorCode::FailedSocket),
        "{e}"
    );
}

fn stub_for(addr: &str) -> spindle_rpc::proto::example::EchoServiceStub<Channel> {
    spindle_rpc::proto::example::EchoServiceStub::new(Channel::new(addr, common::opts()).unwrap())
}

#[test]
fn server_max_concurrency_answers_elimit() {
    let (server, sleeping) = common::echo_server_counting(ServerOptions {
        max_concurrency: 1,
        ..Default::default()
    });
    let a = stub(&server, common::opts());
    let b = stub(&server, common::opts());
    let slow = spindle_runtime::spawn(move || echo(&a, "sleep:1000"));
    common::wait_for_sleeper(&sleeping);
    let e = echo(&b, "second").unwrap_err();
    assert_eq!(e.code, ErrorCode::Limit, "{e}");
    assert!(e.text.contains("max_concurrency=1"), "{e}");
    assert_eq!(slow.join().unwrap().unwrap(), "sleep:1000");
    assert_eq!(echo(&b, "third").unwrap(), "third");
}

/// The first message of each connection is verified; a refused connection is closed and its
/// calls fail, other connections are unaffected.
#[test]
fn authentication_on_first_message() {
    let server = echo_server(ServerOptions {
        authenticator: Some(Arc::new(Token("secret"))),
        ..Default::default()
    });
    let good = stub(
        &server,
        ChannelOptions {
            authenticator: Some(Arc::new(Token("secret"))),
            ..common::opts()
        },
    );
    assert_eq!(echo(&good, "let me in").unwrap(), "let me in");
    let bad = stub(
        &server,
        ChannelOptions {
            authenticator: Some(Arc::new(Token("guess"))),
            max_retry: 0,
            ..common::opts()
        },
    );
    let e = echo(&bad, "let me in").unwrap_err();
    assert_eq!(e.code, ErrorCode::FailedSocket, "{e}");
    let anonymous = stub(
        &server,
        ChannelOptions {
            max_retry: 0,
            ..common::opts()
        },
    );
    assert!(echo(&anonymous, "no token").is_err());
    assert_eq!(echo(&good, "still in").unwrap(), "still in");
}

/// `run_until_asked_to_quit` returns (stopped and joined) after SIGTERM.
#[test]
fn run_until_asked_to_quit_on_sigterm() {
    let server = echo_server(ServerOptions::default());
    let stub = stub(&server, common::opts());
    assert_eq!(echo(&stub, "before").unwrap(), "before");
    let killer = std::thread::spawn(|| {
        // The handler is installed as soon as run_until_asked_to_quit starts; give it time.
        std::thread::sleep(Duration::from_millis(300));
        // SAFETY: raising a signal whose handler is installed (the test's server did it).
        unsafe { libc::kill(libc::getpid(), libc::SIGTERM) };
    });
    server.run_until_asked_to_quit();
    killer.join().unwrap();
    assert!(!server.is_running());
    assert!(echo(&stub, "after").is_err());
}

/// Large attachments (several MiB) both ways while small calls share the connection: writes
/// hit EAGAIN and go through the keep-write fiber, reads grow to the largest read size.
#[test]
fn large_attachments_share_the_connection() {
    let server = echo_server(ServerOptions::default());
    let stub = Arc::new(stub(&server, common::opts()));
    let big: Vec<u8> = (0..(6 << 20)).map(|i: u32| (i % 251) as u8).collect();
    let big = Arc::new(big);
    let handles: Vec<_> = (0..4)
        .map(|f| {
            let (stub, big) = (stub.clone(), big.clone());
            spindle_runtime::spawn(move || {
                for i in 0..3 {
                    let mut ctx = CallContext {
                        request_attachment: IOBuf::from(big.as_slice()),
                        ..CallContext::default()
                    };
                    let msg = format!("big {f}/{i}");
                    let r = stub
                        .echo(
                            &mut ctx,
                            &EchoRequest {
                                message: msg.clone(),
                            },
                        )
                        .unwrap();
                    assert_eq!(r.message, msg);
                    assert!(
                        ctx.response_attachment.to_vec() == *big,
                        "attachment corrupted"
                    );
                    assert_eq!(echo(&stub, "small").unwrap(), "small");
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
}

/// Pooled and short connections: concurrent callers each get a connection of their own;
/// answers match; a timed-out pooled connection is closed, not reused.
#[test]
fn pooled_and_short_connections() {
    use spindle_rpc::protocol::ConnectionType;
    let server = echo_server(ServerOptions::default());
    for ty in [ConnectionType::Pooled, ConnectionType::Short] {
        let stub = Arc::new(stub(
            &server,
            ChannelOptions {
                connection_type: Some(ty),
                ..common::opts()
            },
        ));
        assert_eq!(stub.channel().connection_type(), ty);
        let handles: Vec<_> = (0..8)
            .map(|f| {
                let stub = stub.clone();
                spindle_runtime::spawn(move || {
                    for i in 0..20 {
                        let msg = format!("{ty} {f}/{i}");
                        assert_eq!(echo(&stub, &msg).unwrap(), msg);
                    }
                })
            })
            .collect();
        for h in handles {
            h.join().unwrap();
        }
        let mut ctx = CallContext {
            timeout_ms: Some(50),
            ..CallContext::default()
        };
        let req = EchoRequest {
            message: "sleep:300".into(),
        };
        let e = stub.echo(&mut ctx, &req).unwrap_err();
        assert_eq!(e.code, ErrorCode::RpcTimedOut, "{e}");
        // The late response must not reach the next call on a reused connection.
        for i in 0..5 {
            let msg = format!("after timeout {i}");
            assert_eq!(echo(&stub, &msg).unwrap(), msg);
        }
    }
}

/// A channel whose server went away fails fast (naming `health_check_interval`) and is
/// revived by the health check once the server is back on the same port — for every
/// connection type.
#[test]
fn health_check_revives_the_connection() {
    use spindle_rpc::protocol::ConnectionType;
    for ty in [
        ConnectionType::Single,
        ConnectionType::Pooled,
        ConnectionType::Short,
    ] {
        health_check_revives(ty);
    }
}

fn health_check_revives(ty: spindle_rpc::protocol::ConnectionType) {
    use spindle_rpc::channel::HEALTH_CHECK_INTERVAL;
    use spindle_rpc::proto::example::EchoServiceServer;
    use spindle_rpc::server::Server;
    HEALTH_CHECK_INTERVAL.set(1).unwrap();
    let (server, sleeping) = common::echo_server_counting(ServerOptions::default());
    let addr = server.local_addr().unwrap().to_string();
    let stub = stub(
        &server,
        ChannelOptions {
            max_retry: 0,
            connection_type: Some(ty),
            ..common::opts()
        },
    );
    assert_eq!(echo(&stub, "up").unwrap(), "up");
    drop(server);
    // The first calls find the connection closed, then the reconnect refused; from then on
    // calls fail fast while the health check runs. On a loaded machine the first calls may
    // also time out while the server's sockets are still being closed: allow a few seconds.
    let mut fail_fast = None;
    let mut seen = Vec::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while std::time::Instant::now() < deadline {
        let e = echo(&stub, "down").unwrap_err();
        if e.text.contains("health_check_interval") {
            fail_fast = Some(e);
            break;
        }
        seen.push(e.to_string());
    }
    let e = fail_fast.unwrap_or_else(|| panic!("{ty}: calls never failed fast: {seen:?}"));
    assert_eq!(e.code, ErrorCode::Other(libc::ECONNREFUSED), "{ty}: {e}");
    // The same port again (retry while the old listening fd is being closed).
    let mut server2 = Server::new(ServerOptions::default());
    server2
        .add_service(EchoServiceServer(common::Echo { sleeping }))
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while let Err(e) = server2.start(&addr) {
        assert!(
            std::time::Instant::now() < deadline,
            "cannot listen again: {e}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        match echo(&stub, "back") {
            Ok(m) => break assert_eq!(m, "back"),
            Err(e) => {
                assert!(
                    std::time::Instant::now() < deadline,
                    "{ty}: not revived: {e}"
                );
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }
}

/// Forwards every call to another echo server with a nested synchronous call.
struct Relay {
    next: spindle_rpc::proto::example::EchoServiceStub<Channel>,
}

impl spindle_rpc::proto::example::EchoService for Relay {
    fn echo(
        &self,
        ctx: &mut CallContext,
        request: EchoRequest,
    ) -> Result<spindle_rpc::proto::example::EchoResponse, spindle_rpc::errors::RpcError> {
        let mut inner = CallContext {
            request_attachment: ctx.request_attachment.clone(),
            ..CallContext::default()
        };
        let r = self.next.echo(&mut inner, &request)?;
        ctx.response_attachment = inner.response_attachment;
        Ok(r)
    }
}

/// Handlers block in nested synchronous calls (the fiber parks, the worker runs others):
/// many concurrent clients through a relay server to an echo server.
#[test]
fn handlers_make_nested_synchronous_calls() {
    use spindle_rpc::proto::example::EchoServiceServer;
    use spindle_rpc::server::Server;
    let backend = echo_server(ServerOptions::default());
    let mut relay = Server::new(ServerOptions::default());
    relay
        .add_service(EchoServiceServer(Relay {
            next: stub(&backend, common::opts()),
        }))
        .unwrap();
    relay.start("127.0.0.1:0").unwrap();
    let stub = Arc::new(stub(&relay, common::opts()));
    echo_from_fibers(&stub, 16, 30, |f, i| format!("relayed {f}/{i}"));
}
