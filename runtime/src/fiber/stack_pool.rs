//! Reuse of fiber stacks: a pool per worker (no lock: only its worker touches it) backed by one
//! shared pool (a mutex) for stacks that overflow a worker's pool and for workers that run dry.
//!
//! A stack goes back to the pool of the worker on which its fiber *finished*, which need not be
//! the one where it started; the shared pool evens that out. Stacks beyond both caps are unmapped.

use std::sync::Mutex;

use super::stack::{FiberStack, StackSize};
use crate::config::Config;

/// Sizes and caps, fixed at runtime start.
pub(crate) struct StackSpec {
    /// Usable bytes per class (small, normal, large).
    pub(crate) usable: [usize; 3],
    /// Guard bytes of every stack.
    pub(crate) guard: usize,
    /// Stacks per class a worker keeps.
    pub(crate) per_worker: usize,
}

impl StackSpec {
    pub(crate) fn from_config(c: &Config) -> Self {
        StackSpec {
            usable: [c.stack_size_small, c.stack_size_normal, c.stack_size_large],
            guard: c.guard_page_size,
            per_worker: c.stack_pool_per_worker,
        }
    }

    /// How many of a class a pool keeps: large stacks are kept sparingly.
    fn cap(&self, class: StackSize) -> usize {
        match class {
            StackSize::Large => (self.per_worker / 16).max(1),
            _ => self.per_worker,
        }
    }
}

/// The shared pool.
pub(crate) struct SharedStackPool {
    /// Free stacks per class.
    free: Mutex<[Vec<FiberStack>; 3]>,
}

impl SharedStackPool {
    pub(crate) fn new() -> Self {
        SharedStackPool {
            free: Mutex::new([Vec::new(), Vec::new(), Vec::new()]),
        }
    }

    fn take(&self, class: StackSize) -> Option<FiberStack> {
        self.free.lock().unwrap_or_else(|e| e.into_inner())[class.index()].pop()
    }

    fn give(&self, spec: &StackSpec, s: FiberStack) {
        let mut free = self.free.lock().unwrap_or_else(|e| e.into_inner());
        let v = &mut free[s.class().index()];
        if v.len() < spec.cap(s.class()) * 4 {
            v.push(s);
        }
    }
}

/// A worker's own pool; only its worker thread touches it.
#[derive(Default)]
pub(crate) struct LocalStackPool {
    /// Free stacks per class.
    free: [Vec<FiberStack>; 3],
}

impl LocalStackPool {
    /// A stack of `class`: local pool, then the shared pool, then a fresh mapping. Panics if the
    /// kernel refuses the mapping (out of address space or `vm.max_map_count`), naming the cause.
    pub(crate) fn get(
        &mut self,
        spec: &StackSpec,
        shared: &SharedStackPool,
        class: StackSize,
    ) -> FiberStack {
        if let Some(s) = self.free[class.index()].pop() {
            return s;
        }
        if let Some(s) = shared.take(class) {
            return s;
        }
        FiberStack::new(spec.usable[class.index()], spec.guard, class).unwrap_or_else(|e| {
            panic!("spindle: cannot map a {class:?} fiber stack: {e} (see vm.max_map_count)")
        })
    }

    /// Returns a stack whose coroutine has completed.
    pub(crate) fn put(&mut self, spec: &StackSpec, shared: &SharedStackPool, s: FiberStack) {
        let v = &mut self.free[s.class().index()];
        if v.len() < spec.cap(s.class()) {
            v.push(s);
        } else {
            shared.give(spec, s);
        }
    }
}
