//! Per-method statistics (brpc's `MethodStatus`), recorded automatically by the server for each
//! method it serves and by channels for each method they call.
//!
//! # What is recorded
//!
//! A call is bracketed by [`MethodStatus::on_requested`] (concurrency + 1, start time) and the
//! drop of the returned [`MethodCall`] (concurrency − 1). A call marked
//! [`succeeded`](MethodCall::succeeded) puts its latency in microseconds into the
//! [`LatencyRecorder`]; any other ending (an error returned with `?`, a refused limit) adds one
//! to the error count instead — as brpc does, errors are counted but their latency is not.
//!
//! # Names
//!
//! Exposed under a prefix `p` ([`MethodStatus::expose`]) the variables are brpc's:
//! `p_count`, `p_qps`, `p_latency`, `p_max_latency`, `p_latency_50` / `_90` / `_99` / `_999`
//! (the recorder), `p_error`, `p_eps` (errors per second), `p_concurrency`, and
//! `p_max_concurrency` when the method has a limit. The server uses
//! `rpc_server_<port>_<package>_<service>_<method>` (brpc's `Server::ServerPrefix` followed by
//! the method's full name, normalised: `rpc_server_8000_example_echo_service_echo`); channels use
//! `rpc_client_<package>_<service>_<method>`, one status per method for the whole process.
//!
//! # Cost
//!
//! One call costs two updates of a per-method atomic (concurrency) and one per-thread update of
//! the recorder or the error counter; no lock.

use spindle_metrics::{
    Adder, Exposable, ExposeError, LatencyRecorder, PassiveStatus, PerSecond, EXPOSED_PERCENTILES,
};
use std::cell::Cell;
use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, LazyLock, RwLock};
use std::time::Instant;

/// Window of the errors-per-second view, in seconds (bvar's default window).
const EPS_WINDOW_SECS: usize = 10;

/// Statistics of one method. See the module doc.
pub struct MethodStatus {
    /// Latencies of successful calls, in microseconds.
    latency: LatencyRecorder,
    /// Failed calls since creation.
    errors: Adder,
    /// Failed calls per second over [`EPS_WINDOW_SECS`].
    eps: PerSecond<Adder>,
    /// Calls in progress.
    concurrency: Arc<AtomicI64>,
    /// `concurrency` as a variable.
    concurrency_var: PassiveStatus<i64>,
    /// The method's limit (0 = none).
    max_concurrency: usize,
    /// `max_concurrency` as a variable (exposed only when a limit is set).
    max_concurrency_var: PassiveStatus<i64>,
}

impl std::fmt::Debug for MethodStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MethodStatus")
            .field("snapshot", &self.snapshot())
            .finish()
    }
}

/// What `/status` shows for one method, read in one go.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct MethodSnapshot {
    /// Successful calls since creation.
    pub count: u64,
    /// Successful calls per second over the recorder's window.
    pub qps: f64,
    /// Failed calls since creation.
    pub errors: i64,
    /// Failed calls per second over the last 10 seconds.
    pub eps: f64,
    /// Mean latency (µs) over the window.
    pub latency: f64,
    /// Maximum latency (µs) over the window.
    pub max_latency: u64,
    /// `(name, µs)` of the 50th, 90th, 99th and 99.9th percentiles over the window.
    pub percentiles: Vec<(&'static str, u64)>,
    /// Calls in progress now.
    pub concurrency: i64,
    /// The method's limit; 0 = unlimited.
    pub max_concurrency: usize,
}

impl MethodStatus {
    /// A status for a method limited to `max_concurrency` calls at once (0 = unlimited; the
    /// limit is only reported here, the server enforces it).
    pub fn new(max_concurrency: usize) -> MethodStatus {
        let errors = Adder::new();
        let eps = PerSecond::new(&errors, EPS_WINDOW_SECS);
        let concurrency = Arc::new(AtomicI64::new(0));
        let c = concurrency.clone();
        let max = i64::try_from(max_concurrency).unwrap_or(i64::MAX);
        MethodStatus {
            latency: LatencyRecorder::new(),
            errors,
            eps,
            concurrency,
            concurrency_var: PassiveStatus::new(move || c.load(Ordering::Relaxed)),
            max_concurrency,
            max_concurrency_var: PassiveStatus::new(move || max),
        }
    }

    /// Exposes the variables under `prefix` in the global registry (names in the module doc).
    /// All or nothing: on a duplicate name nothing stays exposed.
    pub fn expose(&self, prefix: &str) -> Result<(), ExposeError> {
        let r = (|| {
            self.latency.expose(prefix)?;
            self.errors.expose(&format!("{prefix}_error"))?;
            self.eps.expose(&format!("{prefix}_eps"))?;
            self.concurrency_var
                .expose(&format!("{prefix}_concurrency"))?;
            if self.max_concurrency > 0 {
                self.max_concurrency_var
                    .expose(&format!("{prefix}_max_concurrency"))?;
            }
            Ok(())
        })();
        if r.is_err() {
            self.hide();
        }
        r
    }

    /// Takes the variables out of the registry (they still count).
    pub fn hide(&self) {
        self.latency.hide();
        self.errors.hide();
        self.eps.hide();
        self.concurrency_var.hide();
        self.max_concurrency_var.hide();
    }

    /// Starts a call: concurrency + 1 until the returned guard drops.
    #[inline]
    pub fn on_requested(&self) -> MethodCall<'_> {
        self.concurrency.fetch_add(1, Ordering::Relaxed);
        MethodCall {
            status: self,
            start: Instant::now(),
            ok: false,
        }
    }

    /// Ends a call started at `start` without a guard (asynchronous calls): concurrency − 1,
    /// then the latency (`ok`) or an error is recorded. Pair each call with one
    /// [`begin`](Self::begin).
    pub fn on_responded(&self, start: Instant, ok: bool) {
        self.concurrency.fetch_sub(1, Ordering::Relaxed);
        if ok {
            self.latency.record_duration(start.elapsed());
        } else {
            self.errors.add(1);
        }
    }

    /// Starts a call ended later by [`on_responded`](Self::on_responded): concurrency + 1;
    /// returns the start time.
    pub fn begin(&self) -> Instant {
        self.begin_counted().0
    }

    /// [`begin`](Self::begin), also returning the concurrency including this call (what a
    /// per-method limit is checked against: one shared counter per call, not two).
    pub fn begin_counted(&self) -> (Instant, i64) {
        let now = self.concurrency.fetch_add(1, Ordering::Relaxed) + 1;
        (Instant::now(), now)
    }

    /// Calls in progress.
    pub fn concurrency(&self) -> i64 {
        self.concurrency.load(Ordering::Relaxed)
    }

    /// The latency recorder (µs) of successful calls.
    pub fn latency(&self) -> &LatencyRecorder {
        &self.latency
    }

    /// Everything `/status` shows.
    pub fn snapshot(&self) -> MethodSnapshot {
        let s = self.latency.snapshot();
        MethodSnapshot {
            count: s.count,
            qps: s.qps,
            errors: self.errors.value(),
            eps: self.eps.get_value(),
            latency: s.latency,
            max_latency: s.max_latency,
            percentiles: EXPOSED_PERCENTILES
                .iter()
                .zip(s.percentiles)
                .map(|(p, v)| (p.1, v))
                .collect(),
            concurrency: self.concurrency(),
            max_concurrency: self.max_concurrency,
        }
    }
}

/// One call in progress (see [`MethodStatus::on_requested`]). Dropping it without
/// [`succeeded`](Self::succeeded) counts an error.
#[must_use = "the call ends (as an error) when the guard drops"]
pub struct MethodCall<'a> {
    /// The method.
    status: &'a MethodStatus,
    /// When the call started.
    start: Instant,
    /// Whether `succeeded` was called.
    ok: bool,
}

impl MethodCall<'_> {
    /// Ends the call as a success: its latency is recorded.
    pub fn succeeded(mut self) {
        self.ok = true;
    }
}

impl Drop for MethodCall<'_> {
    fn drop(&mut self) {
        self.status.on_responded(self.start, self.ok);
    }
}

/// A called method's status with its names (statuses live for the rest of the process: they
/// stay exposed in the registry).
struct ClientMethod {
    service: String,
    method: String,
    status: MethodStatus,
}

/// The process-wide statuses of called methods: service full name → method name → status.
type ClientMethods = HashMap<String, HashMap<String, &'static ClientMethod>>;

/// See [`client_status`]. Two-level so a lookup needs no allocation.
static CLIENT_METHODS: LazyLock<RwLock<ClientMethods>> = LazyLock::new(Default::default);

/// Methods each thread looked up last.
const RECENT_METHODS: usize = 4;

thread_local! {
    /// The statuses this thread used last, tried before the shared map: no lock, no hashing
    /// and no shared cache line on the path of every call.
    static RECENT: Cell<[Option<&'static ClientMethod>; RECENT_METHODS]> =
        const { Cell::new([None; RECENT_METHODS]) };
}

/// A status this thread used recently. `inline(never)` and touched only here: a fiber may move
/// to another thread between two calls (DESIGN.md §2), so no thread-local address is kept.
#[inline(never)]
fn recent(service: &str, method: &str) -> Option<&'static ClientMethod> {
    RECENT.with(|r| {
        r.get()
            .into_iter()
            .flatten()
            .find(|m| m.service == service && m.method == method)
    })
}

/// Remembers `m` as this thread's most recent status.
#[inline(never)]
fn remember(m: &'static ClientMethod) {
    RECENT.with(|r| {
        let mut v = r.get();
        v.rotate_right(1);
        v[0] = Some(m);
        r.set(v);
    });
}

/// The channel-side status of `service.method` (created and exposed as
/// `rpc_client_<service>_<method>` on first use). `None` for an empty service name (raw HTTP
/// calls, which have no method).
pub fn client_status(service: &str, method: &str) -> Option<&'static MethodStatus> {
    if service.is_empty() {
        return None;
    }
    if let Some(m) = recent(service, method) {
        return Some(&m.status);
    }
    let found = CLIENT_METHODS
        .read()
        .unwrap_or_else(|e| e.into_inner())
        .get(service)
        .and_then(|m| m.get(method))
        .copied();
    let m = found.unwrap_or_else(|| {
        let mut map = CLIENT_METHODS.write().unwrap_or_else(|e| e.into_inner());
        *map.entry(service.to_owned())
            .or_default()
            .entry(method.to_owned())
            .or_insert_with(|| {
                let m: &'static ClientMethod = Box::leak(Box::new(ClientMethod {
                    service: service.to_owned(),
                    method: method.to_owned(),
                    status: MethodStatus::new(0),
                }));
                // A name taken by someone else leaves the status unexposed but still counting.
                let _ = m.status.expose(&format!("rpc_client_{service}.{method}"));
                m
            })
    });
    remember(m);
    Some(&m.status)
}

/// A channel call in progress: ends with [`ClientCall::finish`]; dropped unfinished it counts
/// as an error.
pub struct ClientCall {
    /// The status and the start time; `None` for calls that are not recorded.
    inner: Option<(&'static MethodStatus, Instant)>,
}

impl ClientCall {
    /// Starts recording a call of `service.method` (nothing for an empty service name).
    pub fn start(service: &str, method: &str) -> ClientCall {
        ClientCall {
            inner: client_status(service, method).map(|s| {
                let t = s.begin();
                (s, t)
            }),
        }
    }

    /// When the recording started (`None` when nothing is recorded): the caller can reuse it
    /// instead of reading the clock again.
    pub fn started_at(&self) -> Option<Instant> {
        self.inner.as_ref().map(|(_, t)| *t)
    }

    /// Ends the call: a success records its latency, a failure an error.
    pub fn finish(mut self, ok: bool) {
        if let Some((s, t)) = self.inner.take() {
            s.on_responded(t, ok);
        }
    }

    /// Wraps an asynchronous call's completion so it ends the recording first.
    pub fn wrap<T, E>(
        self,
        done: impl FnOnce(Result<T, E>) + Send + 'static,
    ) -> impl FnOnce(Result<T, E>) + Send + 'static {
        move |r| {
            self.finish(r.is_ok());
            done(r)
        }
    }
}

impl Drop for ClientCall {
    fn drop(&mut self) {
        if let Some((s, t)) = self.inner.take() {
            s.on_responded(t, false);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use spindle_metrics::Registry;

    #[test]
    fn calls_errors_and_names() {
        let s = MethodStatus::new(4);
        s.expose("rpc_server_1_test_ms_Method").unwrap();
        {
            let c = s.on_requested();
            assert_eq!(s.concurrency(), 1);
            c.succeeded();
        }
        drop(s.on_requested());
        let snap = s.snapshot();
        assert_eq!((snap.count, snap.errors, snap.concurrency), (1, 1, 0));
        assert_eq!(snap.max_concurrency, 4);
        let reg = Registry::global();
        for suffix in [
            "count",
            "qps",
            "latency",
            "max_latency",
            "latency_99",
            "error",
            "eps",
            "concurrency",
            "max_concurrency",
        ] {
            let name = format!("rpc_server_1_test_ms_method_{suffix}");
            assert!(reg.get(&name).is_some(), "{name} is not exposed");
        }
        let twin = MethodStatus::new(0);
        assert!(twin.expose("rpc_server_1_test_ms_method").is_err());
        assert!(reg.get("rpc_server_1_test_ms_method_count").is_some());
        drop(s);
        assert!(reg.get("rpc_server_1_test_ms_method_count").is_none());
    }

    #[test]
    fn client_calls() {
        let c = ClientCall::start("test.ClientSvc", "Get");
        c.finish(true);
        drop(ClientCall::start("test.ClientSvc", "Get"));
        let s = client_status("test.ClientSvc", "Get").unwrap();
        assert_eq!((s.snapshot().count, s.snapshot().errors), (1, 1));
        assert!(Registry::global()
            .get("rpc_client_test_client_svc_get_error")
            .is_some());
        assert!(client_status("", "raw").is_none());
    }
}
