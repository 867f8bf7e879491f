//! Windowed and per-second views (bvar's `Window` and `PerSecond`).
//!
//! A view follows a variable through a *series*: once per collector tick the series takes one
//! sample of the variable. All views of one variable share its series (created with the first
//! view's collector, grown to the longest window), and the series lives as long as a view does.
//!
//! Two kinds of variables are sampled:
//! - *cumulative* ones ([`crate::Adder`], [`crate::FloatAdder`], [`crate::IntRecorder`], numeric
//!   [`crate::PassiveStatus`]): a sample is the running total, and a window's value is the newest
//!   sample minus the one taken just before the window;
//! - *per-tick* ones ([`crate::Maxer`], [`crate::Miner`]): a sample is the extreme seen since the
//!   previous tick, and a window combines the samples of its ticks.
//!
//! A view reads only samples, never the live variable, so what it shows changes once per tick;
//! with a [`Collector::manual`] collector that is exactly when the test calls `tick`.

use crate::registry::{Exposures, Value, Variable};
use crate::sampler::{Collector, Ring, Tick};
use crate::Exposable;
use parking_lot::Mutex;
use std::sync::{Arc, Weak};
use std::time::Duration;

/// Longest window accepted, in seconds (bvar's limit).
pub const MAX_WINDOW_SECS: usize = 3600;

/// A variable that [`Window`] can follow. Implemented by this crate's variable types.
pub trait Windowed {
    /// One sample.
    type Sample: Copy + Send + Sync + 'static;
    /// A window's value.
    type Output: Copy + Into<Value>;
    /// This variable's series on `collector`, created on first use, keeping at least
    /// `secs + 1` samples.
    #[doc(hidden)]
    fn series(&self, collector: &Collector, secs: usize) -> Arc<Series<Self::Sample>>;
    /// The value of a window: `base` is the sample before it, `ticks` its samples, oldest first.
    #[doc(hidden)]
    fn reduce(base: &Self::Sample, ticks: &[(Duration, Self::Sample)]) -> Self::Output;
}

/// A cumulative variable whose windowed change can be divided by time ([`PerSecond`]).
pub trait Rate: Windowed {
    /// A window's value as a number.
    #[doc(hidden)]
    fn to_f64(out: Self::Output) -> f64;
}

/// The samples of one variable on one collector.
#[doc(hidden)]
pub struct Series<S> {
    /// Takes a sample of the variable (keeps the variable's state alive).
    take: Box<dyn Fn() -> S + Send + Sync>,
    /// The samples.
    ring: Mutex<Ring<S>>,
}

impl<S: Send + Sync + 'static> Tick for Series<S> {
    fn tick(&self, now: Duration) {
        let s = (self.take)();
        self.ring.lock().push(now, s);
    }
}

/// Where a variable keeps its (weakly held) series, so all its views share one.
pub(crate) struct SeriesSlot<S>(Mutex<Weak<Series<S>>>);

impl<S> Default for SeriesSlot<S> {
    fn default() -> Self {
        SeriesSlot(Mutex::new(Weak::new()))
    }
}

impl<S: Send + Sync + 'static> SeriesSlot<S> {
    /// The live series, grown to `secs + 1` samples, or a new one on `collector` sampling with
    /// `take` (which takes a first sample now).
    pub(crate) fn get_or_create(
        &self,
        collector: &Collector,
        secs: usize,
        take: impl Fn() -> S + Send + Sync + 'static,
    ) -> Arc<Series<S>> {
        let mut slot = self.0.lock();
        if let Some(s) = slot.upgrade() {
            s.ring.lock().grow(secs + 1);
            return s;
        }
        let mut ring = Ring::new(secs + 1);
        ring.push(collector.now(), take());
        let series = Arc::new(Series {
            take: Box::new(take),
            ring: Mutex::new(ring),
        });
        let weak: Weak<dyn Tick> = Arc::downgrade(&series) as Weak<Series<S>>;
        collector.register(weak);
        *slot = Arc::downgrade(&series);
        series
    }
}

/// Reads a window of a series: the reduced value and the time it spans.
fn read_window<V: Windowed>(series: &Series<V::Sample>, secs: usize) -> (V::Output, Duration) {
    let mut ring = series.ring.lock();
    match ring.window(secs) {
        Some((base, ticks)) => {
            let span = ticks
                .last()
                .map_or(Duration::ZERO, |l| l.0.saturating_sub(base.0));
            (V::reduce(&base.1, ticks), span)
        }
        // A series always holds its first sample; this is unreachable but harmless.
        None => {
            drop(ring);
            let s = (series.take)();
            (V::reduce(&s, &[]), Duration::ZERO)
        }
    }
}

/// The value of a variable over the last `secs` ticks of its collector (bvar's `Window`): the
/// change of a cumulative variable, or the extreme of a [`crate::Maxer`] / [`crate::Miner`].
/// Until `secs` ticks have passed it covers the ticks so far.
pub struct Window<V: Windowed> {
    /// Shared state (what the registry holds).
    inner: Arc<WindowInner<V>>,
    /// Registry entries.
    exposures: Exposures,
}

/// What a view reads: a variable's series and the window length.
struct ViewInner<V: Windowed> {
    /// The variable's series.
    series: Arc<Series<V::Sample>>,
    /// Window length in ticks.
    secs: usize,
}

impl<V: Windowed> ViewInner<V> {
    /// A view of `secs` ticks (clamped) over `var`'s series on `collector`.
    fn new(var: &V, secs: usize, collector: &Collector) -> Self {
        let secs = secs.clamp(1, MAX_WINDOW_SECS);
        ViewInner {
            series: var.series(collector, secs),
            secs,
        }
    }

    /// The reduced value over the window and the time it spans.
    fn read(&self) -> (V::Output, Duration) {
        read_window::<V>(&self.series, self.secs)
    }
}

/// What a [`Window`] reads.
struct WindowInner<V: Windowed>(ViewInner<V>);

impl<V: Windowed> Window<V> {
    /// A window of `secs` seconds (clamped to `1..=3600`) over `var`, on the global collector.
    pub fn new(var: &V, secs: usize) -> Self {
        Self::with_collector(var, secs, Collector::global())
    }

    /// A window of `secs` ticks (clamped to `1..=3600`) over `var`, sampled by `collector`.
    /// All views of one variable share the series of the first view's collector.
    pub fn with_collector(var: &V, secs: usize, collector: &Collector) -> Self {
        Window {
            inner: Arc::new(WindowInner(ViewInner::new(var, secs, collector))),
            exposures: Exposures::default(),
        }
    }

    /// The value over the window.
    pub fn get_value(&self) -> V::Output {
        self.inner.0.read().0
    }

    /// The value over the window and the time the window's samples span.
    pub fn get_span(&self) -> (V::Output, Duration) {
        self.inner.0.read()
    }

    /// The window length in ticks.
    pub fn window_secs(&self) -> usize {
        self.inner.0.secs
    }
}

impl<V: Windowed> Variable for WindowInner<V>
where
    Series<V::Sample>: Send + Sync,
{
    fn value(&self) -> Value {
        self.0.read().0.into()
    }
}

/// The average change per second of a cumulative variable over the last `secs` ticks (bvar's
/// `PerSecond`): the windowed change divided by the time its samples span (0 before the second
/// sample).
pub struct PerSecond<V: Rate> {
    /// Shared state (what the registry holds).
    inner: Arc<PerSecondInner<V>>,
    /// Registry entries.
    exposures: Exposures,
}

/// What a [`PerSecond`] reads.
struct PerSecondInner<V: Rate>(ViewInner<V>);

impl<V: Rate> PerSecondInner<V> {
    /// The windowed change divided by the seconds it spans.
    fn rate(&self) -> f64 {
        let (out, span) = self.0.read();
        let secs = span.as_secs_f64();
        if secs > 0.0 {
            V::to_f64(out) / secs
        } else {
            0.0
        }
    }
}

impl<V: Rate> PerSecond<V> {
    /// Per-second rate over `secs` seconds (clamped to `1..=3600`), on the global collector.
    pub fn new(var: &V, secs: usize) -> Self {
        Self::with_collector(var, secs, Collector::global())
    }

    /// Per-second rate over `secs` ticks (clamped to `1..=3600`), sampled by `collector`.
    pub fn with_collector(var: &V, secs: usize, collector: &Collector) -> Self {
        PerSecond {
            inner: Arc::new(PerSecondInner(ViewInner::new(var, secs, collector))),
            exposures: Exposures::default(),
        }
    }

    /// The rate per second over the window.
    pub fn get_value(&self) -> f64 {
        self.inner.rate()
    }

    /// The window length in ticks.
    pub fn window_secs(&self) -> usize {
        self.inner.0.secs
    }
}

impl<V: Rate> Variable for PerSecondInner<V>
where
    Series<V::Sample>: Send + Sync,
{
    fn value(&self) -> Value {
        Value::Float(self.rate())
    }
}

impl<V: Windowed + 'static> Exposable for Window<V>
where
    Series<V::Sample>: Send + Sync,
{
    fn exposures(&self) -> &Exposures {
        &self.exposures
    }
    fn variables(&self, name: &str) -> Vec<(String, Arc<dyn Variable>)> {
        vec![(name.to_string(), self.inner.clone())]
    }
}

impl<V: Rate + 'static> Exposable for PerSecond<V>
where
    Series<V::Sample>: Send + Sync,
{
    fn exposures(&self) -> &Exposures {
        &self.exposures
    }
    fn variables(&self, name: &str) -> Vec<(String, Arc<dyn Variable>)> {
        vec![(name.to_string(), self.inner.clone())]
    }
}

/// The newest sample of a window, or `base` when the window has no tick yet.
pub(crate) fn newest<T: Copy>(base: &T, ticks: &[(Duration, T)]) -> T {
    ticks.last().map_or(*base, |l| l.1)
}
