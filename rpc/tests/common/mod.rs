//! Shared by the end-to-end tests: brpc's echo service with test hooks.
#![allow(dead_code)]

use spindle_rpc::channel::{Channel, ChannelOptions};
use spindle_rpc::errors::{ErrorCode, RpcError};
use spindle_rpc::proto::example::{
    EchoRequest, EchoResponse, EchoService, EchoServiceServer, EchoServiceStub,
};
use spindle_rpc::server::{Server, ServerOptions};
use spindle_rpc::service::CallContext;
use std::time::Duration;

/// Echoes the message and the attachment. `sleep:<ms>` sleeps first (in the fiber);
/// `fail` answers EINTERNAL.
pub struct Echo;

impl EchoService for Echo {
    fn echo(&self, ctx: &mut CallContext, request: EchoRequest) -> Result<EchoResponse, RpcError> {
        if let Some(ms) = request.message.strip_prefix("sleep:") {
            let ms: u64 = ms.parse().unwrap_or(0);
            spindle_runtime::sleep(Duration::from_millis(ms));
        }
        if request.message == "fail" {
            return Err(RpcError::new(ErrorCode::Internal, "asked to fail"));
        }
        ctx.response_attachment = ctx.request_attachment.clone();
        Ok(EchoResponse {
            message: request.message,
        })
    }
}

/// A started echo server on a free loopback port.
pub fn echo_server(options: ServerOptions) -> Server {
    let mut server = Server::new(options);
    server.add_service(EchoServiceServer(Echo)).unwrap();
    server.start("127.0.0.1:0").unwrap();
    server
}

/// A stub over a new channel to `server`.
pub fn stub(server: &Server, options: ChannelOptions) -> EchoServiceStub<Channel> {
    let addr = server.local_addr().unwrap().to_string();
    EchoServiceStub::new(Channel::new(&addr, options).unwrap())
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
