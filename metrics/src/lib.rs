//! spindle-metrics: brpc's bvar in Rust — counters, extremes, averages, latency statistics,
//! windowed and per-second views, a registry of named variables, and Prometheus output.
//!
//! # Updates are per-thread
//!
//! Every writable variable ([`Adder`], [`FloatAdder`], [`Maxer`], [`Miner`], [`IntRecorder`],
//! [`LatencyRecorder`]) is a per-thread combiner: an update writes only the calling thread's
//! private cell, so threads never contend on a cache line and one update costs a few
//! nanoseconds to a few tens of nanoseconds however many threads update. A read locks the
//! variable and combines all cells, plus what exited threads folded in when they ended
//! (see [`combiner`]).
//!
//! # Fibers
//!
//! Spindle fibers move between worker threads at every switching call (`join`, `sleep`, a
//! fiber-mutex wait, a synchronous RPC). An update is one call that does not switch: it looks up
//! the *current* thread's cell afresh (the lookup is never inlined, so the compiler cannot keep a
//! thread-local address across a switch in the caller) and finishes its atomic operations before
//! returning. So `counter.add(1)` is correct from any fiber, before and after any switch; do not
//! build your own caching of a variable's cell around it.
//!
//! # Views, sampling and time
//!
//! [`Window`] and [`PerSecond`] (and a [`LatencyRecorder`]'s window) read samples that a
//! [`Collector`] takes once per tick. [`Collector::global`] ticks once a second on a background
//! thread (bvar's `SamplerCollector`); a [`Collector::manual`] one ticks only when told to, with
//! a logical clock of one second per tick, so tests never sleep.
//!
//! # Naming and output
//!
//! [`Exposable::expose`] puts a variable into the global [`Registry`] under a name normalised
//! like bvar's (`EchoService.Echo` → `echo_service_echo`); dropping the variable hides it.
//! [`Registry::describe`] renders `/vars`-style text with a [`WildcardFilter`];
//! [`prometheus::render`] renders `/brpc_metrics`. [`expose_default_variables`] adds process
//! and fiber-runtime variables.
//!
//! The guide is `docs/metrics.md`.

pub mod combiner;
mod histogram;
mod latency;
mod name;
mod passive;
pub mod process;
pub mod prometheus;
mod reducer;
mod registry;
mod sampler;
mod window;

pub use latency::{LatencyRecorder, LatencySnapshot, DEFAULT_WINDOW_SECS, EXPOSED_PERCENTILES};
pub use name::{to_underscored_name, WildcardFilter};
pub use passive::PassiveStatus;
pub use process::expose_default_variables;
pub use reducer::{Adder, FloatAdder, IntRecorder, Maxer, Miner};
pub use registry::{ExposeError, Exposure, Metric, Registry, Summary, Value, Variable};
pub use sampler::Collector;
pub use window::{PerSecond, Rate, Window, Windowed, MAX_WINDOW_SECS};

#[doc(hidden)]
pub use registry::Exposures;
#[doc(hidden)]
pub use window::Series;

use std::sync::Arc;

/// Naming a variable in a [`Registry`]: implemented by every variable type of this crate.
///
/// A variable has at most one exposed name at a time (a [`LatencyRecorder`] exposes several
/// derived from one prefix); exposing again replaces the old name, and dropping the variable
/// hides it.
pub trait Exposable {
    /// The variable's registry entries.
    #[doc(hidden)]
    fn exposures(&self) -> &Exposures;

    /// The `(name, variable)` entries to expose under `name`.
    #[doc(hidden)]
    fn variables(&self, name: &str) -> Vec<(String, Arc<dyn Variable>)>;

    /// Exposes the variable in the global registry under `name` (normalised with
    /// [`to_underscored_name`]). Fails, leaving the variable hidden, if the name is taken.
    fn expose(&self, name: &str) -> Result<(), ExposeError> {
        self.expose_in(Registry::global(), name)
    }

    /// Exposes the variable in `registry` under `name`.
    fn expose_in(&self, registry: &Registry, name: &str) -> Result<(), ExposeError> {
        self.exposures().set(registry, self.variables(name))
    }

    /// Hides the variable; true if it was exposed.
    fn hide(&self) -> bool {
        self.exposures().hide()
    }

    /// The (first) name the variable is exposed under.
    fn exposed_name(&self) -> Option<String> {
        self.exposures().name()
    }
}

/// The metrics guide compiles and runs as doctests.
#[cfg(doctest)]
#[doc = include_str!("../../docs/metrics.md")]
pub struct GuideDoctests;
