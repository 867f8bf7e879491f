//! The load generator shared by `echo_client` (load mode) and `demo`, after brpc's
//! `example/multi_threaded_echo_c++/client.cpp`: N clients (fibers or threads) send
//! synchronous `EchoService.Echo` calls back to back over one channel; every second the
//! reporter prints the QPS and the p50/p99/p999 latency of that second, and at the end a
//! summary over the whole run.
//!
//! Each client records into its own histogram behind a mutex that only the reporter also
//! takes (once a second), so recording is uncontended.

use hdrhistogram::Histogram;
use spindle_iobuf::IOBuf;
use spindle_rpc::channel::Channel;
use spindle_rpc::proto::example::{EchoRequest, EchoServiceStub};
use spindle_rpc::service::CallContext;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// What to run.
pub struct LoadConfig {
    /// Clients sending calls back to back.
    pub clients: usize,
    /// Clients are fibers (true) or OS threads (false).
    pub use_fiber: bool,
    /// Bytes of the request's message.
    pub request_size: usize,
    /// Bytes of the request's attachment.
    pub attachment_size: usize,
    /// How long; `None` = until the process is killed.
    pub duration: Option<Duration>,
}

/// Figures of a whole run.
pub struct Summary {
    /// Calls answered successfully.
    pub ok: u64,
    /// Calls that failed.
    pub errors: u64,
    /// Wall time of the run.
    pub elapsed: Duration,
    /// Latencies of the successful calls, in µs.
    pub latency_us: Histogram<u64>,
}

impl Summary {
    /// One line: calls, QPS, latency percentiles.
    pub fn line(&self) -> String {
        let secs = self.elapsed.as_secs_f64().max(1e-9);
        format!(
            "{} calls in {:.1} s: qps={:.0} {} errors={}",
            self.ok,
            secs,
            self.ok as f64 / secs,
            percentiles(&self.latency_us),
            self.errors
        )
    }
}

/// A latency histogram in µs: 1 µs .. 60 s, 3 significant digits.
pub fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000, 3).expect("valid histogram bounds")
}

/// `p50=..us p99=..us p999=..us` of `h`.
fn percentiles(h: &Histogram<u64>) -> String {
    format!(
        "p50={}us p99={}us p999={}us max={}us",
        h.value_at_quantile(0.5),
        h.value_at_quantile(0.99),
        h.value_at_quantile(0.999),
        h.max()
    )
}

/// One client: calls until `stop`, recording latencies into `hist` (several clients may share
/// one histogram) and counting failures in `errors`.
pub fn client(
    stub: EchoServiceStub<Channel>,
    message: String,
    attachment: IOBuf,
    hist: Arc<Mutex<Histogram<u64>>>,
    errors: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
) {
    let request = EchoRequest { message };
    let mut last_report: Option<Instant> = None;
    while !stop.load(Ordering::Relaxed) {
        let mut ctx = CallContext {
            request_attachment: attachment.clone(),
            ..CallContext::default()
        };
        let start = Instant::now();
        match stub.echo(&mut ctx, &request) {
            Ok(_) => {
                let us = start.elapsed().as_micros().max(1) as u64;
                let mut h = hist.lock().unwrap_or_else(|e| e.into_inner());
                let _ = h.record(us.min(60_000_000));
            }
            Err(e) => {
                errors.fetch_add(1, Ordering::Relaxed);
                if last_report.is_none_or(|t| t.elapsed() >= Duration::from_secs(1)) {
                    eprintln!("call failed: {e}");
                    last_report = Some(Instant::now());
                }
                if start.elapsed() < Duration::from_millis(1) {
                    // Fail-fast errors (server down): do not spin.
                    spindle_runtime::sleep(Duration::from_millis(10));
                }
            }
        }
    }
}

/// Runs the load on `channels` (the clients spread over them in turn), printing one line a
/// second; returns the summary.
pub fn run(channels: &[Channel], cfg: &LoadConfig) -> Summary {
    let stop = Arc::new(AtomicBool::new(false));
    let errors = Arc::new(AtomicU64::new(0));
    let message = "x".repeat(cfg.request_size);
    let attachment = IOBuf::from(vec![b'a'; cfg.attachment_size].as_slice());
    let mut hists = Vec::new();
    let mut fibers = Vec::new();
    let mut threads = Vec::new();
    for i in 0..cfg.clients.max(1) {
        let hist = Arc::new(Mutex::new(new_histogram()));
        hists.push(hist.clone());
        let stub = EchoServiceStub::new(channels[i % channels.len()].clone());
        let (message, attachment) = (message.clone(), attachment.clone());
        let (errors, stop) = (errors.clone(), stop.clone());
        let body = move || client(stub, message, attachment, hist, errors, stop);
        if cfg.use_fiber {
            fibers.push(spindle_runtime::spawn(body));
        } else {
            threads.push(std::thread::spawn(body));
        }
    }
    let start = Instant::now();
    let mut total = new_histogram();
    let mut second = new_histogram();
    let mut errors_seen = 0;
    let mut tick = 0u64;
    loop {
        tick += 1;
        let next = start + Duration::from_secs(tick);
        let end = cfg.duration.map(|d| start + d);
        let wake = end.map_or(next, |e| e.min(next));
        std::thread::sleep(wake.saturating_duration_since(Instant::now()));
        second.reset();
        for h in &hists {
            let mut h = h.lock().unwrap_or_else(|e| e.into_inner());
            let _ = second.add(&*h);
            h.reset();
        }
        let _ = total.add(&second);
        let errs = errors.load(Ordering::Relaxed);
        println!(
            "[{:>3}s] qps={:<8} {} errors={}",
            tick,
            second.len(),
            percentiles(&second),
            errs - errors_seen
        );
        errors_seen = errs;
        if end.is_some_and(|e| Instant::now() >= e) {
            break;
        }
    }
    stop.store(true, Ordering::Relaxed);
    for f in fibers {
        let _ = f.join();
    }
    for t in threads {
        let _ = t.join();
    }
    let elapsed = start.elapsed();
    for h in &hists {
        let _ = total.add(&*h.lock().unwrap_or_else(|e| e.into_inner()));
    }
    Summary {
        ok: total.len(),
        errors: errors.load(Ordering::Relaxed),
        elapsed,
        latency_us: total,
    }
}
