//! Seed 004 (the starvation trap) cannot happen: with 2 fiber workers and 4 event dispatchers,
//! echo works — dispatchers run on OS threads of their own and never pin a worker.
//!
//! A test binary of its own: the flags must be set before the runtime and the dispatchers
//! start, and they are process-wide.

mod common;

use common::{echo, echo_from_fibers_with_sleepers, echo_server, stub};
use spindle_rpc::channel::ChannelOptions;
use spindle_rpc::event_dispatcher::{dispatcher_count, EVENT_DISPATCHER_NUM};
use spindle_rpc::server::ServerOptions;
use spindle_runtime::flags::runtime_flags::FIBER_CONCURRENCY;
use std::sync::Arc;

#[test]
fn two_workers_four_dispatchers_echo() {
    FIBER_CONCURRENCY.set(2).unwrap();
    EVENT_DISPATCHER_NUM.set(4).unwrap();
    let server = echo_server(ServerOptions::default());
    assert_eq!(spindle_runtime::config().fiber_concurrency, 2);
    assert_eq!(dispatcher_count(), 4);
    // Several connections, so every dispatcher has sockets; handlers that park their fiber.
    let stubs: Vec<_> = (0..6)
        .map(|_| {
            Arc::new(stub(
                &server,
                ChannelOptions {
                    timeout_ms: 10_000,
                    ..Default::default()
                },
            ))
        })
        .collect();
    echo_from_fibers_with_sleepers(&stubs, 50);
    // And from plain threads too.
    let threads: Vec<_> = stubs
        .iter()
        .map(|s| {
            let s = s.clone();
            std::thread::spawn(move || echo(&s, "thread").unwrap())
        })
        .collect();
    for t in threads {
        assert_eq!(t.join().unwrap(), "thread");
    }
    // The flag is frozen once the dispatchers started.
    let err = EVENT_DISPATCHER_NUM.set(1).unwrap_err();
    assert!(err.to_string().contains("event_dispatcher_num"), "{err}");
}
