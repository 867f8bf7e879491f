//! Builtin pages end to end, over loopback with raw HTTP (`TcpStream`): every page answers with
//! the expected content, `/brpc_metrics` is valid Prometheus text, `/flags` changes reloadable
//! flags only, `internal_port` keeps the pages off the public port, and one port serves
//! baidu_std and the pages at once. Method statistics are recorded on both sides.

mod common;
mod http_common;

use common::{echo, echo_server, opts, stub};
use http_common::{Conn, Raw};
use spindle_metrics::Registry;
use spindle_rpc::server::{Server, ServerOptions};
use spindle_runtime::define_flag;
use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;

define_flag!(
    static BUILTIN_TEST_RELOADABLE: u32 = 1,
    "a reloadable flag of the builtin-pages test",
    reloadable = true
);
define_flag!(
    static BUILTIN_TEST_FIXED: u32 = 1,
    "a flag of the builtin-pages test that is not reloadable"
);

/// `GET path` on a new connection, with extra header lines.
fn get_with(addr: SocketAddr, path: &str, headers: &str) -> Raw {
    let mut c = Conn::new(addr);
    c.send(format!("GET {path} HTTP/1.1\r\nHost: t\r\n{headers}\r\n").as_bytes());
    c.response()
}

fn get(addr: SocketAddr, path: &str) -> Raw {
    get_with(addr, path, "")
}

/// The number after `key: ` on the first line of `text` (trimmed) that starts with it.
fn field(text: &str, key: &str) -> Option<u64> {
    text.lines()
        .find_map(|l| l.trim().strip_prefix(&format!("{key}: ")))
        .and_then(|v| v.trim().parse().ok())
}

#[test]
fn every_page_answers_with_its_content() {
    let server = echo_server(ServerOptions::default());
    let addr = server.local_addr().unwrap();
    let port = addr.port();
    // baidu_std calls on the same port the pages are served on.
    let s = stub(&server, opts());
    for i in 0..5 {
        assert_eq!(echo(&s, &format!("m{i}")).unwrap(), format!("m{i}"));
    }
    assert!(echo(&s, "fail").is_err());

    let index = get(addr, "/");
    assert_eq!(index.status, 200);
    for p in [
        "/status",
        "/vars",
        "/flags",
        "/connections",
        "/fibers",
        "/health",
        "/version",
        "/protobufs",
        "/list",
        "/brpc_metrics",
    ] {
        assert!(
            index.text().lines().any(|l| l.starts_with(p)),
            "index lacks {p}"
        );
    }

    let status = get(addr, "/status");
    assert_eq!(status.status, 200);
    let t = status.text();
    assert!(t.contains("[example.EchoService]"), "{t}");
    assert!(
        t.contains("Echo(example.EchoRequest) returns (example.EchoResponse)"),
        "{t}"
    );
    assert_eq!(field(&t, "count"), Some(5), "{t}");
    assert_eq!(field(&t, "error"), Some(1), "{t}");
    assert!(field(&t, "latency_99").is_some(), "{t}");
    assert!(t.contains("max_concurrency: unlimited"), "{t}");
    assert!(t.contains(&format!("listen: {addr}")), "{t}");

    let html = get_with(addr, "/status", "Accept: text/html,*/*\r\n");
    assert_eq!(html.status, 200);
    assert!(html
        .header("content-type")
        .unwrap()
        .starts_with("text/html"));
    assert!(html.text().contains("<html>") && html.text().contains("EchoService"));

    let prefix = format!("rpc_server_{port}_example_echo_service_echo");
    let vars = get(addr, "/vars").text();
    assert!(vars.contains(&format!("{prefix}_count : 5\n")), "{vars}");
    assert!(vars.contains(&format!("{prefix}_error : 1\n")), "{vars}");
    assert!(vars.contains("process_memory_resident : "), "{vars}");

    let lsit = get(addr, "/list").text();
    assert!(lsit.contains("example.EchoService\n  Echo(example.EchoRequest)"));

    let health = get(addr, "/health");
    assert_eq!((health.status, health.text().as_str()), (200, "OK\n"));
    let mut c = Conn::new(addr);
    c.send(b"HEAD /health HTTP/1.1\r\nHost: t\r\n\r\n");
    let head = c.response_to(true);
    assert_eq!((head.status, head.body.len()), (200, 0));
    c.send(b"POST /status HTTP/1.1\r\nHost: t\r\nContent-Length: 0\r\n\r\n");
    assert_eq!(c.response().status, 405);
    let version = get(addr, "/version").text();
    assert!(version.starts_with("spindle-rpc "), "{version}");

    let fibers = get(addr, "/fibers").text();
    let workers = fibers
        .lines()
        .find_map(|l| l.strip_prefix("fiber_workers : "))
        .and_then(|v| v.parse::<u64>().ok());
    assert!(workers.is_some_and(|w| w > 0), "{fibers}");
    assert!(fibers.contains("dispatcher_worker_events : "), "{fibers}");

    let pbs = get(addr, "/protobufs").text();
    assert!(pbs.contains("/protobufs/example.EchoService"), "{pbs}");
    assert!(pbs.contains("/protobufs/example.EchoRequest"), "{pbs}");
    let svc = get(addr, "/protobufs/example.EchoService").text();
    assert!(
        svc.contains("rpc Echo(example.EchoRequest) returns (example.EchoResponse);"),
        "{svc}"
    );
    let msg = get(addr, "/protobufs/example.EchoRequest");
    assert_eq!(msg.status, 200);
    assert!(
        msg.text().contains("required string message = 1;"),
        "{}",
        msg.text()
    );
    assert_eq!(get(addr, "/protobufs/no.Such").status, 404);
}

#[test]
fn vars_filters_with_brpc_wildcards() {
    let server = echo_server(ServerOptions::default());
    let addr = server.local_addr().unwrap();
    let port = addr.port();
    let s = stub(&server, opts());
    echo(&s, "x").unwrap();
    let prefix = format!("rpc_server_{port}_example_echo_service_echo");

    let by_path = get(addr, &format!("/vars/rpc_server_{port}_*echo_count")).text();
    let lines: Vec<&str> = by_path.lines().collect();
    assert_eq!(lines, vec![format!("{prefix}_count : 1")], "{by_path}");

    let by_query = get(
        addr,
        &format!("/vars?filter={prefix}_erro$,{prefix}_concurrency"),
    )
    .text();
    let names: HashSet<&str> = by_query
        .lines()
        .filter_map(|l| l.split(" : ").next())
        .collect();
    let want: HashSet<String> = [format!("{prefix}_error"), format!("{prefix}_concurrency")].into();
    assert_eq!(
        names,
        want.iter().map(String::as_str).collect::<HashSet<_>>()
    );

    let none = get(addr, "/vars/no_such_variable_*");
    assert_eq!(none.status, 404);
    assert!(none.text().contains("no_such_variable_*"));
}

#[test]
fn flags_lists_and_changes_reloadable_flags_only() {
    let server = echo_server(ServerOptions::default());
    let addr = server.local_addr().unwrap();

    let all = get(addr, "/flags").text();
    let row = all
        .lines()
        .find(|l| l.starts_with("builtin_test_reloadable "))
        .unwrap_or_else(|| panic!("{all}"));
    let cells: Vec<&str> = row.split('|').map(str::trim).collect();
    assert_eq!(&cells[1..4], ["1", "1", "yes"], "{row}");
    assert!(all.contains("event_dispatcher_num"), "{all}");

    let one = get(addr, "/flags/builtin_test_*").text();
    assert_eq!(one.lines().count(), 3, "header and two flags: {one}");

    let set = get(addr, "/flags/builtin_test_reloadable?setvalue=7");
    assert_eq!(set.status, 200, "{}", set.text());
    assert_eq!(BUILTIN_TEST_RELOADABLE.get(), 7);

    let refused = get(addr, "/flags/builtin_test_fixed?setvalue=7");
    assert_eq!(refused.status, 403);
    assert!(
        refused.text().contains("not reloadable"),
        "{}",
        refused.text()
    );
    assert_eq!(BUILTIN_TEST_FIXED.get(), 1);

    let bad = get(addr, "/flags/builtin_test_reloadable?setvalue=minus");
    assert_eq!(bad.status, 400);
    assert!(bad.text().contains("builtin_test_reloadable"));
    assert_eq!(get(addr, "/flags/no_such_flag?setvalue=1").status, 404);
    assert_eq!(get(addr, "/flags/builtin_*?setvalue=1").status, 400);
}

#[test]
fn connections_show_this_connection_and_the_channel() {
    let server = echo_server(ServerOptions::default());
    let addr = server.local_addr().unwrap();
    let s = stub(&server, opts());
    echo(&s, "hello").unwrap();

    let mut c = Conn::new(addr);
    let me = c.stream.local_addr().unwrap();
    c.send(b"GET /health HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!(c.response().status, 200);
    c.send(b"GET /connections HTTP/1.1\r\nHost: t\r\n\r\n");
    let t = c.response().text();
    let rows: Vec<Vec<&str>> = t
        .lines()
        .map(|l| l.split('|').map(str::trim).collect())
        .collect();
    // The server's side of this connection. (Only server rows: another test's channel may
    // still list a server that listened on the port the OS has since given to `me`.)
    let mine = rows
        .iter()
        .find(|r| r.get(1) == Some(&"server") && r.get(3) == Some(&me.to_string().as_str()))
        .unwrap_or_else(|| panic!("no server row for {me}: {t}"));
    assert_eq!(mine[2], "http", "{t}");
    let bytes_in: u64 = mine[5].parse().unwrap();
    let msgs_in: u64 = mine[7].parse().unwrap();
    assert!(bytes_in > 0 && msgs_in >= 1, "{t}");
    // The stub's connection, seen from the server, speaks baidu_std.
    assert!(
        rows.iter()
            .any(|r| r.get(1) == Some(&"server") && r.get(2) == Some(&"baidu_std")),
        "{t}"
    );
    // The listener, and the channel's own socket among the others.
    assert!(rows
        .iter()
        .any(|r| r.get(1) == Some(&"listener") && r.get(4) == Some(&addr.to_string().as_str())));
    assert!(rows
        .iter()
        .any(|r| r.get(1) == Some(&"other") && r.get(3) == Some(&addr.to_string().as_str())));
}

#[test]
fn internal_port_keeps_pages_off_the_public_port() {
    let server = echo_server(ServerOptions {
        internal_port: Some(0),
        version: Some("builtin-test 9.9".into()),
        ..ServerOptions::default()
    });
    let public = server.local_addr().unwrap();
    let internal = server.internal_addr().unwrap();
    assert_ne!(public.port(), internal.port());

    for p in ["/status", "/vars", "/flags", "/brpc_metrics", "/"] {
        let r = get(public, p);
        assert_eq!(r.status, 403, "{p} on the public port");
        assert!(r
            .text()
            .contains(&format!("internal_port={}", internal.port())));
        assert_eq!(get(internal, p).status, 200, "{p} on the internal port");
    }
    assert_eq!(get(internal, "/version").text(), "builtin-test 9.9\n");
    // RPCs work on the public port.
    let s = stub(&server, opts());
    assert_eq!(echo(&s, "pub").unwrap(), "pub");
}

#[test]
fn disabled_builtin_pages_and_user_handlers_win() {
    let server = echo_server(ServerOptions {
        disable_builtin_services: true,
        ..ServerOptions::default()
    });
    let addr = server.local_addr().unwrap();
    assert_eq!(get(addr, "/status").status, 404);
    assert_eq!(get(addr, "/vars").status, 404);

    let mut server = Server::new(ServerOptions::default());
    server
        .add_http_handler(
            "GET",
            "/health",
            |_: &spindle_rpc::policy::http::HttpRequest| {
                spindle_rpc::policy::http::HttpResponse::text(200, "mine\n")
            },
        )
        .unwrap();
    server.start("127.0.0.1:0").unwrap();
    let addr = server.local_addr().unwrap();
    assert_eq!(get(addr, "/health").text(), "mine\n");
    assert_eq!(get(addr, "/status").status, 200);
}

#[test]
fn channel_methods_record_latency_and_errors() {
    let server = echo_server(ServerOptions::default());
    let s = stub(&server, opts());
    let reg = Registry::global();
    let count = |n: &str| {
        reg.value(n)
            .and_then(|v| v.as_f64())
            .map_or(0, |v| v as u64)
    };
    let before = count("rpc_client_example_echo_service_echo_count");
    let errors = count("rpc_client_example_echo_service_echo_error");
    for _ in 0..3 {
        echo(&s, "c").unwrap();
    }
    assert!(echo(&s, "fail").is_err());
    // Other tests call the same method concurrently: at least ours were counted.
    assert!(count("rpc_client_example_echo_service_echo_count") >= before + 3);
    assert!(count("rpc_client_example_echo_service_echo_error") > errors);
    assert!(reg
        .get("rpc_client_example_echo_service_echo_latency_99")
        .is_some());
}

#[test]
fn brpc_metrics_is_valid_prometheus_text() {
    let server = echo_server(ServerOptions::default());
    let addr = server.local_addr().unwrap();
    let s = stub(&server, opts());
    echo(&s, "p").unwrap();
    let r = get(addr, "/brpc_metrics");
    assert_eq!(r.status, 200);
    assert!(r
        .header("content-type")
        .unwrap()
        .starts_with("text/plain; version=0.0.4"));
    let families = check_exposition(&r.text()).unwrap_or_else(|e| panic!("{e}\n{}", r.text()));
    let family = format!("rpc_server_{}_example_echo_service_echo", addr.port());
    assert_eq!(
        families.get(&family).map(String::as_str),
        Some("summary"),
        "{family}"
    );
    assert_eq!(
        families
            .get(&format!("{family}_concurrency"))
            .map(String::as_str),
        Some("gauge")
    );
}

/// Checks the Prometheus text format 0.0.4 strictly enough to catch what scrapers reject:
/// metric and label names, label value quoting, numeric values, one `# TYPE` per family
/// before its samples, samples belonging to a declared family. Returns family → type.
fn check_exposition(text: &str) -> Result<HashMap<String, String>, String> {
    let mut families: HashMap<String, String> = HashMap::new();
    let mut sampled: HashSet<String> = HashSet::new();
    let valid_name = |n: &str, colon: bool| {
        let mut chars = n.chars();
        chars
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || (colon && c == ':'))
            && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || (colon && c == ':'))
    };
    for (i, line) in text.lines().enumerate() {
        let at = |why: &str| format!("line {}: {why}: {line:?}", i + 1);
        if line.is_empty() {
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, ty) = rest
                .split_once(' ')
                .ok_or_else(|| at("TYPE without a type"))?;
            if !valid_name(name, true) {
                return Err(at("bad family name"));
            }
            if !["counter", "gauge", "summary", "histogram", "untyped"].contains(&ty) {
                return Err(at("unknown type"));
            }
            if families.insert(name.to_owned(), ty.to_owned()).is_some() {
                return Err(at("second TYPE for a family"));
            }
            if sampled.contains(name) {
                return Err(at("TYPE after the family's samples"));
            }
            continue;
        }
        if line.starts_with('#') {
            continue;
        }
        let (series, value) = line.rsplit_once(' ').ok_or_else(|| at("no value"))?;
        if !matches!(value, "NaN" | "+Inf" | "-Inf") && value.parse::<f64>().is_err() {
            return Err(at("value is not a number"));
        }
        let (name, labels) = match series.split_once('{') {
            Some((n, l)) => (
                n,
                Some(l.strip_suffix('}').ok_or_else(|| at("unclosed labels"))?),
            ),
            None => (series, None),
        };
        if !valid_name(name, true) {
            return Err(at("bad metric name"));
        }
        for pair in labels.into_iter().flat_map(|l| l.split(',')) {
            let (k, v) = pair.split_once('=').ok_or_else(|| at("label without ="))?;
            if !valid_name(k, false) {
                return Err(at("bad label name"));
            }
            let inner = v
                .strip_prefix('"')
                .and_then(|v| v.strip_suffix('"'))
                .ok_or_else(|| at("unquoted label value"))?;
            if inner.contains('"') && !inner.contains("\\\"") {
                return Err(at("bad quote in label value"));
            }
        }
        let family = [
            name,
            name.trim_end_matches("_sum"),
            name.trim_end_matches("_count"),
        ]
        .into_iter()
        .find(|f| families.contains_key(*f))
        .ok_or_else(|| at("sample of an undeclared family"))?;
        let ty = &families[family];
        if family != name && ty != "summary" && ty != "histogram" {
            return Err(at("_sum/_count sample of a family that has none"));
        }
        sampled.insert(family.to_owned());
    }
    Ok(families)
}

#[test]
fn one_port_serves_baidu_std_calls_and_pages_at_once() {
    let server = echo_server(ServerOptions::default());
    let addr = server.local_addr().unwrap();
    let s = stub(&server, opts());
    let calls = std::thread::spawn(move || {
        for i in 0..200 {
            assert_eq!(echo(&s, &format!("c{i}")).unwrap(), format!("c{i}"));
        }
    });
    // Pages on one keep-alive connection while the calls run.
    let mut c = Conn::new(addr);
    for _ in 0..20 {
        c.send(b"GET /status HTTP/1.1\r\nHost: t\r\n\r\n");
        let r = c.response();
        assert_eq!(r.status, 200);
        assert!(r.text().contains("[example.EchoService]"));
    }
    calls.join().unwrap();
    // A protobuf call over HTTP is the same method, counted with the others.
    let body = br#"{"message":"json"}"#;
    c.send(
        format!(
            "POST /example.EchoService/Echo HTTP/1.1\r\nHost: t\r\nContent-Type: \
             application/json\r\nContent-Length: {}\r\n\r\n",
            body.len()
        )
        .as_bytes(),
    );
    c.send(body);
    assert_eq!(c.response().status, 200);
    c.send(b"GET /status HTTP/1.1\r\nHost: t\r\n\r\n");
    let t = c.response().text();
    assert_eq!(field(&t, "count"), Some(201), "{t}");
    assert_eq!(field(&t, "error"), Some(0), "{t}");
}

#[test]
fn start_fails_when_internal_port_is_taken() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let mut server = Server::new(ServerOptions {
        internal_port: Some(port),
        ..ServerOptions::default()
    });
    let e = server.start("127.0.0.1:0").unwrap_err();
    assert!(
        e.text.contains(&format!("internal_port 127.0.0.1:{port}")),
        "{e}"
    );
    assert!(!server.is_running());
}
