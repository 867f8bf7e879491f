use super::*;
use crate::protocol::ParseContext;
use spindle_rdma::handshake::encode_refusal;

/// A context for a socket that does not exist: the parser sees the TCP state.
fn ctx() -> ParseContext {
    ParseContext::new(SocketId::INVALID)
}

fn parse(bytes: &[u8]) -> (ParseResult<Box<dyn InputMessage>>, usize) {
    let mut buf = IOBuf::from(bytes);
    let r = RdmaHandshake.parse(&mut buf, &ctx());
    (r, buf.len())
}

#[test]
fn other_protocols_are_not_ours_and_nothing_is_consumed() {
    for bytes in [
        &b"PRPC\0\0\0\0"[..],
        b"GET / HTTP/1.1\r\n",
        b"\0\0\0\x01",
        b"X",
    ] {
        let (r, left) = parse(bytes);
        assert_eq!(r.unwrap_err(), ParseError::TryOthers, "{bytes:?}");
        assert_eq!(left, bytes.len());
    }
}

#[test]
fn partial_hellos_wait_for_more() {
    let full = encode_refusal(HelloVersion::V2);
    for n in [1, 2, 3, 4, 6, 39] {
        let (r, left) = parse(&full[..n]);
        assert_eq!(r.unwrap_err(), ParseError::NotEnoughData, "{n} bytes");
        assert_eq!(left, n);
    }
}

#[test]
fn a_whole_hello_is_cut_exactly() {
    for version in [HelloVersion::V2, HelloVersion::V3] {
        let mut bytes = encode_refusal(version);
        let len = bytes.len();
        bytes.extend_from_slice(b"PRPC");
        let (r, left) = parse(&bytes);
        let msg = r.unwrap().downcast::<HandshakeInput>().unwrap();
        // No such socket: the hello is cut and dropped as a late one.
        assert!(
            matches!(msg.message, HandshakeMessage::LateHello),
            "{version:?}"
        );
        assert_eq!(left, bytes.len() - len);
    }
}

#[test]
fn a_corrupt_hello_is_absolutely_wrong() {
    let mut bytes = b"RDMA".to_vec();
    bytes.extend_from_slice(&2u16.to_be_bytes());
    bytes.extend_from_slice(&[0; 34]);
    assert!(matches!(
        parse(&bytes).0,
        Err(ParseError::AbsolutelyWrong(_))
    ));
}

#[test]
fn registered_first_in_the_default_registry() {
    let r = crate::input_messenger::default_registry();
    let first = r.probe_order()[0];
    assert_eq!(r.get(first).unwrap().name(), "rdma_handshake");
}
