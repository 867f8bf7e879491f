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
//! At most [`IOV_MAX`] pieces go into one call; later pieces wait for the next call.

use crate::iobuf::IOBuf;
use std::io;
use std::os::fd::RawFd;

/// Most pieces passed to one `writev` (Linux `UIO_MAXIOV`, also POSIX `IOV_MAX` on common
/// systems).
pub const IOV_MAX: usize = 1024;

/// Pieces gathered on the stack before falling back to a heap vector: 64 × 16 bytes = 1 KiB, so
/// small fiber stacks are not at risk.
const STACK_IOVS: usize = 64;

/// `writev` over `iov`, retrying on `EINTR`.
fn writev_retry(fd: RawFd, iov: &[libc::iovec]) -> io::Result<usize> {
    loop {
        // SAFETY: `iov` points to `iov.len()` (<= IOV_MAX) valid iovecs, each describing bytes of
        // a live IOBuf piece borrowed for the duration of the call.
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

/// Gathers up to `IOV_MAX` pieces of `bufs` (in order) and writes them.
fn write_pieces(fd: RawFd, bufs: &[&IOBuf]) -> io::Result<usize> {
    let count: usize = bufs.iter().map(|b| b.backing_block_num()).sum();
    if count == 0 {
        return Ok(0);
    }
    let count = count.min(IOV_MAX);
    let slices = bufs.iter().flat_map(|b| b.slices()).take(count);
    let to_iov = |s: &[u8]| libc::iovec {
        iov_base: s.as_ptr() as *mut libc::c_void,
        iov_len: s.len(),
    };
    if count <= STACK_IOVS {
        let mut iov = [libc::iovec {
            iov_base: std::ptr::null_mut(),
            iov_len: 0,
        }; STACK_IOVS];
        for (d, s) in iov.iter_mut().zip(slices) {
            *d = to_iov(s);
        }
        writev_retry(fd, &iov[..count])
    } else {
        let iov: Vec<libc::iovec> = slices.map(to_iov).collect();
        writev_retry(fd, &iov)
    }
}

impl IOBuf {
    /// Writes as much of the front of this IOBuf as the fd takes in one `writev` (up to
    /// [`IOV_MAX`] pieces) and removes exactly the bytes written. See the module doc for the
    /// meaning of the result.
    pub fn cut_into_fd(&mut self, fd: RawFd) -> io::Result<usize> {
        let n = write_pieces(fd, &[&*self])?;
        self.pop_front(n);
        Ok(n)
    }

    /// Writes several IOBufs, in order, with one `writev` (up to [`IOV_MAX`] pieces in total) and
    /// removes exactly the bytes written from the front of the sequence (earlier buffers are
    /// emptied before later ones are cut). See the module doc for the meaning of the result.
    pub fn cut_multiple_into_fd(fd: RawFd, bufs: &mut [&mut IOBuf]) -> io::Result<usize> {
        let n = {
            let views: Vec<&IOBuf> = bufs.iter().map(|b| &**b).collect();
            write_pieces(fd, &views)?
        };
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
