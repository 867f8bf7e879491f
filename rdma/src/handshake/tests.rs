//! Golden bytes written from the layouts in DESIGN.md §5 (and brpc's `rdma_handshake.proto`),
//! not produced by the encoder under test.

use super::*;
use proptest::prelude::*;

const GID: [u8; 16] = [
    0xfe, 0x80, 0, 0, 0, 0, 0, 0, 0x02, 0x11, 0x22, 0xff, 0xfe, 0x33, 0x44, 0x55,
];

fn sample() -> Hello {
    Hello {
        block_size: 8192,
        sq_size: 128,
        rq_size: 128,
        lid: 0x0102,
        gid: GID,
        qp_num: 0x0001_2345,
        ece: None,
    }
}

fn golden_v2() -> Vec<u8> {
    let mut v = b"RDMA".to_vec();
    v.extend_from_slice(&[0x00, 0x28]); // msg_len 40
    v.extend_from_slice(&[0x00, 0x02]); // hello_ver 2
    v.extend_from_slice(&[0x00, 0x01]); // impl_ver 1
    v.extend_from_slice(&[0x00, 0x00, 0x20, 0x00]); // block_size 8192
    v.extend_from_slice(&[0x00, 0x80]); // sq_size 128
    v.extend_from_slice(&[0x00, 0x80]); // rq_size 128
    v.extend_from_slice(&[0x01, 0x02]); // lid
    v.extend_from_slice(&GID);
    v.extend_from_slice(&[0x00, 0x01, 0x23, 0x45]); // qp_num
    v
}

fn golden_v3_body() -> Vec<u8> {
    let mut pb = vec![0x08, 0x80, 0x40]; // 1: block_size 8192
    pb.extend_from_slice(&[0x10, 0x80, 0x01]); // 2: sq_size 128
    pb.extend_from_slice(&[0x18, 0x80, 0x01]); // 3: rq_size 128
    pb.extend_from_slice(&[0x20, 0x82, 0x02]); // 4: lid 258
    pb.extend_from_slice(&[0x2a, 0x10]); // 5: gid, 16 bytes
    pb.extend_from_slice(&GID);
    pb.extend_from_slice(&[0x30, 0xc5, 0xc6, 0x04]); // 6: qp_num 0x12345
    pb
}

fn framed_v3(pb: &[u8]) -> Vec<u8> {
    let mut v = b"RDM3".to_vec();
    v.extend_from_slice(&(pb.len() as u32).to_be_bytes());
    v.extend_from_slice(pb);
    v
}

#[test]
fn v2_golden_bytes() {
    let bytes = golden_v2();
    assert_eq!(bytes.len(), 40);
    assert_eq!(v2::encode(&sample()).to_vec(), bytes);
    let d = parse_hello(&bytes).unwrap();
    assert_eq!(d.version, HelloVersion::V2);
    assert_eq!(d.hello, sample());
    assert!(d.negotiable);
    assert_eq!(d.consumed, 40);
}

#[test]
fn v2_refusal_has_zero_versions_and_is_not_negotiable() {
    let mut expected = b"RDMA".to_vec();
    expected.extend_from_slice(&[0x00, 0x28]);
    expected.extend_from_slice(&[0u8; 34]);
    assert_eq!(encode_refusal(HelloVersion::V2), expected);
    let d = parse_hello(&expected).unwrap();
    assert!(!d.negotiable);
    // Right versions but tiny queues: also a fallback, not an error.
    let mut small = golden_v2();
    small[14..16].copy_from_slice(&[0, 8]);
    assert!(!parse_hello(&small).unwrap().negotiable);
    // Wrong impl_ver.
    let mut other = golden_v2();
    other[9] = 7;
    assert!(!parse_hello(&other).unwrap().negotiable);
}

#[test]
fn v2_extension_bytes_are_consumed_and_ignored() {
    let mut bytes = golden_v2();
    bytes[4..6].copy_from_slice(&44u16.to_be_bytes());
    bytes.extend_from_slice(&[9, 9, 9, 9]);
    bytes.extend_from_slice(b"PRPC"); // the next message
    let d = parse_hello(&bytes).unwrap();
    assert_eq!(d.consumed, 44);
    assert_eq!(d.hello, sample());
    assert_eq!(
        parse_hello(&bytes[..43]).unwrap_err(),
        HelloError::NotEnoughData
    );
}

#[test]
fn v2_bad_msg_len_is_malformed() {
    for len in [0u16, 39, 4097, u16::MAX] {
        let mut bytes = golden_v2();
        bytes[4..6].copy_from_slice(&len.to_be_bytes());
        assert!(
            matches!(parse_hello(&bytes), Err(HelloError::Malformed(m)) if m.contains("msg_len")),
            "msg_len {len}"
        );
    }
}

#[test]
fn v3_golden_bytes() {
    let bytes = framed_v3(&golden_v3_body());
    assert_eq!(&bytes[4..8], &[0, 0, 0, 34]);
    assert_eq!(encode_hello(HelloVersion::V3, &sample()), bytes);
    let d = parse_hello(&bytes).unwrap();
    assert_eq!(d.version, HelloVersion::V3);
    assert_eq!(d.hello, sample());
    assert!(d.negotiable);
    assert_eq!(d.consumed, bytes.len());
}

#[test]
fn v3_golden_bytes_with_ece() {
    let mut pb = golden_v3_body();
    // 7: ece { vendor_id 0x15b3, options 0, comp_mask 1 }
    pb.extend_from_slice(&[0x3a, 0x07, 0x08, 0xb3, 0x2b, 0x10, 0x00, 0x18, 0x01]);
    let bytes = framed_v3(&pb);
    let mut h = sample();
    h.ece = Some(Ece {
        vendor_id: 0x15b3,
        options: 0,
        comp_mask: 1,
    });
    assert_eq!(v3::encode(&h), bytes);
    assert_eq!(parse_hello(&bytes).unwrap().hello, h);
}

#[test]
fn v3_refusal_golden_bytes() {
    let mut pb = vec![0x08, 0x00, 0x10, 0x00, 0x18, 0x00, 0x20, 0x00, 0x2a, 0x10];
    pb.extend_from_slice(&[0u8; 16]);
    pb.extend_from_slice(&[0x30, 0x00]);
    let bytes = framed_v3(&pb);
    assert_eq!(encode_refusal(HelloVersion::V3), bytes);
    let d = parse_hello(&bytes).unwrap();
    assert!(!d.negotiable);
}

#[test]
fn v3_errors_and_fallbacks() {
    // pb_size 0 and too big.
    for size in [0u32, 8193, u32::MAX] {
        let mut b = b"RDM3".to_vec();
        b.extend_from_slice(&size.to_be_bytes());
        assert!(
            matches!(parse_hello(&b), Err(HelloError::Malformed(_))),
            "{size}"
        );
    }
    // Garbage protobuf (a truncated varint).
    assert!(matches!(
        parse_hello(&framed_v3(&[0x08, 0xff])),
        Err(HelloError::Malformed(_))
    ));
    // Missing qp_num.
    let body = golden_v3_body();
    let e = parse_hello(&framed_v3(&body[..body.len() - 4])).unwrap_err();
    assert!(
        matches!(&e, HelloError::Malformed(m) if m.contains("qp_num")),
        "{e}"
    );
    // gid of 4 bytes: parses, but falls back.
    let mut short_gid = body[..12].to_vec();
    short_gid.extend_from_slice(&[0x2a, 0x04, 1, 2, 3, 4, 0x30, 0x05]);
    let d = parse_hello(&framed_v3(&short_gid)).unwrap();
    assert!(!d.negotiable);
    // sq_size 70000 does not fit a u16: falls back.
    let mut big_sq = vec![0x08, 0x80, 0x40, 0x10, 0xf0, 0xa2, 0x04];
    big_sq.extend_from_slice(&body[6..]);
    let d = parse_hello(&framed_v3(&big_sq)).unwrap();
    assert!(!d.negotiable);
}

#[test]
fn prefixes_wait_and_strangers_are_refused() {
    for bytes in [golden_v2(), framed_v3(&golden_v3_body())] {
        for cut in 0..bytes.len() {
            assert_eq!(
                parse_hello(&bytes[..cut]).unwrap_err(),
                HelloError::NotEnoughData,
                "prefix of {cut} bytes"
            );
        }
    }
    for other in [
        &b"PRPC\0\0\0\0"[..],
        b"GET / HTTP/1.1",
        b"RDMX",
        b"R\0",
        b"X",
    ] {
        assert_eq!(parse_hello(other).unwrap_err(), HelloError::TryOthers);
    }
}

#[test]
fn client_expects_its_own_version() {
    let v2 = golden_v2();
    assert!(parse_hello_expect(&v2, HelloVersion::V2).is_ok());
    assert!(matches!(
        parse_hello_expect(&v2, HelloVersion::V3),
        Err(HelloError::Malformed(_))
    ));
    assert!(matches!(
        parse_hello_expect(b"HTTP/1.1 400", HelloVersion::V2),
        Err(HelloError::Malformed(_))
    ));
    assert_eq!(
        parse_hello_expect(b"RD", HelloVersion::V2).unwrap_err(),
        HelloError::NotEnoughData
    );
}

#[test]
fn ack_golden_bytes() {
    assert_eq!(ack::encode(true), [0, 0, 0, 1]);
    assert_eq!(ack::encode(false), [0, 0, 0, 0]);
    assert_eq!(ack::decode(&[0, 0, 0, 1]), Ok(true));
    assert_eq!(ack::decode(&[0x80, 0, 0, 3, 9]), Ok(true));
    assert_eq!(ack::decode(&[0, 0, 0, 2]), Ok(false));
    assert_eq!(ack::decode(&[0, 0, 1]), Err(HelloError::NotEnoughData));
    assert_eq!(HelloVersion::from_number(3), Some(HelloVersion::V3));
    assert_eq!(HelloVersion::from_number(1), None);
}

proptest! {
    #[test]
    fn any_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..128)) {
        let _ = parse_hello(&bytes);
        let _ = parse_hello_expect(&bytes, HelloVersion::V3);
        let _ = ack::decode(&bytes);
        let mut v3 = b"RDM3".to_vec();
        v3.extend_from_slice(&(bytes.len() as u32).to_be_bytes());
        v3.extend_from_slice(&bytes);
        let _ = parse_hello(&v3);
    }

    #[test]
    fn roundtrip(block_size in any::<u32>(), sq in any::<u16>(), rq in any::<u16>(),
                 lid in any::<u16>(), gid in any::<[u8; 16]>(), qpn in any::<u32>(),
                 v3 in any::<bool>()) {
        let h = Hello { block_size, sq_size: sq, rq_size: rq, lid, gid, qp_num: qpn, ece: None };
        let version = if v3 { HelloVersion::V3 } else { HelloVersion::V2 };
        let bytes = encode_hello(version, &h);
        let d = parse_hello(&bytes).unwrap();
        prop_assert_eq!(d.hello, h);
        prop_assert_eq!(d.consumed, bytes.len());
        prop_assert_eq!(d.negotiable, h.is_negotiable());
    }
}
