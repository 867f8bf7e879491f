//! prost decodes from an IOBuf (`bytes::Buf`) and encodes into one (`bytes::BufMut`), with no
//! intermediate `Vec`.

use prost::Message;
use spindle_iobuf::{block_size, IOBuf, IOBufAppender};

/// brpc's echo request, plus fields that exercise every wire type.
#[derive(Clone, PartialEq, prost::Message)]
struct EchoRequest {
    #[prost(string, tag = "1")]
    message: String,
    #[prost(int64, tag = "2")]
    correlation_id: i64,
    #[prost(bytes = "vec", tag = "3")]
    payload: Vec<u8>,
    #[prost(fixed32, repeated, tag = "4")]
    checksums: Vec<u32>,
    #[prost(message, optional, tag = "5")]
    inner: Option<Inner>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct Inner {
    #[prost(uint32, tag = "1")]
    code: u32,
    #[prost(string, tag = "2")]
    text: String,
}

fn sample(payload_len: usize) -> EchoRequest {
    EchoRequest {
        message: "hello spindle".into(),
        correlation_id: -42,
        payload: (0..payload_len).map(|i| i as u8).collect(),
        checksums: vec![1, 2, 0xffff_ffff],
        inner: Some(Inner {
            code: 1008,
            text: "ERPCTIMEDOUT".into(),
        }),
    }
}

#[test]
fn encode_into_and_decode_from_iobuf() {
    // A payload larger than a block so the encoding spans pieces.
    let msg = sample(3 * block_size() + 17);
    let mut buf = IOBuf::new();
    msg.encode(&mut buf).unwrap();
    assert_eq!(buf.len(), msg.encoded_len());
    assert!(buf.backing_block_num() >= 4);
    assert_eq!(buf.to_vec(), msg.encode_to_vec(), "same bytes as prost's Vec encoding");
    // Non-consuming decode through a cursor, then consuming decode of the IOBuf itself.
    let via_cursor = EchoRequest::decode(buf.cursor()).unwrap();
    assert_eq!(via_cursor, msg);
    assert_eq!(buf.len(), msg.encoded_len());
    let consumed = EchoRequest::decode(&mut buf).unwrap();
    assert_eq!(consumed, msg);
    assert!(buf.is_empty());
}

#[test]
fn decode_from_a_chain_of_many_pieces() {
    // Split the encoding into 1-byte pieces of different blocks: chunk() boundaries everywhere.
    let msg = sample(100);
    let bytes = msg.encode_to_vec();
    let mut buf = IOBuf::new();
    for &b in &bytes {
        buf.append_user_data([b], 0);
    }
    assert_eq!(buf.backing_block_num(), bytes.len());
    assert_eq!(EchoRequest::decode(buf.cursor()).unwrap(), msg);
}

#[test]
fn length_delimited_messages_back_to_back() {
    let msgs: Vec<EchoRequest> = (0..50).map(|i| sample(i * 97)).collect();
    let mut buf = IOBuf::new();
    {
        let mut app = IOBufAppender::new(&mut buf);
        for m in &msgs {
            m.encode_length_delimited(&mut app).unwrap();
        }
    }
    let mut decoded = Vec::new();
    while !buf.is_empty() {
        decoded.push(EchoRequest::decode_length_delimited(&mut buf).unwrap());
    }
    assert_eq!(decoded, msgs);
}

#[test]
fn garbage_is_an_error_not_a_panic() {
    let mut buf = IOBuf::from(&[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff][..]);
    assert!(EchoRequest::decode(&mut buf).is_err());
    // A length prefix far beyond the data.
    let mut buf = IOBuf::from(&[0x1a, 0xff, 0xff, 0x03, 1, 2][..]);
    assert!(EchoRequest::decode(&mut buf).is_err());
}
