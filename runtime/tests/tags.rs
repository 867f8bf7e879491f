//! Worker tags: fibers of a tag run only on that tag's workers, and stay there.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use spindle_runtime::{current_tag, current_worker, init, sleep, yield_now, Builder, Config};

#[test]
fn tags_are_isolated() {
    init(Config {
        fiber_concurrency: 4,
        task_group_ntags: 2,
        ..Config::default()
    })
    .unwrap();
    assert_eq!(spindle_runtime::stats().workers, 4);
    let seen: Arc<Mutex<[HashSet<usize>; 2]>> = Arc::default();
    let mut hs = Vec::new();
    for i in 0..200 {
        let tag = i % 2;
        let seen = seen.clone();
        hs.push(Builder::new().tag(tag).spawn(move || {
            for k in 0..20 {
                assert_eq!(current_tag(), Some(tag));
                seen.lock().unwrap()[tag].insert(current_worker().unwrap());
                if k % 5 == 0 {
                    sleep(Duration::from_millis(1));
                } else {
                    yield_now();
                }
                // A child spawned without a tag inherits the parent's.
                if k == 10 {
                    let child = Builder::new().spawn(current_tag);
                    assert_eq!(child.join().unwrap(), Some(tag));
                }
            }
        }));
    }
    for h in hs {
        h.join().unwrap();
    }
    let seen = seen.lock().unwrap();
    assert!(
        seen[0].is_disjoint(&seen[1]),
        "a worker ran fibers of both tags: {seen:?}"
    );
    assert!(seen[0].iter().all(|w| *w < 2) && seen[1].iter().all(|w| *w >= 2));
    // An unknown tag is refused with a message naming the flag.
    let err = std::panic::catch_unwind(|| Builder::new().tag(7).spawn(|| ())).unwrap_err();
    let msg = err.downcast_ref::<String>().cloned().unwrap_or_default();
    assert!(msg.contains("task_group_ntags"), "{msg}");
    assert_eq!(
        init(Config::default()),
        Err(spindle_runtime::InitError::AlreadyStarted)
    );
}
