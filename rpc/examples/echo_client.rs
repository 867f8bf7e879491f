//! brpc's example echo clients in one: without `--thread_num`, `example/echo_c++/client.cpp`
//! (one `EchoService.Echo` request every `--interval_ms`, printing each answer and its latency);
//! with `--thread_num=N`, `example/multi_threaded_echo_c++/client.cpp` (N fibers — or threads
//! with `--use_fiber=false` — sending back to back for `--duration_s`, printing the QPS and the
//! p50/p99/p999 latency every second and a summary at the end). `--channel_num=C` spreads the
//! clients over C channels, so `--thread_num=64 --channel_num=16` is 16 connections with 4
//! calls in flight each.
//!
//! ```sh
//! cargo run --release -p spindle-rpc --example echo_client -- --server=127.0.0.1:8000 --count=10
//! cargo run --release -p spindle-rpc --example echo_client -- --server=127.0.0.1:8000 \
//!     --thread_num=64 --request_size=16 --attachment_size=0 --connection_type=single --duration_s=10
//! ```

#[path = "common/load.rs"]
mod load;

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
define_flag!(static BACKUP_REQUEST_MS: i64 = -1,
             "send a backup request after this many ms without a response; < 0 = off");
define_flag!(static ATTACHMENT_SIZE: usize = 0, "bytes of attachment sent with each request");
define_flag!(static REQUEST_SIZE: usize = 16,
             "bytes of the request message in load mode (--thread_num > 0)");
define_flag!(static INTERVAL_MS: u64 = 1000, "milliseconds between requests (without --thread_num)");
define_flag!(static COUNT: u64 = 0, "requests to send without --thread_num; 0 = until killed");
define_flag!(static THREAD_NUM: usize = 0,
             "load mode: number of clients sending back to back; 0 = one request per --interval_ms");
define_flag!(static USE_FIBER: bool = true, "load mode: clients are fibers (else OS threads)");
define_flag!(static DURATION_S: u64 = 10, "load mode: seconds to run; 0 = until killed");
define_flag!(static CHANNEL_NUM: usize = 1,
             "load mode: channels to spread the clients over in turn (with --connection_type=single, \
              a connection each)",
             validator = |v| if *v == 0 { Err("must be positive".into()) } else { Ok(()) });

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
    let backup = BACKUP_REQUEST_MS.get();
    let options = ChannelOptions {
        connection_type: Some(connection_type),
        timeout_ms: TIMEOUT_MS.get(),
        max_retry: MAX_RETRY.get(),
        backup_request_ms: (backup >= 0).then_some(backup),
        ..ChannelOptions::default()
    };
    let new_channel = || match Channel::new(&SERVER.get(), options.clone()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("cannot create the channel: {e}");
            std::process::exit(1);
        }
    };
    let channel = new_channel();
    if THREAD_NUM.get() > 0 {
        let cfg = load::LoadConfig {
            clients: THREAD_NUM.get(),
            use_fiber: USE_FIBER.get(),
            request_size: REQUEST_SIZE.get(),
            attachment_size: ATTACHMENT_SIZE.get(),
            duration: (DURATION_S.get() > 0).then(|| Duration::from_secs(DURATION_S.get())),
        };
        println!(
            "{} {} sending to {} over {} channel(s) ({} connection, request {} B, attachment {} B)",
            cfg.clients,
            if cfg.use_fiber { "fibers" } else { "threads" },
            SERVER.get(),
            CHANNEL_NUM.get(),
            CONNECTION_TYPE.get(),
            cfg.request_size,
            cfg.attachment_size
        );
        let mut channels = vec![channel];
        channels.extend((1..CHANNEL_NUM.get()).map(|_| new_channel()));
        let summary = load::run(&channels, &cfg);
        println!("summary: {}", summary.line());
        return;
    }
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
