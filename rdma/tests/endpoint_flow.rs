//! Flow control under a slow receiver, with the threads the RPC stack will use: a writer
//! thread that waits for `window_opened` after `WouldBlock`, a reader thread per side in event
//! mode (the receiver's polls only every few milliseconds). No loss, duplication or
//! reordering; the windows stay within their capacities; the sender really blocks.

mod common;

use common::endpoint::*;
use parking_lot::{Condvar, Mutex};
use spindle_iobuf::IOBuf;
use spindle_rdma::verbs::wait_readable;
use spindle_rdma::EndpointConfig;
use std::io;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Messages of 8-byte sequence numbers padded to varied sizes.
const MESSAGES: u64 = 3000;

#[test]
fn slow_receiver_blocks_the_writer_without_loss() {
    // Small queues: the window (16 - 3 = 13 messages) closes often.
    let cfg = EndpointConfig {
        sq_size: 16,
        rq_size: 16,
        ..EndpointConfig::default()
    };
    let (a, b) = pair_with(&context(), &cfg, &context(), &cfg);
    let opened = Arc::new((Mutex::new(0u64), Condvar::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let would_block = Arc::new(AtomicU64::new(0));

    // a's reader: handles a's completions (send completions, pure ACKs) and wakes the writer.
    let a_reader = {
        let (a, opened, stop) = (a.clone(), opened.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut sink = IOBuf::new();
            let mut windows_opened = 0u64;
            while !stop.load(Ordering::Acquire) {
                let _ = wait_readable(a.completion_fd(), Duration::from_millis(5));
                let out = a.poll(&mut sink).unwrap();
                let w = a.window();
                assert!(w.sq_window() <= w.local_capacity());
                assert!(w.remote_rq_window() <= w.local_capacity());
                if out.window_opened {
                    windows_opened += 1;
                    let (m, cv) = &*opened;
                    *m.lock() += 1;
                    cv.notify_all();
                }
            }
            assert!(sink.is_empty(), "b sent no data");
            windows_opened
        })
    };

    // The writer: one message per call, blocking on the window.
    let writer = {
        let (a, opened, would_block) = (a.clone(), opened.clone(), would_block.clone());
        std::thread::spawn(move || {
            for seq in 0..MESSAGES {
                let mut msg = IOBuf::new();
                let len = 8 + (seq as usize * 37) % 3000;
                let mut body = pattern(len, seq);
                body[..8].copy_from_slice(&seq.to_be_bytes());
                msg.append(&(len as u32).to_be_bytes());
                msg.append(&body);
                let start = Instant::now();
                while !msg.is_empty() {
                    check_deadline(start, "writer");
                    let (m, cv) = &*opened;
                    let seen = *m.lock();
                    match a.cut_from_iobufs(&mut [&mut msg]) {
                        Ok(_) => {}
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                            would_block.fetch_add(1, Ordering::Relaxed);
                            let mut g = m.lock();
                            while *g == seen {
                                let timed_out = cv.wait_for(&mut g, Duration::from_secs(10));
                                assert!(!timed_out.timed_out(), "window never reopened");
                            }
                        }
                        Err(e) => panic!("{e}"),
                    }
                }
            }
        })
    };

    // b: the slow reader, parsing the stream as it goes.
    let mut stream = IOBuf::new();
    let mut next = 0u64;
    let start = Instant::now();
    let mut rounds = 0u64;
    while next < MESSAGES {
        check_deadline(start, &format!("receiver at {next}"));
        std::thread::sleep(Duration::from_millis(2));
        rounds += 1;
        b.poll(&mut stream).unwrap();
        let w = b.window();
        assert!(w.sq_window() <= w.local_capacity());
        while let Some(h) = stream.fetch_array::<4>() {
            let len = u32::from_be_bytes(h) as usize;
            if stream.len() < 4 + len {
                break;
            }
            stream.pop_front(4);
            let body = stream.split_to(len).to_vec();
            let seq = u64::from_be_bytes(body[..8].try_into().unwrap());
            assert_eq!(seq, next, "lost, duplicated or reordered");
            let mut expect = pattern(len, seq);
            expect[..8].copy_from_slice(&seq.to_be_bytes());
            assert_eq!(body, expect, "message {seq} corrupted");
            next += 1;
        }
    }
    writer.join().unwrap();
    stop.store(true, Ordering::Release);
    let windows_opened = a_reader.join().unwrap();
    assert!(stream.is_empty());
    let blocked = would_block.load(Ordering::Relaxed);
    assert!(blocked > 0, "the slow receiver never closed the window");
    assert!(windows_opened > 0);
    assert!(b.stats().pure_acks_sent > 0, "credits go back in pure ACKs");
    eprintln!("{rounds} receiver rounds, {blocked} WouldBlock, {windows_opened} window_opened");
}
