//! Echo over RDMA between two processes on the software fabric: the test binary runs itself
//! again as the server (the `server_process` test, enabled by an environment variable), the
//! client in this process connects to it and its calls go over RDMA.

mod common;
mod rdma_common;

use common::{echo, echo_server, opts, stub};
use rdma_common::{setup_small_pools, transports_of};
use spindle_rpc::channel::{Channel, ChannelOptions};
use spindle_rpc::proto::example::EchoServiceStub;
use spindle_rpc::server::ServerOptions;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

const CHILD_ENV: &str = "SPINDLE_RDMA_TEST_SERVER_CHILD";

/// The server process: prints its port, serves until its stdin closes (the parent is done or
/// gone), at most 60 s. Does nothing unless run by `echo_across_processes`.
#[test]
fn server_process() {
    if std::env::var_os(CHILD_ENV).is_none() {
        return;
    }
    setup_small_pools();
    let server = echo_server(ServerOptions {
        rdma: true,
        ..Default::default()
    });
    println!("PORT {}", server.local_addr().unwrap().port());
    let done = std::thread::spawn(|| {
        let mut line = String::new();
        let _ = std::io::stdin().read_line(&mut line);
    });
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while !done.is_finished() && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn echo_across_processes() {
    if std::env::var_os(CHILD_ENV).is_some() {
        return;
    }
    setup_small_pools();
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "server_process",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_ENV, "1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut port = None;
    let mut line = String::new();
    while port.is_none() {
        line.clear();
        assert!(
            out.read_line(&mut line).unwrap() > 0,
            "the server process exited"
        );
        // libtest may print "test server_process ... " before it on the same line.
        port = line
            .split("PORT ")
            .nth(1)
            .map(|p| p.trim().parse::<u16>().unwrap());
    }
    let port = port.unwrap();
    let ch = Channel::new(
        &format!("127.0.0.1:{port}"),
        ChannelOptions {
            use_rdma: true,
            ..opts()
        },
    )
    .unwrap();
    let s = EchoServiceStub::new(ch);
    for i in 0..100 {
        assert_eq!(echo(&s, &format!("x{i}")).unwrap(), format!("x{i}"));
    }
    let t = transports_of(port);
    assert_eq!(t.len(), 1, "{t:?}");
    assert!(t[0].starts_with("rdma"), "{t:?}");
    drop(s);
    drop(child.stdin.take());
    let status = child.wait().unwrap();
    assert!(status.success(), "{status}");
    // The same process can also serve itself over RDMA meanwhile (one fabric device each).
    let server = echo_server(ServerOptions {
        rdma: true,
        ..Default::default()
    });
    let s = stub(
        &server,
        ChannelOptions {
            use_rdma: true,
            ..opts()
        },
    );
    assert_eq!(echo(&s, "local").unwrap(), "local");
}
