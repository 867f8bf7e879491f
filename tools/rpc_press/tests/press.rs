//! rpc_press against an in-process echo server, over loopback, with bounded durations.

use rpc_press::{press, MethodSchema, PressError, PressOptions};
use spindle_rpc::errors::RpcError;
use spindle_rpc::proto::example::{EchoRequest, EchoResponse, EchoService, EchoServiceServer};
use spindle_rpc::server::{Server, ServerOptions};
use spindle_rpc::service::CallContext;
use std::path::{Path, PathBuf};
use std::time::Duration;

struct Echo;

impl EchoService for Echo {
    fn echo(&self, _ctx: &mut CallContext, r: EchoRequest) -> Result<EchoResponse, RpcError> {
        Ok(EchoResponse { message: r.message })
    }
}

fn server() -> Server {
    let mut s = Server::new(ServerOptions::default());
    s.add_service(EchoServiceServer(Echo)).unwrap();
    s.start("127.0.0.1:0").unwrap();
    s
}

fn echo_proto() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../rpc/proto/echo.proto")
}

fn options(server: &Server) -> PressOptions {
    PressOptions {
        server: server.local_addr().unwrap().to_string(),
        duration: Duration::from_millis(1500),
        ..PressOptions::default()
    }
}

#[test]
fn press_paced_fibers_and_threads() {
    let server = server();
    let schema = MethodSchema::load(&echo_proto(), &[], "example.EchoService.Echo").unwrap();
    assert_eq!(schema.service, "example.EchoService");
    assert_eq!(schema.method, "Echo");
    let requests = schema
        .encode_requests(r#"{"message": "one"} {"message": "two"}"#)
        .unwrap();
    assert_eq!(requests.len(), 2);
    for use_fiber in [true, false] {
        let mut seconds = Vec::new();
        let summary = press(
            &schema,
            &requests,
            &PressOptions {
                qps: 200,
                clients: 2,
                use_fiber,
                ..options(&server)
            },
            |s| seconds.push(s.clone()),
        )
        .unwrap();
        assert_eq!(summary.failed, 0, "{summary}");
        assert!(summary.succeeded > 0, "{summary}");
        // Pacing never sends more than the target (1.5 s at 200/s, plus the allowed catch-up
        // and one call per client of rounding).
        assert!(summary.succeeded <= 300 + 20 + 2, "{summary}");
        assert_eq!(seconds.len(), 1, "one full second was reported");
        assert_eq!(seconds[0].elapsed_s, 1);
        let first = summary.first_response.clone().unwrap();
        assert!(
            first == r#"{"message":"one"}"# || first == r#"{"message":"two"}"#,
            "{first}"
        );
        assert!(summary.latency.p50 <= summary.latency.p99);
        assert!(summary.latency.p99 <= summary.latency.max);
    }
}

#[test]
fn press_as_fast_as_possible() {
    let server = server();
    let schema = MethodSchema::load(&echo_proto(), &[], "Echo").unwrap();
    let requests = schema.encode_requests(r#"{"message": "x"}"#).unwrap();
    let summary = press(
        &schema,
        &requests,
        &PressOptions {
            qps: 0,
            clients: 4,
            duration: Duration::from_millis(500),
            ..options(&server)
        },
        |_| {},
    )
    .unwrap();
    assert_eq!(summary.failed, 0, "{summary}");
    assert!(summary.succeeded > 0);
}

#[test]
fn bad_method_bad_input_and_bad_options_are_named() {
    let schema = MethodSchema::load(&echo_proto(), &[], "EchoService.Echo").unwrap();
    let e = MethodSchema::load(&echo_proto(), &[], "Nope").unwrap_err();
    assert!(
        matches!(&e, PressError::Method(m) if m.contains("example.EchoService.Echo")),
        "{e}"
    );
    let e = MethodSchema::load(Path::new("/nonexistent/x.proto"), &[], "A").unwrap_err();
    assert!(matches!(e, PressError::Proto(_)), "{e}");
    let e = schema.encode_requests(r#"{"mesage": "typo"}"#).unwrap_err();
    assert!(e.to_string().contains("request #1"), "{e}");
    let e = schema
        .encode_requests(r#"{"message": "ok"} {oops"#)
        .unwrap_err();
    assert!(e.to_string().contains("request #2"), "{e}");
    assert!(schema.encode_requests("  ").is_err());
    let requests = schema.encode_requests(r#"{"message": "x"}"#).unwrap();
    let e = press(
        &schema,
        &requests,
        &PressOptions {
            clients: 0,
            ..PressOptions::default()
        },
        |_| {},
    )
    .unwrap_err();
    assert!(e.to_string().contains("clients"), "{e}");
}

#[test]
fn failures_are_counted_by_error() {
    let server = server();
    // A service the server does not have, from a .proto compiled at run time.
    let dir = std::env::temp_dir().join(format!("rpc_press_test_{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let proto = dir.join("missing.proto");
    std::fs::write(
        &proto,
        "syntax = \"proto3\";\npackage t;\nmessage A { int32 x = 1; }\n\
         service Missing { rpc Call(A) returns (A); }\n",
    )
    .unwrap();
    let schema = MethodSchema::load(&proto, &[], "t.Missing.Call").unwrap();
    let requests = schema.encode_requests(r#"{"x": 7}"#).unwrap();
    let summary = press(
        &schema,
        &requests,
        &PressOptions {
            qps: 100,
            duration: Duration::from_millis(300),
            ..options(&server)
        },
        |_| {},
    )
    .unwrap();
    assert_eq!(summary.succeeded, 0);
    assert!(summary.failed > 0);
    let (name, (count, text)) = summary.errors.iter().next().unwrap();
    assert!(name.starts_with("ENOSERVICE"), "{name}: {text}");
    assert_eq!(*count, summary.failed);
    std::fs::remove_dir_all(&dir).unwrap();
}
