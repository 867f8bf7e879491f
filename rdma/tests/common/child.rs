//! Tests that run a second process: the test binary re-executes itself running one test
//! (which does nothing unless its environment says it is the child), and the handshake's hello
//! read over TCP.

use spindle_rdma::handshake::{self, Hello, HelloVersion};
use std::io::Read;
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Starts this test binary again, running only `test` with `env` set; stdout is piped.
pub fn spawn_child(test: &str, env: &[(&str, &str)]) -> Child {
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.args(["--exact", test, "--nocapture", "--test-threads=1"])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.spawn().unwrap()
}

/// In the child (`port_env` set): connects to the parent's loopback port, with reads timing
/// out after `wait`, and returns the hello version `version_env` asks for ("3", else v2).
/// `None` in the parent.
pub fn child_connect(
    port_env: &str,
    version_env: &str,
    wait: Duration,
) -> Option<(TcpStream, HelloVersion)> {
    let port = std::env::var(port_env).ok()?;
    let version = match std::env::var(version_env).as_deref() {
        Ok("3") => HelloVersion::V3,
        _ => HelloVersion::V2,
    };
    let sock = TcpStream::connect(("127.0.0.1", port.parse::<u16>().unwrap())).unwrap();
    sock.set_read_timeout(Some(wait)).unwrap();
    Some((sock, version))
}

/// Waits at most `wait` for the child to exit successfully (kills it otherwise); its stdout.
pub fn wait_child(mut child: Child, wait: Duration) -> String {
    let deadline = Instant::now() + wait;
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("child process did not exit");
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    let mut out = String::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut out)
        .unwrap();
    assert!(status.success(), "child failed: {out}");
    out
}

/// Reads one negotiable hello from `sock` (of version `expect`, or either when `None`); it must
/// be all the socket carried so far.
pub fn read_hello(sock: &mut TcpStream, expect: Option<HelloVersion>) -> Hello {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 256];
    loop {
        let parsed = match expect {
            Some(v) => handshake::parse_hello_expect(&buf, v),
            None => handshake::parse_hello(&buf),
        };
        match parsed {
            Ok(d) => {
                assert!(d.negotiable);
                assert_eq!(d.consumed, buf.len());
                return d.hello;
            }
            Err(handshake::HelloError::NotEnoughData) => {
                let n = sock.read(&mut chunk).unwrap();
                assert!(n > 0, "EOF during the handshake");
                buf.extend_from_slice(&chunk[..n]);
            }
            Err(e) => panic!("bad hello: {e}"),
        }
    }
}
