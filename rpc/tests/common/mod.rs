//! Shared by the end-to-end tests: brpc's echo service with test hooks.
#![allow(dead_code)]

use spindle_rpc::channel::{Channel, ChannelOptions};
use spindle_rpc::errors::{ErrorCode, RpcError};
use spindle_rpc::proto::example::{
    EchoRequest, EchoResponse, EchoService, EchoServiceServer, EchoServiceStub,
};
use spindle_rpc::server::{Server, ServerOptions};
use spindle_rpc::service::CallContext;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Waits (at most 10 s) until a `sleep:` handler of the server owning `sleeping` runs.
pub fn wait_for_sleeper(sleeping: &AtomicUsize) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while sleeping.load(Ordering::SeqCst) == 0 {
        assert!(Instant::now() < deadline, "no sleeping handler started");
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// Channel options for tests: generous timeouts (machines under load are slow).
pub fn opts() -> ChannelOptions {
    ChannelOptions {
        timeout_ms: 10_000,
        connect_timeout_ms: 2_000,
        ..ChannelOptions::default()
    }
}

/// Echoes the message and the attachment. `sleep:<ms>` sleeps first (in the fiber);
/// `fail` answers EINTERNAL; `zip:` answers gzip-compressed. `sleeping` counts handlers
/// sleeping now.
pub struct Echo {
    pub sleeping: Arc<AtomicUsize>,
}

impl EchoService for Echo {
    fn echo(&self, ctx: &mut CallContext, request: EchoRequest) -> Result<EchoResponse, RpcError> {
        if let Some(ms) = request.message.strip_prefix("sleep:") {
            let ms: u64 = ms.parse().unwrap_or(0);
            self.sleeping.fetch_add(1, Ordering::SeqCst);
            spindle_runtime::sleep(Duration::from_millis(ms));
            self.sleeping.fetch_sub(1, Ordering::SeqCst);
        }
        if request.message == "fail" {
            return Err(RpcError::new(ErrorCode::Internal, "asked to fail"));
        }
        if request.message.starts_with("zip:") {
            ctx.response_compress_type = spindle_rpc::compress::CompressType::Gzip;
        }
        ctx.response_attachment = ctx.request_attachment.clone();
        Ok(EchoResponse {
            message: request.message,
        })
    }
}

/// A started echo server on a free loopback port.
pub fn echo_server(options: ServerOptions) -> Server {
    echo_server_counting(options).0
}

/// A started echo server and the count of its sleeping handlers.
pub fn echo_server_counting(options: ServerOptions) -> (Server, Arc<AtomicUsize>) {
    let sleeping = Arc::new(AtomicUsize::new(0));
    let mut server = Server::new(options);
    server
        .add_service(EchoServiceServer(Echo {
            sleeping: sleeping.clone(),
        }))
        .unwrap();
    server.start("127.0.0.1:0").unwrap();
    (server, sleeping)
}

/// A stub over a new channel to `server`.
pub fn stub(server: &Server, options: ChannelOptions) -> EchoServiceStub<Channel> {
    let addr = server.local_addr().unwrap().to_string();
    EchoServiceStub::new(Channel::new(&addr, options).unwrap())
}

/// Echo whose `hold` requests park until `release` is set (at most 20 s); `received` counts
/// every request that reached the handler.
#[derive(Default)]
pub struct Gate {
    pub received: Arc<AtomicUsize>,
    pub release: Arc<AtomicBool>,
}

impl EchoService for Gate {
    fn echo(&self, _: &mut CallContext, r: EchoRequest) -> Result<EchoResponse, RpcError> {
        self.received.fetch_add(1, Ordering::SeqCst);
        if r.message == "hold" {
            let deadline = Instant::now() + Duration::from_secs(20);
            while !self.release.load(Ordering::SeqCst) && Instant::now() < deadline {
                spindle_runtime::sleep(Duration::from_millis(2));
            }
        }
        Ok(EchoResponse { message: r.message })
    }
}

/// 24 fibers over `stubs`, each making `calls` echo calls of which every tenth sleeps 1 ms in
/// the handler; every answer is checked. The seed-004 configurations' load.
pub fn echo_from_fibers_with_sleepers(stubs: &[Arc<EchoServiceStub<Channel>>], calls: usize) {
    let handles: Vec<_> = (0..24)
        .map(|f| {
            let stub = stubs[f % stubs.len()].clone();
            spindle_runtime::spawn(move || {
                for i in 0..calls {
                    let msg = if i % 10 == 0 {
                        "sleep:1".to_owned()
                    } else {
                        format!("{f}/{i}")
                    };
                    assert_eq!(echo(&stub, &msg).unwrap(), msg);
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
}

/// One echo call.
pub fn echo(stub: &EchoServiceStub<Channel>, msg: &str) -> Result<String, RpcError> {
    let mut ctx = CallContext::default();
    stub.echo(
        &mut ctx,
        &EchoRequest {
            message: msg.to_owned(),
        },
    )
    .map(|r| r.message)
}

/// An authenticator whose credential is its token; the server side accepts only `secret`
/// (baidu_std sends it in the first request's meta, HTTP in the `Authorization` header).
pub struct Token(pub &'static str);

impl spindle_rpc::protocol::Authenticator for Token {
    fn generate_credential(&self) -> Result<Vec<u8>, RpcError> {
        Ok(self.0.as_bytes().to_vec())
    }

    fn verify_credential(
        &self,
        credential: &[u8],
        _peer: Option<std::net::SocketAddr>,
    ) -> Result<(), RpcError> {
        if credential == b"secret" {
            Ok(())
        } else {
            Err(RpcError::new(ErrorCode::RpcAuth, "wrong token"))
        }
    }
}

/// Runs `fibers` fibers that each make `calls` echo calls through `stub`, the message (built by
/// `message(fiber, call)`) sent both as the request and as its attachment, and checks that both
/// come back unchanged.
pub fn echo_from_fibers(
    stub: &Arc<EchoServiceStub<Channel>>,
    fibers: usize,
    calls: usize,
    message: fn(usize, usize) -> String,
) {
    let handles: Vec<_> = (0..fibers)
        .map(|f| {
            let stub = stub.clone();
            spindle_runtime::spawn(move || {
                for i in 0..calls {
                    let msg = message(f, i);
                    let mut ctx = CallContext {
                        request_attachment: spindle_iobuf::IOBuf::from(msg.as_bytes()),
                        ..CallContext::default()
                    };
                    let r = stub
                        .echo(
                            &mut ctx,
                            &EchoRequest {
                                message: msg.clone(),
                            },
                        )
                        .unwrap();
                    assert_eq!(r.message, msg);
                    assert_eq!(ctx.response_attachment.to_vec(), msg.as_bytes());
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
}

/// `n` asynchronous calls on `ch`: each callback runs once, with the answer to its own request.
pub fn async_echo_each_answered_once(ch: &Channel, n: usize) {
    let method = &spindle_rpc::proto::example::ECHO_SERVICE_DESCRIPTOR.methods[0];
    let (tx, rx) = std::sync::mpsc::channel();
    for i in 0..n {
        let tx = tx.clone();
        let req = EchoRequest {
            message: format!("async {i}"),
        };
        ch.call_method_async(method, &CallContext::default(), &req, move |r| {
            tx.send((i, r)).unwrap();
        });
    }
    drop(tx);
    let mut seen = vec![false; n];
    for (i, r) in rx.iter() {
        let resp: EchoResponse = prost::Message::decode(r.unwrap().payload).unwrap();
        assert_eq!(resp.message, format!("async {i}"));
        assert!(!seen[i], "callback ran twice");
        seen[i] = true;
    }
    assert!(seen.iter().all(|s| *s));
}
