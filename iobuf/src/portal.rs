//! [`IOPortal`]: an IOBuf that reads from file descriptors with `readv`.
//!
//! A read fills, in order, the free part of the portal's current tail block (its write
//! reservation, kept from the previous read) and then fresh blocks. The last block that received
//! bytes and still has room stays reserved as the tail, so a stream of small reads fills one
//! block after another instead of wasting a block per read. Fresh blocks are taken from the
//! per-thread cache in one access (`block_cache::take_many`) and those that received nothing go
//! back in one access (`block_cache::recycle_many`), so a 512 KiB read that finds 100 KiB waiting
//! costs two cache accesses instead of one per block.
//!
//! Messages are cut from the front with [`IOBuf::cutn`] (sharing the blocks) while the portal
//! keeps appending behind them: pieces already handed out are never written again (block
//! invariant 3).

use crate::block::Block;
use crate::block_cache;
use crate::fd_io::{push_iov, EMPTY_IOV};
use crate::iobuf::{IOBuf, WriteTail, MAX_TAIL_END};
use std::io;
use std::ops::{Deref, DerefMut};
use std::os::fd::RawFd;

/// Most blocks filled by one `readv` (64 × 8 KiB = 512 KiB, brpc's largest read size).
pub const MAX_READ_BLOCKS: usize = 64;

/// What one [`IOPortal::read_from_fd`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FdRead {
    /// Bytes appended (0: end of file).
    pub read: usize,
    /// Bytes the `readv` had room for: `max`, or less when `max` needs more than
    /// [`MAX_READ_BLOCKS`] blocks.
    pub offered: usize,
}

impl FdRead {
    /// Whether the read returned data but filled less than it offered: a stream socket had
    /// nothing more queued when it was read.
    pub fn is_short(&self) -> bool {
        self.read > 0 && self.read < self.offered
    }
}

/// An [`IOBuf`] that appends from file descriptors; dereferences to the IOBuf.
#[derive(Default, Debug)]
pub struct IOPortal {
    /// The bytes read so far (and the kept tail block as its write reservation).
    buf: IOBuf,
}

impl IOPortal {
    /// An empty portal. Allocates nothing until the first read.
    pub const fn new() -> IOPortal {
        IOPortal { buf: IOBuf::new() }
    }

    /// Reads at most `max` bytes from `fd` with one `readv` into the kept tail block and fresh
    /// blocks (at most [`MAX_READ_BLOCKS`] blocks per call), appending them.
    ///
    /// - `Ok(n)`, `n > 0`: `n` bytes were appended (possibly fewer than `max`).
    /// - `Ok(0)`: end of file (the peer closed).
    /// - `Err(e)`, `e.kind() == WouldBlock`: a non-blocking fd has no data now (`EAGAIN`).
    /// - `Err(e)`, `e.kind() == InvalidInput`: `max == 0` (no system call is made, so the answer
    ///   could not be told apart from end of file otherwise).
    /// - `EINTR` is retried internally; any other error is returned as is. On error nothing is
    ///   appended.
    pub fn append_from_fd(&mut self, fd: RawFd, max: usize) -> io::Result<usize> {
        self.read_from_fd(fd, max).map(|r| r.read)
    }

    /// [`append_from_fd`](Self::append_from_fd) that also tells how many bytes the `readv`
    /// offered room for: fewer than `max` when `max` needs more than [`MAX_READ_BLOCKS`]
    /// blocks.
    ///
    /// A stream socket that filled less than it was offered ([`FdRead::is_short`]) had nothing
    /// more queued at that moment, so an edge-triggered reader may stop without a second
    /// `readv` that would return `EAGAIN` (bytes arriving later raise a new edge). A read that
    /// filled its whole offer proves nothing: read again.
    pub fn read_from_fd(&mut self, fd: RawFd, max: usize) -> io::Result<FdRead> {
        if max == 0 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "IOPortal::append_from_fd: max must be > 0",
            ));
        }
        // The kept tail first (the IOBuf adopts or creates one if it has none).
        self.buf.ensure_tail();
        let first = self
            .buf
            .tail
            .take()
            .expect("ensure_tail leaves a reservation");
        let first_len = first.room().min(max);
        // Then as many fresh blocks as `max` asks for, taken from the thread cache in one go.
        // (A tail never reserves the last byte of a 2 GiB block: see `MAX_TAIL_END`.)
        let cap = crate::allocator::block_size().min(MAX_TAIL_END);
        let fresh_count = (max - first_len).div_ceil(cap).min(MAX_READ_BLOCKS - 1);
        let mut fresh: [Option<Block>; MAX_READ_BLOCKS - 1] = std::array::from_fn(|_| None);
        block_cache::take_many(&mut fresh[..fresh_count]);
        // Bytes offered to each fresh block.
        let mut lens = [0usize; MAX_READ_BLOCKS - 1];
        // Blocks adjacent in memory (carved from one slab, handed out in address order) share
        // an iovec: the kernel copies fewer, longer runs.
        let mut iov = [EMPTY_IOV; MAX_READ_BLOCKS];
        let mut count = 0;
        push_iov(&mut iov, &mut count, first.write_ptr(), first_len);
        let mut space = first_len;
        // Fresh blocks are not reserved before the read: we hold their only handles, so nobody
        // else can reserve, write or read them meanwhile (block invariant 1), and only those that
        // receive bytes are reserved below; the others go back to the cache untouched.
        for (slot, len) in fresh[..fresh_count].iter().zip(lens.iter_mut()) {
            let b = slot.as_ref().expect("filled by take_many");
            debug_assert!(
                b.is_unique() && b.size() == 0,
                "a fresh block is unique and empty"
            );
            *len = cap.min(max - space);
            // Never full: at most one iovec per block.
            push_iov(&mut iov, &mut count, b.data(), *len);
            space += *len;
        }
        let result = loop {
            // SAFETY: each iovec describes free, reserved parts of blocks we hold (`first` and
            // `fresh`; nobody else reads or writes them), and `count <= MAX_READ_BLOCKS`.
            let rc = unsafe { libc::readv(fd, iov.as_ptr(), count as libc::c_int) };
            if rc >= 0 {
                break Ok(rc as usize);
            }
            let err = io::Error::last_os_error();
            if err.kind() != io::ErrorKind::Interrupted {
                break Err(err);
            }
        };
        // On error nothing was read: every fresh block goes back below.
        let read = *result.as_ref().unwrap_or(&0);
        // The first block stays the tail even if nothing was read.
        self.buf.tail = Some(first);
        let n = read.min(first_len);
        self.buf.commit_tail(n);
        let mut left = read - n;
        // Fresh blocks that received bytes become the tail in turn (the previous one is full up
        // to what was read into it: give back its end); the others go back to the cache.
        for (i, slot) in fresh[..fresh_count].iter_mut().enumerate() {
            if left == 0 {
                break;
            }
            let block = slot.take().expect("filled by take_many");
            let n = left.min(lens[i]);
            // Reserve the whole block for the tail now (the only handle: a plain store).
            let ok = block.try_reserve(0, cap);
            debug_assert!(ok, "a fresh block is unique and empty");
            let t = WriteTail::new(block, 0, cap);
            if let Some(old) = self.buf.tail.replace(t) {
                // SAFETY: we held the reservation [pos, cap) and handed out nothing past pos.
                unsafe { old.block.shrink_reservation(old.pos as usize) };
            }
            self.buf.commit_tail(n);
            left -= n;
        }
        // Unused fresh blocks are still `refs == 1`, `size == 0`, as the cache requires.
        block_cache::recycle_many(fresh[..fresh_count].iter_mut().filter_map(Option::take));
        result?;
        Ok(FdRead {
            read,
            offered: space,
        })
    }

    /// The IOBuf read so far (the kept tail block goes with it).
    pub fn into_inner(self) -> IOBuf {
        self.buf
    }
}

impl Deref for IOPortal {
    type Target = IOBuf;

    fn deref(&self) -> &IOBuf {
        &self.buf
    }
}

impl DerefMut for IOPortal {
    fn deref_mut(&mut self) -> &mut IOBuf {
        &mut self.buf
    }
}
