//! brpc's example echo client (`example/echo_c++/client.cpp`): sends `EchoService.Echo`
//! requests with an optional attachment and prints the answers and latencies.
//!
//! ```sh
//! cargo run --release -p spindle-rpc --example echo_client -- --server=127.0.0.1:8000 --count=10
//! ```

use spindle_iobuf::IOBuf;
use spindle_rpc::channel::{Channel, ChannelOptions};
use spindle_rpc::proto::example::{EchoRequest, EchoServiceStub};
use spindle_rpc::protocol::ConnectionType;
use spindle_rpc::service::CallContext;
use spindle_runtime::define_flag;
use std::time::{Duration, Instant};

define_flag!(static SERVER: String = "127.0.0.1:8000", "ip:port of the server");
define_flag!(static CONNECTION_TYPE: Choice = "single", "connection type",
             choices = ["single", "pooled", "short"]);
define_flag!(static TIMEOUT_MS: i64 = 100, "RPC timeout in milliseconds");
define_flag!(static MAX_RETRY: u32 = 3, "max retries on connection errors");
define_flag!(static ATTACHMENT_SIZE: usize = 0, "bytes of attachment sent with each request");
define_flag!(static INTERVAL_MS: u64 = 1000, "milliseconds between requests");
define_flag!(static COUNT: u64 = 0, "requests to send; 0 = until killed");

fn main() {
    if let Err(e) = spindle_runtime::flags::init(std::env::args()) {
        eprintln!("{e}");
        std::process::exit(2);
    }
    let connection_type = match CONNECTION_TYPE.get() {
        "pooled" => ConnectionType::Pooled,
        "short" => ConnectionType::Short,
        _ => ConnectionType::Single,
    };
    let options = ChannelOptions {
        connection_type: Some(connection_type),
        timeout_ms: TIMEOUT_MS.get(),
        max_retry: MAX_RETRY.get(),
        ..ChannelOptions::default()
    };
    let channel = match Channel::new(&SERVER.get(), options) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("cannot create the channel: {e}");
            std::process::exit(1);
        }
    };
    let stub = EchoServiceStub::new(channel);
    let attachment = vec![b'a'; ATTACHMENT_SIZE.get()];
    let mut sent = 0u64;
    while COUNT.get() == 0 || sent < COUNT.get() {
        let mut ctx = CallContext {
            log_id: Some(sent as i64),
            request_attachment: IOBuf::from(attachment.as_slice()),
            ..CallContext::default()
        };
        let start = Instant::now();
        match stub.echo(
            &mut ctx,
            &EchoRequest {
                message: "hello world".to_owned(),
            },
        ) {
            Ok(r) => println!(
                "Received response from {}: {} (attached={}) latency={}us",
                SERVER.get(),
                r.message,
                ctx.response_attachment.len(),
                start.elapsed().as_micros()
            ),
            Err(e) => eprintln!("call failed: {e}"),
        }
        sent += 1;
        std::thread::sleep(Duration::from_millis(INTERVAL_MS.get()));
    }
}
