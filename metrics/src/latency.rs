//! `LatencyRecorder` (bvar's): qps, mean, max and percentiles of latencies over a window.
//!
//! # Cells
//!
//! Each thread that records gets one cell (see [`crate::combiner`]): a running count and sum
//! (written by the owner only, never reset), the maximum since the last tick and a histogram of
//! [`BUCKETS`] 32-bit counters since the last tick (both swapped to zero by the sampler, so the
//! owner updates them with atomic read-modify-writes; the maximum only when it grows). A cell is
//! about 2.4 KiB, so memory is bounded by threads × recorders, never by the number of records.
//!
//! # Ticks
//!
//! Once per collector tick the recorder merges every cell into one sample: running count and
//! sum, the tick's maximum, and the tick's histogram (kept sparse). A cell whose count has not
//! moved since the previous tick is skipped. The owner bumps its histogram bucket *before*
//! publishing the new count (release; the sampler reads it with acquire), so a sampler that sees
//! a count also sees the bucket; a bucket bumped after the sampler read the count is picked up
//! on the next tick. The last `window` samples answer every query, so readings change once per
//! tick.

use crate::combiner::{CellOps, Combiner};
use crate::histogram::{bucket_of, percentiles, BUCKETS};
use crate::registry::{Exposures, Metric, Summary, Value, Variable};
use crate::sampler::{Collector, Ring, Tick};
use crate::Exposable;
use parking_lot::Mutex;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering::*};
use std::sync::{Arc, Weak};
use std::time::Duration;

/// Percentiles a recorder exposes, as ratios, with their name suffixes.
pub const EXPOSED_PERCENTILES: [(f64, &str); 4] = [
    (0.5, "latency_50"),
    (0.9, "latency_90"),
    (0.99, "latency_99"),
    (0.999, "latency_999"),
];

/// Default window of a recorder, in seconds (bvar's default window size).
pub const DEFAULT_WINDOW_SECS: usize = 10;

/// One thread's latencies.
struct Cell {
    /// Records so far (owner only; published with release).
    count: AtomicU64,
    /// Sum of records so far (owner only).
    sum: AtomicU64,
    /// Largest record since the last tick.
    max: AtomicU64,
    /// The count at the last tick (sampler only).
    seen: AtomicU64,
    /// Records per bucket since the last tick.
    buckets: Box<[AtomicU32]>,
}

impl Default for Cell {
    fn default() -> Self {
        Cell {
            count: AtomicU64::new(0),
            sum: AtomicU64::new(0),
            max: AtomicU64::new(0),
            seen: AtomicU64::new(0),
            buckets: (0..BUCKETS).map(|_| AtomicU32::new(0)).collect(),
        }
    }
}

/// What exited threads left: running totals and not-yet-sampled tick data.
#[derive(Default)]
struct Global {
    /// Records of exited threads.
    count: u64,
    /// Their sum.
    sum: u64,
    /// Their maximum since the last tick.
    max: u64,
    /// Their histogram since the last tick (empty when nothing is pending).
    buckets: Vec<u64>,
}

/// Combiner ops of a recorder.
struct Ops;

impl CellOps for Ops {
    type Cell = Cell;
    type Global = Global;
    fn fold(g: &mut Global, c: &Cell) {
        g.count += c.count.load(Acquire);
        g.sum = g.sum.wrapping_add(c.sum.load(Relaxed));
        g.max = g.max.max(c.max.swap(0, Relaxed));
        if g.buckets.is_empty() {
            g.buckets = vec![0; BUCKETS];
        }
        for (dst, src) in g.buckets.iter_mut().zip(c.buckets.iter()) {
            *dst += u64::from(src.swap(0, Relaxed));
        }
    }
}

/// One tick's merged sample.
#[derive(Default)]
struct TickSample {
    /// Running count.
    count: u64,
    /// Running sum.
    sum: u64,
    /// Maximum during the tick.
    max: u64,
    /// `(bucket, records)` of the tick, non-zero buckets only.
    hist: Vec<(u16, u64)>,
}

/// Shared state of a recorder.
struct Inner {
    /// Per-thread cells.
    combiner: Combiner<Ops>,
    /// Window length in ticks.
    window: usize,
    /// The last `window + 1` tick samples.
    ticks: Mutex<Ring<TickSample>>,
}

/// Everything a recorder reports, read in one go.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct LatencySnapshot {
    /// Records since creation (live).
    pub count: u64,
    /// Sum of records since creation (live).
    pub sum: u64,
    /// Records per second over the window.
    pub qps: f64,
    /// Mean over the window (0 if nothing was recorded).
    pub latency: f64,
    /// Maximum over the window.
    pub max_latency: u64,
    /// Values at [`EXPOSED_PERCENTILES`] over the window, in that order.
    pub percentiles: [u64; 4],
}

impl Inner {
    /// Running `(count, sum)` over all threads, live.
    fn totals(&self) -> (u64, u64) {
        let st = self.combiner.lock();
        st.cells()
            .fold((st.global.count, st.global.sum), |(n, s), c| {
                (
                    n + c.count.load(Acquire),
                    s.wrapping_add(c.sum.load(Relaxed)),
                )
            })
    }

    /// Merges the cells into a tick sample.
    fn take_sample(&self) -> TickSample {
        let mut dense = vec![0u64; BUCKETS];
        let mut st = self.combiner.lock();
        let (mut count, mut sum) = (st.global.count, st.global.sum);
        let mut max = std::mem::take(&mut st.global.max);
        for (d, s) in dense.iter_mut().zip(std::mem::take(&mut st.global.buckets)) {
            *d += s;
        }
        for c in st.cells() {
            let n = c.count.load(Acquire);
            count += n;
            sum = sum.wrapping_add(c.sum.load(Relaxed));
            max = max.max(c.max.swap(0, Relaxed));
            if n != c.seen.load(Relaxed) {
                c.seen.store(n, Relaxed);
                for (d, b) in dense.iter_mut().zip(c.buckets.iter()) {
                    *d += u64::from(b.swap(0, Relaxed));
                }
            }
        }
        drop(st);
        let hist = dense
            .iter()
            .enumerate()
            .filter(|(_, &n)| n > 0)
            .map(|(i, &n)| (i as u16, n))
            .collect();
        TickSample {
            count,
            sum,
            max,
            hist,
        }
    }

    /// Reads the window.
    fn snapshot(&self, ratios: &[f64]) -> (LatencySnapshot, Vec<u64>) {
        let (count, sum) = self.totals();
        let mut snap = LatencySnapshot {
            count,
            sum,
            ..Default::default()
        };
        let mut ring = self.ticks.lock();
        let Some((base, ticks)) = ring.window(self.window) else {
            return (snap, vec![0; ratios.len()]);
        };
        let Some(last) = ticks.last() else {
            return (snap, vec![0; ratios.len()]);
        };
        let n = last.1.count.saturating_sub(base.1.count);
        let span = last.0.saturating_sub(base.0).as_secs_f64();
        if span > 0.0 {
            snap.qps = n as f64 / span;
        }
        if n > 0 {
            snap.latency = last.1.sum.wrapping_sub(base.1.sum) as f64 / n as f64;
        }
        snap.max_latency = ticks.iter().map(|t| t.1.max).max().unwrap_or(0);
        let mut dense = vec![0u64; BUCKETS];
        for t in ticks {
            for &(i, c) in &t.1.hist {
                dense[usize::from(i)] += c;
            }
        }
        drop(ring);
        let exposed: Vec<f64> = EXPOSED_PERCENTILES.iter().map(|p| p.0).collect();
        // A bucket's middle can exceed the exact maximum; never report more than it.
        let max = snap.max_latency;
        let p: Vec<u64> = percentiles(&dense, &exposed)
            .into_iter()
            .map(|v| v.min(max))
            .collect();
        snap.percentiles.copy_from_slice(&p);
        let asked = percentiles(&dense, ratios)
            .into_iter()
            .map(|v| v.min(max))
            .collect();
        (snap, asked)
    }
}

impl Tick for Inner {
    fn tick(&self, now: Duration) {
        let s = self.take_sample();
        self.ticks.lock().push(now, s);
    }
}

/// Latency statistics of one operation (bvar's `LatencyRecorder`): [`record`](Self::record) a
/// latency (any unit; brpc uses microseconds) from any thread or fiber, read qps, mean, max and
/// percentiles over the last `window` ticks, and the running count.
///
/// Exposed under a prefix `p`, it shows as `p_latency` (mean), `p_max_latency`, `p_qps`,
/// `p_count` and `p_latency_50` / `_90` / `_99` / `_999` (bvar's names), and in Prometheus
/// output as a summary `p` with those quantiles (max as quantile 1) plus `p_latency` and
/// `p_qps` gauges.
pub struct LatencyRecorder {
    /// Shared state.
    inner: Arc<Inner>,
    /// Registry entries.
    exposures: Exposures,
}

impl Default for LatencyRecorder {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for LatencyRecorder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("LatencyRecorder")
            .field(&self.snapshot())
            .finish()
    }
}

impl LatencyRecorder {
    /// A recorder over a 10-second window, on the global collector.
    pub fn new() -> Self {
        Self::with_collector(DEFAULT_WINDOW_SECS, Collector::global())
    }

    /// A recorder over a `window`-tick window (clamped to `1..=3600`), sampled by `collector`.
    pub fn with_collector(window: usize, collector: &Collector) -> Self {
        let window = window.clamp(1, crate::window::MAX_WINDOW_SECS);
        let mut ring = Ring::new(window + 1);
        ring.push(collector.now(), TickSample::default());
        let inner = Arc::new(Inner {
            combiner: Combiner::new(),
            window,
            ticks: Mutex::new(ring),
        });
        let weak: Weak<dyn Tick> = Arc::downgrade(&inner) as Weak<Inner>;
        collector.register(weak);
        LatencyRecorder {
            inner,
            exposures: Exposures::default(),
        }
    }

    /// Records one latency; negative values count as 0. One non-yielding call, safe from
    /// fibers.
    #[inline]
    pub fn record(&self, latency: i64) {
        let v = latency.max(0) as u64;
        let b = bucket_of(v);
        self.inner.combiner.update(|c| {
            c.buckets[b].fetch_add(1, Relaxed);
            c.sum.store(c.sum.load(Relaxed).wrapping_add(v), Relaxed);
            if v > c.max.load(Relaxed) {
                c.max.fetch_max(v, Relaxed);
            }
            c.count.store(c.count.load(Relaxed) + 1, Release);
        });
    }

    /// Records `d` in microseconds (saturating).
    #[inline]
    pub fn record_duration(&self, d: Duration) {
        self.record(i64::try_from(d.as_micros()).unwrap_or(i64::MAX));
    }

    /// Records since creation (live, not windowed).
    pub fn count(&self) -> u64 {
        self.inner.totals().0
    }

    /// Records per second over the window.
    pub fn qps(&self) -> f64 {
        self.snapshot().qps
    }

    /// Mean latency over the window.
    pub fn latency(&self) -> f64 {
        self.snapshot().latency
    }

    /// Maximum latency over the window.
    pub fn max_latency(&self) -> u64 {
        self.snapshot().max_latency
    }

    /// The latency at `ratio` (0..=1, e.g. 0.99) over the window, within about 3%.
    pub fn latency_percentile(&self, ratio: f64) -> u64 {
        self.inner.snapshot(&[ratio]).1[0]
    }

    /// Latencies at several ratios, from one merge of the window.
    pub fn latency_percentiles(&self, ratios: &[f64]) -> Vec<u64> {
        self.inner.snapshot(ratios).1
    }

    /// Everything at once (what `/status` shows for a method).
    pub fn snapshot(&self) -> LatencySnapshot {
        self.inner.snapshot(&[]).0
    }

    /// The window length in ticks.
    pub fn window_secs(&self) -> usize {
        self.inner.window
    }
}

/// Which part of a recorder an exposed name shows.
#[derive(Clone, Copy)]
enum Part {
    /// Mean over the window.
    Latency,
    /// Max over the window.
    MaxLatency,
    /// Records per second.
    Qps,
    /// Running count (and the Prometheus summary).
    Count,
    /// One of [`EXPOSED_PERCENTILES`].
    Percentile(usize),
}

/// One exposed name of a recorder.
struct View {
    /// The recorder.
    inner: Arc<Inner>,
    /// What it shows.
    part: Part,
}

impl Variable for View {
    fn value(&self) -> Value {
        if let Part::Count = self.part {
            return Value::Int(self.inner.totals().0 as i64);
        }
        let s = self.inner.snapshot(&[]).0;
        match self.part {
            Part::Latency => Value::Float(s.latency),
            Part::MaxLatency => Value::Int(s.max_latency as i64),
            Part::Qps => Value::Float(s.qps),
            Part::Count => Value::Int(s.count as i64),
            Part::Percentile(i) => Value::Int(s.percentiles[i] as i64),
        }
    }

    fn metric(&self) -> Metric {
        match self.part {
            Part::Latency | Part::Qps => Metric::Gauge(self.value()),
            Part::MaxLatency | Part::Percentile(_) => Metric::Hidden,
            Part::Count => {
                let s = self.inner.snapshot(&[]).0;
                let mut quantiles: Vec<(f64, f64)> = EXPOSED_PERCENTILES
                    .iter()
                    .zip(s.percentiles)
                    .map(|(p, v)| (p.0, v as f64))
                    .collect();
                quantiles.push((1.0, s.max_latency as f64));
                Metric::Summary(Summary {
                    quantiles,
                    sum: s.sum as f64,
                    count: s.count,
                })
            }
        }
    }
}

impl Exposable for LatencyRecorder {
    fn exposures(&self) -> &Exposures {
        &self.exposures
    }

    /// bvar's naming: a trailing `latency` / `Latency` of the prefix is dropped, then each part
    /// gets its suffix.
    fn variables(&self, name: &str) -> Vec<(String, Arc<dyn Variable>)> {
        let prefix = name
            .strip_suffix("latency")
            .or_else(|| name.strip_suffix("Latency"))
            .filter(|p| !p.trim_end_matches(['_', '.', ' ']).is_empty())
            .unwrap_or(name);
        let prefix = prefix.trim_end_matches('_');
        let mut parts = vec![
            ("latency", Part::Latency),
            ("max_latency", Part::MaxLatency),
            ("qps", Part::Qps),
            ("count", Part::Count),
        ];
        for (i, p) in EXPOSED_PERCENTILES.iter().enumerate() {
            parts.push((p.1, Part::Percentile(i)));
        }
        parts
            .into_iter()
            .map(|(suffix, part)| {
                let var: Arc<dyn Variable> = Arc::new(View {
                    inner: self.inner.clone(),
                    part,
                });
                (format!("{prefix}_{suffix}"), var)
            })
            .collect()
    }
}
