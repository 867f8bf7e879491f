//! A frame declaring a huge body is refused from its 12-byte header without allocating for
//! the declared size: a counting global allocator watches the parse.

use spindle_rpc::policy::baidu_std::frame::parse_frame;
use spindle_rpc::protocol::{IOBuf, ParseError, DEFAULT_MAX_BODY_SIZE};
use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

struct Counting;

static ALLOCATED: AtomicUsize = AtomicUsize::new(0);

// SAFETY: forwards to the system allocator unchanged; only counts bytes requested.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATED.fetch_add(layout.size(), Ordering::SeqCst);
        // SAFETY: same contract as our caller's.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from `System.alloc` with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

#[test]
fn declared_sizes_are_not_allocated() {
    for (body, limit) in [(u32::MAX, DEFAULT_MAX_BODY_SIZE), (1 << 20, 1 << 19)] {
        let mut header = b"PRPC".to_vec();
        header.extend_from_slice(&body.to_be_bytes());
        header.extend_from_slice(&8u32.to_be_bytes());
        let mut buf = IOBuf::from(&header[..]);
        let before = ALLOCATED.load(Ordering::SeqCst);
        let r = parse_frame(&mut buf, limit);
        let used = ALLOCATED.load(Ordering::SeqCst) - before;
        assert!(matches!(r, Err(ParseError::TooBigData { .. })), "{r:?}");
        assert_eq!(used, 0, "parse allocated {used} bytes");
        assert_eq!(buf.len(), 12);
    }
    // Under the limit but not arrived yet: waits, still without allocating.
    let mut header = b"PRPC".to_vec();
    header.extend_from_slice(&(1u32 << 20).to_be_bytes());
    header.extend_from_slice(&8u32.to_be_bytes());
    let mut buf = IOBuf::from(&header[..]);
    let before = ALLOCATED.load(Ordering::SeqCst);
    assert_eq!(
        parse_frame(&mut buf, DEFAULT_MAX_BODY_SIZE),
        Err(ParseError::NotEnoughData)
    );
    assert_eq!(ALLOCATED.load(Ordering::SeqCst) - before, 0);
}
