//! Idle workers poll the dispatchers (event_dispatcher.rs, runtime idle_hook.rs): a request on
//! an idle server is read by the worker that saw the event, busy workers still pick up I/O
//! between fibers, and stopping to poll never strands a connection.
//!
//! A test binary of its own: the dispatcher counters are process-wide.

mod common;

use common::{echo, echo_server, stub};
use spindle_rpc::channel::ChannelOptions;
use spindle_rpc::event_dispatcher;
use spindle_rpc::server::ServerOptions;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

fn options() -> ChannelOptions {
    ChannelOptions {
        timeout_ms: 10_000,
        ..Default::default()
    }
}

#[test]
fn idle_workers_read_the_sockets_they_saw_events_on() {
    let server = echo_server(ServerOptions::default());
    let stub = stub(&server, options());
    for i in 0..300 {
        let msg = format!("seq {i}");
        assert_eq!(echo(&stub, &msg).unwrap(), msg);
        if i % 50 == 0 {
            // Let every worker go idle, so one parks in epoll_wait.
            std::thread::sleep(Duration::from_millis(5));
        }
    }
    let s = event_dispatcher::stats();
    assert!(s.worker_polls > 0, "{s:?}");
    assert!(
        s.worker_events > 0,
        "idle workers handle socket events themselves: {s:?}"
    );

    // Every worker busy with fibers that keep yielding: nobody is idle, yet calls complete
    // (busy workers poll between fibers; the dispatcher threads step in when nobody polls).
    let stop = Arc::new(AtomicBool::new(false));
    let spinners: Vec<_> = (0..spindle_runtime::config().fiber_concurrency)
        .map(|_| {
            let stop = stop.clone();
            spindle_runtime::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    spindle_runtime::yield_now();
                }
            })
        })
        .collect();
    for i in 0..100 {
        let msg = format!("busy {i}");
        assert_eq!(echo(&stub, &msg).unwrap(), msg);
    }
    stop.store(true, Ordering::Relaxed);
    for h in spinners {
        h.join().unwrap();
    }
}
