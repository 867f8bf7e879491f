//! rpc_press: load any protobuf service given its `.proto`, a method and JSON requests.
//!
//! ```sh
//! cargo run --release -p spindle-rpc-press -- --proto=rpc/proto/echo.proto \
//!     --method=example.EchoService.Echo --input='{"message":"hi"}' \
//!     --server=127.0.0.1:8000 --qps=0 --thread_num=8 --duration_s=10
//! ```
//!
//! Prints QPS and latency percentiles every second and a summary at the end; exits 1 when
//! every call failed, 2 on a usage error. Guide: `docs/rpc_press.md`.

use rpc_press::{press, MethodSchema, PressOptions};
use spindle_runtime::define_flag;
use std::path::{Path, PathBuf};
use std::time::Duration;

define_flag!(static PROTO: String = "", "the .proto file declaring the service (required)");
define_flag!(static INC: String = "", "import paths for the .proto, separated by ':'");
define_flag!(static METHOD: String = "",
             "the method: package.Service.Method, Service.Method or Method (required)");
define_flag!(static SERVER: String = "127.0.0.1:8000", "ip:port or host:port of the server");
define_flag!(static INPUT: String = "",
             "JSON request(s), or a file holding them (several objects one after another)");
define_flag!(static QPS: u64 = 100, "target calls per second over all clients; 0 = as fast as possible");
define_flag!(static DURATION_S: u64 = 10, "seconds of load; 0 = until interrupted");
define_flag!(static THREAD_NUM: usize = 1, "concurrent clients (each has one call in flight)");
define_flag!(static USE_FIBER: bool = true, "clients are fibers (true) or OS threads (false)");
define_flag!(static PROTOCOL: String = "baidu_std", "client protocol");
define_flag!(static CONNECTION_TYPE: Choice = "default", "connection type",
             choices = ["default", "single", "pooled", "short"]);
define_flag!(static TIMEOUT_MS: i64 = 1000, "deadline of each call in ms");
define_flag!(static MAX_RETRY: u32 = 0, "retries of a call on connection errors");

fn usage(msg: &str) -> ! {
    eprintln!("rpc_press: {msg}");
    eprintln!(
        "usage: rpc_press --proto=FILE --method=Service.Method --input=JSON|FILE \
         [--server=ip:port] [--qps=N] [--thread_num=N] [--duration_s=N] \
         [--connection_type=single|pooled|short] [--timeout_ms=N]"
    );
    std::process::exit(2);
}

fn main() {
    if let Err(e) = spindle_runtime::flags::init(std::env::args()) {
        usage(&e.to_string());
    }
    if PROTO.get().is_empty() {
        usage("--proto is required");
    }
    if METHOD.get().is_empty() {
        usage("--method is required");
    }
    if INPUT.get().is_empty() {
        usage("--input is required (JSON text or a file)");
    }
    let includes: Vec<PathBuf> = INC
        .get()
        .split(':')
        .filter(|s| !s.is_empty())
        .map(PathBuf::from)
        .collect();
    let schema = MethodSchema::load(Path::new(&PROTO.get()), &includes, &METHOD.get())
        .unwrap_or_else(|e| usage(&e.to_string()));
    let input = INPUT.get();
    let text = if Path::new(&input).is_file() {
        std::fs::read_to_string(&input)
            .unwrap_or_else(|e| usage(&format!("cannot read --input file {input}: {e}")))
    } else {
        input
    };
    let requests = schema
        .encode_requests(&text)
        .unwrap_or_else(|e| usage(&e.to_string()));
    let connection_type = match CONNECTION_TYPE.get() {
        "default" => None,
        other => Some(other.parse().unwrap_or_else(|e| usage(&format!("{e}")))),
    };
    let options = PressOptions {
        server: SERVER.get(),
        protocol: PROTOCOL.get(),
        connection_type,
        timeout_ms: TIMEOUT_MS.get(),
        max_retry: MAX_RETRY.get(),
        qps: QPS.get(),
        clients: THREAD_NUM.get(),
        use_fiber: USE_FIBER.get(),
        duration: match DURATION_S.get() {
            0 => Duration::MAX,
            s => Duration::from_secs(s),
        },
        ..PressOptions::default()
    };
    println!(
        "rpc_press: {}.{} on {} with {} request(s), {} client(s), qps={}",
        schema.service,
        schema.method,
        options.server,
        requests.len(),
        options.clients,
        if options.qps == 0 {
            "max".to_owned()
        } else {
            options.qps.to_string()
        }
    );
    let summary = press(&schema, &requests, &options, |s| println!("{s}"))
        .unwrap_or_else(|e| usage(&e.to_string()));
    if let Some(r) = &summary.first_response {
        println!("first response: {r}");
    }
    print!("{summary}");
    if summary.succeeded == 0 && summary.failed > 0 {
        std::process::exit(1);
    }
}
