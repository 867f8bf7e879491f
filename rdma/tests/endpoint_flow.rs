//! Flow control under a slow receiver, with the threads the RPC stack will use: a writer
//! thread that waits for `window_opened` after `WouldBlock`, a reader thread per side in event
//! mode (the receiver's polls only every few milliseconds). No loss, duplication or
//! reordering; the windows stay within their capacities; the sender really blocks.

mod common;

use common::endpoint::*;
use spindle_iobuf::IOBuf;
use spindle_rdma::EndpointConfig;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
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
    let signal = Arc::new(WindowSignal::default());
    let stop = Arc::new(AtomicBool::new(false));
    // a's reader: handles a's completions (send completions, pure ACKs) and wakes the writer.
    let a_reader = spawn_reader(&a, &signal, &stop, &Default::default());

    // The writer: one message per call, blocking on the window.
    let writer = {
        let (a, signal) = (a.clone(), signal.clone());
        std::thread::spawn(move || {
            let mut blocked = 0;
            for seq in 0..MESSAGES {
                let mut msg = IOBuf::new();
                let len = 8 + (seq as usize * 37) % 3000;
                let mut body = pattern(len, seq);
                body[..8].copy_from_slice(&seq.to_be_bytes());
                msg.append(&(len as u32).to_be_bytes());
                msg.append(&body);
                blocked += signal.write_all(&a, &mut msg);
            }
            blocked
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
    let blocked = writer.join().unwrap();
    stop.store(true, Ordering::Release);
    assert!(a_reader.join().unwrap().is_empty(), "b sent no data");
    let windows_opened = signal.count();
    assert!(stream.is_empty());
    assert!(blocked > 0, "the slow receiver never closed the window");
    assert!(windows_opened > 0);
    assert!(b.stats().pure_acks_sent > 0, "credits go back in pure ACKs");
    eprintln!("{rounds} receiver rounds, {blocked} WouldBlock, {windows_opened} window_opened");
}

/// Both sides write and read at once, each with a writer thread and a reader thread (the
/// writer's `cut_from_iobufs` runs concurrently with the reader's `poll` on the same
/// endpoint): both streams arrive intact.
#[test]
fn both_directions_at_once_with_concurrent_writer_and_reader() {
    let cfg = EndpointConfig {
        sq_size: 32,
        rq_size: 32,
        ..EndpointConfig::default()
    };
    let (a, b) = pair_with(&context(), &cfg, &context(), &cfg);
    let stop = Arc::new(AtomicBool::new(false));
    let mut readers = Vec::new();
    let mut writers = Vec::new();
    let mut expected = Vec::new();
    let mut progress = Vec::new();
    for (seed, ep) in [(1u64, &a), (2, &b)] {
        let signal = Arc::new(WindowSignal::default());
        let got = Arc::new(AtomicUsize::new(0));
        readers.push(spawn_reader(ep, &signal, &stop, &got));
        progress.push(got);
        let data = pattern(3 << 20, seed);
        expected.push(data.clone());
        let ep = ep.clone();
        writers.push(std::thread::spawn(move || {
            // Pieces of varied sizes, several per call.
            let mut at = 0;
            let mut i = 0;
            while at < data.len() {
                let mut bufs: Vec<IOBuf> = (0..3)
                    .map(|k| {
                        let n = (1 + (i * 7 + k) * 997 % 40_000).min(data.len() - at);
                        let mut b = IOBuf::new();
                        b.append(&data[at..at + n]);
                        at += n;
                        b
                    })
                    .collect();
                i += 1;
                for b in bufs.iter_mut() {
                    signal.write_all(&ep, b);
                }
            }
        }));
    }
    for w in writers {
        w.join().unwrap();
    }
    let start = Instant::now();
    // a's reader gets b's stream and the other way round.
    while progress[0].load(Ordering::Acquire) < expected[1].len()
        || progress[1].load(Ordering::Acquire) < expected[0].len()
    {
        check_deadline(start, "streams incomplete");
        std::thread::sleep(Duration::from_millis(2));
    }
    stop.store(true, Ordering::Release);
    let got: Vec<IOBuf> = readers.into_iter().map(|r| r.join().unwrap()).collect();
    assert!(got[0].equals(&expected[1]), "b -> a differs");
    assert!(got[1].equals(&expected[0]), "a -> b differs");
}
