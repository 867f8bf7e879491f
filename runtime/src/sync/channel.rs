//! Multi-producer single-consumer channels for fibers and threads, bounded and unbounded
//! (also reachable as `sync::mpsc`).
//!
//! # Design and invariants
//!
//! One [`Mutex`] guards the queue and the bookkeeping; two [`Condvar`]s carry the blocking:
//! the receiver sleeps on `not_empty`, senders of a full bounded channel sleep on `not_full`.
//! Blocking therefore parks only the calling fiber (a plain thread blocks).
//!
//! 1. Every state change a sleeper waits for (an item pushed, an item popped from a full
//!    channel, a side disconnecting) is made under the mutex, which also reads the matching
//!    sleeper count; if non-zero, a notify follows right after the unlock. A sleeper registers
//!    and reads the condvar's sequence under the same mutex, so that notify reaches it: no
//!    wake-up is lost, the woken side does not immediately block on the mutex, and the
//!    uncontended path does not notify.
//! 2. `senders` counts live [`Sender`]s; when it drops to 0 the receiver is woken and, once the
//!    queue is empty, `recv` reports [`RecvError`] (items sent before the last sender dropped are
//!    still delivered).
//! 3. When the [`Receiver`] drops, the queued items are dropped, sleeping senders are woken and
//!    every later send returns the item inside a `Disconnected`/[`SendError`].
//! 4. Items from one sender are received in the order sent (one FIFO queue).
use std::collections::VecDeque;
use std::fmt;
use std::sync::Arc;
use std::time::Instant;

use super::{Condvar, Mutex};

/// Creates an unbounded channel: `send` never blocks.
///
/// ```
/// use spindle_runtime::sync::mpsc;
///
/// let (tx, rx) = mpsc::unbounded();
/// let tx2 = tx.clone();
/// spindle_runtime::spawn(move || tx2.send(1).unwrap()).join().unwrap();
/// tx.send(2).unwrap();
/// drop(tx);
/// assert_eq!(rx.iter().collect::<Vec<_>>(), vec![1, 2]);
/// ```
pub fn unbounded<T>() -> (Sender<T>, Receiver<T>) {
    new_channel(None)
}

/// Same as [`unbounded`] (the name `std::sync::mpsc` users expect).
pub fn channel<T>() -> (Sender<T>, Receiver<T>) {
    unbounded()
}

/// Creates a bounded channel holding at most `capacity` items: `send` parks the sender while it
/// is full (backpressure).
///
/// # Panics
/// If `capacity` is 0 (rendezvous channels are not supported).
///
/// ```
/// use spindle_runtime::sync::mpsc::{self, TrySendError};
///
/// let (tx, rx) = mpsc::bounded(1);
/// tx.send('a').unwrap();
/// assert_eq!(tx.try_send('b'), Err(TrySendError::Full('b')));
/// assert_eq!(rx.recv(), Ok('a'));
/// tx.try_send('b').unwrap();
/// ```
pub fn bounded<T>(capacity: usize) -> (Sender<T>, Receiver<T>) {
    assert!(
        capacity > 0,
        "mpsc::bounded(0): capacity must be at least 1"
    );
    new_channel(Some(capacity))
}

/// Builds both ends around one shared state.
fn new_channel<T>(capacity: Option<usize>) -> (Sender<T>, Receiver<T>) {
    let shared = Arc::new(Shared {
        state: Mutex::new(State {
            queue: VecDeque::new(),
            senders: 1,
            receiver_alive: true,
            recv_waiting: 0,
            send_waiting: 0,
        }),
        not_empty: Condvar::new(),
        not_full: Condvar::new(),
        capacity,
    });
    (
        Sender {
            shared: shared.clone(),
        },
        Receiver { shared },
    )
}

/// State shared by both ends.
struct Shared<T> {
    /// Queue and bookkeeping.
    state: Mutex<State<T>>,
    /// The receiver sleeps here while the queue is empty.
    not_empty: Condvar,
    /// Senders sleep here while a bounded queue is full.
    not_full: Condvar,
    /// `Some(n)`: bounded to `n` items.
    capacity: Option<usize>,
}

/// Mutex-protected part of [`Shared`].
struct State<T> {
    /// Items in send order.
    queue: VecDeque<T>,
    /// Live `Sender`s.
    senders: usize,
    /// Whether the `Receiver` is alive.
    receiver_alive: bool,
    /// Receivers asleep on `not_empty` (0 or 1).
    recv_waiting: usize,
    /// Senders asleep on `not_full`.
    send_waiting: usize,
}

impl<T> Shared<T> {
    /// Whether the queue has room.
    fn has_room(&self, st: &State<T>) -> bool {
        self.capacity.is_none_or(|cap| st.queue.len() < cap)
    }

    /// Wakes the receiver if `wake` (computed under the lock) says it sleeps.
    fn wake_receiver(&self, wake: bool) {
        if wake {
            self.not_empty.notify_one();
        }
    }

    /// Wakes one sender if `wake` (computed under the lock) says one sleeps on a full queue.
    fn wake_sender(&self, wake: bool) {
        if wake {
            self.not_full.notify_one();
        }
    }
}

/// The sending half; clone it for more producers. Dropping the last one disconnects.
pub struct Sender<T> {
    /// The channel.
    shared: Arc<Shared<T>>,
}

/// The receiving half (one per channel). Dropping it disconnects.
pub struct Receiver<T> {
    /// The channel.
    shared: Arc<Shared<T>>,
}

/// The receiver is gone; the unsent item is returned.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct SendError<T>(pub T);

/// Why [`Sender::try_send`] failed; the item is returned.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum TrySendError<T> {
    /// A bounded channel is at capacity.
    Full(T),
    /// The receiver is gone.
    Disconnected(T),
}

/// Why [`Sender::send_timeout`] failed; the item is returned.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum SendTimeoutError<T> {
    /// The channel stayed full until the deadline.
    Timeout(T),
    /// The receiver is gone.
    Disconnected(T),
}

/// Every sender is gone and the queue is empty.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecvError;

/// Why [`Receiver::try_recv`] returned nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TryRecvError {
    /// Nothing queued right now, but senders remain.
    Empty,
    /// Nothing queued and every sender is gone.
    Disconnected,
}

/// Why [`Receiver::recv_timeout`] returned nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecvTimeoutError {
    /// Nothing arrived before the deadline.
    Timeout,
    /// Nothing queued and every sender is gone.
    Disconnected,
}

impl<T> Sender<T> {
    /// Sends `item`, parking while a bounded channel is full. `Err(SendError(item))` if the
    /// receiver is gone (also if it goes while this sender waits).
    pub fn send(&self, item: T) -> Result<(), SendError<T>> {
        match self.send_inner(item, None) {
            Ok(()) => Ok(()),
            Err(SendTimeoutError::Disconnected(t) | SendTimeoutError::Timeout(t)) => {
                Err(SendError(t))
            }
        }
    }

    /// Sends without blocking: `Full` if a bounded channel is at capacity.
    pub fn try_send(&self, item: T) -> Result<(), TrySendError<T>> {
        let mut st = self.shared.state.lock();
        if !st.receiver_alive {
            return Err(TrySendError::Disconnected(item));
        }
        if !self.shared.has_room(&st) {
            return Err(TrySendError::Full(item));
        }
        let wake = self.push(&mut st, item);
        drop(st);
        self.shared.wake_receiver(wake);
        Ok(())
    }

    /// Sends, parking at most until `deadline` while the channel is full.
    pub fn send_timeout(&self, item: T, deadline: Instant) -> Result<(), SendTimeoutError<T>> {
        self.send_inner(item, Some(deadline))
    }

    /// Whether the receiver is gone (a snapshot).
    pub fn is_disconnected(&self) -> bool {
        !self.shared.state.lock().receiver_alive
    }

    /// Shared body of the blocking sends.
    fn send_inner(&self, item: T, deadline: Option<Instant>) -> Result<(), SendTimeoutError<T>> {
        let mut st = self.shared.state.lock();
        loop {
            if !st.receiver_alive {
                return Err(SendTimeoutError::Disconnected(item));
            }
            if self.shared.has_room(&st) {
                let wake = self.push(&mut st, item);
                drop(st);
                self.shared.wake_receiver(wake);
                return Ok(());
            }
            st.send_waiting += 1;
            let timed_out = match deadline {
                None => {
                    self.shared.not_full.wait(&mut st);
                    false
                }
                Some(d) => self.shared.not_full.wait_until(&mut st, d),
            };
            st.send_waiting -= 1;
            if timed_out && st.receiver_alive && !self.shared.has_room(&st) {
                return Err(SendTimeoutError::Timeout(item));
            }
        }
    }

    /// Appends under the lock; returns whether the receiver sleeps and must be woken (after the
    /// lock is released, so it does not wake only to block on the mutex).
    fn push(&self, st: &mut State<T>, item: T) -> bool {
        st.queue.push_back(item);
        st.recv_waiting > 0
    }
}

impl<T> Clone for Sender<T> {
    fn clone(&self) -> Self {
        self.shared.state.lock().senders += 1;
        Sender {
            shared: self.shared.clone(),
        }
    }
}

impl<T> Drop for Sender<T> {
    fn drop(&mut self) {
        let mut st = self.shared.state.lock();
        st.senders -= 1;
        let wake = st.senders == 0 && st.recv_waiting > 0;
        drop(st);
        self.shared.wake_receiver(wake);
    }
}

impl<T> Receiver<T> {
    /// Takes the oldest item, parking while the channel is empty. `Err(RecvError)` once every
    /// sender is gone and the queue is drained.
    pub fn recv(&self) -> Result<T, RecvError> {
        self.recv_inner(None).map_err(|_| RecvError)
    }

    /// Takes the oldest item if there is one; never blocks.
    pub fn try_recv(&self) -> Result<T, TryRecvError> {
        let mut st = self.shared.state.lock();
        match self.pop(&mut st) {
            Some((t, wake)) => {
                drop(st);
                self.shared.wake_sender(wake);
                Ok(t)
            }
            None if st.senders == 0 => Err(TryRecvError::Disconnected),
            None => Err(TryRecvError::Empty),
        }
    }

    /// Like [`Receiver::recv`], parking at most until `deadline`.
    ///
    /// ```
    /// use spindle_runtime::sync::mpsc::{self, RecvTimeoutError};
    /// use std::time::{Duration, Instant};
    ///
    /// let (tx, rx) = mpsc::unbounded::<u8>();
    /// let soon = Instant::now() + Duration::from_millis(5);
    /// assert_eq!(rx.recv_timeout(soon), Err(RecvTimeoutError::Timeout));
    /// drop(tx);
    /// assert_eq!(rx.recv_timeout(soon), Err(RecvTimeoutError::Disconnected));
    /// ```
    pub fn recv_timeout(&self, deadline: Instant) -> Result<T, RecvTimeoutError> {
        self.recv_inner(Some(deadline))
    }

    /// A blocking iterator: yields items until every sender is gone and the queue is drained.
    pub fn iter(&self) -> Iter<'_, T> {
        Iter { rx: self }
    }

    /// Whether every sender is gone (items may still be queued).
    pub fn is_disconnected(&self) -> bool {
        self.shared.state.lock().senders == 0
    }

    /// Shared body of the blocking receives.
    fn recv_inner(&self, deadline: Option<Instant>) -> Result<T, RecvTimeoutError> {
        let mut st = self.shared.state.lock();
        loop {
            if let Some((t, wake)) = self.pop(&mut st) {
                drop(st);
                self.shared.wake_sender(wake);
                return Ok(t);
            }
            if st.senders == 0 {
                return Err(RecvTimeoutError::Disconnected);
            }
            st.recv_waiting += 1;
            let timed_out = match deadline {
                None => {
                    self.shared.not_empty.wait(&mut st);
                    false
                }
                Some(d) => self.shared.not_empty.wait_until(&mut st, d),
            };
            st.recv_waiting -= 1;
            if timed_out && st.queue.is_empty() && st.senders > 0 {
                return Err(RecvTimeoutError::Timeout);
            }
        }
    }

    /// Pops under the lock; also returns whether a sender sleeps on the full queue and must be
    /// woken once the lock is released.
    fn pop(&self, st: &mut State<T>) -> Option<(T, bool)> {
        let t = st.queue.pop_front()?;
        Some((t, st.send_waiting > 0))
    }
}

impl<T> Drop for Receiver<T> {
    fn drop(&mut self) {
        let drained = {
            let mut st = self.shared.state.lock();
            st.receiver_alive = false;
            (std::mem::take(&mut st.queue), st.send_waiting > 0)
        };
        if drained.1 {
            self.shared.not_full.notify_all();
        }
        drop(drained); // user destructors run outside the lock
    }
}

/// Blocking iterator over a [`Receiver`]; see [`Receiver::iter`].
pub struct Iter<'a, T> {
    /// The receiver iterated.
    rx: &'a Receiver<T>,
}

impl<T> Iterator for Iter<'_, T> {
    type Item = T;
    fn next(&mut self) -> Option<T> {
        self.rx.recv().ok()
    }
}

impl<'a, T> IntoIterator for &'a Receiver<T> {
    type Item = T;
    type IntoIter = Iter<'a, T>;
    fn into_iter(self) -> Iter<'a, T> {
        self.iter()
    }
}

impl<T> fmt::Debug for Sender<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sender").finish_non_exhaustive()
    }
}

impl<T> fmt::Debug for Receiver<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Receiver").finish_non_exhaustive()
    }
}

impl<T> fmt::Debug for SendError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SendError(..)")
    }
}

impl<T> fmt::Display for SendError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("sending on a channel whose receiver was dropped")
    }
}

impl<T> std::error::Error for SendError<T> {}

impl<T> fmt::Debug for TrySendError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TrySendError::Full(_) => f.write_str("Full(..)"),
            TrySendError::Disconnected(_) => f.write_str("Disconnected(..)"),
        }
    }
}

impl<T> fmt::Display for TrySendError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TrySendError::Full(_) => f.write_str("sending on a full bounded channel"),
            TrySendError::Disconnected(_) => {
                f.write_str("sending on a channel whose receiver was dropped")
            }
        }
    }
}

impl<T> std::error::Error for TrySendError<T> {}

impl<T> fmt::Debug for SendTimeoutError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SendTimeoutError::Timeout(_) => f.write_str("Timeout(..)"),
            SendTimeoutError::Disconnected(_) => f.write_str("Disconnected(..)"),
        }
    }
}

impl<T> fmt::Display for SendTimeoutError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SendTimeoutError::Timeout(_) => {
                f.write_str("bounded channel stayed full until the deadline")
            }
            SendTimeoutError::Disconnected(_) => {
                f.write_str("sending on a channel whose receiver was dropped")
            }
        }
    }
}

impl<T> std::error::Error for SendTimeoutError<T> {}

impl fmt::Display for RecvError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("receiving on an empty channel whose senders were all dropped")
    }
}

impl std::error::Error for RecvError {}

impl fmt::Display for TryRecvError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TryRecvError::Empty => f.write_str("channel is empty"),
            TryRecvError::Disconnected => {
                f.write_str("channel is empty and its senders were all dropped")
            }
        }
    }
}

impl std::error::Error for TryRecvError {}

impl fmt::Display for RecvTimeoutError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RecvTimeoutError::Timeout => f.write_str("nothing received before the deadline"),
            RecvTimeoutError::Disconnected => {
                f.write_str("channel is empty and its senders were all dropped")
            }
        }
    }
}

impl std::error::Error for RecvTimeoutError {}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn per_sender_order_and_disconnect() {
        let n = if cfg!(miri) { 20 } else { 2_000 };
        let (tx, rx) = bounded::<(usize, usize)>(4);
        let hs: Vec<_> = (0..3)
            .map(|p| {
                let tx = tx.clone();
                crate::spawn(move || {
                    for i in 0..n {
                        tx.send((p, i)).unwrap();
                    }
                })
            })
            .collect();
        drop(tx);
        let mut next = [0usize; 3];
        for (p, i) in rx.iter() {
            assert_eq!(next[p], i, "producer {p} out of order");
            next[p] += 1;
        }
        assert_eq!(next, [n; 3]);
        assert_eq!(rx.try_recv(), Err(TryRecvError::Disconnected));
        for h in hs {
            h.join().unwrap();
        }
    }

    #[test]
    fn receiver_drop_wakes_blocked_sender() {
        let (tx, rx) = bounded(1);
        tx.send(0u8).unwrap();
        let h = crate::spawn(move || tx.send(1));
        crate::sleep(Duration::from_millis(5));
        drop(rx);
        assert_eq!(h.join().unwrap(), Err(SendError(1)));
    }

    #[test]
    fn send_timeout_on_full() {
        let (tx, _rx) = bounded(1);
        tx.send(1).unwrap();
        let r = tx.send_timeout(2, Instant::now() + Duration::from_millis(5));
        assert_eq!(r, Err(SendTimeoutError::Timeout(2)));
    }
}
