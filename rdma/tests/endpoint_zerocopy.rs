//! Zero-copy receive: messages at or above `zerocopy_min_size` are handed over as IOBuf pieces
//! of the receive blocks themselves (their deleter gives the block back to the pool), smaller
//! ones are copied and the buffer re-posted; with `recv_zerocopy` off everything is copied.

mod common;

use common::endpoint::*;
use spindle_iobuf::IOBuf;
use spindle_rdma::{EndpointConfig, RdmaEndpoint};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

/// Sends `sizes` as separate messages from `a` and collects what `b` receives (one IOBuf per
/// poll, kept alive).
fn transfer(a: &RdmaEndpoint, b: &RdmaEndpoint, sizes: &[usize]) -> (Vec<u8>, Vec<IOBuf>) {
    let mut expected = Vec::new();
    let mut kept = Vec::new();
    let mut got = 0;
    let start = Instant::now();
    for (i, &len) in sizes.iter().enumerate() {
        let body = pattern(len, i as u64);
        expected.extend_from_slice(&body);
        let mut out = IOBuf::new();
        out.append(&body);
        // One message per call: everything fits in one window slot and one block.
        while !write_some(a, &mut out) {
            check_deadline(start, "send");
            let mut sink = IOBuf::new();
            a.poll(&mut sink).unwrap();
            wait_either(a, b);
        }
        assert!(out.is_empty());
        // Receive it before sending the next, so each poll sees one message.
        while got < expected.len() {
            check_deadline(start, "receive");
            let mut dst = IOBuf::new();
            b.poll(&mut dst).unwrap();
            got += dst.len();
            if !dst.is_empty() {
                kept.push(dst);
            } else {
                wait_either(a, b);
            }
            let mut sink = IOBuf::new();
            a.poll(&mut sink).unwrap();
        }
    }
    (expected, kept)
}

#[test]
fn blocks_above_the_threshold_are_handed_over_and_come_back() {
    let (ca, cb) = (context(), context());
    let cfg = EndpointConfig::default();
    let (a, b) = pair_with(&ca, &cfg, &cb, &cfg);
    let pool = cb.pool(cfg.pool_block_size()).unwrap();
    let in_use = || pool.total_blocks() - pool.free_blocks();
    let in_use_at_start = in_use();
    let sizes = [
        100, 511, 512, 513, 8160, 1, 4000, 600, 50, 8000, 511, 512, 7000, 2,
    ];
    let big = sizes.iter().filter(|&&n| n >= 512).count() as u64;
    let (expected, kept) = transfer(&a, &b, &sizes);
    let stats = b.stats();
    assert_eq!(stats.zerocopy_blocks, big);
    assert_eq!(stats.copied_messages, sizes.len() as u64 - big);
    assert_eq!(stats.messages_received, sizes.len() as u64);
    // Each handed-over block was replaced by a fresh one from the pool.
    assert_eq!(in_use(), in_use_at_start + big as usize);
    // The handed-over pieces carry the region's lkey, so they can be sent again as they are.
    let zero_copy_pieces = kept
        .iter()
        .flat_map(|b| b.pieces())
        .filter(|p| p.is_user_data() && p.meta() != 0)
        .count();
    assert_eq!(zero_copy_pieces as u64, big);
    let mut all = IOBuf::new();
    for k in &kept {
        all.append_iobuf(k);
    }
    assert!(all.equals(&expected));
    drop(all);
    drop(kept);
    assert_eq!(in_use(), in_use_at_start, "blocks back in the pool");
}

#[test]
fn zero_copy_off_copies_everything() {
    let cfg = EndpointConfig {
        recv_zerocopy: false,
        ..EndpointConfig::default()
    };
    let (ca, cb) = (context(), context());
    let (a, b) = pair_with(&ca, &cfg, &cb, &cfg);
    let pool = cb.pool(cfg.pool_block_size()).unwrap();
    let free_at_start = pool.free_blocks();
    let sizes = [8160, 600, 100, 5000];
    let (expected, kept) = transfer(&a, &b, &sizes);
    assert_eq!(b.stats().zerocopy_blocks, 0);
    assert_eq!(b.stats().copied_messages, 4);
    assert_eq!(pool.free_blocks(), free_at_start);
    let got: Vec<u8> = kept.iter().flat_map(|b| b.to_vec()).collect();
    assert_eq!(got, expected);
}

/// The application holds every received block: the pool runs dry, and receives fall back to
/// copying (the posted buffer is re-posted) instead of failing.
#[test]
fn exhausted_pool_falls_back_to_copying() {
    let dev: std::sync::Arc<dyn spindle_rdma::verbs::Device> =
        spindle_rdma::fabric::FabricDevice::open().unwrap();
    // One region of 40 blocks: 16 posted receives leave 24 to hand over.
    let cb = spindle_rdma::RdmaContext::with_pool_sizing(dev, 40 * 8192, 8192, 1).unwrap();
    let cfg = EndpointConfig {
        sq_size: 16,
        rq_size: 16,
        ..EndpointConfig::default()
    };
    let (a, b) = pair_with(&context(), &cfg, &cb, &cfg);
    let sizes = vec![4096usize; 40];
    let (expected, kept) = transfer(&a, &b, &sizes);
    let stats = b.stats();
    assert_eq!(stats.zerocopy_blocks, 24);
    assert_eq!(stats.copied_messages, 16);
    let got: Vec<u8> = kept.iter().flat_map(|b| b.to_vec()).collect();
    assert_eq!(got, expected);
}

/// Owner of user memory that records when it is dropped.
struct Owned(Vec<u8>, Arc<AtomicBool>);

impl AsRef<[u8]> for Owned {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

impl Drop for Owned {
    fn drop(&mut self) {
        self.1.store(true, Ordering::Release);
    }
}

/// User memory registered with the sender's context goes out without copying; registered with
/// another context it is copied; the registration and the memory go when the last reference
/// (the in-flight sends included) drops.
#[test]
fn registered_user_memory_is_sent_without_copying() {
    let (ca, cb) = (context(), context());
    let cfg = EndpointConfig::default();
    let (a, b) = pair_with(&ca, &cfg, &cb, &cfg);
    let data = pattern(1 << 20, 9);
    let dropped = Arc::new(AtomicBool::new(false));
    let mut out = ca
        .register_user_data(Owned(data.clone(), dropped.clone()))
        .unwrap();
    assert_eq!(ca.user_regions(), 1);
    assert!(out.pieces().all(|p| p.is_user_data() && p.meta() != 0));
    // The same bytes registered with b's context: a must copy them.
    let foreign = cb.register_user_data(data.clone()).unwrap();
    out.append_iobuf(&foreign);
    drop(foreign);
    let back = echo(&a, &b, &mut out, 2 * data.len());
    assert!(back
        .slices()
        .flat_map(|s| s.iter())
        .eq(data.iter().chain(data.iter())));
    let sa = a.stats();
    assert_eq!(sa.bytes_copied_out, data.len() as u64, "{sa:?}");
    assert!(sa.zerocopy_sges > 0);
    assert!(ca.register_user_data(Vec::new()).unwrap().is_empty());
    // Sends not yet covered by a signaled completion still hold the memory; the endpoints'
    // drop releases them.
    drop((a, b, back, out));
    assert!(dropped.load(Ordering::Acquire), "owner dropped");
    assert_eq!(ca.user_regions(), 0);
    assert_eq!(cb.user_regions(), 0);
}
