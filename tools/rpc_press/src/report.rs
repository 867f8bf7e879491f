//! What rpc_press counts: per-client shards (no contention between clients), folded into a
//! [`Second`] every second and a [`Summary`] at the end.

use hdrhistogram::Histogram;
use parking_lot::Mutex;
use std::collections::BTreeMap;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Latency percentiles in microseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Percentiles {
    /// Median.
    pub p50: u64,
    /// 90th percentile.
    pub p90: u64,
    /// 99th percentile.
    pub p99: u64,
    /// 99.9th percentile.
    pub p999: u64,
    /// Largest.
    pub max: u64,
}

impl Percentiles {
    fn of(h: &Histogram<u64>) -> Percentiles {
        if h.is_empty() {
            return Percentiles::default();
        }
        Percentiles {
            p50: h.value_at_quantile(0.5),
            p90: h.value_at_quantile(0.9),
            p99: h.value_at_quantile(0.99),
            p999: h.value_at_quantile(0.999),
            max: h.max(),
        }
    }
}

impl fmt::Display for Percentiles {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "p50={}us p90={}us p99={}us p999={}us max={}us",
            self.p50, self.p90, self.p99, self.p999, self.max
        )
    }
}

/// One second of load.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Second {
    /// Seconds since the start.
    pub elapsed_s: u64,
    /// Successful calls in this second.
    pub qps: u64,
    /// Failed calls in this second.
    pub errors: u64,
    /// Latency of the successful calls.
    pub latency: Percentiles,
}

impl fmt::Display for Second {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "[{:>4}s] qps={} errors={} {}",
            self.elapsed_s, self.qps, self.errors, self.latency
        )
    }
}

/// The whole run.
#[derive(Debug, Clone, PartialEq)]
pub struct Summary {
    /// Wall time of the load.
    pub duration: Duration,
    /// Successful calls.
    pub succeeded: u64,
    /// Failed calls.
    pub failed: u64,
    /// Failures by error: `(count, first message)` keyed by the error's name and code.
    pub errors: BTreeMap<String, (u64, String)>,
    /// Latency of all successful calls.
    pub latency: Percentiles,
    /// Mean latency of the successful calls, microseconds.
    pub mean_us: f64,
    /// The first successful response, as JSON.
    pub first_response: Option<String>,
}

impl Summary {
    /// Successful calls per second over the run.
    pub fn qps(&self) -> f64 {
        let s = self.duration.as_secs_f64();
        if s > 0.0 {
            self.succeeded as f64 / s
        } else {
            0.0
        }
    }
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "summary: {} ok, {} failed in {:.1}s: qps={:.0} mean={:.0}us {}",
            self.succeeded,
            self.failed,
            self.duration.as_secs_f64(),
            self.qps(),
            self.mean_us,
            self.latency
        )?;
        for (name, (count, first)) in &self.errors {
            writeln!(f, "  {count} x {name}: {first}")?;
        }
        Ok(())
    }
}

/// One client's counters; only that client and the reporter touch it.
pub(crate) struct Shard {
    /// Latencies (us) since the last report.
    hist: Mutex<Histogram<u64>>,
    failed: AtomicU64,
}

/// Shared by the clients and the reporter.
pub(crate) struct Recorder {
    shards: Vec<Shard>,
    errors: Mutex<BTreeMap<String, (u64, String)>>,
    first_response: Mutex<Option<String>>,
    /// Everything reported so far.
    total: Mutex<Histogram<u64>>,
}

fn histogram() -> Histogram<u64> {
    // 1 us .. 100 s, 3 significant digits: a few tens of KiB.
    Histogram::new_with_bounds(1, 100_000_000, 3).expect("static histogram bounds are valid")
}

impl Recorder {
    pub(crate) fn new(clients: usize) -> Recorder {
        Recorder {
            shards: (0..clients)
                .map(|_| Shard {
                    hist: Mutex::new(histogram()),
                    failed: AtomicU64::new(0),
                })
                .collect(),
            errors: Mutex::new(BTreeMap::new()),
            first_response: Mutex::new(None),
            total: Mutex::new(histogram()),
        }
    }

    pub(crate) fn ok(&self, client: usize, latency: Duration) {
        let s = &self.shards[client];
        let us = (latency.as_micros() as u64).clamp(1, 100_000_000);
        s.hist.lock().saturating_record(us);
    }

    pub(crate) fn failed(&self, client: usize, name: String, message: String) {
        self.shards[client].failed.fetch_add(1, Ordering::Relaxed);
        let mut errors = self.errors.lock();
        errors.entry(name).or_insert((0, message)).0 += 1;
    }

    pub(crate) fn wants_first_response(&self) -> bool {
        self.first_response.lock().is_none()
    }

    pub(crate) fn set_first_response(&self, json: String) {
        self.first_response.lock().get_or_insert(json);
    }

    /// Folds what the clients recorded since the last call into a [`Second`].
    pub(crate) fn second(&self, elapsed_s: u64) -> Second {
        let mut h = histogram();
        let mut errors = 0;
        for s in &self.shards {
            let mut sh = s.hist.lock();
            h.add(&*sh).expect("same bounds");
            sh.reset();
            errors += s.failed.swap(0, Ordering::Relaxed);
        }
        self.total.lock().add(&h).expect("same bounds");
        Second {
            elapsed_s,
            qps: h.len(),
            errors,
            latency: Percentiles::of(&h),
        }
    }

    /// The run's summary; call after the last [`Recorder::second`].
    pub(crate) fn summary(&self, duration: Duration, failed: u64) -> Summary {
        let total = self.total.lock();
        Summary {
            duration,
            succeeded: total.len(),
            failed,
            errors: self.errors.lock().clone(),
            latency: Percentiles::of(&total),
            mean_us: if total.is_empty() { 0.0 } else { total.mean() },
            first_response: self.first_response.lock().clone(),
        }
    }
}
