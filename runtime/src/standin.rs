//! Thread-based stand-ins for the fiber API. Replaced by the real scheduler.
use std::time::Duration;

/// Identifier of a running fiber (brpc's `bthread_t`). Unique for the life of the process.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TaskId(pub u64);

/// Why [`JoinHandle::join`] did not return a value.
#[derive(Debug)]
pub enum JoinError {
    /// The fiber panicked; the payload is the panic value.
    Panicked(Box<dyn std::any::Any + Send + 'static>),
}

/// Owned permission to join a fiber. Dropping it detaches the fiber.
pub struct JoinHandle<T> {
    inner: std::thread::JoinHandle<T>,
}

impl<T> JoinHandle<T> {
    /// Waits for the fiber to finish. From a fiber this parks only the fiber; from a plain thread
    /// it blocks the thread. A panic in the fiber is returned as `JoinError::Panicked`.
    pub fn join(self) -> Result<T, JoinError> {
        self.inner.join().map_err(JoinError::Panicked)
    }
}

/// Starts `f` in a new fiber in the background (pushed to the local queue, a worker is signalled).
pub fn spawn<F, T>(f: F) -> JoinHandle<T>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    JoinHandle { inner: std::thread::spawn(f) }
}

/// Yields the current fiber (or thread) to let others run.
pub fn yield_now() {
    std::thread::yield_now()
}

/// Parks the current fiber (or thread) for at least `d`.
pub fn sleep(d: Duration) {
    std::thread::sleep(d)
}

/// Id of the fiber calling this, `None` on a plain thread.
pub fn current_task() -> Option<TaskId> {
    None
}
