//! fd I/O over pipes and socketpairs: partial reads and writes, EOF, EAGAIN, more pieces than
//! IOV_MAX, several buffers in one writev. (System calls: not run under miri.)
#![cfg(unix)]

use spindle_iobuf::{block_size, cached_blocks, FdRead, IOBuf, IOPortal, IOV_MAX, MAX_READ_BLOCKS};
use std::io::ErrorKind;
use std::os::fd::RawFd;

/// An owned fd closed on drop.
struct Fd(RawFd);

impl Drop for Fd {
    fn drop(&mut self) {
        // SAFETY: we own the fd.
        unsafe { libc::close(self.0) };
    }
}

fn pipe() -> (Fd, Fd) {
    let mut fds = [0; 2];
    // SAFETY: fds has room for two descriptors.
    assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
    (Fd(fds[0]), Fd(fds[1]))
}

fn socketpair() -> (Fd, Fd) {
    let mut fds = [0; 2];
    // SAFETY: fds has room for two descriptors.
    let rc = unsafe { libc::socketpair(libc::AF_UNIX, libc::SOCK_STREAM, 0, fds.as_mut_ptr()) };
    assert_eq!(rc, 0);
    (Fd(fds[0]), Fd(fds[1]))
}

fn set_nonblocking(fd: &Fd) {
    // SAFETY: plain fcntl on an fd we own.
    unsafe {
        let flags = libc::fcntl(fd.0, libc::F_GETFL);
        assert_eq!(
            libc::fcntl(fd.0, libc::F_SETFL, flags | libc::O_NONBLOCK),
            0
        );
    }
}

fn raw_write(fd: &Fd, data: &[u8]) {
    let mut off = 0;
    while off < data.len() {
        // SAFETY: data is valid for the given length.
        let rc = unsafe { libc::write(fd.0, data[off..].as_ptr().cast(), data.len() - off) };
        assert!(rc > 0);
        off += rc as usize;
    }
}

fn pattern(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i * 7 + i / 251) as u8).collect()
}

/// Reads everything until EOF with a portal.
fn read_all(fd: Fd, max: usize) -> IOBuf {
    let mut p = IOPortal::new();
    loop {
        match p.append_from_fd(fd.0, max) {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) => panic!("read failed: {e}"),
        }
    }
    p.into_inner()
}

#[test]
fn small_reads_fill_one_block_instead_of_wasting_blocks() {
    let (r, w) = pipe();
    let mut p = IOPortal::new();
    for chunk in [&b"hello"[..], b", ", b"world"] {
        raw_write(&w, chunk);
        assert_eq!(p.append_from_fd(r.0, 1 << 20).unwrap(), chunk.len());
    }
    assert_eq!(*p, "hello, world");
    // Three reads, one piece of one block: the tail block was kept and filled in place.
    assert_eq!(p.backing_block_num(), 1);
    // Cut a message off the front; the next read still lands in the same block.
    let msg = p.split_to(5);
    raw_write(&w, b"!");
    assert_eq!(p.append_from_fd(r.0, 100).unwrap(), 1);
    assert_eq!(msg, "hello");
    assert_eq!(*p, ", world!");
    assert_eq!(
        msg.pieces().next().unwrap().block_id(),
        p.pieces().next().unwrap().block_id()
    );
}

#[test]
fn partial_reads_honour_max() {
    let (r, w) = pipe();
    raw_write(&w, b"0123456789");
    let mut p = IOPortal::new();
    assert_eq!(p.append_from_fd(r.0, 4).unwrap(), 4);
    assert_eq!(p.append_from_fd(r.0, 4).unwrap(), 4);
    assert_eq!(p.append_from_fd(r.0, 4).unwrap(), 2);
    assert_eq!(*p, "0123456789");
    drop(w);
    assert_eq!(p.append_from_fd(r.0, 4).unwrap(), 0, "Ok(0) is EOF");
    assert_eq!(*p, "0123456789");
}

#[test]
fn fresh_blocks_are_taken_in_a_batch_and_unused_ones_go_back_to_the_cache() {
    let bs = block_size();
    let (r, w) = socketpair();
    // Warm the thread cache so every fresh block of the reads below comes from it.
    drop(read_all_of(&pattern(MAX_READ_BLOCKS * bs)));
    let warm = cached_blocks();
    assert!(warm > 0);
    let mut p = IOPortal::new();
    // 2.5 blocks of data offered to a read that could take 64 blocks: three blocks receive
    // bytes, every other prepared block returns to the cache.
    let data = pattern(bs * 5 / 2);
    raw_write(&w, &data);
    let mut got = 0;
    while got < data.len() {
        got += p.append_from_fd(r.0, MAX_READ_BLOCKS * bs).unwrap();
    }
    assert_eq!(*p, data[..]);
    assert_eq!(p.backing_block_num(), 3);
    assert_eq!(cached_blocks(), warm - 3, "unused fresh blocks went back");
    // The next read continues in the kept tail block, then a fresh one.
    raw_write(&w, &data[..bs]);
    assert_eq!(p.append_from_fd(r.0, bs).unwrap(), bs);
    assert_eq!(p.len(), data.len() + bs);
    assert_eq!(p.backing_block_num(), 4);
    // An error (EAGAIN) gives every fresh block back and keeps the content.
    set_nonblocking(&r);
    let e = p.append_from_fd(r.0, MAX_READ_BLOCKS * bs).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::WouldBlock);
    assert_eq!(p.len(), data.len() + bs);
    assert_eq!(cached_blocks(), warm - 4);
    let mut want = data.clone();
    want.extend_from_slice(&data[..bs]);
    assert_eq!(*p, want[..]);
}

/// Writes `data` through a socketpair and reads it back with a portal (on this thread).
fn read_all_of(data: &[u8]) -> IOBuf {
    let (r, w) = socketpair();
    let owned = data.to_vec();
    let t = std::thread::spawn(move || raw_write(&w, &owned));
    let out = read_all(r, MAX_READ_BLOCKS * block_size());
    t.join().unwrap();
    assert_eq!(out, data);
    out
}

#[test]
fn max_zero_is_invalid_input_not_eof() {
    let (r, _w) = pipe();
    let mut p = IOPortal::new();
    let e = p.append_from_fd(r.0, 0).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidInput);
}

#[test]
fn nonblocking_read_surfaces_would_block() {
    let (r, w) = socketpair();
    set_nonblocking(&r);
    let mut p = IOPortal::new();
    let e = p.append_from_fd(r.0, 4096).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::WouldBlock);
    assert!(p.is_empty());
    raw_write(&w, b"abc");
    assert_eq!(p.append_from_fd(r.0, 4096).unwrap(), 3);
    assert_eq!(*p, "abc");
}

#[test]
fn bad_fd_is_an_error_and_changes_nothing() {
    let mut p = IOPortal::new();
    p.append(b"keep");
    let e = p.append_from_fd(-1, 10).unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::EBADF));
    assert_eq!(*p, "keep");
    let mut b = IOBuf::from("keep");
    assert!(b.cut_into_fd(-1).is_err());
    assert_eq!(b, "keep");
}

#[test]
fn one_read_fills_many_blocks_up_to_the_limit() {
    let bs = block_size();
    let total = bs * (MAX_READ_BLOCKS + 8);
    let data = pattern(total);
    let (r, w) = socketpair();
    let writer = std::thread::spawn(move || raw_write(&w, &data));
    let mut p = IOPortal::new();
    let mut reads = 0;
    while p.len() < total {
        let n = p.append_from_fd(r.0, usize::MAX).unwrap();
        assert!(n > 0 && n <= bs * MAX_READ_BLOCKS);
        reads += 1;
    }
    writer.join().unwrap();
    assert!(reads >= 2);
    assert_eq!(p.to_vec(), pattern(total));
    for s in p.slices().take(p.backing_block_num() - 1) {
        assert!(s.len() <= bs);
    }
}

#[test]
fn write_and_read_back_through_a_pipe() {
    let data = pattern(300_000);
    let mut out = IOBuf::new();
    out.append(&data);
    let (r, w) = pipe();
    let reader = std::thread::spawn(move || read_all(r, 64 * 1024));
    while !out.is_empty() {
        let before = out.len();
        let n = out.cut_into_fd(w.0).unwrap();
        assert!(n > 0);
        assert_eq!(out.len(), before - n, "cut exactly what was written");
    }
    assert_eq!(out.cut_into_fd(w.0).unwrap(), 0, "nothing to write: Ok(0)");
    drop(w);
    assert_eq!(reader.join().unwrap().to_vec(), data);
}

#[test]
fn short_writes_on_a_full_nonblocking_socket() {
    let (r, w) = socketpair();
    set_nonblocking(&w);
    let data = pattern(4 << 20);
    let mut out = IOBuf::from(data.clone());
    let mut written = 0;
    let err = loop {
        match out.cut_into_fd(w.0) {
            Ok(n) => {
                assert!(n > 0);
                written += n;
                assert_eq!(out.len(), data.len() - written);
            }
            Err(e) => break e,
        }
    };
    assert_eq!(err.kind(), ErrorKind::WouldBlock, "EAGAIN surfaced");
    assert!(written < data.len(), "the socket buffer filled up");
    assert_eq!(out.len(), data.len() - written, "nothing cut on EAGAIN");
    // Drain what was written, then finish, and check every byte arrived once.
    let reader = std::thread::spawn(move || read_all(r, 1 << 20));
    while !out.is_empty() {
        match out.cut_into_fd(w.0) {
            Ok(_) => {}
            Err(e) if e.kind() == ErrorKind::WouldBlock => std::thread::yield_now(),
            Err(e) => panic!("{e}"),
        }
    }
    drop(w);
    assert_eq!(reader.join().unwrap().to_vec(), data);
}

#[test]
fn more_pieces_than_iov_max() {
    // 3000 user-memory pieces of 3 bytes: never merged, so 3000 iovecs are needed.
    let mut out = IOBuf::new();
    let mut model = Vec::new();
    for i in 0..3000u32 {
        let piece = vec![(i % 256) as u8, (i / 256) as u8, 0xaa];
        model.extend_from_slice(&piece);
        out.append_user_data(piece, u64::from(i));
    }
    assert_eq!(out.backing_block_num(), 3000);
    let (r, w) = socketpair();
    let reader = std::thread::spawn(move || read_all(r, 1 << 16));
    let first = out.cut_into_fd(w.0).unwrap();
    assert!(first <= IOV_MAX * 3, "at most IOV_MAX pieces per writev");
    while !out.is_empty() {
        out.cut_into_fd(w.0).unwrap();
    }
    drop(w);
    assert_eq!(reader.join().unwrap().to_vec(), model);
}

#[test]
fn several_buffers_in_one_writev() {
    let (r, w) = socketpair();
    let mut a = IOBuf::from("first,");
    let mut b = IOBuf::from(pattern(100_000));
    let mut c = IOBuf::from("last");
    let mut want = b"first,".to_vec();
    want.extend(pattern(100_000));
    want.extend_from_slice(b"last");
    let reader = std::thread::spawn(move || read_all(r, 1 << 16));
    let mut total = 0;
    while !(a.is_empty() && b.is_empty() && c.is_empty()) {
        let before = a.len() + b.len() + c.len();
        let n = IOBuf::cut_multiple_into_fd(w.0, &mut [&mut a, &mut b, &mut c]).unwrap();
        assert_eq!(a.len() + b.len() + c.len(), before - n);
        // Earlier buffers empty before later ones are cut.
        if !c.is_empty() && c.len() < 4 {
            assert!(a.is_empty() && b.is_empty());
        }
        total += n;
    }
    assert_eq!(
        IOBuf::cut_multiple_into_fd(w.0, &mut [&mut a, &mut b]).unwrap(),
        0
    );
    drop(w);
    assert_eq!(total, want.len());
    assert_eq!(reader.join().unwrap().to_vec(), want);
}

#[test]
fn eof_on_closed_socket() {
    let (r, w) = socketpair();
    raw_write(&w, b"bye");
    drop(w);
    let mut p = IOPortal::new();
    assert_eq!(p.append_from_fd(r.0, 100).unwrap(), 3);
    assert_eq!(p.append_from_fd(r.0, 100).unwrap(), 0);
    assert_eq!(*p, "bye");
}

#[test]
fn writing_to_a_closed_peer_is_broken_pipe() {
    // Rust programs ignore SIGPIPE by default, so the error comes back as EPIPE.
    let (r, w) = socketpair();
    drop(r);
    let mut b = IOBuf::from("data");
    let e = b.cut_into_fd(w.0).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::BrokenPipe);
    assert_eq!(b, "data");
}

/// `read_from_fd` reports what the `readv` offered, so a reader can tell "drained" (short) from
/// "filled its whole offer" (read again) without a second system call.
#[test]
fn read_from_fd_reports_the_offer_and_short_reads() {
    let bs = block_size();
    let (r, w) = socketpair();
    set_nonblocking(&r);
    let mut p = IOPortal::new();

    // 10 bytes queued, 4 KiB offered: short.
    raw_write(&w, &pattern(10));
    let got = p.read_from_fd(r.0, 4096).unwrap();
    assert_eq!(
        got,
        FdRead {
            read: 10,
            offered: 4096
        }
    );
    assert!(got.is_short());

    // Exactly the offer: not short (more may be queued).
    raw_write(&w, &pattern(100));
    let got = p.read_from_fd(r.0, 40).unwrap();
    assert_eq!((got.read, got.offered), (40, 40));
    assert!(!got.is_short());
    let got = p.read_from_fd(r.0, 4096).unwrap();
    assert_eq!(got.read, 60);
    assert!(got.is_short());

    // An offer larger than MAX_READ_BLOCKS blocks is capped: what was really offered is
    // reported, never `max`.
    let got = {
        raw_write(&w, &pattern(3));
        p.read_from_fd(r.0, usize::MAX).unwrap()
    };
    assert_eq!(got.read, 3);
    assert!(got.offered <= bs * MAX_READ_BLOCKS && got.offered > bs * (MAX_READ_BLOCKS - 1));
    assert!(got.is_short());

    // EAGAIN is an error as before; EOF is `read: 0`, never short.
    assert_eq!(
        p.read_from_fd(r.0, 4096).unwrap_err().kind(),
        ErrorKind::WouldBlock
    );
    drop(w);
    let eof = p.read_from_fd(r.0, 4096).unwrap();
    assert_eq!(eof.read, 0);
    assert!(!eof.is_short());
    assert_eq!(p.len(), 10 + 100 + 3);
}
