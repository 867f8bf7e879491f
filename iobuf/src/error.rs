//! Typed errors of the crate.
//!
//! Only configuration can fail with these errors: byte-level operations never fail on bad lengths
//! (they saturate and report how much they did), and fd operations return `std::io::Result` with
//! the meaning documented on each function.

use std::fmt;

/// Why installing a block allocator with [`crate::set_block_allocator`] failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AllocatorError {
    /// A block allocator is already fixed for this process: either one was installed before, or a
    /// block was already allocated (which fixes the default allocator). Install the hook before
    /// the first IOBuf allocates.
    AlreadyInitialized,
    /// The allocator's `block_size()` is outside the accepted range.
    InvalidBlockSize {
        /// The size the allocator reported.
        size: usize,
        /// Smallest accepted size.
        min: usize,
        /// Largest accepted size.
        max: usize,
    },
}

impl fmt::Display for AllocatorError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AllocatorError::AlreadyInitialized => write!(
                f,
                "spindle-iobuf: block allocator already fixed (set_block_allocator must be called \
                 before the first block is allocated, and only once)"
            ),
            AllocatorError::InvalidBlockSize { size, min, max } => write!(
                f,
                "spindle-iobuf: block allocator reports block_size() = {size}, \
                 accepted range is {min}..={max}"
            ),
        }
    }
}

impl std::error::Error for AllocatorError {}
