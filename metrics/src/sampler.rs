//! The sampler collector (bvar's `SamplerCollector`): takes one sample of every windowed
//! variable per tick, normally once a second.
//!
//! [`Collector::global`] runs one background thread (`spindle-metrics-sampler`) that ticks at
//! every whole second since it started. A [`Collector::manual`] collector has no thread and a
//! logical clock: each [`Collector::tick`] advances it by exactly one second, so tests drive
//! windows and rates deterministically, without sleeping.
//!
//! Samplers register with a collector weakly: a sampler lives as long as the views that read it
//! ([`crate::Window`], [`crate::PerSecond`], a [`crate::LatencyRecorder`]) and is pruned from the
//! collector on the first tick after it is gone.

use parking_lot::Mutex;
use std::collections::VecDeque;
use std::sync::{Arc, OnceLock, Weak};
use std::time::{Duration, Instant};

/// Something the collector calls once per tick.
pub(crate) trait Tick: Send + Sync {
    /// Takes this tick's sample; `now` is the collector's clock.
    fn tick(&self, now: Duration);
}

/// Where a collector's time comes from.
enum Clock {
    /// Real time since the collector started.
    Real(Instant),
    /// Logical time, advanced by [`Collector::tick`] and [`Collector::tick_at`].
    Manual(Mutex<Duration>),
}

/// State of a collector shared by its handles.
struct Inner {
    /// The time source.
    clock: Clock,
    /// Registered samplers; dead ones are pruned on the next tick.
    samplers: Mutex<Vec<Weak<dyn Tick>>>,
    /// Serialises ticks so samples are appended in time order.
    ticking: Mutex<()>,
}

/// Runs the samplers of windowed variables once per tick (see the module docs). Cloning gives
/// another handle to the same collector.
#[derive(Clone)]
pub struct Collector {
    /// Shared state.
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Collector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Collector")
            .field("manual", &matches!(self.inner.clock, Clock::Manual(_)))
            .field("now", &self.now())
            .finish()
    }
}

impl Collector {
    /// The process-wide collector, with its background thread ticking once a second (started on
    /// first use). Every variable uses it unless given another collector.
    pub fn global() -> &'static Collector {
        static GLOBAL: OnceLock<Collector> = OnceLock::new();
        GLOBAL.get_or_init(|| {
            let c = Collector::with_clock(Clock::Real(Instant::now()));
            let bg = c.clone();
            let spawned = std::thread::Builder::new()
                .name("spindle-metrics-sampler".into())
                .spawn(move || bg.run_forever());
            // Without the thread the variables still work; windows just never advance.
            drop(spawned);
            c
        })
    }

    /// A collector with a logical clock at zero and no background thread: nothing is sampled
    /// until [`tick`](Self::tick) or [`tick_at`](Self::tick_at) is called.
    pub fn manual() -> Collector {
        Collector::with_clock(Clock::Manual(Mutex::new(Duration::ZERO)))
    }

    fn with_clock(clock: Clock) -> Collector {
        Collector {
            inner: Arc::new(Inner {
                clock,
                samplers: Mutex::new(Vec::new()),
                ticking: Mutex::new(()),
            }),
        }
    }

    /// The collector's clock: real time since it started, or the logical time of a manual one.
    pub fn now(&self) -> Duration {
        match &self.inner.clock {
            Clock::Real(start) => start.elapsed(),
            Clock::Manual(t) => *t.lock(),
        }
    }

    /// Takes one sample of every registered sampler. A manual collector first advances its clock
    /// by one second; the global one samples at the current time (its thread already calls this
    /// every second, so calling it too only adds a sample).
    pub fn tick(&self) {
        let now = match &self.inner.clock {
            Clock::Real(start) => start.elapsed(),
            Clock::Manual(t) => {
                let mut t = t.lock();
                *t += Duration::from_secs(1);
                *t
            }
        };
        self.run_tick(now);
    }

    /// Manual collectors: sets the clock to `now` (never moves it backwards) and takes one
    /// sample. Real-time collectors ignore `now` and behave like [`tick`](Self::tick).
    pub fn tick_at(&self, now: Duration) {
        let now = match &self.inner.clock {
            Clock::Real(start) => start.elapsed(),
            Clock::Manual(t) => {
                let mut t = t.lock();
                *t = (*t).max(now);
                *t
            }
        };
        self.run_tick(now);
    }

    /// Registers a sampler (kept weakly).
    pub(crate) fn register(&self, sampler: Weak<dyn Tick>) {
        self.inner.samplers.lock().push(sampler);
    }

    /// Calls every live sampler with `now` and prunes dead ones.
    fn run_tick(&self, now: Duration) {
        let _ticking = self.inner.ticking.lock();
        let live: Vec<Arc<dyn Tick>> = {
            let mut samplers = self.inner.samplers.lock();
            samplers.retain(|w| w.strong_count() > 0);
            samplers.iter().filter_map(Weak::upgrade).collect()
        };
        for s in live {
            s.tick(now);
        }
    }

    /// The background loop: a tick at every whole second since the collector started.
    fn run_forever(&self) {
        let mut next = Duration::from_secs(1);
        loop {
            let now = self.now();
            if now < next {
                std::thread::sleep(next - now);
                continue;
            }
            self.run_tick(now);
            // Skip missed seconds rather than catching up in a burst.
            next = Duration::from_secs(now.as_secs() + 1);
        }
    }
}

/// A sample with the collector time it was taken at.
pub(crate) type Stamped<S> = (Duration, S);

/// A bounded time series of samples, newest last.
pub(crate) struct Ring<S> {
    /// Maximum number of samples kept.
    capacity: usize,
    /// `(time, sample)`, oldest first.
    samples: VecDeque<(Duration, S)>,
}

impl<S> Ring<S> {
    /// A ring holding at most `capacity` samples (at least 2).
    pub(crate) fn new(capacity: usize) -> Self {
        let capacity = capacity.max(2);
        Ring {
            capacity,
            samples: VecDeque::with_capacity(capacity),
        }
    }

    /// Keeps at least `capacity` samples from now on.
    pub(crate) fn grow(&mut self, capacity: usize) {
        self.capacity = self.capacity.max(capacity);
    }

    /// Appends a sample, dropping the oldest beyond capacity.
    pub(crate) fn push(&mut self, at: Duration, sample: S) {
        if self.samples.len() == self.capacity {
            self.samples.pop_front();
        }
        self.samples.push_back((at, sample));
    }

    /// The last `secs` ticks: the sample just before them (the base) and the samples of the
    /// ticks themselves, oldest first. Fewer ticks when the series is shorter; `None` when empty.
    pub(crate) fn window(&mut self, secs: usize) -> Option<(&Stamped<S>, &[Stamped<S>])> {
        let n = self.samples.len();
        if n == 0 {
            return None;
        }
        let take = (secs + 1).min(n);
        let all = self.samples.make_contiguous();
        let (base, rest) = all[n - take..].split_first()?;
        Some((base, rest))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ring_window_takes_base_and_last_ticks() {
        let mut r = Ring::new(4);
        for i in 0..6u64 {
            r.push(Duration::from_secs(i), i);
        }
        let (base, rest) = r.window(2).unwrap();
        assert_eq!(base.1, 3);
        assert_eq!(rest.iter().map(|x| x.1).collect::<Vec<_>>(), vec![4, 5]);
        let (base, rest) = r.window(10).unwrap();
        assert_eq!((base.1, rest.len()), (2, 3));
    }

    #[test]
    fn manual_clock_advances_one_second_per_tick() {
        let c = Collector::manual();
        c.tick();
        c.tick();
        assert_eq!(c.now(), Duration::from_secs(2));
        c.tick_at(Duration::from_secs(1));
        assert_eq!(c.now(), Duration::from_secs(2));
    }
}
