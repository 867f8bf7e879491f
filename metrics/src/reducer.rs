//! Reducers (bvar's `Adder`, `Maxer`, `Miner`, `IntRecorder`): per-thread cells combined on
//! read (see [`crate::combiner`]).
//!
//! Cell fields and who writes them:
//! - sums and counts are written only by the owning thread (a relaxed load and a store, no
//!   locked instruction) and never reset: windows work on differences of running totals;
//! - a [`Maxer`] / [`Miner`] cell has an all-time extreme (owner only) and a per-tick extreme that
//!   the sampler swaps back to the identity each tick, so both sides use atomic read-modify-write
//!   on it — and the owner only when the value actually improves on it.

use crate::combiner::{CellOps, Combiner};
use crate::registry::{Exposures, Value, Variable};
use crate::sampler::Collector;
use crate::window::{newest, Rate, Series, SeriesSlot, Windowed};
use crate::Exposable;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

/// Shared state of a reducer: its combiner and its series.
struct Inner<O: CellOps, S> {
    /// Per-thread cells.
    combiner: Combiner<O>,
    /// The series its views share.
    series: SeriesSlot<S>,
}

impl<O: CellOps, S: Send + Sync + 'static> Inner<O, S> {
    fn new() -> Arc<Self> {
        Arc::new(Inner {
            combiner: Combiner::new(),
            series: SeriesSlot::default(),
        })
    }

    /// The shared series, sampling with `take`.
    fn series(
        self: &Arc<Self>,
        collector: &Collector,
        secs: usize,
        take: fn(&Self) -> S,
    ) -> Arc<Series<S>> {
        let me = self.clone();
        self.series
            .get_or_create(collector, secs, move || take(&me))
    }
}

/// Implements [`Exposable`] for a reducer handle holding `inner` and `exposures`.
macro_rules! exposable_reducer {
    ($ty:ty) => {
        impl Exposable for $ty {
            fn exposures(&self) -> &Exposures {
                &self.exposures
            }
            fn variables(&self, name: &str) -> Vec<(String, Arc<dyn Variable>)> {
                vec![(name.to_string(), self.inner.clone())]
            }
        }
    };
}

// ---------------------------------------------------------------------------------------------
// Adder

/// Integer sums: the cell is the thread's running total.
struct AddI64;

impl CellOps for AddI64 {
    type Cell = AtomicI64;
    type Global = i64;
    fn fold(global: &mut i64, cell: &AtomicI64) {
        *global = global.wrapping_add(cell.load(Relaxed));
    }
}

type AdderInner = Inner<AddI64, i64>;

impl AdderInner {
    fn sum(&self) -> i64 {
        let st = self.combiner.lock();
        st.cells()
            .fold(st.global, |acc, c| acc.wrapping_add(c.load(Relaxed)))
    }
}

impl Variable for AdderInner {
    fn value(&self) -> Value {
        Value::Int(self.sum())
    }
}

/// A counter of `i64` (bvar's `Adder<int64_t>`): [`add`](Self::add) writes only the calling
/// thread's cell; [`value`](Self::value) sums all threads, including exited ones. Sums wrap on
/// overflow.
pub struct Adder {
    /// Shared state (what the registry and views hold).
    inner: Arc<AdderInner>,
    /// Registry entries.
    exposures: Exposures,
}

impl Default for Adder {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for Adder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Adder({})", self.value())
    }
}

impl Adder {
    /// A counter at zero.
    pub fn new() -> Self {
        Adder {
            inner: AdderInner::new(),
            exposures: Exposures::default(),
        }
    }

    /// Adds `v` (one non-yielding call; safe from fibers).
    #[inline]
    pub fn add(&self, v: i64) {
        self.inner
            .combiner
            .update(|c| c.store(c.load(Relaxed).wrapping_add(v), Relaxed));
    }

    /// The sum of every `add` so far.
    pub fn value(&self) -> i64 {
        self.inner.sum()
    }
}

exposable_reducer!(Adder);

impl Windowed for Adder {
    type Sample = i64;
    type Output = i64;
    fn series(&self, collector: &Collector, secs: usize) -> Arc<Series<i64>> {
        self.inner.series(collector, secs, AdderInner::sum)
    }
    fn reduce(base: &i64, ticks: &[(Duration, i64)]) -> i64 {
        newest(base, ticks).wrapping_sub(*base)
    }
}

impl Rate for Adder {
    fn to_f64(out: i64) -> f64 {
        out as f64
    }
}

// ---------------------------------------------------------------------------------------------
// FloatAdder

/// Float sums: the cell holds the bits of the thread's running total.
struct AddF64;

impl CellOps for AddF64 {
    type Cell = AtomicU64;
    type Global = f64;
    fn fold(global: &mut f64, cell: &AtomicU64) {
        *global += f64::from_bits(cell.load(Relaxed));
    }
}

type FloatAdderInner = Inner<AddF64, f64>;

impl FloatAdderInner {
    fn sum(&self) -> f64 {
        let st = self.combiner.lock();
        st.cells()
            .fold(st.global, |acc, c| acc + f64::from_bits(c.load(Relaxed)))
    }
}

impl Variable for FloatAdderInner {
    fn value(&self) -> Value {
        Value::Float(self.sum())
    }
}

/// A sum of `f64` (bvar's `Adder<double>`), per-thread like [`Adder`].
pub struct FloatAdder {
    /// Shared state.
    inner: Arc<FloatAdderInner>,
    /// Registry entries.
    exposures: Exposures,
}

impl Default for FloatAdder {
    fn default() -> Self {
        Self::new()
    }
}

impl FloatAdder {
    /// A sum at zero.
    pub fn new() -> Self {
        FloatAdder {
            inner: FloatAdderInner::new(),
            exposures: Exposures::default(),
        }
    }

    /// Adds `v`.
    #[inline]
    pub fn add(&self, v: f64) {
        self.inner.combiner.update(|c| {
            let cur = f64::from_bits(c.load(Relaxed));
            c.store((cur + v).to_bits(), Relaxed)
        });
    }

    /// The sum of every `add` so far.
    pub fn value(&self) -> f64 {
        self.inner.sum()
    }
}

exposable_reducer!(FloatAdder);

impl Windowed for FloatAdder {
    type Sample = f64;
    type Output = f64;
    fn series(&self, collector: &Collector, secs: usize) -> Arc<Series<f64>> {
        self.inner.series(collector, secs, FloatAdderInner::sum)
    }
    fn reduce(base: &f64, ticks: &[(Duration, f64)]) -> f64 {
        newest(base, ticks) - base
    }
}

impl Rate for FloatAdder {
    fn to_f64(out: f64) -> f64 {
        out
    }
}

// ---------------------------------------------------------------------------------------------
// Maxer / Miner

/// Which extreme a [`Extreme`] keeps.
trait Direction: Send + Sync + 'static {
    /// The value that loses to every other.
    const IDENTITY: i64;
    /// True if `a` beats `b`.
    fn better(a: i64, b: i64) -> bool;
}

/// Keeps the maximum.
struct Max;
impl Direction for Max {
    const IDENTITY: i64 = i64::MIN;
    fn better(a: i64, b: i64) -> bool {
        a > b
    }
}

/// Keeps the minimum.
struct Min;
impl Direction for Min {
    const IDENTITY: i64 = i64::MAX;
    fn better(a: i64, b: i64) -> bool {
        a < b
    }
}

/// A thread's extremes: all time (owner only) and since the last tick (swapped by the sampler).
struct ExtremeCell<D> {
    /// Extreme since creation.
    all: AtomicI64,
    /// Extreme since the previous tick.
    tick: AtomicI64,
    /// The direction.
    _d: std::marker::PhantomData<D>,
}

impl<D: Direction> Default for ExtremeCell<D> {
    fn default() -> Self {
        ExtremeCell {
            all: AtomicI64::new(D::IDENTITY),
            tick: AtomicI64::new(D::IDENTITY),
            _d: std::marker::PhantomData,
        }
    }
}

/// Extremes of exited threads: `(all time, since the last tick)`.
struct ExtremeGlobal<D>((i64, i64), std::marker::PhantomData<D>);

impl<D: Direction> Default for ExtremeGlobal<D> {
    fn default() -> Self {
        ExtremeGlobal((D::IDENTITY, D::IDENTITY), std::marker::PhantomData)
    }
}

/// Extreme combiner ops.
struct Extreme<D>(std::marker::PhantomData<D>);

impl<D: Direction> CellOps for Extreme<D> {
    type Cell = ExtremeCell<D>;
    type Global = ExtremeGlobal<D>;
    fn fold(global: &mut ExtremeGlobal<D>, cell: &ExtremeCell<D>) {
        let (all, tick) = (cell.all.load(Relaxed), cell.tick.swap(D::IDENTITY, Relaxed));
        let g = &mut global.0;
        if D::better(all, g.0) {
            g.0 = all;
        }
        if D::better(tick, g.1) {
            g.1 = tick;
        }
    }
}

/// Shared state of a [`Maxer`] / [`Miner`].
type ExtremeInner<D> = Inner<Extreme<D>, i64>;

impl<D: Direction> ExtremeInner<D> {
    fn record(&self, v: i64) {
        self.combiner.update(|c| {
            if D::better(v, c.all.load(Relaxed)) {
                c.all.store(v, Relaxed);
            }
            let mut cur = c.tick.load(Relaxed);
            while D::better(v, cur) {
                match c.tick.compare_exchange_weak(cur, v, Relaxed, Relaxed) {
                    Ok(_) => break,
                    Err(now) => cur = now,
                }
            }
        });
    }

    fn best(&self) -> i64 {
        let st = self.combiner.lock();
        st.cells()
            .map(|c| c.all.load(Relaxed))
            .fold(st.global.0 .0, |a, b| if D::better(b, a) { b } else { a })
    }

    /// The extreme since the previous call, resetting every cell's per-tick extreme.
    fn take_tick(&self) -> i64 {
        let mut st = self.combiner.lock();
        let mut best = std::mem::replace(&mut st.global.0 .1, D::IDENTITY);
        for c in st.cells() {
            let t = c.tick.swap(D::IDENTITY, Relaxed);
            if D::better(t, best) {
                best = t;
            }
        }
        best
    }

    fn reduce_window(ticks: &[(Duration, i64)]) -> i64 {
        ticks
            .iter()
            .map(|t| t.1)
            .fold(D::IDENTITY, |a, b| if D::better(b, a) { b } else { a })
    }
}

impl<D: Direction> Variable for ExtremeInner<D> {
    fn value(&self) -> Value {
        Value::Int(self.best())
    }
}

/// The maximum of recorded `i64`s (bvar's `Maxer`); `i64::MIN` before anything is recorded.
/// A [`Window`](crate::Window) over it gives the maximum over the window.
pub struct Maxer {
    /// Shared state.
    inner: Arc<ExtremeInner<Max>>,
    /// Registry entries.
    exposures: Exposures,
}

/// The minimum of recorded `i64`s (bvar's `Miner`); `i64::MAX` before anything is recorded.
pub struct Miner {
    /// Shared state.
    inner: Arc<ExtremeInner<Min>>,
    /// Registry entries.
    exposures: Exposures,
}

/// Implements the common API of [`Maxer`] and [`Miner`].
macro_rules! extreme_type {
    ($ty:ident, $dir:ty, $what:literal) => {
        impl Default for $ty {
            fn default() -> Self {
                Self::new()
            }
        }

        impl $ty {
            #[doc = concat!("A ", $what, " with nothing recorded.")]
            pub fn new() -> Self {
                $ty {
                    inner: ExtremeInner::<$dir>::new(),
                    exposures: Exposures::default(),
                }
            }

            /// Records `v`.
            #[inline]
            pub fn record(&self, v: i64) {
                self.inner.record(v);
            }

            #[doc = concat!("The ", $what, " of everything recorded so far.")]
            pub fn value(&self) -> i64 {
                self.inner.best()
            }
        }

        exposable_reducer!($ty);

        impl Windowed for $ty {
            type Sample = i64;
            type Output = i64;
            fn series(&self, collector: &Collector, secs: usize) -> Arc<Series<i64>> {
                self.inner
                    .series(collector, secs, ExtremeInner::<$dir>::take_tick)
            }
            fn reduce(_base: &i64, ticks: &[(Duration, i64)]) -> i64 {
                ExtremeInner::<$dir>::reduce_window(ticks)
            }
        }
    };
}

extreme_type!(Maxer, Max, "maximum");
extreme_type!(Miner, Min, "minimum");

// ---------------------------------------------------------------------------------------------
// IntRecorder

/// A thread's running sum and count (owner only).
#[derive(Default)]
struct SumCount {
    /// Sum of values.
    sum: AtomicI64,
    /// Number of values.
    count: AtomicU64,
}

/// Average combiner ops.
struct Average;

impl CellOps for Average {
    type Cell = SumCount;
    type Global = (i64, u64);
    fn fold(global: &mut (i64, u64), cell: &SumCount) {
        global.0 = global.0.wrapping_add(cell.sum.load(Relaxed));
        global.1 += cell.count.load(Relaxed);
    }
}

type RecorderInner = Inner<Average, (i64, u64)>;

impl RecorderInner {
    fn totals(&self) -> (i64, u64) {
        let st = self.combiner.lock();
        st.cells().fold(st.global, |(s, n), c| {
            (
                s.wrapping_add(c.sum.load(Relaxed)),
                n + c.count.load(Relaxed),
            )
        })
    }
}

/// `sum / count`, 0 when nothing was recorded.
fn average(sum: i64, count: u64) -> f64 {
    if count == 0 {
        0.0
    } else {
        sum as f64 / count as f64
    }
}

impl Variable for RecorderInner {
    fn value(&self) -> Value {
        let (s, n) = self.totals();
        Value::Float(average(s, n))
    }
}

/// The average of recorded `i64`s (bvar's `IntRecorder`); a [`Window`](crate::Window) over it
/// gives the average over the window.
pub struct IntRecorder {
    /// Shared state.
    inner: Arc<RecorderInner>,
    /// Registry entries.
    exposures: Exposures,
}

impl Default for IntRecorder {
    fn default() -> Self {
        Self::new()
    }
}

impl IntRecorder {
    /// A recorder with nothing recorded.
    pub fn new() -> Self {
        IntRecorder {
            inner: RecorderInner::new(),
            exposures: Exposures::default(),
        }
    }

    /// Records `v`.
    #[inline]
    pub fn record(&self, v: i64) {
        self.inner.combiner.update(|c| {
            c.sum.store(c.sum.load(Relaxed).wrapping_add(v), Relaxed);
            c.count.store(c.count.load(Relaxed) + 1, Relaxed);
        });
    }

    /// The average of everything recorded (0 if nothing was).
    pub fn average(&self) -> f64 {
        let (s, n) = self.inner.totals();
        average(s, n)
    }

    /// `(sum, count)` of everything recorded.
    pub fn totals(&self) -> (i64, u64) {
        self.inner.totals()
    }
}

exposable_reducer!(IntRecorder);

impl Windowed for IntRecorder {
    type Sample = (i64, u64);
    type Output = f64;
    fn series(&self, collector: &Collector, secs: usize) -> Arc<Series<(i64, u64)>> {
        self.inner.series(collector, secs, RecorderInner::totals)
    }
    fn reduce(base: &(i64, u64), ticks: &[(Duration, (i64, u64))]) -> f64 {
        let last = newest(base, ticks);
        average(last.0.wrapping_sub(base.0), last.1.saturating_sub(base.1))
    }
}
