//! The workload of `rdma_performance` (and of `rdma_bench`), after brpc's
//! `example/rdma_performance`: `depth` fibers keep one synchronous `EchoService.Echo` call each
//! in flight on one channel (so `depth` calls are in flight on its connection), every request
//! carrying an attachment the server echoes back. Reported: calls per second, throughput (the
//! request attachments' bytes per second; as many come back), latency percentiles, and the
//! process's CPU time per call.

#[path = "load.rs"]
#[allow(dead_code)] // only its client lane and histogram are used here
mod load;

use hdrhistogram::Histogram;
use spindle_iobuf::IOBuf;
use spindle_rpc::channel::Channel;
use spindle_rpc::proto::example::EchoServiceStub;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// What to run.
#[derive(Debug, Clone)]
pub struct LoadConfig {
    /// Calls in flight (one fiber each).
    pub depth: usize,
    /// Bytes of the request's message.
    pub request_size: usize,
    /// Bytes of each request's attachment (echoed back).
    pub attachment_size: usize,
    /// How long.
    pub duration: Duration,
    /// Print a line every second.
    pub print_every_second: bool,
}

/// Figures of a run (or of one second of it).
#[derive(Debug, Clone)]
pub struct Figures {
    /// Calls answered.
    pub calls: u64,
    /// Calls failed.
    pub errors: u64,
    /// Wall time.
    pub elapsed: Duration,
    /// Attachment bytes sent (as many were received).
    pub bytes: u64,
    /// Latencies in µs.
    pub latency_us: Histogram<u64>,
    /// CPU time of the whole process (user + system), µs.
    pub cpu_us: u64,
}

impl Figures {
    /// Calls per second.
    pub fn qps(&self) -> f64 {
        self.calls as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    /// Attachment MB/s (10^6 bytes), one direction.
    pub fn mb_per_s(&self) -> f64 {
        self.bytes as f64 / 1e6 / self.elapsed.as_secs_f64().max(1e-9)
    }

    /// Process CPU µs per call.
    pub fn cpu_per_call(&self) -> f64 {
        self.cpu_us as f64 / (self.calls.max(1) as f64)
    }

    /// One line of figures.
    pub fn line(&self) -> String {
        format!(
            "qps={:.0} throughput={:.1}MB/s p50={}us p99={}us cpu={:.1}us/call errors={}",
            self.qps(),
            self.mb_per_s(),
            self.latency_us.value_at_quantile(0.5),
            self.latency_us.value_at_quantile(0.99),
            self.cpu_per_call(),
            self.errors
        )
    }
}

/// CPU time (user + system) of this process so far, in µs.
pub fn process_cpu_us() -> u64 {
    // SAFETY: `getrusage` fills the zeroed, live `rusage` we pass.
    let ru = unsafe {
        let mut ru: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_SELF, &mut ru);
        ru
    };
    let us = |t: libc::timeval| t.tv_sec as u64 * 1_000_000 + t.tv_usec as u64;
    us(ru.ru_utime) + us(ru.ru_stime)
}

/// Runs the load on `channel`; returns the figures of the whole run.
pub fn run(channel: &Channel, cfg: &LoadConfig) -> Figures {
    let stop = Arc::new(AtomicBool::new(false));
    let errors = Arc::new(AtomicU64::new(0));
    let hist = Arc::new(Mutex::new(load::new_histogram()));
    let message = "x".repeat(cfg.request_size);
    let attachment = IOBuf::from(vec![b'a'; cfg.attachment_size]);
    let fibers: Vec<_> = (0..cfg.depth.max(1))
        .map(|_| {
            let stub = EchoServiceStub::new(channel.clone());
            let (message, attachment) = (message.clone(), attachment.clone());
            let (hist, errors, stop) = (hist.clone(), errors.clone(), stop.clone());
            spindle_runtime::spawn(move || {
                load::client(stub, message, attachment, hist, errors, stop)
            })
        })
        .collect();
    let start = Instant::now();
    let cpu0 = process_cpu_us();
    let mut total = load::new_histogram();
    let (mut tick, mut errors_seen, mut cpu_seen) = (0u64, 0u64, cpu0);
    let mut last = start;
    loop {
        tick += 1;
        let wake = (start + Duration::from_secs(tick)).min(start + cfg.duration);
        std::thread::sleep(wake.saturating_duration_since(Instant::now()));
        let second = std::mem::replace(
            &mut *hist.lock().unwrap_or_else(|e| e.into_inner()),
            load::new_histogram(),
        );
        let _ = total.add(&second);
        let (errs, cpu, now) = (
            errors.load(Ordering::Relaxed),
            process_cpu_us(),
            Instant::now(),
        );
        if cfg.print_every_second {
            let f = Figures {
                calls: second.len(),
                errors: errs - errors_seen,
                elapsed: now - last,
                bytes: second.len() * cfg.attachment_size as u64,
                latency_us: second,
                cpu_us: cpu - cpu_seen,
            };
            println!("[{tick:>3}s] {}", f.line());
        }
        (errors_seen, cpu_seen, last) = (errs, cpu, now);
        if now >= start + cfg.duration {
            break;
        }
    }
    let elapsed = start.elapsed();
    let cpu_us = process_cpu_us() - cpu0;
    stop.store(true, Ordering::Relaxed);
    for f in fibers {
        let _ = f.join();
    }
    let _ = total.add(&*hist.lock().unwrap_or_else(|e| e.into_inner()));
    Figures {
        calls: total.len(),
        errors: errors.load(Ordering::Relaxed),
        elapsed,
        bytes: total.len() * cfg.attachment_size as u64,
        latency_us: total,
        cpu_us,
    }
}

/// The transports of this process's connections, e.g. `["rdma qp=..."]` (channels' and
/// servers' sockets alike; listeners say `tcp`).
pub fn transports() -> Vec<String> {
    let mut v = Vec::new();
    spindle_rpc::socket::SOCKET_MAP.for_each_live(|s| v.push(s.transport.describe()));
    v
}
