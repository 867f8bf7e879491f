//! Unit tests of the IOBuf core. Sizes stay small under miri; proptests are skipped there.

use crate::*;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// A byte pattern that makes misplaced bytes visible.
fn pattern(n: usize, seed: u8) -> Vec<u8> {
    (0..n)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

/// Checks the structural invariants of a buffer.
fn check_invariants(b: &IOBuf) {
    let mut sum = 0;
    for s in b.slices() {
        assert!(!s.is_empty(), "empty piece in chain");
        sum += s.len();
    }
    assert_eq!(sum, b.len());
    assert_eq!(b.slices().count(), b.backing_block_num());
}

/// Counts how many times a deleter ran.
fn counting_deleter() -> (Arc<AtomicUsize>, impl FnOnce() + Send + 'static) {
    let c = Arc::new(AtomicUsize::new(0));
    let c2 = c.clone();
    (c, move || {
        c2.fetch_add(1, Ordering::SeqCst);
    })
}

#[test]
fn send_and_sync() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<IOBuf>();
    assert_send_sync::<IOPortal>();
}

#[test]
fn small_chains_are_inline_and_iobuf_is_small() {
    assert!(
        std::mem::size_of::<IOBuf>() <= 64,
        "{}",
        std::mem::size_of::<IOBuf>()
    );
    let mut b = IOBuf::new();
    b.append(b"hello");
    b.append(b" world");
    assert_eq!(b.backing_block_num(), 1, "contiguous appends merge");
    assert_eq!(b, b"hello world");
    assert_eq!(b.len(), 11);
    assert!(!b.is_empty());
    b.clear();
    assert!(b.is_empty());
    assert_eq!(b.backing_block_num(), 0);
}

#[test]
fn append_spans_blocks() {
    let bs = block_size();
    let data = pattern(bs * 2 + 100, 1);
    let mut b = IOBuf::new();
    b.append(&data[..2000]);
    b.append(&data[2000..]);
    check_invariants(&b);
    assert_eq!(b.backing_block_num(), 3);
    assert_eq!(b.to_vec(), data);
    assert_eq!(b.backing_block(0).unwrap().len(), bs);
    assert!(b.backing_block(3).is_none());
}

#[test]
fn cutn_and_append_share_blocks_and_copy_nothing() {
    let bs = block_size();
    let data = pattern(bs * 3, 2);
    let mut src = IOBuf::new();
    src.append(&data);
    let src_ptrs: Vec<*const u8> = src.slices().map(|s| s.as_ptr()).collect();
    let src_ids: Vec<usize> = src.pieces().map(|p| p.block_id()).collect();
    // Cut exactly one whole block, then the rest, into two buffers.
    let mut first = IOBuf::new();
    assert_eq!(src.cutn(&mut first, bs), bs);
    let mut rest = IOBuf::new();
    assert_eq!(src.cutn(&mut rest, usize::MAX), 2 * bs, "cutn saturates");
    assert!(src.is_empty());
    // Append them to a third: every byte still lives at its original address.
    let mut all = IOBuf::new();
    all.append_iobuf(&first);
    all.append_owned(rest);
    let ptrs: Vec<*const u8> = all.slices().map(|s| s.as_ptr()).collect();
    let ids: Vec<usize> = all.pieces().map(|p| p.block_id()).collect();
    assert_eq!(ptrs, src_ptrs, "zero bytes copied");
    assert_eq!(ids, src_ids);
    assert_eq!(all.to_vec(), data);
    // A cut in the middle of a block yields two references to the same block.
    let mut half = IOBuf::new();
    all.cutn(&mut half, bs / 2);
    assert_eq!(
        half.pieces().next().unwrap().block_id(),
        all.pieces().next().unwrap().block_id()
    );
    assert_eq!(all.pieces().next().unwrap().offset_in_block(), bs / 2);
    // Re-appending the rest behind the half merges them into one piece again.
    half.append_iobuf(&all);
    assert_eq!(half.backing_block_num(), 3);
    assert_eq!(half.to_vec(), data);
}

#[test]
fn pops_and_cuts_saturate() {
    let mut b = IOBuf::from(&b"0123456789"[..]);
    assert_eq!(b.pop_front(3), 3);
    assert_eq!(b.pop_back(2), 2);
    assert_eq!(b, b"34567");
    assert_eq!(b.pop_back(100), 5);
    assert_eq!(b.pop_front(1), 0);
    assert_eq!(b.cutn(&mut IOBuf::new(), 5), 0);
    let mut dst = [0u8; 4];
    assert_eq!(b.cut_into_slice(&mut dst), 0);
    let mut b = IOBuf::from("abcdef");
    assert_eq!(b.cut_into_slice(&mut dst), 4);
    assert_eq!(&dst, b"abcd");
    assert_eq!(b, "ef");
}

#[test]
fn hostile_lengths_never_panic() {
    use bytes::Buf;
    let mut b = IOBuf::from(&pattern(3000, 8)[..]);
    b.append_user_data(vec![1u8; 10], 0);
    let mut aux = [0u8; 8];
    for n in [
        usize::MAX,
        usize::MAX - 1,
        isize::MAX as usize,
        u32::MAX as usize + 1,
    ] {
        assert!(b.fetch_at(n, &mut aux).is_none());
        assert_eq!(b.copy_to(&mut aux, n), 0);
        let mut c = b.cursor();
        c.advance(n);
        assert_eq!(c.remaining(), 0);
        let mut x = b.clone();
        assert_eq!(x.pop_back(n), 3010);
        let mut x = b.clone();
        assert_eq!(x.cutn(&mut IOBuf::new(), n), 3010);
        let mut x = b.clone();
        x.advance(n);
        assert!(x.is_empty());
        let mut x = b.clone();
        assert_eq!(x.pop_front(n), 3010);
    }
    assert_eq!(b.len(), 3010);
}

#[test]
fn copy_to_and_fetch() {
    let bs = block_size();
    let data = pattern(bs + 50, 3);
    let mut b = IOBuf::new();
    b.append(&data);
    let mut dst = vec![0u8; 100];
    // Across the block boundary.
    assert_eq!(b.copy_to(&mut dst, bs - 30), 80);
    assert_eq!(&dst[..80], &data[bs - 30..]);
    assert_eq!(b.copy_to(&mut dst, bs + 50), 0);
    assert_eq!(b.copy_to(&mut dst, usize::MAX), 0);
    assert_eq!(b.len(), data.len(), "copy_to does not consume");
    // fetch: view inside the first block, copy across blocks.
    let mut aux = [0u8; 16];
    let v = b.fetch(&mut aux).unwrap();
    assert_eq!(v, &data[..16]);
    assert_eq!(v.as_ptr(), b.backing_block(0).unwrap().as_ptr(), "no copy");
    let mut aux = [0u8; 40];
    let v = b.fetch_at(bs - 20, &mut aux).unwrap();
    assert_eq!(v, &data[bs - 20..bs + 20]);
    let mut aux = [0u8; 40];
    assert!(b.fetch_at(bs + 20, &mut aux).is_none());
    assert!(b.fetch_at(usize::MAX, &mut aux).is_none());
    assert_eq!(b.fetch_array::<4>().unwrap(), data[..4]);
    assert!(IOBuf::from("abc").fetch_array::<4>().is_none());
    // Header straddling two pieces.
    let mut two = IOBuf::from("ab");
    two.append_user_data(b"cdef".to_vec(), 0);
    assert_eq!(two.backing_block_num(), 2);
    assert_eq!(&two.fetch_array::<4>().unwrap(), b"abcd");
}

#[test]
fn equality() {
    let mut a = IOBuf::from("hello ");
    a.append_owned(IOBuf::from("world"));
    let b = IOBuf::from("hello world");
    assert_eq!(a, b);
    assert_ne!(a, IOBuf::from("hello worle"));
    assert_ne!(a, IOBuf::from("hello"));
    assert!(a == b"hello world"[..]);
    assert!(a == b"hello world".to_vec());
    assert!(a != "hello");
    assert_eq!(IOBuf::new(), IOBuf::default());
}

#[test]
fn clones_do_not_see_each_others_appends() {
    let mut a = IOBuf::from("abc");
    let mut b = a.clone();
    b.append(b"XYZ");
    a.append(b"def");
    assert_eq!(a, "abcdef");
    assert_eq!(b, "abcXYZ");
    // After `a` is gone, `c` (whose piece ends where `a` stopped writing) continues in place.
    let c_src = a.clone();
    drop(a);
    let mut c = c_src;
    let pieces = c.backing_block_num();
    let id = c.pieces().last().unwrap().block_id();
    c.append(b"ghi");
    assert_eq!(c, "abcdefghi");
    assert_eq!(c.backing_block_num(), pieces, "appended in place");
    assert_eq!(c.pieces().last().unwrap().block_id(), id);
    // The same with a buffer that owned a reserved block.
    let mut a = IOBuf::new();
    a.append(&[b'z'; 2000]);
    let mut c = a.clone();
    drop(a);
    c.append(b"tail");
    assert_eq!(
        c.backing_block_num(),
        1,
        "continued in the block `a` gave back"
    );
}

#[test]
fn pop_back_then_append_does_not_resurrect_bytes() {
    let mut a = IOBuf::from("abcdef");
    a.pop_back(3);
    a.append(b"XY");
    assert_eq!(a, "abcXY");
    check_invariants(&a);
}

#[test]
fn concurrent_appends_into_shared_blocks() {
    // Several threads each hold a clone of a short buffer whose writer is gone, and append to it
    // at the same time: exactly one may continue in place, the others must take new blocks.
    let rounds = if cfg!(miri) { 2 } else { 50 };
    for _ in 0..rounds {
        let base = {
            let a = IOBuf::from("base");
            a.clone()
        };
        let handles: Vec<_> = (0..4u8)
            .map(|i| {
                let mut mine = base.clone();
                std::thread::spawn(move || {
                    for _ in 0..8 {
                        mine.append(&[b'a' + i; 3]);
                    }
                    mine
                })
            })
            .collect();
        for (i, h) in handles.into_iter().enumerate() {
            let got = h.join().unwrap();
            let mut want = b"base".to_vec();
            want.extend(std::iter::repeat_n(b'a' + i as u8, 24));
            assert_eq!(got.to_vec(), want);
        }
        assert_eq!(base, "base");
    }
}

#[test]
fn buffers_move_between_threads() {
    let mut a = IOBuf::new();
    a.append(&pattern(3000, 4));
    let mut part = IOBuf::new();
    a.cutn(&mut part, 1000);
    let t = std::thread::spawn(move || {
        part.append(b"tail");
        part
    });
    let part = t.join().unwrap();
    let mut want = pattern(3000, 4)[..1000].to_vec();
    want.extend_from_slice(b"tail");
    assert_eq!(part.to_vec(), want);
    assert_eq!(a.to_vec(), pattern(3000, 4)[1000..]);
}

#[test]
fn user_data_is_not_copied_and_deleter_runs_once() {
    let (runs, deleter) = counting_deleter();
    let data: Box<[u8]> = pattern(1000, 5).into_boxed_slice();
    let ptr = data.as_ptr();
    let len = data.len();
    let raw = Box::into_raw(data);
    /// The boxed slice, movable to the thread that runs the deleter.
    struct SendPtr(*mut [u8]);
    // SAFETY: the pointer owns a `Box<[u8]>`, which is `Send`.
    unsafe impl Send for SendPtr {}
    let owner = SendPtr(raw);
    let mut b = IOBuf::new();
    // SAFETY: the boxed slice lives until the deleter, which frees it.
    unsafe {
        b.append_user_data_raw(
            std::ptr::NonNull::new(raw as *mut u8).unwrap(),
            len,
            42,
            move || {
                let owner = owner;
                drop(Box::from_raw(owner.0));
                deleter();
            },
        );
    }
    assert_eq!(b.backing_block(0).unwrap().as_ptr(), ptr, "zero copy");
    let p = b.pieces().next().unwrap();
    assert_eq!(p.meta(), 42);
    assert!(p.is_user_data());
    // Clone, cut, send to threads: still runs once, after the last reference.
    let c = b.clone();
    let mut cut = IOBuf::new();
    b.cutn(&mut cut, 500);
    assert_eq!(cut.pieces().next().unwrap().meta(), 42);
    assert_eq!(b.pieces().next().unwrap().meta(), 42);
    let t1 = std::thread::spawn(move || drop(cut));
    let t2 = std::thread::spawn(move || drop(c));
    t1.join().unwrap();
    t2.join().unwrap();
    assert_eq!(runs.load(Ordering::SeqCst), 0);
    b.append(b"more");
    assert_eq!(
        b.backing_block_num(),
        2,
        "nothing is appended into user memory"
    );
    assert!(!b.pieces().nth(1).unwrap().is_user_data());
    drop(b);
    assert_eq!(runs.load(Ordering::SeqCst), 1);
}

#[test]
fn user_data_owner_forms() {
    struct Tracked(Vec<u8>, Arc<AtomicUsize>);
    impl AsRef<[u8]> for Tracked {
        fn as_ref(&self) -> &[u8] {
            &self.0
        }
    }
    impl Drop for Tracked {
        fn drop(&mut self) {
            self.1.fetch_add(1, Ordering::SeqCst);
        }
    }
    let drops = Arc::new(AtomicUsize::new(0));
    let mut b = IOBuf::new();
    b.append_user_data(Tracked(b"owned".to_vec(), drops.clone()), 7);
    b.append_user_data(Tracked(Vec::new(), drops.clone()), 8);
    assert_eq!(
        drops.load(Ordering::SeqCst),
        1,
        "empty owner dropped at once"
    );
    b.append_user_data([1u8, 2, 3], 9); // inline array: data moves with its box
    assert_eq!(b.to_vec(), b"owned\x01\x02\x03");
    let metas: Vec<u64> = b.pieces().map(|p| p.meta()).collect();
    assert_eq!(metas, [7, 9]);
    drop(b);
    assert_eq!(drops.load(Ordering::SeqCst), 2);
    // Conversions.
    let big = pattern(4096, 6);
    let ptr = big.as_ptr();
    let b = IOBuf::from(big);
    let big = pattern(4096, 6);
    assert_eq!(
        b.backing_block(0).unwrap().as_ptr(),
        ptr,
        "large Vec adopted"
    );
    let bytes = bytes::Bytes::from(big.clone());
    let bptr = bytes.as_ptr();
    let b2 = IOBuf::from(bytes);
    assert_eq!(
        b2.backing_block(0).unwrap().as_ptr(),
        bptr,
        "large Bytes adopted"
    );
    assert_eq!(b, b2);
    assert_eq!(IOBuf::from(vec![1, 2, 3]), [1u8, 2, 3]);
}

#[test]
fn appender_many_small_writes() {
    let n = if cfg!(miri) { 3000 } else { 100_000 };
    let mut b = IOBuf::from("x");
    let mut model = b"x".to_vec();
    {
        let mut app = IOBufAppender::new(&mut b);
        for i in 0..n {
            let v = (i % 251) as u8;
            if i % 3 == 0 {
                app.push(v);
                model.push(v);
            } else {
                app.append(&[v, v, v]);
                model.extend_from_slice(&[v, v, v]);
            }
        }
        assert_eq!(app.len(), model.len());
    }
    check_invariants(&b);
    assert_eq!(b.to_vec(), model);
    let bs = block_size();
    // "x" sits in the thread's share block; the appender then fills whole blocks of its own.
    assert_eq!(
        b.backing_block_num(),
        1 + (model.len() - 1).div_ceil(bs),
        "blocks filled"
    );
}

#[test]
fn bufmut_and_buf() {
    use bytes::{Buf, BufMut};
    let mut b = IOBuf::new();
    b.put_u32(0xdead_beef);
    b.put_slice(b"abc");
    b.put_u8(b'!');
    // chunk_mut / advance_mut directly.
    let chunk = b.chunk_mut();
    assert!(chunk.len() > 2);
    chunk.write_byte(0, b'x');
    chunk.write_byte(1, b'y');
    // SAFETY: two bytes were initialised above.
    unsafe { b.advance_mut(2) };
    assert_eq!(b.to_vec(), b"\xde\xad\xbe\xefabc!xy");
    // Cursor reads without consuming, across pieces.
    b.append_owned(IOBuf::from("Z"));
    let mut c = b.cursor();
    assert_eq!(c.get_u32(), 0xdead_beef);
    let mut rest = vec![0u8; 7];
    c.copy_to_slice(&mut rest);
    assert_eq!(&rest, b"abc!xyZ");
    assert_eq!(c.remaining(), 0);
    c.advance(10); // saturates
    assert_eq!(b.len(), 11);
    // Consuming Buf.
    assert_eq!(b.get_u32(), 0xdead_beef);
    assert_eq!(b, "abc!xyZ");
    b.advance(100);
    assert!(b.is_empty());
    assert_eq!(b.chunk(), b"");
}

#[test]
fn appender_as_bufmut() {
    use bytes::BufMut;
    let mut b = IOBuf::new();
    {
        let mut app = IOBufAppender::new(&mut b);
        app.put_u16(0x0102);
        let c = app.chunk_mut();
        c.write_byte(0, 3);
        // SAFETY: one byte initialised above.
        unsafe { app.advance_mut(1) };
        app.put_slice(&[4, 5]);
    }
    assert_eq!(b, [1u8, 2, 3, 4, 5]);
}

#[test]
fn blocks_are_recycled_through_the_thread_cache() {
    let before = cached_blocks();
    let mut b = IOBuf::new();
    b.append(&pattern(block_size() * 2, 7));
    drop(b);
    let max = crate::block_cache::MAX_CACHED_BLOCKS;
    assert!(cached_blocks() >= (before + 2).min(max));
    let n = cached_blocks();
    let mut b = IOBuf::new();
    b.append(&[0u8; 2000]);
    assert_eq!(cached_blocks(), n - 1, "served from the cache");
}

#[test]
fn small_buffers_share_the_thread_block() {
    let mut a = IOBuf::from("first message");
    let mut b = IOBuf::from("second message");
    assert_eq!(
        a.pieces().next().unwrap().block_id(),
        b.pieces().next().unwrap().block_id(),
        "one block for both small messages"
    );
    // Both keep appending: each continues in place only while nobody wrote behind it.
    a.append(b", more");
    b.append(b", more too");
    a.append(b"!");
    assert_eq!(a, "first message, more!");
    assert_eq!(b, "second message, more too");
    check_invariants(&a);
    check_invariants(&b);
    // Growing past the small limit moves on to a reserved block of its own.
    let big = pattern(3000, 9);
    a.append(&big);
    let mut want = b"first message, more!".to_vec();
    want.extend_from_slice(&big);
    assert_eq!(a.to_vec(), want);
    assert_eq!(b, "second message, more too");
}

/// Operations of the model-based test.
#[derive(Debug, Clone)]
enum Op {
    Append(Vec<u8>),
    AppendToOther(Vec<u8>),
    AppendUser(Vec<u8>),
    AppendAppender(Vec<u8>),
    PutBufMut(Vec<u8>),
    CutToOther(usize),
    CutBack(usize),
    AppendOtherClone,
    AppendRangeOfOther(usize, usize),
    PopFront(usize),
    PopBack(usize),
    CopyTo(usize, usize),
    Fetch(usize, usize),
    CutIntoSlice(usize),
    Clear,
    CloneAndDropOriginal,
    /// `append_owned` of the other buffer (moves its chain as a block).
    MoveOtherIn,
    /// `cutn` of everything into the other buffer (whole-chain fast path).
    CutAllToOther,
    /// `fetch_array::<12>` + `pop_front(12)` + `cutn(n)`: the framed-message pattern (front-piece
    /// fast paths).
    CutFrame(usize),
}

fn op_strategy() -> impl proptest::strategy::Strategy<Value = Op> {
    use proptest::prelude::*;
    // Mostly short appends (the small-buffer path), sometimes several blocks' worth.
    let data = prop_oneof![
        3 => prop::collection::vec(any::<u8>(), 0..64),
        1 => prop::collection::vec(any::<u8>(), 0..20000),
    ];
    let n = 0usize..12000;
    prop_oneof![
        4 => data.clone().prop_map(Op::Append),
        2 => prop::collection::vec(any::<u8>(), 0..40).prop_map(Op::AppendToOther),
        1 => data.clone().prop_map(Op::AppendUser),
        1 => data.clone().prop_map(Op::AppendAppender),
        1 => data.prop_map(Op::PutBufMut),
        2 => n.clone().prop_map(Op::CutToOther),
        1 => n.clone().prop_map(Op::CutBack),
        1 => Just(Op::AppendOtherClone),
        1 => (n.clone(), n.clone()).prop_map(|(a, b)| Op::AppendRangeOfOther(a, b)),
        1 => n.clone().prop_map(Op::PopFront),
        1 => n.clone().prop_map(Op::PopBack),
        1 => (n.clone(), 0usize..200).prop_map(|(a, b)| Op::CopyTo(a, b)),
        1 => (n.clone(), 0usize..200).prop_map(|(a, b)| Op::Fetch(a, b)),
        1 => (0usize..500).prop_map(Op::CutIntoSlice),
        1 => Just(Op::Clear),
        1 => Just(Op::CloneAndDropOriginal),
        1 => Just(Op::MoveOtherIn),
        1 => Just(Op::CutAllToOther),
        2 => (0usize..300).prop_map(Op::CutFrame),
    ]
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig { cases: 64, ..Default::default() })]

    #[test]
    #[cfg_attr(miri, ignore)]
    fn model_based(ops in proptest::collection::vec(op_strategy(), 1..40)) {
        use bytes::BufMut;
        let mut a = IOBuf::new();
        let mut other = IOBuf::new();
        let mut ma: VecDeque<u8> = VecDeque::new();
        let mut mo: VecDeque<u8> = VecDeque::new();
        for op in ops {
            match op {
                Op::Append(d) => { a.append(&d); ma.extend(&d); }
                Op::AppendToOther(d) => { other.append(&d); mo.extend(&d); }
                Op::AppendUser(d) => { ma.extend(&d); a.append_user_data(d, 1); }
                Op::AppendAppender(d) => {
                    let mut app = IOBufAppender::new(&mut a);
                    for (i, chunk) in d.chunks(7).enumerate() {
                        if i % 2 == 0 { app.append(chunk) } else { for &x in chunk { app.push(x) } }
                    }
                    drop(app);
                    ma.extend(&d);
                }
                Op::PutBufMut(d) => {
                    let mut rest = &d[..];
                    while !rest.is_empty() {
                        let c = a.chunk_mut();
                        let n = c.len().min(rest.len()).min(1000);
                        c[..n].copy_from_slice(&rest[..n]);
                        // SAFETY: n bytes initialised above.
                        unsafe { a.advance_mut(n) };
                        rest = &rest[n..];
                    }
                    ma.extend(&d);
                }
                Op::CutToOther(n) => {
                    let k = a.cutn(&mut other, n);
                    proptest::prop_assert_eq!(k, n.min(ma.len()));
                    mo.extend(ma.drain(..k));
                }
                Op::CutBack(n) => {
                    let k = other.cutn(&mut a, n);
                    proptest::prop_assert_eq!(k, n.min(mo.len()));
                    ma.extend(mo.drain(..k));
                }
                Op::AppendOtherClone => { a.append_iobuf(&other); ma.extend(mo.clone()); }
                Op::AppendRangeOfOther(n, pos) => {
                    let k = other.append_to(&mut a, n, pos);
                    let want: Vec<u8> = mo.iter().skip(pos).take(n).copied().collect();
                    proptest::prop_assert_eq!(k, want.len());
                    ma.extend(want);
                }
                Op::PopFront(n) => {
                    let k = a.pop_front(n);
                    proptest::prop_assert_eq!(k, n.min(ma.len()));
                    ma.drain(..k);
                }
                Op::PopBack(n) => {
                    let k = a.pop_back(n);
                    proptest::prop_assert_eq!(k, n.min(ma.len()));
                    ma.truncate(ma.len() - k);
                }
                Op::CopyTo(off, len) => {
                    let mut dst = vec![0u8; len];
                    let k = a.copy_to(&mut dst, off);
                    let want: Vec<u8> = ma.iter().skip(off).take(len).copied().collect();
                    proptest::prop_assert_eq!(&dst[..k], &want[..]);
                }
                Op::Fetch(off, len) => {
                    let mut aux = vec![0u8; len];
                    let got = a.fetch_at(off, &mut aux).map(|s| s.to_vec());
                    if off + len <= ma.len() {
                        let want: Vec<u8> = ma.iter().skip(off).take(len).copied().collect();
                        proptest::prop_assert_eq!(got, Some(want));
                    } else {
                        proptest::prop_assert_eq!(got, None);
                    }
                }
                Op::CutIntoSlice(n) => {
                    let mut dst = vec![0u8; n];
                    let k = a.cut_into_slice(&mut dst);
                    let want: Vec<u8> = ma.drain(..n.min(ma.len())).collect();
                    proptest::prop_assert_eq!(&dst[..k], &want[..]);
                }
                Op::Clear => { a.clear(); ma.clear(); }
                Op::CloneAndDropOriginal => { let c = a.clone(); a = c; }
                Op::MoveOtherIn => {
                    a.append_owned(std::mem::take(&mut other));
                    ma.extend(mo.drain(..));
                }
                Op::CutAllToOther => {
                    let k = a.cutn(&mut other, a.len());
                    proptest::prop_assert_eq!(k, ma.len());
                    mo.extend(ma.drain(..));
                }
                Op::CutFrame(n) => {
                    let h = a.fetch_array::<12>();
                    if ma.len() < 12 {
                        proptest::prop_assert_eq!(h, None);
                    } else {
                        let want: Vec<u8> = ma.iter().take(12).copied().collect();
                        proptest::prop_assert_eq!(&h.unwrap()[..], &want[..]);
                        proptest::prop_assert_eq!(a.pop_front(12), 12);
                        ma.drain(..12);
                        let mut msg = IOBuf::new();
                        let k = a.cutn(&mut msg, n);
                        proptest::prop_assert_eq!(k, n.min(ma.len()));
                        let want: Vec<u8> = ma.drain(..k).collect();
                        check_invariants(&msg);
                        proptest::prop_assert_eq!(msg.to_vec(), want.clone());
                        // The message goes on to the other buffer, as a messenger would.
                        other.append_owned(msg);
                        mo.extend(want);
                    }
                }
            }
            check_invariants(&a);
            check_invariants(&other);
            proptest::prop_assert_eq!(a.len(), ma.len());
            proptest::prop_assert_eq!(a.to_vec(), ma.iter().copied().collect::<Vec<_>>());
            proptest::prop_assert_eq!(other.to_vec(), mo.iter().copied().collect::<Vec<_>>());
        }
    }
}
