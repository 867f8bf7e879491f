//! Shared by the echo examples: flag parsing and runtime start, and brpc's echo service.

use spindle_rpc::errors::RpcError;
use spindle_rpc::proto::example::{EchoRequest, EchoResponse, EchoService, EchoServiceServer};
use spindle_rpc::server::{Server, ServerOptions};
use spindle_rpc::service::CallContext;

/// Parses the flags (environment, then command line) and starts the fiber runtime with them;
/// exits with status 2 and the error on bad flags.
pub fn init() {
    if let Err(e) = spindle_runtime::flags::init(std::env::args()) {
        eprintln!("{e}");
        std::process::exit(2);
    }
    // Started now rather than on first use, so its figures (workers) can be shown.
    if let Err(e @ spindle_runtime::InitError::Invalid(_)) =
        spindle_runtime::init(spindle_runtime::Config::load())
    {
        eprintln!("{e}");
        std::process::exit(2);
    }
}

/// brpc's echo service: the message back and, if `echo_attachment`, the attachment back.
pub struct Echo {
    /// Whether the request's attachment is sent back.
    pub echo_attachment: bool,
}

impl EchoService for Echo {
    fn echo(&self, ctx: &mut CallContext, request: EchoRequest) -> Result<EchoResponse, RpcError> {
        if self.echo_attachment {
            ctx.response_attachment = ctx.request_attachment.clone();
        }
        Ok(EchoResponse {
            message: request.message,
        })
    }
}

/// A started echo server listening on `addr`; exits with status 1 and the error if it cannot
/// start.
pub fn start_server(addr: &str, echo_attachment: bool) -> Server {
    let mut server = Server::new(ServerOptions::default());
    let started = server
        .add_service(EchoServiceServer(Echo { echo_attachment }))
        .and_then(|()| server.start(addr));
    if let Err(e) = started {
        eprintln!("cannot start the echo server on {addr}: {e}");
        std::process::exit(1);
    }
    server
}

/// A line naming the worker and dispatcher counts and their flags.
pub fn threads_line() -> String {
    format!(
        "{} fiber workers (--fiber_concurrency), {} event dispatchers (--event_dispatcher_num)",
        spindle_runtime::stats().workers,
        spindle_rpc::event_dispatcher::EVENT_DISPATCHER_NUM.get()
    )
}
