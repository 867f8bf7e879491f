//! brpc's example echo server (`example/echo_c++/server.cpp`): answers `EchoService.Echo`
//! with the request's message and echoes the attachment back.
//!
//! Every flag of the process applies, notably the fiber workers (`--fiber_concurrency`, one
//! per core by default) and the epoll loops (`--event_dispatcher_num`, default 1).
//!
//! ```sh
//! cargo run --release -p spindle-rpc --example echo_server -- --port=8000 \
//!     --fiber_concurrency=4 --event_dispatcher_num=2
//! ```

#[path = "common/echo.rs"]
mod echo;

use spindle_runtime::define_flag;

define_flag!(static PORT: u32 = 8000, "TCP port of this server",
             validator = |v| if *v > 65535 { Err("must be at most 65535".into()) } else { Ok(()) });
define_flag!(static ECHO_ATTACHMENT: bool = true, "echo the attachment back");

fn main() {
    echo::init();
    let addr = format!("0.0.0.0:{}", PORT.get());
    let server = echo::start_server(&addr, ECHO_ATTACHMENT.get());
    eprintln!(
        "echo server listening on {addr} with {}; Ctrl-C to stop",
        echo::threads_line()
    );
    server.run_until_asked_to_quit();
}
