//! brpc's example echo server (`example/echo_c++/server.cpp`): answers `EchoService.Echo`
//! with the request's message and echoes the attachment back.
//!
//! ```sh
//! cargo run --release -p spindle-rpc --example echo_server -- --port=8000
//! ```

use spindle_rpc::errors::RpcError;
use spindle_rpc::proto::example::{EchoRequest, EchoResponse, EchoService, EchoServiceServer};
use spindle_rpc::server::{Server, ServerOptions};
use spindle_rpc::service::CallContext;
use spindle_runtime::define_flag;

define_flag!(static PORT: u32 = 8000, "TCP port of this server",
             validator = |v| if *v > 65535 { Err("must be at most 65535".into()) } else { Ok(()) });
define_flag!(static ECHO_ATTACHMENT: bool = true, "echo the attachment back");

struct Echo;

impl EchoService for Echo {
    fn echo(&self, ctx: &mut CallContext, request: EchoRequest) -> Result<EchoResponse, RpcError> {
        if ECHO_ATTACHMENT.get() {
            ctx.response_attachment = ctx.request_attachment.clone();
        }
        Ok(EchoResponse {
            message: request.message,
        })
    }
}

fn main() {
    if let Err(e) = spindle_runtime::flags::init(std::env::args()) {
        eprintln!("{e}");
        std::process::exit(2);
    }
    let mut server = Server::new(ServerOptions::default());
    if let Err(e) = server.add_service(EchoServiceServer(Echo)) {
        eprintln!("cannot add the echo service: {e}");
        std::process::exit(1);
    }
    let addr = format!("0.0.0.0:{}", PORT.get());
    if let Err(e) = server.start(&addr) {
        eprintln!("cannot start the server: {e}");
        std::process::exit(1);
    }
    eprintln!("echo server listening on {addr}; Ctrl-C to stop");
    server.run_until_asked_to_quit();
}
