//! TEMPORARY stand-in for `spindle_rdma::endpoint` until the endpoint lands: the same API,
//! where no endpoint can be prepared (every handshake falls back to TCP).

use spindle_iobuf::IOBuf;
use spindle_rdma::handshake::Hello;
use spindle_rdma::verbs::{CompletionQueue, WorkCompletion};
use std::fmt;
use std::io;
use std::os::fd::RawFd;
use std::sync::Arc;

/// Why an endpoint operation failed.
#[derive(Debug)]
pub struct EndpointError(pub String);

impl fmt::Display for EndpointError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for EndpointError {}

/// Endpoint settings.
#[derive(Debug, Clone, Default)]
pub struct EndpointConfig;

impl EndpointConfig {
    /// From the flags.
    pub fn from_flags() -> Self {
        EndpointConfig
    }
}

/// The process's device context.
#[derive(Debug)]
pub struct RdmaContext;

impl RdmaContext {
    /// The global context.
    pub fn global() -> Result<&'static Arc<RdmaContext>, EndpointError> {
        static CTX: std::sync::LazyLock<Arc<RdmaContext>> =
            std::sync::LazyLock::new(|| Arc::new(RdmaContext));
        Ok(&CTX)
    }
}

/// An endpoint before connect.
#[derive(Debug)]
pub struct PreparedEndpoint;

impl PreparedEndpoint {
    /// Allocates the endpoint.
    pub fn new(_ctx: &Arc<RdmaContext>, _cfg: &EndpointConfig) -> Result<Self, EndpointError> {
        Err(EndpointError("the RDMA endpoint is not built yet".into()))
    }

    /// Own hello.
    pub fn local_hello(&self) -> Hello {
        Hello::refusal()
    }

    /// Connects.
    pub fn connect(self, _remote: &Hello) -> Result<RdmaEndpoint, EndpointError> {
        Err(EndpointError("the RDMA endpoint is not built yet".into()))
    }
}

/// What one poll did.
#[derive(Debug, Clone, Copy, Default)]
pub struct PollOutcome {
    /// Bytes appended.
    pub bytes_received: usize,
    /// The send window opened.
    pub window_opened: bool,
    /// Completions handled.
    pub completions: usize,
}

/// A connected endpoint.
#[derive(Debug)]
pub struct RdmaEndpoint {
    cq: Arc<dyn CompletionQueue>,
}

impl RdmaEndpoint {
    /// Sends.
    pub fn cut_from_iobufs(&self, _bufs: &mut [&mut IOBuf]) -> io::Result<usize> {
        Err(io::ErrorKind::WouldBlock.into())
    }
    /// Event-mode fd.
    pub fn completion_fd(&self) -> RawFd {
        -1
    }
    /// Event-mode poll.
    pub fn poll(&self, _dst: &mut IOBuf) -> Result<PollOutcome, EndpointError> {
        Ok(PollOutcome::default())
    }
    /// Polling-mode handler.
    pub fn on_completions(&self, _wcs: &[WorkCompletion]) -> Result<PollOutcome, EndpointError> {
        Ok(PollOutcome::default())
    }
    /// Polling-mode reader.
    pub fn take_received(&self, _dst: &mut IOBuf) -> usize {
        0
    }
    /// The CQ.
    pub fn completion_queue(&self) -> &Arc<dyn CompletionQueue> {
        &self.cq
    }
    /// Shuts down.
    pub fn shutdown(&self) {}
    /// Describes.
    pub fn describe(&self) -> String {
        String::new()
    }
}
