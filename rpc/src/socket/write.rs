//! The lock-free write path of a socket (brpc's `Socket::Write` / `KeepWrite`).
//!
//! # Algorithm
//!
//! The list's ownership protocol is the generic `write_queue::WriteQueue` (checked by the loom
//! model `loom_write_queue_exchange_and_handoff`); this module adds the bytes, `writev`, the
//! `EPOLLOUT` wait and the accounting.
//!
//! Each write is a heap node `WriteRequest` `{ data, next }`. The list's `head` is an atomic
//! pointer to the newest node; `next` points to the node that was the head before it (older),
//! so the list is a stack threaded from newest to oldest (Vyukov's intrusive MPSC push).
//!
//! - **Push** ([`Socket::write`]): create the node with `next = UNCONNECTED` (a sentinel), then
//!   `prev = head.swap(node)`. If `prev` is non-null another writer owns the list: store
//!   `node.next = prev` (Release) and return — the owner will write the data. If `prev` was
//!   null the caller became the **owner**: it sets `node.next = null` and writes in place.
//! - **Owner**: keeps a private FIFO of the nodes it owns and `last`, the newest node it has
//!   taken (always the back of the FIFO). Before each `writev` it gathers the nodes pushed
//!   since it last looked (load `head`, walk back to `last`, append oldest-first, `last =
//!   head`); it `writev`s the FIFO's data (several nodes per call) and frees fully written
//!   nodes, except `last`. When everything is written it tries
//!   `head.CAS(last → null)`: success releases ownership (then `last` is freed); failure means
//!   newer nodes were pushed: it loads `head`, walks `next` pointers from it back to `last`
//!   (waiting on `UNCONNECTED` for a pusher between its swap and its store), appends those
//!   nodes oldest-first, sets `last = head` and goes on.
//! - On `EAGAIN` the in-place owner hands the FIFO to a **keep-write fiber**, which waits for
//!   `EPOLLOUT` on the socket's butex (bumped by the event dispatcher and by `set_failed`),
//!   re-arming `EPOLLOUT` with `epoll_ctl(MOD)` after reading the butex word, so a writability
//!   change between its failed `writev` and its wait is never lost.
//!
//! # Batching
//!
//! A writer that becomes the owner while other fibers are ready on its worker yields once
//! before writing: those fibers (typically the other requests cut from the same read, or
//! callers woken by a burst of responses) run first, and whatever they write to this socket is
//! pushed behind the owner's node, gathered before the first `writev`, and goes out in the
//! same `writev` (without the gather the owner would write its own node alone first: a group
//! of four pipelined requests left as one `writev` of 1 and one of 3). With one message in
//! flight nothing else is ready and the write happens at once; with many, one `writev` carries
//! many messages (the pipelined case of `echo_bench`). Writers on plain threads never wait.
//!
//! # Invariants
//!
//! 1. At most one owner: ownership passes only through `head` being null (the pusher that
//!    swaps a null out owns), and only the owner stores null into `head` (by the CAS).
//! 2. `last` is never freed while `head` may still equal it: the CAS compares against `last`,
//!    so freeing it earlier would let a new node reuse its address and the CAS succeed
//!    wrongly (ABA). Older nodes are freed freely: nobody compares against them.
//! 3. Messages are never interleaved: a node's bytes are written in order, and a node is
//!    started only after all older nodes were fully written (FIFO order, one `writev` writes a
//!    prefix of the concatenation).
//! 4. `unwritten` counts bytes pushed and not yet written or dropped; a push that would take it
//!    beyond `socket_max_unwritten_bytes` (while something is pending) fails with
//!    `EOVERCROWDED` instead.

use super::socket::{Socket, SocketHandle};
use super::write_queue::{Batch, WriteQueue};
use crate::errors::{ErrorCode, RpcError};
use crate::event_dispatcher;
use smallvec::SmallVec;
use spindle_iobuf::IOBuf;
use spindle_runtime::butex::Butex;
use spindle_runtime::define_flag;
use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

define_flag!(
    /// Limit of bytes queued on one socket.
    pub static SOCKET_MAX_UNWRITTEN_BYTES: u64 = 64 * 1024 * 1024,
    "bytes queued and not yet written on one socket beyond which writes fail with EOVERCROWDED",
    validator = |v| if *v == 0 { Err("must be positive".into()) } else { Ok(()) },
    reloadable = true
);

/// Most nodes passed to one `writev`.
const MAX_NODES_PER_WRITEV: usize = 64;

/// How long the keep-write fiber sleeps at most before re-checking for failure (a safety net;
/// `set_failed` wakes it anyway).
const KEEP_WRITE_RECHECK: Duration = Duration::from_millis(500);

/// The write side of a socket.
#[derive(Debug)]
pub struct WriteList {
    /// The pending messages and who owns writing them (`write_queue`).
    queue: WriteQueue<IOBuf>,
    /// Bytes pushed and not yet written (invariant 4).
    unwritten: AtomicU64,
    /// Bumped and woken on `EPOLLOUT` and on failure; the keep-write fiber waits on it.
    epollout: Butex,
}

impl WriteList {
    /// An empty list.
    pub(crate) fn new() -> WriteList {
        WriteList {
            queue: WriteQueue::new(),
            unwritten: AtomicU64::new(0),
            epollout: Butex::new(0),
        }
    }

    /// Wakes fibers waiting for `EPOLLOUT` (called by the dispatcher and by `set_failed`).
    pub(crate) fn wake_writers(&self) {
        self.epollout.value().fetch_add(1, Ordering::Release);
        self.epollout.wake_all();
    }

    /// The `EPOLLOUT` butex word, read before a wait.
    pub(crate) fn epollout_seq(&self) -> u32 {
        self.epollout.value().load(Ordering::Acquire)
    }

    /// Waits until the `EPOLLOUT` word changes from `seq` or `deadline` passes.
    pub(crate) fn wait_epollout(&self, seq: u32, deadline: Instant) {
        let _ = self.epollout.wait(seq, Some(deadline));
    }

    /// Bytes queued and not yet written.
    pub fn unwritten_bytes(&self) -> u64 {
        self.unwritten.load(Ordering::Relaxed)
    }
}

/// Drops every pending byte of `b` and gives ownership up (the socket failed).
fn release_all(list: &WriteList, b: &mut Batch<IOBuf>) {
    loop {
        for d in b.items_mut() {
            list.unwritten.fetch_sub(d.len() as u64, Ordering::AcqRel);
            d.clear();
        }
        b.pop_done(|d| d.is_empty());
        if list.queue.try_release(b) {
            return;
        }
    }
}

/// How far an owner got.
enum Drained {
    /// Everything written and ownership released.
    Done,
    /// The fd is full (`EAGAIN`); the batch still owns nodes.
    WouldBlock,
    /// The socket failed; every node was dropped and ownership released.
    Failed,
}

/// Writes the batch until done, `EAGAIN` or an error (module doc, "Owner").
fn drain(s: &SocketHandle, b: &mut Batch<IOBuf>) -> Drained {
    let list = &s.write;
    loop {
        b.pop_done(|d| d.is_empty());
        // Messages pushed since the last look go out in this `writev` too ("Batching").
        list.queue.gather(b);
        // Inline for the usual few messages: no allocation per `writev`.
        let mut bufs: SmallVec<[&mut IOBuf; 16]> = b
            .items_mut()
            .filter(|d| !d.is_empty())
            .take(MAX_NODES_PER_WRITEV)
            .collect();
        if !bufs.is_empty() {
            let written = match s.transport.rdma_endpoint() {
                Some(ep) => ep.cut_from_iobufs(&mut bufs),
                None => IOBuf::cut_multiple_into_fd(s.fd(), &mut bufs),
            };
            match written {
                Ok(0) => return Drained::WouldBlock,
                Ok(n) => {
                    list.unwritten.fetch_sub(n as u64, Ordering::AcqRel);
                    s.stats.bytes_out.fetch_add(n as u64, Ordering::Relaxed);
                    s.stats.writes.fetch_add(1, Ordering::Relaxed);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Drained::WouldBlock,
                Err(e) => {
                    Socket::set_failed(
                        s,
                        RpcError::new(
                            ErrorCode::Other(e.raw_os_error().unwrap_or(0)),
                            format!("writev to {:?} failed: {e}", s.remote()),
                        ),
                    );
                    drop(bufs);
                    release_all(list, b);
                    return Drained::Failed;
                }
            }
            continue;
        }
        drop(bufs);
        if list.queue.try_release(b) {
            return Drained::Done;
        }
    }
}

/// The keep-write fiber: drains `b`, waiting for `EPOLLOUT` whenever the fd is full.
fn keep_write(s: SocketHandle, mut b: Batch<IOBuf>) {
    loop {
        let seq = s.write.epollout_seq();
        match drain(&s, &mut b) {
            Drained::Done | Drained::Failed => return,
            Drained::WouldBlock => {}
        }
        if s.failed() {
            release_all(&s.write, &mut b);
            return;
        }
        // Re-arming after reading `seq` reports a writable fd at once: no lost wake-up. On
        // RDMA the reader (or poller) bumps the word when a completion opens the window.
        if s.transport.rdma_endpoint().is_none()
            && event_dispatcher::arm_epollout(s.fd(), s.id()).is_err()
        {
            // The fd left epoll (failed meanwhile): the next round sees it.
            std::hint::spin_loop();
        }
        s.write
            .wait_epollout(seq, Instant::now() + KEEP_WRITE_RECHECK);
        if s.failed() {
            release_all(&s.write, &mut b);
            return;
        }
    }
}

impl Socket {
    /// Queues `data` as one message on the socket `s` (any fiber or thread, no lock).
    ///
    /// Returns once the bytes were written or queued; they go out whole, in push order, never
    /// interleaved with other messages. Fails with `EFAILEDSOCKET` if the socket failed before
    /// the push (or while this caller wrote in place), and with `EOVERCROWDED` if more than
    /// `socket_max_unwritten_bytes` would be pending. A later failure of the socket drops
    /// queued bytes; callers learn it through the socket's failure (`InputHandler::on_failed`).
    pub fn write(s: &SocketHandle, data: IOBuf) -> Result<(), RpcError> {
        if s.failed() {
            return Err(s.failed_error());
        }
        let len = data.len() as u64;
        let max = SOCKET_MAX_UNWRITTEN_BYTES.get();
        let before = s.write.unwritten.fetch_add(len, Ordering::AcqRel);
        if before > 0 && before + len > max {
            s.write.unwritten.fetch_sub(len, Ordering::AcqRel);
            return Err(RpcError::new(
                ErrorCode::Overcrowded,
                format!(
                    "socket to {:?} has {before} bytes unwritten; adding {len} exceeds \
                     --socket_max_unwritten_bytes={max}",
                    s.remote()
                ),
            ));
        }
        s.stats.messages_out.fetch_add(1, Ordering::Relaxed);
        let Some(mut b) = s.write.queue.push(data) else {
            return Ok(()); // the current owner writes it
        };
        if spindle_runtime::has_ready_fibers() {
            // Fibers ready on this worker (the other messages of a read, callers woken by
            // responses) are likely to write to this socket too: let them run first and push
            // behind this node, then write them all with one writev (module doc, "Batching").
            spindle_runtime::yield_now();
        }
        match drain(s, &mut b) {
            Drained::Done => Ok(()),
            Drained::Failed => Err(s.failed_error()),
            Drained::WouldBlock => {
                let s = s.clone();
                spindle_runtime::spawn(move || keep_write(s, b));
                Ok(())
            }
        }
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use crate::socket::{InputHandler, Socket};
    use std::io::Read;
    use std::os::fd::FromRawFd;
    use std::sync::Arc;

    /// Ignores input (the tests only write).
    struct NoInput;
    impl InputHandler for NoInput {
        fn on_input(&self, _socket: &SocketHandle) {}
    }

    /// A connected pair: a `Socket` on one end, a blocking `UnixStream` on the other.
    fn pair(sndbuf: i32) -> (SocketHandle, std::os::unix::net::UnixStream) {
        let mut fds = [0; 2];
        // SAFETY: `fds` has room for the two fds.
        let rc = unsafe {
            libc::socketpair(
                libc::AF_UNIX,
                libc::SOCK_STREAM | libc::SOCK_CLOEXEC,
                0,
                fds.as_mut_ptr(),
            )
        };
        assert_eq!(rc, 0);
        // SAFETY: fds[0] is ours; make it non-blocking.
        unsafe {
            let fl = libc::fcntl(fds[0], libc::F_GETFL);
            libc::fcntl(fds[0], libc::F_SETFL, fl | libc::O_NONBLOCK);
        }
        if sndbuf > 0 {
            crate::socket::socket::set_int_opt(fds[0], libc::SOL_SOCKET, libc::SO_SNDBUF, sndbuf);
        }
        let s = Socket::create(fds[0], None, Arc::new(NoInput), false).unwrap();
        // SAFETY: fds[1] is ours and owned by the stream from now on.
        let peer = unsafe { std::os::unix::net::UnixStream::from_raw_fd(fds[1]) };
        (s, peer)
    }

    /// Many fibers write framed messages to one socket with a tiny send buffer (so most writes
    /// queue and the keep-write fiber runs); the peer checks every message arrives exactly
    /// once, whole, and in each writer's order.
    #[test]
    fn many_writers_no_loss_no_duplicate_no_interleaving() {
        const WRITERS: u32 = 8;
        const PER_WRITER: u32 = 500;
        let (s, mut peer) = pair(4096);
        let mut expected_bytes = 0u64;
        for w in 0..WRITERS {
            for seq in 0..PER_WRITER {
                expected_bytes += 12 + 1 + ((seq as u64 * 37 + w as u64 * 101) % 3000);
            }
        }
        let reader = std::thread::spawn(move || {
            let mut next = vec![0u32; WRITERS as usize];
            let mut total = 0;
            let mut hdr = [0u8; 12];
            while total < WRITERS * PER_WRITER {
                peer.read_exact(&mut hdr).unwrap();
                let writer = u32::from_le_bytes(hdr[0..4].try_into().unwrap());
                let seq = u32::from_le_bytes(hdr[4..8].try_into().unwrap());
                let len = u32::from_le_bytes(hdr[8..12].try_into().unwrap()) as usize;
                let mut body = vec![0u8; len];
                peer.read_exact(&mut body).unwrap();
                assert!(
                    body.iter().all(|&b| b == (writer as u8 ^ seq as u8)),
                    "interleaved"
                );
                assert_eq!(seq, next[writer as usize], "lost or duplicated");
                next[writer as usize] += 1;
                total += 1;
            }
            total
        });
        let handles: Vec<_> = (0..WRITERS)
            .map(|w| {
                let s = s.clone();
                spindle_runtime::spawn(move || {
                    for seq in 0..PER_WRITER {
                        let len = 1 + (seq as usize * 37 + w as usize * 101) % 3000;
                        let mut m = IOBuf::new();
                        m.append(&w.to_le_bytes());
                        m.append(&seq.to_le_bytes());
                        m.append(&(len as u32).to_le_bytes());
                        m.append(&vec![w as u8 ^ seq as u8; len]);
                        Socket::write(&s, m).unwrap();
                        if seq % 50 == 0 {
                            spindle_runtime::yield_now();
                        }
                    }
                })
            })
            .collect();
        for h in handles {
            h.join().unwrap();
        }
        assert_eq!(reader.join().unwrap(), WRITERS * PER_WRITER);
        // Everything was written: the list is released and nothing is pending.
        let deadline = Instant::now() + Duration::from_secs(10);
        while s.write.unwritten_bytes() != 0 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(1));
        }
        assert_eq!(s.write.unwritten_bytes(), 0);
        assert!(s.write.queue.is_idle());
        assert_eq!(s.stats.bytes_out.load(Ordering::Relaxed), expected_bytes);
        assert_eq!(
            s.stats.messages_out.load(Ordering::Relaxed),
            u64::from(WRITERS * PER_WRITER)
        );
        Socket::set_failed(&s, RpcError::new(ErrorCode::Close, "test done"));
    }

    /// Messages pushed while the owner held the list without writing yet (it yielded to the
    /// fibers that push them) leave with the owner's own in one `writev`, in push order.
    #[test]
    fn owner_gathers_what_was_pushed_before_its_first_writev() {
        let (s, mut peer) = pair(0);
        let message = |i: u8| IOBuf::from(vec![i; 16]);
        s.write.unwritten.fetch_add(5 * 16, Ordering::AcqRel);
        let mut b = s.write.queue.push(message(0)).expect("the first push owns");
        for i in 1..5 {
            assert!(
                s.write.queue.push(message(i)).is_none(),
                "the owner writes it"
            );
        }
        assert!(matches!(drain(&s, &mut b), Drained::Done));
        assert_eq!(
            s.stats.writes.load(Ordering::Relaxed),
            1,
            "one writev for all"
        );
        assert_eq!(s.write.unwritten_bytes(), 0);
        assert!(s.write.queue.is_idle());
        let mut got = vec![0u8; 5 * 16];
        peer.read_exact(&mut got).unwrap();
        let expected: Vec<u8> = (0..5u8).flat_map(|i| [i; 16]).collect();
        assert_eq!(got, expected, "push order kept");
        Socket::set_failed(&s, RpcError::new(ErrorCode::Close, "test done"));
    }

    /// A peer that never reads: writes fail fast with EOVERCROWDED once
    /// `socket_max_unwritten_bytes` is pending, and failing the socket drops the queue.
    #[test]
    fn overcrowded_then_failed() {
        let (s, _peer) = pair(4096);
        let chunk = IOBuf::from(vec![7u8; 1 << 20]);
        let max = SOCKET_MAX_UNWRITTEN_BYTES.get();
        let mut queued = 0u64;
        let err = loop {
            match Socket::write(&s, chunk.clone()) {
                Ok(()) => queued += 1 << 20,
                Err(e) => break e,
            }
            assert!(queued <= max + (8 << 20), "never overcrowded");
        };
        assert_eq!(err.code, ErrorCode::Overcrowded);
        assert!(err.text.contains("socket_max_unwritten_bytes"), "{err}");
        Socket::set_failed(&s, RpcError::new(ErrorCode::Close, "test done"));
        let deadline = Instant::now() + Duration::from_secs(10);
        while s.write.unwritten_bytes() != 0 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(1));
        }
        assert_eq!(s.write.unwritten_bytes(), 0, "queue dropped on failure");
        let err = Socket::write(&s, chunk).unwrap_err();
        assert_eq!(err.code, ErrorCode::FailedSocket);
    }
}
