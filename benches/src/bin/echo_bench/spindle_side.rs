//! Spindle: brpc's echo service over baidu_std with spindle-rpc's `Server` and `Channel`.
//!
//! Server and client share Spindle's one global runtime (`fiber_concurrency` workers, set by
//! `main`) plus its event dispatcher thread(s). Each connection is one `Channel` (connection
//! type single: one multiplexed connection); each lane is a fiber making synchronous calls
//! through a stub over a clone of its connection's channel, as brpc's `multi_threaded_echo`
//! client does with bthreads.

use crate::measure::{new_histogram, Case, Outcome, Run, Timing, STOP};
use spindle_iobuf::IOBuf;
use spindle_rpc::channel::{Channel, ChannelOptions};
use spindle_rpc::errors::RpcError;
use spindle_rpc::proto::example::{
    EchoRequest, EchoResponse, EchoService, EchoServiceServer, EchoServiceStub,
};
use spindle_rpc::protocol::ConnectionType;
use spindle_rpc::server::{Server, ServerOptions};
use spindle_rpc::service::CallContext;
use std::sync::Arc;
use std::time::Instant;

/// brpc's example echo: the message back, the attachment back.
struct Echo;

impl EchoService for Echo {
    fn echo(&self, ctx: &mut CallContext, request: EchoRequest) -> Result<EchoResponse, RpcError> {
        ctx.response_attachment = std::mem::take(&mut ctx.request_attachment);
        Ok(EchoResponse {
            message: request.message,
        })
    }
}

/// A running Spindle echo server on a loopback port.
pub struct SpindleServer {
    server: Server,
    addr: String,
}

impl SpindleServer {
    /// Starts the server; the error names what failed.
    pub fn start() -> Result<SpindleServer, String> {
        let mut server = Server::new(ServerOptions::default());
        server
            .add_service(EchoServiceServer(Echo))
            .map_err(|e| format!("spindle: add_service: {e}"))?;
        server
            .start("127.0.0.1:0")
            .map_err(|e| format!("spindle: start: {e}"))?;
        let addr = server
            .local_addr()
            .ok_or("spindle: server has no local address")?
            .to_string();
        Ok(SpindleServer { server, addr })
    }

    /// Runs `case` against this server.
    pub fn run(&self, case: &Case, timing: Timing, timeout_ms: i64) -> Outcome {
        let options = ChannelOptions {
            connection_type: Some(ConnectionType::Single),
            timeout_ms,
            connect_timeout_ms: timeout_ms,
            ..ChannelOptions::default()
        };
        let mut channels = Vec::with_capacity(case.connections);
        for _ in 0..case.connections {
            match Channel::new(&self.addr, options.clone()) {
                Ok(c) => channels.push(c),
                Err(e) => return Outcome::failed(format!("spindle: Channel::new: {e}")),
            }
        }
        let run = Run::new();
        let request = Arc::new(EchoRequest {
            message: "x".repeat(case.payload),
        });
        let attachment = IOBuf::from(vec![b'a'; case.attachment]);
        let (payload, att_len) = (case.payload, case.attachment);
        for ch in &channels {
            for _ in 0..case.depth {
                let stub = EchoServiceStub::new(ch.clone());
                let (run, request, attachment) = (run.clone(), request.clone(), attachment.clone());
                // Lanes are detached: a stuck one is reported by `run_phases`, not joined.
                drop(spindle_runtime::spawn(move || {
                    let mut hist = new_histogram();
                    while run.phase() != STOP {
                        let mut ctx = CallContext {
                            request_attachment: attachment.clone(),
                            ..CallContext::default()
                        };
                        let start = Instant::now();
                        match stub.echo(&mut ctx, &request) {
                            Ok(r)
                                if r.message.len() == payload
                                    && ctx.response_attachment.len() == att_len =>
                            {
                                run.record(&mut hist, start.elapsed());
                            }
                            Ok(r) => run.error(|| {
                                format!(
                                    "spindle: wrong answer: {} + {} bytes",
                                    r.message.len(),
                                    ctx.response_attachment.len()
                                )
                            }),
                            Err(e) => run.error(|| format!("spindle: {e}")),
                        }
                    }
                    run.lane_done(&hist);
                }));
            }
        }
        let out = crate::measure::run_phases(&run, case.lanes(), timing);
        // Dropping the channels closes their connections (lanes still stuck then fail).
        drop(channels);
        out
    }
}

impl Drop for SpindleServer {
    fn drop(&mut self) {
        self.server.stop();
    }
}
