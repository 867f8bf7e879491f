//! The chain of block references inside an IOBuf: a double-ended queue that keeps up to two
//! references inline (no heap for the common one- or two-piece message) and moves to a
//! `VecDeque` beyond that.
//!
//! Invariants: in the inline form, `b` is `Some` only if `a` is; `a` is the front. Pieces are
//! kept in byte order, front to back.

use crate::block::BlockRef;
use std::collections::VecDeque;

/// Capacity of the heap form when it is first created (small chains grow without reallocating).
const FIRST_HEAP_CAPACITY: usize = 8;

/// Double-ended queue of references with an inline small form.
pub(crate) enum RefChain {
    /// Up to two references, front first.
    Inline {
        /// Front reference.
        a: Option<BlockRef>,
        /// Second reference (only with `a`).
        b: Option<BlockRef>,
    },
    /// Three references or more (or a chain that had that many and has not been cleared).
    Heap(VecDeque<BlockRef>),
}

impl RefChain {
    /// An empty inline chain.
    pub(crate) const fn new() -> Self {
        RefChain::Inline { a: None, b: None }
    }

    /// Number of references.
    #[inline]
    pub(crate) fn len(&self) -> usize {
        match self {
            RefChain::Inline { a, b } => a.is_some() as usize + b.is_some() as usize,
            RefChain::Heap(v) => v.len(),
        }
    }

    /// Drops every reference and returns to the inline form.
    pub(crate) fn clear(&mut self) {
        *self = RefChain::new();
    }

    /// The `i`-th reference from the front.
    #[inline]
    pub(crate) fn get(&self, i: usize) -> Option<&BlockRef> {
        match self {
            RefChain::Inline { a, b } => match i {
                0 => a.as_ref(),
                1 => b.as_ref(),
                _ => None,
            },
            RefChain::Heap(v) => v.get(i),
        }
    }

    /// The front reference.
    #[inline]
    pub(crate) fn front_mut(&mut self) -> Option<&mut BlockRef> {
        match self {
            RefChain::Inline { a, .. } => a.as_mut(),
            RefChain::Heap(v) => v.front_mut(),
        }
    }

    /// The back reference.
    #[inline]
    pub(crate) fn back(&self) -> Option<&BlockRef> {
        match self {
            RefChain::Inline { a, b } => b.as_ref().or(a.as_ref()),
            RefChain::Heap(v) => v.back(),
        }
    }

    /// The back reference, mutable.
    #[inline]
    pub(crate) fn back_mut(&mut self) -> Option<&mut BlockRef> {
        match self {
            RefChain::Inline { a, b } => {
                if b.is_some() {
                    b.as_mut()
                } else {
                    a.as_mut()
                }
            }
            RefChain::Heap(v) => v.back_mut(),
        }
    }

    /// Appends `r` at the back.
    #[inline]
    pub(crate) fn push_back(&mut self, r: BlockRef) {
        match self {
            RefChain::Inline { a: a @ None, .. } => *a = Some(r),
            RefChain::Inline { b: b @ None, .. } => *b = Some(r),
            RefChain::Inline { a, b } => {
                let mut v = VecDeque::with_capacity(FIRST_HEAP_CAPACITY);
                v.extend(a.take());
                v.extend(b.take());
                v.push_back(r);
                *self = RefChain::Heap(v);
            }
            RefChain::Heap(v) => v.push_back(r),
        }
    }

    /// Removes and returns the front reference.
    #[inline]
    pub(crate) fn pop_front(&mut self) -> Option<BlockRef> {
        match self {
            RefChain::Inline { a, b } => {
                let r = a.take();
                *a = b.take();
                r
            }
            RefChain::Heap(v) => v.pop_front(),
        }
    }

    /// Removes and returns the back reference.
    #[inline]
    pub(crate) fn pop_back(&mut self) -> Option<BlockRef> {
        match self {
            RefChain::Inline { a, b } => b.take().or_else(|| a.take()),
            RefChain::Heap(v) => v.pop_back(),
        }
    }

    /// Iterates front to back.
    #[inline]
    pub(crate) fn iter(&self) -> ChainIter<'_> {
        match self {
            RefChain::Inline { a, b } => ChainIter::Inline(a.iter().chain(b.iter())),
            RefChain::Heap(v) => ChainIter::Heap(v.iter()),
        }
    }
}

/// Iterator over the references of a [`RefChain`].
pub(crate) enum ChainIter<'a> {
    /// Over the inline form.
    Inline(std::iter::Chain<std::option::Iter<'a, BlockRef>, std::option::Iter<'a, BlockRef>>),
    /// Over the heap form.
    Heap(std::collections::vec_deque::Iter<'a, BlockRef>),
}

impl<'a> Iterator for ChainIter<'a> {
    type Item = &'a BlockRef;

    #[inline]
    fn next(&mut self) -> Option<&'a BlockRef> {
        match self {
            ChainIter::Inline(it) => it.next(),
            ChainIter::Heap(it) => it.next(),
        }
    }

    #[inline]
    fn size_hint(&self) -> (usize, Option<usize>) {
        match self {
            ChainIter::Inline(it) => it.size_hint(),
            ChainIter::Heap(it) => it.size_hint(),
        }
    }
}

impl DoubleEndedIterator for ChainIter<'_> {
    #[inline]
    fn next_back(&mut self) -> Option<Self::Item> {
        match self {
            ChainIter::Inline(it) => it.next_back(),
            ChainIter::Heap(it) => it.next_back(),
        }
    }
}
