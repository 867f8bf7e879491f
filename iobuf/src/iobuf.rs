//! [`IOBuf`]: a byte sequence stored as a chain of references into shared blocks.
//!
//! # Representation and invariants
//!
//! - `refs` holds the pieces in order; every piece has `len > 0`; `len` is the sum of their
//!   lengths. Two adjacent pieces are merged when they are contiguous in the same block.
//! - `tail`, when present, is a *write reservation*: this IOBuf reserved `[pos, cap)` of that
//!   block (block invariant 2: the block's `size` is `cap`), so it appends there with plain
//!   stores and no atomic operation. Bytes before `pos` may be referenced by anyone (including
//!   this IOBuf's last piece, which then grows in place); bytes from `pos` on are referenced by
//!   nobody. On drop or [`IOBuf::clear`] the unused part is given back (`size = pos`), so another
//!   holder of the block whose piece ends at `pos` can append in place later.
//! - A *small* buffer (at most `SMALL_BUF_MAX` bytes, no reservation) has no block of its own:
//!   each append reserves exactly its bytes, by compare-exchange, behind its last piece or in the
//!   thread's share block (see `block_cache`). Many small messages thus share blocks, as in brpc.
//! - Cloning, cutting and appending IOBufs moves or clones references only: no byte is copied.

use crate::block::{Block, BlockRef};
use crate::block_cache;
use crate::chain::{ChainIter, RefChain};
use crate::small_copy::copy_bytes;
use smallvec::SmallVec;
use std::fmt;

/// A buffer that stays at or below this many bytes takes its bytes from the thread's share block
/// instead of reserving a block of its own (brpc's `share_tls_block`): small messages then cost
/// their size, not 8 KiB. Beyond it, the buffer reserves whole blocks and appends without atomics.
const SMALL_BUF_MAX: usize = 1024;

/// Bytes in one piece are stored as `u32`; merged pieces never exceed this.
const MAX_PIECE_LEN: usize = u32::MAX as usize;

/// Largest reservation end a [`WriteTail`] records: bit 31 of its `end` field is the
/// `EXTENDS_BACK` flag, so a tail never reserves the last byte of a 2 GiB block.
pub(crate) const MAX_TAIL_END: usize = (1 << 31) - 1;

/// Bit of `WriteTail::end` set while the IOBuf's last piece lies in the tail block and ends
/// exactly at `pos`: appends then grow that piece without checking it.
const EXTENDS_BACK: u32 = 1 << 31;

/// A write reservation on the tail of a block (see the module doc).
pub(crate) struct WriteTail {
    /// The reserved block (this handle keeps it alive).
    pub(crate) block: Block,
    /// Next byte to write; `[pos, end)` is reserved by this IOBuf.
    pub(crate) pos: u32,
    /// End of the reservation (bits 0..31, at most `MAX_TAIL_END`) and the `EXTENDS_BACK` flag
    /// (bit 31). The end is cached here to spare a header load on every append.
    end: u32,
}

impl WriteTail {
    /// A reservation of `[pos, end)` of `block` (the caller reserved it), not extending any piece.
    #[inline]
    pub(crate) fn new(block: Block, pos: usize, end: usize) -> WriteTail {
        debug_assert!(pos <= end && end <= MAX_TAIL_END);
        WriteTail {
            block,
            pos: pos as u32,
            end: end as u32,
        }
    }

    /// End of the reservation.
    #[inline]
    pub(crate) fn end(&self) -> usize {
        (self.end & !EXTENDS_BACK) as usize
    }

    /// Free reserved bytes.
    #[inline]
    pub(crate) fn room(&self) -> usize {
        self.end() - self.pos as usize
    }

    /// Whether the IOBuf's last piece is in this block and ends at `pos`. Every change of the
    /// IOBuf's last piece other than growing it from here clears the flag (see `push_back_ref`,
    /// `pop_back`); cuts from the front never move the end of the last piece, and a cut that
    /// removes the last piece empties the chain, which `commit_tail` checks.
    #[inline]
    fn extends_back(&self) -> bool {
        self.end & EXTENDS_BACK != 0
    }

    /// Sets or clears the `EXTENDS_BACK` flag.
    #[inline]
    fn set_extends_back(&mut self, on: bool) {
        self.end = (self.end & !EXTENDS_BACK) | if on { EXTENDS_BACK } else { 0 };
    }

    /// Where the next byte goes.
    #[inline]
    pub(crate) fn write_ptr(&self) -> *mut u8 {
        // SAFETY: pos <= end <= cap, so the result is inside the data region (or one past its
        // end).
        unsafe { self.block.data().add(self.pos as usize) }
    }
}

/// A chain of references into shared, ref-counted blocks: brpc's IOBuf.
///
/// Appending bytes copies them into blocks; everything else — [`append_iobuf`](Self::append_iobuf),
/// [`cutn`](Self::cutn), `clone` — shares blocks and copies nothing. `IOBuf` is `Send` and `Sync`;
/// blocks are shared safely across threads.
///
/// No method panics on a bad length: cutting or popping more than [`len`](Self::len) saturates
/// and returns how much was done; peeking past the end returns `None` or a short count.
pub struct IOBuf {
    /// The pieces, front to back.
    pub(crate) refs: RefChain,
    /// Total bytes in `refs`.
    pub(crate) len: usize,
    /// Write reservation used by appends, if any.
    pub(crate) tail: Option<WriteTail>,
}

impl IOBuf {
    /// An empty IOBuf. Allocates nothing.
    #[inline]
    pub const fn new() -> IOBuf {
        IOBuf {
            refs: RefChain::new(),
            len: 0,
            tail: None,
        }
    }

    /// Number of bytes.
    #[inline]
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether there are no bytes.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Number of pieces (block references) in the chain: brpc's `backing_block_num`.
    #[inline]
    pub fn backing_block_num(&self) -> usize {
        self.refs.len()
    }

    /// The `i`-th piece as a slice, front first; `None` past the last piece.
    #[inline]
    pub fn backing_block(&self, i: usize) -> Option<&[u8]> {
        self.refs.get(i).map(BlockRef::as_slice)
    }

    /// Drops every byte and gives back the write reservation; the IOBuf holds no block after.
    pub fn clear(&mut self) {
        self.release_tail();
        self.refs.clear();
        self.len = 0;
    }

    /// Gives back the unused part of the write reservation (module invariant).
    #[inline]
    fn release_tail(&mut self) {
        if let Some(t) = self.tail.take() {
            // SAFETY: we hold the reservation [pos, cap) (size == cap) and handed out no
            // reference at or after pos.
            unsafe { t.block.shrink_reservation(t.pos as usize) };
        }
    }

    /// Appends a reference at the back, merging it into the last piece when contiguous in the
    /// same block. `r.len` must be > 0.
    #[inline(always)]
    pub(crate) fn push_back_ref(&mut self, r: BlockRef) {
        debug_assert!(r.len > 0);
        if let Some(t) = self.tail.as_mut() {
            t.set_extends_back(false);
        }
        if self.len == 0 {
            // Empty (no piece, module invariant): nothing to merge with, e.g. a fresh message
            // receiving its body from `cutn`.
            self.len = r.len as usize;
            self.refs.push_back(r);
            return;
        }
        self.len += r.len as usize;
        if let Some(back) = self.refs.back_mut() {
            if back.block.same(&r.block)
                && back.end() == r.offset as usize
                && back.len as usize + r.len as usize <= MAX_PIECE_LEN
            {
                back.len += r.len;
                return;
            }
        }
        self.refs.push_back(r);
    }

    /// Records `n` bytes just written at the tail's `pos` as part of the content.
    #[inline]
    pub(crate) fn commit_tail(&mut self, n: usize) {
        let Some(t) = self.tail.as_mut() else {
            return;
        };
        if n == 0 {
            return;
        }
        let pos = t.pos as usize;
        t.pos += n as u32;
        self.len += n;
        // Usually the last piece ends at `pos` in this block (the flag says so): grow it. (A
        // piece inside one block is at most 2^31 bytes, so its length cannot overflow.)
        if t.extends_back() {
            if let Some(back) = self.refs.back_mut() {
                debug_assert!(back.end() == pos && back.block.same(&t.block));
                back.len += n as u32;
                return;
            }
        }
        self.push_tail_piece(pos, n);
    }

    /// Adds `[pos, pos + n)` of the tail block as the last piece (`len` already counts it): grows
    /// the last piece if it ends at `pos` in this block, else pushes a new one. When that fills
    /// the reservation (a `readv` filling whole blocks), the reservation is used up: its handle
    /// becomes the piece's, sparing a reference-count increment now and a decrement when the
    /// reservation would have been dropped.
    #[inline(never)]
    #[cold]
    fn push_tail_piece(&mut self, pos: usize, n: usize) {
        let Some(t) = self.tail.as_mut() else {
            return;
        };
        if let Some(back) = self.refs.back_mut() {
            if back.end() == pos && back.block.same(&t.block) {
                back.len += n as u32;
                t.set_extends_back(true);
                return;
            }
        }
        let block = if t.room() == 0 {
            // Nothing left to reserve: `[pos, end)` of the reservation is now all content, so
            // there is nothing to give back (`size == end` stays right).
            match self.tail.take() {
                Some(t) => t.block,
                None => return,
            }
        } else {
            t.set_extends_back(true);
            t.block.clone()
        };
        self.refs.push_back(BlockRef {
            block,
            offset: pos as u32,
            len: n as u32,
        });
    }

    /// Makes sure a write reservation with at least one free byte exists: adopts the free end of
    /// the last piece's block if this IOBuf is its only user, else takes a fresh block.
    #[inline(never)]
    pub(crate) fn ensure_tail(&mut self) -> &mut WriteTail {
        if self.tail.as_ref().is_some_and(|t| t.room() > 0) {
            return self.tail.as_mut().expect("checked above");
        }
        self.release_tail();
        // Try to continue the last piece's block in place (e.g. a clone or a cut of a buffer
        // whose writer has given its reservation back).
        if let Some(back) = self.refs.back() {
            let end = back.end();
            let cap = back.block.cap().min(MAX_TAIL_END);
            if back.block.is_unique() && end < cap && back.block.try_reserve(end, cap - end) {
                let mut t = WriteTail::new(back.block.clone(), end, cap);
                t.set_extends_back(true);
                return self.tail.insert(t);
            }
        }
        let block = block_cache::take();
        let cap = block.cap().min(MAX_TAIL_END);
        let ok = block.try_reserve(0, cap);
        debug_assert!(ok, "a fresh block is unique and empty");
        self.tail.insert(WriteTail::new(block, 0, cap))
    }

    /// Appends a copy of `data`, filling the current tail block in place first.
    #[inline]
    pub fn append(&mut self, data: &[u8]) {
        if let Some(t) = self.tail.as_ref() {
            if data.len() <= t.room() {
                // SAFETY: [pos, pos + len) is inside our reservation (room checked), so nobody
                // else reads or writes it; `data` cannot overlap a reserved range.
                unsafe { copy_bytes(data.as_ptr(), t.write_ptr(), data.len()) };
                self.commit_tail(data.len());
                return;
            }
        }
        self.append_slow(data);
    }

    /// Appends `data` across as many blocks as needed.
    #[inline(never)]
    #[cold]
    fn append_slow(&mut self, mut data: &[u8]) {
        if data.is_empty() {
            return;
        }
        if self.tail.is_none() && self.len + data.len() <= SMALL_BUF_MAX {
            // Small buffer: no block of its own. Continue the last piece in place if nobody
            // wrote behind it, else take the bytes from the thread's share block.
            let n = data.len();
            if let Some(back) = self.refs.back_mut() {
                let end = back.end();
                if back.block.try_reserve(end, n) {
                    // SAFETY: [end, end + n) was just reserved by us.
                    unsafe { copy_bytes(data.as_ptr(), back.block.data().add(end), n) };
                    back.len += n as u32;
                    self.len += n;
                    return;
                }
            }
            if let Some((block, off)) = block_cache::share_reserve(n) {
                // SAFETY: [off, off + n) of the share block was just reserved by us.
                unsafe { copy_bytes(data.as_ptr(), block.data().add(off), n) };
                self.push_back_ref(BlockRef {
                    block,
                    offset: off as u32,
                    len: n as u32,
                });
                return;
            }
        }
        while !data.is_empty() {
            let t = self.ensure_tail();
            let n = data.len().min(t.room());
            // SAFETY: as in `append`: the range is inside our reservation.
            unsafe { std::ptr::copy_nonoverlapping(data.as_ptr(), t.write_ptr(), n) };
            self.commit_tail(n);
            data = &data[n..];
        }
    }

    /// Appends one byte.
    #[inline]
    pub fn push(&mut self, byte: u8) {
        self.append(&[byte]);
    }

    /// Appends the content of `other`, sharing its blocks (copies no byte).
    pub fn append_iobuf(&mut self, other: &IOBuf) {
        for r in other.refs.iter() {
            self.push_back_ref(r.clone());
        }
    }

    /// Moves the content of `other` to the back of `self` without touching reference counts
    /// (copies no byte). If `self` is empty and has no reservation it also takes `other`'s write
    /// reservation; otherwise that reservation is given back.
    pub fn append_owned(&mut self, mut other: IOBuf) {
        if self.refs.len() == 0 && self.tail.is_none() {
            // Take everything, including the write reservation.
            std::mem::swap(self, &mut other);
            return;
        }
        let total = other.len;
        if let Some(first) = other.refs.pop_front() {
            // The first piece may continue our last one; the rest moves as a block.
            let first_len = first.len as usize;
            self.push_back_ref(first);
            self.refs.append_chain(&mut other.refs);
            self.len += total - first_len;
        }
        other.len = 0;
    }

    /// When `n` is positive and shorter than the first piece, removes the first `n` bytes from
    /// that piece and returns them as a reference to the same block (the fast path of every
    /// cut); otherwise changes nothing. The caller updates `len`.
    #[inline(always)]
    fn cut_inside_front(&mut self, n: usize) -> Option<BlockRef> {
        let front = self.refs.front_mut()?;
        if n >= front.len as usize || n == 0 {
            return None;
        }
        let piece = BlockRef {
            block: front.block.clone(),
            offset: front.offset,
            len: n as u32,
        };
        front.offset += n as u32;
        front.len -= n as u32;
        Some(piece)
    }

    /// Moves the first `min(n, len)` bytes to the back of `out`, sharing blocks (a piece split in
    /// two becomes two references to the same block). Returns the number of bytes moved.
    #[inline(always)]
    pub fn cutn(&mut self, out: &mut IOBuf, n: usize) -> usize {
        // Fast path: the range lies strictly inside the first piece (a message in a read buffer).
        if let Some(piece) = self.cut_inside_front(n) {
            self.len -= n;
            out.push_back_ref(piece);
            return n;
        }
        if let Some(front) = self.refs.front() {
            // Exactly the first piece, with more behind it (a message ending at a block end):
            // the reference moves as is.
            if n == front.len as usize && n < self.len {
                if let Some(piece) = self.refs.pop_front() {
                    self.len -= n;
                    out.push_back_ref(piece);
                    return n;
                }
            }
        }
        self.cutn_slow(out, n)
    }

    /// General case of [`cutn`](Self::cutn).
    #[inline(never)]
    fn cutn_slow(&mut self, out: &mut IOBuf, n: usize) -> usize {
        let n = n.min(self.len);
        if n == self.len && n > 0 {
            // Everything moves (a whole message or attachment): the first piece may continue
            // `out`'s last one, the rest moves as a block. Our write reservation stays ours.
            if let Some(first) = self.refs.pop_front() {
                let first_len = first.len as usize;
                out.push_back_ref(first);
                out.refs.append_chain(&mut self.refs);
                out.len += n - first_len;
            }
            self.len = 0;
            return n;
        }
        let mut left = n;
        while left > 0 {
            let Some(front) = self.refs.front() else {
                break;
            };
            let flen = front.len as usize;
            if flen <= left {
                let r = self.refs.pop_front().expect("front exists");
                left -= flen;
                out.push_back_ref(r);
            } else {
                // The rest lies strictly inside the first piece.
                if let Some(piece) = self.cut_inside_front(left) {
                    out.push_back_ref(piece);
                }
                left = 0;
            }
        }
        self.len -= n;
        n
    }

    /// Cuts the first `min(n, len)` bytes into a new IOBuf (shares blocks).
    #[inline]
    pub fn split_to(&mut self, n: usize) -> IOBuf {
        // Fast path as in `cutn`, building the result in one piece (a message in a read buffer).
        if let Some(piece) = self.cut_inside_front(n) {
            self.len -= n;
            return IOBuf {
                refs: RefChain::one(piece),
                len: n,
                tail: None,
            };
        }
        let mut out = IOBuf::new();
        self.cutn(&mut out, n);
        out
    }

    /// Appends `min(n, len - pos)` bytes starting at `pos` to the back of `out`, sharing blocks
    /// and without consuming them (brpc's `append_to`). Returns the number of bytes appended (0 if
    /// `pos >= len`).
    pub fn append_to(&self, out: &mut IOBuf, n: usize, pos: usize) -> usize {
        if pos >= self.len {
            return 0;
        }
        let n = n.min(self.len - pos);
        let (mut skip, mut left) = (pos, n);
        for r in self.refs.iter() {
            if left == 0 {
                break;
            }
            let rlen = r.len as usize;
            if skip >= rlen {
                skip -= rlen;
                continue;
            }
            let take = (rlen - skip).min(left);
            out.push_back_ref(BlockRef {
                block: r.block.clone(),
                offset: r.offset + skip as u32,
                len: take as u32,
            });
            skip = 0;
            left -= take;
        }
        n
    }

    /// Copies the first `min(dst.len(), len)` bytes into `dst` and removes them. Returns the
    /// number of bytes moved.
    pub fn cut_into_slice(&mut self, dst: &mut [u8]) -> usize {
        let n = self.copy_to(dst, 0);
        self.pop_front(n);
        n
    }

    /// Removes the first `min(n, len)` bytes; returns how many were removed.
    #[inline]
    pub fn pop_front(&mut self, n: usize) -> usize {
        if let Some(front) = self.refs.front_mut() {
            if n < front.len as usize {
                front.offset += n as u32;
                front.len -= n as u32;
                self.len -= n;
                return n;
            }
        }
        self.pop_front_slow(n)
    }

    /// General case of [`pop_front`](Self::pop_front).
    ///
    /// Whole pieces are released back to front, in groups of up to `REVERSE_RELEASE` pieces: the
    /// per-thread block cache is a stack, so blocks that were handed out in address order (a
    /// buffer filled by appends, then written to an fd) come out of it in that order again for
    /// the next buffer, whose adjacent blocks then share an iovec in `writev`.
    #[inline(never)]
    fn pop_front_slow(&mut self, n: usize) -> usize {
        let n = n.min(self.len);
        // The usual case (a small message that ends where its piece ends): exactly the front
        // piece goes; one reference needs no batch.
        if self.refs.front().is_some_and(|f| f.len as usize == n) {
            self.len -= n;
            drop(self.refs.pop_front());
            return n;
        }
        let mut left = n;
        // Inline and filled only as far as used: no set-up or drop of unused slots.
        let mut popped: SmallVec<[BlockRef; REVERSE_RELEASE]> = SmallVec::new();
        while left > 0 {
            let Some(front) = self.refs.front_mut() else {
                break;
            };
            let flen = front.len as usize;
            if flen <= left {
                left -= flen;
                if popped.len() == REVERSE_RELEASE {
                    release_reversed(&mut popped);
                }
                if let Some(r) = self.refs.pop_front() {
                    popped.push(r);
                }
            } else {
                front.offset += left as u32;
                front.len -= left as u32;
                left = 0;
            }
        }
        self.len -= n;
        release_reversed(&mut popped);
        n
    }

    /// Removes the last `min(n, len)` bytes; returns how many were removed.
    pub fn pop_back(&mut self, n: usize) -> usize {
        let n = n.min(self.len);
        if let Some(t) = self.tail.as_mut() {
            // The last piece shrinks or goes: it no longer ends at the tail's `pos`.
            t.set_extends_back(false);
        }
        let mut left = n;
        while left > 0 {
            let Some(back) = self.refs.back_mut() else {
                break;
            };
            let blen = back.len as usize;
            if blen <= left {
                left -= blen;
                self.refs.pop_back();
            } else {
                back.len -= left as u32;
                left = 0;
            }
        }
        self.len -= n;
        n
    }

    /// Copies bytes starting at `offset` into `dst` without consuming them. Returns the number of
    /// bytes copied: `min(dst.len(), len - offset)`, or 0 if `offset >= len`.
    pub fn copy_to(&self, dst: &mut [u8], offset: usize) -> usize {
        if offset >= self.len || dst.is_empty() {
            return 0;
        }
        let mut skip = offset;
        let mut done = 0;
        for r in self.refs.iter() {
            let s = r.as_slice();
            if skip >= s.len() {
                skip -= s.len();
                continue;
            }
            let s = &s[skip..];
            skip = 0;
            let n = s.len().min(dst.len() - done);
            dst[done..done + n].copy_from_slice(&s[..n]);
            done += n;
            if done == dst.len() {
                break;
            }
        }
        done
    }

    /// Peeks the first `aux.len()` bytes: a view into the first block when they lie in it (no
    /// copy), otherwise a copy into `aux`. `None` if fewer bytes are available.
    #[inline]
    pub fn fetch<'a>(&'a self, aux: &'a mut [u8]) -> Option<&'a [u8]> {
        self.fetch_at(0, aux)
    }

    /// Like [`fetch`](Self::fetch) for the `aux.len()` bytes starting at `offset`: a contiguous
    /// view when the range lies in one block, a copy into `aux` otherwise. `None` if the range
    /// goes past the end.
    pub fn fetch_at<'a>(&'a self, offset: usize, aux: &'a mut [u8]) -> Option<&'a [u8]> {
        let n = aux.len();
        if offset.checked_add(n)? > self.len {
            return None;
        }
        let mut skip = offset;
        for r in self.refs.iter() {
            let s = r.as_slice();
            if skip >= s.len() {
                skip -= s.len();
                continue;
            }
            if s.len() - skip >= n {
                return Some(&s[skip..skip + n]);
            }
            break;
        }
        let copied = self.copy_to(aux, offset);
        debug_assert_eq!(copied, n);
        Some(aux)
    }

    /// Copies the first `N` bytes into an array without consuming them (e.g. a protocol header).
    /// `None` if fewer than `N` bytes are available.
    #[inline]
    pub fn fetch_array<const N: usize>(&self) -> Option<[u8; N]> {
        // Fast path: the bytes lie in the front piece (a header at the start of a read buffer):
        // one slice read, no chain walk.
        if let Some(r) = self.refs.front() {
            if r.len as usize >= N {
                return r.as_slice()[..N].try_into().ok();
            }
        }
        if self.len < N {
            return None;
        }
        let mut out = [0u8; N];
        self.copy_to(&mut out, 0);
        Some(out)
    }

    /// Whether the content equals `other` byte for byte.
    pub fn equals(&self, other: &[u8]) -> bool {
        if other.len() != self.len {
            return false;
        }
        let mut rest = other;
        for s in self.slices() {
            let (head, tail) = rest.split_at(s.len());
            if head != s {
                return false;
            }
            rest = tail;
        }
        true
    }

    /// The pieces as byte slices, front to back.
    #[inline]
    pub fn slices(&self) -> Slices<'_> {
        Slices(self.refs.iter())
    }

    /// The pieces with their block metadata, front to back.
    #[inline]
    pub fn pieces(&self) -> Pieces<'_> {
        Pieces(self.refs.iter())
    }

    /// A copy of the content in one `Vec` (tests, debugging, small messages).
    pub fn to_vec(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(self.len);
        for s in self.slices() {
            v.extend_from_slice(s);
        }
        v
    }
}

/// Pieces [`IOBuf::pop_front`] releases back to front at a time.
const REVERSE_RELEASE: usize = 32;

/// Drops (and empties) the references of `refs` back to front; pooled blocks losing their last
/// reference go back to the thread's cache in one access (in that order: the front block ends on
/// top).
fn release_reversed(refs: &mut SmallVec<[BlockRef; REVERSE_RELEASE]>) {
    let mut free: SmallVec<[Block; REVERSE_RELEASE]> = SmallVec::new();
    while let Some(r) = refs.pop() {
        if let Some(b) = r.block.into_free() {
            free.push(b);
        }
    }
    if !free.is_empty() {
        block_cache::recycle_many(free);
    }
}

impl Default for IOBuf {
    fn default() -> Self {
        IOBuf::new()
    }
}

impl Drop for IOBuf {
    #[inline]
    fn drop(&mut self) {
        if let Some(t) = &self.tail {
            // SAFETY: as in `release_tail`: we hold the reservation [pos, cap) and handed out no
            // reference at or after pos. The handle itself is dropped with the field.
            unsafe { t.block.shrink_reservation(t.pos as usize) };
        }
    }
}

impl Clone for IOBuf {
    /// Shares every block (copies no byte). The clone has no write reservation.
    fn clone(&self) -> IOBuf {
        let mut out = IOBuf::new();
        out.append_iobuf(self);
        out
    }
}

impl fmt::Debug for IOBuf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const SHOWN: usize = 64;
        let mut head = [0u8; SHOWN];
        let n = self.copy_to(&mut head, 0);
        f.debug_struct("IOBuf")
            .field("len", &self.len)
            .field("pieces", &self.refs.len())
            .field("head", &bytes::Bytes::copy_from_slice(&head[..n]))
            .finish()
    }
}

impl PartialEq for IOBuf {
    fn eq(&self, other: &IOBuf) -> bool {
        if self.len != other.len {
            return false;
        }
        let mut a = self.slices();
        let mut b = other.slices();
        let (mut x, mut y): (&[u8], &[u8]) = (&[], &[]);
        loop {
            if x.is_empty() {
                match a.next() {
                    Some(s) => x = s,
                    None => return y.is_empty() && b.next().is_none(),
                }
            }
            if y.is_empty() {
                match b.next() {
                    Some(s) => y = s,
                    None => return false,
                }
            }
            let n = x.len().min(y.len());
            if x[..n] != y[..n] {
                return false;
            }
            x = &x[n..];
            y = &y[n..];
        }
    }
}

impl Eq for IOBuf {}

impl PartialEq<[u8]> for IOBuf {
    fn eq(&self, other: &[u8]) -> bool {
        self.equals(other)
    }
}

impl PartialEq<&[u8]> for IOBuf {
    fn eq(&self, other: &&[u8]) -> bool {
        self.equals(other)
    }
}

impl<const N: usize> PartialEq<[u8; N]> for IOBuf {
    fn eq(&self, other: &[u8; N]) -> bool {
        self.equals(other)
    }
}

impl<const N: usize> PartialEq<&[u8; N]> for IOBuf {
    fn eq(&self, other: &&[u8; N]) -> bool {
        self.equals(*other)
    }
}

impl PartialEq<Vec<u8>> for IOBuf {
    fn eq(&self, other: &Vec<u8>) -> bool {
        self.equals(other)
    }
}

impl PartialEq<str> for IOBuf {
    fn eq(&self, other: &str) -> bool {
        self.equals(other.as_bytes())
    }
}

impl PartialEq<&str> for IOBuf {
    fn eq(&self, other: &&str) -> bool {
        self.equals(other.as_bytes())
    }
}

/// Below this size, conversions from owned buffers copy into blocks instead of adopting the
/// buffer as user memory (an extra block header costs more than copying a few hundred bytes).
const ADOPT_MIN_LEN: usize = 512;

impl From<&[u8]> for IOBuf {
    /// Copies `data` into blocks.
    fn from(data: &[u8]) -> IOBuf {
        let mut b = IOBuf::new();
        b.append(data);
        b
    }
}

impl From<&str> for IOBuf {
    /// Copies `s` into blocks.
    fn from(s: &str) -> IOBuf {
        IOBuf::from(s.as_bytes())
    }
}

impl From<Vec<u8>> for IOBuf {
    /// Adopts the vector as user memory without copying (the vector is dropped when the last
    /// reference goes), or copies it when it is shorter than 512 bytes.
    fn from(v: Vec<u8>) -> IOBuf {
        let mut b = IOBuf::new();
        if v.len() < ADOPT_MIN_LEN {
            b.append(&v);
        } else {
            b.append_user_data(v, 0);
        }
        b
    }
}

impl From<bytes::Bytes> for IOBuf {
    /// Adopts the `Bytes` as user memory without copying (shorter than 512 bytes: copies).
    fn from(v: bytes::Bytes) -> IOBuf {
        let mut b = IOBuf::new();
        if v.len() < ADOPT_MIN_LEN {
            b.append(&v);
        } else {
            b.append_user_data(v, 0);
        }
        b
    }
}

/// Iterator over the pieces of an IOBuf as byte slices (see [`IOBuf::slices`]).
pub struct Slices<'a>(ChainIter<'a>);

impl<'a> Iterator for Slices<'a> {
    type Item = &'a [u8];

    #[inline]
    fn next(&mut self) -> Option<&'a [u8]> {
        self.0.next().map(BlockRef::as_slice)
    }

    #[inline]
    fn size_hint(&self) -> (usize, Option<usize>) {
        self.0.size_hint()
    }
}

impl DoubleEndedIterator for Slices<'_> {
    #[inline]
    fn next_back(&mut self) -> Option<Self::Item> {
        self.0.next_back().map(BlockRef::as_slice)
    }
}

/// One piece of an IOBuf: a byte range of one block, with that block's metadata.
#[derive(Clone, Copy)]
pub struct Piece<'a> {
    /// The reference this piece shows.
    r: &'a BlockRef,
}

impl<'a> Piece<'a> {
    /// The bytes of the piece.
    #[inline]
    pub fn as_slice(&self) -> &'a [u8] {
        self.r.as_slice()
    }

    /// The block's metadata: the `meta` given with user memory, or the one the block allocator
    /// returned in [`crate::BlockMemory::meta`] (0 for the default heap allocator).
    #[inline]
    pub fn meta(&self) -> u64 {
        self.r.block.meta()
    }

    /// Whether the piece is user memory (appended with a deleter).
    #[inline]
    pub fn is_user_data(&self) -> bool {
        self.r.block.is_user()
    }

    /// An identifier of the block (its header address): equal for pieces of the same block
    /// while both are alive. Proves sharing in tests.
    #[inline]
    pub fn block_id(&self) -> usize {
        self.r.block.id()
    }

    /// Offset of the piece inside its block.
    #[inline]
    pub fn offset_in_block(&self) -> usize {
        self.r.offset as usize
    }
}

impl fmt::Debug for Piece<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Piece")
            .field("block_id", &self.block_id())
            .field("offset", &self.offset_in_block())
            .field("len", &self.r.len)
            .field("meta", &self.meta())
            .finish()
    }
}

/// Iterator over the pieces of an IOBuf (see [`IOBuf::pieces`]).
pub struct Pieces<'a>(ChainIter<'a>);

impl<'a> Iterator for Pieces<'a> {
    type Item = Piece<'a>;

    #[inline]
    fn next(&mut self) -> Option<Piece<'a>> {
        self.0.next().map(|r| Piece { r })
    }

    #[inline]
    fn size_hint(&self) -> (usize, Option<usize>) {
        self.0.size_hint()
    }
}
