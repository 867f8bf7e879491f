//! Large IOBufs spanning many blocks (5 MiB), echoed: pieces from the registered pool (this
//! binary installs the context's pool as the IOBuf allocator, so it is its own test binary) go
//! out without copying; user memory with no or a foreign key is copied into registered blocks.

mod common;

use common::endpoint::*;
use spindle_iobuf::IOBuf;
use spindle_rdma::{EndpointConfig, RdmaContext};
use spindle_runtime::flags;
use std::sync::Arc;

#[test]
fn five_mib_of_mixed_pieces_echoed() {
    let ca = context();
    ca.install_iobuf_allocator().unwrap();
    assert!(ca.install_iobuf_allocator().is_err(), "installed once");
    let cb = context();
    let cfg = EndpointConfig::default();
    let (a, b) = pair_with(&ca, &cfg, &cb, &cfg);

    // 2 MiB appended (pool blocks), 2 MiB of user memory without a key, 1 MiB of user memory
    // whose meta is not a key of this context, then 3 bytes appended again.
    let pooled = pattern(2 << 20, 1);
    let plain = pattern(2 << 20, 2);
    let foreign = pattern(1 << 20, 3);
    let mut out = IOBuf::new();
    out.append(&pooled);
    out.append_user_data(plain.clone(), 0);
    out.append_user_data(foreign.clone(), 0xdead_beef);
    out.append(b"end");
    let mut expected = pooled;
    expected.extend_from_slice(&plain);
    expected.extend_from_slice(&foreign);
    expected.extend_from_slice(b"end");
    assert!(
        out.backing_block_num() > 256,
        "{} blocks",
        out.backing_block_num()
    );
    let copied_len = (plain.len() + foreign.len()) as u64;

    let a_in = echo(&a, &b, &mut out, expected.len());
    assert!(a_in.equals(&expected), "echo differs");
    let (sa, sb) = (a.stats(), b.stats());
    assert_eq!(sa.bytes_sent, expected.len() as u64);
    assert_eq!(
        sa.bytes_copied_out, copied_len,
        "only the user memory was copied"
    );
    assert!(sa.zerocopy_sges >= (2 << 20) / 8192, "{sa:?}");
    // b echoes the blocks it received without copying them again (a block below the
    // zero-copy threshold may be copied into an IOBuf block of a's pool, which b cannot send).
    assert!(sb.zerocopy_sges >= sb.messages_received - 2, "{sb:?}");
    assert!(sb.bytes_copied_out < 1024, "{sb:?}");
    drop((a, b));

    // The same binary (the allocator is process-wide), after the test above: entries per
    // message limited by `rdma_max_sge`, with registered and unregistered pieces alternating.
    few_entries_per_message(&ca, &cb);
}

/// Registered pieces (appended into pool blocks) alternate with small keyless user memory;
/// with `rdma_max_sge=2` every message holds at most one run of each, the fabric refusing any
/// longer list. Also: `from_flags` follows `rdma_recv_block_type`.
fn few_entries_per_message(ca: &Arc<RdmaContext>, cb: &Arc<RdmaContext>) {
    flags::set("rdma_max_sge", "2").unwrap();
    flags::set("rdma_recv_block_type", "large").unwrap();
    let cfg = EndpointConfig::from_flags();
    assert_eq!((cfg.recv_block_size, cfg.pool_block_size()), (65504, 65536));
    let (a, b) = pair_with(ca, &cfg, cb, &cfg);
    flags::set("rdma_max_sge", "0").unwrap();
    flags::set("rdma_recv_block_type", "default").unwrap();

    let mut out = IOBuf::new();
    let mut expected = Vec::new();
    for i in 0..400u64 {
        let pooled = pattern(100 + (i as usize * 31) % 3000, i);
        let plain = pattern(1 + (i as usize * 17) % 200, i + 1000);
        out.append(&pooled);
        out.append_user_data(plain.clone(), 0);
        expected.extend_from_slice(&pooled);
        expected.extend_from_slice(&plain);
    }
    let a_in = echo(&a, &b, &mut out, expected.len());
    assert!(a_in.equals(&expected), "echo differs");
    let sa = a.stats();
    // Two entries at most: many more messages than 64 KiB blocks would need.
    assert!(
        sa.messages_sent >= 400,
        "{} messages for 400 alternations",
        sa.messages_sent
    );
    assert!(sa.zerocopy_sges > 0 && sa.bytes_copied_out > 0, "{sa:?}");
}
