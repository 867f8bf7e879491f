//! Helpers of the endpoint tests: two endpoints connected in one process through their hellos,
//! and loops that drive them in event mode with bounded waits.

use spindle_iobuf::IOBuf;
use spindle_rdma::fabric::FabricDevice;
use spindle_rdma::verbs::{wait_readable, Device};
use spindle_rdma::{EndpointConfig, PreparedEndpoint, RdmaContext, RdmaEndpoint};
use std::io;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Bound on every test loop (never reached when things work).
pub const DEADLINE: Duration = Duration::from_secs(20);

/// A context over a fresh fabric device with small pools (1 MiB regions, up to 64).
pub fn context() -> Arc<RdmaContext> {
    let dev: Arc<dyn Device> = FabricDevice::open().unwrap();
    RdmaContext::with_pool_sizing(dev, 1 << 20, 1 << 20, 64).unwrap()
}

/// Two endpoints connected through `local_hello` / `connect`, each on its own context.
pub fn pair_with(
    ca: &Arc<RdmaContext>,
    cfg_a: &EndpointConfig,
    cb: &Arc<RdmaContext>,
    cfg_b: &EndpointConfig,
) -> (Arc<RdmaEndpoint>, Arc<RdmaEndpoint>) {
    let pa = PreparedEndpoint::new(ca, cfg_a).unwrap();
    let pb = PreparedEndpoint::new(cb, cfg_b).unwrap();
    let (ha, hb) = (pa.local_hello(), pb.local_hello());
    let a = pa.connect(&hb).unwrap();
    let b = pb.connect(&ha).unwrap();
    (Arc::new(a), Arc::new(b))
}

/// Two endpoints of the default configuration on two contexts.
pub fn pair() -> (Arc<RdmaEndpoint>, Arc<RdmaEndpoint>) {
    let cfg = EndpointConfig::default();
    pair_with(&context(), &cfg, &context(), &cfg)
}

/// Writes as much of `out` as the windows allow; `true` if anything was posted.
pub fn write_some(ep: &RdmaEndpoint, out: &mut IOBuf) -> bool {
    if out.is_empty() {
        return false;
    }
    match ep.cut_from_iobufs(&mut [out]) {
        Ok(n) => n > 0,
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => false,
        Err(e) => panic!("write failed: {e}"),
    }
}

/// Waits a little for a completion on either endpoint (event mode).
pub fn wait_either(a: &RdmaEndpoint, b: &RdmaEndpoint) {
    let _ = wait_readable(a.completion_fd(), Duration::from_millis(1));
    let _ = wait_readable(b.completion_fd(), Duration::from_millis(1));
}

/// Asserts the deadline was not passed.
pub fn check_deadline(start: Instant, what: &str) {
    assert!(start.elapsed() < DEADLINE, "stalled: {what}");
}

/// Deterministic test bytes.
pub fn pattern(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// Event mode, one thread: `a` sends `out`, `b` echoes everything it receives, until `a` got
/// `total` bytes back; returns them.
pub fn echo(a: &RdmaEndpoint, b: &RdmaEndpoint, out: &mut IOBuf, total: usize) -> IOBuf {
    let (mut a_in, mut b_in) = (IOBuf::new(), IOBuf::new());
    let start = Instant::now();
    while a_in.len() < total {
        check_deadline(start, &format!("a got {} of {total}", a_in.len()));
        let mut progress = write_some(a, out);
        progress |= b.poll(&mut b_in).unwrap().completions > 0;
        progress |= write_some(b, &mut b_in);
        progress |= a.poll(&mut a_in).unwrap().completions > 0;
        if !progress {
            wait_either(a, b);
        }
    }
    a_in
}

/// What a writer blocked on `WouldBlock` waits for: the reader bumps it on `window_opened`.
#[derive(Default)]
pub struct WindowSignal {
    opened: parking_lot::Mutex<u64>,
    cv: parking_lot::Condvar,
}

impl WindowSignal {
    /// The reader saw `window_opened`.
    pub fn notify(&self) {
        *self.opened.lock() += 1;
        self.cv.notify_all();
    }

    /// How many times so far.
    pub fn count(&self) -> u64 {
        *self.opened.lock()
    }

    /// Writes all of `buf`, waiting for the signal after each `WouldBlock` (taken before the
    /// write, so a signal in between is not lost); returns how many times it blocked.
    pub fn write_all(&self, ep: &RdmaEndpoint, buf: &mut IOBuf) -> u64 {
        let mut blocked = 0;
        let start = Instant::now();
        while !buf.is_empty() {
            check_deadline(start, "writer");
            let seen = self.count();
            match ep.cut_from_iobufs(&mut [buf]) {
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    blocked += 1;
                    let mut g = self.opened.lock();
                    while *g == seen {
                        let r = self.cv.wait_for(&mut g, Duration::from_secs(10));
                        assert!(!r.timed_out(), "window never reopened");
                    }
                }
                Err(e) => panic!("write failed: {e}"),
            }
        }
        blocked
    }
}

/// A reader thread for `ep` in event mode until `stop`: polls after each readiness, passes
/// `window_opened` to `signal`, appends what arrives to the returned IOBuf and publishes its
/// length in `progress`.
pub fn spawn_reader(
    ep: &Arc<RdmaEndpoint>,
    signal: &Arc<WindowSignal>,
    stop: &Arc<AtomicBool>,
    progress: &Arc<AtomicUsize>,
) -> std::thread::JoinHandle<IOBuf> {
    let (ep, signal, stop, progress) = (ep.clone(), signal.clone(), stop.clone(), progress.clone());
    std::thread::spawn(move || {
        let mut got = IOBuf::new();
        while !stop.load(Ordering::Acquire) {
            let _ = wait_readable(ep.completion_fd(), Duration::from_millis(5));
            let out = ep.poll(&mut got).unwrap();
            progress.store(got.len(), Ordering::Release);
            let w = ep.window();
            assert!(w.sq_window() <= w.local_capacity());
            assert!(w.remote_rq_window() <= w.local_capacity());
            if out.window_opened {
                signal.notify();
            }
        }
        got
    })
}
