//! [`IOPortal`]: an IOBuf that reads from file descriptors with `readv`.
//!
//! A read fills, in order, the free part of the portal's current tail block (its write
//! reservation, kept from the previous read) and then fresh blocks. The last block that received
//! bytes and still has room stays reserved as the tail, so a stream of small reads fills one
//! block after another instead of wasting a block per read. Fresh blocks that received nothing
//! go straight back to the per-thread cache.
//!
//! Messages are cut from the front with [`IOBuf::cutn`] (sharing the blocks) while the portal
//! keeps appending behind them: pieces already handed out are never written again (block
//! invariant 3).

use crate::block_cache;
use crate::iobuf::{IOBuf, WriteTail};
use std::io;
use std::ops::{Deref, DerefMut};
use std::os::fd::RawFd;

/// Most blocks filled by one `readv` (64 × 8 KiB = 512 KiB, brpc's largest read size).
pub const MAX_READ_BLOCKS: usize = 64;

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
        if max == 0 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "IOPortal::append_from_fd: max must be > 0",
            ));
        }
        let mut tails: [Option<WriteTail>; MAX_READ_BLOCKS] = std::array::from_fn(|_| None);
        let mut iov = [libc::iovec {
            iov_base: std::ptr::null_mut(),
            iov_len: 0,
        }; MAX_READ_BLOCKS];
        let mut count = 0;
        let mut space = 0usize;
        // The kept tail first (the IOBuf adopts or creates one if it has none).
        self.buf.ensure_tail();
        while space < max && count < MAX_READ_BLOCKS {
            let t = match (count, self.buf.tail.take()) {
                (0, Some(t)) => t,
                _ => {
                    let block = block_cache::take();
                    let cap = block.cap();
                    let ok = block.try_reserve(0, cap);
                    debug_assert!(ok, "a fresh block is unique and empty");
                    WriteTail {
                        block,
                        pos: 0,
                        cap: cap as u32,
                    }
                }
            };
            let n = t.room().min(max - space);
            iov[count] = libc::iovec {
                iov_base: t.write_ptr() as *mut libc::c_void,
                iov_len: n,
            };
            space += n;
            tails[count] = Some(t);
            count += 1;
        }
        let result = loop {
            // SAFETY: each iovec describes the free, reserved part of a block we hold in `tails`
            // (nobody else reads or writes it), and `count <= MAX_READ_BLOCKS`.
            let rc = unsafe { libc::readv(fd, iov.as_ptr(), count as libc::c_int) };
            if rc >= 0 {
                break Ok(rc as usize);
            }
            let err = io::Error::last_os_error();
            if err.kind() != io::ErrorKind::Interrupted {
                break Err(err);
            }
        };
        let read = match result {
            Ok(n) => n,
            Err(e) => {
                // Keep the first reservation for the next read; fresh blocks go back.
                self.buf.tail = tails[0].take();
                return Err(e);
            }
        };
        let mut left = read;
        for (i, slot) in tails.iter_mut().enumerate().take(count) {
            let t = slot.take().expect("filled above");
            // The first block stays the tail even if nothing was read, later ones only if they
            // received bytes.
            if i > 0 && left == 0 {
                break;
            }
            let n = left.min(iov[i].iov_len);
            // Previous tail (if any) is full up to what was read into it: give back its end.
            if let Some(old) = self.buf.tail.replace(t) {
                // SAFETY: we held the reservation [pos, cap) and handed out nothing past pos.
                unsafe { old.block.shrink_reservation(old.pos as usize) };
            }
            self.buf.commit_tail(n);
            left -= n;
        }
        Ok(read)
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
