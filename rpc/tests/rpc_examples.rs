//! The examples' shared code runs: the echo server helper and the load generator of
//! `echo_client --thread_num` and `demo`, briefly, over loopback, with fibers and threads and
//! every connection type. Only that calls are answered is checked, never how fast.

#[path = "../examples/common/echo.rs"]
#[allow(dead_code)]
mod echo;
#[path = "../examples/common/load.rs"]
mod load;

use spindle_rpc::channel::{Channel, ChannelOptions};
use spindle_rpc::protocol::ConnectionType;
use std::time::Duration;

#[test]
fn load_generator_gets_answers() {
    let server = echo::start_server("127.0.0.1:0", true);
    let addr = server.local_addr().unwrap().to_string();
    for (ty, use_fiber) in [
        (ConnectionType::Single, true),
        (ConnectionType::Pooled, false),
        (ConnectionType::Short, true),
    ] {
        // Two channels (`echo_client --channel_num=2`): the clients alternate between them.
        let channels: Vec<Channel> = (0..2)
            .map(|_| {
                Channel::new(
                    &addr,
                    ChannelOptions {
                        connection_type: Some(ty),
                        timeout_ms: 10_000,
                        connect_timeout_ms: 2_000,
                        ..ChannelOptions::default()
                    },
                )
                .unwrap()
            })
            .collect();
        let summary = load::run(
            &channels,
            &load::LoadConfig {
                clients: 4,
                use_fiber,
                request_size: 100,
                attachment_size: 1000,
                duration: Some(Duration::from_millis(300)),
            },
        );
        assert!(summary.ok > 0, "{ty}: no call answered");
        assert_eq!(summary.errors, 0, "{ty}");
        assert!(summary.line().contains("p999="), "{}", summary.line());
    }
    server.stop();
    server.join();
}
