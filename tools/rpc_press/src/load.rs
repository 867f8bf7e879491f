//! The load: client fibers (or threads) calling one method at a target rate.

use crate::report::{Recorder, Second, Summary};
use crate::schema::MethodSchema;
use crate::PressError;
use spindle_iobuf::IOBuf;
use spindle_rpc::channel::{Channel, ChannelOptions};
use spindle_rpc::protocol::{ConnectionType, MessageBody};
use spindle_rpc::service::{CallContext, MethodDescriptor};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How far behind its schedule a client may fall before it drops the missed calls instead of
/// bursting to catch up.
const MAX_BACKLOG: Duration = Duration::from_millis(100);

/// How to load the server.
#[derive(Debug, Clone)]
pub struct PressOptions {
    /// `ip:port` or `host:port` of the server.
    pub server: String,
    /// Client protocol (`baidu_std`).
    pub protocol: String,
    /// Connection type; `None` = the protocol's first.
    pub connection_type: Option<ConnectionType>,
    /// Deadline of each call in ms.
    pub timeout_ms: i64,
    /// Retries of a call on connection errors.
    pub max_retry: u32,
    /// Target calls per second over all clients; 0 = as fast as the clients go.
    pub qps: u64,
    /// Concurrent clients (each one call in flight at a time).
    pub clients: usize,
    /// Clients are fibers (`true`) or OS threads.
    pub use_fiber: bool,
    /// How long to load; `Duration::MAX` = until [`PressOptions::stop`] is set.
    pub duration: Duration,
    /// Set it to stop early (from a signal handler thread, say).
    pub stop: Arc<AtomicBool>,
}

impl Default for PressOptions {
    /// brpc rpc_press's defaults: 100 QPS from one client, baidu_std, 1 s timeout; 10 s of load.
    fn default() -> Self {
        PressOptions {
            server: "127.0.0.1:8000".to_owned(),
            protocol: "baidu_std".to_owned(),
            connection_type: None,
            timeout_ms: 1000,
            max_retry: 0,
            qps: 100,
            clients: 1,
            use_fiber: true,
            duration: Duration::from_secs(10),
            stop: Arc::new(AtomicBool::new(false)),
        }
    }
}

/// A request body encoded once, sent many times.
struct Encoded<'a>(&'a [u8]);

impl MessageBody for Encoded<'_> {
    fn encode_body(&self, out: &mut IOBuf) {
        out.append(self.0);
    }
}

/// Loads `schema`'s method with `requests` (encoded bodies, sent round-robin) as `options`
/// says. `report` sees every full second; the [`Summary`] covers the whole run.
pub fn press(
    schema: &MethodSchema,
    requests: &[Vec<u8>],
    options: &PressOptions,
    mut report: impl FnMut(&Second),
) -> Result<Summary, PressError> {
    if options.clients == 0 {
        return Err(PressError::Option("clients must be at least 1".to_owned()));
    }
    if requests.is_empty() {
        return Err(PressError::Input("no request to send".to_owned()));
    }
    let channel = Channel::new(
        &options.server,
        ChannelOptions {
            protocol: options.protocol.clone(),
            connection_type: options.connection_type,
            timeout_ms: options.timeout_ms,
            max_retry: options.max_retry,
            ..ChannelOptions::default()
        },
    )
    .map_err(|e| PressError::Channel(e.to_string()))?;
    // A method descriptor with 'static names, made once per run (a handful of bytes).
    let leak = |s: &str| -> &'static str { Box::leak(s.to_owned().into_boxed_str()) };
    let method: &'static MethodDescriptor = Box::leak(Box::new(MethodDescriptor {
        service: leak(&schema.service),
        name: leak(&schema.method),
        index: 0,
        input_type: leak(schema.input.full_name()),
        output_type: leak(schema.output.full_name()),
    }));

    let shared = Arc::new(Shared {
        channel,
        method,
        requests: requests.to_vec(),
        schema: schema.clone(),
        recorder: Recorder::new(options.clients),
        stop: options.stop.clone(),
    });
    let start = Instant::now();
    let end = start.checked_add(options.duration);
    // Each client sends every `clients / qps` seconds, clients staggered over one interval.
    let interval = (options.qps > 0)
        .then(|| Duration::from_secs_f64(options.clients as f64 / options.qps as f64));
    let mut waits = Vec::new();
    for i in 0..options.clients {
        let shared = shared.clone();
        let first = interval.map(|iv| start + iv.mul_f64(i as f64 / options.clients as f64));
        let (tx, rx) = std::sync::mpsc::channel::<()>();
        waits.push(rx);
        let client = move || {
            shared.client(i, first, interval, end);
            let _ = tx.send(());
        };
        if options.use_fiber {
            drop(spindle_runtime::spawn(client));
        } else {
            std::thread::spawn(client);
        }
    }
    // Report every second until the end.
    let mut failed = 0;
    let mut elapsed_s = 0;
    loop {
        let next = start + Duration::from_secs(elapsed_s + 1);
        let stop_at = end.map_or(next, |e| e.min(next));
        while Instant::now() < stop_at && !shared.stop.load(Ordering::Relaxed) {
            std::thread::sleep((stop_at - Instant::now()).min(Duration::from_millis(50)));
        }
        let done = end.is_some_and(|e| Instant::now() >= e) || shared.stop.load(Ordering::Relaxed);
        if done {
            break;
        }
        elapsed_s += 1;
        let s = shared.recorder.second(elapsed_s);
        failed += s.errors;
        report(&s);
    }
    shared.stop.store(true, Ordering::Relaxed);
    // Calls in flight end by their deadline at the latest.
    for w in waits {
        let _ = w.recv();
    }
    let duration = start.elapsed();
    let last = shared.recorder.second(elapsed_s + 1);
    failed += last.errors;
    Ok(shared.recorder.summary(duration, failed))
}

/// What the clients share.
struct Shared {
    channel: Channel,
    method: &'static MethodDescriptor,
    requests: Vec<Vec<u8>>,
    schema: MethodSchema,
    recorder: Recorder,
    stop: Arc<AtomicBool>,
}

impl Shared {
    /// One client: call, record, pace, until `end` or stop.
    fn client(
        &self,
        i: usize,
        first: Option<Instant>,
        interval: Option<Duration>,
        end: Option<Instant>,
    ) {
        let mut next = first;
        let mut k = i;
        let ctx = CallContext::default();
        loop {
            if self.stop.load(Ordering::Relaxed) {
                return;
            }
            if let (Some(at), Some(iv)) = (next, interval) {
                let now = Instant::now();
                if at > now {
                    spindle_runtime::sleep(at - now);
                }
                // After a stall, catch up at most MAX_BACKLOG of missed calls, then keep pace.
                next = Some((at + iv).max(Instant::now() - MAX_BACKLOG));
            }
            if end.is_some_and(|e| Instant::now() >= e) {
                return;
            }
            let body = Encoded(&self.requests[k % self.requests.len()]);
            k += 1;
            let t0 = Instant::now();
            match self.channel.call_method(self.method, &ctx, &body) {
                Ok(r) => {
                    self.recorder.ok(i, t0.elapsed());
                    if self.recorder.wants_first_response() {
                        let json = self
                            .schema
                            .response_to_json(r.payload)
                            .unwrap_or_else(|e| e.to_string());
                        self.recorder.set_first_response(json);
                    }
                }
                Err(e) => {
                    let name = format!("{}({})", e.code.name().unwrap_or("E?"), e.code.code());
                    self.recorder.failed(i, name, e.to_string());
                }
            }
        }
    }
}
