//! Large IOBufs spanning many blocks (5 MiB), echoed: pieces from the registered pool (this
//! binary installs the context's pool as the IOBuf allocator, so it is its own test binary) go
//! out without copying; user memory with no or a foreign key is copied into registered blocks.

mod common;

use common::endpoint::*;
use spindle_iobuf::IOBuf;
use spindle_rdma::EndpointConfig;

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
}
