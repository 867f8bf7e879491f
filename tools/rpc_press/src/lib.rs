//! rpc_press (brpc's `tools/rpc_press`): loads any protobuf service with requests written in
//! JSON, given only the service's `.proto` file — no generated code.
//!
//! - [`MethodSchema`]: compiles the `.proto` at run time (protox; no protoc needed), finds the
//!   method, turns JSON requests into encoded bodies and responses back into JSON.
//! - [`press`]: client fibers (or threads) calling the method over a
//!   [`Channel`](spindle_rpc::channel::Channel) at a target QPS (0 = as fast as possible), with
//!   a [`Second`] report every second and a [`Summary`] at the end.
//!
//! The command-line front end is `src/main.rs`; `docs/rpc_press.md` is the guide.
//!
//! ```no_run
//! use rpc_press::{press, MethodSchema, PressOptions};
//! use std::path::Path;
//! use std::time::Duration;
//!
//! let schema = MethodSchema::load(Path::new("rpc/proto/echo.proto"), &[], "EchoService.Echo")?;
//! let requests = schema.encode_requests(r#"{"message": "hello"}"#)?;
//! let options = PressOptions {
//!     server: "127.0.0.1:8000".to_owned(),
//!     qps: 1000,
//!     duration: Duration::from_secs(5),
//!     ..PressOptions::default()
//! };
//! let summary = press(&schema, &requests, &options, |s| println!("{s}"))?;
//! println!("{summary}");
//! # Ok::<(), rpc_press::PressError>(())
//! ```

#![warn(missing_docs)]

mod load;
mod report;
mod schema;

pub use load::{press, PressOptions};
pub use report::{Second, Summary};
pub use schema::MethodSchema;

use std::fmt;

/// Why rpc_press cannot run, or stopped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PressError {
    /// The `.proto` does not compile.
    Proto(String),
    /// The method is not in the `.proto`, or ambiguous.
    Method(String),
    /// A request (or a response) does not match its message type.
    Input(String),
    /// The channel cannot be created (bad address, unsupported protocol or connection type).
    Channel(String),
    /// An option is out of range; the message names it.
    Option(String),
}

impl fmt::Display for PressError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PressError::Proto(m) => write!(f, "proto: {m}"),
            PressError::Method(m) => write!(f, "method: {m}"),
            PressError::Input(m) => write!(f, "input: {m}"),
            PressError::Channel(m) => write!(f, "channel: {m}"),
            PressError::Option(m) => write!(f, "option: {m}"),
        }
    }
}

impl std::error::Error for PressError {}
