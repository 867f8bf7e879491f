//! `batch_wakeup_delay_us` = 0: the messenger wakes workers for the other messages of a read at
//! once (brpc's flush) instead of deferring it (the default, which every other end-to-end test
//! runs with). Pipelined calls on one connection, sync and async, get every answer, matched to
//! its request.
//!
//! Alone in its process: the flag is global.

mod common;

use common::{async_echo_each_answered_once, echo_from_fibers, echo_server, stub};
use spindle_rpc::channel::Channel;
use spindle_rpc::server::ServerOptions;
use std::sync::Arc;

fn immediate_wakeups() {
    spindle_runtime::flags::set("batch_wakeup_delay_us", "0").unwrap();
}

#[test]
fn a_bad_delay_is_refused_naming_the_flag() {
    let e = spindle_runtime::flags::set("batch_wakeup_delay_us", "20000").unwrap_err();
    assert!(e.to_string().contains("batch_wakeup_delay_us"), "{e}");
}

#[test]
fn pipelined_sync_calls_from_many_fibers() {
    immediate_wakeups();
    let server = echo_server(ServerOptions::default());
    let stub = Arc::new(stub(&server, common::opts()));
    echo_from_fibers(&stub, 32, 100, |f, i| format!("fiber {f} call {i}"));
}

#[test]
fn pipelined_async_calls_each_answered_once() {
    immediate_wakeups();
    let server = echo_server(ServerOptions::default());
    let addr = server.local_addr().unwrap().to_string();
    let ch = Channel::new(&addr, common::opts()).unwrap();
    async_echo_each_answered_once(&ch, 500);
}
