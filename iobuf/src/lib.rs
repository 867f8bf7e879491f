//! # spindle-iobuf
//!
//! Zero-copy byte buffers for the Spindle RPC stack, after brpc's `butil::IOBuf`.
//!
//! An [`IOBuf`] is a chain of references `(block, offset, length)` into shared, ref-counted,
//! fixed-size blocks (8 KiB by default). Appending bytes copies them into blocks once; from then
//! on, appending one IOBuf to another, cutting a message off the front, or cloning moves
//! references and copies nothing. The first and last pieces live inline in the `IOBuf` value.
//!
//! - [`IOPortal::append_from_fd`] reads with `readv` into blocks, keeping a partially filled tail
//!   block for the next read; [`IOBuf::cut_into_fd`] / [`IOBuf::cut_multiple_into_fd`] write
//!   with `writev` and cut exactly what was written.
//! - [`IOBuf::append_user_data`] appends a caller's buffer without copying; its deleter runs
//!   once, when the last reference drops, and its `meta` (e.g. an RDMA memory key) is reported by
//!   [`Piece::meta`].
//! - [`set_block_allocator`] replaces where blocks come from (RDMA registered memory); blocks are
//!   cached per thread.
//! - [`IOBufAppender`] makes many small writes cheap; `IOBuf` implements [`bytes::Buf`]
//!   (consuming) and [`bytes::BufMut`], and [`IOBufCursor`] reads without consuming, so prost
//!   decodes from and encodes into an IOBuf directly.
//!
//! No operation panics on a bad length: cuts and pops saturate and return how much they did,
//! peeks past the end return `None` or a short count.
//!
//! ```
//! use spindle_iobuf::IOBuf;
//!
//! // A read buffer holding a 12-byte header and a body.
//! let mut input = IOBuf::new();
//! input.append(b"PRPC");
//! input.append(&5u32.to_be_bytes());
//! input.append(&0u32.to_be_bytes());
//! input.append(b"hello, rest of the stream");
//!
//! // Peek the header without consuming, then cut the message off the front (no copy).
//! let header: [u8; 12] = input.fetch_array().unwrap();
//! assert_eq!(&header[..4], b"PRPC");
//! let body_len = u32::from_be_bytes(header[4..8].try_into().unwrap()) as usize;
//! input.pop_front(12);
//! let body = input.split_to(body_len);
//! assert_eq!(body, b"hello");
//! assert_eq!(input, b", rest of the stream");
//!
//! // Append the body to an outgoing buffer: shares the block.
//! let mut out = IOBuf::new();
//! out.append_iobuf(&body);
//! assert_eq!(out.pieces().next().unwrap().block_id(), body.pieces().next().unwrap().block_id());
//! ```

#![warn(missing_docs)]

mod allocator;
mod appender;
mod block;
mod block_cache;
mod buf_impl;
mod chain;
mod error;
mod fd_io;
mod iobuf;
mod loom;
mod portal;
mod small_copy;
mod user_memory;

pub use allocator::{
    block_allocator, block_size, set_block_allocator, BlockAllocator, BlockMemory, HeapAllocator,
    DEFAULT_BLOCK_SIZE, MAX_BLOCK_SIZE, MIN_BLOCK_SIZE,
};
pub use appender::IOBufAppender;
pub use block_cache::cached_blocks;
pub use buf_impl::IOBufCursor;
pub use error::AllocatorError;
pub use fd_io::IOV_MAX;
pub use iobuf::{IOBuf, Piece, Pieces, Slices};
pub use portal::{FdRead, IOPortal, MAX_READ_BLOCKS};

#[cfg(test)]
mod tests;

/// The examples of the user guide (`docs/iobuf.md`) compile and run as doctests.
#[cfg(doctest)]
#[doc = include_str!("../../docs/iobuf.md")]
mod guide {}
