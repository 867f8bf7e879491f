//! brpc's `example/rdma_performance` for Spindle: an echo server and a load client that keeps
//! `--queue_depth` calls with `--attachment_size`-byte attachments in flight over RDMA (or TCP
//! with `--use_rdma=false`), printing throughput, QPS and p50/p99 latency every second and a
//! summary. Without a NIC, RDMA runs over the software fabric (docs/rdma.md), across processes.
//!
//! ```sh
//! # two processes (the usual way):
//! cargo run --release -p spindle-rpc --example rdma_performance -- --server --address=127.0.0.1:8100
//! cargo run --release -p spindle-rpc --example rdma_performance -- --client --address=127.0.0.1:8100 \
//!     --attachment_size=65536 --queue_depth=8 --duration_s=10
//! # both in one process:
//! cargo run --release -p spindle-rpc --example rdma_performance -- --duration_s=5
//! ```
//!
//! On hardware: add `--rdma_backend=ibverbs --rdma_device=mlx5_0` (and `--rdma_gid_index` for
//! RoCE) to both sides; nothing else changes.

#[path = "common/echo.rs"]
#[allow(dead_code)]
mod echo;
#[path = "common/rdma_load.rs"]
mod rdma_load;

use spindle_rpc::channel::{Channel, ChannelOptions};
use spindle_rpc::server::{Server, ServerOptions};
use spindle_runtime::define_flag;
use std::time::Duration;

define_flag!(static SERVER: bool = false, "run the server only (until SIGINT/SIGTERM)");
define_flag!(static CLIENT: bool = false, "run the client only (against --address)");
define_flag!(static ADDRESS: String = "127.0.0.1:8100", "ip:port the server listens on / the client calls");
define_flag!(static ATTACHMENT_SIZE: usize = 4096, "bytes of attachment per request (echoed back)");
define_flag!(static REQUEST_SIZE: usize = 16, "bytes of the request message");
define_flag!(static QUEUE_DEPTH: usize = 8, "calls in flight on the connection");
define_flag!(static DURATION_S: u64 = 10, "seconds the client runs");
define_flag!(static USE_RDMA: bool = true, "use RDMA (false: the same over TCP)");
define_flag!(static TIMEOUT_MS: i64 = 5000, "RPC timeout in milliseconds");

fn start_server(addr: &str) -> Server {
    let mut server = Server::new(ServerOptions {
        rdma: USE_RDMA.get(),
        ..Default::default()
    });
    let started = server
        .add_service(spindle_rpc::proto::example::EchoServiceServer(echo::Echo {
            echo_attachment: true,
        }))
        .and_then(|()| server.start(addr));
    if let Err(e) = started {
        eprintln!("cannot start the server on {addr}: {e}");
        std::process::exit(1);
    }
    println!(
        "rdma_performance server on {} (rdma={}); {}",
        server
            .local_addr()
            .map_or(addr.to_owned(), |a| a.to_string()),
        USE_RDMA.get(),
        echo::threads_line()
    );
    server
}

fn run_client(addr: &str) {
    let channel = Channel::new(
        addr,
        ChannelOptions {
            use_rdma: USE_RDMA.get(),
            timeout_ms: TIMEOUT_MS.get(),
            connect_timeout_ms: 2000,
            ..Default::default()
        },
    )
    .unwrap_or_else(|e| {
        eprintln!("cannot create the channel: {e}");
        std::process::exit(1);
    });
    let cfg = rdma_load::LoadConfig {
        depth: QUEUE_DEPTH.get(),
        request_size: REQUEST_SIZE.get(),
        attachment_size: ATTACHMENT_SIZE.get(),
        duration: Duration::from_secs(DURATION_S.get().max(1)),
        print_every_second: true,
    };
    println!(
        "rdma_performance client -> {addr}: use_rdma={} queue_depth={} attachment={} B",
        USE_RDMA.get(),
        cfg.depth,
        cfg.attachment_size
    );
    let f = rdma_load::run(&channel, &cfg);
    let transports: Vec<String> = rdma_load::transports()
        .into_iter()
        .filter(|t| t != "tcp" || !USE_RDMA.get())
        .collect();
    println!(
        "transport: {}",
        transports.first().map_or("tcp", |s| s.as_str())
    );
    println!("summary: calls={} {}", f.calls, f.line());
}

fn main() {
    echo::init();
    let addr = ADDRESS.get();
    match (SERVER.get(), CLIENT.get()) {
        (true, _) => start_server(&addr).run_until_asked_to_quit(),
        (false, true) => run_client(&addr),
        (false, false) => {
            let server = start_server(&addr);
            let addr = server.local_addr().map_or(addr.clone(), |a| a.to_string());
            run_client(&addr);
        }
    }
}
