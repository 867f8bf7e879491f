//! LatencyRecorder: percentiles against a sorted reference, window statistics with manual
//! ticks, many threads, and its exposed names.

use spindle_metrics::{Collector, Exposable, LatencyRecorder, Registry, Value};
use std::sync::Arc;

/// A deterministic pseudo-random sequence (xorshift64*).
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
}

/// The value of rank `ceil(r * n)` in `sorted`.
fn reference(sorted: &[u64], r: f64) -> u64 {
    let rank = ((r * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

/// Within half a bucket: 1/32 of the value (exact below 16).
fn close(got: u64, want: u64) -> bool {
    got.abs_diff(want) * 32 <= want
}

#[test]
fn percentiles_match_a_sorted_reference() {
    let c = Collector::manual();
    let rec = LatencyRecorder::with_collector(10, &c);
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut all = Vec::new();
    for tick in 0..5 {
        for _ in 0..20_000 {
            // Log-uniform from 1 us to ~1 s, plus a tick-dependent shift.
            let exp = rng.next() % 20;
            let v = (1u64 << exp) + rng.next() % (1u64 << exp) + tick;
            rec.record(v as i64);
            all.push(v);
        }
        c.tick();
    }
    all.sort_unstable();
    let ratios = [0.01, 0.1, 0.5, 0.8, 0.9, 0.99, 0.999, 0.9999, 1.0];
    let got = rec.latency_percentiles(&ratios);
    for (r, g) in ratios.iter().zip(&got) {
        let want = reference(&all, *r);
        assert!(close(*g, want), "p{r}: got {g}, want {want} (±1/32)");
    }
    let snap = rec.snapshot();
    assert_eq!(snap.count, 100_000);
    assert_eq!(snap.max_latency, *all.last().unwrap());
    assert_eq!(snap.sum, all.iter().sum::<u64>());
    let mean = snap.sum as f64 / 100_000.0;
    assert!((snap.latency - mean).abs() < 1e-6 * mean);
    assert_eq!(snap.qps, 20_000.0);
    assert!(close(snap.percentiles[0], reference(&all, 0.5)));
    assert!(close(snap.percentiles[2], reference(&all, 0.99)));
}

#[test]
fn small_values_are_exact() {
    let c = Collector::manual();
    let rec = LatencyRecorder::with_collector(10, &c);
    for v in 1..=10 {
        rec.record(v);
    }
    rec.record(-5); // counts as 0
    c.tick();
    assert_eq!(rec.latency_percentiles(&[0.0, 0.5, 1.0]), vec![0, 5, 10]);
    assert_eq!(rec.latency_percentile(0.9), 9);
    assert_eq!(rec.max_latency(), 10);
    assert_eq!(rec.latency(), 5.0);
}

#[test]
fn window_slides_with_ticks() {
    let c = Collector::manual();
    let rec = LatencyRecorder::with_collector(2, &c);
    assert_eq!(rec.snapshot(), Default::default());
    for _ in 0..100 {
        rec.record(1000);
    }
    c.tick();
    for _ in 0..300 {
        rec.record(10);
    }
    c.tick();
    let s = rec.snapshot();
    assert_eq!((s.count, s.qps, s.max_latency), (400, 200.0, 1000));
    assert_eq!(s.latency, (100.0 * 1000.0 + 300.0 * 10.0) / 400.0);
    assert_eq!(s.percentiles[0], 10);
    c.tick(); // the 1000s leave the window
    let s = rec.snapshot();
    assert_eq!(
        (s.count, s.qps, s.max_latency, s.latency),
        (400, 150.0, 10, 10.0)
    );
    c.tick();
    let s = rec.snapshot();
    assert_eq!((s.qps, s.max_latency, s.percentiles[3]), (0.0, 0, 0));
    assert_eq!(rec.window_secs(), 2);
}

#[test]
fn many_threads_and_exited_threads_are_all_counted() {
    let c = Collector::manual();
    let rec = Arc::new(LatencyRecorder::with_collector(10, &c));
    let hs: Vec<_> = (0..8u64)
        .map(|t| {
            let rec = rec.clone();
            std::thread::spawn(move || {
                for i in 0..10_000 {
                    rec.record(((i % 100) + t * 1000) as i64);
                }
            })
        })
        .collect();
    for h in hs {
        h.join().unwrap();
    }
    rec.record_duration(std::time::Duration::from_millis(9));
    c.tick();
    let s = rec.snapshot();
    assert_eq!(s.count, 80_001);
    assert_eq!(s.max_latency, 9000);
    assert_eq!(s.qps, 80_001.0);
    let want_sum: u64 = (0..8u64)
        .map(|t| (0..10_000u64).map(|i| (i % 100) + t * 1000).sum::<u64>())
        .sum::<u64>()
        + 9000;
    assert_eq!(s.sum, want_sum);
}

#[test]
fn exposes_bvar_names() {
    let c = Collector::manual();
    let reg = Registry::new();
    let rec = LatencyRecorder::with_collector(10, &c);
    rec.expose_in(&reg, "example.EchoService.Echo_latency")
        .unwrap();
    assert_eq!(
        reg.list(),
        [
            "example_echo_service_echo_count",
            "example_echo_service_echo_latency",
            "example_echo_service_echo_latency_50",
            "example_echo_service_echo_latency_90",
            "example_echo_service_echo_latency_99",
            "example_echo_service_echo_latency_999",
            "example_echo_service_echo_max_latency",
            "example_echo_service_echo_qps",
        ]
    );
    rec.record(12);
    c.tick();
    assert_eq!(
        reg.value("example_echo_service_echo_count"),
        Some(Value::Int(1))
    );
    assert_eq!(
        reg.value("example_echo_service_echo_latency_99"),
        Some(Value::Int(12))
    );
    assert_eq!(
        reg.value("example_echo_service_echo_qps"),
        Some(Value::Float(1.0))
    );
    // A second recorder cannot take the same names; the first keeps them.
    let other = LatencyRecorder::with_collector(10, &c);
    assert!(other.expose_in(&reg, "example.EchoService.Echo").is_err());
    assert_eq!(reg.list().len(), 8);
    assert!(rec.hide());
    assert!(reg.list().is_empty());
    other.expose_in(&reg, "example.EchoService.Echo").unwrap();
    drop(other);
    assert!(reg.list().is_empty(), "dropping a recorder hides it");
}
