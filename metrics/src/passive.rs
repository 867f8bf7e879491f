//! Values computed on demand (bvar's `PassiveStatus`).

use crate::registry::{Exposures, Value, Variable};
use crate::sampler::Collector;
use crate::window::{newest, Rate, Series, SeriesSlot, Windowed};
use crate::Exposable;
use std::sync::Arc;
use std::time::Duration;

/// The callback and series of a [`PassiveStatus`].
struct Inner<T> {
    /// Computes the value.
    get: Box<dyn Fn() -> T + Send + Sync>,
    /// The series its views share.
    series: SeriesSlot<T>,
}

impl<T: Clone + Into<Value> + Send + Sync> Variable for Inner<T> {
    fn value(&self) -> Value {
        (self.get)().into()
    }
}

/// A variable whose value comes from a callback, called whenever it is read (`/vars`, a
/// scrape, a window's sample). `T` is `i64`, `f64` or `String`; a numeric one can be windowed
/// like a running total (e.g. [`PerSecond`](crate::PerSecond) over CPU seconds is CPU usage).
///
/// The callback runs on whichever thread reads the variable, while no registry lock is held; it
/// should be quick and must not block for long.
pub struct PassiveStatus<T> {
    /// Shared state.
    inner: Arc<Inner<T>>,
    /// Registry entries.
    exposures: Exposures,
}

impl<T: Send + Sync + 'static> PassiveStatus<T> {
    /// A variable whose value is `get()`.
    pub fn new(get: impl Fn() -> T + Send + Sync + 'static) -> Self {
        PassiveStatus {
            inner: Arc::new(Inner {
                get: Box::new(get),
                series: SeriesSlot::default(),
            }),
            exposures: Exposures::default(),
        }
    }

    /// Calls the callback.
    pub fn get_value(&self) -> T {
        (self.inner.get)()
    }
}

impl<T: Clone + Into<Value> + Send + Sync + 'static> Exposable for PassiveStatus<T> {
    fn exposures(&self) -> &Exposures {
        &self.exposures
    }
    fn variables(&self, name: &str) -> Vec<(String, Arc<dyn Variable>)> {
        vec![(name.to_string(), self.inner.clone())]
    }
}

impl<T: Copy + Send + Sync + 'static> PassiveStatus<T> {
    fn shared_series(&self, collector: &Collector, secs: usize) -> Arc<Series<T>> {
        let inner = self.inner.clone();
        self.inner
            .series
            .get_or_create(collector, secs, move || (inner.get)())
    }
}

impl Windowed for PassiveStatus<i64> {
    type Sample = i64;
    type Output = i64;
    fn series(&self, collector: &Collector, secs: usize) -> Arc<Series<i64>> {
        self.shared_series(collector, secs)
    }
    fn reduce(base: &i64, ticks: &[(Duration, i64)]) -> i64 {
        newest(base, ticks).wrapping_sub(*base)
    }
}

impl Rate for PassiveStatus<i64> {
    fn to_f64(out: i64) -> f64 {
        out as f64
    }
}

impl Windowed for PassiveStatus<f64> {
    type Sample = f64;
    type Output = f64;
    fn series(&self, collector: &Collector, secs: usize) -> Arc<Series<f64>> {
        self.shared_series(collector, secs)
    }
    fn reduce(base: &f64, ticks: &[(Duration, f64)]) -> f64 {
        newest(base, ticks) - base
    }
}

impl Rate for PassiveStatus<f64> {
    fn to_f64(out: f64) -> f64 {
        out
    }
}
