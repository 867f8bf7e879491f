//! Concurrent reads and writes: readers always see a value some writer stored, never a torn one;
//! a set that succeeded is never lost to a concurrent freeze.
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;

use spindle_runtime::define_flag;
use spindle_runtime::flags;

define_flag!(static C_NUMBER: u64 = 0, "number", reloadable = true);
define_flag!(static C_TEXT: String = "aaaa", "text", reloadable = true);
define_flag!(static C_FROZEN: u64 = 0, "frozen while being set");

#[test]
fn readers_see_only_written_values() {
    let stop = Arc::new(AtomicBool::new(false));
    let writers: Vec<_> = (0..2u64)
        .map(|w| {
            thread::spawn(move || {
                for i in 0..20_000u64 {
                    // Values with the same pattern in both halves: a torn read would break it.
                    let half = (i << 1 | w) & 0xffff_ffff;
                    C_NUMBER.set(half << 32 | half).unwrap();
                    let c = if i % 2 == 0 { "aaaa" } else { "bbbbbbbb" };
                    if i % 16 == 0 {
                        flags::set("c_text", c).unwrap();
                    }
                }
            })
        })
        .collect();
    let readers: Vec<_> = (0..2)
        .map(|_| {
            let stop = stop.clone();
            thread::spawn(move || {
                let mut n = 0u64;
                // At least one pass even if the writers finish before this thread first runs.
                loop {
                    let done = stop.load(Ordering::Relaxed);
                    let v = C_NUMBER.get();
                    assert_eq!(v >> 32, v & 0xffff_ffff);
                    let t = C_TEXT.get();
                    assert!(t == "aaaa" || t == "bbbbbbbb", "{t}");
                    let s = flags::get("c_number").unwrap();
                    assert!(s.parse::<u64>().is_ok());
                    n += 1;
                    if done {
                        break n;
                    }
                }
            })
        })
        .collect();
    for w in writers {
        w.join().unwrap();
    }
    stop.store(true, Ordering::Relaxed);
    for r in readers {
        assert!(r.join().unwrap() > 0);
    }
}

#[test]
fn successful_sets_happen_before_a_concurrent_freeze() {
    for round in 0..50u64 {
        C_FROZEN.unfreeze();
        C_FROZEN.set(0).unwrap();
        let setter = thread::spawn(move || {
            let mut last_ok = 0;
            for v in 1..=200u64 {
                if C_FROZEN.set(round * 1000 + v).is_ok() {
                    last_ok = round * 1000 + v;
                }
            }
            last_ok
        });
        thread::yield_now();
        let seen = C_FROZEN.freeze("the race test");
        let last_ok = setter.join().unwrap();
        // Every accepted set happened before the freeze, so the consumer saw the last of them.
        assert_eq!(seen, last_ok, "round {round}");
        assert_eq!(C_FROZEN.get(), seen);
    }
}
