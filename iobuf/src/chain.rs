//! The chain of block references inside an IOBuf: a double-ended queue whose two ends live
//! inline (no heap for the common one- or two-piece message) and whose middle, if any, lives in a
//! boxed `VecDeque`.
//!
//! Keeping both ends inline whatever the length makes the hot operations — peek and cut at the
//! front of a read buffer, grow the last piece when appending — a field access and a null check,
//! with no ring-buffer index arithmetic and no branch on the representation.
//!
//! Invariants (pieces are kept in byte order, front to back):
//! - `front` is `None` only if the chain is empty;
//! - `back` is `Some` only if there are at least two pieces; it is then the last piece;
//! - `middle` (pieces between `front` and `back`) is non-empty only if `back` is `Some`; an empty
//!   `middle` box may stay allocated, to be reused, until [`RefChain::clear`] or drop.

use crate::block::BlockRef;
use std::collections::VecDeque;

/// Capacity of the middle part when it is first created (small chains grow without reallocating).
const FIRST_MIDDLE_CAPACITY: usize = 8;

/// An empty middle part, for iterating a chain that has none.
const EMPTY_MIDDLE: &VecDeque<BlockRef> = &VecDeque::new();

/// Double-ended queue of references with inline ends.
pub(crate) struct RefChain {
    /// First piece (`None` iff the chain is empty).
    front: Option<BlockRef>,
    /// Last piece when there are two or more.
    back: Option<BlockRef>,
    /// Pieces between `front` and `back` (only with `back`). Boxed so the chain stays 40 bytes
    /// (an `IOBuf` 64): long chains are rare and pay one more pointer hop in the middle only.
    #[allow(clippy::box_collection)]
    middle: Option<Box<VecDeque<BlockRef>>>,
}

impl RefChain {
    /// An empty chain.
    pub(crate) const fn new() -> Self {
        RefChain {
            front: None,
            back: None,
            middle: None,
        }
    }

    /// A chain of the one reference `r`.
    #[inline(always)]
    pub(crate) const fn one(r: BlockRef) -> Self {
        RefChain {
            front: Some(r),
            back: None,
            middle: None,
        }
    }

    /// Number of pieces in the middle part.
    #[inline]
    fn middle_len(&self) -> usize {
        self.middle.as_ref().map_or(0, |m| m.len())
    }

    /// Number of references.
    #[inline]
    pub(crate) fn len(&self) -> usize {
        self.front.is_some() as usize + self.back.is_some() as usize + self.middle_len()
    }

    /// Drops every reference (and the middle part's allocation).
    pub(crate) fn clear(&mut self) {
        *self = RefChain::new();
    }

    /// The `i`-th reference from the front.
    #[inline]
    pub(crate) fn get(&self, i: usize) -> Option<&BlockRef> {
        if i == 0 {
            return self.front.as_ref();
        }
        let m = self.middle_len();
        if i - 1 < m {
            self.middle.as_ref().and_then(|v| v.get(i - 1))
        } else if i - 1 == m {
            self.back.as_ref()
        } else {
            None
        }
    }

    /// The front reference.
    #[inline(always)]
    pub(crate) fn front(&self) -> Option<&BlockRef> {
        self.front.as_ref()
    }

    /// The front reference, mutable.
    #[inline(always)]
    pub(crate) fn front_mut(&mut self) -> Option<&mut BlockRef> {
        self.front.as_mut()
    }

    /// The back reference.
    #[inline(always)]
    pub(crate) fn back(&self) -> Option<&BlockRef> {
        self.back.as_ref().or(self.front.as_ref())
    }

    /// The back reference, mutable.
    #[inline(always)]
    pub(crate) fn back_mut(&mut self) -> Option<&mut BlockRef> {
        if self.back.is_some() {
            self.back.as_mut()
        } else {
            self.front.as_mut()
        }
    }

    /// Appends `r` at the back.
    #[inline(always)]
    pub(crate) fn push_back(&mut self, r: BlockRef) {
        if self.front.is_none() {
            self.front = Some(r);
        } else if self.back.is_none() {
            self.back = Some(r);
        } else {
            self.push_back_long(r);
        }
    }

    /// Appends `r` behind a chain of two or more: the old back moves to the middle part.
    #[inline(never)]
    fn push_back_long(&mut self, r: BlockRef) {
        if let Some(old) = self.back.replace(r) {
            self.middle
                .get_or_insert_with(|| Box::new(VecDeque::with_capacity(FIRST_MIDDLE_CAPACITY)))
                .push_back(old);
        }
    }

    /// Moves every reference of `other` behind the last one of `self`, in order, leaving `other`
    /// empty. The middle part moves as a block (no per-piece work when `self` has at most one
    /// piece: the boxes are swapped). Pieces are not merged: the caller merges the first one.
    pub(crate) fn append_chain(&mut self, other: &mut RefChain) {
        let Some(first) = other.front.take() else {
            return;
        };
        self.push_back(first);
        let Some(last) = other.back.take() else {
            return;
        };
        match other.middle.as_mut() {
            Some(om) if !om.is_empty() => {
                if self.back.is_none() && self.middle_len() == 0 {
                    // `self` is [front]: other's middle becomes ours as is.
                    std::mem::swap(&mut self.middle, &mut other.middle);
                } else {
                    let m = self.middle.get_or_insert_with(|| {
                        Box::new(VecDeque::with_capacity(FIRST_MIDDLE_CAPACITY))
                    });
                    m.extend(self.back.take());
                    m.append(om);
                }
                self.back = Some(last);
            }
            _ => self.push_back(last),
        }
    }

    /// Removes and returns the front reference.
    #[inline]
    pub(crate) fn pop_front(&mut self) -> Option<BlockRef> {
        let r = self.front.take();
        self.front = match self.middle.as_mut().and_then(|m| m.pop_front()) {
            Some(next) => Some(next),
            None => self.back.take(),
        };
        r
    }

    /// Removes and returns the back reference.
    #[inline]
    pub(crate) fn pop_back(&mut self) -> Option<BlockRef> {
        match self.back.take() {
            Some(r) => {
                // The new back is the last middle piece, if any (else `front` is alone).
                self.back = self.middle.as_mut().and_then(|m| m.pop_back());
                Some(r)
            }
            None => self.front.take(),
        }
    }

    /// Iterates front to back.
    #[inline]
    pub(crate) fn iter(&self) -> ChainIter<'_> {
        let middle = self.middle.as_deref().unwrap_or(EMPTY_MIDDLE);
        ChainIter(
            self.front
                .iter()
                .chain(middle.iter())
                .chain(self.back.iter()),
        )
    }
}

/// Iterator over the references of a [`RefChain`], front to back.
pub(crate) struct ChainIter<'a>(
    std::iter::Chain<
        std::iter::Chain<
            std::option::Iter<'a, BlockRef>,
            std::collections::vec_deque::Iter<'a, BlockRef>,
        >,
        std::option::Iter<'a, BlockRef>,
    >,
);

impl<'a> Iterator for ChainIter<'a> {
    type Item = &'a BlockRef;

    #[inline]
    fn next(&mut self) -> Option<&'a BlockRef> {
        self.0.next()
    }

    #[inline]
    fn size_hint(&self) -> (usize, Option<usize>) {
        self.0.size_hint()
    }
}

impl DoubleEndedIterator for ChainIter<'_> {
    #[inline]
    fn next_back(&mut self) -> Option<Self::Item> {
        self.0.next_back()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::block::Block;

    /// A reference whose `offset` tags it.
    fn tagged(block: &Block, tag: u32) -> BlockRef {
        BlockRef {
            block: block.clone(),
            offset: tag,
            len: 1,
        }
    }

    fn tags(c: &RefChain) -> Vec<u32> {
        let fwd: Vec<u32> = c.iter().map(|r| r.offset).collect();
        let mut back: Vec<u32> = c.iter().rev().map(|r| r.offset).collect();
        back.reverse();
        assert_eq!(fwd, back, "forward and backward iteration agree");
        assert_eq!(fwd.len(), c.len());
        for (i, t) in fwd.iter().enumerate() {
            assert_eq!(c.get(i).map(|r| r.offset), Some(*t));
        }
        assert!(c.get(fwd.len()).is_none());
        assert_eq!(c.front().map(|r| r.offset), fwd.first().copied());
        assert_eq!(c.back().map(|r| r.offset), fwd.last().copied());
        fwd
    }

    /// The chain against a `VecDeque` model through every transition between its forms.
    #[test]
    fn matches_a_deque_model() {
        let block = Block::allocate();
        let mut c = RefChain::new();
        let mut model: VecDeque<u32> = VecDeque::new();
        let mut next = 0u32;
        // A fixed pseudo-random walk of pushes and pops at both ends.
        let mut x = 0x9e37_79b9u32;
        for _ in 0..if cfg!(miri) { 300 } else { 3000 } {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            match x % 5 {
                0 | 1 => {
                    c.push_back(tagged(&block, next));
                    model.push_back(next);
                    next += 1;
                }
                2 if x % 7 == 0 => {
                    // Move a chain of 0..6 pieces behind ours.
                    let mut other = RefChain::new();
                    for _ in 0..(x >> 8) % 7 {
                        other.push_back(tagged(&block, next));
                        model.push_back(next);
                        next += 1;
                    }
                    c.append_chain(&mut other);
                    assert_eq!(other.len(), 0);
                    assert!(other.iter().next().is_none());
                }
                2 => assert_eq!(c.pop_front().map(|r| r.offset), model.pop_front()),
                3 => assert_eq!(c.pop_back().map(|r| r.offset), model.pop_back()),
                _ => {
                    if let Some(r) = c.back_mut() {
                        r.offset = next;
                        *model.back_mut().expect("model agrees") = next;
                        next += 1;
                    }
                    if let Some(r) = c.front_mut() {
                        r.offset = next;
                        *model.front_mut().expect("model agrees") = next;
                        next += 1;
                    }
                }
            }
            assert_eq!(tags(&c), model.iter().copied().collect::<Vec<_>>());
        }
        c.clear();
        assert_eq!(c.len(), 0);
        assert!(block.is_unique(), "every reference was dropped");
    }
}
