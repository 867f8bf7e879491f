//! `bytes` integration: read an IOBuf through [`bytes::Buf`] and write one through
//! [`bytes::BufMut`], so prost decodes from and encodes into an IOBuf without an intermediate
//! `Vec`.
//!
//! - `impl Buf for IOBuf` *consumes*: `chunk()` is the first piece, `advance` pops bytes.
//! - [`IOBufCursor`] reads without consuming: a position over a shared `&IOBuf`.
//! - `impl BufMut for IOBuf` writes into the write reservation (see `iobuf.rs`).
//!
//! Lengths never panic: `advance` past the end saturates.

use crate::block::BlockRef;
use crate::iobuf::IOBuf;
use bytes::buf::UninitSlice;
use bytes::{Buf, BufMut};
use std::io::IoSlice;

impl Buf for IOBuf {
    #[inline]
    fn remaining(&self) -> usize {
        self.len()
    }

    #[inline]
    fn chunk(&self) -> &[u8] {
        self.refs.get(0).map(BlockRef::as_slice).unwrap_or(&[])
    }

    #[inline]
    fn advance(&mut self, cnt: usize) {
        self.pop_front(cnt);
    }

    fn chunks_vectored<'a>(&'a self, dst: &mut [IoSlice<'a>]) -> usize {
        let mut n = 0;
        for (d, s) in dst.iter_mut().zip(self.slices()) {
            *d = IoSlice::new(s);
            n += 1;
        }
        n
    }
}

// SAFETY: `chunk_mut` returns the free part of this IOBuf's write reservation, which nobody else
// reads or writes; `advance_mut` commits at most that many bytes.
unsafe impl BufMut for IOBuf {
    #[inline]
    fn remaining_mut(&self) -> usize {
        isize::MAX as usize - self.len()
    }

    #[inline]
    unsafe fn advance_mut(&mut self, cnt: usize) {
        let room = self.tail.as_ref().map_or(0, |t| t.room());
        self.commit_tail(cnt.min(room));
    }

    #[inline]
    fn chunk_mut(&mut self) -> &mut UninitSlice {
        let t = self.ensure_tail();
        // SAFETY: `[pos, cap)` is reserved for this IOBuf and valid for writes.
        unsafe { UninitSlice::from_raw_parts_mut(t.write_ptr(), t.room()) }
    }

    #[inline]
    fn put_slice(&mut self, src: &[u8]) {
        self.append(src);
    }

    #[inline]
    fn put_u8(&mut self, n: u8) {
        self.push(n);
    }
}

/// A non-consuming reader over an IOBuf: implements [`Buf`] with `chunk()` returning the rest of
/// the current piece. Create it with [`IOBuf::cursor`].
#[derive(Clone)]
pub struct IOBufCursor<'a> {
    /// The IOBuf being read.
    buf: &'a IOBuf,
    /// Index of the current piece.
    idx: usize,
    /// Offset inside the current piece.
    off: usize,
    /// Bytes left to read.
    remaining: usize,
}

impl IOBuf {
    /// A cursor reading this IOBuf from the start without consuming it.
    pub fn cursor(&self) -> IOBufCursor<'_> {
        IOBufCursor {
            buf: self,
            idx: 0,
            off: 0,
            remaining: self.len(),
        }
    }
}

impl IOBufCursor<'_> {
    /// Bytes already read.
    pub fn position(&self) -> usize {
        self.buf.len() - self.remaining
    }
}

impl Buf for IOBufCursor<'_> {
    #[inline]
    fn remaining(&self) -> usize {
        self.remaining
    }

    #[inline]
    fn chunk(&self) -> &[u8] {
        match self.buf.refs.get(self.idx) {
            Some(r) => &r.as_slice()[self.off..],
            None => &[],
        }
    }

    fn advance(&mut self, cnt: usize) {
        let mut left = cnt.min(self.remaining);
        self.remaining -= left;
        while left > 0 {
            let Some(r) = self.buf.refs.get(self.idx) else {
                break;
            };
            let rest = r.len as usize - self.off;
            if left < rest {
                self.off += left;
                return;
            }
            left -= rest;
            self.idx += 1;
            self.off = 0;
        }
        // Land on the next non-exhausted piece so `chunk()` is non-empty while bytes remain.
        if let Some(r) = self.buf.refs.get(self.idx) {
            if self.off == r.len as usize {
                self.idx += 1;
                self.off = 0;
            }
        }
    }
}
