//! Spindle: brpc's echo service over baidu_std with spindle-rpc's `Server` and `Channel`.
//!
//! Server and client share Spindle's one global runtime (`fiber_concurrency` workers, set by
//! `main`) plus its event dispatcher thread(s). Each connection is one `Channel` (connection
//! type single: one multiplexed connection). A lane is either (`--spindle-client`):
//! - `sync` (default): a fiber making synchronous calls through a stub over a clone of its
//!   connection's channel, as brpc's `multi_threaded_echo` client does with bthreads;
//! - `async`: a chain of asynchronous calls, each completion callback recording the latency
//!   and starting the lane's next call (no client fiber parks).

use crate::measure::{new_histogram, Case, Outcome, Run, Timing, STOP};
use spindle_iobuf::IOBuf;
use spindle_rpc::channel::{Channel, ChannelOptions};
use spindle_rpc::errors::RpcError;
use spindle_rpc::proto::example::{
    EchoRequest, EchoResponse, EchoService, EchoServiceServer, EchoServiceStub,
    ECHO_SERVICE_DESCRIPTOR,
};
use spindle_rpc::protocol::ConnectionType;
use spindle_rpc::server::{Server, ServerOptions};
use spindle_rpc::service::{decode_response, CallContext};
use std::sync::{Arc, Mutex};
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

    /// Runs `case` against this server; `async_lanes` chooses the lane kind (module doc).
    pub fn run(&self, case: &Case, timing: Timing, timeout_ms: i64, async_lanes: bool) -> Outcome {
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
                if async_lanes {
                    AsyncLane::issue(Arc::new(AsyncLane {
                        channel: ch.clone(),
                        run: run.clone(),
                        request: request.clone(),
                        attachment: attachment.clone(),
                        hist: Mutex::new(new_histogram()),
                    }));
                    continue;
                }
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
        // The connections close when the last lane holding a clone of their channel leaves; a
        // stuck lane keeps its connection open (and is reported by `run_phases`).
        drop(channels);
        out
    }
}

/// A lane made of asynchronous calls: each completion starts the next call.
struct AsyncLane {
    channel: Channel,
    run: Arc<Run>,
    request: Arc<EchoRequest>,
    attachment: IOBuf,
    /// Only the lane's one completion at a time touches it: never contended.
    hist: Mutex<hdrhistogram::Histogram<u64>>,
}

impl AsyncLane {
    /// Starts the lane's next call, or leaves if the run stopped.
    fn issue(lane: Arc<AsyncLane>) {
        if lane.run.phase() == STOP {
            let hist = lane.hist.lock().unwrap_or_else(|e| e.into_inner());
            lane.run.lane_done(&hist);
            return;
        }
        let ctx = CallContext {
            request_attachment: lane.attachment.clone(),
            ..CallContext::default()
        };
        let method = &ECHO_SERVICE_DESCRIPTOR.methods[0];
        let start = Instant::now();
        let l = lane.clone();
        lane.channel
            .call_method_async(method, &ctx, &*lane.request, move |r| {
                let ok = match r {
                    Ok(body) => {
                        let att = body.attachment.len();
                        match decode_response::<EchoResponse>(method, body.payload) {
                            Ok(m)
                                if m.message.len() == l.request.message.len()
                                    && att == l.attachment.len() =>
                            {
                                let mut h = l.hist.lock().unwrap_or_else(|e| e.into_inner());
                                l.run.record(&mut h, start.elapsed());
                                true
                            }
                            Ok(m) => {
                                l.run.error(|| {
                                    format!(
                                        "spindle: wrong answer: {} + {att} bytes",
                                        m.message.len()
                                    )
                                });
                                false
                            }
                            Err(e) => {
                                l.run.error(|| format!("spindle: {e}"));
                                false
                            }
                        }
                    }
                    Err(e) => {
                        l.run.error(|| format!("spindle: {e}"));
                        false
                    }
                };
                if ok {
                    AsyncLane::issue(l);
                } else {
                    // A call that fails before it is sent completes on the caller: continue in
                    // a new fiber so repeated failures do not recurse.
                    drop(spindle_runtime::spawn(move || AsyncLane::issue(l)));
                }
            });
    }
}

impl Drop for SpindleServer {
    fn drop(&mut self) {
        self.server.stop();
    }
}
