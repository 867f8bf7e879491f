//! IOBuf against `bytes`, side by side in one run.
//!
//! Cases (each Spindle vs the `bytes` way a user would write it):
//! - `append_small`: append many small pieces (4..=40 bytes) — `IOBuf::append` vs
//!   `BytesMut::extend_from_slice`; `append_small_appender` does the same with `IOBufAppender`.
//! - `cut_framed`: cut 1,000,000 framed messages (12-byte header + payload) out of one large
//!   buffer, peeking the header first — `fetch_array` + `pop_front` + `split_to` vs
//!   `BytesMut::split_to` + `freeze`.
//! - `move_attachment`: take a 1 MiB attachment out of a request buffer and put it behind a new
//!   header in a response buffer — `cutn` + `append_owned` vs `split_to` + building the response
//!   `BytesMut` (which copies the attachment).
//! - `fd_throughput`: 4 KiB messages through a socketpair; the writer batches and `writev`s, the
//!   reader `readv`s and cuts messages — `IOBuf::cut_into_fd` / `IOPortal::append_from_fd` vs
//!   `write` from a `BytesMut` / `read` into a `BytesMut` + `split_to`.
//!
//! Usage: `cargo run --release -p spindle-benches --bin iobuf_bench [-- --quick] [--only <case>]`.
//! Prints a table, then one `RESULT` line per case. Each case is split into short batches; every
//! batch runs both sides back to back (which goes first alternates), `rounds` times, and a side's
//! time is the sum of its per-batch minima (filters out preemption on a shared machine).
//! `IOBUF_BENCH_SIDE=spindle|bytes` runs one side only (for profiling).

use bytes::{Buf, BufMut, Bytes, BytesMut};
use spindle_iobuf::{IOBuf, IOBufAppender, IOPortal};
use std::collections::HashSet;
use std::hint::black_box;
use std::os::fd::RawFd;
use std::time::{Duration, Instant};

/// Sizes of one run.
struct Config {
    /// Rounds per case; the best round counts.
    rounds: usize,
    /// Small pieces appended per round.
    small_pieces: usize,
    /// Framed messages cut per round.
    messages: usize,
    /// Attachment moves per round.
    moves: usize,
    /// Bytes through the socketpair per round.
    fd_bytes: usize,
}

/// One measured case.
struct Case {
    name: &'static str,
    /// Per-op time, Spindle.
    spindle: f64,
    /// Per-op time, peer.
    peer: f64,
    unit: &'static str,
    /// Bytes copied per op (Spindle, peer), measured by pointer identity where it applies.
    copies: (String, String),
    note: &'static str,
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let cfg = if quick {
        Config {
            rounds: 5,
            small_pieces: 1_000_000,
            messages: 1_000_000,
            moves: 2_000,
            fd_bytes: 64 << 20,
        }
    } else {
        Config {
            rounds: 11,
            small_pieces: 4_000_000,
            messages: 1_000_000,
            moves: 10_000,
            fd_bytes: 256 << 20,
        }
    };
    println!(
        "iobuf_bench{} — block size {} B",
        if quick { " --quick" } else { "" },
        spindle_iobuf::block_size()
    );
    // `--only <case>` runs one case (for profiling).
    let args: Vec<String> = std::env::args().collect();
    let only = args
        .iter()
        .position(|a| a == "--only")
        .and_then(|i| args.get(i + 1).cloned());
    let want = |name: &str| only.as_deref().is_none_or(|o| o == name);
    let mut cases = Vec::new();
    if want("append_small") {
        cases.push(append_small(&cfg, false));
    }
    if want("append_small_appender") {
        cases.push(append_small(&cfg, true));
    }
    if want("cut_framed") {
        cases.push(cut_framed(&cfg));
    }
    if want("move_attachment") {
        cases.push(move_attachment(&cfg));
    }
    if want("fd_throughput") {
        cases.push(fd_throughput(&cfg));
    }
    println!();
    println!(
        "{:<24} {:>14} {:>14} {:>8} {:>8}  {:>22}  note",
        "case", "spindle", "bytes", "ratio", "unit", "copied/op (sp | bytes)"
    );
    for c in &cases {
        println!(
            "{:<24} {:>14.2} {:>14.2} {:>8.3} {:>8}  {:>22}  {}",
            c.name,
            c.spindle,
            c.peer,
            c.spindle / c.peer,
            c.unit,
            format!("{} | {}", c.copies.0, c.copies.1),
            c.note
        );
    }
    println!();
    for c in &cases {
        println!(
            "RESULT {} spindle={:.3} bytes={:.3} ratio={:.3} unit={} better=lower",
            c.name,
            c.spindle,
            c.peer,
            c.spindle / c.peer,
            c.unit
        );
    }
}

/// Runs `batches` small batches of each side, back to back (both sides on the same batch, so both
/// see the same machine; the side that goes first alternates between rounds and batches),
/// `rounds` times; returns the sum over batches of each batch's best time. Filters out
/// preemption on a shared, noisy machine better than whole-run minima.
fn min_sum(
    rounds: usize,
    batches: usize,
    mut spindle: impl FnMut(usize) -> Duration,
    mut peer: impl FnMut(usize) -> Duration,
) -> (Duration, Duration) {
    let side = std::env::var("IOBUF_BENCH_SIDE").unwrap_or_default();
    let mut s = vec![Duration::MAX; batches];
    let mut p = vec![Duration::MAX; batches];
    for round in 0..rounds {
        for i in 0..batches {
            // Which side goes first alternates, so neither always runs on caches and threads
            // the other just warmed (or disturbed).
            let spindle_first = (round + i) % 2 == 0;
            for turn in 0..2 {
                if (turn == 0) == spindle_first {
                    if side != "bytes" {
                        s[i] = s[i].min(spindle(i));
                    }
                } else if side != "spindle" {
                    p[i] = p[i].min(peer(i));
                }
            }
        }
    }
    let sum = |v: Vec<Duration>| v.into_iter().filter(|d| *d != Duration::MAX).sum();
    (sum(s), sum(p))
}

fn per_op(d: Duration, ops: usize) -> f64 {
    d.as_secs_f64() * 1e9 / ops as f64
}

/// Deterministic small piece sizes 4..=40.
fn small_sizes(n: usize) -> Vec<usize> {
    let mut x = 0x2545_f491_4f6c_dd1du64;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            4 + (x % 37) as usize
        })
        .collect()
}

/// Small pieces per built message in `append_small` (~22 KiB: a few blocks, like a large RPC
/// response serialised field by field).
const PIECES_PER_MESSAGE: usize = 1024;

fn append_small(cfg: &Config, appender: bool) -> Case {
    let sizes = small_sizes(cfg.small_pieces);
    let src: Vec<u8> = (0..64).collect();
    let total: usize = sizes.iter().sum();
    const MSGS_PER_BATCH: usize = 16;
    let batches: Vec<&[usize]> = sizes.chunks(PIECES_PER_MESSAGE * MSGS_PER_BATCH).collect();
    let (s, p) = min_sum(
        cfg.rounds,
        batches.len(),
        |i| {
            let t = Instant::now();
            for msg in batches[i].chunks(PIECES_PER_MESSAGE) {
                let mut b = IOBuf::new();
                if appender {
                    let mut app = IOBufAppender::new(&mut b);
                    for &n in msg {
                        app.append(&src[..n]);
                    }
                } else {
                    for &n in msg {
                        b.append(&src[..n]);
                    }
                }
                black_box(&b);
            }
            t.elapsed()
        },
        |i| {
            let t = Instant::now();
            for msg in batches[i].chunks(PIECES_PER_MESSAGE) {
                let mut b = BytesMut::new();
                for &n in msg {
                    b.extend_from_slice(&src[..n]);
                }
                black_box(&b);
            }
            t.elapsed()
        },
    );
    // Correctness once, outside the timing.
    let mut b = IOBuf::new();
    let mut v = Vec::new();
    for &n in &sizes[..PIECES_PER_MESSAGE] {
        b.append(&src[..n]);
        v.extend_from_slice(&src[..n]);
    }
    assert_eq!(b, v);
    let _ = total;
    Case {
        name: if appender {
            "append_small_appender"
        } else {
            "append_small"
        },
        spindle: per_op(s, sizes.len()),
        peer: per_op(p, sizes.len()),
        unit: "ns/piece",
        copies: ("1x".into(), "1x+regrow".into()),
        note: "4..40 B pieces, 1024 per buffer, buffer dropped",
    }
}

/// Payload sizes of the framed messages: 20..=300 bytes.
fn frame_sizes(n: usize) -> Vec<usize> {
    small_sizes(n).into_iter().map(|s| 20 + s * 7).collect()
}

/// Writes one frame: "PRPC", body size (u32 BE), meta size (u32 BE), body.
fn put_frame(out: &mut impl BufMut, body: &[u8]) {
    out.put_slice(b"PRPC");
    out.put_u32(body.len() as u32);
    out.put_u32(0);
    out.put_slice(body);
}

/// Messages handed on and dropped together in `cut_framed`.
const QUEUE: usize = 64;

/// Messages per read buffer in `cut_framed` (~1.9 MB buffers, cut 100 times per million).
const MESSAGES_PER_BUFFER: usize = 10_000;

fn cut_framed(cfg: &Config) -> Case {
    let sizes = frame_sizes(MESSAGES_PER_BUFFER);
    let batches = cfg.messages.div_ceil(MESSAGES_PER_BUFFER);
    let n_msgs = batches * MESSAGES_PER_BUFFER;
    let body: Vec<u8> = (0..=255).cycle().take(400).collect();
    let mut stream_io = IOBuf::new();
    let mut stream_bm = BytesMut::new();
    for &n in &sizes {
        put_frame(&mut stream_io, &body[..n]);
        put_frame(&mut stream_bm, &body[..n]);
    }
    let total = stream_io.len();
    let ids: HashSet<usize> = stream_io.pieces().map(|p| p.block_id()).collect();
    let spindle_round = |verify: bool, batches: usize| {
        let mut d = Duration::ZERO;
        let mut copied = 0usize;
        for _ in 0..batches {
            let mut buf = stream_io.clone();
            let mut queue: Vec<IOBuf> = Vec::with_capacity(QUEUE);
            let t = Instant::now();
            let mut got = 0usize;
            let mut bytes = 0usize;
            while let Some(h) = buf.fetch_array::<12>() {
                let body_len = u32::from_be_bytes([h[4], h[5], h[6], h[7]]) as usize;
                if &h[..4] != b"PRPC" || buf.len() < 12 + body_len {
                    break;
                }
                buf.pop_front(12);
                let msg = buf.split_to(body_len);
                if verify {
                    copied += msg
                        .pieces()
                        .filter(|p| !ids.contains(&p.block_id()))
                        .map(|p| p.as_slice().len())
                        .sum::<usize>();
                }
                bytes += msg.len();
                got += 1;
                // Hand the message on, as the input messenger does (a batch of 64 is processed
                // and dropped at a time).
                queue.push(msg);
                if queue.len() == QUEUE {
                    black_box(&queue);
                    queue.clear();
                }
            }
            queue.clear();
            d += t.elapsed();
            assert_eq!(got, MESSAGES_PER_BUFFER);
            assert_eq!(bytes + 12 * got, total);
        }
        (d, copied)
    };
    let peer_round = |verify: bool, batches: usize| {
        let mut d = Duration::ZERO;
        let mut copied = 0usize;
        for _ in 0..batches {
            let mut buf = stream_bm.clone();
            let range = buf.as_ptr() as usize..buf.as_ptr() as usize + buf.len();
            let mut queue: Vec<Bytes> = Vec::with_capacity(QUEUE);
            let t = Instant::now();
            let mut got = 0usize;
            let mut bytes = 0usize;
            while buf.len() >= 12 {
                let h = &buf[..12];
                let body_len = u32::from_be_bytes([h[4], h[5], h[6], h[7]]) as usize;
                if &h[..4] != b"PRPC" || buf.len() < 12 + body_len {
                    break;
                }
                buf.advance(12);
                let msg: Bytes = buf.split_to(body_len).freeze();
                if verify && !range.contains(&(msg.as_ptr() as usize)) {
                    copied += msg.len();
                }
                bytes += msg.len();
                got += 1;
                // Hand the message on, as the input messenger does (a batch of 64 is processed
                // and dropped at a time).
                queue.push(msg);
                if queue.len() == QUEUE {
                    black_box(&queue);
                    queue.clear();
                }
            }
            queue.clear();
            d += t.elapsed();
            assert_eq!(got, MESSAGES_PER_BUFFER);
            assert_eq!(bytes + 12 * got, total);
        }
        (d, copied)
    };
    let (_, sc) = spindle_round(true, 1);
    let (_, pc) = peer_round(true, 1);
    let sc = sc * batches;
    let pc = pc * batches;
    let (s, p) = min_sum(
        cfg.rounds,
        batches,
        |_| spindle_round(false, 1).0,
        |_| peer_round(false, 1).0,
    );
    Case {
        name: "cut_framed",
        spindle: per_op(s, n_msgs),
        peer: per_op(p, n_msgs),
        unit: "ns/msg",
        copies: (format!("{}", sc / n_msgs), format!("{}", pc / n_msgs)),
        note: "peek 12-B header, cut 20..300-B body",
    }
}

const ATTACHMENT: usize = 1 << 20;

fn move_attachment(cfg: &Config) -> Case {
    let att: Vec<u8> = (0..ATTACHMENT).map(|i| (i * 13) as u8).collect();
    let mut header = [0u8; 12];
    header[..4].copy_from_slice(b"PRPC");
    header[4..8].copy_from_slice(&(ATTACHMENT as u32).to_be_bytes());

    // Spindle: verify zero copy once by block identity.
    let mut req = IOBuf::new();
    req.append(&header);
    req.append(&att);
    let ids: HashSet<usize> = req.pieces().map(|p| p.block_id()).collect();
    let mut sp_copied = 0;
    let mut step = |req: &mut IOBuf, verify: bool| {
        let h: [u8; 12] = req.fetch_array().expect("header");
        req.pop_front(12);
        let mut a = IOBuf::new();
        req.cutn(&mut a, ATTACHMENT);
        let mut resp = IOBuf::new();
        resp.append(&h);
        resp.append_owned(a);
        if verify {
            sp_copied = resp
                .pieces()
                .skip(1)
                .filter(|p| !ids.contains(&p.block_id()))
                .map(|p| p.as_slice().len())
                .sum::<usize>();
        }
        *req = resp;
    };
    step(&mut req, true);
    // Peer: split the attachment off (zero copy) and build the response buffer (copies it).
    let mut breq = BytesMut::new();
    breq.extend_from_slice(&header);
    breq.extend_from_slice(&att);
    let bstep = |req: &mut BytesMut| {
        let h = req.split_to(12);
        let a: Bytes = req.split_to(ATTACHMENT).freeze();
        let mut resp = BytesMut::with_capacity(12 + a.len());
        resp.extend_from_slice(&h);
        resp.extend_from_slice(&a);
        *req = resp;
    };
    const MOVES_PER_BATCH: usize = 10;
    let (s, p) = min_sum(
        cfg.rounds,
        cfg.moves / MOVES_PER_BATCH,
        |_| {
            let t = Instant::now();
            for _ in 0..MOVES_PER_BATCH {
                step(&mut req, false);
            }
            black_box(&req);
            t.elapsed()
        },
        |_| {
            let t = Instant::now();
            for _ in 0..MOVES_PER_BATCH {
                bstep(&mut breq);
            }
            black_box(&breq);
            t.elapsed()
        },
    );
    assert_eq!(req.len(), 12 + ATTACHMENT);
    assert_eq!(req.to_vec()[12..], att[..]);
    assert_eq!(breq[12..], att[..]);
    Case {
        name: "move_attachment",
        spindle: per_op(s, cfg.moves / MOVES_PER_BATCH * MOVES_PER_BATCH),
        peer: per_op(p, cfg.moves / MOVES_PER_BATCH * MOVES_PER_BATCH),
        unit: "ns/move",
        copies: (format!("{sp_copied}"), format!("{ATTACHMENT}")),
        note: "1 MiB: cut from request, append to response",
    }
}

/// Size of one message through the socketpair.
const FD_MSG: usize = 4096;
/// Messages batched per write.
const FD_BATCH: usize = 64;
/// Bytes through one socketpair in one measured transfer.
const FD_BATCH_BYTES: usize = 8 << 20;
/// Largest single read.
const FD_READ: usize = 512 * 1024;

fn socketpair() -> (RawFd, RawFd) {
    let mut fds = [0; 2];
    // SAFETY: fds has room for two descriptors.
    let rc = unsafe { libc::socketpair(libc::AF_UNIX, libc::SOCK_STREAM, 0, fds.as_mut_ptr()) };
    assert_eq!(rc, 0, "socketpair");
    (fds[0], fds[1])
}

fn close(fd: RawFd) {
    // SAFETY: closing an fd this benchmark owns.
    unsafe { libc::close(fd) };
}

fn fd_spindle(total: usize) -> Duration {
    let (r, w) = socketpair();
    let src: Vec<u8> = (0..FD_MSG).map(|i| i as u8).collect();
    let t = Instant::now();
    let writer = std::thread::spawn(move || {
        let mut sent = 0;
        // Reused between batches, like the peer's `BytesMut`.
        let mut out = IOBuf::new();
        while sent < total {
            for _ in 0..FD_BATCH.min((total - sent) / FD_MSG) {
                out.append(&src);
            }
            sent += out.len();
            while !out.is_empty() {
                out.cut_into_fd(w).expect("writev");
            }
        }
        close(w);
    });
    let mut p = IOPortal::new();
    let mut msgs = 0;
    loop {
        let n = p.append_from_fd(r, FD_READ).expect("readv");
        while p.len() >= FD_MSG {
            let mut m = IOBuf::new();
            p.cutn(&mut m, FD_MSG);
            black_box(&m);
            msgs += 1;
        }
        if n == 0 {
            break;
        }
    }
    writer.join().unwrap();
    let d = t.elapsed();
    close(r);
    assert_eq!(msgs * FD_MSG, total);
    d
}

fn fd_peer(total: usize) -> Duration {
    let (r, w) = socketpair();
    let src: Vec<u8> = (0..FD_MSG).map(|i| i as u8).collect();
    let t = Instant::now();
    let writer = std::thread::spawn(move || {
        let mut sent = 0;
        let mut out = BytesMut::new();
        while sent < total {
            for _ in 0..FD_BATCH.min((total - sent) / FD_MSG) {
                out.extend_from_slice(&src);
            }
            sent += out.len();
            while !out.is_empty() {
                // SAFETY: out is valid for out.len() bytes.
                let rc = unsafe { libc::write(w, out.as_ptr().cast(), out.len()) };
                assert!(rc > 0, "write");
                out.advance(rc as usize);
            }
            out.clear();
        }
        close(w);
    });
    let mut buf = BytesMut::new();
    let mut msgs = 0;
    loop {
        buf.reserve(FD_READ);
        let spare = buf.spare_capacity_mut();
        let want = spare.len().min(FD_READ);
        // SAFETY: reading into the spare capacity; only the bytes read are exposed below.
        let rc = unsafe { libc::read(r, spare.as_mut_ptr().cast(), want) };
        assert!(rc >= 0, "read");
        // SAFETY: `rc` bytes were initialised by read().
        unsafe { buf.set_len(buf.len() + rc as usize) };
        while buf.len() >= FD_MSG {
            let m = buf.split_to(FD_MSG).freeze();
            black_box(&m);
            msgs += 1;
        }
        if rc == 0 {
            break;
        }
    }
    writer.join().unwrap();
    let d = t.elapsed();
    close(r);
    assert_eq!(msgs * FD_MSG, total);
    d
}

fn fd_throughput(cfg: &Config) -> Case {
    // Many short transfers (a fresh socketpair each), Spindle and peer back to back, best of
    // `rounds` per transfer: context switches between the two threads on a busy machine make
    // single long transfers too noisy to compare.
    let per_batch = FD_BATCH_BYTES / FD_MSG * FD_MSG;
    let batches = (cfg.fd_bytes / per_batch).max(1);
    let (s, p) = min_sum(
        cfg.rounds,
        batches,
        |_| fd_spindle(per_batch),
        |_| fd_peer(per_batch),
    );
    let mib = (per_batch * batches) as f64 / (1 << 20) as f64;
    Case {
        name: "fd_throughput",
        spindle: s.as_secs_f64() * 1e9 / mib,
        peer: p.as_secs_f64() * 1e9 / mib,
        unit: "ns/MiB",
        copies: ("1x in".into(), "1x in".into()),
        note: "4 KiB msgs over a socketpair, write+read+cut",
    }
}
