//! Figures, not checks (ignored by default; never asserts on speed):
//! `cargo test --release -p spindle-rdma --test endpoint_measure -- --ignored --nocapture`.
//! Streams 256 MiB one way over the software fabric (writer thread, reader threads in event
//! mode) and ping-pongs 64-byte messages; prints wall time and process CPU per MiB / per round
//! trip (the fabric's own threads included). The IOBuf allocator is a's registered pool, so
//! a sends without copying.

mod common;

use common::endpoint::*;
use spindle_iobuf::IOBuf;
use spindle_rdma::verbs::wait_readable;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn cpu_seconds() -> f64 {
    // SAFETY: an all-zero rusage is a valid value; getrusage only writes into it.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `ru` is a valid, writable rusage.
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    let t = |tv: libc::timeval| tv.tv_sec as f64 + tv.tv_usec as f64 / 1e6;
    t(ru.ru_utime) + t(ru.ru_stime)
}

#[test]
#[ignore]
fn stream_and_ping_pong_figures() {
    const TOTAL: usize = 256 << 20;
    const CHUNK: usize = 1 << 20;
    let (a, b) = pair();
    // IOBufs come from a's registered pool: the writer sends without copying.
    a.context().install_iobuf_allocator().unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let signal = Arc::new(WindowSignal::default());
    let a_reader = spawn_reader(&a, &signal, &stop, &Default::default());
    let writer = {
        let (a, signal) = (a.clone(), signal.clone());
        std::thread::spawn(move || {
            let chunk = pattern(CHUNK, 1);
            for _ in 0..TOTAL / CHUNK {
                let mut buf = IOBuf::new();
                buf.append(&chunk);
                signal.write_all(&a, &mut buf);
            }
        })
    };
    let (t0, c0) = (Instant::now(), cpu_seconds());
    let mut got = 0;
    while got < TOTAL {
        check_deadline(t0, "stream");
        let _ = wait_readable(b.completion_fd(), Duration::from_millis(1));
        let mut dst = IOBuf::new();
        b.poll(&mut dst).unwrap();
        got += dst.len();
    }
    let (wall, cpu) = (t0.elapsed().as_secs_f64(), cpu_seconds() - c0);
    writer.join().unwrap();
    stop.store(true, Ordering::Release);
    a_reader.join().unwrap();
    let mib = (TOTAL >> 20) as f64;
    println!(
        "stream: {mib} MiB in {wall:.3} s = {:.0} MiB/s, cpu {:.3} ms/MiB; {:?}",
        mib / wall,
        cpu * 1e3 / mib,
        b.stats()
    );

    const ROUNDS: usize = 20_000;
    let (t0, c0) = (Instant::now(), cpu_seconds());
    let msg = pattern(64, 2);
    let (mut a_in, mut b_in) = (IOBuf::new(), IOBuf::new());
    for _ in 0..ROUNDS {
        let mut out = IOBuf::new();
        out.append(&msg);
        while !write_some(&a, &mut out) {
            a.poll(&mut a_in).unwrap();
        }
        while b_in.len() < 64 {
            b.poll(&mut b_in).unwrap();
        }
        while !write_some(&b, &mut b_in) {
            b.poll(&mut b_in).unwrap();
        }
        while a_in.len() < 64 {
            a.poll(&mut a_in).unwrap();
        }
        a_in.clear();
    }
    let (wall, cpu) = (t0.elapsed().as_secs_f64(), cpu_seconds() - c0);
    println!(
        "ping-pong 64 B (busy polling, one thread): {:.1} us/round trip, cpu {:.1} us/round trip",
        wall * 1e6 / ROUNDS as f64,
        cpu * 1e6 / ROUNDS as f64
    );
}
