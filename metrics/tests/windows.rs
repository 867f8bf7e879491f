//! Windows and per-second views driven by a manual collector: one tick is one second.

use spindle_metrics::{
    Adder, Collector, Exposable, FloatAdder, IntRecorder, Maxer, Miner, PassiveStatus, PerSecond,
    Registry, Value, Window,
};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

#[test]
fn adder_window_and_rate() {
    let c = Collector::manual();
    let a = Adder::new();
    a.add(1000); // before the window existed: never counted by it
    let w = Window::with_collector(&a, 3, &c);
    let ps = PerSecond::with_collector(&a, 3, &c);
    assert_eq!((w.get_value(), ps.get_value()), (0, 0.0));
    for v in [10, 20, 30, 40] {
        a.add(v);
        assert_eq!(
            w.get_value(),
            [0, 10, 30, 60, 90][(v / 10 - 1) as usize],
            "before tick"
        );
        c.tick();
    }
    // Last 3 ticks carry 20 + 30 + 40.
    assert_eq!(w.get_value(), 90);
    assert_eq!(ps.get_value(), 30.0);
    assert_eq!(w.get_span(), (90, Duration::from_secs(3)));
    // Idle ticks slide the window forward.
    c.tick();
    assert_eq!(w.get_value(), 70);
    c.tick();
    c.tick();
    assert_eq!((w.get_value(), ps.get_value()), (0, 0.0));
    assert_eq!(w.window_secs(), 3);
}

#[test]
fn windows_of_one_variable_share_a_series() {
    let c = Collector::manual();
    let a = Adder::new();
    let short = Window::with_collector(&a, 1, &c);
    let long = Window::with_collector(&a, 60, &c);
    for i in 1..=100 {
        a.add(i);
        c.tick();
    }
    assert_eq!(short.get_value(), 100);
    assert_eq!(long.get_value(), (41..=100).sum::<i64>());
    // Window lengths are clamped.
    assert_eq!(Window::with_collector(&a, 0, &c).window_secs(), 1);
    assert_eq!(Window::with_collector(&a, 99_999, &c).window_secs(), 3600);
}

#[test]
fn uneven_ticks_divide_by_elapsed_time() {
    let c = Collector::manual();
    let a = FloatAdder::new();
    let ps = PerSecond::with_collector(&a, 10, &c);
    a.add(5.0);
    c.tick_at(Duration::from_millis(2500));
    assert_eq!(ps.get_value(), 2.0);
}

#[test]
fn maxer_and_miner_windows_take_extremes_per_tick() {
    let c = Collector::manual();
    let (mx, mn) = (Maxer::new(), Miner::new());
    let (wmx, wmn) = (
        Window::with_collector(&mx, 2, &c),
        Window::with_collector(&mn, 2, &c),
    );
    for v in [5, 1, 3] {
        mx.record(v);
        mn.record(v);
        mx.record(-v);
        mn.record(v + 100);
        c.tick();
    }
    // Ticks: max 5, 1, 3 / min 5, 1, 3 — the window holds the last two.
    assert_eq!((wmx.get_value(), wmn.get_value()), (3, 1));
    assert_eq!(
        (mx.value(), mn.value()),
        (5, 1),
        "all-time values are unaffected by ticks"
    );
    c.tick();
    c.tick();
    assert_eq!((wmx.get_value(), wmn.get_value()), (i64::MIN, i64::MAX));
}

#[test]
fn maxer_window_includes_exited_threads() {
    let c = Collector::manual();
    let mx = Arc::new(Maxer::new());
    let w = Window::with_collector(&*mx, 5, &c);
    let m2 = mx.clone();
    std::thread::spawn(move || m2.record(77)).join().unwrap();
    c.tick();
    assert_eq!(w.get_value(), 77);
}

#[test]
fn int_recorder_window_averages() {
    let c = Collector::manual();
    let r = IntRecorder::new();
    let w = Window::with_collector(&r, 2, &c);
    r.record(100);
    c.tick();
    r.record(10);
    r.record(20);
    c.tick();
    assert_eq!(w.get_value(), 130.0 / 3.0);
    r.record(30);
    c.tick();
    assert_eq!(w.get_value(), 20.0);
    c.tick();
    c.tick();
    assert_eq!(w.get_value(), 0.0);
}

#[test]
fn passive_status_reads_its_callback_and_has_a_rate() {
    let c = Collector::manual();
    let src = Arc::new(AtomicI64::new(0));
    let s2 = src.clone();
    let p = PassiveStatus::new(move || s2.load(Ordering::Relaxed));
    let ps = PerSecond::with_collector(&p, 2, &c);
    src.store(7, Ordering::Relaxed);
    assert_eq!(p.get_value(), 7);
    c.tick();
    src.store(17, Ordering::Relaxed);
    c.tick();
    assert_eq!(ps.get_value(), 8.5);

    let reg = Registry::new();
    p.expose_in(&reg, "passive_value").unwrap();
    ps.expose_in(&reg, "passive_second").unwrap();
    let text = PassiveStatus::new(|| String::from("hello"));
    text.expose_in(&reg, "passive_text").unwrap();
    assert_eq!(reg.value("passive_value"), Some(Value::Int(17)));
    assert_eq!(reg.value("passive_second"), Some(Value::Float(8.5)));
    assert_eq!(reg.value("passive_text"), Some(Value::Text("hello".into())));
}

#[test]
fn dropped_views_leave_the_collector() {
    let c = Collector::manual();
    let a = Adder::new();
    let w = Window::with_collector(&a, 2, &c);
    drop(w);
    // The series is gone; ticking must not fail, and a new window starts fresh.
    a.add(5);
    c.tick();
    let w = Window::with_collector(&a, 2, &c);
    c.tick();
    assert_eq!(w.get_value(), 0);
}
