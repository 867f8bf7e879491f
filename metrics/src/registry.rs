//! The registry of named variables (bvar's exposed-variable map), behind `/vars` and
//! `/brpc_metrics`.
//!
//! A variable is exposed under a normalised name ([`crate::to_underscored_name`]); exposing a
//! name that is taken fails with [`ExposeError::Duplicate`]. The registry holds the variable's
//! shared state, and an [`Exposure`] guard removes the entry when dropped — every variable type
//! keeps its guard, so a variable is hidden when it is dropped.

use crate::name::{to_underscored_name, WildcardFilter};
use parking_lot::RwLock;
use std::collections::BTreeMap;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock, Weak};

/// What a variable reads as.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    /// An integer.
    Int(i64),
    /// A floating-point number.
    Float(f64),
    /// Text (shown on `/vars`, left out of Prometheus output).
    Text(String),
}

impl Value {
    /// The value as a number, `None` for text.
    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Value::Int(i) => Some(*i as f64),
            Value::Float(f) => Some(*f),
            Value::Text(_) => None,
        }
    }
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Int(i) => write!(f, "{i}"),
            Value::Float(x) => {
                if x.is_finite() && x.fract() == 0.0 && x.abs() < 1e15 {
                    write!(f, "{x:.0}")
                } else if x.is_finite() {
                    // Six significant decimals are plenty for a dashboard.
                    write!(f, "{}", (x * 1e6).round() / 1e6)
                } else {
                    write!(f, "{x}")
                }
            }
            Value::Text(s) => write!(f, "\"{s}\""),
        }
    }
}

impl From<i64> for Value {
    fn from(v: i64) -> Self {
        Value::Int(v)
    }
}

impl From<f64> for Value {
    fn from(v: f64) -> Self {
        Value::Float(v)
    }
}

impl From<String> for Value {
    fn from(v: String) -> Self {
        Value::Text(v)
    }
}

/// A Prometheus summary: quantiles, sum and count of a [`crate::LatencyRecorder`].
#[derive(Clone, Debug, PartialEq)]
pub struct Summary {
    /// `(quantile in 0..=1, value)`, ascending.
    pub quantiles: Vec<(f64, f64)>,
    /// Sum of all recorded values since creation.
    pub sum: f64,
    /// Number of recorded values since creation.
    pub count: u64,
}

/// How a variable appears in Prometheus output.
#[derive(Clone, Debug, PartialEq)]
pub enum Metric {
    /// A gauge with this value (text values are left out).
    Gauge(Value),
    /// A summary. The metric family is the variable's name without its `_count` suffix, so
    /// the family's `_count` sample is the variable itself.
    Summary(Summary),
    /// Left out (e.g. a percentile already reported inside a summary).
    Hidden,
}

/// A readable variable: what the registry stores and the builtin pages render.
pub trait Variable: Send + Sync {
    /// The current value.
    fn value(&self) -> Value;
    /// How it appears in Prometheus output; a gauge of [`value`](Self::value) by default.
    fn metric(&self) -> Metric {
        Metric::Gauge(self.value())
    }
}

/// Why a name could not be exposed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ExposeError {
    /// Another variable is already exposed under this (normalised) name.
    Duplicate(String),
    /// The name is empty after normalisation.
    EmptyName(String),
}

impl fmt::Display for ExposeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ExposeError::Duplicate(n) => write!(f, "a variable named `{n}` is already exposed"),
            ExposeError::EmptyName(n) => {
                write!(
                    f,
                    "`{n}` is not a usable variable name (empty once normalised)"
                )
            }
        }
    }
}

impl std::error::Error for ExposeError {}

/// One exposed variable.
struct Entry {
    /// Identifies the exposure, so a stale guard never removes a newer entry of the same name.
    id: u64,
    /// The variable.
    var: Arc<dyn Variable>,
}

/// Shared state of a registry.
struct Inner {
    /// Exposed variables by name, sorted.
    map: RwLock<BTreeMap<String, Entry>>,
    /// Next exposure id.
    next_id: AtomicU64,
}

/// A set of named variables. [`Registry::global`] is the one every variable's `expose` uses and
/// the builtin pages render; separate registries are for embedding and tests. Cloning gives
/// another handle to the same registry.
#[derive(Clone)]
pub struct Registry {
    /// Shared state.
    inner: Arc<Inner>,
}

impl fmt::Debug for Registry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Registry")
            .field("len", &self.inner.map.read().len())
            .finish()
    }
}

impl Default for Registry {
    fn default() -> Self {
        Self::new()
    }
}

impl Registry {
    /// An empty registry.
    pub fn new() -> Self {
        Registry {
            inner: Arc::new(Inner {
                map: RwLock::new(BTreeMap::new()),
                next_id: AtomicU64::new(1),
            }),
        }
    }

    /// The process-wide registry.
    pub fn global() -> &'static Registry {
        static GLOBAL: OnceLock<Registry> = OnceLock::new();
        GLOBAL.get_or_init(Registry::new)
    }

    /// Exposes `var` under the normalised form of `name`; the entry stays until the returned
    /// guard is dropped.
    pub fn expose(&self, name: &str, var: Arc<dyn Variable>) -> Result<Exposure, ExposeError> {
        let norm = to_underscored_name(name);
        if norm.is_empty() || norm == "_" {
            return Err(ExposeError::EmptyName(name.to_string()));
        }
        let mut map = self.inner.map.write();
        if map.contains_key(&norm) {
            return Err(ExposeError::Duplicate(norm));
        }
        let id = self.inner.next_id.fetch_add(1, Ordering::Relaxed);
        map.insert(norm.clone(), Entry { id, var });
        Ok(Exposure {
            registry: Arc::downgrade(&self.inner),
            name: norm,
            id,
        })
    }

    /// Names of all exposed variables, sorted.
    pub fn list(&self) -> Vec<String> {
        self.inner.map.read().keys().cloned().collect()
    }

    /// Names matching `filter` (see [`WildcardFilter`]), sorted.
    pub fn find(&self, filter: &WildcardFilter) -> Vec<String> {
        self.inner
            .map
            .read()
            .keys()
            .filter(|n| filter.matches(n))
            .cloned()
            .collect()
    }

    /// The value of the variable exposed as `name` (normalised first).
    pub fn value(&self, name: &str) -> Option<Value> {
        self.get(name).map(|v| v.value())
    }

    /// The variable exposed as `name` (normalised first).
    pub fn get(&self, name: &str) -> Option<Arc<dyn Variable>> {
        let norm = to_underscored_name(name);
        self.inner.map.read().get(&norm).map(|e| e.var.clone())
    }

    /// Calls `f` with every variable matching `filter`, in name order. Values are read outside
    /// the registry lock, so `f` and the variables may use the registry.
    pub fn for_each(&self, filter: &WildcardFilter, mut f: impl FnMut(&str, &dyn Variable)) {
        let vars: Vec<(String, Arc<dyn Variable>)> = self
            .inner
            .map
            .read()
            .iter()
            .filter(|(n, _)| filter.matches(n))
            .map(|(n, e)| (n.clone(), e.var.clone()))
            .collect();
        for (n, v) in vars {
            f(&n, &*v);
        }
    }

    /// `name : value` lines of every variable matching `filter`, in name order (the plain-text
    /// form of brpc's `/vars`).
    pub fn describe(&self, filter: &WildcardFilter) -> String {
        let mut out = String::new();
        self.for_each(filter, |n, v| {
            out.push_str(n);
            out.push_str(" : ");
            out.push_str(&v.value().to_string());
            out.push('\n');
        });
        out
    }
}

/// Keeps a variable exposed; dropping it removes the entry from its registry.
#[must_use = "the variable is hidden again when the Exposure is dropped"]
pub struct Exposure {
    /// The registry (weak: a registry may go away before its variables).
    registry: Weak<Inner>,
    /// The normalised name.
    name: String,
    /// Which exposure of that name this is.
    id: u64,
}

impl fmt::Debug for Exposure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Exposure")
            .field("name", &self.name)
            .finish()
    }
}

impl Exposure {
    /// The normalised name the variable is exposed under.
    pub fn name(&self) -> &str {
        &self.name
    }
}

impl Drop for Exposure {
    fn drop(&mut self) {
        if let Some(reg) = self.registry.upgrade() {
            let mut map = reg.map.write();
            if map.get(&self.name).is_some_and(|e| e.id == self.id) {
                map.remove(&self.name);
            }
        }
    }
}

/// The exposures of one variable object (a [`crate::LatencyRecorder`] has several); shared by
/// every variable type's `expose` / `hide`.
#[doc(hidden)]
#[derive(Default)]
pub struct Exposures(parking_lot::Mutex<Vec<Exposure>>);

impl Exposures {
    /// Replaces the current exposures with `names` mapped to their variables, all or nothing.
    pub(crate) fn set(
        &self,
        registry: &Registry,
        vars: Vec<(String, Arc<dyn Variable>)>,
    ) -> Result<(), ExposeError> {
        let mut guard = self.0.lock();
        guard.clear();
        let mut fresh = Vec::with_capacity(vars.len());
        for (name, var) in vars {
            // On error, `fresh` drops and hides what this call exposed so far.
            fresh.push(registry.expose(&name, var)?);
        }
        *guard = fresh;
        Ok(())
    }

    /// Hides every name; true if anything was exposed.
    pub(crate) fn hide(&self) -> bool {
        let mut guard = self.0.lock();
        let had = !guard.is_empty();
        guard.clear();
        had
    }

    /// The first exposed name.
    pub(crate) fn name(&self) -> Option<String> {
        self.0.lock().first().map(|e| e.name.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Const(i64);
    impl Variable for Const {
        fn value(&self) -> Value {
            Value::Int(self.0)
        }
    }

    #[test]
    fn expose_duplicate_hide() {
        let r = Registry::new();
        let a = r.expose("FooBar", Arc::new(Const(1))).unwrap();
        assert_eq!(a.name(), "foo_bar");
        assert_eq!(
            r.expose("foo_bar", Arc::new(Const(2))).unwrap_err(),
            ExposeError::Duplicate("foo_bar".into())
        );
        assert!(matches!(
            r.expose("..", Arc::new(Const(2))),
            Err(ExposeError::EmptyName(_))
        ));
        assert_eq!(r.value("fooBar"), Some(Value::Int(1)));
        drop(a);
        assert!(r.list().is_empty());
    }

    #[test]
    fn value_display() {
        assert_eq!(Value::Float(2.0).to_string(), "2");
        assert_eq!(Value::Float(0.125).to_string(), "0.125");
        assert_eq!(Value::Text("x".into()).to_string(), "\"x\"");
    }
}
