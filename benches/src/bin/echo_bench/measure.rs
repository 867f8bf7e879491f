//! What every system's client shares: the case description, the phase clock that tells lanes
//! when to record and when to stop, and the collector their histograms end up in.
//!
//! A **lane** is one closed loop: send a request, wait for its response, record the latency,
//! send the next. A case runs `connections × depth` lanes. The driver (`run_phases`) moves the
//! phase from `WARMUP` to `MEASURE` to `STOP`; a lane records only completions that end in
//! `MEASURE`, sends nothing new after `STOP`, and hands its histogram to the collector when it
//! leaves. The driver waits for every lane at most `grace` after `STOP`, so a stuck system is
//! reported (`stuck` lanes) instead of hanging the benchmark.

use hdrhistogram::Histogram;
use spindle_rpc::event_dispatcher::{self, DispatcherStats};
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Lanes run but do not record.
pub const WARMUP: u8 = 0;
/// Lanes record completions.
pub const MEASURE: u8 = 1;
/// Lanes finish their call in flight and leave.
pub const STOP: u8 = 2;

/// One benchmark case: the same for every system.
#[derive(Clone, Debug)]
pub struct Case {
    /// Name used in the table and the `RESULT` lines.
    pub name: String,
    /// Connections from the client to the server.
    pub connections: usize,
    /// Requests in flight on each connection (lanes per connection).
    pub depth: usize,
    /// Bytes of the message (`EchoRequest.message`, the raw body).
    pub payload: usize,
    /// Bytes of the attachment (Spindle attachment, tonic `bytes` field, raw body).
    pub attachment: usize,
}

impl Case {
    /// Lanes in total.
    pub fn lanes(&self) -> usize {
        self.connections * self.depth
    }
}

/// A fresh latency histogram in nanoseconds (1 ns .. 60 s, 3 significant figures).
pub fn new_histogram() -> Histogram<u64> {
    // The bounds are constants that hdrhistogram accepts; failure would be a programming error.
    Histogram::new_with_bounds(1, 60_000_000_000, 3).expect("valid histogram bounds")
}

/// State shared by the driver and the lanes of one system's run of one case.
pub struct Run {
    /// `WARMUP`, `MEASURE` or `STOP`.
    phase: AtomicU8,
    /// Calls that failed (any phase), and wrong answers.
    errors: AtomicU64,
    /// The first error's text, to print.
    first_error: Mutex<Option<String>>,
    /// Histograms handed in by lanes that left.
    collected: Mutex<Collected>,
}

/// What the lanes handed in.
struct Collected {
    /// Merged latencies of completions in `MEASURE`.
    hist: Histogram<u64>,
    /// Lanes that left.
    lanes_done: usize,
}

impl Run {
    /// A run in `WARMUP`.
    pub fn new() -> Arc<Run> {
        Arc::new(Run {
            phase: AtomicU8::new(WARMUP),
            errors: AtomicU64::new(0),
            first_error: Mutex::new(None),
            collected: Mutex::new(Collected {
                hist: new_histogram(),
                lanes_done: 0,
            }),
        })
    }

    /// The current phase.
    pub fn phase(&self) -> u8 {
        self.phase.load(Ordering::Acquire)
    }

    /// Counts one failed call; keeps the first message.
    pub fn error(&self, what: impl FnOnce() -> String) {
        if self.errors.fetch_add(1, Ordering::Relaxed) == 0 {
            let mut first = self.first_error.lock().unwrap_or_else(|e| e.into_inner());
            first.get_or_insert_with(what);
        }
    }

    /// Records one completion that took `latency`, if the run is measuring.
    #[inline]
    pub fn record(&self, hist: &mut Histogram<u64>, latency: Duration) {
        if self.phase() == MEASURE {
            hist.saturating_record(latency.as_nanos().max(1) as u64);
        }
    }

    /// A lane leaves, handing in its histogram.
    pub fn lane_done(&self, hist: &Histogram<u64>) {
        let mut c = self.collected.lock().unwrap_or_else(|e| e.into_inner());
        // Same bounds everywhere: `add` cannot fail.
        let _ = c.hist.add(hist);
        c.lanes_done += 1;
    }

    /// Lanes that left so far.
    fn lanes_done(&self) -> usize {
        self.collected
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .lanes_done
    }
}

/// Durations of one case.
#[derive(Clone, Copy, Debug)]
pub struct Timing {
    /// Lanes run without recording first.
    pub warmup: Duration,
    /// Lanes record for this long.
    pub measure: Duration,
    /// After `STOP`, lanes that have not left within this are reported stuck.
    pub grace: Duration,
}

/// What one system measured in one case (one round, or several merged).
#[derive(Clone, Debug)]
pub struct Outcome {
    /// Latencies of the completions during `MEASURE`, ns.
    pub hist: Histogram<u64>,
    /// Time spent in `MEASURE`.
    pub elapsed: Duration,
    /// CPU time of the whole process (user + system, every thread) during `MEASURE`.
    pub cpu: Duration,
    /// What Spindle's fiber runtime counted during `MEASURE` (whichever system ran: for tonic and
    /// raw it shows only the idle Spindle server).
    pub runtime: RuntimeCounts,
    /// Failed calls.
    pub errors: u64,
    /// Lanes that did not leave within the grace period.
    pub stuck: usize,
    /// The first error, or why the system could not run the case.
    pub note: Option<String>,
}

impl Outcome {
    /// Nothing measured yet.
    pub fn empty() -> Outcome {
        Outcome {
            hist: new_histogram(),
            elapsed: Duration::ZERO,
            cpu: Duration::ZERO,
            runtime: RuntimeCounts::default(),
            errors: 0,
            stuck: 0,
            note: None,
        }
    }

    /// An outcome for a system that could not run the case at all.
    pub fn failed(why: String) -> Outcome {
        Outcome {
            note: Some(why),
            errors: 1,
            ..Outcome::empty()
        }
    }

    /// Adds another round of the same system and case.
    pub fn merge(&mut self, other: Outcome) {
        // Same bounds everywhere: `add` cannot fail.
        let _ = self.hist.add(&other.hist);
        self.elapsed += other.elapsed;
        self.cpu += other.cpu;
        self.runtime.add(&other.runtime);
        self.errors += other.errors;
        self.stuck += other.stuck;
        if self.note.is_none() {
            self.note = other.note;
        }
    }

    /// Completions per second during `MEASURE`.
    pub fn qps(&self) -> f64 {
        if self.elapsed.is_zero() {
            return 0.0;
        }
        self.hist.len() as f64 / self.elapsed.as_secs_f64()
    }

    /// Latency at quantile `q`, µs.
    pub fn us(&self, q: f64) -> f64 {
        self.hist.value_at_quantile(q) as f64 / 1000.0
    }

    /// Mean latency, µs.
    pub fn mean_us(&self) -> f64 {
        self.hist.mean() / 1000.0
    }

    /// Percentage of calls that took 1 ms or more (stalls: on loopback a call takes tens of
    /// µs unless a thread waited to be scheduled or woken).
    pub fn slow_pct(&self) -> f64 {
        if self.hist.is_empty() {
            return 0.0;
        }
        let slow = self.hist.len() - self.hist.count_between(0, 999_999);
        100.0 * slow as f64 / self.hist.len() as f64
    }

    /// Process CPU time per completed call, µs: client and server work per call, which the
    /// load of a shared machine disturbs less than QPS.
    pub fn cpu_us_per_call(&self) -> f64 {
        if self.hist.is_empty() {
            return 0.0;
        }
        self.cpu.as_secs_f64() * 1e6 / self.hist.len() as f64
    }
}

/// Counters of Spindle's fiber runtime over a measurement.
#[derive(Clone, Copy, Debug, Default)]
pub struct RuntimeCounts {
    /// Fibers spawned.
    pub created: u64,
    /// Switches into fibers.
    pub switches: u64,
    /// Tasks taken from another worker's queues.
    pub steals: u64,
    /// Times a worker went to sleep for lack of work.
    pub parks: u64,
    /// Socket events the event dispatchers handed to readers on the worker that saw them.
    pub worker_events: u64,
    /// Socket events the dispatchers' own threads saw and handed to workers' remote queues.
    pub thread_events: u64,
}

impl RuntimeCounts {
    fn now() -> (spindle_runtime::Stats, DispatcherStats) {
        (spindle_runtime::stats(), event_dispatcher::stats())
    }

    fn between(
        (a, da): &(spindle_runtime::Stats, DispatcherStats),
        (b, db): &(spindle_runtime::Stats, DispatcherStats),
    ) -> RuntimeCounts {
        RuntimeCounts {
            created: b.fibers_created.saturating_sub(a.fibers_created),
            switches: b.context_switches.saturating_sub(a.context_switches),
            steals: b.steals.saturating_sub(a.steals),
            parks: b.parks.saturating_sub(a.parks),
            worker_events: db.worker_events.saturating_sub(da.worker_events),
            thread_events: db.thread_events.saturating_sub(da.thread_events),
        }
    }

    fn add(&mut self, o: &RuntimeCounts) {
        self.created += o.created;
        self.switches += o.switches;
        self.steals += o.steals;
        self.parks += o.parks;
        self.worker_events += o.worker_events;
        self.thread_events += o.thread_events;
    }
}

/// Drives `run` through its phases with `lanes` lanes already started, then collects.
pub fn run_phases(run: &Run, lanes: usize, timing: Timing) -> Outcome {
    std::thread::sleep(timing.warmup);
    run.phase.store(MEASURE, Ordering::Release);
    let start = Instant::now();
    let cpu_start = spindle_benches::process_cpu_time();
    let runtime_start = RuntimeCounts::now();
    std::thread::sleep(timing.measure);
    run.phase.store(STOP, Ordering::Release);
    let cpu = spindle_benches::process_cpu_time().saturating_sub(cpu_start);
    let runtime = RuntimeCounts::between(&runtime_start, &RuntimeCounts::now());
    let elapsed = start.elapsed();
    let deadline = Instant::now() + timing.grace;
    while run.lanes_done() < lanes && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    let c = run.collected.lock().unwrap_or_else(|e| e.into_inner());
    Outcome {
        hist: c.hist.clone(),
        elapsed,
        cpu,
        runtime,
        errors: run.errors.load(Ordering::Relaxed),
        stuck: lanes - c.lanes_done.min(lanes),
        note: run
            .first_error
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone(),
    }
}
