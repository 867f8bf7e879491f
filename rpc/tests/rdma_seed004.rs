//! Seed 004 cannot happen over RDMA: with 2 fiber workers, 4 event dispatchers and 4 RDMA
//! pollers, RDMA echo works (dispatchers and pollers run on OS threads of their own); a
//! configuration that could not serve (busy pollers on every core) is refused at start with
//! an error naming the flags.
//!
//! A test binary of its own: the flags are process-wide and frozen once the runtime and the
//! dispatchers start.

mod common;
mod rdma_common;

use common::{echo_from_fibers_with_sleepers, echo_server, opts, stub};
use rdma_common::{setup_small_pools, transports_of};
use spindle_rpc::channel::{Channel, ChannelOptions};
use spindle_rpc::event_dispatcher::{dispatcher_count, EVENT_DISPATCHER_NUM};
use spindle_rpc::server::{Server, ServerOptions};
use spindle_runtime::flags::runtime_flags::FIBER_CONCURRENCY;
use std::sync::Arc;

fn rdma_server_options() -> ServerOptions {
    ServerOptions {
        rdma: true,
        ..Default::default()
    }
}

#[test]
fn two_workers_four_dispatchers_four_pollers_rdma_echo() {
    setup_small_pools();
    FIBER_CONCURRENCY.set(2).unwrap();
    EVENT_DISPATCHER_NUM.set(4).unwrap();
    let set = |n: &str, v: &str| spindle_runtime::flags::set(n, v).unwrap();
    set("rdma_use_polling", "true");

    // Busy pollers on every core: refused by the server and the channel, flags named.
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    set("rdma_poller_num", &cores.clamp(1, 64).to_string());
    set("rdma_poller_yield", "false");
    let mut refused = Server::new(rdma_server_options());
    let err = refused.start("127.0.0.1:0").unwrap_err();
    assert!(err.text.contains("--rdma_poller_num"), "{err}");
    assert!(err.text.contains("--rdma_poller_yield"), "{err}");
    let opts_rdma = ChannelOptions {
        use_rdma: true,
        ..opts()
    };
    let err = Channel::new("127.0.0.1:1", opts_rdma.clone()).unwrap_err();
    assert!(err.text.contains("--rdma_poller_num"), "{err}");

    // The seed-004 configuration: 2 workers, 4 dispatchers, 4 (yielding) pollers.
    set("rdma_poller_num", "4");
    set("rdma_poller_yield", "true");
    let server = echo_server(rdma_server_options());
    assert_eq!(spindle_runtime::config().fiber_concurrency, 2);
    assert_eq!(dispatcher_count(), 4);
    let port = server.local_addr().unwrap().port();
    let stubs: Vec<_> = (0..6)
        .map(|_| Arc::new(stub(&server, opts_rdma.clone())))
        .collect();
    echo_from_fibers_with_sleepers(&stubs, 40);
    let t = transports_of(port);
    assert_eq!(t.len(), 12, "6 connections, both ends: {t:?}");
    assert!(t.iter().all(|t| t.starts_with("rdma")), "{t:?}");
}
