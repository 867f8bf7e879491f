//! Errors of verbs calls (not of work requests: those fail through [`WcStatus`](super::WcStatus)).

use std::fmt;
use std::io;

/// Why a verbs call failed.
#[derive(Debug)]
pub enum VerbsError {
    /// No device matches (`rdma_device`), or none is present.
    NoDevice(String),
    /// An argument is out of range; the text names it.
    InvalidArgument(String),
    /// A queue is full (`post_send` / `post_recv` beyond the queue depth).
    QueueFull {
        /// `"send"` or `"receive"`.
        queue: &'static str,
        /// The depth it was created with.
        depth: usize,
    },
    /// The queue pair is not in a state that accepts the call; the text says which.
    InvalidState(String),
    /// A local key names no registered region, or the range is outside it.
    LocalProtection(String),
    /// The operating system or the driver refused.
    Io(io::Error),
}

impl fmt::Display for VerbsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            VerbsError::NoDevice(why) => write!(f, "no RDMA device: {why}"),
            VerbsError::InvalidArgument(why) => write!(f, "invalid argument: {why}"),
            VerbsError::QueueFull { queue, depth } => {
                write!(f, "{queue} queue full ({depth} work requests outstanding)")
            }
            VerbsError::InvalidState(why) => write!(f, "invalid queue pair state: {why}"),
            VerbsError::LocalProtection(why) => write!(f, "local protection error: {why}"),
            VerbsError::Io(e) => write!(f, "verbs I/O error: {e}"),
        }
    }
}

impl std::error::Error for VerbsError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            VerbsError::Io(e) => Some(e),
            _ => None,
        }
    }
}

impl From<io::Error> for VerbsError {
    fn from(e: io::Error) -> Self {
        VerbsError::Io(e)
    }
}
