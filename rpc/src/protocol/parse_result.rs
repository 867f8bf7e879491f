//! What a protocol's `parse` answers (brpc's `ParseResult` / `ParseError`).
//!
//! Contract of every parser, relied on by the cut loop
//! ([`cut_input_message`](super::cut_input_message)):
//!
//! - `Ok(message)`: one whole message was cut from the front of the buffer.
//! - [`ParseError::TryOthers`]: the bytes are not this protocol's; **nothing was consumed**.
//! - [`ParseError::NotEnoughData`]: the bytes so far could be this protocol's; nothing was
//!   consumed; parse again when more arrive.
//! - [`ParseError::TooBigData`], [`ParseError::NoResource`], [`ParseError::AbsolutelyWrong`]:
//!   the connection must be closed. A parser never allocates for a declared size before the
//!   bytes arrived, and never panics on any input.

use std::fmt;

/// Why `parse` produced no message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ParseError {
    /// Not this protocol; nothing consumed.
    TryOthers,
    /// Possibly this protocol; wait for more bytes. Nothing consumed.
    NotEnoughData,
    /// The message declares a body larger than `max_body_size`: close the connection.
    TooBigData {
        /// The size the header declared.
        declared: u64,
        /// The limit in force (`max_body_size`).
        limit: usize,
    },
    /// A resource (memory, a pool) ran out: close the connection.
    NoResource,
    /// The magic matched but the rest is corrupt: close the connection.
    AbsolutelyWrong(String),
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ParseError::TryOthers => f.write_str("not this protocol"),
            ParseError::NotEnoughData => f.write_str("not enough data"),
            ParseError::TooBigData { declared, limit } => {
                write!(f, "body_size={declared} exceeds max_body_size={limit}")
            }
            ParseError::NoResource => f.write_str("out of resources while parsing"),
            ParseError::AbsolutelyWrong(why) => write!(f, "corrupt message: {why}"),
        }
    }
}

impl std::error::Error for ParseError {}

/// The outcome of one `parse` call: a message or why there is none.
pub type ParseResult<M> = Result<M, ParseError>;
