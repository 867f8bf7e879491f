//! Writing IOBufs to file descriptors with `writev`, cutting exactly what the kernel took.
//!
//! Result meaning, for every function here:
//! - `Ok(n)`, `n > 0`: `n` bytes were written and removed from the front of the buffer(s); `n`
//!   may be less than the total (a *short write*: the rest stays, call again).
//! - `Ok(0)`: there was nothing to write (no system call was made).
//! - `Err(e)` with `e.kind() == WouldBlock`: a non-blocking fd is full (`EAGAIN`); nothing was
//!   removed. Wait for writability (EPOLLOUT) and call again.
//! - `EINTR` is retried internally and never returned.
//! - Any other `Err` (e.g. `BrokenPipe` when the reader is gone): nothing was removed.
//!
//! At most [`IOV_MAX`] iovecs go into one call (pieces adjacent in memory share one); later
//! pieces wait for the next call.

use crate::iobuf::IOBuf;
use std::io;
use std::os::fd::RawFd;

/// Most iovecs passed to one `writev` (Linux `UIO_MAXIOV`, also POSIX `IOV_MAX` on common
/// systems). Pieces that are contiguous in memory (adjacent blocks) share one iovec.
pub const IOV_MAX: usize = 1024;

/// Iovecs gathered on the stack: 64 × 16 bytes = 1 KiB, so small fiber stacks are not at risk.
/// More go to a per-thread reusable vector (no allocation per call once it has grown).
const STACK_IOVS: usize = 64;

/// An empty iovec, to initialise arrays.
pub(crate) const EMPTY_IOV: libc::iovec = libc::iovec {
    iov_base: std::ptr::null_mut(),
    iov_len: 0,
};

thread_local! {
    /// Iovecs of writes with more than `STACK_IOVS` of them, reused between calls (empty between
    /// calls: taken out for the call, put back after).
    static LONG_IOVS: std::cell::RefCell<Vec<libc::iovec>> = const {
        std::cell::RefCell::new(Vec::new())
    };
}

/// Extends `last` by `len` bytes when `base` starts where it ends (adjacent blocks).
#[inline]
fn extend_adjacent(last: &mut libc::iovec, base: *mut u8, len: usize) -> bool {
    if (last.iov_base as usize).wrapping_add(last.iov_len) == base as usize {
        last.iov_len += len;
        return true;
    }
    false
}

/// Appends `s` to the first `*n` iovecs of `iov`, extending the last one when `s` starts where
/// it ends (adjacent blocks). Returns `false`, changing nothing, when a new iovec is needed and
/// `iov` is full.
#[inline]
pub(crate) fn push_iov(iov: &mut [libc::iovec], n: &mut usize, base: *mut u8, len: usize) -> bool {
    if let Some(last) = n.checked_sub(1).map(|i| &mut iov[i]) {
        if extend_adjacent(last, base, len) {
            return true;
        }
    }
    match iov.get_mut(*n) {
        Some(slot) => {
            *slot = libc::iovec {
                iov_base: base.cast(),
                iov_len: len,
            };
            *n += 1;
            true
        }
        None => false,
    }
}

/// [`push_iov`] onto a vector that grows up to [`IOV_MAX`] iovecs (only what is used is
/// written: no array of `IOV_MAX` is cleared per call).
fn push_iov_vec(iov: &mut Vec<libc::iovec>, base: *mut u8, len: usize) -> bool {
    if let Some(last) = iov.last_mut() {
        if extend_adjacent(last, base, len) {
            return true;
        }
    }
    if iov.len() == IOV_MAX {
        return false;
    }
    iov.push(libc::iovec {
        iov_base: base.cast(),
        iov_len: len,
    });
    true
}

/// `writev` over `iov`, retrying on `EINTR`.
fn writev_retry(fd: RawFd, iov: &[libc::iovec]) -> io::Result<usize> {
    loop {
        // SAFETY: `iov` points to `iov.len()` (<= IOV_MAX) valid iovecs, each describing bytes of
        // live IOBuf pieces borrowed for the duration of the call.
        let rc = unsafe { libc::writev(fd, iov.as_ptr(), iov.len() as libc::c_int) };
        if rc >= 0 {
            return Ok(rc as usize);
        }
        let err = io::Error::last_os_error();
        if err.kind() != io::ErrorKind::Interrupted {
            return Err(err);
        }
    }
}

/// Gathers the pieces `slices` (in order, coalescing adjacent ones) into at most `IOV_MAX`
/// iovecs and writes them with one `writev`.
fn write_pieces<'a>(fd: RawFd, mut slices: impl Iterator<Item = &'a [u8]>) -> io::Result<usize> {
    let mut iov = [EMPTY_IOV; STACK_IOVS];
    let mut n = 0;
    while let Some(s) = slices.next() {
        if !push_iov(&mut iov, &mut n, s.as_ptr().cast_mut(), s.len()) {
            return write_long(fd, &iov, s, slices);
        }
    }
    if n == 0 {
        return Ok(0);
    }
    writev_retry(fd, &iov[..n])
}

/// The rare long case of [`write_pieces`]: `head` is full, `next` and then `rest` follow.
#[inline(never)]
fn write_long<'a>(
    fd: RawFd,
    head: &[libc::iovec],
    next: &'a [u8],
    rest: impl Iterator<Item = &'a [u8]>,
) -> io::Result<usize> {
    // The thread's vector is taken out for the call and put back after, so no borrow of the
    // thread-local is held across the system call.
    let mut v = LONG_IOVS
        .try_with(|c| c.try_borrow_mut().map(|mut v| std::mem::take(&mut *v)))
        .ok()
        .and_then(Result::ok)
        .unwrap_or_default();
    v.clear();
    v.reserve(IOV_MAX);
    v.extend_from_slice(head);
    for s in std::iter::once(next).chain(rest) {
        if !push_iov_vec(&mut v, s.as_ptr().cast_mut(), s.len()) {
            break;
        }
    }
    let result = writev_retry(fd, &v);
    // No stale pointers into pieces stay behind.
    v.clear();
    let _ = LONG_IOVS.try_with(|c| {
        if let Ok(mut slot) = c.try_borrow_mut() {
            *slot = v;
        }
    });
    result
}

impl IOBuf {
    /// Writes as much of the front of this IOBuf as the fd takes in one `writev` (up to
    /// [`IOV_MAX`] iovecs) and removes exactly the bytes written. See the module doc for the
    /// meaning of the result.
    pub fn cut_into_fd(&mut self, fd: RawFd) -> io::Result<usize> {
        let n = write_pieces(fd, self.slices())?;
        self.pop_front(n);
        Ok(n)
    }

    /// Writes several IOBufs, in order, with one `writev` (up to [`IOV_MAX`] iovecs in total) and
    /// removes exactly the bytes written from the front of the sequence (earlier buffers are
    /// emptied before later ones are cut). See the module doc for the meaning of the result.
    pub fn cut_multiple_into_fd(fd: RawFd, bufs: &mut [&mut IOBuf]) -> io::Result<usize> {
        let n = write_pieces(fd, bufs.iter().flat_map(|b| b.slices()))?;
        let mut left = n;
        for b in bufs.iter_mut() {
            if left == 0 {
                break;
            }
            left -= b.pop_front(left);
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn adjacent_pieces_share_an_iovec() {
        let mut mem = [0u8; 64];
        let base = mem.as_mut_ptr();
        let mut iov = [EMPTY_IOV; 2];
        let mut n = 0;
        assert!(push_iov(&mut iov, &mut n, base, 8));
        assert!(push_iov(&mut iov, &mut n, mem[8..].as_mut_ptr(), 8));
        assert_eq!((n, iov[0].iov_len), (1, 16), "contiguous: merged");
        assert!(push_iov(&mut iov, &mut n, mem[32..].as_mut_ptr(), 4));
        assert_eq!((n, iov[1].iov_len), (2, 4), "gap: new iovec");
        assert!(push_iov(&mut iov, &mut n, mem[36..].as_mut_ptr(), 4));
        assert_eq!((n, iov[1].iov_len), (2, 8));
        assert!(!push_iov(&mut iov, &mut n, base, 1), "full: refused");
        assert_eq!(n, 2);
    }

    #[test]
    fn the_long_vector_stops_at_iov_max_but_still_merges() {
        let mut mem = vec![0u8; 2 * IOV_MAX + 2];
        let base = mem.as_mut_ptr();
        let mut v = Vec::new();
        for i in 0..IOV_MAX {
            // Every other byte: never adjacent to the previous piece.
            assert!(push_iov_vec(&mut v, base.wrapping_add(2 * i), 1));
        }
        assert_eq!(v.len(), IOV_MAX);
        assert!(
            !push_iov_vec(&mut v, base.wrapping_add(2 * IOV_MAX + 1), 1),
            "full: refused"
        );
        assert!(
            push_iov_vec(&mut v, base.wrapping_add(2 * IOV_MAX - 1), 1),
            "adjacent to the last: merged even when full"
        );
        assert_eq!((v.len(), v[IOV_MAX - 1].iov_len), (IOV_MAX, 2));
    }
}
