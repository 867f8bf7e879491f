//! The RPC demo: starts brpc's echo server in this process, loads it from client fibers over
//! loopback for a while, printing the QPS and the p50/p99/p999 latency every second, then stops
//! the server gracefully (in-flight calls finish) and prints a summary.
//!
//! ```sh
//! cargo run --release -p spindle-rpc --example demo
//! cargo run --release -p spindle-rpc --example demo -- --seconds=5 --fibers=128 \
//!     --request_size=1024 --attachment_size=4096 --connection_type=pooled
//! ```
//!
//! Any flag of the process applies too (`--fiber_concurrency`, `--event_dispatcher_num`, ...).

#[path = "common/echo.rs"]
mod echo;
#[path = "common/load.rs"]
mod load;

use spindle_rpc::channel::{Channel, ChannelOptions};
use spindle_rpc::protocol::ConnectionType;
use spindle_runtime::define_flag;
use std::time::{Duration, Instant};

define_flag!(static SECONDS: u64 = 10, "how long the load runs, in seconds",
             validator = |v| if *v == 0 { Err("must be at least 1".into()) } else { Ok(()) });
define_flag!(static FIBERS: usize = 64, "client fibers sending calls back to back",
             validator = |v| if *v == 0 { Err("must be at least 1".into()) } else { Ok(()) });
define_flag!(static REQUEST_SIZE: usize = 16, "bytes of each request's message");
define_flag!(static ATTACHMENT_SIZE: usize = 0, "bytes of each request's attachment (echoed)");
define_flag!(static CONNECTION_TYPE: Choice = "single", "connection type of the client channel",
             choices = ["single", "pooled", "short"]);

fn main() {
    echo::init();
    let server = echo::start_server("127.0.0.1:0", true);
    let addr = server
        .local_addr()
        .map(|a| a.to_string())
        .unwrap_or_default();
    let connection_type = match CONNECTION_TYPE.get() {
        "pooled" => ConnectionType::Pooled,
        "short" => ConnectionType::Short,
        _ => ConnectionType::Single,
    };
    let options = ChannelOptions {
        connection_type: Some(connection_type),
        timeout_ms: 2_000,
        ..ChannelOptions::default()
    };
    let channel = Channel::new(&addr, options).unwrap_or_else(|e| {
        eprintln!("demo: cannot create the channel: {e}");
        std::process::exit(1);
    });
    let cfg = load::LoadConfig {
        clients: FIBERS.get(),
        use_fiber: true,
        request_size: REQUEST_SIZE.get(),
        attachment_size: ATTACHMENT_SIZE.get(),
        duration: Some(Duration::from_secs(SECONDS.get())),
    };
    println!(
        "spindle rpc demo: echo server on {addr} ({}); {} client fibers over a {} connection, \
         request {} B, attachment {} B, {} s",
        echo::threads_line(),
        cfg.clients,
        CONNECTION_TYPE.get(),
        cfg.request_size,
        cfg.attachment_size,
        SECONDS.get()
    );
    let summary = load::run(std::slice::from_ref(&channel), &cfg);
    let stopping = Instant::now();
    server.stop();
    server.join();
    println!(
        "server stopped gracefully in {} ms",
        stopping.elapsed().as_millis()
    );
    println!("summary: {}", summary.line());
}
