//! mpsc channels: ordering, disconnect detection, bounded backpressure, timeouts.
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::Arc;
use std::time::{Duration, Instant};

use spindle_runtime::spawn;
use spindle_runtime::sync::mpsc::{
    self, RecvError, RecvTimeoutError, SendError, SendTimeoutError, TryRecvError, TrySendError,
};

#[test]
fn unbounded_many_producers_in_order_then_disconnect() {
    let (tx, rx) = mpsc::unbounded();
    let per = 5_000;
    let hs: Vec<_> = (0..4)
        .map(|p| {
            let tx = tx.clone();
            spawn(move || {
                for i in 0..per {
                    tx.send((p, i)).unwrap();
                }
            })
        })
        .collect();
    drop(tx);
    let mut next = [0; 4];
    let mut total = 0;
    while let Ok((p, i)) = rx.recv() {
        assert_eq!(next[p], i);
        next[p] += 1;
        total += 1;
    }
    assert_eq!(total, 4 * per);
    assert_eq!(rx.recv(), Err(RecvError));
    assert_eq!(rx.try_recv(), Err(TryRecvError::Disconnected));
    for h in hs {
        h.join().unwrap();
    }
}

#[test]
fn bounded_applies_backpressure() {
    let (tx, rx) = mpsc::bounded(2);
    tx.send(1).unwrap();
    tx.send(2).unwrap();
    assert_eq!(tx.try_send(3), Err(TrySendError::Full(3)));
    let sent = Arc::new(AtomicUsize::new(0));
    let s2 = sent.clone();
    let producer = spawn(move || {
        tx.send(3).unwrap(); // blocks until the receiver makes room
        s2.store(1, SeqCst);
        tx
    });
    std::thread::sleep(Duration::from_millis(10));
    assert_eq!(
        sent.load(SeqCst),
        0,
        "send on a full bounded channel must block"
    );
    assert_eq!(rx.recv(), Ok(1));
    let tx = producer.join().unwrap();
    assert_eq!(sent.load(SeqCst), 1);
    assert_eq!(rx.try_recv(), Ok(2));
    assert_eq!(rx.try_recv(), Ok(3));
    assert_eq!(rx.try_recv(), Err(TryRecvError::Empty));
    assert_eq!(
        tx.send_timeout(4, Instant::now() + Duration::from_millis(1)),
        Ok(())
    );
    tx.send(5).unwrap();
    assert_eq!(
        tx.send_timeout(6, Instant::now() + Duration::from_millis(5)),
        Err(SendTimeoutError::Timeout(6))
    );
}

#[test]
fn receiver_drop_disconnects_senders_and_drops_queued_items() {
    let (tx, rx) = mpsc::unbounded();
    let item = Arc::new(());
    tx.send(item.clone()).unwrap();
    assert_eq!(Arc::strong_count(&item), 2);
    drop(rx);
    assert_eq!(
        Arc::strong_count(&item),
        1,
        "queued items dropped with the receiver"
    );
    assert!(tx.is_disconnected());
    assert!(matches!(tx.send(item.clone()), Err(SendError(_))));
    assert!(matches!(
        tx.try_send(item),
        Err(TrySendError::Disconnected(_))
    ));
}

#[test]
fn recv_timeout_and_wakeup_by_late_sender() {
    let (tx, rx) = mpsc::bounded::<u32>(8);
    assert_eq!(
        rx.recv_timeout(Instant::now() + Duration::from_millis(5)),
        Err(RecvTimeoutError::Timeout)
    );
    let h = spawn(move || {
        spindle_runtime::sleep(Duration::from_millis(5)); // in a fiber: park, not block
        tx.send(9).unwrap();
    });
    assert_eq!(
        rx.recv_timeout(Instant::now() + Duration::from_secs(30)),
        Ok(9)
    );
    h.join().unwrap();
    assert_eq!(
        rx.recv_timeout(Instant::now() + Duration::from_secs(30)),
        Err(RecvTimeoutError::Disconnected)
    );
}

#[test]
fn bounded_ping_pong_between_fibers() {
    let (tx, rx) = mpsc::bounded(1);
    let (back_tx, back_rx) = mpsc::bounded(1);
    let echo = spawn(move || {
        for v in rx.iter() {
            back_tx.send(v * 2).unwrap();
        }
    });
    for i in 0..2_000u64 {
        tx.send(i).unwrap();
        assert_eq!(back_rx.recv(), Ok(i * 2));
    }
    drop(tx);
    echo.join().unwrap();
    assert_eq!(back_rx.recv(), Err(RecvError));
}
