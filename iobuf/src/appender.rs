//! [`IOBufAppender`]: many small writes into an IOBuf at the cost of a pointer bump each.
//!
//! The appender borrows the IOBuf mutably and writes straight into its write reservation (see
//! `iobuf.rs`), keeping raw cursor pointers so that a one-byte write is a compare, a store and an
//! increment. Written bytes become part of the IOBuf when a block fills up, on
//! [`IOBufAppender::flush`], or when the appender is dropped.
//!
//! Invariant: either all three pointers are null (nothing reserved yet) or
//! `start <= cur <= end` lie in the IOBuf's current write reservation, `start` being its `pos`;
//! `[start, cur)` is written but not yet committed.

use crate::iobuf::IOBuf;
use bytes::buf::UninitSlice;
use bytes::BufMut;

/// Fast appender for many small writes; see the module doc. Commits on drop.
pub struct IOBufAppender<'a> {
    /// The destination; its write reservation is where the cursor points.
    buf: &'a mut IOBuf,
    /// Start of the uncommitted bytes (= the reservation's `pos`).
    start: *mut u8,
    /// Next byte to write.
    cur: *mut u8,
    /// End of the reservation.
    end: *mut u8,
}

impl<'a> IOBufAppender<'a> {
    /// An appender writing at the end of `buf`.
    pub fn new(buf: &'a mut IOBuf) -> Self {
        IOBufAppender {
            buf,
            start: std::ptr::null_mut(),
            cur: std::ptr::null_mut(),
            end: std::ptr::null_mut(),
        }
    }

    /// Free bytes left in the current reservation.
    #[inline]
    fn room(&self) -> usize {
        self.end as usize - self.cur as usize
    }

    /// Appends a copy of `data`.
    #[inline]
    pub fn append(&mut self, data: &[u8]) {
        if data.len() <= self.room() {
            // SAFETY: `[cur, cur + len)` is inside the IOBuf's reservation (module invariant and
            // room check); `data` cannot overlap reserved memory.
            unsafe {
                std::ptr::copy_nonoverlapping(data.as_ptr(), self.cur, data.len());
                self.cur = self.cur.add(data.len());
            }
        } else {
            self.append_slow(data);
        }
    }

    /// Appends one byte.
    #[inline]
    pub fn push(&mut self, byte: u8) {
        if self.cur != self.end {
            // SAFETY: cur < end, inside the reservation (module invariant).
            unsafe {
                self.cur.write(byte);
                self.cur = self.cur.add(1);
            }
        } else {
            self.append_slow(&[byte]);
        }
    }

    /// Slow path: fill what fits, then move to a new reservation.
    #[inline(never)]
    fn append_slow(&mut self, mut data: &[u8]) {
        while !data.is_empty() {
            if self.room() == 0 {
                self.refill();
            }
            let n = data.len().min(self.room());
            // SAFETY: as in `append`.
            unsafe {
                std::ptr::copy_nonoverlapping(data.as_ptr(), self.cur, n);
                self.cur = self.cur.add(n);
            }
            data = &data[n..];
        }
    }

    /// Commits what was written and points the cursor at a reservation with free room.
    fn refill(&mut self) {
        self.flush();
        let t = self.buf.ensure_tail();
        self.start = t.write_ptr();
        self.cur = self.start;
        // SAFETY: room() bytes after pos are inside the block.
        self.end = unsafe { self.start.add(t.room()) };
    }

    /// Makes everything written so far part of the IOBuf.
    pub fn flush(&mut self) {
        let n = self.cur as usize - self.start as usize;
        if n > 0 {
            self.buf.commit_tail(n);
            self.start = self.cur;
        }
    }

    /// Bytes in the IOBuf plus bytes written but not yet committed.
    pub fn len(&self) -> usize {
        self.buf.len() + (self.cur as usize - self.start as usize)
    }

    /// Whether nothing was written and the IOBuf is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Drop for IOBufAppender<'_> {
    fn drop(&mut self) {
        self.flush();
    }
}

// SAFETY: `chunk_mut` returns the uncommitted part of the reservation, which only this appender
// writes; `advance_mut` moves the cursor inside it (clamped).
unsafe impl BufMut for IOBufAppender<'_> {
    fn remaining_mut(&self) -> usize {
        isize::MAX as usize - self.len()
    }

    unsafe fn advance_mut(&mut self, cnt: usize) {
        let cnt = cnt.min(self.room());
        // SAFETY: clamped to the reservation.
        self.cur = unsafe { self.cur.add(cnt) };
    }

    fn chunk_mut(&mut self) -> &mut UninitSlice {
        if self.room() == 0 {
            self.refill();
        }
        // SAFETY: `[cur, end)` is reserved for this appender and valid for writes.
        unsafe { UninitSlice::from_raw_parts_mut(self.cur, self.room()) }
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
