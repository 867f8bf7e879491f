//! Two endpoints in one process, connected through their hellos over the software fabric:
//! many messages echoed byte-exact and in order, in event mode.

mod common;

use common::endpoint::*;
use spindle_iobuf::IOBuf;
use std::time::Instant;

/// A stream of framed messages of varied sizes (4-byte length + bytes) echoed back.
#[test]
fn echo_of_many_messages_is_byte_exact_and_in_order() {
    let (a, b) = pair();
    let mut expected = Vec::new();
    let mut a_out = IOBuf::new();
    for i in 0..2000u64 {
        let len = [1usize, 7, 100, 511, 512, 4000, 8160, 9000, 20_000][i as usize % 9];
        let body = pattern(len, i);
        a_out.append(&(len as u32).to_be_bytes());
        a_out.append(&body);
        expected.extend_from_slice(&(len as u32).to_be_bytes());
        expected.extend_from_slice(&body);
    }
    let total = expected.len();
    let (mut a_in, mut b_in) = (IOBuf::new(), IOBuf::new());
    let start = Instant::now();
    while a_in.len() < total {
        check_deadline(start, &format!("a got {} of {total}", a_in.len()));
        let mut progress = write_some(&a, &mut a_out);
        progress |= b.poll(&mut b_in).unwrap().completions > 0;
        progress |= write_some(&b, &mut b_in);
        progress |= a.poll(&mut a_in).unwrap().completions > 0;
        if !progress {
            wait_either(&a, &b);
        }
    }
    assert_eq!(a_in.len(), total);
    assert!(a_in.equals(&expected), "echo differs");
    let (sa, sb) = (a.stats(), b.stats());
    assert_eq!(sa.bytes_sent, total as u64);
    assert_eq!(sb.bytes_received, total as u64);
    assert!(sa.messages_sent >= (total / 8160) as u64);
    assert!(a.describe().starts_with("rdma "), "{}", a.describe());
}
