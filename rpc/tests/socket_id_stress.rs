//! Multi-thread stress of the versioned socket map: threads insert, address, fail and drop
//! concurrently; every handle must see the value of its own generation, every value must be
//! dropped exactly once, and stale ids must never resolve. Bounded: fixed operation counts.
#![cfg(not(loom))]

use spindle_rpc::socket::{SocketId, SocketMap};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

static DROPS: AtomicUsize = AtomicUsize::new(0);

/// Knows the id it was stored under, so a reader can check it reached the right generation.
struct Entry {
    id: Mutex<Option<SocketId>>,
}

impl Drop for Entry {
    fn drop(&mut self) {
        DROPS.fetch_add(1, Ordering::SeqCst);
    }
}

#[test]
fn stress_insert_address_fail_recycle() {
    const THREADS: usize = 4;
    const ROUNDS: usize = 3000;
    let map: SocketMap<Entry> = SocketMap::with_max_chunks(8);
    // Ids published for other threads to address (some stale by the time they are read).
    let shared: Vec<AtomicUsize> = (0..16).map(|_| AtomicUsize::new(usize::MAX)).collect();
    let inserted = AtomicUsize::new(0);

    std::thread::scope(|s| {
        for t in 0..THREADS {
            let (map, shared, inserted) = (&map, &shared, &inserted);
            s.spawn(move || {
                let mut rng = (t as u64 + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15);
                let mut next = || {
                    rng ^= rng << 13;
                    rng ^= rng >> 7;
                    rng ^= rng << 17;
                    rng
                };
                for _ in 0..ROUNDS {
                    let id = map
                        .insert(Entry {
                            id: Mutex::new(None),
                        })
                        .expect("capacity suffices");
                    inserted.fetch_add(1, Ordering::Relaxed);
                    *map.address(id).unwrap().id.lock().unwrap() = Some(id);
                    shared[(next() % 16) as usize].store(id.as_u64() as usize, Ordering::Release);

                    // Address a few ids published by anyone; a success must be that generation.
                    for _ in 0..4 {
                        let raw = shared[(next() % 16) as usize].load(Ordering::Acquire);
                        if raw == usize::MAX {
                            continue;
                        }
                        let other = SocketId::from_u64(raw as u64);
                        if let Some(r) = map.address(other) {
                            let seen = *r.id.lock().unwrap();
                            // The publisher records the id before publishing it.
                            assert_eq!(seen, Some(other), "reached another generation");
                            if next() % 3 == 0 {
                                let _ = r.set_failed();
                            }
                        }
                    }
                    let _ = map.set_failed(id);
                    assert!(map.address(id).is_none(), "failed id still resolves");
                }
            });
        }
    });
    let n = inserted.load(Ordering::SeqCst);
    assert_eq!(n, THREADS * ROUNDS);
    assert_eq!(
        DROPS.load(Ordering::SeqCst),
        n,
        "every value dropped exactly once"
    );
    drop(map);
    assert_eq!(DROPS.load(Ordering::SeqCst), n);
}
