//! Why an endpoint could not be built or stopped working.

use super::window::WindowError;
use crate::verbs::{VerbsError, WcOpcode, WcStatus};
use std::fmt;
use std::io;
use std::sync::Arc;

/// Why an endpoint could not be built, connected, or keep running. Every variant but
/// [`EndpointError::BadHello`] and [`EndpointError::Config`] after connecting means the
/// connection is broken.
#[derive(Debug, Clone)]
pub enum EndpointError {
    /// No RDMA backend could be opened (the caller falls back to TCP).
    NoBackend(String),
    /// A setting is out of range; the text names it.
    Config(String),
    /// The peer's hello cannot be accepted; the text says which field.
    BadHello(String),
    /// A verbs call failed.
    Verbs(Arc<VerbsError>),
    /// The flow-control accounting was violated (by the peer or by completions).
    Window(WindowError),
    /// A work request completed with an error: the queue pair is in the error state.
    Completion {
        /// How it ended.
        status: WcStatus,
        /// What it was.
        opcode: WcOpcode,
    },
    /// The peer broke the protocol in a way the window does not catch; the text says how.
    Protocol(String),
    /// Registered memory is exhausted (`rdma_memory_pool_*` flags).
    OutOfMemory(String),
    /// [`RdmaEndpoint::shutdown`](super::RdmaEndpoint::shutdown) was called.
    Shutdown,
}

impl fmt::Display for EndpointError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EndpointError::NoBackend(why) => write!(f, "no RDMA backend: {why}"),
            EndpointError::Config(why) => write!(f, "bad RDMA endpoint setting: {why}"),
            EndpointError::BadHello(why) => write!(f, "peer's RDMA hello refused: {why}"),
            EndpointError::Verbs(e) => write!(f, "RDMA verbs call failed: {e}"),
            EndpointError::Window(e) => write!(f, "RDMA flow control violated: {e}"),
            EndpointError::Completion { status, opcode } => {
                write!(f, "RDMA {opcode:?} work request failed with {status:?}")
            }
            EndpointError::Protocol(why) => write!(f, "RDMA protocol error: {why}"),
            EndpointError::OutOfMemory(why) => write!(f, "RDMA registered memory exhausted: {why}"),
            EndpointError::Shutdown => f.write_str("RDMA endpoint shut down"),
        }
    }
}

impl std::error::Error for EndpointError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            EndpointError::Verbs(e) => Some(e.as_ref()),
            EndpointError::Window(e) => Some(e),
            _ => None,
        }
    }
}

impl From<VerbsError> for EndpointError {
    fn from(e: VerbsError) -> Self {
        EndpointError::Verbs(Arc::new(e))
    }
}

impl From<WindowError> for EndpointError {
    fn from(e: WindowError) -> Self {
        EndpointError::Window(e)
    }
}

impl From<EndpointError> for io::Error {
    /// [`EndpointError::Shutdown`] and failed completions are `BrokenPipe`; the rest `Other`.
    fn from(e: EndpointError) -> io::Error {
        let kind = match e {
            EndpointError::Shutdown | EndpointError::Completion { .. } => io::ErrorKind::BrokenPipe,
            _ => io::ErrorKind::Other,
        };
        io::Error::new(kind, e)
    }
}
